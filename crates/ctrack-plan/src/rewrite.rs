//! The rulesets that take tracking away: stateless, and NOTRACK for traffic classes.
//!
//! Both start from the operator's ruleset and the services it serves: a service is what a
//! rule accepts as a connection's first packet (`ACCEPT` in INPUT, FORWARD or OUTPUT of the
//! filter table, `-p tcp`/`-p udp` with a destination port, and no state condition or one
//! that includes NEW), and what the capture shows accepted (see [`Observed`]).
//!
//! - **Stateless**: every state condition goes. NEW drops out of its rule; INVALID rules go
//!   (nothing tells an INVALID packet without tracking); an ESTABLISHED/RELATED rule jumps to
//!   a chain of explicit rules instead: the later packets of the chain's own services, the
//!   replies of the services the opposite chain lets out (for TCP only segments that are not
//!   a bare SYN), every TCP reply when the opposite chain is open, and ICMP errors for
//!   RELATED. NOTRACK rules go too: they need the module this remedy removes.
//! - **NOTRACK**: raw-table NOTRACK for the inbound services that need no tracking (not FTP,
//!   whose data connections come through its helper), both directions, and at the top of
//!   the filter chains the accepts their packets then need: untracked packets match
//!   neither `--state NEW` nor `ESTABLISHED`.
//!
//! Generated text is loaded back through the ruleset parser, so what is written is valid
//! `iptables-restore` input in its canonical form.

use crate::deps::{needs_of, state_condition, Need};
use ctrack_packet::Family;
use ctrack_rules::matches::Ports;
use ctrack_rules::{Backend, FamilyRules, Match, RuleSpec, Target};
use serde::Serialize;
use std::fmt::Write;

const NEW: u16 = 1 << 1;
const INVALID: u16 = 1 << 0;
const RELATED: u16 = 1 << 2;
const ESTABLISHED: u16 = 1 << 3;

/// A connection's first packet accepted in the capture, by class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Family.
    pub family: Family,
    /// `INPUT` (to the host), `OUTPUT` (from it) or `FORWARD`.
    pub chain: &'static str,
    /// 6 or 17.
    pub proto: u8,
    /// Destination port.
    pub port: u16,
    /// Connections.
    pub connections: u64,
}

/// A traffic class: connections of one protocol to one destination port (range), whose
/// first packet one chain accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// Where the first packet is accepted.
    pub chain: String,
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// Destination ports, lowest and highest.
    pub ports: (u16, u16),
    /// The accepting rule's `-s`, `-d`, `-i`, `-o`, as iptables writes them (with `!`).
    #[serde(skip)]
    pub addrs: [Option<String>; 4],
    /// `file:line` of the accepting rule; `None` when only the capture shows it.
    pub origin: Option<String>,
    /// Connections the capture shows.
    pub connections: u64,
}

impl Service {
    fn port_text(&self) -> String {
        if self.ports.0 == self.ports.1 {
            self.ports.0.to_string()
        } else {
            format!("{}:{}", self.ports.0, self.ports.1)
        }
    }

    /// The class's options for a packet of the original direction (`reply == false`) or of
    /// the reply direction (addresses, interfaces and ports swapped), as rule text without
    /// the interfaces the chain `chain` cannot name.
    fn options(&self, reply: bool, chain: &str) -> String {
        let [s, d, i, o] = &self.addrs;
        let (s, d, i, o) = if reply { (d, s, o, i) } else { (s, d, i, o) };
        let mut out = String::new();
        let flag = |out: &mut String, opt: &str, v: &Option<String>| {
            if let Some(v) = v {
                match v.strip_prefix("! ") {
                    Some(v) => {
                        let _ = write!(out, " ! {opt} {v}");
                    }
                    None => {
                        let _ = write!(out, " {opt} {v}");
                    }
                }
            }
        };
        flag(&mut out, "-s", s);
        flag(&mut out, "-d", d);
        if !matches!(chain, "OUTPUT" | "POSTROUTING") {
            flag(&mut out, "-i", i);
        }
        if !matches!(chain, "INPUT" | "PREROUTING") {
            flag(&mut out, "-o", o);
        }
        let port = if reply { "--sport" } else { "--dport" };
        let _ = write!(
            out,
            " -p {p} -m {p} {port} {}",
            self.port_text(),
            p = self.proto
        );
        out
    }

