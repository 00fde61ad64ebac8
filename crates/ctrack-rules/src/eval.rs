//! Evaluating a packet: chains walked as the kernel's `ipt_do_table` walks them, counters
//! kept per rule and per policy. Allocation-free once warm: the jump stack is kept by the
//! ruleset from one packet to the next, so a walk neither allocates nor clears it.

use crate::ctx::{LazyCtx, PacketCtx};
use crate::matches::{Recent, RecentCmd};
use crate::model::{FamilyRules, Rule, RuleSpec};
use crate::prefilter::{Admits, Key, Record, Records, Rest};
use crate::target::{RejectWith, Target};
use ctrack_packet::{Addr, Family};
use std::collections::HashMap;

/// The deepest chain nesting iptables allows.
const MAX_DEPTH: usize = 32;

/// What a table decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Continue to the next table or hook.
    Accept,
    /// Dropped by a rule (`chain`, `rule` index) or a policy (`rule` is `None`); `reject`
    /// when the rule was REJECT.
    Drop {
        /// Chain index in the table.
        chain: usize,
        /// Rule index in the chain, or `None` for the policy.
        rule: Option<usize>,
        /// The rule was REJECT: what the host answers with.
        reject: Option<RejectWith>,
    },
}

/// Side effects of rules on the packet and its connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// NOTRACK or `CT --notrack` ran.
    pub notrack: bool,
    /// CONNMARK changed the connection's mark.
    pub ct_mark_changed: bool,
    /// The last rule that decided: (chain index, rule index) in the table.
    pub last_rule: Option<(usize, usize)>,
    /// A raw-table CT rule's template for the connection the packet creates.
    pub template: Option<ctrack_conntrack::Template>,
    /// A nat-table rule's translation for the connection the packet creates.
    pub nat: Option<NatAction>,
}

/// What a NAT target asks for; MASQUERADE's and REDIRECT's addresses come from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatAction {
    /// SNAT or DNAT with a given range.
    Fixed(
        ctrack_conntrack::nat::Manip,
        ctrack_conntrack::nat::NatRange,
    ),
    /// MASQUERADE: the outgoing interface's address, these ports.
    Masquerade(Option<(u16, u16)>, bool),
    /// REDIRECT: the host's own address, these ports.
    Redirect(Option<(u16, u16)>, bool),
}

/// Both families' rulesets and the state rules keep (limit buckets, recent lists).
#[derive(Default)]
pub struct Ruleset {
    /// IPv4 rules (iptables).
    pub v4: Option<FamilyRules>,
    /// IPv6 rules (ip6tables).
    pub v6: Option<FamilyRules>,
    /// `-m recent` lists.
    pub recent: RecentTables,
    /// LOG lines not yet taken: packet time and text.
    pub log: Vec<(u64, String)>,
    /// Room for where each jump returns to, reused from one walk to the next.
    jumps: Vec<(usize, usize)>,
    /// The counters the last walk bumped, for [`Ruleset::replayable`].
    trace: Trace,
    /// Each family's rules boiled down for a fast first test, made by
    /// [`Ruleset::compile`]; without them a walk tests every rule whole.
    records: [Option<Records>; 2],
}

impl Ruleset {
    /// Adds a loaded file; a later file of the same family replaces the tables it holds, as
    /// a second `iptables-restore` would.
    pub fn add(&mut self, rules: FamilyRules) {
        self.records = Default::default();
        let slot = match rules.family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        match slot {
            Some(existing) => {
                for t in rules.tables {
                    existing.tables.retain(|x| x.name != t.name);
                    existing.tables.push(t);
                }
            }
            None => *slot = Some(rules),
        }
    }

    /// Makes the records a walk tests before a rule's whole test (see the `prefilter`
    /// module), for the rules as they are now. A walk decides the same with or without them,
    /// and faster with: call it once the rules are in place. A chain given more or fewer
    /// rules afterwards is walked without its records; rules changed in place need another
    /// call.
    pub fn compile(&mut self) {
        self.records = [
            self.v4.as_ref().map(Records::of),
            self.v6.as_ref().map(Records::of),
        ];
    }

    /// `iptables -Z` and `ip6tables -Z`: every rule and policy counter back to zero.
    pub fn zero(&mut self) {
        for fr in [self.v4.as_mut(), self.v6.as_mut()].into_iter().flatten() {
            for t in &mut fr.tables {
                for c in &mut t.chains {
                    c.counters = Default::default();
                    for r in &mut c.rules {
                        r.counters = Default::default();
                    }
                }
            }
        }
    }

