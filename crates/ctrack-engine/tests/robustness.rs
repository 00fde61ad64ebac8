//! Malformed input is counted, never fatal: random and mutated packets through the whole
//! pipeline.

use ctrack_conntrack::Settings;
use ctrack_engine::{Engine, Entry, Host};
use ctrack_packet::{checksum, Addr, Family};
use proptest::prelude::*;

/// A valid IPv4/TCP packet to mutate.
fn seed_packet(flags: u8) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let c = checksum::finish(checksum::sum(&p, 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mut t = vec![
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let acc = checksum::pseudo_header(
        Family::V4,
        Addr::v4([10, 0, 0, 1]),
        Addr::v4([10, 0, 0, 2]),
        6,
        20,
    );
    let c = checksum::finish(checksum::sum(&t, acc));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    p.extend(t);
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_are_counted_not_fatal(packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..20)) {
        let mut e = Engine::new(Settings::default(), Host::default(), 7);
        for (i, p) in packets.iter().enumerate() {
            let entry = if i % 3 == 0 { Entry::Host } else { Entry::Wire };
            e.process(p, entry, i as u64 * 1_000_000);
        }
        prop_assert_eq!(e.counts().packets, packets.len() as u64);
    }

    #[test]
    fn mutated_packets_are_counted_not_fatal(
        flags in any::<u8>(),
        edits in prop::collection::vec((0usize..40, any::<u8>()), 0..6),
        cut in 0usize..41,
    ) {
        let mut p = seed_packet(flags);
        for (at, v) in edits {
            p[at] = v;
        }
        p.truncate(cut);
        let mut e = Engine::new(Settings { checksum: false, ..Default::default() }, Host::default(), 7);
        e.process(&p, Entry::Wire, 0);
        e.process(&p, Entry::Host, 1);
        prop_assert_eq!(e.counts().packets, 2);
    }
}
