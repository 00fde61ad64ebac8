//! Benchmark workloads: the packets and the loops `ctrack bench` and the criterion
//! benchmarks time, so both measure the same thing.
//!
//! Each workload builds its packets first (not timed), then runs them through connection
//! tracking alone ([`Tracker`]: parse and validate the IP header, tuple, keyed hash, lookup
//! with expiry check, the protocol tracker's state and timeout update, confirm) or through
//! the whole pipeline ([`Engine::process`]). Time is a parameter, as everywhere.

use crate::{Engine, Entry};
use ctrack_conntrack::{Conntrack, Hook, Prefetched, Settings};
use ctrack_packet::{checksum, Addr, Datagram, Family, Udp4};

/// Connection tracking alone: what one packet costs the tracker.
pub struct Tracker {
    /// The tracker.
    pub ct: Conntrack,
}

impl Tracker {
    /// A tracker with these settings.
    pub fn new(settings: Settings, seed: u64) -> Tracker {
        Tracker {
            ct: Conntrack::new(settings, seed),
        }
    }

    /// One Ethernet frame (or bare IP datagram with `l2 == 0`): parsed, validated, tracked
    /// and confirmed. Returns true when the packet was tracked (not INVALID, not dropped).
    #[inline]
    pub fn packet(&mut self, frame: &[u8], l2: usize, now: u64) -> bool {
        let Some(ip) = frame.get(l2..) else {
            return false;
        };
        // An IPv4/UDP packet takes the fast path: a known connection's there, a new one's
        // from its miss; one it leaves goes on with the hash it made.
        let Some(u) = Udp4::parse(ip) else {
            return self.general(ip, None, now);
        };
        match self.ct.conntrack_in_udp4(&u, Hook::PreRouting, now) {
            Ok(r) => self.confirmed(&r, now),
            Err(p) => self.missed(&u, &p, now),
        }
    }

    /// Frames as a datapath receives them in a burst (OVS hands its tracker batches of 32):
    /// the IPv4/UDP datagrams among each four read in place and hashed at once, then each
    /// tracked on the fast path; the rest, and those it leaves, on the general path. The
    /// same result as [`Tracker::packet`] on each; returns how many were tracked.
    pub fn burst(&mut self, frames: &[&[u8]], l2: usize, now: u64) -> usize {
        let mut tracked = 0;
        for four in frames.chunks(CHUNK) {
            let Some(us) = udp4_chunk(four, l2) else {
                tracked += four.iter().filter(|f| self.packet(f, l2, now)).count();
                continue;
            };
            let hashes = self.ct.prefetch_udp4_x4(us.each_ref());
            tracked += self.fast_then_general(&us, &hashes, now);
        }
        tracked
    }

