//! The replay driver: capture frames into the engine, each exactly once, at PREROUTING or
//! OUTPUT, as the kernel saw them.
//!
//! It decides each frame's entry from its direction and the host's addresses, skips the
//! outgoing copies of forwarded packets and looped-back copies, joins the host's own GSO
//! segments back into the packets conntrack counted, and hands every packet to a `feed`
//! callback that runs it through the engine and records what it needs. `ctrack replay` and
//! `ctrack plan` drive captures through it alike.

use crate::copies::ForwardedCopies;
use crate::gso::Coalescer;
use anyhow::Result;
use ctrack_capture::{merge, Capture, Direction, Frame, LinkMeta};
use ctrack_engine::{DropReason, Engine, Entry, Fate, Outcome};
use ctrack_packet::{Addr, Datagram, Family};
use ctrack_plan::plot::Timeline;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// Reads the capture files, on up to `threads` threads (each file is read and, when
/// gzip-compressed, inflated by one thread). They come back in the order given.
pub fn open_captures(paths: &[PathBuf], threads: usize) -> Result<Vec<Capture>> {
    let open = |p: &PathBuf| Capture::open(p).map_err(anyhow::Error::from);
    if threads <= 1 || paths.len() <= 1 {
        return paths.iter().map(open).collect();
    }
    let per_thread = paths.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(per_thread)
            .map(|chunk| s.spawn(move || chunk.iter().map(open).collect::<Result<Vec<_>>>()))
            .collect();
        let mut caps = Vec::with_capacity(paths.len());
        for h in handles {
            caps.extend(h.join().expect("reading a capture does not panic")?);
        }
        Ok(caps)
    })
}

/// What the driver did not feed, and why.
#[derive(Default)]
pub struct Skipped {
    /// GSO segments joined into one packet.
    pub coalesced: u64,
    /// Outgoing copies of forwarded packets.
    pub forwarded_copies: u64,
    /// Looped-back copies of the host's own packets.
    pub loopback_copies: u64,
    /// Frames that are not IP.
    pub not_ip: u64,
    /// Frames whose link header could not be read.
    pub link_errors: u64,
}

/// How to drive: where to stop, when to zero the rule counters, and time compression.
#[derive(Clone, Copy, Debug, Default)]
pub struct DriveOpts {
    /// Stop after the last frame at or before this time (ns).
    pub at: Option<u64>,
    /// `iptables -Z` at this time (ns).
    pub zero_at: Option<u64>,
    /// Time compression: from the first instant (ns), time runs N times faster.
    pub time_scale: Option<(u64, u32)>,
}

/// What a drive ends with.
pub struct Driven {
    /// What was skipped.
    pub skipped: Skipped,
    /// The last frame's time (ns).
    pub last: u64,
}

