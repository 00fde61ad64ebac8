//! The ruleset: tables of chains of rules, per address family, and one rule's options.

use crate::addr::Net;
use crate::args::Args;
use crate::error::{OptError, OptResult};
use crate::matches::{parse_proto, proto_save, Match};
use crate::target::Target;
use ctrack_packet::Family;
use std::fmt::Write;

/// Packet and byte counters of a rule or a chain policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Where a rule came from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    /// File.
    pub file: String,
    /// 1-based line.
    pub line: usize,
}

/// The options of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// `-s`.
    pub src: Option<(Net, bool)>,
    /// `-d`.
    pub dst: Option<(Net, bool)>,
    /// `-i`.
    pub iif: Option<(String, bool)>,
    /// `-o`.
    pub oif: Option<(String, bool)>,
    /// `-p` (0 is `all`).
    pub proto: Option<(u8, bool)>,
    /// `-f` (true) or `! -f` (false).
    pub frag: Option<bool>,
    /// Matches, in the order iptables-save prints them.
    pub matches: Vec<Match>,
    /// Target.
    pub target: Target,
}

/// A rule with its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// What it matches and does.
    pub spec: RuleSpec,
    /// Packets and bytes it matched.
    pub counters: Counters,
    /// Where it was written.
    pub origin: Origin,
}

/// A chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Name.
    pub name: String,
    /// Policy of a built-in chain (`None` for user chains): true is ACCEPT.
    pub policy: Option<bool>,
    /// Policy counters.
    pub counters: Counters,
    /// Rules.
    pub rules: Vec<Rule>,
}

/// A table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// `raw`, `mangle`, `nat`, `filter` or `security`.
    pub name: String,
    /// Built-in chains in kernel order, then user chains sorted by name.
    pub chains: Vec<Chain>,
}

/// The built-in chains of a table, in the order iptables lists them.
pub fn builtin_chains(table: &str) -> Option<&'static [&'static str]> {
    Some(match table {
        "raw" => &["PREROUTING", "OUTPUT"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "filter" | "security" => &["INPUT", "FORWARD", "OUTPUT"],
        _ => return None,
    })
}

impl Table {
    /// An empty table with its built-in chains and ACCEPT policies.
    pub fn new(name: &str) -> Option<Table> {
        let chains = builtin_chains(name)?
            .iter()
            .map(|c| Chain {
                name: c.to_string(),
                policy: Some(true),
                counters: Counters::default(),
                rules: Vec::new(),
            })
            .collect();
        Some(Table {
            name: name.to_string(),
            chains,
        })
    }

    /// A chain by name.
    pub fn chain(&self, name: &str) -> Option<usize> {
        self.chains.iter().position(|c| c.name == name)
    }

    /// Adds an empty user chain.
    pub fn add_chain(&mut self, name: &str) {
        self.insert_user_chain(Chain {
            name: name.to_string(),
            policy: None,
            counters: Counters::default(),
            rules: Vec::new(),
        });
    }

    /// Puts a user chain among the others, sorted by name as iptables-save lists them.
    pub fn insert_user_chain(&mut self, chain: Chain) {
        let builtins = self.chains.iter().filter(|c| c.policy.is_some()).count();
        let at = builtins
            + self.chains[builtins..]
                .iter()
                .position(|c| c.name.as_bytes() > chain.name.as_bytes())
                .unwrap_or(self.chains.len() - builtins);
        self.chains.insert(at, chain);
    }
}

/// iptables targets that ctrack does not model: refused by name rather than taken for a
/// user chain.
const UNSUPPORTED_TARGETS: [&str; 28] = [
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNSECMARK",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "NETMAP",
    "NFQUEUE",
    "QUEUE",
    "RATEEST",
    "SECMARK",
    "SET",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
    "DNPT",
    "SNPT",
];

/// Which protocol's match `-p` loads implicitly.
fn implicit_match(proto: u8, family: Family) -> Option<&'static str> {
    match (proto, family) {
        (6, _) => Some("tcp"),
        (17, _) => Some("udp"),
        (136, _) => Some("udplite"),
        (1, Family::V4) => Some("icmp"),
        (58, Family::V6) => Some("icmp6"),
        _ => None,
    }
}