    /// IPv4/UDP datagrams on the fast path, with the hashes made of them (one for each);
    /// those it leaves on the general path. Returns how many were tracked.
    fn fast_then_general(
        &mut self,
        us: &[Udp4<'_>],
        hashes: &[ctrack_conntrack::Udp4Hash<'_>],
        now: u64,
    ) -> usize {
        let mut tracked = 0;
        for (u, h) in us.iter().zip(hashes) {
            tracked += usize::from(
                // Tracked and confirmed at once: nothing comes between the two here.
                match self
                    .ct
                    .conntrack_in_udp4_committed(u, Hook::PreRouting, now, h)
                {
                    Ok(r) => r.drop.is_none() && r.ct.is_some(),
                    Err(p) => self.missed(u, &p, now),
                },
            );
        }
        tracked
    }

    /// A datagram the fast path left: a new connection's made there if it can, the rest
    /// on the general path with what the fast path made of it.
    fn missed(&mut self, u: &Udp4<'_>, p: &Prefetched<'_>, now: u64) -> bool {
        match self.ct.conntrack_in_udp4_new(u, Hook::PreRouting, now, p) {
            Ok(r) => self.confirmed(&r, now),
            Err(p) => self.general(u.bytes(), Some(&p), now),
        }
    }

    /// The general path of one datagram, with what the fast path made of it if it looked.
    fn general(&mut self, ip: &[u8], fast: Option<&Prefetched<'_>>, now: u64) -> bool {
        let Ok(d) = Datagram::parse(ip) else {
            return false;
        };
        let r = match fast {
            Some(p) => self
                .ct
                .conntrack_in_prefetched(&d, Hook::PreRouting, now, p),
            None => self.ct.conntrack_in(&d, Hook::PreRouting, now),
        };
        self.confirmed(&r, now)
    }

    /// Confirms a tracked packet; true when it was tracked (not INVALID, not dropped).
    #[inline]
    fn confirmed(&mut self, r: &ctrack_conntrack::InResult, now: u64) -> bool {
        self.ct.confirm(r, now);
        r.drop.is_none() && r.ct.is_some()
    }
}

impl Tracker {
    /// Frames looked up in three stages as a datapath does, each stage a chunk of frames
    /// ahead of the next: a chunk parsed, hashed and its index slots asked for; the chunk
    /// before it, whose slots have come in meanwhile, has the entries they name asked for;
    /// the chunk before that is tracked in order without hashing again (the same result
    /// as [`Tracker::packet`] on each). Returns how many were tracked.
    ///
    /// Chunks of eight (two four-lane hashes), staggered: a read asked for has a chunk's
    /// tracking to arrive in, and about two dozen lines are in flight at once. Three passes
    /// over a batch of 32 asked for 32 slots, then 64 lines of entries, at once: more than
    /// a core keeps waiting, and a million connections looked up at random 1.4 times
    /// slower (`BENCHMARKS.md`). Chunks of four paid the stages' bookkeeping twice as
    /// often (a batched lookup among 10,000 flows 12 instructions more). A chunk that is
    /// not eight IPv4/UDP datagrams goes to the general path whole, which takes the fast
    /// path's lookup first for each IPv4/UDP datagram among them.
    pub fn batch(&mut self, frames: &[&[u8]], l2: usize, now: u64) -> usize {
        const ENTRY_LEAD: usize = 1;
        const TRACK_LEAD: usize = 2;
        const RING: usize = TRACK_LEAD + 1;
        let mut tracked = 0;
        // The chunks in flight, by chunk number modulo their count, filled in place. A
        // stage whose chunk is not there yet, or any more, finds it empty.
        let mut stages: [Stage<'_>; RING] = std::array::from_fn(|_| Stage::default());
        let nth_chunk = |k: usize| frames.chunks(BATCH_CHUNK).nth(k);
        for k in 0..frames.len().div_ceil(BATCH_CHUNK) + TRACK_LEAD {
            let stage = &mut stages[k % RING];
            stage.clear();
            if let Some(chunk) = nth_chunk(k) {
                // The next chunk's headers asked for, as a receive ring has them by now.
                for f in nth_chunk(k + 1).into_iter().flatten() {
                    ctrack_conntrack::table::prefetch_bytes(f);
                }
                stage.fill(&self.ct, chunk, l2);
            }
            stages[(k + RING - ENTRY_LEAD) % RING].prefetch_entries(&self.ct);
            let stage = &stages[(k + RING - TRACK_LEAD) % RING];
            if let Some((us, hashes)) = &stage.udp4 {
                tracked += self.fast_then_general(us, hashes, now);
            }
            for (d, p) in stage.datagrams.iter().zip(&stage.prefetched) {
                let r = match p {
                    Some(p) => self.ct.conntrack_in_prefetched(d, Hook::PreRouting, now, p),
                    None => self.ct.conntrack_in(d, Hook::PreRouting, now),
                };
                tracked += usize::from(self.confirmed(&r, now));
            }
        }
        tracked
    }
}

/// Frames a burst takes at a time, and a batch in each of its hashes: one four-lane hash.
const CHUNK: usize = 4;

/// Frames a batch's chunk takes at a time: two four-lane hashes.
const BATCH_CHUNK: usize = 2 * CHUNK;

/// Four frames read in place for the fast path, when there are four and every one is an
/// IPv4/UDP datagram.
#[inline(always)]
fn udp4_chunk<'a>(chunk: &[&'a [u8]], l2: usize) -> Option<[Udp4<'a>; CHUNK]> {
    let parse = |i: usize| Udp4::parse(chunk.get(i)?.get(l2..)?);
    Some([parse(0)?, parse(1)?, parse(2)?, parse(3)?])
}

/// One chunk of a batch in flight: eight IPv4/UDP datagrams for the fast path, with their
/// hashes; or, when the chunk is anything else, its datagrams for the general path, with
/// their tuples and hashes.
#[derive(Default)]
struct Stage<'a> {
    udp4: Option<(
        [Udp4<'a>; BATCH_CHUNK],
        [ctrack_conntrack::Udp4Hash<'a>; BATCH_CHUNK],
    )>,
    datagrams: Vec<Datagram<'a>>,
    prefetched: Vec<Option<Prefetched<'a>>>,
}

impl<'a> Stage<'a> {
    fn clear(&mut self) {
        self.udp4 = None;
        self.datagrams.clear();
        self.prefetched.clear();
    }

    /// The chunk parsed and hashed, its index slots asked for.
    fn fill(&mut self, ct: &Conntrack, chunk: &[&'a [u8]], l2: usize) {
        if let (Some(a), Some(b)) = (
            udp4_chunk(chunk, l2),
            chunk.get(CHUNK..).and_then(|rest| udp4_chunk(rest, l2)),
        ) {
            let (ha, hb) = (
                ct.prefetch_udp4_x4(a.each_ref()),
                ct.prefetch_udp4_x4(b.each_ref()),
            );
            self.udp4 = Some((
                [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]],
                [ha[0], ha[1], ha[2], ha[3], hb[0], hb[1], hb[2], hb[3]],
            ));
            return;
        }
        self.datagrams.extend(
            chunk
                .iter()
                .filter_map(|f| Datagram::parse(f.get(l2..)?).ok()),
        );
        ct.prefetch_batch(&self.datagrams, &mut self.prefetched);
    }

    /// The entries the chunk's index slots name asked for.
    fn prefetch_entries(&self, ct: &Conntrack) {
        for h in self.udp4.iter().flat_map(|(_, hashes)| hashes) {
            ct.prefetch_entry_udp4(h);
        }
        for p in self.prefetched.iter().flatten() {
            ct.prefetch_entry(p);
        }
    }
}

/// Packets one after another in one buffer, in the order they are to be seen, as a
/// receive ring holds them: the next packet is a sequential read, so a lookup workload's
/// cache misses are the table's, not those of packets scattered over the heap.
pub struct Ring {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Ring {
    /// The packets `order` names, in that order.
    pub fn new(pkts: &[Vec<u8>], order: &[u32]) -> Ring {
        let mut bytes = Vec::with_capacity(order.iter().map(|&i| pkts[i as usize].len()).sum());
        let ends = order
            .iter()
            .map(|&i| {
                bytes.extend_from_slice(&pkts[i as usize]);
                bytes.len()
            })
            .collect();
        Ring { bytes, ends }
    }

    /// Each packet, in ring order.
    pub fn frames(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let f = &self.bytes[start..end];
                start = end;
                f
            })
            .collect()
    }
}

/// OVS's benchmark frame: 42 bytes of Ethernet, IPv4 and UDP from 10.1.1.1 to 10.1.1.2,
/// ports `sport` → 2, no payload, UDP checksum 0.
pub fn ovs_frame(sport: u16) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 1, 1, 10, 1, 1, 2,
    ]);
    let c = checksum::finish(checksum::sum(ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&2u16.to_be_bytes());
    f[38..40].copy_from_slice(&8u16.to_be_bytes());
    f
}

