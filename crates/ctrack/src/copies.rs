//! Telling the outgoing copy of a forwarded packet from a packet the host sent.
//!
//! In a `tcpdump -i any` capture on a router every forwarded packet appears twice: as it
//! came in (before PREROUTING) and as it left (after POSTROUTING). Only the first enters the
//! pipeline. The copy is recognised by content: the same transport bytes after the ports,
//! the same IP identification and length, seen coming in a moment before. What leaves
//! without such a twin was made by the host itself, whatever its source address (a REJECT's
//! reset carries the address it answers for). The same matching tells a packet the host
//! sent itself, coming in on loopback, from its outgoing copy when the capture has both.

use ctrack_packet::{proto, Datagram, Family};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// How long an incoming packet waits for its outgoing copy.
const WINDOW_NS: u64 = 2_000_000_000;

/// Incoming packets that may leave again.
#[derive(Default)]
pub struct ForwardedCopies {
    pending: HashMap<u64, u32>,
    order: VecDeque<(u64, u64)>,
}

fn signature(d: &Datagram<'_>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    d.proto.hash(&mut h);
    d.len().hash(&mut h);
    if d.family == Family::V4 {
        d.bytes[4..6].hash(&mut h);
    }
    let l4 = d.l4();
    if d.is_icmp()
        && l4.first().is_some_and(|&t| {
            matches!(t, 3 | 4 | 5 | 11 | 12) || (d.proto == proto::ICMPV6 && t < 128)
        })
    {
        // An ICMP error: NAT rewrites the packet it quotes; its type and code stay.
        l4.get(..2).hash(&mut h);
        return h.finish();
    }
    // Past the ports and checksums, which NAT may rewrite.
    let from = match d.proto {
        proto::TCP => 4,
        // UDP and ICMP from the payload on: NAT rewrites ports and ICMP identifiers.
        proto::UDP | proto::UDPLITE | proto::ICMP | proto::ICMPV6 => 8,
        _ => 4,
    };
    let skip_csum = d.proto == proto::TCP;
    for (i, b) in l4.iter().enumerate().skip(from) {
        if skip_csum && (i == 16 || i == 17) {
            continue;
        }
        b.hash(&mut h);
    }
    h.finish()
}

impl ForwardedCopies {
    /// A packet whose copy may be captured again: an incoming one the host forwards, or
    /// one the host sends itself over loopback.
    pub fn expect_copy(&mut self, d: &Datagram<'_>, now: u64) {
        self.expire(now);
        let s = signature(d);
        *self.pending.entry(s).or_default() += 1;
        self.order.push_back((now, s));
    }

    /// True when a packet is the copy of one [`ForwardedCopies::expect_copy`] was given.
    pub fn is_copy(&mut self, d: &Datagram<'_>, now: u64) -> bool {
        self.expire(now);
        let s = signature(d);
        match self.pending.get_mut(&s) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(t, s)) = self.order.front() {
            if now.saturating_sub(t) <= WINDOW_NS {
                break;
            }
            self.order.pop_front();
            if let Some(n) = self.pending.get_mut(&s) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.pending.remove(&s);
                }
            }
        }
    }
}