/// Parses the options of one rule (after `-A CHAIN`). A `-s`/`-d` list gives one spec per
/// address, as iptables expands it.
pub fn parse_rule(
    words: &[String],
    table: &str,
    chain: &str,
    family: Family,
) -> OptResult<Vec<RuleSpec>> {
    let mut args = Args::new(words);
    let mut spec = RuleSpec::with_target(Target::None);
    let mut srcs: Vec<Net> = Vec::new();
    let mut dsts: Vec<Net> = Vec::new();
    let mut src_inv = false;
    let mut dst_inv = false;
    let mut target_set = false;
    let mut inv = false;
    while let Some(w) = args.next_word() {
        if w == "!" {
            if inv {
                return Err(OptError::opt("!", "multiple `!' flags not allowed"));
            }
            inv = true;
            continue;
        }
        let was_inv = std::mem::take(&mut inv);
        match w {
            "-p" | "--protocol" => {
                let p = parse_proto(w, args.value(w)?)?;
                spec.proto = Some((p, was_inv));
            }
            "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                let v = args.value(w)?;
                let list: Vec<Net> = v
                    .split(',')
                    .map(|a| Net::parse(family, a, w))
                    .collect::<OptResult<_>>()?;
                if w.starts_with("-s") || w == "--source" || w == "--src" {
                    srcs = list;
                    src_inv = was_inv;
                } else {
                    dsts = list;
                    dst_inv = was_inv;
                }
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let v = args.value(w)?.to_string();
                if v.len() > 15 {
                    return Err(OptError::opt(
                        w,
                        format!("interface name `{v}' must be shorter than 16 characters"),
                    ));
                }
                let input = w == "-i" || w == "--in-interface";
                if input && matches!(chain, "OUTPUT" | "POSTROUTING") {
                    return Err(OptError::opt(w, format!("Can't use -i with {chain}")));
                }
                if !input && matches!(chain, "INPUT" | "PREROUTING") {
                    return Err(OptError::opt(w, format!("Can't use -o with {chain}")));
                }
                if input {
                    spec.iif = Some((v, was_inv));
                } else {
                    spec.oif = Some((v, was_inv));
                }
            }
            "-f" | "--fragment" => spec.frag = Some(!was_inv),
            "-m" | "--match" => {
                if was_inv {
                    return Err(OptError::opt(w, "unexpected ! flag before --match"));
                }
                let name = args.value(w)?;
                let m = Match::new(name, family).ok_or_else(|| {
                    OptError::opt(
                        w,
                        format!("Couldn't load match `{name}': not supported by ctrack"),
                    )
                })?;
                // iptables-nft prints repeated tcp/udp matches as one; its matches merge.
                spec.matches.push(m);
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                if target_set {
                    return Err(OptError::opt(w, "multiple -j flags not allowed"));
                }
                let name = args.value(w)?;
                target_set = true;
                if UNSUPPORTED_TARGETS.contains(&name) {
                    return Err(OptError::opt(
                        w,
                        format!("Couldn't load target `{name}': not supported by ctrack"),
                    ));
                }
                spec.target = if w == "-g" || w == "--goto" {
                    Target::Goto(name.to_string())
                } else {
                    Target::new(name).unwrap_or_else(|| Target::Jump(name.to_string()))
                };
            }
            "-c" | "--set-counters" => {
                // Counters are not loaded (iptables-restore without -c).
                args.value(w)?;
                if !w.contains(':') {
                    args.value(w)?;
                }
            }
            opt if opt.starts_with('-') => {
                let mut taken = false;
                if target_set {
                    taken = spec.target.parse_opt(opt, &mut args, family)?;
                }
                if !taken {
                    for m in spec.matches.iter_mut().rev() {
                        if m.parse_opt(opt, was_inv, &mut args, family)? {
                            taken = true;
                            break;
                        }
                    }
                }
                if !taken {
                    // The protocol's own match, loaded on first use as iptables does.
                    let proto = spec.proto.filter(|(_, i)| !i).map(|(p, _)| p);
                    let loaded = proto.and_then(|p| implicit_match(p, family)).and_then(|n| {
                        let name = Match::new(n, family)?.name();
                        (!spec.matches.iter().any(|m| m.name() == name)).then_some(n)
                    });
                    if let Some(n) = loaded {
                        let mut m = Match::new(n, family).expect("known match");
                        if m.parse_opt(opt, was_inv, &mut args, family)? {
                            spec.matches.push(m);
                            taken = true;
                        }
                    }
                }
                if !taken {
                    return Err(OptError::opt(opt, "unknown option"));
                }
            }
            other => return Err(OptError::opt(other, "Bad argument")),
        }
    }
    if inv {
        return Err(OptError::opt("!", "a `!' must precede an option"));
    }
    if spec.proto == Some((0, true)) {
        return Err(OptError::opt("-p", "rule would never match protocol"));
    }
    let proto = spec.proto.filter(|(_, inv)| !inv).map(|(p, _)| p);
    for m in &spec.matches {
        m.finish()?;
        // A protocol's match needs the rule to name that protocol (`xt_check_match`).
        let (ok, need) = match m {
            Match::Tcp { .. } => (proto == Some(6), "TCP match requires '-p tcp'"),
            Match::Udp { .. } => (
                matches!(proto, Some(17 | 136)),
                "UDP match requires '-p udp' or '-p udplite'",
            ),
            Match::Icmp(_) => (proto == Some(1), "icmp match requires '-p icmp'"),
            Match::Icmp6(_) => (proto == Some(58), "icmp6 match requires '-p ipv6-icmp'"),
            Match::Multiport(_) => (
                matches!(proto, Some(6 | 17 | 136 | 132 | 33)),
                "multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'",
            ),
            _ => (true, ""),
        };
        if !ok {
            return Err(OptError::line(need));
        }
    }
    if let Target::Jump(c) | Target::Goto(c) = &spec.target {
        if c.starts_with('-') || c.is_empty() {
            return Err(OptError::opt("-j", format!("invalid target name `{c}'")));
        }
    }
    spec.target.finish(table, family, spec.proto)?;
    if let Target::Ct {
        helper: Some(h), ..
    } = &spec.target
    {
        // xt_CT looks the helper up for the rule's protocol.
        let proto = match spec.proto {
            Some((p, false)) if p != 0 => p,
            _ => {
                return Err(OptError::line(
                    "CT: You must specify a L4 protocol and not use inversions on it",
                ))
            }
        };
        if !crate::target::helper_exists(h, proto) {
            return Err(OptError::opt(
                "--helper",
                format!("No such helper \"{h}\" for this protocol"),
            ));
        }
    }
    let mut out = Vec::new();
    let srcs: Vec<Option<Net>> = if srcs.is_empty() {
        vec![None]
    } else {
        srcs.into_iter().map(Some).collect()
    };
    let dsts: Vec<Option<Net>> = if dsts.is_empty() {
        vec![None]
    } else {
        dsts.into_iter().map(Some).collect()
    };
    for s in &srcs {
        for d in &dsts {
            let mut one = spec.clone();
            one.src = s.map(|n| (n, src_inv));
            one.dst = d.map(|n| (n, dst_inv));
            out.push(one);
        }
    }
    Ok(out)
}

