//! `ctrack bench`: the workloads of `ctrack_engine::workload`, timed.
//!
//! Each workload prepares its packets untimed, then runs them; with `--threads N` every
//! thread runs the same work on flows of its own with a tracker of its own (flow-sharded
//! workers: a symmetric hash sends both directions of a connection to one worker, so the
//! hot path shares nothing), and the rate is all packets over the wall time. Bytes per
//! connection are read from the allocator: what the table holds after the inserts, less
//! what was allocated before the tracker existed, over the connections.

use crate::cli::BenchArgs;
use anyhow::{Context, Result};
use ctrack_conntrack::shard::Dealer;
use ctrack_conntrack::Settings;
use ctrack_engine::workload::{self, sized, Tracker};
use ctrack_engine::{Engine, Entry, Outcome};
use ctrack_packet::{Datagram, Family};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::Instant;

/// The system allocator, counting the bytes in use.
pub struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);
/// Counting is on only while a measurement of bytes runs: a counter every thread adds to
/// would otherwise be one cache line all threads fight over.
static COUNTING: AtomicBool = AtomicBool::new(false);

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        IN_USE.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as isize));
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new as isize - l.size() as isize);
        System.realloc(p, l, new)
    }
}

/// The bytes allocated and still held by what `build` makes and returns, over `per`:
/// everything allocated and freed inside is netted out. Run alone, as other threads'
/// allocations would count too.
fn bytes_held<T>(per: usize, build: impl FnOnce() -> T) -> (f64, T) {
    IN_USE.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let made = build();
    COUNTING.store(false, Ordering::Relaxed);
    (
        IN_USE.load(Ordering::Relaxed) as f64 / per.max(1) as f64,
        made,
    )
}

/// One measured figure.
struct Figure {
    workload: String,
    threads: usize,
    packets: u64,
    seconds: f64,
    bytes_per_conn: Option<f64>,
    note: String,
}

impl Figure {
    fn mpps(&self) -> f64 {
        self.packets as f64 / self.seconds / 1e6
    }
    fn ns(&self) -> f64 {
        self.seconds * 1e9 / self.packets as f64 * self.threads as f64
    }
}

/// Runs `work` on `threads` threads at once; each returns how many packets it ran.
fn parallel<W: Fn(usize) -> (u64, f64) + Sync>(threads: usize, work: W) -> (u64, f64) {
    on_threads(threads, work)
        .into_iter()
        .fold((0, 0.0f64), |(p, t), (q, u)| (p + q, t.max(u)))
}

/// What `work` returns on each of `threads` threads run at once.
fn on_threads<T: Send, W: Fn(usize) -> T + Sync>(threads: usize, work: W) -> Vec<T> {
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || work(t))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a benchmark thread panicked"))
            .collect()
    })
}

/// What `timed_passes` hands on: one packet, or a batch of them.
trait Packets {
    /// How many packets it is.
    fn packets(&self) -> u64 {
        1
    }
}

impl Packets for Vec<u8> {}
impl Packets for &[u8] {}
impl Packets for Vec<&[u8]> {
    fn packets(&self) -> u64 {
        self.len() as u64
    }
}

/// Whole passes over `pkts`, `each` given every packet (or batch), until at least `count`
/// packets have gone through: how many did, and the seconds they took.
fn timed_passes<P: Packets>(pkts: &[P], count: u64, mut each: impl FnMut(&P)) -> (u64, f64) {
    let start = Instant::now();
    let mut n = 0;
    let per_pass = pkts.iter().map(Packets::packets).sum::<u64>();
    while n < count && per_pass > 0 {
        pkts.iter().for_each(&mut each);
        n += per_pass;
    }
    (n, start.elapsed().as_secs_f64())
}

const NOW: u64 = 1_000_000_000;

fn ovs_single(threads: usize, count: u64) -> Figure {
    let (packets, seconds) = parallel(threads, |t| {
        let mut tr = Tracker::new(Settings::default(), 1);
        let frame = workload::ovs_frame(1 + t as u16);
        let batch = [frame; 32];
        let frames: Vec<&[u8]> = batch.iter().map(|f| &f[..]).collect();
        tr.packet(&frame, 14, NOW);
        // A batch at a time, as OVS's benchmark hands its tracker one.
        timed_passes(&[frames], count, |frames| {
            std::hint::black_box(tr.burst(frames, 14, NOW));
        })
    });
    Figure {
        workload: "ovs-single".into(),
        threads,
        packets,
        seconds,
        bytes_per_conn: None,
        note:
            "one UDP flow a thread, batches of 32 of the same 42-byte frame, hashed four at a time"
                .into(),
    }
}

