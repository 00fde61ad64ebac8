//! The netfilter pipeline: one packet through the kernel's hooks, in the kernel's order.
//!
//! [`Engine::process`] takes an IP datagram, where it enters (from the wire at PREROUTING,
//! or sent by the host at OUTPUT) and the time, and returns what happened: the hooks it
//! passed, its conntrack state and its fate. Fragments are reassembled first, as
//! `nf_defrag` does; conntrack runs at PREROUTING or OUTPUT; the routing decision uses the
//! [`Host`] model; a new connection is confirmed only after the last hook.
//!
//! Rules are a [`Ruleset`]: every table of every hook is evaluated in priority order, with
//! the packet's interfaces from the [`Host`] model, its mark, and the conntrack state; raw
//! table NOTRACK keeps a packet out of conntrack; MARK and CONNMARK act as in the kernel.
//! An empty ruleset is a host whose tables are empty with ACCEPT policies. The engine is
//! sans-IO: no clock, no files; time is the caller's.
//!
//! A connection's packets mostly go the way its earlier ones went. Walks of chains that can
//! only decide as before are kept per connection, direction and state (`memo`), and so is
//! the whole way through the hooks after conntrack where every chain on it was empty or
//! had its walk kept: the next packets are given that way's counters and outcome without
//! the hooks, and an IPv4/UDP datagram is tracked from its bytes on conntrack's fast path
//! as well. Neither changes a decision or a counter; a proptest holds them to the hooks
//! walked every time ([`Engine::remember_walks`] off).

use ctrack_conntrack::nat::{Manip, NatRange};
use ctrack_conntrack::{Conntrack, CtRef, Help, Hook, InResult, PacketState, Settings};
use ctrack_packet::frag::Reassembly;
use ctrack_packet::{Addr, Datagram, Family, Malformed, Reassembler, Udp4};
use ctrack_rules::ctx::{addrtype, HostInfo, LazyCtx, PacketCtx};
use ctrack_rules::{Decision, Effects, NatAction, RejectWith, Ruleset};
use memo::End;

mod inbound;
mod memo;
pub mod natpkt;
pub mod reject;
pub mod workload;

/// Where a packet enters the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Arrived from the wire.
    Wire,
    /// Sent by the host itself.
    Host,
}

/// The iptables tables, in the order the kernel runs them within a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

impl Table {
    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Mangle => "mangle",
            Table::Nat => "nat",
            Table::Filter => "filter",
            Table::Security => "security",
        }
    }
}

/// An interface of the modelled host: name, address and prefix length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    /// Name, as `-i`/`-o` match it.
    pub name: String,
    /// Address on it (one of the host's).
    pub addr: Addr,
    /// Prefix length of its subnet.
    pub prefix: u8,
    /// Family of the address.
    pub family: Family,
}

impl Iface {
    fn contains(&self, a: Addr, f: Family) -> bool {
        if f != self.family {
            return false;
        }
        let bits = usize::from(self.prefix);
        (0..16).all(|i| {
            let keep = if bits >= (i + 1) * 8 {
                0xff
            } else if bits > i * 8 {
                0xffu8 << (8 - (bits - i * 8))
            } else {
                0
            };
            a.0[i] & keep == self.addr.0[i] & keep
        })
    }
}

/// The host: which addresses are its own, and its interfaces (the first of each family
/// carries the default route).
#[derive(Clone, Debug, Default)]
pub struct Host {
    locals: Vec<(Addr, Family)>,
    ifaces: Vec<Iface>,
    /// The broadcast address of each IPv4 interface's subnet, where the interface has an
    /// address on it (an interface without one has no broadcast route).
    broadcasts: Vec<[u8; 4]>,
}

impl Host {
    /// A host owning these addresses.
    pub fn new(locals: Vec<(Addr, Family)>) -> Host {
        Host {
            locals,
            ifaces: Vec::new(),
            broadcasts: Vec::new(),
        }
    }

    /// Adds interfaces; their addresses become the host's (an unspecified address, `0.0.0.0`
    /// or `::`, gives an interface with no address of its own).
    pub fn with_ifaces(mut self, ifaces: Vec<Iface>) -> Host {
        for i in &ifaces {
            if i.addr != Addr::default() && !self.is_local(i.addr, i.family) {
                self.locals.push((i.addr, i.family));
            }
        }
        self.broadcasts = ifaces
            .iter()
            .filter(|i| i.family == Family::V4 && i.addr != Addr::default() && i.prefix < 31)
            .map(|i| {
                let host = u32::MAX.checked_shr(u32::from(i.prefix)).unwrap_or(0);
                let a = u32::from_be_bytes([i.addr.0[0], i.addr.0[1], i.addr.0[2], i.addr.0[3]]);
                (a | host).to_be_bytes()
            })
            .collect();
        self.ifaces = ifaces;
        self
    }

    /// The interfaces.
    pub fn ifaces(&self) -> &[Iface] {
        &self.ifaces
    }

    /// The interface a packet from or to `a` uses: the one whose subnet holds it, else the
    /// first of the family (the default route); empty when the host has none.
    pub fn route(&self, a: Addr, f: Family) -> &str {
        self.name(self.route_ref(a, f))
    }

    #[inline(always)]
    fn route_ref(&self, a: Addr, f: Family) -> IfRef {
        if self.is_local(a, f) && !self.ifaces.iter().any(|i| i.addr == a) {
            return IfRef::Lo;
        }
        self.ifaces
            .iter()
            .position(|i| i.contains(a, f))
            .or_else(|| self.ifaces.iter().position(|i| i.family == f))
            .map_or(IfRef::None, IfRef::Index)
    }

    fn name(&self, r: IfRef) -> &str {
        match r {
            IfRef::None => "",
            IfRef::Lo => "lo",
            IfRef::Index(i) => &self.ifaces[i].name,
        }
    }

    /// True when the address is one of the host's: one it was given, or a loopback address
    /// (`127.0.0.0/8` and `::1`, which Linux's local routing table always holds, on `lo`).
    #[inline]
    pub fn is_local(&self, a: Addr, f: Family) -> bool {
        a.is_loopback(f) || self.locals.iter().any(|&(x, g)| x == a && g == f)
    }