    /// True when the class is FTP's control connection (port 21).
    pub fn is_ftp(&self) -> bool {
        self.proto == "tcp" && self.ports.0 <= 21 && 21 <= self.ports.1
    }
}

/// A generated ruleset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Generated {
    /// `stateless` or `notrack`.
    pub name: &'static str,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// `iptables-restore` input, canonical.
    pub text: String,
    /// What changed and what to know about it.
    pub notes: Vec<String>,
    /// Rules that keep this remedy from applying (it is then not to be used).
    pub blockers: Vec<String>,
}

fn family_name(f: Family) -> &'static str {
    crate::deps::family_name(f)
}

fn proto_name(p: u8) -> Option<&'static str> {
    match p {
        6 => Some("tcp"),
        17 => Some("udp"),
        _ => None,
    }
}

/// An option's value as the service keeps it: `! ` before it when inverted.
fn opt_text<T>(opt: &Option<(T, bool)>, text: impl Fn(&T) -> String) -> Option<String> {
    opt.as_ref().map(|(v, inv)| {
        let t = text(v);
        if *inv {
            format!("! {t}")
        } else {
            t
        }
    })
}

/// The services a ruleset accepts, merged with what the capture shows.
pub fn services(fr: &FamilyRules, observed: &[Observed]) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    if let Some(filter) = fr.table("filter") {
        for c in &filter.chains {
            if !matches!(c.name.as_str(), "INPUT" | "FORWARD" | "OUTPUT") {
                continue;
            }
            for r in &c.rules {
                let spec = &r.spec;
                if spec.target != Target::Accept {
                    continue;
                }
                if let Some((mask, inv)) = state_condition(spec) {
                    if inv || mask & NEW == 0 {
                        continue;
                    }
                }
                let Some((proto, false)) = spec.proto else {
                    continue;
                };
                let Some(pname) = proto_name(proto) else {
                    continue;
                };
                let mut ranges = Vec::new();
                for m in &spec.matches {
                    match m {
                        Match::Tcp {
                            dport: Some(Ports { lo, hi, inv: false }),
                            ..
                        }
                        | Match::Udp {
                            dport: Some(Ports { lo, hi, inv: false }),
                            ..
                        } => ranges.push((*lo, *hi)),
                        Match::Multiport(Some((1, list, false))) => ranges.extend(list),
                        _ => {}
                    }
                }
                let addrs = [
                    opt_text(&spec.src, |n| n.save(fr.family)),
                    opt_text(&spec.dst, |n| n.save(fr.family)),
                    opt_text(&spec.iif, String::clone),
                    opt_text(&spec.oif, String::clone),
                ];
                for ports in ranges {
                    out.push(Service {
                        family: family_name(fr.family),
                        chain: c.name.clone(),
                        proto: pname,
                        ports,
                        addrs: addrs.clone(),
                        origin: Some(format!("{}:{}", r.origin.file, r.origin.line)),
                        connections: 0,
                    });
                }
            }
        }
    }
    for o in observed.iter().filter(|o| o.family == fr.family) {
        let Some(pname) = proto_name(o.proto) else {
            continue;
        };
        match out.iter_mut().find(|s| {
            s.chain == o.chain && s.proto == pname && s.ports.0 <= o.port && o.port <= s.ports.1
        }) {
            Some(s) => s.connections += o.connections,
            None => out.push(Service {
                family: family_name(fr.family),
                chain: o.chain.to_string(),
                proto: pname,
                ports: (o.port, o.port),
                addrs: Default::default(),
                origin: None,
                connections: o.connections,
            }),
        }
    }
    out
}

fn opposite(chain: &str) -> &'static str {
    match chain {
        "INPUT" => "OUTPUT",
        "OUTPUT" => "INPUT",
        _ => "FORWARD",
    }
}

fn target_text(t: &Target, family: Family) -> String {
    RuleSpec::with_target(t.clone()).save(family, Backend::Nft)
}

