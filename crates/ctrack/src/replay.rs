//! `ctrack replay`: captures through the engine, then the table, events and counters as
//! the kernel would show them.

use crate::cli::{parse_size, ReplayArgs, TableFormat};
use crate::copies::ForwardedCopies;
use crate::gso::Coalescer;
use anyhow::{bail, Context, Result};
use ctrack_capture::{merge, Capture, Direction, LinkMeta};
use ctrack_conntrack::format::{conntrack_line, conntrack_summary, event_line, json, proc_line};
use ctrack_conntrack::{Applied, Settings};
use ctrack_engine::{DropReason, Engine, Entry, Fate, Host, Iface, Outcome};
use ctrack_packet::{Addr, Datagram, Family};
use ctrack_rules::{Backend, Ruleset};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// Builds the settings from `--memory`, `--hashsize`, `--sysctl-file` and `--sysctl`, in
/// that order, so that explicit sysctls win.
pub fn settings(args: &ReplayArgs, notes: &mut Vec<String>) -> Result<Settings> {
    let mut s = match &args.memory {
        Some(m) => {
            let bytes = parse_size(m)
                .with_context(|| format!("--memory '{m}': expected a size such as 4G or 512M"))?;
            Settings::for_memory(bytes)
        }
        None => Settings::default(),
    };
    if let Some(n) = args.hashsize {
        if n == 0 {
            bail!("--hashsize 0: the table needs at least one bucket");
        }
        s.set_hashsize(n);
    }
    for f in &args.sysctl_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read sysctl file {}", f.display()))?;
        match s.apply_file(&text) {
            Ok(ignored) => {
                for (line, key, why) in ignored {
                    if key.contains("nf_conntrack") {
                        notes.push(format!("{}:{line}: {key} ignored ({why})", f.display()));
                    }
                }
            }
            Err((line, e)) => bail!("{}:{line}: {e}", f.display()),
        }
    }
    for kv in &args.sysctls {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--sysctl '{kv}': expected KEY=VALUE");
        };
        match s.set(k, v).with_context(|| format!("--sysctl '{kv}'"))? {
            Applied::Set => {}
            Applied::Ignored(why) => notes.push(format!("--sysctl {k} ignored ({why})")),
        }
    }
    Ok(s)
}

/// Host addresses: the ones given, or those that send (outgoing) but never arrive as a
/// source from outside (incoming), learned from the captures' direction information.
fn learn_locals(caps: &[Capture]) -> Vec<(Addr, Family)> {
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

fn secs(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000_000, ns % 1_000_000_000 / 1000)
}

#[derive(Default)]
struct Skipped {
    coalesced: u64,
    forwarded_copies: u64,
    loopback_copies: u64,
    not_ip: u64,
    link_errors: u64,
}

/// Every `CT --timeout` must name a policy of its rule's protocol, as `xt_CT` checks when
/// the rule is loaded.
fn check_timeout_policies(
    ruleset: &Ruleset,
    policies: &[ctrack_conntrack::timeout::TimeoutPolicy],
) -> Result<()> {
    for family in [Family::V4, Family::V6] {
        let Some(table) = ruleset.family(family).and_then(|f| f.table("raw")) else {
            continue;
        };
        for rule in table.chains.iter().flat_map(|c| &c.rules) {
            let ctrack_rules::Target::Ct {
                timeout: Some(name),
                ..
            } = &rule.spec.target
            else {
                continue;
            };
            let at = format!("{}:{}", rule.origin.file, rule.origin.line);
            let Some(policy) = policies.iter().find(|p| p.name.as_str() == name) else {
                bail!("{at}: option \"--timeout\": no timeout policy `{name}` (define it in the --nfct file)");
            };
            let proto = match rule.spec.proto {
                Some((p, false)) if p != 0 => p,
                _ => bail!("{at}: option \"--timeout\": the rule must name its protocol with -p, without !"),
            };
            if !ctrack_conntrack::timeout::applies(policy, family, proto) {
                bail!(
                    "{at}: option \"--timeout\": policy `{name}` is for another family or protocol"
                );
            }
        }
    }
    Ok(())
}

