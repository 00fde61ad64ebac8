//! The netfilter pipeline: one packet through the kernel's hooks, in the kernel's order.
//!
//! [`Engine::process`] takes an IP datagram, where it enters (from the wire at PREROUTING,
//! or sent by the host at OUTPUT) and the time, and returns what happened: the hooks it
//! passed, its conntrack state and its fate. Fragments are reassembled first, as
//! `nf_defrag` does; conntrack runs at PREROUTING or OUTPUT; the routing decision uses the
//! [`Host`] model; a new connection is confirmed only after the last hook.
//!
//! Rules plug in through [`Rules`]: every table of every hook is asked in priority order.
//! [`AcceptAll`] is the ruleset of a host with empty tables. The engine is sans-IO: no
//! clock, no files; time is the caller's.

use ctrack_conntrack::{Conntrack, CtRef, Hook, InResult, PacketState, Settings};
use ctrack_packet::frag::Reassembly;
use ctrack_packet::{Addr, Datagram, Family, Malformed, Reassembler};

/// Where a packet enters the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Arrived from the wire.
    Wire,
    /// Sent by the host itself.
    Host,
}

/// The iptables tables, in the order the kernel runs them within a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `raw` (before conntrack).
    Raw,
    /// `mangle`.
    Mangle,
    /// `nat` (first packet of a connection only).
    Nat,
    /// `filter`.
    Filter,
    /// `security`.
    Security,
}

/// What a table decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleVerdict {
    /// Continue to the next table or hook.
    Accept,
    /// Drop the packet; the string says which rule or policy.
    Drop(&'static str),
}

/// What rules see of a packet.
pub struct RuleContext<'a, 'b> {
    /// The datagram.
    pub packet: &'a Datagram<'b>,
    /// Hook.
    pub hook: Hook,
    /// Table.
    pub table: Table,
    /// Conntrack state (INVALID before conntrack ran at this hook's entry).
    pub state: PacketState,
    /// Packet time, ns.
    pub now: u64,
}

/// A ruleset evaluated at each hook and table.
pub trait Rules {
    /// Evaluates one table of one hook.
    fn evaluate(&mut self, ctx: &RuleContext<'_, '_>) -> RuleVerdict;
}

/// The ruleset of a host whose tables are empty with ACCEPT policies.
#[derive(Default)]
pub struct AcceptAll;

impl Rules for AcceptAll {
    fn evaluate(&mut self, _: &RuleContext<'_, '_>) -> RuleVerdict {
        RuleVerdict::Accept
    }
}

/// The host: which addresses are its own.
#[derive(Clone, Debug, Default)]
pub struct Host {
    locals: Vec<(Addr, Family)>,
}

impl Host {
    /// A host owning these addresses.
    pub fn new(locals: Vec<(Addr, Family)>) -> Host {
        Host { locals }
    }

    /// True when the address is one of the host's.
    pub fn is_local(&self, a: Addr, f: Family) -> bool {
        self.locals.iter().any(|&(x, g)| x == a && g == f)
    }

    /// The host's addresses.
    pub fn locals(&self) -> &[(Addr, Family)] {
        &self.locals
    }
}

/// Why a packet did not make it through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The IP layer refused it before netfilter (`ip_rcv`/`ipv6_rcv`).
    Malformed(Malformed),
    /// Conntrack dropped it: the table was full.
    TableFull,
    /// A rule or policy dropped it.
    Rule(Hook, Table, &'static str),
    /// An overlapping or oversized fragment.
    Fragment,
    /// TTL or hop limit ran out in forwarding (`ip_forward` drops it before FORWARD and
    /// the host answers with time exceeded).
    TtlExceeded,
}

/// The fate of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered to a local socket.
    Delivered,
    /// Forwarded out.
    Forwarded,
    /// Sent out by the host.
    Sent,
    /// A fragment held until the rest of its datagram arrives.
    Held,
    /// Dropped.
    Dropped(DropReason),
}

/// What happened to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Its fate.
    pub fate: Fate,
    /// The hook it entered at.
    pub entry_hook: Hook,
    /// Its conntrack state.
    pub state: PacketState,
    /// Why conntrack called it INVALID, if it did.
    pub invalid: Option<&'static str>,
}

/// Counts of what the pipeline did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets processed.
    pub packets: u64,
    /// Delivered locally.
    pub delivered: u64,
    /// Forwarded.
    pub forwarded: u64,
    /// Sent by the host.
    pub sent: u64,
    /// Fragments held for reassembly.
    pub held: u64,
    /// Dropped as malformed before netfilter.
    pub malformed: u64,
    /// Dropped because the table was full.
    pub table_full: u64,
    /// Dropped by rules.
    pub rule_drops: u64,
    /// Dropped fragments.
    pub fragment_drops: u64,
    /// Dropped in forwarding because the TTL ran out.
    pub ttl_exceeded: u64,
    /// Packets whose conntrack state was INVALID.
    pub invalid: u64,
}

/// The pipeline of one host.
pub struct Engine<R: Rules = AcceptAll> {
    conntrack: Conntrack,
    host: Host,
    rules: R,
    reassembler: Reassembler,
    counts: Counts,
}

impl Engine<AcceptAll> {
    /// A host with empty tables.
    pub fn new(settings: Settings, host: Host, seed: u64) -> Self {
        Engine::with_rules(settings, host, seed, AcceptAll)
    }
}

impl<R: Rules> Engine<R> {
    /// A host with a ruleset.
    pub fn with_rules(settings: Settings, host: Host, seed: u64, rules: R) -> Self {
        Engine {
            conntrack: Conntrack::new(settings, seed),
            host,
            rules,
            reassembler: Reassembler::new(),
            counts: Counts::default(),
        }
    }