fn without_state(spec: &RuleSpec) -> RuleSpec {
    let mut s = spec.clone();
    s.matches.retain(|m| match m {
        Match::State(_) => false,
        Match::Conntrack(c) => c.state.is_none(),
        _ => true,
    });
    s
}

fn icmp_errors(family: Family) -> Vec<String> {
    match family {
        Family::V4 => [3, 11, 12]
            .iter()
            .map(|t| format!(" -p icmp -m icmp --icmp-type {t}"))
            .collect(),
        Family::V6 => [1, 2, 3, 4]
            .iter()
            .map(|t| format!(" -p ipv6-icmp -m icmp6 --icmpv6-type {t}"))
            .collect(),
    }
}

/// One chain of explicit accepts that stands for an ESTABLISHED/RELATED rule.
struct Replies<'a> {
    chain: &'a str,
    /// The chain the rule stood in.
    from: &'a str,
    table: &'a ctrack_rules::Table,
    family: Family,
    related: bool,
    /// ` -j …` of the rule.
    target: &'a str,
}

impl Replies<'_> {
    /// The chain's rules: later packets of the chain's own services, replies of the opposite
    /// chain's (TCP: not a bare SYN), every TCP reply when the opposite chain is open, and
    /// ICMP errors for RELATED.
    fn rules(&self, services: &[Service], notes: &mut Vec<String>) -> String {
        let (chain, target, fam) = (self.chain, self.target, family_name(self.family));
        let other = opposite(self.from);
        let mut out = String::new();
        for s in services
            .iter()
            .filter(|s| s.family == fam && s.chain == self.from)
        {
            let _ = writeln!(out, "-A {chain}{}{target}", s.options(false, self.from));
        }
        for s in services
            .iter()
            .filter(|s| s.family == fam && s.chain == other)
        {
            let not_syn = if s.proto == "tcp" {
                " ! --tcp-flags FIN,SYN,RST,ACK SYN"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "-A {chain}{}{not_syn}{target}",
                s.options(true, self.from)
            );
        }
        let open = self
            .table
            .chains
            .iter()
            .find(|x| x.name == other)
            .is_some_and(|x| x.policy == Some(true));
        if open && self.from != "FORWARD" {
            let _ = writeln!(
                out,
                "-A {chain} -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN{target}"
            );
            notes.push(format!(
                "{other} lets every connection out: {chain} accepts every TCP segment that is not a bare SYN, and UDP replies only from the ports the capture shows"
            ));
        }
        if self.related {
            for e in icmp_errors(self.family) {
                let _ = writeln!(out, "-A {chain}{e}{target}");
            }
        }
        out
    }
}

/// The chain the stateless rewrite sends a chain's replies to.
fn replies_chain(chain: &str) -> String {
    format!("stateless-{}", chain.to_lowercase())
}

fn header(text: &mut String, t: &ctrack_rules::Table, extra: &[String]) {
    let _ = writeln!(text, "*{}", t.name);
    for c in &t.chains {
        let policy = match c.policy {
            Some(true) => "ACCEPT",
            Some(false) => "DROP",
            None => "-",
        };
        let _ = writeln!(text, ":{} {policy} [0:0]", c.name);
    }
    for e in extra {
        let _ = writeln!(text, ":{e} - [0:0]");
    }
}

fn finish(
    name: &'static str,
    family: Family,
    text: String,
    notes: Vec<String>,
    mut blockers: Vec<String>,
) -> Generated {
    let file = format!("{name}.rules");
    let text = match ctrack_rules::load_as(&text, &file, family) {
        Ok(r) => r.save(false, Backend::Nft),
        Err(e) => {
            blockers.push(format!("the generated ruleset does not load: {e}"));
            text
        }
    };
    Generated {
        name,
        family: family_name(family),
        text,
        notes,
        blockers,
    }
}