/// Which iptables prints the canonical form: they differ in small ways.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-nft` (Debian's `iptables`).
    #[default]
    Nft,
    /// `iptables-legacy`.
    Legacy,
}

/// iptables-nft turns a rule's tcp (or udp) matches into one, at the first one's place.
fn merge_protocol_matches(ms: &mut Vec<Match>) {
    let mut i = 0;
    while i < ms.len() {
        let mut j = i + 1;
        while j < ms.len() {
            let merged = match (&ms[i], &ms[j]) {
                (
                    Match::Tcp {
                        sport,
                        dport,
                        flags,
                        option,
                    },
                    Match::Tcp {
                        sport: s2,
                        dport: d2,
                        flags: f2,
                        option: o2,
                    },
                ) => Some(Match::Tcp {
                    sport: s2.or(*sport),
                    dport: d2.or(*dport),
                    flags: f2.or(*flags),
                    option: o2.or(*option),
                }),
                (
                    Match::Udp { sport, dport },
                    Match::Udp {
                        sport: s2,
                        dport: d2,
                    },
                ) => Some(Match::Udp {
                    sport: s2.or(*sport),
                    dport: d2.or(*dport),
                }),
                _ => None,
            };
            if let Some(m) = merged {
                ms[i] = m;
                ms.remove(j);
            } else {
                j += 1;
            }
        }
        i += 1;
    }
}