/// Runs the replay; returns the exit code.
pub fn run(args: ReplayArgs) -> Result<i32> {
    let mut notes = Vec::new();
    let settings = settings(&args, &mut notes)?;
    let mut caps = Vec::new();
    for p in &args.captures {
        caps.push(Capture::open(p)?);
    }
    let (locals, learned) = if args.locals.is_empty() && args.ifaces.is_empty() {
        (learn_locals(&caps), true)
    } else {
        (
            args.locals.iter().map(|&ip| Addr::from_ip(ip)).collect(),
            false,
        )
    };
    let host = Host::new(locals).with_ifaces(parse_ifaces(&args.ifaces)?);
    let mut ruleset = Ruleset::default();
    for (f, v6) in args
        .rules
        .iter()
        .map(|f| (f, false))
        .chain(args.rules6.iter().map(|f| (f, true)))
    {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read ruleset {}", f.display()))?;
        let name = f.display().to_string();
        ruleset.add(if v6 {
            ctrack_rules::load_as(&text, &name, Family::V6)?
        } else {
            ctrack_rules::load(&text, &name)?
        });
    }
    let policies = match &args.nfct {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read timeout policies {}", f.display()))?;
            ctrack_conntrack::timeout::parse_file(&text, &settings)
                .map_err(|(line, e)| anyhow::anyhow!("{}:{line}: {e}", f.display()))?
        }
        None => Vec::new(),
    };
    check_timeout_policies(&ruleset, &policies)?;
    let acct = settings.acct;
    let timestamp = settings.timestamp;
    let mut engine = Engine::with_rules(settings, host, args.seed, ruleset);
    engine.conntrack_mut().set_timeout_policies(policies);
    engine.emit_output(args.out.is_some());
    let create = |p: &PathBuf| {
        std::fs::File::create(p)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("cannot create {}", p.display()))
    };
    let mut sinks = Sinks {
        out: args
            .out
            .as_ref()
            .map(create)
            .transpose()?
            .map(ctrack_capture::RawIpWriter::new)
            .transpose()?,
        verdicts: args.verdicts.as_ref().map(create).transpose()?,
    };
    engine.conntrack_mut().record_events(args.events.is_some());
    let at = args.at.map(|t| (t * 1e9).round() as u64);
    let mut zero_at = args.zero_counters_at.map(|t| (t * 1e9).round() as u64);

    let total: usize = caps.iter().map(Capture::len).sum();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} replay {bar:30} {pos}/{len} packets {per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    let mut skipped = Skipped::default();
    let mut last = 0u64;
    let mut events_out = Vec::new();
    let if_macs = learn_if_macs(&caps);
    let mut gso = Coalescer::default();
    let mut copies = ForwardedCopies::default();
    let mut ready = Vec::new();
    for (n, frame) in merge(&caps).enumerate() {
        if at.is_some_and(|t| frame.time > t) {
            break;
        }
        if zero_at.is_some_and(|z| frame.time >= z) {
            zero_at = None;
            gso.flush(&mut ready);
            for (t, index, bytes) in ready.drain(..) {
                sinks.feed(&mut engine, index, t, &bytes, Entry::Host, None)?;
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
            Some(Direction::Outgoing) => {
                if header.is_some_and(|d| copies.is_copy(&d, frame.time)) {
                    // The copy of a forwarded packet leaving after POSTROUTING (translated
                    // already when the connection is NATed).
                    skipped.forwarded_copies += 1;
                    continue;
                }
                // Sent by the host: from its own address, or in another's name (a
                // REJECT's reset, say).
                Entry::Host
            }
            Some(Direction::Incoming) if is_local(src) && is_local(dst) => {
                // Looped back: conntrack saw it at OUTPUT already.
                skipped.loopback_copies += 1;
                continue;
            }
            Some(Direction::Incoming) => {
                // Even one addressed to the host may leave again: to a NAT address, it is
                // translated back and forwarded.
                if let Some(d) = header {
                    copies.incoming(&d, frame.time);
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
            sinks.feed(&mut engine, index, t, &bytes, Entry::Host, None)?;
        }
        if entry == Entry::Wire {
            let mac = mac_header(frame.link(), &if_macs);
            if let Some(rewritten) = sinks.feed(&mut engine, n, frame.time, ip, entry, mac)? {
                // Its outgoing copy is the rewritten packet.
                if let Ok(d) = Datagram::parse(&rewritten) {
                    copies.incoming(&d, frame.time);
                }
            }
        }
        if args.events.is_some() {
            events_out.extend(engine.conntrack_mut().take_events());
        }
    }
    gso.flush(&mut ready);
    for (t, index, bytes) in ready.drain(..) {
        sinks.feed(&mut engine, index, t, &bytes, Entry::Host, None)?;
    }
    if let Some(w) = sinks.verdicts.as_mut() {
        w.flush()?;
    }
    if let Some(w) = sinks.out.take() {
        w.finish().flush()?;
    }
    bar.finish_and_clear();
    skipped.coalesced = gso.merged;
    let now = at.unwrap_or(last);
    engine.advance(now);
    events_out.extend(engine.conntrack_mut().take_events());

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(fmt @ (TableFormat::Expect | TableFormat::ConntrackExpect)) = args.table {
        let mut n = 0;
        for e in engine.conntrack().expectations(now) {
            let line = if fmt == TableFormat::Expect {
                e.proc_line(now)
            } else {
                e.conntrack_line(now)
            };
            writeln!(out, "{line}")?;
            n += 1;
        }
        if fmt == TableFormat::ConntrackExpect {
            eprintln!("conntrack v1.4.7 (conntrack-tools): {n} expectations have been shown.");
        }
    } else if let Some(fmt) = args.table {
        let ct = engine.conntrack();
        let mut n = 0;
        for (_, c) in ct.table().iter_listing() {
            let line = match fmt {
                TableFormat::Proc => proc_line(c, now, ct.settings()),
                TableFormat::Conntrack => conntrack_line(c, now, acct, timestamp),
                TableFormat::Json => json(c, now).to_string(),
                TableFormat::Expect | TableFormat::ConntrackExpect => unreachable!("listed above"),
            };
            writeln!(out, "{line}")?;
            n += 1;
        }
        if fmt == TableFormat::Conntrack {
            eprintln!("{}", conntrack_summary(n));
        }
    }
    if args.stats {
        writeln!(out, "{}", engine.conntrack().stats().line(0))?;
    }
    if args.counters {
        for (fam, tool) in [
            (Family::V4, "iptables-save"),
            (Family::V6, "ip6tables-save"),
        ] {
            if let Some(r) = engine.rules().family(fam) {
                writeln!(out, "# {tool} -c after the replay")?;
                write!(out, "{}", r.save(true, Backend::Nft))?;
            }
        }
    }
    if let Some(path) = &args.events {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        for e in &events_out {
            writeln!(f, "{}", event_line(e, acct))?;
        }
        f.flush()?;
    }
    let mut log = engine.conntrack_mut().take_log();
    let table_full_lines = log.len();
    log.extend(engine.take_log());
    log.sort_by_key(|(t, _)| *t);
    if let Some(path) = &args.log {
        let mut f = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        for (t, line) in &log {
            writeln!(f, "[{}] {line}", secs(*t))?;
        }
    }

    if !args.quiet {
        summary(&engine, &skipped, learned, &notes, now, table_full_lines);
    }
    let mut code = 0;
    for c in &caps {
        if let Some(d) = c.damage() {
            eprintln!("ctrack: {d} ({} packets before it were replayed)", c.len());
            code = 3;
        }
    }
    Ok(code)
}

fn summary(
    engine: &Engine,
    skipped: &Skipped,
    learned: bool,
    notes: &[String],
    now: u64,
    log_lines: usize,
) {
    let c = engine.counts();
    let ct = engine.conntrack();
    let st = ct.stats();
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "replayed {} packets up to {}", c.packets, secs(now));
    let _ = writeln!(
        e,
        "  accepted: {} forwarded, {} delivered, {} sent by the host; {} fragments held",
        c.forwarded, c.delivered, c.sent, c.held
    );
    let _ = writeln!(
        e,
        "  dropped: {} table full, {} malformed, {} bad fragments, {} TTL exceeded, {} by rules",
        c.table_full, c.malformed, c.fragment_drops, c.ttl_exceeded, c.rule_drops
    );
    let _ = writeln!(
        e,
        "  conntrack: {} INVALID (invalid={} error={}), early_drop={}, drop={}",
        c.invalid, st.invalid, st.error, st.early_drop, st.drop
    );
    if log_lines > 0 {
        let _ = writeln!(
            e,
            "  kernel log: {log_lines} lines '{}'",
            ctrack_conntrack::TABLE_FULL_LOG
        );
    }
    let _ = writeln!(
        e,
        "  skipped: {} outgoing copies of forwarded packets, {} loopback copies, {} not IP, {} unreadable link headers",
        skipped.forwarded_copies, skipped.loopback_copies, skipped.not_ip, skipped.link_errors
    );
    if skipped.coalesced > 0 {
        let _ = writeln!(
            e,
            "  {} segments of the host's own TCP packets joined back into the packets conntrack saw (GSO)",
            skipped.coalesced
        );
    }
    let (peak, when) = ct.peak();
    let _ = writeln!(
        e,
        "  entries: {} now, peak {} at {}",
        ct.count(),
        peak,
        secs(when)
    );
    let locals: Vec<String> = engine
        .host()
        .locals()
        .iter()
        .map(|(a, f)| a.to_ip(*f).to_string())
        .collect();
    let how = if learned {
        "learned from the capture"
    } else {
        "given"
    };
    let shown = if locals.is_empty() {
        "none".to_string()
    } else {
        locals.join(", ")
    };
    let _ = writeln!(e, "  host addresses ({how}): {shown}");
    for n in notes {
        let _ = writeln!(e, "  note: {n}");
    }
}

/// Where each packet's outcome goes: `--out` and `--verdicts`.
struct Sinks {
    out: Option<ctrack_capture::RawIpWriter<std::io::BufWriter<std::fs::File>>>,
    verdicts: Option<std::io::BufWriter<std::fs::File>>,
}

impl Sinks {
    /// Runs one packet through the engine and records what became of it.
    fn feed(
        &mut self,
        engine: &mut Engine,
        index: usize,
        time: u64,
        ip: &[u8],
        entry: Entry,
        mac: Option<[u8; 14]>,
    ) -> Result<Option<Vec<u8>>> {
        let o = engine.process_with_link(ip, entry, time, mac);
        if let (Some(w), Some(b)) = (self.out.as_mut(), o.leaving.as_ref()) {
            w.write(time, b)?;
        }
        if let Some(w) = self.verdicts.as_mut() {
            write_verdict(w, engine, index, time, ip, &o)?;
        }
        // What a helper rewrote leaves looking different from what came in.
        Ok(if o.helper_rewrote { o.leaving } else { None })
    }
}

/// `NAME=ADDR/LEN` interfaces of `--iface`.
fn parse_ifaces(specs: &[String]) -> Result<Vec<Iface>> {
    let mut out = Vec::new();
    for s in specs {
        let parsed = s.split_once('=').and_then(|(name, net)| {
            let (a, len) = net.split_once('/')?;
            let ip: std::net::IpAddr = a.parse().ok()?;
            let prefix: u8 = len.parse().ok()?;
            let (addr, family) = Addr::from_ip(ip);
            let max = if family == Family::V4 { 32 } else { 128 };
            (prefix <= max && !name.is_empty()).then(|| Iface {
                name: name.to_string(),
                addr,
                prefix,
                family,
            })
        });
        match parsed {
            Some(i) => out.push(i),
            None => bail!("--iface '{s}': expected NAME=ADDRESS/PREFIX, such as eth0=192.0.2.1/24"),
        }
    }
    Ok(out)
}

/// One line of `--verdicts`.
fn write_verdict(
    w: &mut impl Write,
    engine: &Engine,
    index: usize,
    time: u64,
    ip: &[u8],
    o: &Outcome,
) -> Result<()> {
    let family = Datagram::parse(ip).map(|d| d.family).ok();
    let rule = o.rule.and_then(|(hook, table, c, r)| {
        let rules = engine.rules().family(family?)?;
        let t = rules.table(table.name())?;
        let chain = t.chains.get(c)?;
        let rule = chain.rules.get(r)?;
        Some(serde_json::json!({
            "hook": hook.name(),
            "table": table.name(),
            "chain": chain.name,
            "rule": r + 1,
            "origin": format!("{}:{}", rule.origin.file, rule.origin.line),
            "text": format!("-A {}{}", chain.name, rule.spec.save(family?, Backend::Nft)),
        }))
    });
    let (verdict, fate, reason) = match o.fate {
        Fate::Delivered => ("ACCEPT", "delivered", None),
        Fate::Forwarded => ("ACCEPT", "forwarded", None),
        Fate::Sent => ("ACCEPT", "sent", None),
        Fate::Held => ("HELD", "fragment held for reassembly", None),
        Fate::Dropped(r) => (
            "DROP",
            "dropped",
            Some(match r {
                DropReason::Malformed(m) => format!("malformed: {}", m.reason()),
                DropReason::TableFull => "table full".to_string(),
                DropReason::Fragment => "bad fragment".to_string(),
                DropReason::TtlExceeded => "TTL exceeded".to_string(),
                DropReason::Helper(why) => format!("helper: {why}"),
                DropReason::Rule {
                    hook,
                    table,
                    chain,
                    rule,
                    reject,
                } => {
                    let chain_name = family
                        .and_then(|f| engine.rules().family(f))
                        .and_then(|rs| rs.table(table.name()))
                        .and_then(|t| t.chains.get(chain))
                        .map_or("?".to_string(), |c| c.name.clone());
                    match rule {
                        Some(i) => format!(
                            "{} by rule {} of {}/{} at {}",
                            if reject.is_some() {
                                "rejected"
                            } else {
                                "dropped"
                            },
                            i + 1,
                            table.name(),
                            chain_name,
                            hook.name()
                        ),
                        None => format!(
                            "policy of {}/{} at {}",
                            table.name(),
                            chain_name,
                            hook.name()
                        ),
                    }
                }
            }),
        ),
    };
    let line = serde_json::json!({
        "index": index,
        "time": secs_ns(time),
        "hook": o.entry_hook.name(),
        "verdict": verdict,
        "fate": fate,
        "state": o.state.name(),
        "invalid": o.invalid,
        "rule": rule,
        "reason": reason,
        "reply": o.reply.as_ref().map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    });
    writeln!(w, "{line}")?;
    Ok(())
}

fn secs_ns(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}
