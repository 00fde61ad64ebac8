//! Established-flow lookups and new-connection churn through the whole pipeline
//! (parse, conntrack in, hooks, confirm), and the tracker alone on `ctrack bench`'s own
//! workloads (`ctrack_engine::workload`). Figures are recorded in BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ctrack_conntrack::Settings;
use ctrack_engine::{Engine, Entry, Host};
use ctrack_packet::checksum;

/// An IPv4/UDP packet with correct checksums.
fn udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = checksum::finish(checksum::sum(&p, 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sp.to_be_bytes());
    u[2..4].copy_from_slice(&dp.to_be_bytes());
    u[4..6].copy_from_slice(&8u16.to_be_bytes());
    let acc = checksum::pseudo_header(
        ctrack_packet::Family::V4,
        ctrack_packet::Addr::v4(src),
        ctrack_packet::Addr::v4(dst),
        17,
        8,
    );
    let c = checksum::finish(checksum::sum(&u, acc));
    u[6..8].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&u);
    p
}

fn flows(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            udp(
                [10, 1, (i >> 16) as u8, (i >> 8) as u8],
                [10, 2, 0, 1],
                1024 + (i & 0xff) as u16,
                53,
            )
        })
        .collect()
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("established");
    for n in [1usize, 10_000] {
        let pkts = flows(n);
        let mut e = Engine::new(Settings::default(), Host::default(), 1);
        for p in &pkts {
            e.process(p, Entry::Wire, 0);
        }
        g.throughput(Throughput::Elements(pkts.len() as u64));
        g.bench_function(format!("{n}-flows"), |b| {
            b.iter(|| {
                for p in &pkts {
                    std::hint::black_box(e.process(p, Entry::Wire, 1_000_000));
                }
            })
        });
    }
    g.finish();
}

fn churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("new-connections");
    let pkts = flows(10_000);
    g.throughput(Throughput::Elements(pkts.len() as u64));
    g.bench_function("10000-new-udp", |b| {
        b.iter_batched(
            || Engine::new(Settings::default(), Host::default(), 1),
            |mut e| {
                for p in &pkts {
                    std::hint::black_box(e.process(p, Entry::Wire, 0));
                }
                e
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn rules(c: &mut Criterion) {
    let mut g = c.benchmark_group("ruleset");
    let pkts = flows(1_000);
    for n in [10usize, 1_000] {
        let mut e = Engine::with_rules(
            Settings::default(),
            Host::default(),
            1,
            ctrack_engine::workload::linear_ruleset(n),
        );
        for p in &pkts {
            e.process(p, Entry::Wire, 0);
        }
        g.throughput(Throughput::Elements(pkts.len() as u64));
        g.bench_function(format!("{n}-rules-established"), |b| {
            b.iter(|| {
                for p in &pkts {
                    std::hint::black_box(e.process(p, Entry::Wire, 1_000_000));
                }
            })
        });
    }
    g.finish();
}

/// Connection tracking alone, on the workloads `ctrack bench` names.
fn tracker(c: &mut Criterion) {
    use ctrack_engine::workload::{self, Tracker};
    let mut g = c.benchmark_group("tracker");
    let frame = workload::ovs_frame(1);
    let batch = [frame; 32];
    let mut t = Tracker::new(Settings::default(), 1);
    t.packet(&frame, 14, 0);
    g.throughput(Throughput::Elements(32));
    g.bench_function("ovs-single", |b| {
        b.iter(|| {
            for f in &batch {
                std::hint::black_box(t.packet(f, 14, 1));
            }
        })
    });
    let pkts = workload::udp_flows(10_000, 1);
    let ring = workload::Ring::new(&pkts, &workload::shuffled(pkts.len(), 7));
    let order = ring.frames();
    let sized = Settings {
        buckets: 16_384,
        ..Settings::default()
    };
    let mut t = Tracker::new(sized.clone(), 1);
    for p in &pkts {
        t.packet(p, 0, 0);
    }
    g.throughput(Throughput::Elements(order.len() as u64));
    g.bench_function("many-flows-10000-random", |b| {
        b.iter(|| {
            for p in &order {
                std::hint::black_box(t.packet(p, 0, 1));
            }
        })
    });
    g.bench_function("many-flows-10000-random-batched", |b| {
        b.iter(|| std::hint::black_box(t.batch(&order, 0, 1)))
    });
    let conns = workload::tcp_connections(1_000, 1);
    g.throughput(Throughput::Elements(conns.len() as u64));
    g.bench_function("tcp-churn-1000", |b| {
        b.iter_batched(
            || Tracker::new(sized.clone(), 1),
            |mut t| {
                for p in &conns {
                    std::hint::black_box(t.packet(p, 0, 0));
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, established, churn, rules, tracker);
criterion_main!(benches);
