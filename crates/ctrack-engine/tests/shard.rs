//! Flow sharding on real traffic: every packet of every corpus capture deals to the worker
//! of the connection one table puts it in, replies and ICMP errors included.

use ctrack_capture::{merge, Capture};
use ctrack_conntrack::shard::Dealer;
use ctrack_conntrack::{Conntrack, Hook, Settings};
use ctrack_packet::Datagram;
use std::path::Path;

#[test]
fn every_packet_deals_to_its_connections_worker() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let mut files = 0;
    let mut checked = 0;
    for e in std::fs::read_dir(&corpus).expect("../shared/corpus is present") {
        let path = e.expect("a directory entry").path();
        if !path.to_string_lossy().contains(".pcap") {
            continue;
        }
        files += 1;
        let cap = Capture::open(&path).expect("corpus captures open");
        let caps = [cap];
        for workers in [2, 3, 7] {
            let dealer = Dealer::new(workers, 42);
            let mut ct = Conntrack::new(Settings::default(), 1);
            for f in merge(&caps) {
                let Ok((ip, _)) = f.ip() else { continue };
                let Ok(d) = Datagram::parse(ip) else { continue };
                if d.fragment.is_some() {
                    // Dealt once reassembled.
                    continue;
                }
                let r = ct.conntrack_in(&d, Hook::PreRouting, f.time);
                ct.confirm(&r, f.time);
                let Some(conn) = r.ct.and_then(|c| ct.conn(c)) else {
                    continue;
                };
                let want = dealer.worker_of_tuple(&conn.original);
                assert_eq!(
                    dealer.worker_of(&d),
                    want,
                    "{}: packet {} of {:?}",
                    path.display(),
                    f.index,
                    conn.original
                );
                checked += 1;
            }
        }
    }
    assert!(files >= 10, "the ten corpus captures, found {files}");
    assert!(checked > 100_000, "{checked} packets checked");
    // The corpus's ICMP errors quote packets the captures do not hold: one made here.
    let udp =
        ctrack_engine::workload::datagram(17, [10, 0, 0, 1], [10, 9, 0, 1], 4000, 53, 0, 0, 0, 4);
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&udp[..28]);
    let error = ctrack_engine::workload::ipv4([10, 9, 0, 1], [10, 0, 0, 1], 1, &icmp);
    for workers in [2, 3, 7] {
        let dealer = Dealer::new(workers, 42);
        let mut ct = Conntrack::new(Settings::default(), 1);
        let d = Datagram::parse(&udp).expect("valid");
        let r = ct.conntrack_in(&d, Hook::PreRouting, 1);
        ct.confirm(&r, 1);
        let e = Datagram::parse(&error).expect("valid");
        let r = ct.conntrack_in(&e, Hook::PreRouting, 2);
        assert_eq!(
            r.state.name(),
            "RELATED",
            "the error is related to the flow"
        );
        assert_eq!(dealer.worker_of(&e), dealer.worker_of(&d));
    }
}
