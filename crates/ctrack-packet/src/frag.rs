//! Fragment reassembly before conntrack, as `nf_defrag_ipv4`/`nf_defrag_ipv6` do.
//!
//! Conntrack never sees a fragment: the kernel gathers them at PREROUTING (and OUTPUT) and
//! the reassembled datagram is tracked as one packet. Overlapping fragments discard the
//! whole datagram, as current kernels do; queues older than `ipfrag_time` (30 s for IPv4,
//! 60 s for IPv6) are dropped. Reassembly is rare and allocates; the common path does not.

use crate::{Addr, Datagram, Family};
use std::collections::HashMap;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    family: Family,
    src: Addr,
    dst: Addr,
    proto: u8,
    id: u32,
}

struct Queue {
    first_seen: u64,
    /// The unfragmentable part, from the fragment at offset 0.
    head: Option<Vec<u8>>,
    next_header_at: usize,
    /// `(offset, data)` sorted by offset.
    parts: Vec<(u32, Vec<u8>)>,
    total: Option<u32>,
}

/// What [`Reassembler::push`] made of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembly {
    /// Held until the rest arrives.
    Held,
    /// The last missing piece: the whole datagram.
    Complete(Vec<u8>),
    /// Dropped: overlapping or oversized, and its queue with it.
    Dropped,
}

/// Queues of fragments waiting for the rest of their datagram.
#[derive(Default)]
pub struct Reassembler {
    queues: HashMap<Key, Queue>,
}

const IPV4_TIMEOUT_NS: u64 = 30_000_000_000;
const IPV6_TIMEOUT_NS: u64 = 60_000_000_000;

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of incomplete datagrams held.
    pub fn pending(&self) -> usize {
        self.queues.len()
    }

    /// Adds one fragment received at `now` (nanoseconds).
    pub fn push(&mut self, d: &Datagram<'_>, now: u64) -> Reassembly {
        let Some(f) = d.fragment else {
            return Reassembly::Complete(d.bytes.to_vec());
        };
        self.queues.retain(|k, q| {
            let limit = match k.family {
                Family::V4 => IPV4_TIMEOUT_NS,
                Family::V6 => IPV6_TIMEOUT_NS,
            };
            now.saturating_sub(q.first_seen) < limit
        });
        let key = Key {
            family: d.family,
            src: d.src,
            dst: d.dst,
            proto: d.proto,
            id: f.id,
        };
        let q = self.queues.entry(key).or_insert_with(|| Queue {
            first_seen: now,
            head: None,
            next_header_at: 0,
            parts: Vec::new(),
            total: None,
        });
        let data = &d.bytes[f.data_offset..];
        let end = f.offset + data.len() as u32;
        let overlaps = q
            .parts
            .iter()
            .any(|(o, p)| f.offset < o + p.len() as u32 && *o < end);
        let too_big = end as usize + f.unfragmentable_len > 65535 + 40;
        let misaligned = f.more && !data.len().is_multiple_of(8);
        if overlaps || too_big || misaligned || q.total.is_some_and(|t| end > t) {
            self.queues.remove(&key);
            return Reassembly::Dropped;
        }
        if f.offset == 0 {
            q.head = Some(d.bytes[..f.unfragmentable_len].to_vec());
            q.next_header_at = f.next_header_at;
        }
        if !f.more {
            q.total = Some(end);
        }
        let at = q.parts.partition_point(|(o, _)| *o < f.offset);
        q.parts.insert(at, (f.offset, data.to_vec()));
        let Some(total) = q.total else {
            return Reassembly::Held;
        };
        let mut covered = 0u32;
        for (o, p) in &q.parts {
            if *o != covered {
                return Reassembly::Held;
            }
            covered += p.len() as u32;
        }
        if covered != total || q.head.is_none() {
            return Reassembly::Held;
        }
        let q = self.queues.remove(&key).expect("queue present");
        Reassembly::Complete(rebuild(d.family, d.proto, q, total))
    }
}

fn rebuild(family: Family, proto: u8, q: Queue, total: u32) -> Vec<u8> {
    let mut head = q.head.unwrap_or_default();
    let mut out = Vec::with_capacity(head.len() + total as usize);
    match family {
        Family::V4 => {
            let len = (head.len() as u32 + total) as u16;
            head[2..4].copy_from_slice(&len.to_be_bytes());
            head[6] &= 0x40; // keep DF, clear MF and the offset
            head[7] = 0;
            head[10] = 0;
            head[11] = 0;
            let c = crate::checksum::finish(crate::checksum::sum(&head, 0));
            head[10..12].copy_from_slice(&c.to_be_bytes());
        }
        Family::V6 => {
            // The fragment header is gone: its predecessor now names the transport.
            let payload = (head.len() as u32 - 40 + total) as u16;
            head[4..6].copy_from_slice(&payload.to_be_bytes());
            head[q.next_header_at] = proto;
        }
    }
    out.extend_from_slice(&head);
    for (_, p) in q.parts {
        out.extend_from_slice(&p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_frag(id: u16, offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
        let len = 20 + data.len() as u16;
        let fo = (offset / 8) | if more { 0x2000 } else { 0 };
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6..8].copy_from_slice(&fo.to_be_bytes());
        let c = crate::checksum::finish(crate::checksum::sum(&p, 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(data);
        p
    }

    #[test]
    fn reassembles_out_of_order() {
        let mut r = Reassembler::new();
        let b = v4_frag(7, 16, false, &[3; 4]);
        let a = v4_frag(7, 0, true, &[1; 16]);
        assert_eq!(r.push(&Datagram::parse(&b).unwrap(), 0), Reassembly::Held);
        let Reassembly::Complete(whole) = r.push(&Datagram::parse(&a).unwrap(), 1) else {
            panic!("expected a whole datagram")
        };
        let d = Datagram::parse(&whole).unwrap();
        assert!(d.fragment.is_none());
        assert_eq!(d.len(), 40);
        assert_eq!(&d.l4()[16..], &[3; 4]);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn overlap_drops_the_datagram() {
        let mut r = Reassembler::new();
        let a = v4_frag(9, 0, true, &[1; 16]);
        let b = v4_frag(9, 8, false, &[2; 16]);
        assert_eq!(r.push(&Datagram::parse(&a).unwrap(), 0), Reassembly::Held);
        assert_eq!(
            r.push(&Datagram::parse(&b).unwrap(), 0),
            Reassembly::Dropped
        );
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn stale_queues_expire() {
        let mut r = Reassembler::new();
        let a = v4_frag(1, 0, true, &[1; 16]);
        let b = v4_frag(2, 0, true, &[1; 16]);
        r.push(&Datagram::parse(&a).unwrap(), 0);
        r.push(&Datagram::parse(&b).unwrap(), 31_000_000_000);
        assert_eq!(r.pending(), 1);
    }
}