/// An IPv4 datagram around the transport bytes `l4`, with correct header and transport
/// checksums (TCP, UDP, ICMP).
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = 20 + l4.len();
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = checksum::finish(checksum::sum(&p, 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mut l4 = l4.to_vec();
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    };
    let acc = if proto == 1 {
        0
    } else {
        checksum::pseudo_header(
            Family::V4,
            Addr::v4(src),
            Addr::v4(dst),
            proto,
            l4.len() as u32,
        )
    };
    if l4.len() >= at + 2 {
        let c = checksum::finish(checksum::sum(&l4, acc));
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(&l4);
    p
}

/// An IPv6 datagram around the transport bytes `l4` (TCP or UDP), its transport checksum
/// computed anew.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.extend_from_slice(&[proto, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let mut l4 = l4.to_vec();
    let at = if proto == 6 { 16 } else { 6 };
    l4[at..at + 2].fill(0);
    let acc = checksum::pseudo_header(Family::V6, Addr(src), Addr(dst), proto, l4.len() as u32);
    let c = checksum::finish(checksum::sum(&l4, acc));
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&l4);
    p
}

/// The handshake (SYN, SYN-ACK, ACK) of the `i`th of many distinct TCP connections, over
/// IPv4 or IPv6: three packets that leave one ESTABLISHED, assured entry.
pub fn tcp_handshake(i: usize, salt: u8, family: Family) -> [Vec<u8>; 3] {
    let c4 = [10, salt, (i >> 16) as u8, (i >> 8) as u8];
    let s4 = [10, 203, 0, 1];
    let cp = 1024 + (i & 0xff) as u16;
    let seg = |src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8, seq: u32, ack: u32| {
        let v4 = datagram(6, src, dst, sp, dp, flags, seq, ack, 0);
        match family {
            Family::V4 => v4,
            Family::V6 => {
                let six = |a: [u8; 4]| {
                    let mut x = [0u8; 16];
                    x[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                    x[12..].copy_from_slice(&a);
                    x
                };
                ipv6(six(src), six(dst), 6, &v4[20..])
            }
        }
    };
    [
        seg(c4, s4, cp, 443, 0x02, 1000, 0),
        seg(s4, c4, 443, cp, 0x12, 5000, 1001),
        seg(c4, s4, cp, 443, 0x10, 1001, 5001),
    ]
}

/// An IPv4 datagram of `proto` (TCP or UDP) with correct checksums; TCP segments carry
/// `flags`, `seq`, `ack` and a 64 KiB window.
#[allow(clippy::too_many_arguments)]
pub fn datagram(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: usize,
) -> Vec<u8> {
    let l4_len = if proto == 6 { 20 } else { 8 } + payload;
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        l4[4..8].copy_from_slice(&seq.to_be_bytes());
        l4[8..12].copy_from_slice(&ack.to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = flags;
        l4[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    } else {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    }
    ipv4(src, dst, proto, &l4)
}

/// `n` distinct UDP flows (source address, source and destination ports varied), as bare
/// IPv4 datagrams; `salt` gives each thread flows of its own.
pub fn udp_flows(n: usize, salt: u8) -> Vec<Vec<u8>> {
    udp_flows_from(0, n, salt)
}

/// Flows `first..first + n` of [`udp_flows`].
pub fn udp_flows_from(first: usize, n: usize, salt: u8) -> Vec<Vec<u8>> {
    (first..first + n)
        .map(|i| {
            datagram(
                17,
                [10, salt, (i >> 16) as u8, (i >> 8) as u8],
                [10, 200, 0, 1],
                1024 + (i & 0xff) as u16,
                53 + (i % 7) as u16,
                0,
                0,
                0,
                0,
            )
        })
        .collect()
}

/// A permutation of `0..n` from a small seeded generator (xorshift), for random order.
pub fn shuffled(n: usize, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// The packets of `n` complete short TCP connections (handshake, one data segment each
/// way with its ACK, FIN close from the client), interleaved as a run of connections one
/// after the other; with `salt` for threads.
pub fn tcp_connections(n: usize, salt: u8) -> Vec<Vec<u8>> {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const FIN: u8 = 0x01;
    let mut out = Vec::with_capacity(n * 10);
    for i in 0..n {
        let c = [10, salt, (i >> 16) as u8, (i >> 8) as u8];
        let s = [10, 201, 0, 1];
        let cp = 1024 + (i & 0xff) as u16;
        let (ci, si) = (1000u32, 5000u32);
        let t =
            |src, dst, sp, dp, f, seq, ack, len| datagram(6, src, dst, sp, dp, f, seq, ack, len);
        out.push(t(c, s, cp, 80, SYN, ci, 0, 0));
        out.push(t(s, c, 80, cp, SYN | ACK, si, ci + 1, 0));
        out.push(t(c, s, cp, 80, ACK, ci + 1, si + 1, 0));
        out.push(t(c, s, cp, 80, PSH | ACK, ci + 1, si + 1, 100));
        out.push(t(s, c, 80, cp, ACK, si + 1, ci + 101, 0));
        out.push(t(s, c, 80, cp, PSH | ACK, si + 1, ci + 101, 200));
        out.push(t(c, s, cp, 80, ACK, ci + 101, si + 201, 0));
        out.push(t(c, s, cp, 80, FIN | ACK, ci + 101, si + 201, 0));
        out.push(t(s, c, 80, cp, FIN | ACK, si + 201, ci + 102, 0));
        out.push(t(c, s, cp, 80, ACK, ci + 102, si + 202, 0));
    }
    out
}

/// `n` SYNs of distinct connections.
pub fn syns(n: usize, salt: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            datagram(
                6,
                [10, salt, (i >> 16) as u8, (i >> 8) as u8],
                [10, 202, 0, 1],
                1024 + (i & 0xff) as u16,
                443,
                0x02,
                7,
                0,
                0,
            )
        })
        .collect()
}

/// A ruleset of `n` rules that do not match (each compares the source address and a
/// destination port) before an ACCEPT of new and established traffic in FORWARD: the
/// linear walk iptables does.
pub fn linear_ruleset(n: usize) -> ctrack_rules::Ruleset {
    let mut text =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..n {
        text.push_str(&format!(
            "-A FORWARD -s 192.0.{}.{}/32 -p udp -m udp --dport {} -j DROP\n",
            (i / 250) % 250,
            i % 250 + 1,
            1000 + i % 5000
        ));
    }
    text.push_str("-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT\nCOMMIT\n");
    let mut rs = ctrack_rules::Ruleset::default();
    rs.add(ctrack_rules::load(&text, "bench.rules").expect("the benchmark ruleset is valid"));
    rs
}

/// [`linear_ruleset`] beside the raw, mangle and nat tables with their built-in chains
/// empty, policy ACCEPT: a ruleset saved from a host with those tables loaded, where only
/// the filter table has rules.
pub fn linear_ruleset_all_tables(n: usize) -> ctrack_rules::Ruleset {
    let mut rs = linear_ruleset(n);
    rs.add(ctrack_rules::model::FamilyRules {
        family: Family::V4,
        tables: ["raw", "mangle", "nat"]
            .into_iter()
            .map(|t| ctrack_rules::model::Table::new(t).expect("a built-in table"))
            .collect(),
    });
    rs
}

/// Settings for `n` connections: buckets the next power of two (1,024 at the least), room
/// for all of them.
pub fn sized(n: usize) -> Settings {
    let buckets = (n.max(1024) as u32).next_power_of_two();
    Settings {
        buckets,
        max: buckets.saturating_mul(2),
        ..Settings::default()
    }
}

/// `flows` UDP flows of [`udp_flows`] (`salt`) established at `now` through an engine with
/// `rules` and room for all of them ([`sized`]): what `ctrack bench pipeline` times, and
/// its packets.
pub fn established_pipeline(
    flows: usize,
    salt: u8,
    rules: ctrack_rules::Ruleset,
    now: u64,
) -> (Engine, Vec<Vec<u8>>) {
    let pkts = udp_flows(flows, salt);
    let mut e = Engine::with_rules(sized(flows), crate::Host::default(), 1, rules);
    run_pipeline(&mut e, &pkts, now);
    (e, pkts)
}

/// The same flows established through connection tracking alone, with the same settings:
/// the pipeline's baseline.
pub fn established_tracker(flows: usize, salt: u8, now: u64) -> (Tracker, Vec<Vec<u8>>) {
    let pkts = udp_flows(flows, salt);
    let mut tr = Tracker::new(sized(flows), 1);
    for p in &pkts {
        tr.packet(p, 0, now);
    }
    (tr, pkts)
}

/// Every packet of `pkts` through the pipeline at `now`; returns how many were accepted.
pub fn run_pipeline(e: &mut Engine, pkts: &[Vec<u8>], now: u64) -> usize {
    pkts.iter()
        .filter(|p| !matches!(e.process(p, Entry::Wire, now).fate, crate::Fate::Dropped(_)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ovs_frame_is_tracked_and_one_entry() {
        let mut t = Tracker::new(Settings::default(), 1);
        let f = ovs_frame(1);
        assert_eq!(f.len(), 42);
        for _ in 0..32 {
            assert!(t.packet(&f, 14, 1_000));
        }
        assert_eq!(t.ct.count(), 1);
    }

    #[test]
    fn tcp_connections_go_through_the_whole_close() {
        let mut t = Tracker::new(Settings::default(), 1);
        let pkts = tcp_connections(3, 1);
        for p in &pkts {
            assert!(t.packet(p, 0, 1_000), "every segment is in window");
        }
        assert_eq!(t.ct.count(), 3);
        let states: Vec<_> =
            t.ct.table()
                .iter_listing()
                .map(|(_, c)| c.proto.tcp_state_name())
                .collect();
        assert!(states.iter().all(|s| *s == Some("TIME_WAIT")), "{states:?}");
    }

    #[test]
    fn handshakes_leave_established_assured_entries_in_both_families() {
        for family in [Family::V4, Family::V6] {
            let mut t = Tracker::new(Settings::default(), 1);
            for i in 0..300 {
                for p in tcp_handshake(i, 1, family) {
                    assert!(t.packet(&p, 0, 1_000), "{family:?}: tracked");
                }
            }
            assert_eq!(t.ct.count(), 300);
            for (_, c) in t.ct.table().iter() {
                assert_eq!(c.original.family, family);
                assert_eq!(c.proto.tcp_state_name(), Some("ESTABLISHED"));
                assert!(c.assured());
            }
        }
    }

    #[test]
    fn a_batch_tracks_as_one_packet_after_another_does() {
        // IPv4 connections with IPv6 handshakes and datagrams without a tuple among them,
        // so that a batch's hashing meets groups of four IPv4 tuples, groups with IPv6, and
        // packets it cannot hash.
        let mut pkts = tcp_connections(20, 3);
        for i in 0..7 {
            let at = 5 + i * 9;
            pkts.splice(at..at, tcp_handshake(i, 9, Family::V6));
            pkts.insert(at + 2, ipv4([10, 9, 0, 1], [10, 9, 0, 2], 6, &[0; 4]));
        }
        let frames: Vec<&[u8]> = pkts.iter().map(|p| &p[..]).collect();
        let mut one = Tracker::new(Settings::default(), 5);
        let mut batched = Tracker::new(Settings::default(), 5);
        let n: usize = frames
            .iter()
            .map(|f| usize::from(one.packet(f, 0, 7)))
            .sum();
        assert_eq!(batched.batch(&frames, 0, 7), n);
        let list = |t: &Tracker| -> Vec<ctrack_conntrack::Conn> {
            t.ct.table().iter_listing().map(|(_, c)| *c).collect()
        };
        assert_eq!(list(&one), list(&batched));
    }

    #[test]
    fn a_batch_of_any_length_tracks_every_frame_once() {
        // Lengths around the stages' chunks, a frame that does not parse among them: the
        // first and last chunks, partial ones and the stages' lead are all met.
        let pkts = udp_flows(13, 1);
        let garbage = [0x45u8, 0, 0];
        for len in 0..=pkts.len() {
            let mut frames: Vec<&[u8]> = pkts[..len].iter().map(|p| &p[..]).collect();
            frames.insert(len / 2, &garbage);
            let mut t = Tracker::new(Settings::default(), 1);
            assert_eq!(t.batch(&frames, 0, 7), len, "{len} flows");
            assert_eq!(t.ct.count(), len);
            assert_eq!(t.batch(&frames, 0, 8), len, "{len} flows again");
            assert_eq!(t.ct.count(), len);
        }
    }

    #[test]
    fn a_burst_and_a_batch_track_as_one_packet_after_another_does() {
        // UDP flows, new and known, their replies (which change the entries' status and
        // make events), in groups of four and not, with TCP and a datagram without a tuple
        // among them, bursts of every length up to a few groups.
        let udp = udp_flows(9, 2);
        let replies: Vec<Vec<u8>> = (0..9)
            .map(|i| {
                datagram(
                    17,
                    [10, 200, 0, 1],
                    [10, 2, 0, 0],
                    53 + i % 7,
                    1024 + i,
                    0,
                    0,
                    0,
                    0,
                )
            })
            .collect();
        let mut pkts: Vec<Vec<u8>> = udp
            .iter()
            .chain(&replies)
            .chain(&udp)
            .chain(&udp[..5])
            .cloned()
            .collect();
        pkts.insert(11, tcp_connections(1, 4).remove(0));
        pkts.insert(19, ipv4([10, 9, 0, 1], [10, 9, 0, 2], 6, &[0; 4]));
        let frames: Vec<&[u8]> = pkts.iter().map(|p| &p[..]).collect();
        let list = |t: &Tracker| -> Vec<ctrack_conntrack::Conn> {
            t.ct.table().iter_listing().map(|(_, c)| *c).collect()
        };
        for len in [1, 3, 4, 7, 8, 13] {
            let mut one = Tracker::new(Settings::default(), 5);
            let mut burst = Tracker::new(Settings::default(), 5);
            let mut batch = Tracker::new(Settings::default(), 5);
            let (mut n, mut m, mut b) = (0, 0, 0);
            for (k, chunk) in frames.chunks(len).enumerate() {
                let now = 7 + k as u64 * 3_000_000_000;
                n += chunk.iter().filter(|f| one.packet(f, 0, now)).count();
                m += burst.burst(chunk, 0, now);
                b += batch.batch(chunk, 0, now);
            }
            assert_eq!((m, list(&burst)), (n, list(&one)), "bursts of {len}");
            assert_eq!((b, list(&batch)), (n, list(&one)), "batches of {len}");
            assert_eq!(burst.ct.stats(), one.ct.stats());
            assert_eq!(batch.ct.stats(), one.ct.stats());
            assert!(list(&one)
                .iter()
                .all(|c| c.original.proto != 17 || c.seen_reply()));
        }
    }

    #[test]
    fn a_prefetch_given_with_another_datagram_tracks_that_datagram() {
        let pkts = udp_flows(2, 1);
        let a = Datagram::parse(&pkts[0]).expect("a datagram");
        let b = Datagram::parse(&pkts[1]).expect("a datagram");
        let mut t = Tracker::new(Settings::default(), 1);
        let p = t.ct.prefetch(&a).expect("a tuple");
        let r = t.ct.conntrack_in_prefetched(&b, Hook::PreRouting, 7, &p);
        t.ct.confirm(&r, 7);
        let tuples: Vec<_> = t.ct.table().iter().map(|(_, c)| c.original).collect();
        assert_eq!(
            tuples,
            vec![ctrack_packet::Tuple::from_datagram(&b).expect("a tuple")]
        );
    }

    #[test]
    fn a_shuffle_is_a_permutation() {
        let mut v = shuffled(1000, 7);
        v.sort_unstable();
        assert_eq!(v, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn flows_are_distinct() {
        let mut t = Tracker::new(Settings::default(), 1);
        for p in udp_flows(5000, 1) {
            assert!(t.packet(&p, 0, 0));
        }
        assert_eq!(t.ct.count(), 5000);
    }
}