/// Rounds of the `cpu` workload a unit counts: about as long as a hot-flow packet.
const CPU_ROUNDS: usize = 64;

/// The machine's own ceiling for threads against one: four registers mixed round after
/// round, touching no memory and sharing nothing, `count` units of [`CPU_ROUNDS`] rounds a
/// thread. What it gets from more cores is what compute-bound work that shares nothing
/// can get from them at that moment (a virtual machine's cores are not always whole
/// ones), so `ovs-single`'s threads are judged beside it.
fn cpu(threads: usize, count: u64) -> Figure {
    let (packets, seconds) = parallel(threads, |t| {
        let start = Instant::now();
        let mut v = [t as u64, 1, 2, 3];
        for _ in 0..count {
            for _ in 0..CPU_ROUNDS {
                v[0] = v[0].wrapping_add(v[1]).rotate_left(29);
                v[1] ^= v[2].wrapping_mul(0x9e37_79b9_7f4a_7c15);
                v[2] = v[2].wrapping_add(v[3]).rotate_left(17);
                v[3] ^= v[0];
            }
            // Kept from being folded away or hoisted out of the timed span.
            v = std::hint::black_box(v);
        }
        (count, start.elapsed().as_secs_f64())
    });
    Figure {
        workload: "cpu".into(),
        threads,
        packets,
        seconds,
        bytes_per_conn: None,
        note: format!("no packets: {CPU_ROUNDS} rounds of register arithmetic a unit"),
    }
}

/// What kind of connection a memory measurement makes.
#[derive(Clone, Copy)]
enum ConnKind {
    /// A UDP flow's first packet.
    Udp,
    /// An established TCP connection (its handshake) over this family.
    Tcp(Family),
}

/// Bytes the allocator holds for a tracker of `n` connections of `kind`, over the
/// connections: entries, index, timers, all of it, and the seconds it took. The packets
/// are made one connection at a time, inside the measurement, and freed there, so they net
/// out. Measured alone, as other threads' allocations would count too.
fn conn_bytes(n: usize, kind: ConnKind, acct: bool) -> (f64, f64) {
    let start = Instant::now();
    let (bytes, tracker) = bytes_held(n, || {
        let mut tr = Tracker::new(Settings { acct, ..sized(n) }, 1);
        for i in 0..n {
            match kind {
                ConnKind::Udp => {
                    tr.packet(&workload::udp_flows_from(i, 1, 250)[0], 0, NOW);
                }
                ConnKind::Tcp(family) => {
                    for p in workload::tcp_handshake(i, 250, family) {
                        tr.packet(&p, 0, NOW);
                    }
                }
            }
        }
        tr
    });
    assert_eq!(tracker.ct.count(), n, "every connection made one entry");
    (bytes, start.elapsed().as_secs_f64())
}

/// Bytes a UDP connection holds in a table of `flows`.
fn bytes_per_conn(flows: usize) -> f64 {
    conn_bytes(flows, ConnKind::Udp, false).0
}

/// Bytes a connection holds, all in, for established TCP over IPv4 and IPv6 and with
/// accounting on, and for UDP.
fn memory(n: usize) -> Vec<Figure> {
    let kinds = [
        ("tcp ipv4", ConnKind::Tcp(Family::V4), false),
        ("tcp ipv6", ConnKind::Tcp(Family::V6), false),
        ("tcp ipv4 acct", ConnKind::Tcp(Family::V4), true),
        ("udp ipv4", ConnKind::Udp, false),
    ];
    kinds
        .iter()
        .map(|&(name, kind, acct)| {
            let (bytes, seconds) = conn_bytes(n, kind, acct);
            Figure {
                workload: format!("memory {name} {n}"),
                threads: 1,
                packets: n as u64,
                seconds,
                bytes_per_conn: Some(bytes),
                note: "connections made (the rate includes making their packets)".into(),
            }
        })
        .collect()
}