    /// The rules of a family.
    pub fn family(&self, f: Family) -> Option<&FamilyRules> {
        match f {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    /// True when a rule of either family matches with `-m connbytes`.
    pub fn uses_connbytes(&self) -> bool {
        [&self.v4, &self.v6]
            .into_iter()
            .flatten()
            .flat_map(|f| &f.tables)
            .flat_map(|t| &t.chains)
            .flat_map(|c| &c.rules)
            .any(|r| {
                r.spec
                    .matches
                    .iter()
                    .any(|m| matches!(m, crate::matches::Match::ConnBytes(..)))
            })
    }

    /// The decision of a built-in chain, located by [`FamilyRules::locate`], that has no
    /// rules: its policy, counted for a packet of `len` bytes as a walk would count it.
    /// `None` when the chain has rules, which [`Ruleset::evaluate_at`] walks.
    ///
    /// A saved ruleset lists every built-in chain of each table it holds, with its policy,
    /// and most of them have no rules; deciding those without a packet context keeps them
    /// nearly free.
    pub fn policy_of_empty(
        &mut self,
        family: Family,
        (table, chain): (usize, usize),
        len: u64,
    ) -> Option<Decision> {
        let rules = match family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        }?;
        let ch = rules.tables.get_mut(table)?.chains.get_mut(chain)?;
        if !ch.rules.is_empty() {
            return None;
        }
        Some(ch.policy_decision(chain, len))
    }

    /// Evaluates a built-in chain, located by [`FamilyRules::locate`], on the packet's
    /// family's rules. A family with no rules accepts. The packet's whole context is made
    /// only if a rule or target needs it; [`LazyCtx::made`] tells whether it was, and holds
    /// the marks the rules set.
    pub fn evaluate_at(
        &mut self,
        at: (usize, usize),
        p: &mut LazyCtx<'_, '_, '_>,
        fx: &mut Effects,
    ) -> Decision {
        let (rules, records) = match p.packet().family {
            Family::V4 => (self.v4.as_mut(), &self.records[0]),
            Family::V6 => (self.v6.as_mut(), &self.records[1]),
        };
        self.trace.len = 0;
        let decision = match rules {
            Some(rules) => rules.evaluate_at(
                at,
                p,
                fx,
                Walk {
                    records: records.as_ref(),
                    recent: &mut self.recent,
                    log: &mut self.log,
                    jumps: &mut self.jumps,
                    trace: &mut self.trace,
                },
            ),
            None => Decision::Accept,
        };
        // A walk that tested what differs from one packet of a connection to the next, or
        // ran a target, is never taken again.
        if p.varies() {
            self.trace.len = u8::MAX;
        }
        decision
    }

    /// The walk [`Ruleset::evaluate_at`] just made at `at` of a packet of `family`, which
    /// decided `decision` with effects `fx`, as a [`Replay`]: `None` unless every rule it
    /// met read only what every packet of a connection shares in one direction and state
    /// (its addresses, protocol, ports, ICMP type, interfaces, state bits, and the tuples
    /// and helper the connection keeps: see `Match::same_for_a_flow`), no target but a
    /// verdict or a jump ran, and it bumped at most [`TRACE_HITS`] counters.
    ///
    /// Another packet of the same connection in the same direction and state, at the same
    /// chain of the same hook, walks the same rules to the same end, and
    /// [`Ruleset::replay`] gives it that end without the walk.
    pub fn replayable(
        &self,
        family: Family,
        at: (usize, usize),
        decision: Decision,
        fx: &Effects,
    ) -> Option<Replay> {
        let quiet = Effects {
            last_rule: fx.last_rule,
            ..Effects::default()
        };
        (*fx == quiet && usize::from(self.trace.len) <= TRACE_HITS).then_some(Replay {
            family,
            table: at.0,
            trace: self.trace,
            decision,
            last_rule: fx.last_rule,
        })
    }

    /// Takes a walk of this ruleset again for a packet of `len` bytes that would walk the
    /// same (see [`Ruleset::replayable`]): the counters it bumped are bumped again. Its
    /// decision and last rule are the [`Replay`]'s.
    pub fn replay(&mut self, r: &Replay, len: u64) {
        let rules = match r.family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        };
        if let Some(t) = rules.and_then(|f| f.tables.get_mut(r.table)) {
            for &(c, rule) in &r.trace.hits[..usize::from(r.trace.len)] {
                let Some(chain) = t.chains.get_mut(c as usize) else {
                    continue;
                };
                let counters = match chain.rules.get_mut(rule as usize) {
                    Some(rule) => &mut rule.counters,
                    None => &mut chain.counters,
                };
                counters.packets += 1;
                counters.bytes += len;
            }
        }
    }
}

