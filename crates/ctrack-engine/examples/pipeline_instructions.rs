//! One pipeline workload of `ctrack bench pipeline`, run for a given number of packets and
//! nothing else, so that an instruction counter sees only it: run it under
//! `valgrind --tool=callgrind` at two counts and divide the difference by the difference
//! of the counts (BENCHMARKS.md gives the figures).
//!
//! ```sh
//! cargo build --release -p ctrack-engine --example pipeline_instructions
//! valgrind --tool=callgrind target/release/examples/pipeline_instructions rules 200000
//! ```
//!
//! Workloads: `insert` and `insert-batched` (PACKETS new UDP connections into an empty
//! table sized for them, tracked alone, one by one or as a batch; count only the inserts:
//! `--toggle-collect='*insert_all*'`), `alone`
//! (connection tracking alone), `empty` (the pipeline, no ruleset),
//! `rules` (FORWARD of 9 non-matching rules and a `--ctstate` ACCEPT), `rules-walked` (the
//! same walked for every packet, no walk kept per connection), `rules-100` (99 rules before
//! the ACCEPT), `all-tables` (the 10 rules beside empty raw, mangle and nat tables), `jumps`
//! (FORWARD jumping to three user chains that return, among ten named as Docker's and ufw's
//! are), `docker` and `docker-walked` (Docker's FORWARD chains, interfaces and all, the
//! flows going in to a published port, with walks kept and without).

use ctrack_engine::{workload, Engine, Entry, Host, Iface, Outcome};
use ctrack_packet::{Addr, Family};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(workload), Some(count)) = (args.next(), args.next().and_then(|n| n.parse().ok()))
    else {
        eprintln!(
            "usage: pipeline_instructions \
             insert|insert-batched|alone|empty|rules|rules-walked|rules-100|all-tables|jumps|docker|docker-walked \
             PACKETS"
        );
        std::process::exit(2);
    };
    let count: usize = count;
    // As `ctrack bench pipeline`: 10,000 established flows, room for all of them.
    let (flows, salt, now) = (10_000, 1, 1_000_000_000);
    if workload == "insert" || workload == "insert-batched" {
        // New UDP flows into an empty table sized for them, as `many-flows-insert`.
        let pkts = workload::udp_flows(count, salt);
        let frames: Vec<&[u8]> = pkts.iter().map(Vec::as_slice).collect();
        let mut tracker = workload::Tracker::new(workload::sized(count), 1);
        insert_all(&mut tracker, &frames, workload == "insert-batched", now);
        assert_eq!(tracker.ct.count(), count, "every flow made one entry");
        return;
    }
    if workload == "alone" {
        let (mut tracker, pkts) = workload::established_tracker(flows, salt, now);
        for p in pkts.iter().cycle().take(count) {
            std::hint::black_box(tracker.packet(p, 0, now + 1));
        }
        return;
    }
    let rules = match workload.as_str() {
        "empty" => ctrack_rules::Ruleset::default(),
        "rules" | "rules-walked" => workload::linear_ruleset(9),
        "rules-100" => workload::linear_ruleset(99),
        "all-tables" => workload::linear_ruleset_all_tables(9),
        "jumps" => jumps(),
        "docker" | "docker-walked" => docker(),
        other => {
            eprintln!("unknown workload `{other}`");
            std::process::exit(2);
        }
    };
    let (mut engine, pkts) = if workload.starts_with("docker") {
        // The flows come in on eth0 and go out on docker0.
        let iface = |name: &str, addr: [u8; 4]| Iface {
            name: name.into(),
            addr: Addr::v4(addr),
            prefix: 16,
            family: Family::V4,
        };
        let host = Host::default().with_ifaces(vec![
            iface("eth0", [10, salt, 255, 254]),
            iface("docker0", [10, 200, 255, 254]),
        ]);
        let pkts = workload::udp_flows(flows, salt);
        let mut e = Engine::with_rules(workload::sized(flows), host, 1, rules);
        let forwarded = workload::run_pipeline(&mut e, &pkts, now);
        assert_eq!(forwarded, flows, "DOCKER accepts every flow");
        (e, pkts)
    } else {
        workload::established_pipeline(flows, salt, rules, now)
    };
    engine.remember_walks(!workload.ends_with("-walked"));
    let mut out = Outcome::default();
    for p in pkts.iter().cycle().take(count) {
        engine.process_into(p, Entry::Wire, now + 1, &mut out);
        std::hint::black_box(&out);
    }
}

/// FORWARD jumps to three of ten user chains (named as Docker's and ufw's are), each of
/// which returns at once, then accepts by state.
/// The inserts alone, in a call of their own for the instruction counter to pick out.
#[inline(never)]
fn insert_all(tracker: &mut workload::Tracker, frames: &[&[u8]], batched: bool, now: u64) {
    if batched {
        std::hint::black_box(tracker.batch(frames, 0, now));
    } else {
        for f in frames {
            std::hint::black_box(tracker.packet(f, 0, now));
        }
    }
}

fn jumps() -> ctrack_rules::Ruleset {
    let chains = [
        "DOCKER",
        "DOCKER-ISOLATION-STAGE-1",
        "DOCKER-ISOLATION-STAGE-2",
        "DOCKER-USER",
        "ufw-after-forward",
        "ufw-before-forward",
        "ufw-reject-forward",
        "ufw-skip-to-policy-forward",
        "ufw-track-forward",
        "ufw-user-forward",
    ];
    let mut text =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for c in chains {
        text.push_str(&format!(":{c} - [0:0]\n"));
    }
    for c in [
        "DOCKER-USER",
        "DOCKER-ISOLATION-STAGE-1",
        "ufw-before-forward",
    ] {
        text.push_str(&format!("-A FORWARD -j {c}\n"));
    }
    text.push_str("-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT\n");
    for c in chains {
        text.push_str(&format!("-A {c} -j RETURN\n"));
    }
    text.push_str("COMMIT\n");
    let mut rs = ctrack_rules::Ruleset::default();
    rs.add(ctrack_rules::load(&text, "jumps.rules").expect("the jump ruleset is valid"));
    rs
}

/// Docker's FORWARD chains as `iptables-save` shows them on a host with one published UDP
/// port range: the state rule tests the output interface, and the new flows to the
/// published ports are accepted in DOCKER by address, interfaces, protocol and port.
fn docker() -> ctrack_rules::Ruleset {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                :DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n\
                :DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n\
                -A FORWARD -j DOCKER-USER\n\
                -A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
                -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                -A FORWARD -o docker0 -j DOCKER\n\
                -A FORWARD -i docker0 ! -o docker0 -j ACCEPT\n\
                -A FORWARD -i docker0 -o docker0 -j ACCEPT\n\
                -A DOCKER -d 10.200.0.1/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53:59 -j ACCEPT\n\
                -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2\n\
                -A DOCKER-ISOLATION-STAGE-1 -j RETURN\n\
                -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP\n\
                -A DOCKER-ISOLATION-STAGE-2 -j RETURN\n\
                -A DOCKER-USER -j RETURN\nCOMMIT\n";
    let mut rs = ctrack_rules::Ruleset::default();
    rs.add(ctrack_rules::load(text, "docker.rules").expect("the Docker ruleset is valid"));
    rs
}
