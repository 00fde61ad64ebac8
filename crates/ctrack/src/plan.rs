//! `ctrack plan`: what in the ruleset needs tracking, the remedies for a full table, each
//! proved by replaying the capture, and the table's size.
//!
//! The capture is replayed several times through the same host: with the ruleset and the
//! configured limit (what happened), without a limit (what the traffic needs: the peak
//! that sizes the table, and the traffic classes), with each generated ruleset (the proof:
//! every packet whose fate changes is listed), and with `--scale` compressed in time.

use crate::cli::PlanArgs;
use crate::drive::{drive, DriveOpts, Recorder};
use crate::replay::{drop_reason, secs, Setup};
use anyhow::{bail, Context, Result};
use ctrack_capture::Capture;
use ctrack_conntrack::{PacketState, Settings};
use ctrack_engine::{DropReason, Engine, Fate};
use ctrack_packet::{Datagram, Family, Tuple};
use ctrack_plan::deps::{dependencies, verdict, Need, Verdict};
use ctrack_plan::plot::{svg, Timeline};
use ctrack_plan::report::{Difference, Proof, Remedy, Report, WhatIf};
use ctrack_plan::rewrite::{self, Generated, Observed, Service};
use ctrack_plan::sizing::{self, Sizing};
use ctrack_rules::FamilyRules;
use std::collections::BTreeMap;
use std::path::Path;

/// Output formats of `--format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// For a terminal.
    Text,
    /// Markdown.
    Markdown,
    /// JSON.
    Json,
    /// One HTML page with the pictures inline.
    Html,
}

/// One packet's fate in one replay, kept small: words are made only for the packets whose
/// fate a remedy changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PacketFate {
    index: usize,
    time: u64,
    fate: Fate,
    family: Option<Family>,
    invalid: bool,
}

impl PacketFate {
    /// delivered, forwarded, sent, held or dropped.
    fn kind(&self) -> &'static str {
        match self.fate {
            Fate::Delivered => "delivered",
            Fate::Forwarded => "forwarded",
            Fate::Sent => "sent",
            Fate::Held => "held",
            Fate::Dropped(_) => "dropped",
        }
    }

    fn table_full(&self) -> bool {
        self.fate == Fate::Dropped(DropReason::TableFull)
    }

    /// The fate in words; a rule that dropped it is named from `engine`'s ruleset.
    fn words(&self, engine: &Engine) -> String {
        match self.fate {
            Fate::Dropped(r) => format!(
                "dropped: {}",
                drop_reason(self.family.and_then(|f| engine.rules().family(f)), r)
            ),
            Fate::Held => "fragment held".to_string(),
            _ => self.kind().to_string(),
        }
    }
}

/// What one replay saw, and the engine it ended with (for naming rules).
struct Run {
    fates: Vec<PacketFate>,
    timeline: Timeline,
    observed: Vec<Observed>,
    table_full: u64,
    packets: u64,
    engine: Engine,
}

/// A packet in a few words: protocol, ends, TCP flags.
fn summarize(ip: &[u8]) -> String {
    let Ok(d) = Datagram::parse(ip) else {
        return "unreadable".to_string();
    };
    let name = ctrack_packet::proto_name(d.proto);
    let (src, dst) = (d.src.display(d.family), d.dst.display(d.family));
    match Tuple::from_datagram(&d) {
        Ok(t) if matches!(d.proto, 6 | 17 | 136) => {
            let flags = if d.proto == 6 {
                let f = d.l4().get(13).copied().unwrap_or(0);
                let names: String = [
                    (0x02, 'S'),
                    (0x10, '.'),
                    (0x01, 'F'),
                    (0x04, 'R'),
                    (0x08, 'P'),
                ]
                .iter()
                .filter(|(b, _)| f & b != 0)
                .map(|(_, c)| *c)
                .collect();
                format!(" [{names}]")
            } else {
                String::new()
            };
            format!("{name} {src}:{} > {dst}:{}{flags}", t.src_port, t.dst_port)
        }
        _ => format!("{name} {src} > {dst}"),
    }
}