    /// The routing decision on a packet from the wire, on the addresses PREROUTING left:
    /// true to take it in (one of the host's addresses, a broadcast, a multicast group the
    /// host has joined), false to forward it, or why it is dropped.
    #[inline(always)]
    pub(crate) fn route_input(&self, d: &Datagram<'_>) -> Result<bool, &'static str> {
        // Most packets are unicast between addresses no check below is about: settled here,
        // inline, the rest in a call of its own.
        let plain = match d.family {
            Family::V4 => inbound::plain_v4(d.src) && inbound::plain_v4(d.dst),
            // IPv6's loopback addresses from the wire went before netfilter.
            Family::V6 => d.dst.0[0] != 0xff,
        };
        if !plain {
            return self.route_input_unusual(d);
        }
        Ok(self.is_local(d.dst, d.family)
            || (d.family == Family::V4 && self.broadcasts.iter().any(|b| d.dst.0[..4] == *b)))
    }

    /// [`Host::route_input`] where an address is one the checks are about.
    #[inline(never)]
    fn route_input_unusual(&self, d: &Datagram<'_>) -> Result<bool, &'static str> {
        if d.family == Family::V4 {
            if let Some(why) = inbound::ipv4_route_refuses(d.src, d.dst) {
                return Err(why);
            }
        }
        match self.addr_type(d.dst, d.family) {
            addrtype::LOCAL | addrtype::BROADCAST => Ok(true),
            addrtype::MULTICAST if inbound::joined(self, d.dst, d.family) => Ok(true),
            addrtype::MULTICAST => Err("multicast group not joined"),
            _ => Ok(false),
        }
    }

    /// The host's addresses.
    pub fn locals(&self) -> &[(Addr, Family)] {
        &self.locals
    }

    /// The host's address on the way to `a`: its address on the interface that routes there.
    pub fn source_toward(&self, a: Addr, f: Family) -> Option<Addr> {
        match self.route_ref(a, f) {
            IfRef::Index(i) if self.ifaces[i].addr != Addr::default() => Some(self.ifaces[i].addr),
            _ => self.locals.iter().find(|(_, g)| *g == f).map(|(x, _)| *x),
        }
    }
}

impl HostInfo for Host {
    fn addr_type(&self, a: Addr, f: Family) -> u16 {
        if self.is_local(a, f) {
            return addrtype::LOCAL;
        }
        let multicast = match f {
            Family::V4 => a.0[0] >= 224 && a.0[0] < 240,
            Family::V6 => a.0[0] == 0xff,
        };
        if multicast {
            return addrtype::MULTICAST;
        }
        let broadcast = f == Family::V4
            && (a.0[..4] == [255; 4] || self.broadcasts.iter().any(|b| a.0[..4] == *b));
        if broadcast {
            addrtype::BROADCAST
        } else {
            addrtype::UNICAST
        }
    }
}

/// Why a packet did not make it through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The IP layer refused it before netfilter (`ip_rcv`/`ipv6_rcv`).
    Malformed(Malformed),
    /// Conntrack dropped it: the table was full.
    TableFull,
    /// A rule (or, with `rule` `None`, the policy) of a chain dropped it.
    Rule {
        /// The hook.
        hook: Hook,
        /// The table.
        table: Table,
        /// The chain's index in the table.
        chain: usize,
        /// The rule's index in the chain; `None` for the policy.
        rule: Option<usize>,
        /// It was REJECT: what the host answers with.
        reject: Option<RejectWith>,
    },
    /// An overlapping or oversized fragment.
    Fragment,
    /// TTL or hop limit ran out in forwarding (`ip_forward` drops it before FORWARD and
    /// the host answers with time exceeded).
    TtlExceeded,
    /// The connection's helper dropped it at confirmation (a command that did not parse, an
    /// expectation that could not be added), for this reason.
    Helper(&'static str),
    /// It came from the wire with addresses the host refuses there, in the kernel's words
    /// where it has them: loopback and other martians, which IPv4's routing decision drops
    /// (after PREROUTING, so conntrack met it but confirms nothing) and IPv6 on receipt,
    /// before netfilter; a multicast group the host has not joined, which the routing
    /// decision drops (the host routes no multicast).
    Address(&'static str),
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Its fate.
    pub fate: Fate,
    /// The hook it entered at.
    pub entry_hook: Hook,
    /// Its conntrack state.
    pub state: PacketState,
    /// Why conntrack called it INVALID, if it did.
    pub invalid: Option<&'static str>,
    /// The last rule that matched: hook, table, chain index and rule index.
    pub rule: Option<(Hook, Table, usize, usize)>,
    /// The answer a REJECT sends (IP datagram), when it sends one.
    pub reply: Option<Vec<u8>>,
    /// With [`Engine::emit_output`]: the datagram as it leaves the host (forwarded or
    /// sent), after NAT, helpers and with the TTL a router lowers. Also given, whatever
    /// the setting, for every packet of a TCP connection that has a helper.
    pub leaving: Option<Vec<u8>>,
    /// A helper rewrote the leaving packet (its payload, or its sequence numbers after an
    /// earlier change of length): it differs from the one that came in beyond NAT.
    pub helper_rewrote: bool,
}

/// A packet from the wire, before anything is decided: what [`Engine::process_into`]
/// starts from.
impl Default for Outcome {
    fn default() -> Self {
        Outcome::entering(Entry::Wire)
    }
}

impl Outcome {
    /// The outcome of a packet entering at `entry`, before anything is decided.
    fn entering(entry: Entry) -> Outcome {
        Outcome {
            fate: Fate::Held,
            entry_hook: match entry {
                Entry::Wire => Hook::PreRouting,
                Entry::Host => Hook::LocalOut,
            },
            state: PacketState::Invalid,
            invalid: None,
            rule: None,
            reply: None,
            leaving: None,
            helper_rewrote: false,
        }
    }
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
    /// Dropped for addresses the host refuses from the wire ([`DropReason::Address`]).
    pub address_drops: u64,
    /// Packets whose conntrack state was INVALID.
    pub invalid: u64,
}

/// The pipeline of one host.
pub struct Engine {
    emit: bool,
    mac: Option<[u8; 14]>,
    conntrack: Conntrack,
    host: Host,
    rules: Ruleset,
    /// Each family's chains by hook and table, located once: most are absent.
    chains: ChainIndex,
    /// Whether each family (IPv4, IPv6) has a nat table: without one, no connection is
    /// translated.
    nat: [bool; 2],
    reassembler: Reassembler,
    counts: Counts,
    /// Walks kept per connection, taken again by its next packets.
    memo: memo::Memo,
    /// Whether walks are kept ([`Engine::remember_walks`]).
    remember: bool,
    /// [`Engine::udp4_fast_entries`].
    udp4_fast: [Option<Option<(u16, u16)>>; 2],
    /// Whether ways through the hooks are kept and taken (`memo::Path`): walks are kept
    /// and no output is asked for.
    keeps_paths: bool,
}

const TABLES: usize = 5;
const HOOKS: usize = 5;

/// (table, chain) indexes in the ruleset, by family (IPv4, IPv6), hook and table.
type ChainIndex = [[[Option<Located>; TABLES]; HOOKS]; 2];

/// A built-in chain, located once: the engine's ruleset does not change shape, only its
/// counters.
#[derive(Clone, Copy)]
struct Located {
    /// (table, chain) indexes in the ruleset.
    at: (usize, usize),
    /// It has no rules: its policy decides, without a walk.
    empty: bool,
}

/// Where each built-in chain of each table is in `rules`, by family, hook and table.
fn locate_chains(rules: &Ruleset) -> ChainIndex {
    use Table::*;
    let mut at = [[[None; TABLES]; HOOKS]; 2];
    for (f, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let Some(fr) = rules.family(family) else {
            continue;
        };
        for hook in [
            Hook::PreRouting,
            Hook::LocalIn,
            Hook::Forward,
            Hook::LocalOut,
            Hook::PostRouting,
        ] {
            for table in [Raw, Mangle, Nat, Filter, Security] {
                at[f][hook as usize][table as usize] =
                    fr.locate(table.name(), hook.name()).map(|at| Located {
                        at,
                        empty: fr.tables[at.0].chains[at.1].rules.is_empty(),
                    });
            }
        }
    }
    at
}

/// A table's decision at a hook as the pipeline takes it: on, or dropped there.
fn passed(hook: Hook, table: Table, decision: Decision) -> Result<(), DropReason> {
    match decision {
        Decision::Accept => Ok(()),
        Decision::Drop {
            chain,
            rule,
            reject,
        } => Err(DropReason::Rule {
            hook,
            table,
            chain,
            rule,
            reject,
        }),
    }
}

/// An interface without borrowing the host: none, loopback, or one of the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IfRef {
    None,
    Lo,
    Index(usize),
}

/// Where a packet is and what it carries through the hooks.
struct Meta {
    nat: Option<NatAction>,
    template: Option<ctrack_conntrack::Template>,
    mac: Option<[u8; 14]>,
    rule: Option<(Hook, Table, usize, usize)>,
    state: PacketState,
    ct: Option<CtRef>,
    mark: u32,
    iif: IfRef,
    oif: IfRef,
    /// Walks of chains with rules so far, of a packet whose walks are kept.
    walked: u8,
    /// It came from the wire (at PREROUTING), not from the host (at OUTPUT): its input
    /// interface is the route to its source.
    wire: bool,
}

impl Engine {
    /// A host with empty tables.
    pub fn new(settings: Settings, host: Host, seed: u64) -> Self {
        Engine::with_rules(settings, host, seed, Ruleset::default())
    }

    /// A host with a ruleset.
    pub fn with_rules(mut settings: Settings, host: Host, seed: u64, mut rules: Ruleset) -> Self {
        // Counting bytes needs the counters: loading a `-m connbytes` rule turns accounting
        // on, as xt_connbytes does ("Forcing CT accounting to be enabled").
        settings.acct |= rules.uses_connbytes();
        // The engine's ruleset keeps its shape from here on: only its counters change.
        rules.compile();
        let chains = locate_chains(&rules);
        let mut engine = Engine {
            emit: false,
            mac: None,
            conntrack: Conntrack::new(settings, seed),
            host,
            udp4_fast: [None; 2],
            keeps_paths: true,
            chains,
            nat: [Family::V4, Family::V6]
                .map(|f| rules.family(f).is_some_and(|r| r.table("nat").is_some())),
            rules,
            reassembler: Reassembler::new(),
            counts: Counts::default(),
            memo: memo::Memo::default(),
            remember: true,
        };
        engine.settle_ways();
        engine
    }

    /// Build each leaving packet (for `--out`); off by default, as it copies every one.
    pub fn emit_output(&mut self, on: bool) {
        self.emit = on;
        self.settle_ways();
    }

    /// Whether a connection's walks are kept and taken again by its next packets (on by
    /// default). Only walks that its rules' records and the connection state decided alone
    /// are kept, so this changes no decision and no counter, only the time a packet
    /// takes; off, every packet walks every chain and takes every hook, as a comparison.
    pub fn remember_walks(&mut self, on: bool) {
        self.remember = on;
        self.settle_ways();
    }

    /// What follows from the settings for kept ways through the hooks: whether they are
    /// kept at all, and which entries take [`Engine::udp4_fast`].
    fn settle_ways(&mut self) {
        self.keeps_paths = self.remember && !self.emit;
        self.udp4_fast = self.udp4_fast_entries();
    }

    /// [`Engine::udp4_fast`] by entry (from the wire, from the host): whether an IPv4/UDP
    /// datagram may take it (`None` where output is emitted, walks are not kept, or the
    /// raw table's chain at that hook has rules or drops), and the raw chain it passes
    /// (empty, its policy ACCEPT), if there is one.
    fn udp4_fast_entries(&self) -> [Option<Option<(u16, u16)>>; 2] {
        [Hook::PreRouting, Hook::LocalOut].map(|hook| {
            if !self.keeps_paths {
                return None;
            }
            let Some(Located { at, empty }) = self.chains[0][hook as usize][Table::Raw as usize]
            else {
                return Some(None);
            };
            let accepts = self
                .rules
                .family(Family::V4)
                .and_then(|r| r.tables.get(at.0)?.chains.get(at.1))
                .is_some_and(|c| c.policy.unwrap_or(true));
            let at = (u16::try_from(at.0).ok()?, u16::try_from(at.1).ok()?);
            (empty && accepts).then_some(Some(at))
        })
    }

    /// The ruleset, with its counters.
    pub fn rules(&self) -> &Ruleset {
        &self.rules
    }

    /// `iptables -Z`: the rule and policy counters restart from zero.
    pub fn zero_counters(&mut self) {
        self.rules.zero();
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

    /// A packet the host sent, as captured after POSTROUTING, brought back to the form it had
    /// at OUTPUT: when it belongs to a NATed connection only in translated form (a
    /// redirected connection's answer, say), its addresses and ports are put back. `None`
    /// when it needs nothing.
    pub fn untranslate_host(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let d = Datagram::parse(bytes).ok()?;
        let t = ctrack_packet::Tuple::from_datagram(&d).ok()?;
        let table = self.conntrack.table();
        if table.find(&t, 0).is_some() {
            return None;
        }
        let (idx, k) = table.find(&t.invert()?, 0)?;
        let c = table.get(idx);
        if !c.is_translated() {
            return None;
        }
        let pre = table.tuples(idx)[1 - k];
        let port = |p: u16| if pre.is_icmp() { pre.src_port } else { p };
        Some(natpkt::rewrite(
            &d,
            Some((pre.src, port(pre.src_port))),
            Some((pre.dst, port(pre.dst_port))),
        ))
    }

    /// LOG lines written since the last call: packet time and text.
    pub fn take_log(&mut self) -> Vec<(u64, String)> {
        std::mem::take(&mut self.rules.log)
    }

    /// One packet through the pipeline.
    pub fn process(&mut self, bytes: &[u8], entry: Entry, now: u64) -> Outcome {
        self.process_with_link(bytes, entry, now, None)
    }

    /// [`Engine::process`] into an outcome the caller keeps, whatever it held before
    /// replaced: a loop over many packets reuses one instead of taking each (some 130
    /// bytes) out of the call. Written field by field as the packet goes, an outcome copied
    /// out just after had its copy's loads wait on those stores (perf: a quarter of the
    /// call's own time).
    pub fn process_into(&mut self, bytes: &[u8], entry: Entry, now: u64, out: &mut Outcome) {
        *out = Outcome::entering(entry);
        self.mac = None;
        self.process_packet(bytes, now, out);
    }

    /// One packet, with the link-layer header it arrived with (destination, source,
    /// EtherType) for `-m mac` and LOG's `MAC=`.
    pub fn process_with_link(
        &mut self,
        bytes: &[u8],
        entry: Entry,
        now: u64,
        mac: Option<[u8; 14]>,
    ) -> Outcome {
        let mut outcome = Outcome::entering(entry);
        self.mac = mac;
        self.process_packet(bytes, now, &mut outcome);
        outcome
    }

    /// One packet into an outcome made for its entry, its link-layer header set.
    // The header is not an argument: passed by pointer, a `None` written as its tag alone
    // made this call's first loads wait on the caller's store (perf: half its own time).
    // Inlined, so that a packet on the fast path goes through one call's frame, not two.
    #[inline(always)]
    fn process_packet(&mut self, bytes: &[u8], now: u64, out: &mut Outcome) {
        self.conntrack.expire(now);
        self.counts.packets += 1;
        let entry = usize::from(out.entry_hook != Hook::PreRouting);
        if let Some(raw) = self.udp4_fast[entry] {
            if let Some(u) = Udp4::parse(bytes) {
                return self.udp4_fast(bytes, &u, raw, now, out);
            }
        }
        self.process_parsed(bytes, now, out)
    }

    /// [`Engine::process_packet`] of a packet that does not take [`Engine::udp4_fast`]:
    /// parsed, reassembled if it is a fragment, through the hooks.
    #[inline(never)]
    fn process_parsed(&mut self, bytes: &[u8], now: u64, out: &mut Outcome) {
        // Looked at where the parse left it, not moved out of its `Result`: the move's
        // loads waited on the parse's narrower stores.
        let parsed = Datagram::parse(bytes);
        let d = match &parsed {
            Ok(d) => d,
            Err(m) => {
                self.counts.malformed += 1;
                out.fate = Fate::Dropped(DropReason::Malformed(*m));
                return;
            }
        };
        let entry_hook = out.entry_hook;
        if entry_hook == Hook::PreRouting && d.family == Family::V6 {
            if let Some(why) = inbound::ipv6_receive_refuses(d.src, d.dst) {
                self.counts.address_drops += 1;
                out.fate = Fate::Dropped(DropReason::Address(why));
                return;
            }
        }
        if d.fragment.is_some() {
            match self.reassembler.push(d, now) {
                Reassembly::Held => self.counts.held += 1,
                Reassembly::Dropped => {
                    self.counts.fragment_drops += 1;
                    out.fate = Fate::Dropped(DropReason::Fragment);
                }
                Reassembly::Complete(whole) => match Datagram::parse(&whole) {
                    Ok(d) => self.run_hooks(&d, entry_hook, now, out),
                    Err(_) => {
                        self.counts.fragment_drops += 1;
                        out.fate = Fate::Dropped(DropReason::Fragment);
                    }
                },
            }
            return;
        }
        self.run_hooks(d, entry_hook, now, out);
    }

    /// Runs the tables of one hook in order.
    ///
    /// Most hooks of most rulesets have no chain: that is settled here, inline, so that a
    /// packet does not pay for setting up the walk at every hook for nothing; a table that
    /// has a chain here is decided in a call of its own.
    #[inline(always)]
    fn tables(
        &mut self,
        d: &Datagram<'_>,
        hook: Hook,
        tables: &[Table],
        m: &mut Meta,
        now: u64,
    ) -> Result<(), DropReason> {
        let family = usize::from(d.family == Family::V6);
        for &table in tables {
            let Some(at) = self.chains[family][hook as usize][table as usize] else {
                continue;
            };
            self.walk_table(d, hook, table, at, m, now)?;
        }
        Ok(())
    }

    /// One table's chain at one hook, for [`Engine::tables`]: an empty chain decided by its
    /// policy, one with rules walked.
    #[inline(never)]
    fn walk_table(
        &mut self,
        d: &Datagram<'_>,
        hook: Hook,
        table: Table,
        Located { at, empty }: Located,
        m: &mut Meta,
        now: u64,
    ) -> Result<(), DropReason> {
        if empty {
            if let Some(policy) = self.rules.policy_of_empty(d.family, at, u64::from(d.len())) {
                match (u16::try_from(at.0), u16::try_from(at.1)) {
                    (Ok(t), Ok(c)) => self.memo.step(memo::Step::Policy(t, c)),
                    _ => self.memo.spoil(),
                }
                return passed(hook, table, policy);
            }
        }
        self.walk_rules(d, hook, table, at, m, now)
    }

    /// A chain with rules, for [`Engine::walk_table`]: a call of its own, so that the many
    /// empty chains of a saved ruleset do not pay for setting up its frame. A walk kept
    /// for the packet's connection is taken again; a walk that may be kept is.
    #[inline(never)]
    fn walk_rules(
        &mut self,
        d: &Datagram<'_>,
        hook: Hook,
        table: Table,
        at: (usize, usize),
        m: &mut Meta,
        now: u64,
    ) -> Result<(), DropReason> {
        let key = self.memo_key(m);
        let nth = usize::from(m.walked);
        if let Some(key) = key {
            m.walked += 1;
            if let Some((place, kept)) = self.memo.get(key, nth, hook, table) {
                self.rules.replay(&kept.replay, u64::from(d.len()));
                if kept.rule.is_some() {
                    m.rule = kept.rule;
                }
                let passed = kept.passed;
                self.memo.step(memo::Step::Walk(place));
                return passed;
            }
        }
        let mut fx = Effects::default();
        let decision = self.walk_chain(d, at, m, now, &mut fx);
        match key
            .and_then(|key| self.keep_walk(key, nth, (hook, table, at), d.family, decision, &fx))
        {
            Some(place) => self.memo.step(memo::Step::Walk(place)),
            None => self.memo.spoil(),
        }
        if let Some((c, r)) = fx.last_rule {
            m.rule = Some((hook, table, c, r));
        }
        if fx.notrack && table == Table::Raw {
            m.state = PacketState::Untracked;
        }
        if table == Table::Raw && fx.template.is_some() {
            m.template = fx.template;
        }
        if table == Table::Nat {
            m.nat = fx.nat;
        }
        passed(hook, table, decision)
    }

    /// Keeps the walk just made, as the `nth` of `key`'s packets, if it may be taken
    /// again, and gives its place. Out of line: it runs once a connection, direction and
    /// state.
    #[inline(never)]
    fn keep_walk(
        &mut self,
        key: memo::Key,
        nth: usize,
        (hook, table, at): (Hook, Table, (usize, usize)),
        family: Family,
        decision: Decision,
        fx: &Effects,
    ) -> Option<u16> {
        let replay = self.rules.replayable(family, at, decision, fx)?;
        let kept = memo::Kept {
            hook,
            table,
            replay,
            rule: replay.last_rule().map(|(c, r)| (hook, table, c, r)),
            passed: passed(hook, table, decision),
        };
        self.memo.put(key, nth, kept)
    }

    /// What the packet's walks are kept under: its confirmed connection, direction and
    /// state; `None` when they are not kept.
    fn memo_key(&self, m: &Meta) -> Option<memo::Key> {
        let Some(CtRef::Confirmed(entry)) = m.ct.filter(|_| self.remember) else {
            return None;
        };
        let conn = self.conntrack.conn(CtRef::Confirmed(entry))?;
        memo::Key::of(entry, conn, m.state, m.wire)
    }

    /// Walks a located chain that has rules. The rules see what the hooks so far settled;
    /// the whole packet context is made only if a rule needs more than its record and the
    /// connection state, and then the packet's and the connection's marks the rules set
    /// are kept.
    fn walk_chain(
        &mut self,
        d: &Datagram<'_>,
        at: (usize, usize),
        m: &mut Meta,
        now: u64,
        fx: &mut Effects,
    ) -> Decision {
        let Engine {
            conntrack,
            host,
            rules,
            ..
        } = self;
        let family = usize::from(d.family == Family::V6);
        let conn = || m.ct.and_then(|r| conntrack.conn(r));
        // What a walk tests without the whole context is the state, and for `--ctstate` the
        // connection's SNAT and DNAT bits, which only a family with a nat table can set
        // (`bind_new`): without one, the connection is looked up only if the context is
        // made.
        let status = if self.nat[family] {
            conn().map_or(0, |c| c.status)
        } else {
            0
        };
        // The closure holds references only: what it reads is copied when it runs, so a
        // walk that never makes the context does not pay for copying it.
        let meta = &*m;
        let mut make = || {
            // Looked up again even where the status needed it: keeping the first lookup
            // for this rarer path cost every packet more than the lookup does.
            let conn = conn();
            PacketCtx {
                packet: d,
                iif: host.name(meta.iif),
                oif: host.name(meta.oif),
                state: meta.state,
                conn,
                tracker: Some(&*conntrack),
                ct: meta.ct,
                // Only connections made with accounting on have counters to read.
                counters: match meta.ct {
                    Some(r) if conntrack.settings().acct => conntrack.extras(r).counters,
                    _ => Default::default(),
                },
                mark: meta.mark,
                ct_mark: conn.map_or(0, |c| c.mark),
                now,
                host: &*host,
                mac_header: meta.mac,
            }
        };
        let mut p = LazyCtx::new(d, m.state, status, &mut make);
        let decision = rules.evaluate_at(at, &mut p, fx);
        let Some(ctx) = p.made() else {
            return decision;
        };
        let (mark, ct_mark) = (ctx.mark, ctx.ct_mark);
        m.mark = mark;
        if fx.ct_mark_changed {
            if let Some(c) = m.ct.and_then(|r| conntrack.conn_mut(r)) {
                c.mark = ct_mark;
            }
        }
        decision
    }

    /// What a packet entering at `entry` carries into the hooks, before any of them.
    #[inline(always)]
    fn meta(&self, d: &Datagram<'_>, entry: Hook) -> Meta {
        let wire = entry == Hook::PreRouting;
        Meta {
            nat: None,
            template: None,
            mac: self.mac.filter(|_| wire),
            rule: None,
            state: PacketState::Invalid,
            ct: None,
            mark: 0,
            // Taken from the host's routes, so the same for every packet of a connection's
            // direction: kept walks (`memo`) rely on it. An input interface taken from
            // elsewhere (a capture's) would have to join the memo key.
            iif: if wire {
                self.host.route_ref(d.src, d.family)
            } else {
                IfRef::None
            },
            oif: IfRef::None,
            walked: 0,
            wire,
        }
    }

    /// An IPv4/UDP datagram, whole and without options, where the raw table at its entry
    /// hook has no rules (`raw`: that chain, empty, whose ACCEPT policy counts it): the
    /// tracker's fast path, and for a known connection whose way through the hooks was
    /// kept (`memo::Path`), that way taken again without the hooks: the same counters, the
    /// same outcome. Any other packet goes on through the hooks as [`Engine::run_hooks`]
    /// takes it, and a known connection's packet that may be kept is recorded.
    #[inline(never)]
    fn udp4_fast(
        &mut self,
        bytes: &[u8],
        u: &Udp4<'_>,
        raw: Option<(u16, u16)>,
        now: u64,
        out: &mut Outcome,
    ) {
        let entry = out.entry_hook;
        let wire = entry == Hook::PreRouting;
        let len = u64::from(u.len());
        if let Some((t, c)) = raw {
            self.rules
                .policy_of_empty(Family::V4, (usize::from(t), usize::from(c)), len);
        }
        let ct = match self.conntrack.conntrack_in_udp4(u, entry, now) {
            Ok(ct) => ct,
            // Not in the table (or not for the fast path): on through the hooks, the lookup
            // not made again.
            Err(p) => return self.udp4_through_hooks(bytes, Err(&p), None, now, out),
        };
        let key = self.path_key(&ct, wire);
        if let Some(key) = key {
            let ttl = u.bytes()[8];
            if self.take_path(key, (Family::V4, len, ttl), &ct, None, now, out) {
                return;
            }
        }
        self.udp4_through_hooks(bytes, Ok(&ct), key, now, out)
    }

    /// The key a packet's way through the hooks is kept under, once conntrack gave `ct`;
    /// `None` where it is not kept: no confirmed connection, RELATED, dropped.
    ///
    /// Only a connection without a helper or a NAT binding has its way kept. A helper
    /// works on each packet at confirmation; a binding's translation is the same for every
    /// packet, but the later hooks see the translated datagram: both are left to the
    /// hooks.
    #[inline(always)]
    fn path_key(&self, ct: &InResult, wire: bool) -> Option<memo::Key> {
        match ct.ct {
            Some(CtRef::Confirmed(at)) if ct.drop.is_none() && !self.conntrack.any_helper() => self
                .conntrack
                .conn(CtRef::Confirmed(at))
                .filter(|c| !c.is_translated())
                .and_then(|c| memo::Key::of(at, c, ct.state, wire)),
            _ => None,
        }
    }

    /// Takes the way kept for `key`, if there is one and the packet (its family, length
    /// and TTL) may take it: its chains' counters bumped in order, its outcome given,
    /// conntrack's confirmation made. `raw_rule` is the last rule raw's walk matched
    /// before conntrack, which a kept way does not hold. False, with nothing done, where
    /// the packet must take the hooks.
    #[inline(always)]
    fn take_path(
        &mut self,
        key: memo::Key,
        (family, len, ttl): (Family, u64, u8),
        ct: &InResult,
        raw_rule: memo::LastRule,
        now: u64,
        out: &mut Outcome,
    ) -> bool {
        // A forwarded packet whose TTL runs out takes the hooks to be dropped there.
        let Some(path) = self
            .memo
            .path(key)
            .filter(|p| p.end != End::Forwarded || ttl > 1)
        else {
            return false;
        };
        for &step in path.steps() {
            match step {
                memo::Step::Walk(place) => {
                    if let Some(kept) = self.memo.kept(place) {
                        self.rules.replay(&kept.replay, len);
                    }
                }
                memo::Step::Policy(t, c) => {
                    self.rules
                        .policy_of_empty(family, (usize::from(t), usize::from(c)), len);
                }
            }
        }
        // Copied as it is, and raw's rule only where the way matched none: `Option::or`
        // went through the stack, and its copy out waited on two overlapping stores there
        // (perf: a tenth of this function's time).
        out.rule = path.rule;
        if out.rule.is_none() {
            out.rule = raw_rule;
        }
        out.state = ct.state;
        out.invalid = ct.invalid;
        out.fate = match path.end {
            End::Delivered => {
                self.counts.delivered += 1;
                Fate::Delivered
            }
            End::Forwarded => {
                self.counts.forwarded += 1;
                Fate::Forwarded
            }
            End::Sent => {
                self.counts.sent += 1;
                Fate::Sent
            }
        };
        self.conntrack.confirm(ct, now);
        true
    }

    /// A datagram [`Engine::udp4_fast`] took through the hooks after all: parsed, tracked
    /// (`tracked`: by the fast path, or its miss to try the new connection with, after
    /// which a known connection's kept way is taken as after the fast path), then as
    /// [`Engine::run_hooks`] goes on after conntrack. Its way is recorded and kept for
    /// `record` (or the key found here), if it may be.
    #[inline(never)]
    fn udp4_through_hooks(
        &mut self,
        bytes: &[u8],
        tracked: Result<&InResult, &ctrack_conntrack::Prefetched<'_>>,
        record: Option<memo::Key>,
        now: u64,
        out: &mut Outcome,
    ) {
        let entry = out.entry_hook;
        let parsed = Datagram::parse(bytes);
        let d = match &parsed {
            Ok(d) => d,
            Err(e) => return self.malformed_after_all(*e, out),
        };
        let mut m = self.meta(d, entry);
        let made;
        let (ct, record) = match tracked {
            Ok(ct) => (ct, record),
            Err(p) => {
                made = self.conntrack.conntrack_in_prefetched(d, entry, now, p);
                // A known connection the fast path leaves to the general one (one with a
                // rarer part) takes its kept way too.
                let key = self.path_key(&made, m.wire);
                if let Some(key) = key {
                    let packet = (d.family, u64::from(d.len()), d.ttl);
                    if self.take_path(key, packet, &made, None, now, out) {
                        return;
                    }
                }
                (&made, key)
            }
        };
        m.ct = ct.ct;
        match record {
            Some(key) => self.record_path(d, &mut m, ct, key, now, out),
            None => self.after_conntrack(d, &mut m, Some(ct), now, out),
        }
    }

    /// The hooks after conntrack, the way the packet takes through them recorded and kept
    /// for `key` if it may be (every chain met empty or with its walk kept, and the packet
    /// not dropped).
    #[inline(never)]
    fn record_path(
        &mut self,
        d: &Datagram<'_>,
        m: &mut Meta,
        ct: &InResult,
        key: memo::Key,
        now: u64,
        out: &mut Outcome,
    ) {
        // The way kept holds what the hooks after conntrack did: raw's last rule, which
        // may differ packet by packet, is added back after.
        let raw_rule = m.rule.take();
        self.memo.record();
        self.after_conntrack(d, m, Some(ct), now, out);
        let end = match out.fate {
            Fate::Delivered => Some(End::Delivered),
            Fate::Forwarded => Some(End::Forwarded),
            Fate::Sent => Some(End::Sent),
            _ => None,
        };
        self.memo.end_recording(key, end.map(|end| (out.rule, end)));
        out.rule = out.rule.or(raw_rule);
    }

    /// A datagram [`Udp4::parse`] took and [`Datagram::parse`] refused: never, as a
    /// proptest of `ctrack-packet` holds; were it to happen, the packet is counted
    /// malformed and goes no further.
    #[cold]
    fn malformed_after_all(&mut self, why: Malformed, out: &mut Outcome) {
        self.counts.malformed += 1;
        out.fate = Fate::Dropped(DropReason::Malformed(why));
    }

    fn run_hooks(&mut self, d: &Datagram<'_>, entry: Hook, now: u64, out: &mut Outcome) {
        use Table::*;
        let mut m = self.meta(d, entry);
        // raw runs before conntrack (priority -300 against -200).
        if let Err(r) = self.tables(d, entry, &[Raw], &mut m, now) {
            out.rule = m.rule;
            return self.dropped_packet(out, r, None, Some(d));
        }
        let ct = if m.state == PacketState::Untracked {
            None
        } else {
            // An IPv4/UDP packet takes the tracker's fast path (a new connection's from its
            // miss, in `conntrack_in_prefetched`); one it leaves goes on with the hash the
            // fast path made. The connection is taken in
            // each arm: taken after them, the fast path's result was read back whole from
            // where its halves had just been written, and the read waited on the writes
            // (perf: a tenth of this function's time).
            let ct = match (m.template.as_ref(), ctrack_packet::Udp4::of_datagram(d)) {
                (None, Some(u)) => match self.conntrack.conntrack_in_udp4(&u, entry, now) {
                    Ok(r) => {
                        m.ct = r.ct;
                        r
                    }
                    Err(p) => {
                        let r = self.conntrack.conntrack_in_prefetched(d, entry, now, &p);
                        m.ct = r.ct;
                        r
                    }
                },
                (tmpl, _) => {
                    let r = self.conntrack.conntrack_in_with(d, entry, now, tmpl);
                    m.ct = r.ct;
                    r
                }
            };
            Some(ct)
        };
        // A known connection's packet takes its way kept, or has it recorded, as on the
        // fast path; a packet given a template by raw takes the hooks.
        if let (Some(ct), true, None) = (&ct, self.keeps_paths, &m.template) {
            if let Some(key) = self.path_key(ct, m.wire) {
                let packet = (d.family, u64::from(d.len()), d.ttl);
                if !self.take_path(key, packet, ct, m.rule, now, out) {
                    self.record_path(d, &mut m, ct, key, now, out);
                }
                return;
            }
        }
        self.after_conntrack(d, &mut m, ct.as_ref(), now, out)
    }

    /// The hooks after conntrack, which gave `ct` (`None`: the packet is untracked) and
    /// whose connection `m` carries. Inlined into its two callers: in a call of its own,
    /// the packets that take the hooks paid some 40 instructions more.
    #[inline(always)]
    fn after_conntrack(
        &mut self,
        d: &Datagram<'_>,
        m: &mut Meta,
        ct: Option<&InResult>,
        now: u64,
        out: &mut Outcome,
    ) {
        use Table::*;
        let wire = m.wire;
        if let Some(ct) = ct {
            m.state = ct.state;
            out.invalid = ct.invalid;
            if ct.state == PacketState::Invalid && ct.drop.is_none() {
                self.counts.invalid += 1;
            }
            if ct.drop.is_some() {
                out.state = ct.state;
                return self.dropped(out, DropReason::TableFull, Some(ct));
            }
        }
        out.state = m.state;
        let reply = matches!(m.state, PacketState::Tracked(ci) if ci.is_reply());
        // A helper may rewrite what leaves: build it for such connections whatever `emit`.
        let emit = self.emit
            || (d.proto == ctrack_packet::proto::TCP
                && m.ct
                    .and_then(|r| self.conntrack.conn(r))
                    .is_some_and(|c| c.helper.is_some()));
        let dbuf: Vec<u8>;
        m.oif = if wire {
            IfRef::None
        } else {
            self.host.route_ref(d.dst, d.family)
        };
        let result: Result<Fate, DropReason> = 'hooks: {
            macro_rules! run {
                ($d:expr, $hook:expr, $tables:expr) => {
                    if let Err(e) = self.tables($d, $hook, $tables, m, now) {
                        break 'hooks Err(e);
                    }
                };
            }
            let dnat_hook = if wire {
                Hook::PreRouting
            } else {
                Hook::LocalOut
            };
            run!(d, dnat_hook, &[Mangle]);
            run!(d, dnat_hook, self.nat_tables(m, Manip::Dst));
            self.bind(m, Manip::Dst, d, dnat_hook);
            // Destination translation happens here, before the routing decision.
            let mut cur = match self.translation(m, d, reply, Manip::Dst) {
                Some(bytes) => {
                    dbuf = bytes;
                    Datagram::parse(&dbuf).unwrap_or(*d)
                }
                None => *d,
            };
            if wire {
                let to_host = match self.host.route_input(&cur) {
                    Ok(to_host) => to_host,
                    Err(why) => break 'hooks Err(DropReason::Address(why)),
                };
                if to_host {
                    run!(&cur, Hook::LocalIn, &[Mangle, Filter, Security]);
                    run!(&cur, Hook::LocalIn, self.nat_tables(m, Manip::Src));
                    self.bind(m, Manip::Src, &cur, Hook::LocalIn);
                    break 'hooks Ok(Fate::Delivered);
                }
                if cur.ttl <= 1 {
                    break 'hooks Err(DropReason::TtlExceeded);
                }
                m.oif = self.host.route_ref(cur.dst, cur.family);
                // ip_forward lowers the TTL before the FORWARD hook (the bytes keep theirs
                // until they leave).
                cur.ttl -= 1;
                run!(&cur, Hook::Forward, &[Mangle, Filter, Security]);
                run!(&cur, Hook::PostRouting, &[Mangle]);
                run!(&cur, Hook::PostRouting, self.nat_tables(m, Manip::Src));
                self.bind(m, Manip::Src, &cur, Hook::PostRouting);
                if emit {
                    let mut b = cur.bytes.to_vec();
                    reject::decrement_ttl(&mut b, cur.family);
                    out.leaving = Some(self.source_translated(m, b, reply));
                }
                Ok(Fate::Forwarded)
            } else {
                // A packet to one of the host's own addresses is routed out by loopback.
                let to_self = self.host.is_local(cur.dst, cur.family);
                m.oif = if to_self {
                    IfRef::Lo
                } else {
                    self.host.route_ref(cur.dst, cur.family)
                };
                run!(&cur, Hook::LocalOut, &[Filter, Security]);
                run!(&cur, Hook::PostRouting, &[Mangle]);
                run!(&cur, Hook::PostRouting, self.nat_tables(m, Manip::Src));
                self.bind(m, Manip::Src, &cur, Hook::PostRouting);
                if to_self {
                    // It comes back in on lo. Conntrack lets a packet it saw at OUTPUT pass
                    // ("previously seen (loopback)"), and so do raw's NOTRACK and CT, but
                    // the tables hook it again; both translations are bound by now.
                    let (state, template) = (m.state, m.template);
                    (m.iif, m.oif) = (IfRef::Lo, IfRef::None);
                    run!(&cur, Hook::PreRouting, &[Raw, Mangle]);
                    (m.state, m.template) = (state, template);
                    run!(&cur, Hook::LocalIn, &[Mangle, Filter, Security]);
                    break 'hooks Ok(Fate::Delivered);
                }
                if emit {
                    out.leaving = Some(self.source_translated(m, cur.bytes.to_vec(), reply));
                }
                Ok(Fate::Sent)
            }
        };
        out.rule = m.rule;
        match result {
            Ok(fate) => {
                if let Some(ct) = ct {
                    let help = self.conntrack.help(ct, d, now);
                    if let Help::Drop(reason) = help {
                        return self.dropped_packet(
                            out,
                            DropReason::Helper(reason),
                            Some(ct),
                            None,
                        );
                    }
                    self.apply_helper(out, ct, help, reply);
                    self.conntrack.confirm(ct, now);
                }
                match fate {
                    Fate::Delivered => self.counts.delivered += 1,
                    Fate::Forwarded => self.counts.forwarded += 1,
                    _ => self.counts.sent += 1,
                }
                out.fate = fate;
            }
            Err(r) => self.dropped_packet(out, r, ct, Some(d)),
        }
    }

    /// What a helper does to the leaving packet after NAT, as `nf_confirm` runs it: the
    /// payload rewrite it asked for, then the sequence adjustment of a connection whose
    /// lengths changed (`nf_ct_seq_adjust`). Most packets need neither, and pay only the
    /// check that tells.
    #[inline]
    fn apply_helper(&self, out: &mut Outcome, ct: &InResult, help: Help, reply: bool) {
        if !self.conntrack.any_helper() {
            return;
        }
        let adjusts = ct
            .ct
            .and_then(|r| self.conntrack.conn(r))
            .is_some_and(|c| c.has(ctrack_conntrack::ips::SEQ_ADJUST));
        if adjusts || matches!(help, Help::Mangle(_)) {
            self.rewrite_for_helper(out, ct, help, reply);
        }
    }

    /// [`Engine::apply_helper`] of a packet that has a rewrite asked for or a connection
    /// whose sequence numbers are adjusted.
    #[inline(never)]
    fn rewrite_for_helper(&self, out: &mut Outcome, ct: &InResult, help: Help, reply: bool) {
        let Some(bytes) = out.leaving.as_mut() else {
            return;
        };
        let Some(c) = ct.ct.and_then(|r| self.conntrack.conn(r)) else {
            return;
        };
        let mangled = match &help {
            Help::Mangle(m) => natpkt::mangle_tcp_payload(bytes, m.at, m.len, m.text.as_bytes()),
            _ => false,
        };
        let adjusted = match (c.has(ctrack_conntrack::ips::SEQ_ADJUST), ct.ct) {
            (true, Some(r)) if matches!(c.proto, ctrack_conntrack::proto::ProtoState::Tcp(_)) => {
                let dir = usize::from(reply);
                let adj = self.conntrack.seqadj(r);
                natpkt::seq_adjust(bytes, &adj[dir], &adj[1 - dir])
            }
            _ => false,
        };
        out.helper_rewrote = mangled || adjusted;
    }

    /// Sets up a new connection's NAT binding for one manipulation, from the nat table's
    /// rule at this hook, or the null binding when the table said nothing (a source that
    /// clashes still gets a new port, as the kernel does).
    /// The nat table is consulted only for a connection's first packet, and only for a
    /// translation not yet bound: an expected connection that followed its master has both.
    fn nat_tables(&self, m: &Meta, manip: Manip) -> &'static [Table] {
        let done = match manip {
            Manip::Src => ctrack_conntrack::ips::SRC_NAT_DONE,
            Manip::Dst => ctrack_conntrack::ips::DST_NAT_DONE,
        };
        match m.ct {
            Some(r @ CtRef::Unconfirmed)
                if self.conntrack.conn(r).is_some_and(|c| !c.has(done)) =>
            {
                &[Table::Nat]
            }
            _ => &[],
        }
    }

    #[inline]
    fn bind(&mut self, m: &mut Meta, manip: Manip, d: &Datagram<'_>, hook: Hook) {
        // Only a connection's first packet binds: settled inline, the rest out of line.
        // Only that packet walks the nat table, so only it can carry an action to take.
        if m.ct == Some(CtRef::Unconfirmed) {
            let action = m.nat.take();
            self.bind_new(action, manip, d, hook);
        }
    }

    #[inline(never)]
    fn bind_new(&mut self, action: Option<NatAction>, manip: Manip, d: &Datagram<'_>, hook: Hook) {
        let r = CtRef::Unconfirmed;
        if !self.nat[usize::from(d.family == Family::V6)] {
            return;
        }
        let loopback = match d.family {
            Family::V4 => Addr::v4([127, 0, 0, 1]),
            Family::V6 => Addr::v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        };
        let single = |a: Option<Addr>| a.map(|a| (a, a));
        let range = match action {
            Some(NatAction::Fixed(mm, range)) if mm == manip => range,
            Some(NatAction::Masquerade(ports, random)) if manip == Manip::Src => NatRange {
                addrs: single(self.host.source_toward(d.dst, d.family)),
                ports,
                random,
                persistent: false,
            },
            Some(NatAction::Redirect(ports, random)) if manip == Manip::Dst => NatRange {
                addrs: Some(if hook == Hook::LocalOut {
                    (loopback, loopback)
                } else {
                    let a = self.host.source_toward(d.src, d.family).unwrap_or(d.dst);
                    (a, a)
                }),
                ports,
                random,
                persistent: false,
            },
            _ if manip == Manip::Src => NatRange {
                addrs: None,
                ports: None,
                random: false,
                persistent: false,
            },
            _ => return,
        };
        self.conntrack.nat_setup(r, manip, &range);
    }

    /// `bytes` with the source translation of its connection applied, if it has one.
    fn source_translated(&self, m: &Meta, bytes: Vec<u8>, reply: bool) -> Vec<u8> {
        let Ok(d) = Datagram::parse(&bytes) else {
            return bytes;
        };
        match self.translation(m, &d, reply, Manip::Src) {
            Some(t) => t,
            None => bytes,
        }
    }

    /// The packet with its destination (or source) as the connection's NAT binding wants it
    /// leaving, when that differs from what it has.
    #[inline]
    fn translation(
        &self,
        m: &Meta,
        d: &Datagram<'_>,
        reply: bool,
        manip: Manip,
    ) -> Option<Vec<u8>> {
        // Without a nat table no connection is bound (`bind_new`), as the kernel's NAT
        // hooks are not registered before a nat table is loaded.
        if !self.nat[usize::from(d.family == Family::V6)] {
            return None;
        }
        let c = self.conntrack.conn(m.ct?)?;
        // Without a binding both tuples mirror each other: nothing to rewrite. Most
        // connections have none and pay only this check.
        if !c.is_translated() {
            return None;
        }
        self.translated(m, d, reply, manip)
    }

    /// [`Engine::translation`] of a packet of a connection with a NAT binding.
    #[inline(never)]
    fn translated(&self, m: &Meta, d: &Datagram<'_>, reply: bool, manip: Manip) -> Option<Vec<u8>> {
        let from = self.conntrack.tuples(m.ct?)?[if reply { 0 } else { 1 }];
        let target = from.invert()?;
        let icmp = target.is_icmp();
        let (port_now, port_want) = if icmp {
            let id = d
                .l4()
                .get(4..6)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            (id, target.src_port)
        } else {
            let ports = ctrack_packet::Tuple::from_datagram(d).ok();
            match manip {
                Manip::Dst => (ports.map_or(0, |t| t.dst_port), target.dst_port),
                Manip::Src => (ports.map_or(0, |t| t.src_port), target.src_port),
            }
        };
        // An ICMP error of a NATed connection: the packet it quotes gets the opposite
        // manipulation, from the tuple of the other direction.
        let error = matches!(
            m.state,
            PacketState::Tracked(
                ctrack_conntrack::CtInfo::Related | ctrack_conntrack::CtInfo::RelatedReply
            )
        ) && d.is_icmp();
        if error {
            let t = from;
            let quoted = ctrack_packet::Tuple::from_quoted(d.family, d.l4().get(8..)?).ok();
            let inner = match manip {
                Manip::Dst
                    if quoted.is_some_and(|q| (q.src, q.src_port) != (t.src, t.src_port)) =>
                {
                    Some((Some((t.src, t.src_port)), None))
                }
                Manip::Src
                    if quoted.is_some_and(|q| (q.dst, q.dst_port) != (t.dst, t.dst_port)) =>
                {
                    Some((None, Some((t.dst, t.dst_port))))
                }
                _ => None,
            };
            let outer_dst = (manip == Manip::Dst && target.dst != d.dst).then_some((target.dst, 0));
            let outer_src = (manip == Manip::Src && target.src != d.src).then_some((target.src, 0));
            if inner.is_none() && outer_dst.is_none() && outer_src.is_none() {
                return None;
            }
            return Some(natpkt::rewrite_with_inner(d, outer_src, outer_dst, inner));
        }
        match manip {
            Manip::Dst if target.dst != d.dst || port_now != port_want => {
                Some(natpkt::rewrite(d, None, Some((target.dst, port_want))))
            }
            Manip::Src if target.src != d.src || port_now != port_want => {
                Some(natpkt::rewrite(d, Some((target.src, port_want)), None))
            }
            _ => None,
        }
    }

    fn dropped(&mut self, out: &mut Outcome, r: DropReason, ct: Option<&InResult>) {
        self.dropped_packet(out, r, ct, None)
    }

    fn dropped_packet(
        &mut self,
        out: &mut Outcome,
        r: DropReason,
        ct: Option<&InResult>,
        d: Option<&Datagram<'_>>,
    ) {
        if let (
            DropReason::Rule {
                reject: Some(with),
                hook,
                ..
            },
            Some(d),
        ) = (r, d)
        {
            let forwarded = matches!(hook, Hook::Forward | Hook::PostRouting)
                && out.entry_hook == Hook::PreRouting;
            out.reply = reject::reply(d, with, &self.host, forwarded);
        }
        if let Some(ct) = ct {
            self.conntrack.discard(ct);
        }
        match r {
            DropReason::TableFull => self.counts.table_full += 1,
            DropReason::Rule { .. } => self.counts.rule_drops += 1,
            DropReason::TtlExceeded => self.counts.ttl_exceeded += 1,
            DropReason::Address(_) => self.counts.address_drops += 1,
            _ => {}
        }
        out.fate = Fate::Dropped(r);
    }
}

#[cfg(test)]
mod tests;