/// The stateless ruleset for `fr`, given its services.
pub fn stateless(fr: &FamilyRules, services: &[Service]) -> Generated {
    let family = fr.family;
    let mut text = String::new();
    let mut notes = Vec::new();
    let mut blockers = Vec::new();
    for t in &fr.tables {
        let mut extra: Vec<String> = Vec::new();
        let mut made: Vec<(String, u16, String)> = Vec::new();
        let mut rules = String::new();
        let mut extra_rules = String::new();
        for c in &t.chains {
            for r in &c.rules {
                let origin = format!("{}:{}", r.origin.file, r.origin.line);
                let line = format!("-A {}{}", c.name, r.spec.save(family, Backend::Nft));
                let needs = needs_of(&r.spec, &t.name);
                if let Some(n) = needs.iter().find(|n| !n.rewritable()) {
                    blockers.push(format!("{origin}: `{line}`: {}", n.describe()));
                    let _ = writeln!(rules, "{line}");
                    continue;
                }
                if needs.contains(&Need::NotrackTarget) {
                    notes.push(format!(
                        "{origin}: `{line}` removed: NOTRACK needs the conntrack module"
                    ));
                    continue;
                }
                let Some((mask, inv)) = state_condition(&r.spec) else {
                    let _ = writeln!(rules, "{line}");
                    continue;
                };
                let stripped = without_state(&r.spec).save(family, Backend::Nft);
                if inv || mask & !(NEW | INVALID | RELATED | ESTABLISHED) != 0 {
                    blockers.push(format!(
                        "{origin}: `{line}`: a state condition a stateless rule cannot express"
                    ));
                    let _ = writeln!(rules, "{line}");
                } else if mask & NEW != 0 {
                    let _ = writeln!(rules, "-A {}{stripped}", c.name);
                    notes.push(format!(
                        "{origin}: the state condition of `{line}` is dropped: the rule now matches every packet of its class"
                    ));
                } else if mask == INVALID {
                    notes.push(format!(
                        "{origin}: `{line}` removed: without tracking no packet is INVALID"
                    ));
                } else if t.name != "filter"
                    || !matches!(c.name.as_str(), "INPUT" | "OUTPUT" | "FORWARD")
                {
                    blockers.push(format!(
                        "{origin}: `{line}`: replies are accepted explicitly only in the filter table's INPUT, OUTPUT and FORWARD"
                    ));
                    let _ = writeln!(rules, "{line}");
                } else {
                    // The rule's own conditions stay; its target becomes the replies chain,
                    // one chain a chain, state condition and target.
                    let mut jump = without_state(&r.spec);
                    let target = target_text(&jump.target, family);
                    let key = (c.name.clone(), mask & RELATED, target.clone());
                    let chain = match made.iter().position(|k| *k == key) {
                        Some(i) => extra[i].clone(),
                        None => {
                            let name = match made.iter().filter(|k| k.0 == c.name).count() {
                                0 => replies_chain(&c.name),
                                n => format!("{}-{}", replies_chain(&c.name), n + 1),
                            };
                            let reply = Replies {
                                chain: &name,
                                from: &c.name,
                                table: t,
                                family,
                                related: mask & RELATED != 0,
                                target: &target,
                            };
                            extra_rules.push_str(&reply.rules(services, &mut notes));
                            made.push(key);
                            extra.push(name.clone());
                            name
                        }
                    };
                    jump.target = Target::Jump(chain.clone());
                    let _ = writeln!(rules, "-A {}{}", c.name, jump.save(family, Backend::Nft));
                    notes.push(format!(
                        "{origin}: `{line}` becomes a jump to {chain}, which accepts replies explicitly"
                    ));
                }
            }
        }
        // A table left with nothing (a raw table of NOTRACK rules) is left out.
        let had_rules = t.chains.iter().any(|c| !c.rules.is_empty());
        if had_rules && rules.is_empty() && extra_rules.is_empty() {
            continue;
        }
        header(&mut text, t, &extra);
        text.push_str(&rules);
        text.push_str(&extra_rules);
        text.push_str("COMMIT\n");
    }
    if blockers.is_empty() {
        notes.push(
            "nothing in this ruleset loads nf_conntrack any more: unload it (`modprobe -r xt_state xt_conntrack nf_conntrack`) and keep it out (`install nf_conntrack /bin/false` in /etc/modprobe.d/no-conntrack.conf); while it stays loaded every packet is still tracked"
                .to_string(),
        );
    }
    finish("stateless", family, text, notes, blockers)
}