fn inv(b: bool) -> &'static str {
    if b {
        " !"
    } else {
        ""
    }
}

impl RuleSpec {
    /// A rule with no options and this target.
    pub fn with_target(target: Target) -> RuleSpec {
        RuleSpec {
            src: None,
            dst: None,
            iif: None,
            oif: None,
            proto: None,
            frag: None,
            matches: Vec::new(),
            target,
        }
    }

    /// The rule's options as iptables-save prints them (after `-A CHAIN`).
    pub fn save(&self, family: Family, backend: Backend) -> String {
        let mut s = String::new();
        if let Some((n, i)) = &self.src {
            let _ = write!(s, "{} -s {}", inv(*i), n.save(family));
        }
        if let Some((n, i)) = &self.dst {
            let _ = write!(s, "{} -d {}", inv(*i), n.save(family));
        }
        if let Some((n, i)) = &self.iif {
            let _ = write!(s, "{} -i {n}", inv(*i));
        }
        if let Some((n, i)) = &self.oif {
            let _ = write!(s, "{} -o {n}", inv(*i));
        }
        if let Some((p, i)) = self.proto {
            if p != 0 || i {
                let _ = write!(s, "{} -p {}", inv(i), proto_save(p));
            }
        }
        if let Some(f) = self.frag {
            s.push_str(if f { " -f" } else { " ! -f" });
        }
        if backend == Backend::Nft {
            let mut merged = self.matches.clone();
            merge_protocol_matches(&mut merged);
            for m in &merged {
                m.save(&mut s, family);
            }
        } else {
            for m in &self.matches {
                m.save(&mut s, family);
            }
        }
        match &self.target {
            Target::Nflog(g, prefix, size, t) => {
                // iptables-legacy keeps NFLOG's prefix in 64 bytes with the NUL, nft keeps it
                // whole; the old --nflog-range is printed by legacy only.
                let (prefix, size) = match backend {
                    Backend::Legacy => {
                        (prefix.as_ref().map(|p| p.chars().take(63).collect()), *size)
                    }
                    Backend::Nft => (prefix.clone(), size.filter(|(_, range)| !range)),
                };
                Target::Nflog(*g, prefix, size, *t).save(&mut s, family);
            }
            t => t.save(&mut s, family),
        }
        s
    }

    /// True when the rule depends on connection tracking.
    pub fn needs_conntrack(&self) -> bool {
        self.matches.iter().any(Match::needs_conntrack) || self.target.needs_conntrack()
    }
}

/// Every table of one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyRules {
    /// IPv4 (iptables) or IPv6 (ip6tables).
    pub family: Family,
    /// Tables in the order they were written.
    pub tables: Vec<Table>,
}

impl FamilyRules {
    /// The canonical `iptables-save` text; with `counters`, as `iptables-save -c`.
    pub fn save(&self, counters: bool, backend: Backend) -> String {
        let mut out = String::new();
        for t in &self.tables {
            let _ = writeln!(out, "*{}", t.name);
            for c in &t.chains {
                let policy = match c.policy {
                    Some(true) => "ACCEPT",
                    Some(false) => "DROP",
                    None => "-",
                };
                let k = if counters {
                    c.counters
                } else {
                    Counters::default()
                };
                let _ = writeln!(out, ":{} {} [{}:{}]", c.name, policy, k.packets, k.bytes);
            }
            for c in &t.chains {
                for r in &c.rules {
                    if counters {
                        let _ = write!(out, "[{}:{}] ", r.counters.packets, r.counters.bytes);
                    }
                    let _ = writeln!(out, "-A {}{}", c.name, r.spec.save(self.family, backend));
                }
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// A table by name.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}