fn many_flows(
    threads: usize,
    flows: usize,
    random: bool,
    batched: bool,
    lookups: u64,
    bytes: f64,
) -> Vec<Figure> {
    let order = match (random, batched) {
        (false, _) => "sequential",
        (true, false) => "random",
        (true, true) => "random batched",
    };
    // Flow-sharded workers: N flows a thread, dealt to the threads by the symmetric hash
    // as a receive-side scaling would, each worker's tracker told its place.
    let dealer = Dealer::new(threads as u32, 1);
    let mut dealt = vec![Vec::new(); threads];
    for p in workload::udp_flows(flows * threads, 1) {
        let w = Datagram::parse(&p).map_or(0, |d| dealer.worker_of(&d));
        dealt[w as usize].push(p);
    }
    let results = on_threads(threads, |t| {
        let pkts = &dealt[t];
        let flows = pkts.len();
        let idx = if random {
            workload::shuffled(flows, 7 + t as u64)
        } else {
            (0..flows as u32).collect()
        };
        let mut tr = Tracker::new(sized(flows), 1);
        tr.ct.set_affinity(dealer, t as u32);
        // Batched, the new flows come in from a ring in batches, as the lookups do after.
        let arrivals =
            batched.then(|| workload::Ring::new(pkts, &(0..flows as u32).collect::<Vec<_>>()));
        let arrivals = arrivals.as_ref().map(workload::Ring::frames);
        let start = Instant::now();
        match &arrivals {
            Some(frames) => {
                tr.batch(frames, 0, NOW);
            }
            None => {
                for p in pkts {
                    tr.packet(p, 0, NOW);
                }
            }
        }
        let insert = start.elapsed().as_secs_f64();
        let ring = workload::Ring::new(pkts, &idx);
        let order = ring.frames();
        let (n, seconds) = if batched {
            let start = Instant::now();
            let mut n = 0u64;
            while n < lookups {
                std::hint::black_box(tr.batch(&order, 0, NOW + 1));
                n += flows as u64;
            }
            (n, start.elapsed().as_secs_f64())
        } else {
            timed_passes(&order, lookups, |p| {
                std::hint::black_box(tr.packet(p, 0, NOW + 1));
            })
        };
        (flows as u64, insert, n, seconds)
    });
    let ins: u64 = results.iter().map(|r| r.0).sum();
    let ins_t = results.iter().map(|r| r.1).fold(0.0, f64::max);
    let look: u64 = results.iter().map(|r| r.2).sum();
    let look_t = results.iter().map(|r| r.3).fold(0.0, f64::max);
    vec![
        Figure {
            workload: if batched {
                format!("many-flows-insert {flows} batched")
            } else {
                format!("many-flows-insert {flows}")
            },
            threads,
            packets: ins,
            seconds: ins_t,
            bytes_per_conn: Some(bytes),
            note: if batched {
                "new UDP connections into an empty table, from a ring in staggered chunks of 8"
                    .into()
            } else {
                "new UDP connections into an empty table".into()
            },
        },
        Figure {
            workload: format!("many-flows {flows} {order}"),
            threads,
            packets: look,
            seconds: look_t,
            bytes_per_conn: Some(bytes),
            note: if batched {
                "lookups at random in staggered chunks of 8, index slots and entries prefetched"
                    .to_string()
            } else {
                format!("lookups of established UDP flows in {order} order")
            },
        },
    ]
}

fn tcp_churn(threads: usize, conns: usize) -> Figure {
    let (packets, seconds) = parallel(threads, |t| {
        let pkts = workload::tcp_connections(conns, 1 + t as u8);
        let mut tr = Tracker::new(sized(conns), 1);
        let start = Instant::now();
        for p in &pkts {
            std::hint::black_box(tr.packet(p, 0, NOW));
        }
        (pkts.len() as u64, start.elapsed().as_secs_f64())
    });
    Figure {
        workload: "tcp-churn".into(),
        threads,
        packets,
        seconds,
        bytes_per_conn: None,
        note: format!("{conns} TCP connections a thread, 10 segments each, handshake to FIN"),
    }
}

fn syn_flood(threads: usize, syns: usize) -> Figure {
    let (packets, seconds) = parallel(threads, |t| {
        let full = 65536usize;
        let settings = Settings {
            buckets: 65536,
            max: full as u32,
            ..Settings::default()
        };
        let mut tr = Tracker::new(settings, 1);
        for p in workload::syns(full, 100 + t as u8) {
            tr.packet(&p, 0, NOW);
        }
        let flood = workload::syns(syns, 1 + t as u8);
        let start = Instant::now();
        for p in &flood {
            std::hint::black_box(tr.packet(p, 0, NOW));
        }
        (flood.len() as u64, start.elapsed().as_secs_f64())
    });
    Figure {
        workload: "syn-flood".into(),
        threads,
        packets,
        seconds,
        bytes_per_conn: None,
        note: "new SYNs against a table full of unassured SYN_SENT entries (early drop)".into(),
    }
}