/// The most counters a [`Replay`] keeps: a walk that bumps more is walked every time.
pub const TRACE_HITS: usize = 12;

/// The counters one walk bumped, in order: (chain, rule) of each rule that matched, and a
/// built-in chain's policy as the rule past its last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Trace {
    hits: [(u32, u32); TRACE_HITS],
    /// Counters bumped, past [`TRACE_HITS`] too (saturating); `u8::MAX` too for a walk
    /// that read what differs between a connection's packets.
    len: u8,
}

impl Trace {
    #[inline(always)]
    fn hit(&mut self, chain: usize, rule: usize) {
        if let Some(h) = self.hits.get_mut(usize::from(self.len)) {
            *h = (chain as u32, rule as u32);
        }
        self.len = self.len.saturating_add(1);
    }
}

/// A walk decided by what the packets of a connection share in one direction and state, to
/// be taken again for another of them without walking: made by [`Ruleset::replayable`],
/// taken by [`Ruleset::replay`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Replay {
    family: Family,
    table: usize,
    trace: Trace,
    decision: Decision,
    last_rule: Option<(usize, usize)>,
}

impl Replay {
    /// What the walk decided.
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// The last rule that matched in the walk (chain and rule indexes), as
    /// [`Effects::last_rule`].
    pub fn last_rule(&self) -> Option<(usize, usize)> {
        self.last_rule
    }
}

fn iface_matches(want: &str, have: &str) -> bool {
    match want.strip_suffix('+') {
        Some(prefix) => have.starts_with(prefix),
        None => want == have,
    }
}

impl RuleSpec {
    /// The base options: addresses, interfaces, protocol, fragment.
    fn base_matches(&self, p: &PacketCtx<'_, '_>) -> bool {
        let d = p.packet;
        if let Some((n, inv)) = &self.src {
            if n.contains(d.src) == *inv {
                return false;
            }
        }
        if let Some((n, inv)) = &self.dst {
            if n.contains(d.dst) == *inv {
                return false;
            }
        }
        if let Some((i, inv)) = &self.iif {
            if iface_matches(i, p.iif) == *inv {
                return false;
            }
        }
        if let Some((o, inv)) = &self.oif {
            if iface_matches(o, p.oif) == *inv {
                return false;
            }
        }
        if let Some((pr, inv)) = self.proto {
            if pr != 0 && (d.proto == pr) == inv {
                return false;
            }
        }
        if let Some(f) = self.frag {
            if p.later_fragment() != f {
                return false;
            }
        }
        true
    }
}

fn rule_matches(rule: &mut Rule, p: &PacketCtx<'_, '_>, recent: &mut RecentTables) -> bool {
    if !rule.spec.base_matches(p) {
        return false;
    }
    rule.spec.matches.iter_mut().all(|m| m.eval(p, recent))
}

/// The first of `rules` that matches, each tested whole only where its record admits the
/// packet (`key` its addresses, `proto` its protocol): only then is the packet's whole
/// context made.
#[inline(always)]
fn first_match<K: Key>(
    records: &[Record<K>],
    rules: &mut [Rule],
    (key, proto): (K, u8),
    p: &mut LazyCtx<'_, '_, '_>,
    recent: &mut RecentTables,
) -> Option<usize> {
    records.iter().zip(rules).position(|(record, rule)| {
        record.admits(key, proto)
            && match record.rest {
                Rest::Nothing => true,
                Rest::State { mask, inv, nat } => (mask & p.state_bits(nat) != 0) != inv,
                Rest::Whole { varies } => {
                    if varies {
                        p.vary();
                    }
                    rule_matches(rule, p.get(), recent)
                }
            }
    })
}

/// What a walk works with beside the rules: the records of [`Ruleset::compile`] if made,
/// and the state the ruleset keeps.
struct Walk<'a> {
    records: Option<&'a Records>,
    recent: &'a mut RecentTables,
    log: &'a mut Vec<(u64, String)>,
    /// Room for where each jump returns to (what an earlier walk left there is dropped).
    jumps: &'a mut Vec<(usize, usize)>,
    /// Where the walk notes each counter it bumps, emptied before the walk.
    trace: &'a mut Trace,
}

impl FamilyRules {
    /// Where the chain `chain` of `table` is: (table, chain) indexes for
    /// [`Ruleset::evaluate_at`], found once instead of by name for every packet.
    pub fn locate(&self, table: &str, chain: &str) -> Option<(usize, usize)> {
        let t = self.tables.iter().position(|t| t.name == table)?;
        Some((t, self.tables[t].chain(chain)?))
    }

