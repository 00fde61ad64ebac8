//! What in a ruleset needs connection tracking.

use ctrack_packet::Family;
use ctrack_rules::matches::STATE_NAMES;
use ctrack_rules::{FamilyRules, Match, RuleSpec, Target};
use serde::Serialize;

/// Why a rule needs conntrack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Need {
    /// `-m state` or `-m conntrack --ctstate`: the packet's state.
    State,
    /// `-m conntrack` options other than `--ctstate` (tuples, status, expiry, direction).
    ConntrackFields,
    /// The nat table and its targets: every translated packet needs its connection.
    Nat,
    /// A helper: `CT --helper` or `-m helper` (RELATED data connections).
    Helper,
    /// `-m connmark` or `CONNMARK`: marks kept on the connection.
    ConnMark,
    /// `-m connlimit`: counts the connections it saw in the table.
    ConnLimit,
    /// `-m connbytes`: the connection's counters.
    ConnBytes,
    /// `CT --zone`, `--timeout`, `--ctevents`: shapes tracked connections.
    CtTemplate,
    /// `NOTRACK` or `CT --notrack`: needs the conntrack module loaded, but tracks nothing.
    NotrackTarget,
}

impl Need {
    /// What an operator reads.
    pub fn describe(self) -> &'static str {
        match self {
            Need::State => "reads the connection state",
            Need::ConntrackFields => "reads the connection's tuples, status or expiry",
            Need::Nat => "NAT: translates by the connection's binding",
            Need::Helper => "a helper (RELATED data connections)",
            Need::ConnMark => "a mark kept on the connection",
            Need::ConnLimit => "counts the connections it saw in the table",
            Need::ConnBytes => "the connection's packet and byte counters",
            Need::CtTemplate => "shapes tracked connections (zone, timeouts, events)",
            Need::NotrackTarget => "NOTRACK: needs the conntrack module, tracks nothing",
        }
    }

    /// True when the stateless rewrite can replace it.
    pub fn rewritable(self) -> bool {
        matches!(self, Need::State | Need::NotrackTarget)
    }
}

/// One rule that needs conntrack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// Table.
    pub table: String,
    /// Chain.
    pub chain: String,
    /// 1-based rule number in the chain (0: the table itself).
    pub rule: usize,
    /// `file:line` where it was written.
    pub origin: String,
    /// The rule as iptables-save prints it.
    pub text: String,
    /// Why.
    pub needs: Vec<Need>,
}

/// Whether tracking can be switched off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Nothing depends on it: the kernel can run without the conntrack modules.
    CanGoEntirely,
    /// Rules depend on it, but they can be rewritten, or traffic classes sent around it.
    CanGoForClasses,
    /// The host does NAT (or uses what only tracking gives): tracking stays, sizing is the
    /// remedy.
    CannotGo,
}

/// The `--state`/`--ctstate` condition of a rule: bits and inversion.
pub fn state_condition(spec: &RuleSpec) -> Option<(u16, bool)> {
    spec.matches.iter().find_map(|m| match m {
        Match::State(s) => *s,
        Match::Conntrack(c) => c.state,
        _ => None,
    })
}