/// The classes NOTRACK can take: inbound TCP and UDP services, FTP aside.
pub fn notrack_classes(services: &[Service]) -> Vec<Service> {
    services
        .iter()
        .filter(|s| matches!(s.chain.as_str(), "INPUT" | "FORWARD") && !s.is_ftp())
        .cloned()
        .collect()
}

/// The NOTRACK ruleset: `fr` with raw NOTRACK and filter accepts for `classes`.
pub fn notrack(fr: &FamilyRules, classes: &[Service], has_helper: bool) -> Generated {
    let family = fr.family;
    let fam = family_name(family);
    let classes: Vec<&Service> = classes.iter().filter(|s| s.family == fam).collect();
    let mut notes = Vec::new();
    let mut raw_pre = String::new();
    let mut raw_out = String::new();
    let mut filter_top: Vec<(String, String)> = Vec::new();
    for s in &classes {
        let _ = writeln!(
            raw_pre,
            "-A PREROUTING{} -j NOTRACK",
            s.options(false, "PREROUTING")
        );
        if s.chain == "INPUT" {
            let _ = writeln!(raw_out, "-A OUTPUT{} -j NOTRACK", s.options(true, "OUTPUT"));
        } else {
            let _ = writeln!(
                raw_pre,
                "-A PREROUTING{} -j NOTRACK",
                s.options(true, "PREROUTING")
            );
        }
        let other = opposite(&s.chain);
        filter_top.push((
            s.chain.clone(),
            format!("-A {}{} -j ACCEPT", s.chain, s.options(false, &s.chain)),
        ));
        filter_top.push((
            other.to_string(),
            format!("-A {other}{} -j ACCEPT", s.options(true, other)),
        ));
        notes.push(format!(
            "{} {}/{} ({}): untracked both ways, accepted explicitly in {} and {}",
            s.chain,
            s.proto,
            s.port_text(),
            s.origin.as_deref().unwrap_or("seen in the capture"),
            s.chain,
            other
        ));
    }
    if has_helper {
        notes.push(
            "FTP stays tracked: its data connections are RELATED through the helper. Untracked, passive mode would need its data port range opened explicitly (the server's passive ports, e.g. `-A INPUT -p tcp -m tcp --dport 30000:30010 -j ACCEPT`, with NOTRACK for them)"
                .to_string(),
        );
    }
    let mut text = String::new();
    let has_raw = fr.table("raw").is_some();
    if !has_raw && !classes.is_empty() {
        let _ = write!(
            text,
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{raw_pre}{raw_out}COMMIT\n"
        );
    }
    for t in &fr.tables {
        header(&mut text, t, &[]);
        for c in &t.chains {
            if t.name == "raw" {
                match c.name.as_str() {
                    "PREROUTING" => text.push_str(&raw_pre),
                    "OUTPUT" => text.push_str(&raw_out),
                    _ => {}
                }
            }
            if t.name == "filter" {
                for (chain, line) in &filter_top {
                    if *chain == c.name {
                        let _ = writeln!(text, "{line}");
                    }
                }
            }
            for r in &c.rules {
                let _ = writeln!(text, "-A {}{}", c.name, r.spec.save(family, Backend::Nft));
            }
        }
        text.push_str("COMMIT\n");
    }
    if classes.is_empty() {
        notes.push("no inbound TCP or UDP service of this family to take out of tracking: the ruleset stays as it is".to_string());
    }
    finish("notrack", family, text, notes, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n\
        -A INPUT -m conntrack --ctstate INVALID -j DROP\n\
        -A INPUT -p tcp -m tcp --dport 22 -m state --state NEW -j ACCEPT\n\
        -A INPUT -p udp -m udp --dport 53 -j ACCEPT\nCOMMIT\n";

    fn load(text: &str) -> FamilyRules {
        ctrack_rules::load(text, "server.rules").expect("valid")
    }

    #[test]
    fn services_come_from_accepting_rules_and_the_capture() {
        let r = load(SERVER);
        let observed = [
            Observed {
                family: Family::V4,
                chain: "INPUT",
                proto: 17,
                port: 53,
                connections: 40,
            },
            Observed {
                family: Family::V4,
                chain: "OUTPUT",
                proto: 17,
                port: 123,
                connections: 2,
            },
        ];
        let s = services(&r, &observed);
        let summary: Vec<_> = s
            .iter()
            .map(|s| {
                (
                    s.chain.as_str(),
                    s.proto,
                    s.ports.0,
                    s.connections,
                    s.origin.is_some(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("INPUT", "tcp", 22, 0, true),
                ("INPUT", "udp", 53, 40, true),
                ("OUTPUT", "udp", 123, 2, false)
            ]
        );
    }

    #[test]
    fn stateless_replaces_state_with_explicit_replies() {
        let r = load(SERVER);
        let s = services(&r, &[]);
        let g = stateless(&r, &s);
        assert!(g.blockers.is_empty(), "{:?}", g.blockers);
        let expected = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            :stateless-input - [0:0]\n\
            -A INPUT -j stateless-input\n\
            -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n\
            -A INPUT -p udp -m udp --dport 53 -j ACCEPT\n\
            -A stateless-input -p tcp -m tcp --dport 22 -j ACCEPT\n\
            -A stateless-input -p udp -m udp --dport 53 -j ACCEPT\n\
            -A stateless-input -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT\n\
            -A stateless-input -p icmp -m icmp --icmp-type 3 -j ACCEPT\n\
            -A stateless-input -p icmp -m icmp --icmp-type 11 -j ACCEPT\n\
            -A stateless-input -p icmp -m icmp --icmp-type 12 -j ACCEPT\nCOMMIT\n";
        assert_eq!(g.text, expected);
        assert!(g.notes.iter().any(|n| n.contains("INVALID")));
    }

    #[test]
    fn each_kind_of_established_rule_gets_its_own_replies_chain() {
        // The second rule wants RELATED too: its chain must hold the ICMP errors, which the
        // first one's does not.
        let r = load(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A INPUT -i eth0 -m state --state ESTABLISHED -j ACCEPT\n\
             -A INPUT -i eth1 -m state --state ESTABLISHED,RELATED -j ACCEPT\n\
             -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n",
        );
        let g = stateless(&r, &services(&r, &[]));
        assert!(
            g.text.contains("-A INPUT -i eth0 -j stateless-input\n"),
            "{}",
            g.text
        );
        assert!(
            g.text.contains("-A INPUT -i eth1 -j stateless-input-2\n"),
            "{}",
            g.text
        );
        assert!(!g.text.contains("-A stateless-input -p icmp"), "{}", g.text);
        assert!(g
            .text
            .contains("-A stateless-input-2 -p icmp -m icmp --icmp-type 3 -j ACCEPT"));
    }

    #[test]
    fn stateless_is_blocked_by_what_only_tracking_gives() {
        let r = load("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 80 -m connlimit --connlimit-above 5 -j DROP\nCOMMIT\n");
        let g = stateless(&r, &services(&r, &[]));
        assert_eq!(g.blockers.len(), 1);
        assert!(
            g.blockers[0].contains("server.rules:5"),
            "{}",
            g.blockers[0]
        );
    }

    #[test]
    fn notrack_sends_inbound_services_around_tracking_and_accepts_them() {
        let r = load(SERVER);
        let s = services(&r, &[]);
        let g = notrack(&r, &notrack_classes(&s), false);
        assert!(g.blockers.is_empty(), "{:?}", g.blockers);
        assert!(
            g.text.starts_with(
                "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A PREROUTING -p tcp -m tcp --dport 22 -j NOTRACK\n\
             -A PREROUTING -p udp -m udp --dport 53 -j NOTRACK\n\
             -A OUTPUT -p tcp -m tcp --sport 22 -j NOTRACK\n\
             -A OUTPUT -p udp -m udp --sport 53 -j NOTRACK\nCOMMIT\n"
            ),
            "{}",
            g.text
        );
        assert!(g.text.contains(
            ":OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p udp -m udp --dport 53 -j ACCEPT\n-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT"
        ), "{}", g.text);
        assert!(g
            .text
            .contains("-A OUTPUT -p udp -m udp --sport 53 -j ACCEPT\n"));
    }

    #[test]
    fn ftp_is_not_a_notrack_class() {
        let r = load("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 21 -j ACCEPT\nCOMMIT\n");
        assert!(notrack_classes(&services(&r, &[])).is_empty());
    }
}