/// Whole passes over its packets each subject of `pipeline` runs before the next takes its
/// turn: long enough that a turn's first pass, which finds the caches holding another
/// subject's table, is a twentieth of it; short enough (tens of milliseconds) that the
/// machine's speed, which drifts over seconds here, is the same for all of them.
const PIPELINE_PASSES_A_TURN: u64 = 20;

/// Tracking alone and the pipeline with three rulesets (the 10 rules twice: with walks
/// kept per connection, as the engine runs, and walked for every packet), on the same
/// packets in the same order, timed in alternating turns so that their ratios do not depend
/// on when each ran.
fn pipeline_vs_tracker(threads: usize, flows: usize, lookups: u64) -> Vec<Figure> {
    const SUBJECTS: [(&str, &str); 5] = [
        (
            "pipeline-conntrack-alone",
            "connection tracking alone on the pipeline's packets: its baseline",
        ),
        ("pipeline", "the whole pipeline, empty tables"),
        (
            "pipeline-10-rules",
            "the whole pipeline, FORWARD of 9 non-matching rules and a --ctstate ACCEPT",
        ),
        (
            "pipeline-10-rules-all-tables",
            "the same beside empty raw, mangle and nat tables",
        ),
        (
            "pipeline-10-rules-walked",
            "the 10 rules walked for every packet: no walk kept for a connection",
        ),
    ];
    let per_thread = on_threads(threads, |t| {
        let salt = 1 + t as u8;
        // The baseline of the pipeline's cost: tracking alone, with the same settings.
        let (mut alone, pkts) = workload::established_tracker(flows, salt, NOW);
        let mut engines = [
            ctrack_rules::Ruleset::default(),
            workload::linear_ruleset(9),
            workload::linear_ruleset_all_tables(9),
            workload::linear_ruleset(9),
        ]
        .map(|rules| workload::established_pipeline(flows, salt, rules, NOW).0);
        engines[3].remember_walks(false);
        let turn = pkts.len() as u64 * PIPELINE_PASSES_A_TURN;
        let mut totals = [(0u64, 0f64); SUBJECTS.len()];
        let mut add = |i: usize, (n, secs): (u64, f64)| {
            totals[i].0 += n;
            totals[i].1 += secs;
        };
        let mut done = 0;
        let mut out = Outcome::default();
        while done < lookups && !pkts.is_empty() {
            let count = turn.min(lookups - done);
            let ran = timed_passes(&pkts, count, |p| {
                std::hint::black_box(alone.packet(p, 0, NOW + 1));
            });
            done += ran.0;
            add(0, ran);
            for (i, e) in engines.iter_mut().enumerate() {
                add(
                    i + 1,
                    timed_passes(&pkts, count, |p| {
                        e.process_into(p, Entry::Wire, NOW + 1, &mut out);
                        std::hint::black_box(&out);
                    }),
                );
            }
        }
        totals
    });
    // As `parallel` counts: every thread's packets, over the longest thread's time.
    SUBJECTS
        .iter()
        .enumerate()
        .map(|(i, (name, note))| {
            let (packets, seconds) = per_thread
                .iter()
                .fold((0, 0.0f64), |(p, t), x| (p + x[i].0, t.max(x[i].1)));
            Figure {
                workload: format!("{name} {flows}"),
                threads,
                packets,
                seconds,
                bytes_per_conn: None,
                note: (*note).into(),
            }
        })
        .collect()
}

