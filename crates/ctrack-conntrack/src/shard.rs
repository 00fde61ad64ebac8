//! Flow-sharded workers: packets dealt to N trackers by a symmetric keyed hash of their
//! connection, so that both directions of a connection meet the same table and no table is
//! shared between threads.
//!
//! A tuple and its inverse deal alike: the hash is over the two endpoints in a fixed order,
//! and an ICMP query's type (which differs between request and reply) is left out. An ICMP
//! error deals as the packet it quotes, so it meets the connection it is RELATED to.
//! Datagrams are dealt whole: fragments are to be reassembled first, as the kernel's
//! defragmentation runs before conntrack.
//!
//! NAT changes a connection's reply tuple, and with it where its replies would deal. A
//! worker's tracker told its place with [`crate::Conntrack::set_affinity`] chooses source
//! ports (SNAT, MASQUERADE) so that the replies deal back to it, as multi-core userspace
//! NATs do; a translation that leaves no port to choose (DNAT to one address and port) can
//! send replies to another worker, which tracks them as new.

use crate::proto::icmp;
use ctrack_packet::{Addr, Datagram, Tuple};
use siphasher::sip::SipHasher13;

/// Deals packets to `workers` workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dealer {
    workers: u32,
    key: (u64, u64),
}

impl Dealer {
    /// A dealer to `workers` workers (at least one), hashing with a key derived from `seed`.
    pub fn new(workers: u32, seed: u64) -> Dealer {
        Dealer {
            workers: workers.max(1),
            key: (
                seed ^ 0x6465_616c_6572_2d6b,
                seed.rotate_left(17) ^ 0x7379_6d6d_6574_7279,
            ),
        }
    }

    /// How many workers.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// The worker of a connection with this tuple in either direction.
    pub fn worker_of_tuple(&self, t: &Tuple) -> u32 {
        let (sp, dp) = t.end_ports();
        self.deal(t.src, sp, t.dst, dp, t.proto)
    }

    /// The worker of a whole datagram: its connection's, an ICMP error's the quoted
    /// packet's. A datagram without a tuple (a short header, say) deals by its addresses:
    /// it is INVALID on any worker.
    pub fn worker_of(&self, d: &Datagram<'_>) -> u32 {
        let l4 = d.l4();
        if d.is_icmp() && l4.len() >= 8 && icmp::is_error(d.family, l4[0]) {
            if let Ok(quoted) = Tuple::from_quoted(d.family, &l4[8..]) {
                return self.worker_of_tuple(&quoted);
            }
        }
        match Tuple::from_datagram(d) {
            Ok(t) => self.worker_of_tuple(&t),
            Err(_) => self.deal(d.src, 0, d.dst, 0, d.proto),
        }
    }

    fn deal(&self, a: Addr, ap: u16, b: Addr, bp: u16, proto: u8) -> u32 {
        let (lo, hi) = if (a, ap) <= (b, bp) {
            ((a, ap), (b, bp))
        } else {
            ((b, bp), (a, ap))
        };
        let mut key = [0u8; 37];
        key[..16].copy_from_slice(&lo.0 .0);
        key[16..18].copy_from_slice(&lo.1.to_ne_bytes());
        key[18..34].copy_from_slice(&hi.0 .0);
        key[34..36].copy_from_slice(&hi.1.to_ne_bytes());
        key[36] = proto;
        let h = SipHasher13::new_with_keys(self.key.0, self.key.1).hash(&key) as u32;
        ((u64::from(h) * u64::from(self.workers)) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctrack_packet::Family;
    use proptest::prelude::*;

    fn tuple(v6: bool, proto: u8, a: [u8; 4], b: [u8; 4], sp: u16, dp: u16) -> Tuple {
        let addr = |x: [u8; 4]| {
            if v6 {
                let mut o = [0u8; 16];
                o[..2].copy_from_slice(&[0x20, 0x01]);
                o[12..].copy_from_slice(&x);
                Addr(o)
            } else {
                Addr::v4(x)
            }
        };
        Tuple {
            src: addr(a),
            dst: addr(b),
            src_port: sp,
            dst_port: dp,
            proto,
            family: if v6 { Family::V6 } else { Family::V4 },
        }
    }

    proptest! {
        /// A tuple and its inverse deal to the same worker, TCP, UDP and ICMP queries alike.
        #[test]
        fn both_directions_deal_alike(
            v6 in any::<bool>(),
            proto in prop::sample::select(vec![6u8, 17, 1, 58]),
            a in any::<[u8; 4]>(),
            b in any::<[u8; 4]>(),
            sp in any::<u16>(),
            dp in any::<u16>(),
            workers in 1u32..9,
        ) {
            let proto = match (proto, v6) {
                (1, true) => 58,
                (58, false) => 1,
                (p, _) => p,
            };
            // An echo request (8, or 128 for ICMPv6): its inverse is the reply.
            let dp = if proto == 1 { 8 << 8 } else if proto == 58 { 128 << 8 } else { dp };
            let t = tuple(v6, proto, a, b, sp, dp);
            let d = Dealer::new(workers, 3);
            let inv = t.invert().expect("these invert");
            let w = d.worker_of_tuple(&t);
            prop_assert!(w < workers);
            prop_assert_eq!(w, d.worker_of_tuple(&inv));
        }
    }

    #[test]
    fn connections_spread_over_the_workers() {
        let d = Dealer::new(4, 9);
        let mut per = [0u32; 4];
        for i in 0..4000u32 {
            let t = tuple(
                false,
                17,
                [10, 0, (i >> 8) as u8, i as u8],
                [10, 1, 0, 1],
                1024 + i as u16,
                53,
            );
            per[d.worker_of_tuple(&t) as usize] += 1;
        }
        assert!(per.iter().all(|&n| (800..1200).contains(&n)), "{per:?}");
    }
}