/// Drives every frame of `caps`, merged by time, through `feed` (engine, frame index, time,
/// IP datagram, entry, link header), which returns the leaving packet when a helper rewrote
/// it: its outgoing copy looks like that. `progress` shows a bar on a terminal.
pub fn drive(
    caps: &[Capture],
    engine: &mut Engine,
    opts: &DriveOpts,
    progress: bool,
    mut feed: impl FnMut(
        &mut Engine,
        usize,
        u64,
        &[u8],
        Entry,
        Option<[u8; 14]>,
    ) -> Result<Option<Vec<u8>>>,
) -> Result<Driven> {
    let total: usize = caps.iter().map(Capture::len).sum();
    let bar = if progress {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} replay {bar:30} {pos}/{len} packets {per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    let mut skipped = Skipped::default();
    let mut last = 0u64;
    let if_macs = learn_if_macs(caps);
    let mut gso = Coalescer::default();
    let mut copies = ForwardedCopies::default();
    // The host's packets to itself, sent: their looped-back copy may follow.
    let mut looped = ForwardedCopies::default();
    let mut ready = Vec::new();
    let mut zero_at = opts.zero_at;
    for (n, mut frame) in merge(caps).enumerate() {
        if let Some((t0, n)) = opts.time_scale {
            frame.time = t0 + frame.time.saturating_sub(t0) / u64::from(n.max(1));
        }
        if opts.at.is_some_and(|t| frame.time > t) {
            break;
        }
        if zero_at.is_some_and(|z| frame.time >= z) {
            zero_at = None;
            gso.flush(&mut ready);
            for (t, index, bytes) in ready.drain(..) {
                feed(engine, index, t, &bytes, Entry::Host, None)?;
            }
            engine.zero_counters();
        }
        if n % 4096 == 0 {
            bar.set_position(n as u64);
        }
        last = last.max(frame.time);
        let (ip, dir) = match frame.ip() {
            Ok(v) => v,
            Err(ctrack_capture::LinkError::NotIp(_)) => {
                skipped.not_ip += 1;
                continue;
            }
            Err(_) => {
                skipped.link_errors += 1;
                continue;
            }
        };
        let header = Datagram::parse(ip).ok();
        let is_local =
            |a: Option<(Addr, Family)>| a.is_some_and(|(a, f)| engine.host().is_local(a, f));
        let src = header.map(|d| (d.src, d.family));
        let dst = header.map(|d| (d.dst, d.family));
        let entry = match dir {
            _ if loopback_off_lo(&frame, dir, header.as_ref()) => Entry::Wire,
            Some(Direction::Outgoing) => {
                if header.is_some_and(|d| copies.is_copy(&d, frame.time)) {
                    // The copy of a forwarded packet leaving after POSTROUTING (translated
                    // already when the connection is NATed).
                    skipped.forwarded_copies += 1;
                    continue;
                }
                // Sent by the host: from its own address, or in another's name (a
                // REJECT's reset, say).
                if let Some(d) = header.filter(|_| is_local(src) && is_local(dst)) {
                    looped.expect_copy(&d, frame.time);
                }
                Entry::Host
            }
            Some(Direction::Incoming) if is_local(src) && is_local(dst) => {
                if header.is_some_and(|d| looped.is_copy(&d, frame.time)) {
                    // Looped back: conntrack saw it at OUTPUT already.
                    skipped.loopback_copies += 1;
                    continue;
                }
                // A packet the host sent itself, captured only as it came in on `lo`
                // (packet sockets are not shown loopback's outgoing copies on every
                // kernel): conntrack met it at OUTPUT.
                Entry::Host
            }
            Some(Direction::Incoming) => {
                // Even one addressed to the host may leave again: to a NAT address, it is
                // translated back and forwarded.
                if let Some(d) = header {
                    copies.expect_copy(&d, frame.time);
                }
                Entry::Wire
            }
            None if is_local(src) => Entry::Host,
            None => Entry::Wire,
        };
        if entry == Entry::Host {
            match engine.untranslate_host(ip) {
                Some(pre) => gso.offer(frame.time, n, &pre, &mut ready),
                None => gso.offer(frame.time, n, ip, &mut ready),
            }
        } else {
            gso.flush(&mut ready);
        }
        for (t, index, bytes) in ready.drain(..) {
            feed(engine, index, t, &bytes, Entry::Host, None)?;
        }
        if entry == Entry::Wire {
            let mac = mac_header(frame.link(), &if_macs);
            if let Some(rewritten) = feed(engine, n, frame.time, ip, entry, mac)? {
                // Its outgoing copy is the rewritten packet.
                if let Ok(d) = Datagram::parse(&rewritten) {
                    copies.expect_copy(&d, frame.time);
                }
            }
        }
    }
    gso.flush(&mut ready);
    for (t, index, bytes) in ready.drain(..) {
        feed(engine, index, t, &bytes, Entry::Host, None)?;
    }
    bar.finish_and_clear();
    skipped.coalesced = gso.merged;
    Ok(Driven { skipped, last })
}

/// Host addresses: the ones given, or those that send (outgoing) but never arrive as a
/// source from outside (incoming), learned from the captures' direction information.
pub fn learn_locals(caps: &[Capture]) -> Vec<(Addr, Family)> {
    let mut out_src = BTreeSet::new();
    let mut in_src = BTreeSet::new();
    for f in merge(caps) {
        let Ok((ip, Some(dir))) = f.ip() else {
            continue;
        };
        let Ok(d) = Datagram::parse(ip) else { continue };
        if answers_for_another(&d) {
            continue;
        }
        match dir {
            Direction::Outgoing => out_src.insert((d.src, d.family)),
            Direction::Incoming => in_src.insert((d.src, d.family)),
        };
    }
    out_src.difference(&in_src).copied().collect()
}

/// True for a packet with a loopback address that arrived on an interface other than `lo`,
/// where the host refuses it (a martian). Loopback addresses travel on `lo` alone, whose
/// frames carry an all-zero hardware address: a frame that names another sender came in
/// from the wire.
pub fn loopback_off_lo(
    frame: &Frame<'_>,
    dir: Option<Direction>,
    d: Option<&Datagram<'_>>,
) -> bool {
    dir != Some(Direction::Outgoing)
        && frame.link().src.is_some_and(|mac| mac != [0; 6])
        && d.is_some_and(|d| d.src.is_loopback(d.family) || d.dst.is_loopback(d.family))
}

/// A TCP reset or an ICMP error: hosts send these in another's name (REJECT), so their
/// source says nothing about which addresses are the host's.
fn answers_for_another(d: &Datagram<'_>) -> bool {
    let l4 = d.l4();
    match d.proto {
        ctrack_packet::proto::TCP => l4.get(13).is_some_and(|f| f & 0x04 != 0),
        ctrack_packet::proto::ICMP => l4.first().is_some_and(|&t| matches!(t, 3 | 11 | 12)),
        ctrack_packet::proto::ICMPV6 => l4.first().is_some_and(|&t| t < 128),
        _ => false,
    }
}

/// Each interface's own hardware address, from what a cooked capture saw it send.
fn learn_if_macs(caps: &[Capture]) -> HashMap<u32, [u8; 6]> {
    let mut out = HashMap::new();
    for f in merge(caps) {
        let Ok((_, Some(Direction::Outgoing))) = f.ip() else {
            continue;
        };
        let link = f.link();
        if let (Some(i), Some(mac)) = (link.ifindex, link.src) {
            out.entry(i).or_insert(mac);
        }
    }
    out
}

/// The 14 bytes the kernel prints as `MAC=`: destination, source, EtherType.
fn mac_header(link: LinkMeta, if_macs: &HashMap<u32, [u8; 6]>) -> Option<[u8; 14]> {
    let dst = link
        .dst
        .or_else(|| link.ifindex.and_then(|i| if_macs.get(&i).copied()))?;
    let src = link.src?;
    let mut h = [0u8; 14];
    h[..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..].copy_from_slice(&link.ethertype.to_be_bytes());
    Some(h)
}

/// Exit code 3, with a message for each, when a capture was damaged (what preceded the
/// damage was replayed); else 0.
pub fn damage_code(caps: &[Capture]) -> i32 {
    let mut code = 0;
    for c in caps {
        if let Some(d) = c.damage() {
            eprintln!("ctrack: {d} ({} packets before it were replayed)", c.len());
            code = 3;
        }
    }
    code
}

/// The table over a replay, packet by packet: entries, new connections a second and
/// table-full drops (`--plot` of replay and plan, and the plan's sizing).
pub struct Recorder {
    /// What was recorded.
    pub timeline: Timeline,
    t0: Option<u64>,
    created: u64,
}

impl Recorder {
    /// A recorder for a table limited to `limit` entries.
    pub fn new(limit: u32) -> Recorder {
        Recorder {
            timeline: Timeline {
                limit: u64::from(limit),
                ..Timeline::default()
            },
            t0: None,
            created: 0,
        }
    }

    /// Records what one packet did; true when it made a new entry (a connection is new
    /// when its entry enters the table).
    pub fn record(&mut self, engine: &Engine, time: u64, o: &Outcome) -> bool {
        let t = time.saturating_sub(*self.t0.get_or_insert(time)) as f64 / 1e9;
        if o.fate == Fate::Dropped(DropReason::TableFull) {
            self.timeline.drops.push(t);
        }
        let created = engine.conntrack().created();
        let new = created > self.created;
        for _ in self.created..created {
            self.timeline.new_connection(t);
        }
        self.created = created;
        self.timeline.sample(t, engine.conntrack().count() as u64);
        new
    }
}