fn replay(threads: usize, path: &std::path::Path, target: usize) -> Result<Vec<Figure>> {
    let start = Instant::now();
    let cap = ctrack_capture::Capture::open(path)?;
    let host = ctrack_engine::Host::default();
    let mut frames: Vec<(u64, Vec<u8>, Entry)> = Vec::new();
    for f in ctrack_capture::merge(std::slice::from_ref(&cap)) {
        if let Ok((ip, dir)) = f.ip() {
            // Entered as `ctrack replay` enters a frame without a copy to skip: the host's
            // own (sent, or from a loopback address on `lo`) at OUTPUT, the rest from the
            // wire.
            let d = Datagram::parse(ip).ok();
            let own = dir == Some(ctrack_capture::Direction::Outgoing)
                || (dir.is_none()
                    && d.is_some_and(|d| host.is_local(d.src, d.family))
                    && !crate::drive::loopback_off_lo(&f, dir, d.as_ref()));
            let entry = if own { Entry::Host } else { Entry::Wire };
            frames.push((f.time, ip.to_vec(), entry));
        }
    }
    let read = start.elapsed().as_secs_f64();
    let n = frames.len().max(1);
    let copies = target.div_ceil(n);
    let span = frames.last().map_or(0, |f| f.0) - frames.first().map_or(0, |f| f.0);
    // Each copy an hour after the last, so the previous copy's connections have expired.
    let shift = span + 3_600_000_000_000;
    let frames = &frames;
    let (packets, seconds) = parallel(threads, |_| {
        let mut e = Engine::new(Settings::default(), ctrack_engine::Host::default(), 1);
        let start = Instant::now();
        let mut count = 0u64;
        let mut out = Outcome::default();
        for c in 0..copies as u64 {
            for (t, ip, entry) in frames {
                e.process_into(ip, *entry, t + c * shift, &mut out);
                std::hint::black_box(&out);
                count += 1;
            }
        }
        (count, start.elapsed().as_secs_f64())
    });
    let name = path
        .file_name()
        .map_or(String::new(), |f| f.to_string_lossy().into_owned());
    Ok(vec![
        Figure {
            workload: format!("replay-read {name}"),
            threads: 1,
            packets: n as u64,
            seconds: read,
            bytes_per_conn: None,
            note: "reading the file: decompress, pcap records, link layer".into(),
        },
        Figure {
            workload: format!("replay {name}"),
            threads,
            packets,
            seconds,
            bytes_per_conn: None,
            note: format!("the whole pipeline, the capture {copies} times over, an hour apart"),
        },
    ])
}

/// Runs the workloads; returns the exit code.
pub fn run(args: BenchArgs) -> Result<i32> {
    let all = [
        "ovs-single",
        "many-flows",
        "memory",
        "tcp-churn",
        "syn-flood",
        "pipeline",
        "replay",
        "cpu",
    ];
    let chosen: Vec<&str> = if args.workloads.is_empty() {
        all.to_vec()
    } else {
        args.workloads.iter().map(String::as_str).collect()
    };
    let threads = args.threads.max(1);
    let mut figures = Vec::new();
    for w in chosen {
        match w {
            "ovs-single" => figures.push(ovs_single(threads, args.count)),
            "cpu" => figures.push(cpu(threads, args.count)),
            "many-flows" => {
                for &n in &args.flows {
                    // The same table for every order: its bytes measured once.
                    let bytes = bytes_per_conn(n);
                    for (random, batched) in [(false, false), (true, false), (true, true)] {
                        let lookups = args.count.max(n as u64);
                        figures.extend(many_flows(threads, n, random, batched, lookups, bytes));
                    }
                }
            }
            "memory" => {
                for &n in &args.flows {
                    figures.extend(memory(n));
                }
            }
            "tcp-churn" => figures.push(tcp_churn(threads, 100_000)),
            "syn-flood" => figures.push(syn_flood(threads, 1_000_000)),
            "pipeline" => figures.extend(pipeline_vs_tracker(threads, 10_000, args.count)),
            "replay" => {
                let path = args.capture.clone().unwrap_or_else(|| {
                    std::path::PathBuf::from("../shared/corpus/zeek-echo-connections.pcap.gz")
                });
                figures.extend(
                    replay(threads, &path, 1_000_000)
                        .with_context(|| format!("replay workload on {}", path.display()))?,
                );
            }
            other => anyhow::bail!("unknown workload `{other}`: one of {}", all.join(", ")),
        }
    }
    for f in &figures {
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "workload": f.workload,
                    "threads": f.threads,
                    "packets": f.packets,
                    "mpps": (f.mpps() * 1000.0).round() / 1000.0,
                    "ns_per_packet": (f.ns() * 10.0).round() / 10.0,
                    "bytes_per_conn": f.bytes_per_conn.map(|b| b.round()),
                })
            );
        }
    }
    if !args.json {
        println!(
            "{:<36} {:>7} {:>11} {:>8} {:>9} {:>10}  what",
            "workload", "threads", "packets", "Mpps", "ns/pkt", "bytes/conn"
        );
        for f in &figures {
            println!(
                "{:<36} {:>7} {:>11} {:>8.2} {:>9.1} {:>10}  {}",
                f.workload,
                f.threads,
                f.packets,
                f.mpps(),
                f.ns(),
                f.bytes_per_conn
                    .map_or("-".to_string(), |b| format!("{b:.0}")),
                f.note
            );
        }
    }
    Ok(0)
}
