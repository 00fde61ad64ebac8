//! Capture reading: any bytes as a pcap, pcapng or gzip file, then every frame's link layer
//! and IP datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(cap) = ctrack_capture::Capture::from_bytes(Path::new("fuzz.pcap"), data.to_vec()) {
        for i in 0..cap.len() {
            if let Ok((ip, _)) = cap.frame(0, i).ip() {
                let _ = ctrack_packet::Datagram::parse(ip);
            }
        }
    }
});