    /// Walks a built-in chain (`ipt_do_table`), located by [`FamilyRules::locate`].
    ///
    /// Out of line: inlined into the engine's table walk, its loop over the records keeps
    /// fewer of its values in registers (11 instructions a rule against 9 here).
    #[inline(never)]
    fn evaluate_at(
        &mut self,
        (table, start): (usize, usize),
        p: &mut LazyCtx<'_, '_, '_>,
        fx: &mut Effects,
        walk: Walk<'_>,
    ) -> Decision {
        let Walk {
            records,
            recent,
            log,
            jumps,
            trace,
        } = walk;
        jumps.clear();
        let t = &mut self.tables[table];
        let packet = p.packet();
        let len = u64::from(packet.len());
        let (key4, key6, proto) = match self.family {
            Family::V4 => (crate::prefilter::key_v4(packet), [0; 2], packet.proto),
            Family::V6 => (0, crate::prefilter::key_v6(packet), packet.proto),
        };
        let table_records = records.map_or(&[][..], |x| x.table(table));
        let (mut c, mut r) = (start, 0usize);
        loop {
            // The rules that do not match are passed over in one tight loop: most rules of
            // most chains do not match most packets, and their records tell most of them.
            let rules = &mut t.chains[c].rules;
            let chain_records = crate::prefilter::chain(table_records, c, rules.len());
            let hit = match chain_records.map(|x| &x.admits) {
                Some(Admits::V4(recs)) => {
                    first_match(&recs[r..], &mut rules[r..], (key4, proto), p, recent)
                }
                Some(Admits::V6(recs)) => {
                    first_match(&recs[r..], &mut rules[r..], (key6, proto), p, recent)
                }
                None => rules.get_mut(r..).and_then(|rest| {
                    p.vary();
                    let p = p.get();
                    rest.iter_mut()
                        .position(|rule| rule_matches(rule, p, recent))
                }),
            };
            let Some(skipped) = hit else {
                // End of a chain: return to the caller, or the policy of the built-in chain.
                let Some(back) = jumps.pop() else {
                    let chain = &mut t.chains[c];
                    trace.hit(c, chain.rules.len());
                    return chain.policy_decision(c, len);
                };
                (c, r) = back;
                continue;
            };
            r += skipped;
            let rule = &mut rules[r];
            rule.counters.packets += 1;
            rule.counters.bytes += len;
            trace.hit(c, r);
            fx.last_rule = Some((c, r));
            let target = &t.chains[c].rules[r].spec.target;
            match target {
                Target::None | Target::Nflog(..) => r += 1,
                Target::Accept => return Decision::Accept,
                Target::Drop | Target::Reject(_) => {
                    return Decision::Drop {
                        chain: c,
                        rule: Some(r),
                        reject: target.reject_with(packet.family),
                    }
                }
                Target::Return => match jumps.pop() {
                    Some(back) => (c, r) = back,
                    // RETURN from a built-in chain: its policy.
                    None => r = t.chains[c].rules.len(),
                },
                Target::Jump(name) | Target::Goto(name) => {
                    let is_goto = matches!(target, Target::Goto(_));
                    let found = chain_records.and_then(|x| x.jump(r));
                    let Some(next) = found.or_else(|| t.chain(name)) else {
                        r += 1;
                        continue;
                    };
                    if !is_goto {
                        if jumps.len() == MAX_DEPTH {
                            return Decision::Drop {
                                chain: c,
                                rule: Some(r),
                                reject: None,
                            };
                        }
                        jumps.push((c, r + 1));
                    }
                    (c, r) = (next, 0);
                }
                other => {
                    p.vary();
                    if apply_target(other, p.get(), fx, log) {
                        return Decision::Accept;
                    }
                    r += 1;
                }
            }
        }
    }
}