    /// The connection tracker.
    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    /// The connection tracker, mutably (to take events and log lines).
    pub fn conntrack_mut(&mut self) -> &mut Conntrack {
        &mut self.conntrack
    }

    /// The host model.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// What the pipeline counted.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Runs the timers up to `now`.
    pub fn advance(&mut self, now: u64) {
        self.conntrack.expire(now);
    }

    /// One packet through the pipeline.
    pub fn process(&mut self, bytes: &[u8], entry: Entry, now: u64) -> Outcome {
        self.conntrack.expire(now);
        self.counts.packets += 1;
        let entry_hook = match entry {
            Entry::Wire => Hook::PreRouting,
            Entry::Host => Hook::LocalOut,
        };
        let mut outcome = Outcome {
            fate: Fate::Held,
            entry_hook,
            state: PacketState::Invalid,
            invalid: None,
        };
        let d = match Datagram::parse(bytes) {
            Ok(d) => d,
            Err(m) => {
                self.counts.malformed += 1;
                outcome.fate = Fate::Dropped(DropReason::Malformed(m));
                return outcome;
            }
        };
        if d.fragment.is_some() {
            match self.reassembler.push(&d, now) {
                Reassembly::Held => {
                    self.counts.held += 1;
                    return outcome;
                }
                Reassembly::Dropped => {
                    self.counts.fragment_drops += 1;
                    outcome.fate = Fate::Dropped(DropReason::Fragment);
                    return outcome;
                }
                Reassembly::Complete(whole) => {
                    let Ok(d) = Datagram::parse(&whole) else {
                        self.counts.fragment_drops += 1;
                        outcome.fate = Fate::Dropped(DropReason::Fragment);
                        return outcome;
                    };
                    return self.run_hooks(&d, entry_hook, now, outcome);
                }
            }
        }
        self.run_hooks(&d, entry_hook, now, outcome)
    }

    fn table_pass(
        &mut self,
        d: &Datagram<'_>,
        hook: Hook,
        tables: &[Table],
        state: PacketState,
        now: u64,
    ) -> Result<(), DropReason> {
        for &table in tables {
            let ctx = RuleContext {
                packet: d,
                hook,
                table,
                state,
                now,
            };
            if let RuleVerdict::Drop(why) = self.rules.evaluate(&ctx) {
                return Err(DropReason::Rule(hook, table, why));
            }
        }
        Ok(())
    }

    fn run_hooks(&mut self, d: &Datagram<'_>, entry: Hook, now: u64, mut out: Outcome) -> Outcome {
        use Table::*;
        // raw runs before conntrack (priority -300 against -200).
        if let Err(r) = self.table_pass(d, entry, &[Raw], PacketState::Invalid, now) {
            return self.dropped(out, r, None);
        }
        let ct = self.conntrack.conntrack_in(d, entry, now);
        out.state = ct.state;
        out.invalid = ct.invalid;
        if ct.state == PacketState::Invalid && ct.drop.is_none() {
            self.counts.invalid += 1;
        }
        if ct.drop.is_some() {
            return self.dropped(out, DropReason::TableFull, Some(&ct));
        }
        let first = ct.ct == Some(CtRef::Unconfirmed);
        let nat: &[Table] = if first { &[Nat] } else { &[] };
        let state = ct.state;
        let path = |this: &mut Self, hook: Hook, tables: &[Table]| {
            this.table_pass(d, hook, tables, state, now)
        };
        let result = match entry {
            Hook::PreRouting => (|| {
                path(self, Hook::PreRouting, &[Mangle])?;
                path(self, Hook::PreRouting, nat)?;
                if self.host.is_local(d.dst, d.family) {
                    path(self, Hook::LocalIn, &[Mangle, Filter, Security])?;
                    path(self, Hook::LocalIn, nat)?;
                    Ok(Fate::Delivered)
                } else {
                    if d.ttl <= 1 {
                        return Err(DropReason::TtlExceeded);
                    }
                    path(self, Hook::Forward, &[Mangle, Filter, Security])?;
                    path(self, Hook::PostRouting, &[Mangle])?;
                    path(self, Hook::PostRouting, nat)?;
                    Ok(Fate::Forwarded)
                }
            })(),
            _ => (|| {
                path(self, Hook::LocalOut, &[Mangle])?;
                path(self, Hook::LocalOut, nat)?;
                path(self, Hook::LocalOut, &[Filter, Security])?;
                path(self, Hook::PostRouting, &[Mangle])?;
                path(self, Hook::PostRouting, nat)?;
                Ok(Fate::Sent)
            })(),
        };
        match result {
            Ok(fate) => {
                self.conntrack.confirm(&ct, now);
                match fate {
                    Fate::Delivered => self.counts.delivered += 1,
                    Fate::Forwarded => self.counts.forwarded += 1,
                    _ => self.counts.sent += 1,
                }
                out.fate = fate;
                out
            }
            Err(r) => self.dropped(out, r, Some(&ct)),
        }
    }

    fn dropped(&mut self, mut out: Outcome, r: DropReason, ct: Option<&InResult>) -> Outcome {
        if let Some(ct) = ct {
            self.conntrack.discard(ct);
        }
        match r {
            DropReason::TableFull => self.counts.table_full += 1,
            DropReason::Rule(..) => self.counts.rule_drops += 1,
            DropReason::TtlExceeded => self.counts.ttl_exceeded += 1,
            _ => {}
        }
        out.fate = Fate::Dropped(r);
        out
    }
}

#[cfg(test)]
mod tests;
