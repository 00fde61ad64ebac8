//! `ctrack replay`: captures through the engine, then the table, events and counters as
//! the kernel would show them.

use crate::cli::{parse_size, HostArgs, ReplayArgs, TableFormat};
use crate::drive::{drive, learn_locals, open_captures, DriveOpts, Recorder, Skipped};
use crate::lines::{with_lines, Lines};
use anyhow::{bail, Context, Result};
use ctrack_capture::Capture;
use ctrack_conntrack::format::{conntrack_line, conntrack_summary, event_line, json, proc_line};
use ctrack_conntrack::{Applied, Settings};
use ctrack_engine::{DropReason, Engine, Entry, Fate, Host, Iface};
use ctrack_packet::{Addr, Family};
use ctrack_rules::{Backend, FamilyRules, Ruleset};
use std::io::Write;
use std::path::PathBuf;

/// Builds the settings from `--memory`, `--hashsize`, `--sysctl-file` and `--sysctl`, in
/// that order, so that explicit sysctls win.
pub fn settings(args: &HostArgs, notes: &mut Vec<String>) -> Result<Settings> {
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

/// Epoch seconds with microseconds, as the summary and the plan print times.
pub fn secs(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000_000, ns % 1_000_000_000 / 1000)
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

/// The modelled host from the command line: settings, addresses, interfaces, rulesets and
/// timeout policies, checked as the kernel checks them when they are loaded.
pub struct Setup {
    /// Conntrack settings.
    pub settings: Settings,
    /// The host model.
    pub host: Host,
    /// True when the host's addresses were learned from the captures.
    pub learned: bool,
    /// The rulesets, one a file.
    pub rules: Vec<FamilyRules>,
    /// `CT --timeout` policies.
    pub policies: Vec<ctrack_conntrack::timeout::TimeoutPolicy>,
    /// What was noted while reading the settings.
    pub notes: Vec<String>,
}

impl Setup {
    /// Reads everything `args` names; `caps` teach the host's addresses when none are given.
    pub fn new(args: &HostArgs, caps: &[Capture]) -> Result<Setup> {
        let mut notes = Vec::new();
        let settings = settings(args, &mut notes)?;
        let (locals, learned) = if args.locals.is_empty() && args.ifaces.is_empty() {
            (learn_locals(caps), true)
        } else {
            (
                args.locals.iter().map(|&ip| Addr::from_ip(ip)).collect(),
                false,
            )
        };
        let host = Host::new(locals).with_ifaces(parse_ifaces(&args.ifaces)?);
        let mut rules = Vec::new();
        for (f, v6) in args
            .rules
            .iter()
            .map(|f| (f, false))
            .chain(args.rules6.iter().map(|f| (f, true)))
        {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read ruleset {}", f.display()))?;
            let name = f.display().to_string();
            rules.push(if v6 {
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
        check_timeout_policies(&ruleset_of(&rules), &policies)?;
        Ok(Setup {
            settings,
            host,
            learned,
            rules,
            policies,
            notes,
        })
    }

    /// An engine for this host with `settings` and `rules` in place of the given ones.
    pub fn engine(&self, settings: Settings, rules: &[FamilyRules], seed: u64) -> Engine {
        let mut engine = Engine::with_rules(settings, self.host.clone(), seed, ruleset_of(rules));
        engine
            .conntrack_mut()
            .set_timeout_policies(self.policies.clone());
        engine
    }
}

/// The rulesets as one evaluable ruleset.
pub fn ruleset_of(rules: &[FamilyRules]) -> Ruleset {
    let mut r = Ruleset::default();
    for f in rules {
        r.add(f.clone());
    }
    r
}

/// Runs the replay; returns the exit code.
pub fn run(args: ReplayArgs) -> Result<i32> {
    let caps = open_captures(&args.captures, usize::from(args.threads))?;
    let setup = Setup::new(&args.host, &caps)?;
    let mut engine = setup.engine(setup.settings.clone(), &setup.rules, args.host.seed);
    // As the engine has them: rules can turn accounting on.
    let acct = engine.conntrack().settings().acct;
    let timestamp = engine.conntrack().settings().timestamp;
    let (learned, notes) = (setup.learned, &setup.notes);
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
        plot: args
            .plot
            .as_ref()
            .map(|_| Recorder::new(engine.conntrack().settings().max)),
    };
    if let Some(p) = &args.plot {
        if p.extension().and_then(|e| e.to_str()) != Some("svg") {
            bail!(
                "--plot {}: pictures are written as SVG; name the file *.svg",
                p.display()
            );
        }
    }
    engine.conntrack_mut().record_events(args.events.is_some());
    let at = args.at.map(|t| (t * 1e9).round() as u64);

    let mut events_out = Vec::new();
    let want_events = args.events.is_some();
    let opts = DriveOpts {
        at,
        zero_at: args.zero_counters_at.map(|t| (t * 1e9).round() as u64),
        time_scale: None,
    };
    // The rules as written, for the verdicts' words: their text does not change while the
    // packets pass, and the formatting threads read this copy.
    let mut names = Ruleset::default();
    names.v4.clone_from(&engine.rules().v4);
    names.v6.clone_from(&engine.rules().v6);
    let format = |v: &VerdictRecord, line: &mut String| v.write(&names, line);
    let verdicts_file = args.verdicts.as_ref().map(create).transpose()?;
    let (driven, verdicts_file) = with_lines(
        usize::from(args.threads),
        verdicts_file,
        &format,
        |verdicts| {
            drive(
                &caps,
                &mut engine,
                &opts,
                true,
                |engine, index, time, ip, entry, mac| {
                    let rewritten = sinks.feed(engine, verdicts, index, time, ip, entry, mac)?;
                    if want_events {
                        events_out.extend(engine.conntrack_mut().take_events());
                    }
                    Ok(rewritten)
                },
            )
        },
    )?;
    let (skipped, last) = (driven.skipped, driven.last);
    if let Some(mut w) = verdicts_file {
        w.flush()?;
    }
    if let Some(w) = sinks.out.take() {
        w.finish().flush()?;
    }
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
        for (c, reply, x) in ct.listing() {
            let line = match fmt {
                TableFormat::Proc => proc_line(c, &reply, &x, now, ct.settings()),
                TableFormat::Conntrack => conntrack_line(c, &reply, &x, now, acct, timestamp),
                TableFormat::Json => json(c, &reply, &x, now).to_string(),
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
        let f = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        let format = |e: &ctrack_conntrack::Event, line: &mut String| {
            line.push_str(&event_line(e, acct));
            line.push('\n');
        };
        let (_, f) = with_lines(usize::from(args.threads), Some(f), &format, |lines| {
            for e in events_out {
                lines.push(e)?;
            }
            Ok(())
        })?;
        if let Some(mut f) = f {
            f.flush()?;
        }
    }
    let mut log = engine.conntrack_mut().take_log();
    let table_full_lines = log
        .iter()
        .filter(|(_, l)| l == ctrack_conntrack::TABLE_FULL_LOG)
        .count();
    log.extend(engine.take_log());
    log.sort_by_key(|(t, _)| *t);
    if let Some(path) = &args.log {
        let mut f = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        for (t, line) in &log {
            writeln!(f, "[{}] {line}", secs(*t))?;
        }
    }

    if let (Some(path), Some(r)) = (&args.plot, &sinks.plot) {
        let title = format!("conntrack table, nf_conntrack_max = {}", r.timeline.limit);
        std::fs::write(path, ctrack_plan::plot::svg(&r.timeline, &title, None))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !args.quiet {
        summary(&engine, &skipped, learned, notes, now, table_full_lines);
    }
    Ok(crate::drive::damage_code(&caps))
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
        "  dropped: {} table full, {} malformed, {} bad fragments, {} TTL exceeded, {} for their addresses, {} by rules",
        c.table_full, c.malformed, c.fragment_drops, c.ttl_exceeded, c.address_drops, c.rule_drops
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

/// Where each packet's outcome goes besides `--verdicts`: `--out` and `--plot`.
struct Sinks {
    out: Option<ctrack_capture::RawIpWriter<std::io::BufWriter<std::fs::File>>>,
    /// The table over time.
    plot: Option<Recorder>,
}

impl Sinks {
    /// Runs one packet through the engine and records what became of it.
    #[allow(clippy::too_many_arguments)]
    fn feed(
        &mut self,
        engine: &mut Engine,
        verdicts: &mut Lines<'_, VerdictRecord>,
        index: usize,
        time: u64,
        ip: &[u8],
        entry: Entry,
        mac: Option<[u8; 14]>,
    ) -> Result<Option<Vec<u8>>> {
        let mut o = engine.process_with_link(ip, entry, time, mac);
        if let (Some(w), Some(b)) = (self.out.as_mut(), o.leaving.as_ref()) {
            w.write(time, b)?;
        }
        if let Some(r) = self.plot.as_mut() {
            r.record(engine, time, &o);
        }
        if verdicts.wanted() {
            verdicts.push(VerdictRecord {
                index,
                time,
                family: Family::of_datagram(ip),
                hook: o.entry_hook,
                fate: o.fate,
                state: o.state,
                invalid: o.invalid,
                rule: o.rule,
                reply: o.reply.take(),
            })?;
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

/// What `--verdicts` says of one packet, taken from its outcome while the packet passes
/// and put in words later.
struct VerdictRecord {
    index: usize,
    time: u64,
    family: Option<Family>,
    hook: ctrack_conntrack::Hook,
    fate: Fate,
    state: ctrack_conntrack::PacketState,
    invalid: Option<&'static str>,
    rule: Option<(ctrack_conntrack::Hook, ctrack_engine::Table, usize, usize)>,
    reply: Option<Vec<u8>>,
}

/// One line of `--verdicts`; the fields in the order of their names, as they have always
/// been written.
#[derive(serde::Serialize)]
struct VerdictLine<'a> {
    fate: &'a str,
    hook: &'a str,
    index: usize,
    invalid: Option<&'a str>,
    reason: Option<String>,
    reply: Option<String>,
    rule: Option<RuleLine<'a>>,
    state: &'a str,
    time: String,
    verdict: &'a str,
}

/// The rule that decided, in a verdict line.
#[derive(serde::Serialize)]
struct RuleLine<'a> {
    chain: &'a str,
    hook: &'a str,
    origin: String,
    rule: usize,
    table: &'a str,
    text: String,
}

impl VerdictRecord {
    /// Appends the line of this packet.
    fn write(&self, names: &Ruleset, out: &mut String) {
        let rules = self.family.and_then(|f| names.family(f));
        let rule = self.rule.and_then(|(hook, table, c, r)| {
            let chain = rules?.table(table.name())?.chains.get(c)?;
            let rule = chain.rules.get(r)?;
            Some(RuleLine {
                chain: &chain.name,
                hook: hook.name(),
                origin: format!("{}:{}", rule.origin.file, rule.origin.line),
                rule: r + 1,
                table: table.name(),
                text: format!(
                    "-A {}{}",
                    chain.name,
                    rule.spec.save(self.family?, Backend::Nft)
                ),
            })
        });
        let (verdict, fate, reason) = match self.fate {
            Fate::Delivered => ("ACCEPT", "delivered", None),
            Fate::Forwarded => ("ACCEPT", "forwarded", None),
            Fate::Sent => ("ACCEPT", "sent", None),
            Fate::Held => ("HELD", "fragment held for reassembly", None),
            Fate::Dropped(r) => ("DROP", "dropped", Some(drop_reason(rules, r))),
        };
        let line = VerdictLine {
            fate,
            hook: self.hook.name(),
            index: self.index,
            invalid: self.invalid,
            reason,
            reply: self
                .reply
                .as_ref()
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
            rule,
            state: self.state.name(),
            time: secs_ns(self.time),
            verdict,
        };
        // Writing JSON into a String cannot fail: every field serialises.
        let json = serde_json::to_string(&line).expect("a verdict serialises");
        out.push_str(&json);
        out.push('\n');
    }
}

/// Why a packet was dropped, in words (`--verdicts`, plan differences).
pub fn drop_reason(rules: Option<&FamilyRules>, r: DropReason) -> String {
    match r {
        DropReason::Malformed(m) => format!("malformed: {}", m.reason()),
        DropReason::TableFull => "table full".to_string(),
        DropReason::Fragment => "bad fragment".to_string(),
        DropReason::TtlExceeded => "TTL exceeded".to_string(),
        DropReason::Address(why) => why.to_string(),
        DropReason::Helper(why) => format!("helper: {why}"),
        DropReason::Rule {
            hook,
            table,
            chain,
            rule,
            reject,
        } => {
            let chain_name = rules
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
    }
}

fn secs_ns(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}