/// Replays the captures through `engine`.
fn replay(caps: &[Capture], mut engine: Engine, opts: &DriveOpts) -> Result<Run> {
    let mut fates = Vec::new();
    let mut recorder = Recorder::new(engine.conntrack().settings().max);
    let mut observed: BTreeMap<(u8, &'static str, u8, u16), u64> = BTreeMap::new();
    let mut table_full = 0;
    drive(
        caps,
        &mut engine,
        opts,
        false,
        |engine, index, time, ip, entry, mac| {
            let o = engine.process_with_link(ip, entry, time, mac);
            let d = Datagram::parse(ip).ok();
            let fate = PacketFate {
                index,
                time,
                fate: o.fate,
                family: d.map(|d| d.family),
                invalid: o.state == PacketState::Invalid,
            };
            table_full += u64::from(fate.table_full());
            // The packet that made a new entry says, by its fate, which chain accepted it.
            let accepted = matches!(o.fate, Fate::Delivered | Fate::Forwarded | Fate::Sent);
            if recorder.record(engine, time, &o) && accepted {
                if let Some((d, Ok(tu))) = d.map(|d| (d, Tuple::from_datagram(&d))) {
                    if matches!(d.proto, 6 | 17) {
                        let chain = match o.fate {
                            Fate::Delivered => "INPUT",
                            Fate::Sent => "OUTPUT",
                            _ => "FORWARD",
                        };
                        let fam = u8::from(d.family == Family::V6);
                        *observed
                            .entry((fam, chain, d.proto, tu.dst_port))
                            .or_default() += 1;
                    }
                }
            }
            fates.push(fate);
            Ok(o.helper_rewrote.then_some(o.leaving).flatten())
        },
    )?;
    let observed = observed
        .into_iter()
        .map(|((fam, chain, proto, port), connections)| Observed {
            family: if fam == 1 { Family::V6 } else { Family::V4 },
            chain,
            proto,
            port,
            connections,
        })
        .collect();
    Ok(Run {
        packets: fates.len() as u64,
        fates,
        timeline: recorder.timeline,
        observed,
        table_full,
        engine,
    })
}

/// Every packet whose fate differs between `before` and `after`, with what is understood
/// of why; table-full drops that pass now are counted apart (`fixed`). The packets are
/// read again from `caps` for the few that are listed.
fn compare(caps: &[Capture], before: &Run, after: &Run) -> (Vec<Difference>, u64) {
    let mut fixed = 0;
    let after_by_index: BTreeMap<usize, &PacketFate> =
        after.fates.iter().map(|f| (f.index, f)).collect();
    let mut changed = Vec::new();
    for b in &before.fates {
        let Some(a) = after_by_index.get(&b.index) else {
            continue;
        };
        if a.kind() == b.kind() {
            continue;
        }
        if b.table_full() {
            fixed += 1;
            continue;
        }
        let why = if b.invalid && b.kind() == "dropped" {
            "the kernel's tracker called it INVALID; without tracking nothing is INVALID"
        } else if a.table_full() {
            "the table is full with this ruleset"
        } else if a.kind() == "dropped" {
            "no generated rule accepts it: a reply or later packet of a class the rules do not name"
        } else {
            "its verdict changed with the ruleset"
        };
        changed.push(Difference {
            index: b.index,
            time: secs(b.time),
            packet: String::new(),
            before: b.words(&before.engine),
            after: a.words(&after.engine),
            why: why.to_string(),
        });
    }
    // The host's joined segments are fed after the frames that follow them.
    changed.sort_by_key(|d| d.index);
    if !changed.is_empty() {
        let mut want = changed.iter_mut().peekable();
        for (n, frame) in ctrack_capture::merge(caps).enumerate() {
            let Some(d) = want.peek_mut() else { break };
            if d.index == n {
                d.packet = frame
                    .ip()
                    .map_or("unreadable".to_string(), |(ip, _)| summarize(ip));
                want.next();
            }
        }
    }
    (changed, fixed)
}

fn proof(caps: &[Capture], before: &Run, after: &Run) -> Proof {
    let (differences, fixed) = compare(caps, before, after);
    Proof {
        packets: before.packets,
        differences,
        fixed,
        peak_before: before.timeline.peak().0,
        peak_after: after.timeline.peak().0,
        table_full_before: before.table_full,
        table_full_after: after.table_full,
    }
}

/// What a kernel without conntrack breaks, by what the rules need.
fn no_conntrack_notes(deps: &[ctrack_plan::deps::Dependency]) -> Vec<String> {
    let mut notes = Vec::new();
    let has = |n: Need| deps.iter().any(|d| d.needs.contains(&n));
    if has(Need::Nat) {
        notes.push("the nat table cannot exist: `iptables -t nat` fails with \"Table does not exist (do you need to insmod?)\" and SNAT, DNAT, MASQUERADE and REDIRECT stop".to_string());
    }
    if has(Need::State) || has(Need::ConntrackFields) {
        notes.push("rules with `-m state`/`-m conntrack` no longer load: iptables-nft reports \"Extension state revision 0 not supported, missing kernel module?\" (conntrack likewise), and iptables-restore refuses the whole file".to_string());
    }
    if has(Need::Helper) {
        notes.push("helpers (FTP, TFTP …) are gone: their data connections are no longer RELATED, and `CT --helper`/`-m helper` rules do not load".to_string());
    }
    if has(Need::ConnMark)
        || has(Need::ConnLimit)
        || has(Need::ConnBytes)
        || has(Need::CtTemplate)
        || has(Need::NotrackTarget)
    {
        notes.push("connmark, CONNMARK, connlimit, connbytes, CT and NOTRACK all need the conntrack module: their rules do not load".to_string());
    }
    if notes.is_empty() {
        notes.push("no rule needs conntrack: build the kernel without CONFIG_NF_CONNTRACK, or keep the module out (`install nf_conntrack /bin/false` in /etc/modprobe.d/no-conntrack.conf); nothing in this ruleset stops working".to_string());
    }
    notes
}

/// The rulesets of a remedy, with what the proof replay needs: for the stateless one, every
/// packet untracked (a host without the module tracks nothing).
fn proof_rules(generated: &[Generated], untrack_all: bool) -> Result<Vec<FamilyRules>> {
    let mut out = Vec::new();
    for g in generated {
        let family = if g.family == "ipv6" {
            Family::V6
        } else {
            Family::V4
        };
        let mut text = g.text.clone();
        if untrack_all {
            text.push_str("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j NOTRACK\n-A OUTPUT -j NOTRACK\nCOMMIT\n");
        }
        out.push(
            ctrack_rules::load_as(&text, &format!("{}.rules", g.name), family)
                .with_context(|| format!("the generated {} ruleset", g.name))?,
        );
    }
    Ok(out)
}

fn file_name(g: &Generated) -> String {
    if g.family == "ipv6" {
        format!("{}6.rules", g.name)
    } else {
        format!("{}.rules", g.name)
    }
}

/// Runs the plan; returns the exit code.
pub fn run(args: PlanArgs) -> Result<i32> {
    if args.host.rules.is_empty() && args.host.rules6.is_empty() {
        bail!(
            "plan needs the host's ruleset: --rules FILE (iptables-save output), or --rules6 FILE"
        );
    }
    if let Some(p) = &args.plot {
        if p.extension().and_then(|e| e.to_str()) != Some("svg") {
            bail!(
                "--plot {}: pictures are written as SVG; name the file *.svg",
                p.display()
            );
        }
    }
    let caps = crate::drive::open_captures(&args.captures, 1)?;
    let setup = Setup::new(&args.host, &caps)?;
    let seed = args.host.seed;
    let refs: Vec<&FamilyRules> = setup.rules.iter().collect();
    let deps = dependencies(&refs);
    let verdict = verdict(&deps);
    let has_helper = deps.iter().any(|d| d.needs.contains(&Need::Helper));
    let memory = match &args.host.memory {
        Some(m) => crate::cli::parse_size(m).context("--memory")?,
        None => 24 << 30,
    };

    // What happened, and what the traffic needs.
    let opts = DriveOpts::default();
    let (base, unlimited) = if caps.is_empty() {
        (None, None)
    } else {
        let base = replay(
            &caps,
            setup.engine(setup.settings.clone(), &setup.rules, seed),
            &opts,
        )?;
        let unlimited_settings = Settings {
            max: 0,
            ..setup.settings.clone()
        };
        let unlimited = replay(
            &caps,
            setup.engine(unlimited_settings, &setup.rules, seed),
            &opts,
        )?;
        (Some(base), Some(unlimited))
    };
    let observed = unlimited.as_ref().map_or(&[][..], |u| &u.observed[..]);
    let services: Vec<Service> = setup
        .rules
        .iter()
        .flat_map(|fr| rewrite::services(fr, observed))
        .collect();

    let mut remedies = Vec::new();
    // (a) No conntrack at all.
    remedies.push(Remedy {
        name: "no-conntrack",
        title: "A kernel or module set without conntrack",
        applicable: verdict == Verdict::CanGoEntirely,
        notes: no_conntrack_notes(&deps),
        rulesets: Vec::new(),
        proof: None,
    });
    // (b) Stateless and (c) NOTRACK, proved by replay.
    let stateless: Vec<Generated> = setup
        .rules
        .iter()
        .map(|fr| rewrite::stateless(fr, &services))
        .collect();
    let classes: Vec<Service> = rewrite::notrack_classes(&services)
        .into_iter()
        .filter(|s| verdict != Verdict::CannotGo || s.chain == "INPUT")
        .filter(|s| unlimited.is_none() || s.connections > 0)
        .collect();
    let notrack: Vec<Generated> = setup
        .rules
        .iter()
        .map(|fr| {
            let ftp = has_helper || services.iter().any(Service::is_ftp);
            rewrite::notrack(fr, &classes, ftp)
        })
        .collect();
    for (name, title, generated, untrack_all) in [
        ("stateless", "The stateless rewrite", stateless, true),
        ("notrack", "NOTRACK for traffic classes", notrack, false),
    ] {
        let mut notes = Vec::new();
        let mut blocked = generated.iter().any(|g| !g.blockers.is_empty());
        if name == "notrack" && classes.is_empty() {
            blocked = true;
            notes.push("no inbound TCP or UDP service to take out of tracking".to_string());
        }
        if name == "stateless" && verdict == Verdict::CannotGo {
            notes.push(
                "the host does NAT: tracking cannot go, whatever the filter rules".to_string(),
            );
        }
        if name == "notrack" && verdict == Verdict::CannotGo {
            notes.push("the host does NAT: only traffic to the host itself is offered, and NAT must not apply to it (the proof checks each packet's fate)".to_string());
        }
        let proof = match (&base, blocked) {
            (Some(b), false) => {
                let rules = proof_rules(&generated, untrack_all)?;
                let after = replay(
                    &caps,
                    setup.engine(setup.settings.clone(), &rules, seed),
                    &opts,
                )?;
                Some(proof(&caps, b, &after))
            }
            _ => None,
        };
        // NAT keeps tracking whatever the filter rules say.
        let nat_blocks = name == "stateless" && verdict == Verdict::CannotGo;
        let applicable =
            !blocked && !nat_blocks && proof.as_ref().is_none_or(|p| p.differences.is_empty());
        remedies.push(Remedy {
            name,
            title,
            applicable,
            notes,
            rulesets: generated,
            proof,
        });
    }

    // (d) Sizing.
    let configured = sizing::Rule {
        buckets: u64::from(setup.settings.buckets),
        max: u64::from(setup.settings.max),
    };
    let sized: Option<Sizing> = unlimited.as_ref().map(|u| {
        let (peak, at) = u.timeline.peak();
        let secs = u.timeline.end().max(1.0);
        let total: u64 = u.timeline.new_per_second.iter().sum();
        let busiest = u.timeline.new_per_second.iter().copied().max().unwrap_or(0);
        sizing::size(memory, configured, peak, at, busiest, total as f64 / secs)
    });
    remedies.push(Remedy {
        name: "sizing",
        title: "Raise nf_conntrack_max and hashsize",
        applicable: sized.is_some(),
        notes: if sized.is_some() {
            vec![
                "keeps every rule as it is; the table is sized for the traffic's peak (see Sizing)"
                    .to_string(),
            ]
        } else {
            vec!["give a capture (--capture) to size the table from the traffic".to_string()]
        },
        rulesets: Vec::new(),
        proof: None,
    });
    let fixes =
        |r: &Remedy| r.applicable && r.proof.as_ref().is_none_or(|p| p.table_full_after == 0);
    let recommended = match verdict {
        Verdict::CannotGo => "sizing",
        Verdict::CanGoEntirely => "no-conntrack",
        Verdict::CanGoForClasses => ["notrack", "stateless"]
            .into_iter()
            .find(|n| remedies.iter().any(|r| r.name == *n && fixes(r)))
            .unwrap_or("sizing"),
    };
    let verdict_text = match verdict {
        Verdict::CannotGo => "Tracking cannot go: the host does NAT, and NAT translates every packet by its connection's binding. The remedy is a table sized for the traffic.".to_string(),
        Verdict::CanGoEntirely => "Tracking can go entirely: no rule depends on it.".to_string(),
        Verdict::CanGoForClasses => format!(
            "Tracking can go for named traffic classes: {} rules depend on it, and the remedies below say which can be rewritten or sent around it. Recommended: {recommended}.",
            deps.len()
        ),
    };

    // What if the traffic were busier.
    let what_if = match (&sized, args.scale) {
        (Some(s), Some(n)) if n > 1 => {
            let t0 = caps
                .iter()
                .filter_map(|c| {
                    ctrack_capture::merge(std::slice::from_ref(c))
                        .next()
                        .map(|f| f.time)
                })
                .min()
                .unwrap_or(0);
            let scaled = DriveOpts {
                time_scale: Some((t0, n)),
                ..DriveOpts::default()
            };
            let with = |max: u64, buckets: u64| -> Result<(u64, u64, u64)> {
                let settings = Settings {
                    max: u32::try_from(max).unwrap_or(u32::MAX),
                    buckets: u32::try_from(buckets).unwrap_or(u32::MAX),
                    ..setup.settings.clone()
                };
                let r = replay(&caps, setup.engine(settings, &setup.rules, seed), &scaled)?;
                Ok((max, r.timeline.peak().0, r.table_full))
            };
            Some(WhatIf {
                factor: n,
                how: "time compression: every packet's time since the capture's start is divided by N, so connections arrive N times as fast while the kernel's timeouts stay as they are",
                configured: with(configured.max, configured.buckets)?,
                recommended: with(s.max, s.hashsize)?,
            })
        }
        _ => None,
    };

    let mut plots = Vec::new();
    if let Some(b) = &base {
        plots.push((
            "The table over the capture".to_string(),
            svg(
                &b.timeline,
                "conntrack table, configured limit",
                sized.as_ref().map(|s| s.max),
            ),
        ));
    }
    let mut written = Vec::new();
    if let (Some(p), Some((_, pic))) = (&args.plot, plots.first()) {
        std::fs::write(p, pic).with_context(|| format!("cannot write {}", p.display()))?;
        written.push(p.display().to_string());
    }
    if let Some(dir) = &args.write_rules {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for r in &remedies {
            for g in &r.rulesets {
                if !g.blockers.is_empty() {
                    continue;
                }
                let path = Path::new(dir).join(file_name(g));
                std::fs::write(&path, &g.text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                written.push(path.display().to_string());
            }
        }
    }
    let mut after = vec![
        "no `nf_conntrack: table full, dropping packet` in the kernel log: `dmesg | grep nf_conntrack` or `journalctl -k | grep 'table full'`".to_string(),
        "`sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max`: the count stays well under the limit at the busiest hour".to_string(),
        "`conntrack -S`: `drop`, `early_drop` and `insert_failed` no longer grow".to_string(),
    ];
    if recommended == "no-conntrack" || recommended == "stateless" {
        after.push(
            "`lsmod | grep nf_conntrack` prints nothing: the module is not loaded".to_string(),
        );
    }
    if recommended == "notrack" {
        after.push("`conntrack -L` lists none of the NOTRACK classes, and `iptables -t raw -L -v` counts their packets".to_string());
    }
    let report = Report {
        rules: args
            .host
            .rules
            .iter()
            .chain(&args.host.rules6)
            .map(|p| p.display().to_string())
            .collect(),
        captures: args
            .captures
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        verdict,
        verdict_text,
        dependencies: deps,
        services,
        remedies,
        recommended,
        sizing: sized,
        memory_assumed: args.host.memory.is_none(),
        what_if,
        after,
        plots,
        written,
    };
    let text = match args.format {
        Format::Text => report.text(),
        Format::Markdown => report.markdown(),
        Format::Json => report.json(),
        Format::Html => report.html(),
    };
    print!("{text}");
    Ok(crate::drive::damage_code(&caps))
}
