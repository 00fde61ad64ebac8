//! Packet parsing and tracking: the input is split into packets that go through one engine,
//! alternating between the wire and the host.
#![no_main]

use ctrack_conntrack::Settings;
use ctrack_engine::{Engine, Entry, Host};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let settings = Settings { max: 8, buckets: 4, ..Default::default() };
    let mut engine = Engine::new(settings, Host::default(), 1);
    let mut now = 0u64;
    for (i, chunk) in data.split(|&b| b == 0xa5).enumerate() {
        let entry = if i % 2 == 0 { Entry::Wire } else { Entry::Host };
        engine.process(chunk, entry, now);
        now += 700_000_000;
    }
});