/// The state names of a mask, as iptables prints them.
pub fn state_names(mask: u16) -> String {
    STATE_NAMES
        .iter()
        .filter(|(_, b)| mask & b != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// What one rule needs, in the order its options stand.
pub fn needs_of(spec: &RuleSpec, table: &str) -> Vec<Need> {
    let mut out = Vec::new();
    let mut add = |n: Need| {
        if !out.contains(&n) {
            out.push(n);
        }
    };
    if table == "nat" {
        add(Need::Nat);
    }
    for m in &spec.matches {
        match m {
            Match::State(_) => add(Need::State),
            Match::Conntrack(c) => {
                if c.state.is_some() {
                    add(Need::State);
                }
                if c.proto.is_some()
                    || c.addrs.iter().any(Option::is_some)
                    || c.ports.iter().any(Option::is_some)
                    || c.status.is_some()
                    || c.expire.is_some()
                    || c.dir.is_some()
                {
                    add(Need::ConntrackFields);
                }
            }
            Match::ConnMark(_) => add(Need::ConnMark),
            Match::Helper(_) => add(Need::Helper),
            Match::ConnBytes(..) => add(Need::ConnBytes),
            Match::ConnLimit(..) => add(Need::ConnLimit),
            _ => {}
        }
    }
    match &spec.target {
        Target::Snat(_) | Target::Dnat(_) | Target::Masquerade(_) | Target::Redirect(_) => {
            add(Need::Nat)
        }
        Target::ConnMarkSet(..) | Target::ConnMarkSave(..) | Target::ConnMarkRestore(..) => {
            add(Need::ConnMark)
        }
        Target::Notrack => add(Need::NotrackTarget),
        Target::Ct {
            notrack,
            helper,
            timeout,
            ctevents,
            expevents,
            zone,
        } => {
            if *notrack {
                add(Need::NotrackTarget);
            }
            if helper.is_some() {
                add(Need::Helper);
            }
            if timeout.is_some() || ctevents.is_some() || expevents.is_some() || *zone != 0 {
                add(Need::CtTemplate);
            }
        }
        _ => {}
    }
    out
}

/// Family name as conntrack prints it.
pub fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// Every rule of every table that needs conntrack; a nat table without rules counts as one
/// entry of its own (its hooks alone make the kernel track and translate).
pub fn dependencies(rulesets: &[&FamilyRules]) -> Vec<Dependency> {
    let mut out = Vec::new();
    for fr in rulesets {
        for t in &fr.tables {
            let mut any = false;
            for c in &t.chains {
                for (i, r) in c.rules.iter().enumerate() {
                    let needs = needs_of(&r.spec, &t.name);
                    if needs.is_empty() {
                        continue;
                    }
                    any = true;
                    out.push(Dependency {
                        family: family_name(fr.family),
                        table: t.name.clone(),
                        chain: c.name.clone(),
                        rule: i + 1,
                        origin: format!("{}:{}", r.origin.file, r.origin.line),
                        text: format!(
                            "-A {}{}",
                            c.name,
                            r.spec.save(fr.family, ctrack_rules::Backend::Nft)
                        ),
                        needs,
                    });
                }
            }
            if t.name == "nat" && !any {
                out.push(Dependency {
                    family: family_name(fr.family),
                    table: t.name.clone(),
                    chain: String::new(),
                    rule: 0,
                    origin: String::new(),
                    text: "*nat (no rules: its hooks still track and translate)".to_string(),
                    needs: vec![Need::Nat],
                });
            }
        }
    }
    out
}

/// The verdict for a set of dependencies.
pub fn verdict(deps: &[Dependency]) -> Verdict {
    if deps.iter().any(|d| d.needs.contains(&Need::Nat)) {
        Verdict::CannotGo
    } else if deps
        .iter()
        .all(|d| d.needs.iter().all(|n| *n == Need::NotrackTarget))
    {
        Verdict::CanGoEntirely
    } else {
        Verdict::CanGoForClasses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> FamilyRules {
        ctrack_rules::load(text, "test.rules").expect("valid ruleset")
    }

    #[test]
    fn state_rules_are_listed_with_their_line() {
        let r = load(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT\n\
             -A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
        );
        let d = dependencies(&[&r]);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].origin.as_str(), d[0].rule), ("test.rules:5", 1));
        assert_eq!(d[0].needs, vec![Need::State]);
        assert_eq!(verdict(&d), Verdict::CanGoForClasses);
    }

    #[test]
    fn nat_means_tracking_stays_even_without_rules() {
        let r = load("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n");
        let d = dependencies(&[&r]);
        assert_eq!(d[0].needs, vec![Need::Nat]);
        assert_eq!(verdict(&d), Verdict::CannotGo);
    }

    #[test]
    fn a_stateless_ruleset_can_lose_tracking_entirely() {
        let r = load("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j NOTRACK\nCOMMIT\n");
        let d = dependencies(&[&r]);
        assert_eq!(verdict(&d), Verdict::CanGoEntirely);
        assert_eq!(d[0].needs, vec![Need::NotrackTarget]);
    }

    #[test]
    fn helpers_and_connlimit_are_named() {
        let r = load("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --syn --dport 80 -m connlimit --connlimit-above 10 -j DROP\nCOMMIT\n");
        let d = dependencies(&[&r]);
        assert_eq!(d[0].needs, vec![Need::Helper]);
        assert_eq!(d[1].needs, vec![Need::ConnLimit]);
    }
}