/// What a target that neither ends nor moves the walk does to the packet, its connection
/// to be, and the log (LOG, NOTRACK, CT, MARK, CONNMARK); true for a NAT target, which
/// accepts. Out of line: the walk's own loop keeps its registers for the verdicts most
/// rules give.
#[inline(never)]
fn apply_target(
    target: &Target,
    p: &mut PacketCtx<'_, '_>,
    fx: &mut Effects,
    log: &mut Vec<(u64, String)>,
) -> bool {
    match target {
        Target::Log(l) => log.push((p.now, crate::log::line(l, p))),
        Target::Snat(n) | Target::Dnat(n) | Target::Masquerade(n) | Target::Redirect(n) => {
            use ctrack_conntrack::nat::{Manip, NatRange};
            let (addrs, ports) = n.range.unwrap_or((None, None));
            let random = n.random || n.random_fully;
            fx.nat = Some(match target {
                Target::Snat(_) | Target::Dnat(_) => NatAction::Fixed(
                    if matches!(target, Target::Snat(_)) {
                        Manip::Src
                    } else {
                        Manip::Dst
                    },
                    NatRange {
                        addrs,
                        ports,
                        random,
                        persistent: n.persistent,
                    },
                ),
                Target::Masquerade(_) => NatAction::Masquerade(ports, random),
                _ => NatAction::Redirect(ports, random),
            });
            return true;
        }
        Target::Notrack => fx.notrack = true,
        Target::Ct {
            notrack,
            helper,
            zone,
            ctevents,
            timeout,
            ..
        } => {
            fx.notrack |= *notrack;
            if !*notrack {
                fx.template = Some(ctrack_conntrack::Template {
                    zone: *zone,
                    helper: helper
                        .as_deref()
                        .and_then(ctrack_conntrack::HelperName::new),
                    events: ctevents.as_deref().map(crate::target::event_mask),
                    timeout: timeout
                        .as_deref()
                        .and_then(ctrack_conntrack::TimeoutName::new),
                });
            }
        }
        Target::Mark(v, m) => p.mark = (p.mark & !m) ^ v,
        Target::ConnMarkSet(v, m) => {
            if p.conn.is_some() {
                p.ct_mark = (p.ct_mark & !m) ^ v;
                fx.ct_mark_changed = true;
            }
        }
        Target::ConnMarkSave(nf, ct) => {
            if p.conn.is_some() {
                p.ct_mark = (p.ct_mark & !ct) ^ (p.mark & nf);
                fx.ct_mark_changed = true;
            }
        }
        Target::ConnMarkRestore(nf, ct) => {
            if p.conn.is_some() {
                p.mark = (p.mark & !nf) ^ (p.ct_mark & ct);
            }
        }
        // The verdicts and jumps are the walk's own.
        Target::None
        | Target::Nflog(..)
        | Target::Accept
        | Target::Drop
        | Target::Reject(_)
        | Target::Return
        | Target::Jump(_)
        | Target::Goto(_) => {}
    }
    false
}

impl crate::model::Chain {
    /// The end of a built-in chain, the chain at index `at` of its table: its policy,
    /// counted for a packet of `len` bytes.
    fn policy_decision(&mut self, at: usize, len: u64) -> Decision {
        self.counters.packets += 1;
        self.counters.bytes += len;
        if self.policy.unwrap_or(true) {
            Decision::Accept
        } else {
            Decision::Drop {
                chain: at,
                rule: None,
                reject: None,
            }
        }
    }
}

/// The `-m recent` address lists (`xt_recent`), by list name.
#[derive(Default)]
pub struct RecentTables {
    lists: HashMap<String, HashMap<Addr, Vec<u64>>>,
}

impl RecentTables {
    /// Evaluates a recent match: `--set` adds the address, `--rcheck`/`--update` look it up
    /// within `--seconds` and `--hitcount`, `--remove` deletes it.
    pub fn eval(&mut self, r: &mut Recent, p: &PacketCtx<'_, '_>) -> bool {
        let d = p.packet;
        let mut addr = if r.rdest { d.dst } else { d.src };
        for i in 0..16 {
            addr.0[i] &= r.mask.0[i];
        }
        if !self.lists.contains_key(&r.name) {
            self.lists.insert(r.name.clone(), HashMap::new());
        }
        let list = self.lists.get_mut(&r.name).expect("just inserted");
        let hit = match r.cmd {
            Some(RecentCmd::Set) | None => {
                let hits = list.entry(addr).or_default();
                hits.push(p.now);
                if hits.len() > 20 {
                    hits.remove(0);
                }
                true
            }
            Some(RecentCmd::Remove) => list.remove(&addr).is_some(),
            Some(cmd @ (RecentCmd::Check | RecentCmd::Update)) => {
                let Some(hits) = list.get_mut(&addr) else {
                    return r.inv;
                };
                let window = u64::from(r.seconds) * 1_000_000_000;
                let recent_hits = hits
                    .iter()
                    .filter(|&&t| r.seconds == 0 || p.now.saturating_sub(t) <= window)
                    .count() as u32;
                let ok = (r.seconds == 0 || recent_hits > 0)
                    && (r.hitcount == 0 || recent_hits >= r.hitcount);
                if cmd == RecentCmd::Update && ok {
                    hits.push(p.now);
                    if hits.len() > 20 {
                        hits.remove(0);
                    }
                }
                ok
            }
        };
        hit != r.inv
    }
}
