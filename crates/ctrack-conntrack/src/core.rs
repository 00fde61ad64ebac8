//! `nf_conntrack_in` and `nf_conntrack_confirm`: packets in, connections out.
//!
//! The engine calls [`Conntrack::conntrack_in`] at PREROUTING or OUTPUT and, when the packet
//! survives the last hook, [`Conntrack::confirm`]. A new connection enters the table only at
//! confirmation; a packet dropped before that leaves nothing behind. Timers are data: call
//! [`Conntrack::expire`] with the current time before each packet and before listing.

use crate::conn::{Conn, ExtStore, Extras, HelperData, Rare, Template};
use crate::proto::{self, icmp, tcp, udp, ProtoState, Verdict};
use crate::seqadj::SeqAdj;
use crate::settings::Settings;
use crate::stats::Stats;
use crate::status::{ipct, ips, CtInfo, PacketState};
use crate::table::Table;
use crate::timers::Timers;
use ctrack_packet::{checksum, proto as p, Datagram, Family, TcpView, Tuple, TupleError};

mod fast;

pub use fast::Udp4Hash;

/// The netfilter hook a packet is at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Hook {
    /// From the wire.
    PreRouting,
    /// Delivered locally.
    LocalIn,
    /// Routed through.
    Forward,
    /// Sent by the host.
    LocalOut,
    /// Leaving.
    PostRouting,
}

impl Hook {
    /// The chain name iptables uses.
    pub fn name(self) -> &'static str {
        match self {
            Hook::PreRouting => "PREROUTING",
            Hook::LocalIn => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::LocalOut => "OUTPUT",
            Hook::PostRouting => "POSTROUTING",
        }
    }
}

/// The cached events of a confirmed connection that make an UPDATE when its packet is
/// confirmed: state and status changes.
const UPDATE_EVENTS: u16 =
    ipct::PROTOINFO | ipct::ASSURED | ipct::REPLY | ipct::MARK | ipct::HELPER;

/// The connection a packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtRef {
    /// An entry in the table.
    Confirmed(u32),
    /// The new connection this packet creates, confirmed if the packet survives.
    Unconfirmed,
}

/// What conntrack made of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InResult {
    /// The state the `state`/`conntrack` matches see.
    pub state: PacketState,
    /// The connection, if any.
    pub ct: Option<CtRef>,
    /// Set when conntrack itself drops the packet (table full).
    pub drop: Option<&'static str>,
    /// Why the packet is INVALID, when it is.
    pub invalid: Option<&'static str>,
}

impl InResult {
    fn no_ct(state: PacketState, invalid: Option<&'static str>) -> InResult {
        InResult {
            state,
            ct: None,
            drop: None,
            invalid,
        }
    }
}

/// Kinds of events, as `conntrack -E` labels them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum EventKind {
    /// `[NEW]`.
    New,
    /// `[UPDATE]`.
    Update,
    /// `[DESTROY]`.
    Destroy,
}

/// One event, with the connection as it was when the event was delivered.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// Packet time of delivery (ns).
    pub time: u64,
    /// Kind.
    pub kind: EventKind,
    /// The connection at that moment.
    pub conn: Conn,
    /// Its reply tuple.
    pub reply: Tuple,
    /// Its counters and start time at that moment (zero without accounting).
    pub extras: Extras,
    /// The `IPCT_*` bits delivered: they decide what the event carries (the TCP state only
    /// with `IPCT_PROTOINFO`, as ctnetlink does).
    pub bits: u16,
}

/// Entries the index is sized for up front, at the most.
const PRESIZED_ENTRIES: u32 = 65_536;

/// A packet's tuple and hash, from the first pass over a batch. It borrows the datagram's
/// bytes, so that they cannot change while it is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefetched<'a> {
    hint: Hint,
    bytes: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> Prefetched<'a> {
    /// The datagram's tuple, its hash not yet made; `None` when it has no tuple.
    fn unhashed(d: &Datagram<'a>) -> Option<Prefetched<'a>> {
        Some(Prefetched {
            hint: Hint {
                tuple: Tuple::from_datagram(d).ok()?,
                bytes: bytes_of(d),
                hash: 0,
                fast_path_missed: false,
                absent_while: None,
            },
            bytes: std::marker::PhantomData,
        })
    }

    /// What the fast path made of an IPv4/UDP datagram it left to the general path: its
    /// tuple and the hash it looked up.
    pub(crate) fn of_udp4(
        u: &ctrack_packet::Udp4<'a>,
        hash: u32,
        absent_while: Option<std::num::NonZeroU64>,
    ) -> Prefetched<'a> {
        Prefetched {
            hint: Hint {
                tuple: u.tuple(),
                bytes: fast::place_of(u),
                hash,
                fast_path_missed: true,
                absent_while,
            },
            bytes: std::marker::PhantomData,
        }
    }
}

/// What a [`Prefetched`] carries to the last stage of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hint {
    tuple: Tuple,
    /// Where the datagram's bytes are and how many: the tuple serves that datagram only.
    bytes: (usize, usize),
    hash: u32,
    /// The fast path looked this datagram up already and left it to the general path.
    fast_path_missed: bool,
    /// The fast path's lookup found no entry with the tuple (in zone 0) at this
    /// generation of the table: while it has made no more entries, none has the tuple.
    // Eight bytes, no tag beside it: a tag and a value were read, just after being
    // written, by a load that waited on the stores (perf: most of a new connection's own
    // time on the fast path).
    absent_while: Option<std::num::NonZeroU64>,
}

/// The connection a packet made, before confirmation puts it in the table: what the entry
/// will hold, and what is kept apart from it there.
#[derive(Clone, Copy)]
struct Pending {
    conn: Conn,
    /// Its reply tuple, which NAT may change before confirmation.
    reply: Tuple,
    /// Its rare values (the reply tuple goes in at confirmation, if NAT changed it).
    rare: Rare,
    /// Its counters and start time, kept once it is confirmed.
    extras: Extras,
    /// The hash of its original tuple, from its lookup.
    hash: u32,
}

/// One network namespace's connection tracking.
pub struct Conntrack {
    settings: Settings,
    table: Table,
    stats: Stats,
    pending: Option<Pending>,
    timers: Timers,
    /// Helper state of the connections that have some.
    helper_data: ExtStore<HelperData>,
    /// Counters and start times, of connections made with accounting or timestamps on.
    extras: ExtStore<Extras>,
    affinity: Option<(crate::shard::Dealer, u32)>,
    next_id: u32,
    events: Vec<Event>,
    record_events: bool,
    log: Vec<(u64, String)>,
    last_full_log: Option<u64>,
    full_log_burst: u32,
    scratch: Vec<u32>,
    peak: (usize, u64),
    /// Entries ever confirmed.
    created: u64,
    /// Original tuple of the last new connection whose packet was dropped before
    /// confirmation: the host's own ICMP error about that packet carries it (`nf_ct_attach`).
    last_discarded: Option<Tuple>,
    /// The template of the packet being tracked.
    template: Template,
    /// `template` is not the default: the last packet with one set it. Kept beside it
    /// rather than making `template` an `Option`, whose store for every packet cost more.
    templated: bool,
    /// Random choices of NAT port selection (seeded).
    rng: crate::nat::Rng,
    /// Connections helpers announced.
    expectations: Vec<crate::expect::Expectation>,
    /// Timeout policies `CT --timeout` may name (`nfct add timeout`).
    timeout_policies: Vec<crate::timeout::TimeoutPolicy>,
    /// Some connection was given a helper (`CT --helper`). Until one is, no packet needs
    /// the helper's hook, and none pays for looking.
    helped: bool,
}

/// The kernel log line of a drop for a full table, as `dmesg` shows it in the initial
/// network namespace (the message carries the module's `pr_fmt` prefix as well as its own;
/// other namespaces print `table full in netns N`).
pub const TABLE_FULL_LOG: &str = "nf_conntrack: nf_conntrack: table full, dropping packet";

/// The kernel log line of an expectation refused for a full expectation table
/// (`nf_conntrack_expect_max`).
pub const EXPECT_FULL_LOG: &str = "nf_conntrack: expectation table full";

/// What a helper decided about a packet ([`Conntrack::help`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Help {
    /// The packet goes on as it is.
    Accept,
    /// NAT rewrites part of the TCP payload (`nf_nat_mangle_tcp_packet`); the connection's
    /// sequence adjustment already counts the change of length.
    Mangle(Mangle),
    /// The helper drops the packet, for this reason (as `nf_ct_helper_log` words it).
    Drop(&'static str),
}

/// A rewrite of a TCP payload: `len` bytes at `at` become `text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mangle {
    /// Offset in the TCP payload.
    pub at: usize,
    /// Bytes replaced.
    pub len: usize,
    /// What replaces them.
    pub text: String,
}

/// Why an expectation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Another master expects the same connection (`-EBUSY`).
    Busy,
    /// The expectation table is full (`-EMFILE`).
    Full,
}

/// How long `net_ratelimit` lets a burst of 10 messages through: 5 s.
const RATELIMIT_NS: u64 = 5_000_000_000;
const RATELIMIT_BURST: u32 = 10;
/// Buckets early drop scans from the new tuple's (`NF_CT_EVICTION_RANGE`).
const EVICTION_RANGE: usize = 8;

impl Conntrack {
    /// A tracker with these settings; `seed` keys the hash (and so which entries early drop
    /// meets) and the connection ids.
    pub fn new(settings: Settings, seed: u64) -> Conntrack {
        // Room in the index for the most entries the table is let hold, up to one a
        // bucket (the kernel's default ratio) and at most 65,536 (an index of 1 MiB, half
        // what the kernel's default 262,144 buckets take): beyond that it grows with its
        // entries, so that a small table stays dense in the cache.
        let expected = match settings.max {
            0 => settings.buckets,
            max => max.min(settings.buckets),
        }
        .min(PRESIZED_ENTRIES);
        let table = Table::new(settings.buckets, expected, seed);
        Conntrack {
            settings,
            table,
            stats: Stats::default(),
            pending: None,
            timers: Timers::default(),
            helper_data: ExtStore::default(),
            extras: ExtStore::default(),
            affinity: None,
            next_id: (seed as u32).wrapping_mul(2_654_435_761) | 1,
            events: Vec::new(),
            record_events: false,
            log: Vec::new(),
            last_full_log: None,
            full_log_burst: 0,
            scratch: Vec::new(),
            peak: (0, 0),
            created: 0,
            last_discarded: None,
            template: Template::default(),
            templated: false,
            rng: crate::nat::Rng::new(seed),
            expectations: Vec::new(),
            timeout_policies: Vec::new(),
            helped: false,
        }
    }

    /// How many entries have entered the table since the start: new connections.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// Keep events for [`Conntrack::take_events`].
    pub fn record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Entries in the table (`nf_conntrack_count`).
    pub fn count(&self) -> usize {
        self.table.len()
    }

    /// The highest count seen and when.
    pub fn peak(&self) -> (usize, u64) {
        self.peak
    }

    /// The table, for listings.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Every entry in the order `/proc/net/nf_conntrack` lists them (`Table::iter_listing`),
    /// with what a listing line shows of it beside the connection: its reply tuple, and its
    /// counters and start time.
    pub fn listing(&self) -> impl Iterator<Item = (&Conn, Tuple, Extras)> + '_ {
        self.table.iter_listing().map(|(i, c)| {
            let extras = self.extras(CtRef::Confirmed(i));
            (c, self.table.reply(i), extras)
        })
    }

    /// Events delivered since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Kernel log lines (`nf_conntrack: table full, dropping packet`) since the last call.
    pub fn take_log(&mut self) -> Vec<(u64, String)> {
        std::mem::take(&mut self.log)
    }

    /// A connection by reference (the pending one for `Unconfirmed`).
    pub fn conn(&self, r: CtRef) -> Option<&Conn> {
        match r {
            CtRef::Confirmed(i) => self.table.get_live(i),
            CtRef::Unconfirmed => self.pending.as_ref().map(|p| &p.conn),
        }
    }

    /// A connection by reference, mutably (for marks set by rules).
    pub fn conn_mut(&mut self, r: CtRef) -> Option<&mut Conn> {
        match r {
            CtRef::Confirmed(i) => self.table.get_live_mut(i),
            CtRef::Unconfirmed => self.pending.as_mut().map(|p| &mut p.conn),
        }
    }

    /// Destroys every entry whose timer ran out by `now`, with a DESTROY event at the
    /// moment it expired.
    #[inline]
    pub fn expire(&mut self, now: u64) {
        // Most calls find nothing due: the heap's first timer, disowned or not, is no later
        // than any entry's, and telling whether it is an entry's own costs a lookup.
        if self.timers.next_at().is_none_or(|at| at > now) {
            return;
        }
        self.expire_due(now);
    }

    /// [`Conntrack::expire`] once a timer is due.
    #[inline(never)]
    fn expire_due(&mut self, now: u64) {
        while let Some((when, idx)) = self.timers.first() {
            if when > now {
                break;
            }
            // Every live entry has its timer, and only a live one: destroying disowns it.
            let deadline = self.table.get(idx).deadline;
            if self.table.get(idx).expired(now) {
                self.destroy(idx, deadline);
            } else {
                // The deadline moved later since this timer was set.
                self.timers.postpone_first(deadline);
            }
        }
    }

    /// First stage of a batched lookup: the packet's tuple and its hash (in zone 0, as
    /// without a `CT --zone` template), its index slot asked for ahead of time. `None` when
    /// the packet has no tuple.
    pub fn prefetch<'a>(&self, d: &Datagram<'a>) -> Option<Prefetched<'a>> {
        let mut p = Prefetched::unhashed(d)?;
        p.hint.hash = self.table.hash(&p.hint.tuple, 0);
        self.table.prefetch_slot(p.hint.hash);
        Some(p)
    }

    /// [`Conntrack::prefetch`] of each datagram of a batch, into `out` (cleared first), one
    /// for each datagram in order. The same tuples and hashes; four IPv4 tuples are hashed
    /// at once.
    pub fn prefetch_batch<'a>(&self, ds: &[Datagram<'a>], out: &mut Vec<Option<Prefetched<'a>>>) {
        out.clear();
        out.extend(ds.iter().map(Prefetched::unhashed));
        let mut four = out.iter_mut().flatten();
        loop {
            match [four.next(), four.next(), four.next(), four.next()] {
                [Some(a), Some(b), Some(c), Some(d)] => {
                    let h = self.table.hash4(
                        [&a.hint.tuple, &b.hint.tuple, &c.hint.tuple, &d.hint.tuple],
                        0,
                    );
                    for (p, h) in [a, b, c, d].into_iter().zip(h) {
                        p.hint.hash = h;
                        self.table.prefetch_slot(h);
                    }
                }
                rest => {
                    for p in rest.into_iter().flatten() {
                        p.hint.hash = self.table.hash(&p.hint.tuple, 0);
                        self.table.prefetch_slot(p.hint.hash);
                    }
                    return;
                }
            }
        }
    }

    /// Second stage: the entry that slot names asked for. When there is none, the packet
    /// most likely makes a new connection, whose slot is the one already asked for (the
    /// reply's too, unless NAT changes it).
    pub fn prefetch_entry(&self, p: &Prefetched<'_>) {
        self.table.prefetch_entry(p.hint.hash);
    }

    /// Last stage: [`Conntrack::conntrack_in`] of a packet [`Conntrack::prefetch`] saw,
    /// its tuple and hash not made again. The same result; given another datagram than the
    /// one `p` was made of, the tuple is made again from it.
    pub fn conntrack_in_prefetched(
        &mut self,
        d: &Datagram<'_>,
        hook: Hook,
        now: u64,
        p: &Prefetched<'_>,
    ) -> InResult {
        // The hint serves only the datagram it was made of: settled here, once.
        let hint = (p.hint.bytes == bytes_of(d)).then_some(&p.hint);
        match hint {
            // The fast path found no connection: it may make the new one.
            Some(h) if h.absent_while.is_some() => {
                if let Some(u) = ctrack_packet::Udp4::of_datagram(d) {
                    if let Ok(r) = self.conntrack_in_udp4_new(&u, hook, now, p) {
                        return r;
                    }
                }
            }
            Some(h) if h.fast_path_missed => {}
            _ => {
                if let Some(u) = ctrack_packet::Udp4::of_datagram(d) {
                    if let Ok(r) = self.udp4_in::<false>(&u, hook, now, hint.map(|h| h.hash)) {
                        return r;
                    }
                }
            }
        }
        self.conntrack_in_hinted(d, hook, now, None, hint)
    }

    /// Makes this the tracker of worker `me` of those `dealer` deals to: NAT then chooses
    /// ports whose replies deal back here (see [`crate::shard`]).
    pub fn set_affinity(&mut self, dealer: crate::shard::Dealer, me: u32) {
        self.affinity = Some((dealer, me));
    }

    /// The next moment a timer fires, if any: no later than the next expiry (a destroyed
    /// connection's timer may come first, and [`Conntrack::expire`] then finds nothing).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next_at()
    }

    fn destroy(&mut self, idx: u32, now: u64) {
        let (mut conn, reply, rare) = self.table.remove(idx);
        self.helper_data.remove(rare.helper_data);
        let extras = self.extras.remove(conn.extras).unwrap_or_default();
        self.timers.disown(idx);
        conn.status |= ips::DYING;
        self.emit(
            now,
            EventKind::Destroy,
            (conn, reply),
            extras,
            ipct::DESTROY,
        );
    }

    /// A connection's rare values (the pending one's for `Unconfirmed`), if it has any.
    pub fn rare(&self, r: CtRef) -> Option<&Rare> {
        match r {
            CtRef::Confirmed(i) => self.table.is_live(i).then(|| self.table.rare(i))?,
            CtRef::Unconfirmed => self.pending.as_ref().map(|p| &p.rare),
        }
    }

    /// A connection's reply tuple (the pending one's for `Unconfirmed`).
    pub fn reply(&self, r: CtRef) -> Option<Tuple> {
        match r {
            CtRef::Confirmed(i) => self.table.is_live(i).then(|| self.table.reply(i)),
            CtRef::Unconfirmed => self.pending.map(|p| p.reply),
        }
    }

    /// A connection's tuples: original and reply.
    pub fn tuples(&self, r: CtRef) -> Option<[Tuple; 2]> {
        Some([self.conn(r)?.original, self.reply(r)?])
    }

    /// A connection's counters and start time: zero for one made without accounting and
    /// timestamps.
    pub fn extras(&self, r: CtRef) -> Extras {
        match r {
            CtRef::Unconfirmed => self.pending.map(|p| p.extras).unwrap_or_default(),
            CtRef::Confirmed(_) => self
                .conn(r)
                .and_then(|c| self.extras.get(c.extras))
                .copied()
                .unwrap_or_default(),
        }
    }

    fn extras_mut(&mut self, r: CtRef) -> Option<&mut Extras> {
        match r {
            CtRef::Unconfirmed => self.pending.as_mut().map(|p| &mut p.extras),
            CtRef::Confirmed(i) => {
                let at = self.table.is_live(i).then(|| self.table.get(i).extras)?;
                self.extras.get_mut(at)
            }
        }
    }

    /// True when this hook's packets have their transport checksums checked
    /// (`nf_conntrack_checksum`, at PREROUTING only).
    #[inline(always)]
    fn verifies_checksum(&self, hook: Hook) -> bool {
        self.settings.checksum && hook == Hook::PreRouting
    }

    /// True when a packet's lookup takes more than its tuple: a template's zone, or the
    /// host's answer to a packet it dropped. The fast path leaves such packets.
    #[inline(always)]
    fn lookup_takes_more_than_the_tuple(&self, hook: Hook) -> bool {
        self.templated || (hook == Hook::LocalOut && self.last_discarded.is_some())
    }

    /// True when the table holds `nf_conntrack_max` entries: a new one needs early drop.
    #[inline(always)]
    fn table_full(&self) -> bool {
        let max = self.settings.max as usize;
        max != 0 && self.table.len() >= max
    }

    /// The id of the next connection made (`conntrack -o id`).
    #[inline(always)]
    fn next_conn_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(0x9e37_79b9);
        self.next_id
    }

    /// True when events are recorded: someone listens, and the sysctl lets them.
    fn wants_events(&self) -> bool {
        self.record_events && self.settings.events != 0
    }

    fn emit(
        &mut self,
        now: u64,
        kind: EventKind,
        (conn, reply): (Conn, Tuple),
        extras: Extras,
        bits: u16,
    ) {
        // `CT --ctevents` is kept on the connection but, as on the kernels checked (6.18 with
        // `conntrack -E` listening), it does not hold back what the listener sees.
        if self.wants_events() {
            self.events.push(Event {
                time: now,
                kind,
                conn,
                reply,
                extras,
                bits,
            });
        }
    }

    /// `nf_conntrack_in`: finds or creates the packet's connection and runs its tracker.
    pub fn conntrack_in(&mut self, d: &Datagram<'_>, hook: Hook, now: u64) -> InResult {
        self.conntrack_in_with(d, hook, now, None)
    }

    /// `nf_conntrack_in` for a packet a raw-table `CT` rule gave a template: its zone for the
    /// lookup, and zone, helper and event mask for a new connection.
    pub fn conntrack_in_with(
        &mut self,
        d: &Datagram<'_>,
        hook: Hook,
        now: u64,
        tmpl: Option<&Template>,
    ) -> InResult {
        self.conntrack_in_hinted(d, hook, now, tmpl, None)
    }

    /// [`Conntrack::conntrack_in_with`], given the tuple and hash a batch's first pass made
    /// of this datagram, if any.
    // Inlined into both callers: one call shared by the one-by-one path and a batch's last
    // stage cost each of them the hint's test and its registers (callgrind: 11 to 16
    // instructions a packet on the hot flow, 24 to 31 on a batched lookup).
    #[inline(always)]
    fn conntrack_in_hinted(
        &mut self,
        d: &Datagram<'_>,
        hook: Hook,
        now: u64,
        tmpl: Option<&Template>,
        hint: Option<&Hint>,
    ) -> InResult {
        self.pending = None;
        // Most packets have no template: the default is stored again only after one had.
        match tmpl {
            Some(t) => {
                self.template = *t;
                self.templated = true;
            }
            None if self.templated => {
                self.template = Template::default();
                self.templated = false;
            }
            None => {}
        }
        if d.fragment.is_some() {
            // Fragments are reassembled before conntrack; one that reaches here could not be.
            self.stats.invalid += 1;
            return InResult::no_ct(PacketState::Invalid, Some("fragment"));
        }
        if d.proto == 59 && d.family == Family::V6 {
            self.stats.invalid += 1;
            return InResult::no_ct(PacketState::Invalid, Some("no transport header"));
        }
        let verify = self.verifies_checksum(hook);
        if d.is_icmp() {
            if let Some(r) = self.icmp_error(d, hook, verify) {
                return r;
            }
        }
        // A batch's first pass made this packet's tuple already.
        let tuple = match hint {
            Some(h) => Ok(h.tuple),
            None => Tuple::from_datagram(d),
        };
        let tuple = match tuple {
            Ok(t) => t,
            Err(_) => {
                self.stats.invalid += 1;
                return InResult::no_ct(PacketState::Invalid, Some("short header"));
            }
        };
        if hook == Hook::LocalOut && self.last_discarded.and_then(|t| t.invert()) == Some(tuple) {
            // The host answers a packet it dropped (REJECT's TCP reset): the kernel attached
            // that packet's unconfirmed connection to the answer, RELATED, never confirmed.
            return InResult::no_ct(PacketState::Tracked(CtInfo::RelatedReply), None);
        }
        if let Some(reason) = self.l4_error(d, verify) {
            self.stats.invalid += 1;
            return InResult::no_ct(PacketState::Invalid, Some(reason));
        }
        // A hash from the batch's first pass is of this tuple, in zone 0.
        let zone = self.template.zone;
        let hash = match hint {
            Some(h) if zone == 0 => {
                debug_assert_eq!(
                    h.hash,
                    self.table.hash(&tuple, 0),
                    "a batch's hash of its tuple differs from the table's"
                );
                h.hash
            }
            _ => self.table.hash(&tuple, zone),
        };
        self.resolve(d, tuple, now, true, hash)
    }

    /// The packet's connection found or made, and its tracker run; `hash` is the tuple's
    /// in the template's zone.
    fn resolve(
        &mut self,
        d: &Datagram<'_>,
        tuple: Tuple,
        now: u64,
        may_repeat: bool,
        hash: u32,
    ) -> InResult {
        let zone = self.template.zone;
        let found = self.table.find_hashed(&tuple, zone, hash);
        let (r, dir, ctinfo) = match found {
            Some((idx, dir)) => (
                CtRef::Confirmed(idx),
                dir,
                ctinfo_of(self.table.get(idx), dir),
            ),
            None => {
                let Some(reply) = tuple.invert() else {
                    self.stats.invalid += 1;
                    return InResult::no_ct(PacketState::Invalid, Some("no reply tuple"));
                };
                if let Some(reason) = self.make_room(&tuple, now) {
                    self.stats.drop += 1;
                    return InResult {
                        state: PacketState::Invalid,
                        ct: None,
                        drop: Some(reason),
                        invalid: None,
                    };
                }
                let id = self.next_conn_id();
                self.helped |= self.template.helper.is_some();
                let conn = Conn {
                    original: tuple,
                    status: 0,
                    deadline: 0,
                    mark: 0,
                    zone,
                    proto: proto::initial_state(d.proto, d.is_icmp(), now, &self.settings),
                    id,
                    events: 0,
                    helper: self.template.helper,
                    rare: Conn::NO_RARE,
                    extras: Conn::NO_EXTRAS,
                };
                let rare = Rare {
                    event_mask: self.template.events.unwrap_or(u16::MAX),
                    timeout_policy: self.template.timeout.and_then(|name| {
                        let i = self.timeout_policies.iter().position(|p| {
                            p.name == name && crate::timeout::applies(p, d.family, d.proto)
                        })?;
                        u8::try_from(i).ok()
                    }),
                    ..Rare::default()
                };
                self.pending = Some(Pending {
                    conn,
                    reply,
                    rare,
                    extras: Extras {
                        start: now,
                        ..Extras::default()
                    },
                    hash,
                });
                // A connection a helper announced is RELATED to its master.
                self.expectations.retain(|e| e.deadline > now);
                match self
                    .expectations
                    .iter()
                    .position(|e| e.matches(&tuple, zone))
                {
                    Some(i) => {
                        let e = self.expectations.remove(i);
                        let p = self.pending.as_mut().expect("just set");
                        p.conn.status |= ips::EXPECTED;
                        p.rare.master_helper = Some(e.helper);
                        if let Some(f) = e.follow_master {
                            self.follow_master(&f);
                        }
                        (CtRef::Unconfirmed, 0, CtInfo::Related)
                    }
                    None => (CtRef::Unconfirmed, 0, CtInfo::New),
                }
            }
        };

        // Only what the tracker reads is taken from the entry, not a copy of all of it.
        let (status, deadline, icmp_type, rare, mut proto_state) = {
            let c = self.conn(r).expect("connection just resolved");
            (
                c.status,
                c.deadline,
                c.original.icmp_type(),
                c.rare,
                c.proto,
            )
        };
        // Most connections have no rare values: the pending one's are beside it, a confirmed
        // one's are looked up only if it names a place.
        let (policy, helper_data) = match (r, rare) {
            (CtRef::Confirmed(_), Conn::NO_RARE) => (None, Rare::NO_HELPER_DATA),
            _ => self.rare(r).map_or((None, Rare::NO_HELPER_DATA), |x| {
                (x.timeout_policy, x.helper_data)
            }),
        };
        let has = |bit: u32| status & bit != 0;
        let confirmed = has(ips::CONFIRMED);
        let mut assure = false;
        let mut state_changed = false;
        let mut shrink = None;
        let verdict = match proto_state {
            ProtoState::Tcp(ref mut t) => {
                let seg = TcpView::new(d.l4()).expect("checked by l4_error");
                if !confirmed {
                    if let Err(reason) = tcp::new(t, &seg, self.policy_settings(policy)) {
                        self.pending = None;
                        self.stats.invalid += 1;
                        return InResult::no_ct(PacketState::Invalid, Some(reason));
                    }
                }
                let st = tcp::ConnStatus {
                    seen_reply: has(ips::SEEN_REPLY),
                    assured: has(ips::ASSURED),
                    fixed_timeout: has(ips::FIXED_TIMEOUT),
                    expires_in: if confirmed {
                        deadline.saturating_sub(now)
                    } else {
                        0
                    },
                    peer_seqadj: self
                        .helper_data
                        .get(helper_data)
                        .map_or_else(Default::default, |h| h.seqadj[1 - dir]),
                };
                let out = tcp::packet(t, dir, &seg, st, self.policy_settings(policy));
                assure = out.assure;
                state_changed = out.state_changed;
                shrink = out.shrink_timeout;
                out.verdict
            }
            ProtoState::Udp(ref u) => {
                let (v, a) = udp::packet(
                    u,
                    has(ips::SEEN_REPLY),
                    has(ips::ASSURED),
                    now,
                    udp::Timeouts::udp(self.policy_settings(policy)),
                );
                assure = a;
                v
            }
            ProtoState::Gre(ref u) => {
                let (v, a) = udp::packet(
                    u,
                    has(ips::SEEN_REPLY),
                    has(ips::ASSURED),
                    now,
                    udp::Timeouts::gre(self.policy_settings(policy)),
                );
                assure = a;
                v
            }
            ProtoState::Icmp => {
                icmp::packet(d.family, icmp_type, confirmed, self.policy_settings(policy))
            }
            ProtoState::Generic => proto::generic::packet(self.policy_settings(policy)),
        };

        if self.settings.acct && matches!(verdict, Verdict::Accept { .. } | Verdict::Kill) {
            if let Some(x) = self.extras_mut(r) {
                x.counters[dir].packets += 1;
                x.counters[dir].bytes += u64::from(d.len());
            }
        }
        let c = self.conn_mut(r).expect("connection present");
        // Only TCP's state changes with a packet (the match above binds the others' state
        // read-only), so the entry's state is not stored back whole for every packet.
        if let (ProtoState::Tcp(entry), ProtoState::Tcp(changed)) = (&mut c.proto, &proto_state) {
            *entry = *changed;
        }
        if state_changed {
            c.events |= ipct::PROTOINFO;
        }
        if let Some(t) = shrink {
            c.deadline = now + t;
        }
        match verdict {
            Verdict::Invalid(reason) => {
                if r == CtRef::Unconfirmed {
                    self.pending = None;
                }
                self.stats.invalid += 1;
                return InResult::no_ct(PacketState::Invalid, Some(reason));
            }
            Verdict::Repeat if may_repeat => {
                if let CtRef::Confirmed(idx) = r {
                    self.destroy(idx, now);
                }
                return self.resolve(d, tuple, now, false, hash);
            }
            Verdict::Repeat => {
                self.stats.invalid += 1;
                return InResult::no_ct(PacketState::Invalid, Some("reopen failed"));
            }
            Verdict::Accept { timeout } => {
                if !c.has(ips::FIXED_TIMEOUT) {
                    c.deadline = if c.confirmed() {
                        now + timeout
                    } else {
                        timeout
                    };
                }
            }
            Verdict::AcceptNoRefresh | Verdict::Kill => {}
        }
        if assure && !c.assured() {
            c.status |= ips::ASSURED;
            c.events |= ipct::ASSURED;
        }
        if let (Verdict::Kill, CtRef::Confirmed(idx)) = (verdict, r) {
            // Killed by the tracker before the reply bit is set, as in the kernel.
            self.destroy(idx, now);
        } else {
            if dir == 1 && !c.seen_reply() {
                c.status |= ips::SEEN_REPLY;
                c.events |= ipct::REPLY;
            }
            // An entry's timer is never set later than its deadline. A deadline that moved
            // later is found when the timer fires; only one that came nearer moves it.
            let refreshed = c.deadline;
            if let CtRef::Confirmed(idx) = r {
                debug_assert!(
                    self.timers.at(idx).is_some_and(|t| t <= deadline),
                    "a live entry without its timer, or a timer past its deadline"
                );
                if refreshed < deadline {
                    self.timers.set_at_most(idx, refreshed);
                }
            }
        }
        InResult {
            state: PacketState::Tracked(ctinfo),
            ct: Some(r),
            drop: None,
            invalid: None,
        }
    }

    /// Makes room for one more entry: early drop, or the reason to drop the packet.
    fn make_room(&mut self, tuple: &Tuple, now: u64) -> Option<&'static str> {
        if !self.table_full() {
            return None;
        }
        let start = self.table.bucket_of(tuple, 0);
        let buckets = self.table.buckets();
        let mut victims = std::mem::take(&mut self.scratch);
        for i in 0..EVICTION_RANGE {
            victims.clear();
            self.table
                .bucket_entries((start + i) % buckets, &mut victims);
            let mut drops = 0;
            for &idx in &victims {
                if self.table.is_live(idx) && !self.table.get(idx).assured() {
                    self.destroy(idx, now);
                    drops += 1;
                }
            }
            if drops > 0 {
                self.stats.early_drop += drops;
                self.scratch = victims;
                return None;
            }
        }
        self.scratch = victims;
        self.ratelimited_log(now, TABLE_FULL_LOG);
        Some("table full")
    }

    fn ratelimited_log(&mut self, now: u64, msg: &str) {
        let fresh = self
            .last_full_log
            .is_none_or(|t| now.saturating_sub(t) >= RATELIMIT_NS);
        if fresh {
            self.last_full_log = Some(now);
            self.full_log_burst = 0;
        }
        if self.full_log_burst < RATELIMIT_BURST {
            self.full_log_burst += 1;
            self.log.push((now, msg.to_string()));
        }
    }

    /// `nf_conntrack_confirm`: a surviving packet's new connection enters the table, and the
    /// events its packet caused are delivered.
    // Always inlined: with the fast path's callers beside it, the compiler kept it out of
    // line, a call for every packet of the hottest loops.
    #[inline(always)]
    pub fn confirm(&mut self, r: &InResult, now: u64) {
        match r.ct {
            Some(CtRef::Unconfirmed) => self.confirm_new(now),
            Some(CtRef::Confirmed(idx)) => {
                // Most packets are of a confirmed connection and make no event: this is
                // inlined into the caller, the new connection's work is not.
                let Some(c) = self.table.get_live_mut(idx) else {
                    return;
                };
                let ev = std::mem::take(&mut c.events);
                // Only state and status changes make an UPDATE; most packets make none, and
                // the entry is copied only for one.
                if ev & UPDATE_EVENTS != 0 {
                    self.emit_update(idx, now, ev);
                }
            }
            None => {}
        }
    }

    /// Confirmation of the pending connection: it enters the table.
    #[inline(never)]
    fn confirm_new(&mut self, now: u64) {
        // Worked on where it is, not moved out: a move of the pending connection (some 300
        // bytes) and its copies into the table cost a store-forwarding stall.
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        let c = &mut p.conn;
        c.status |= ips::CONFIRMED;
        c.deadline += now;
        let bits = c.events | ipct::NEW;
        c.events = 0;
        if self.settings.acct || self.settings.timestamp {
            c.extras = self.extras.add(p.extras);
        }
        let idx = self.table.insert_hashed(&p.conn, &p.rare, &p.reply, p.hash);
        self.created += 1;
        self.timers.set_at_most(idx, p.conn.deadline);
        if self.table.len() > self.peak.0 {
            self.peak = (self.table.len(), now);
        }
        if self.wants_events() {
            let p = self.pending.expect("confirmed above");
            self.emit(now, EventKind::New, (p.conn, p.reply), p.extras, bits);
        }
        self.pending = None;
    }

    /// The UPDATE event of a confirmed connection whose state or status changed.
    #[inline(never)]
    pub(super) fn emit_update(&mut self, idx: u32, now: u64, ev: u16) {
        let snapshot = (*self.table.get(idx), self.table.reply(idx));
        let extras = self.extras(CtRef::Confirmed(idx));
        self.emit(now, EventKind::Update, snapshot, extras, ev);
    }

    /// Sets up the NAT binding of the new connection (`nf_nat_setup_info`): its reply tuple
    /// becomes the inverse of the translated original tuple. A binding is made once per
    /// direction of translation; later calls for the same one do nothing.
    pub fn nat_setup(&mut self, r: CtRef, m: crate::nat::Manip, range: &crate::nat::NatRange) {
        let CtRef::Unconfirmed = r else { return };
        let Some(Pending { conn: c, reply, .. }) = self.pending else {
            return;
        };
        let done = match m {
            crate::nat::Manip::Src => c.has(ips::SRC_NAT_DONE),
            crate::nat::Manip::Dst => c.has(ips::DST_NAT_DONE),
        };
        if done {
            return;
        }
        // The tuple as translated so far: the inverse of the reply tuple.
        let Some(current) = reply.invert() else {
            return;
        };
        let table = &self.table;
        let zone = c.zone;
        let affinity = self.affinity;
        // A reply tuple that would deal to another worker counts as taken there.
        let new = crate::nat::unique_tuple(&current, m, range, &mut self.rng, &|rep| {
            table.find(rep, zone).is_some()
                || affinity.is_some_and(|(dealer, me)| dealer.worker_of_tuple(rep) != me)
        });
        let p = self.pending.as_mut().expect("pending checked");
        if new != current {
            if let Some(rep) = new.invert() {
                p.reply = rep;
                p.conn.status |= crate::nat::status_bit(m);
            }
        }
        p.conn.status |= match m {
            crate::nat::Manip::Src => ips::SRC_NAT_DONE,
            crate::nat::Manip::Dst => ips::DST_NAT_DONE,
        };
    }

    /// The timeout policies `CT --timeout` may name. A rule naming one that is not here
    /// leaves its connections on the sysctls; replay refuses such rules beforehand.
    pub fn set_timeout_policies(&mut self, policies: Vec<crate::timeout::TimeoutPolicy>) {
        self.timeout_policies = policies;
    }

    /// The settings a connection's tracker uses: its timeout policy's, or the sysctls.
    /// The timeouts of a timeout policy (`CT --timeout`), or the sysctls without one.
    fn policy_settings(&self, policy: Option<u8>) -> &Settings {
        policy
            .and_then(|i| self.timeout_policies.get(usize::from(i)))
            .map_or(&self.settings, |p| &p.settings)
    }

    /// `nf_nat_follow_master`: the new expected connection is translated as its master
    /// says. Both bindings are made, so the nat table is not consulted for it.
    fn follow_master(&mut self, f: &crate::expect::FollowMaster) {
        use crate::nat::{Manip, NatRange};
        let single = |a| NatRange {
            addrs: Some((a, a)),
            ports: None,
            random: false,
            persistent: false,
        };
        self.nat_setup(CtRef::Unconfirmed, Manip::Src, &single(f.src));
        self.nat_setup(
            CtRef::Unconfirmed,
            Manip::Dst,
            &NatRange {
                ports: Some((f.dst_port, f.dst_port)),
                ..single(f.dst)
            },
        );
    }

    /// `nf_ct_expect_related`: registers an expectation. The master's earlier one is
    /// replaced (every helper here expects one at a time); the same connection expected by
    /// another master is busy; a full expectation table refuses it and logs.
    fn expect_related(&mut self, e: crate::expect::Expectation, now: u64) -> Result<(), Expect> {
        self.expectations.retain(|x| x.deadline > now);
        if self
            .expectations
            .iter()
            .any(|x| x.same_tuple(&e) && (x.master, x.zone) != (e.master, e.zone))
        {
            return Err(Expect::Busy);
        }
        self.expectations
            .retain(|x| (x.master, x.zone) != (e.master, e.zone));
        if self.expectations.len() >= self.settings.expect_max as usize {
            self.ratelimited_log(now, EXPECT_FULL_LOG);
            return Err(Expect::Full);
        }
        self.expectations.push(e);
        Ok(())
    }

    /// True once some connection was given a helper: before that no connection has one,
    /// nor any sequence adjustment a helper's rewrite leaves.
    pub fn any_helper(&self) -> bool {
        self.helped
    }

    /// Runs the connection's helper on a packet that made it through (helpers run at
    /// confirmation), as `nf_confirm` does: an FTP command or answer announcing a data
    /// connection makes an expectation, and under NAT is rewritten; a TFTP request expects
    /// its answer. What the helper decided is for the caller to apply to the leaving packet.
    #[inline]
    pub fn help(&mut self, r: &InResult, d: &Datagram<'_>, now: u64) -> Help {
        // Until some connection has a helper, this is all a packet pays.
        if !self.helped {
            return Help::Accept;
        }
        self.help_connection(r, d, now)
    }

    /// [`Conntrack::help`] once some connection has a helper.
    #[inline(never)]
    fn help_connection(&mut self, r: &InResult, d: &Datagram<'_>, now: u64) -> Help {
        let (Some(ct), PacketState::Tracked(info)) = (r.ct, r.state) else {
            return Help::Accept;
        };
        // Most connections have no helper: look before copying the entry.
        let c = match self.conn(ct) {
            Some(c) if c.helper.is_some() => *c,
            _ => return Help::Accept,
        };
        let dir = usize::from(info.is_reply());
        match (c.helper, d.proto) {
            (Some(h), ctrack_packet::proto::TCP) if h.as_str() == "ftp" => {
                // The FTP helper reads commands only once the control connection is up.
                if !matches!(info, CtInfo::Established | CtInfo::EstablishedReply) {
                    return Help::Accept;
                }
                let Some(seg) = TcpView::new(d.l4()) else {
                    return Help::Accept;
                };
                self.help_ftp(ct, &c, dir, seg.seq(), &d.l4()[seg.header_len()..], now)
            }
            (Some(h), ctrack_packet::proto::UDP) if h.as_str() == "tftp" => {
                // The TFTP helper reads every request, whatever the connection's state.
                let payload = d.l4().get(8..).unwrap_or(&[]);
                let Some(reply) = self.reply(ct) else {
                    return Help::Accept;
                };
                match crate::expect::tftp_expectation(&c, reply, dir, payload, now) {
                    Some(e) => match self.expect_related(e, now) {
                        Ok(()) => Help::Accept,
                        Err(_) => Help::Drop("cannot add expectation"),
                    },
                    None => Help::Accept,
                }
            }
            _ => Help::Accept,
        }
    }

    /// The FTP helper and, when the control connection is translated, its NAT half.
    fn help_ftp(
        &mut self,
        ct: CtRef,
        c: &Conn,
        dir: usize,
        seq: u32,
        payload: &[u8],
        now: u64,
    ) -> Help {
        use crate::ftp::{self, Parse};
        let Some(&last) = payload.last() else {
            return Help::Accept;
        };
        let next_line = (last == b'\n').then(|| seq.wrapping_add(payload.len() as u32));
        let Some(tuples) = self.tuples(ct) else {
            return Help::Accept;
        };
        let verdict = 'parse: {
            let lines = self.helper_state(ct).map(|h| h.ftp);
            if !lines.unwrap_or_default().starts_line(dir, seq) {
                break 'parse Help::Accept;
            }
            let family = tuples[0].family;
            let a = match ftp::parse(payload, dir == 1, family) {
                Parse::Nothing => break 'parse Help::Accept,
                // The line number is not recorded: the command is not over.
                Parse::Partial(reason) => return Help::Drop(reason),
                Parse::Found(a) => a,
            };
            // An address other than the sender's is not expected (the helper's `loose=0`).
            if a.addr.is_some_and(|x| x != tuples[dir].src) {
                break 'parse Help::Accept;
            }
            let peer = tuples[1 - dir];
            let mut e = crate::expect::Expectation {
                tuple: Tuple {
                    src: peer.src,
                    dst: peer.dst,
                    src_port: 0,
                    dst_port: a.port,
                    proto: ctrack_packet::proto::TCP,
                    family,
                },
                master: tuples[0],
                zone: c.zone,
                deadline: now + crate::expect::EXPECT_TIMEOUT_NS,
                helper: c.helper.expect("an FTP connection has its helper"),
                follow_master: None,
            };
            if !c.is_translated() {
                break 'parse match self.expect_related(e, now) {
                    Ok(()) => Help::Accept,
                    Err(_) => Help::Drop("cannot add expectation"),
                };
            }
            // nf_nat_ftp: the data connection comes to where this packet goes, and is
            // translated as the master; the announced port is kept if it can be.
            e.follow_master = Some(crate::expect::FollowMaster {
                src: tuples[dir].dst,
                dst: tuples[dir].src,
                dst_port: a.port,
            });
            let mut port = a.port;
            loop {
                e.tuple.dst_port = port;
                match self.expect_related(e, now) {
                    Ok(()) => break,
                    Err(Expect::Busy) if port < u16::MAX => port += 1,
                    Err(_) => break 'parse Help::Drop("all ports in use"),
                }
            }
            let text = ftp::nat_text(a.kind, family, peer.dst, port);
            let grown = text.len() as i32 - a.len as i32;
            if grown != 0 {
                if let Some(conn) = self.conn_mut(ct) {
                    conn.status |= ips::SEQ_ADJUST;
                }
                if let Some(h) = self.helper_data_mut(ct) {
                    h.seqadj[dir].record(seq, grown);
                }
            }
            Help::Mangle(Mangle {
                at: a.at,
                len: a.len,
                text,
            })
        };
        if let (Some(n), Some(h)) = (next_line, self.helper_data_mut(ct)) {
            h.ftp.ended_line(dir, n);
        }
        verdict
    }

    /// The helper state of a confirmed connection, made when it has none yet. The helpers
    /// that keep state run only on established connections, which are confirmed.
    fn helper_data_mut(&mut self, ct: CtRef) -> Option<&mut HelperData> {
        let CtRef::Confirmed(idx) = ct else {
            return None;
        };
        if !self.table.is_live(idx) {
            return None;
        }
        let mut at = self
            .table
            .rare(idx)
            .map_or(Rare::NO_HELPER_DATA, |r| r.helper_data);
        if at == Rare::NO_HELPER_DATA {
            at = self.helper_data.add(HelperData::default());
            self.table.rare_mut(idx).helper_data = at;
        }
        self.helper_data.get_mut(at)
    }

    /// The sequence corrections of both directions of a connection (zero without a
    /// rewrite that changed a length).
    pub fn seqadj(&self, ct: CtRef) -> [SeqAdj; 2] {
        self.helper_state(ct)
            .map_or_else(Default::default, |h| h.seqadj)
    }

    /// The helper state of a connection, if it has any.
    fn helper_state(&self, ct: CtRef) -> Option<&HelperData> {
        self.helper_data.get(self.rare(ct)?.helper_data)
    }

    /// The expectations waiting at `now`.
    pub fn expectations(&self, now: u64) -> impl Iterator<Item = &crate::expect::Expectation> + '_ {
        self.expectations.iter().filter(move |e| e.deadline > now)
    }

    /// The packet was dropped before confirmation: its new connection is forgotten.
    pub fn discard(&mut self, r: &InResult) {
        if r.ct == Some(CtRef::Unconfirmed) {
            self.last_discarded = self.pending.take().map(|p| p.conn.original);
        }
    }

    /// ICMP error handling (`nf_conntrack_icmpv4_error`/`icmpv6_error`). `None` when the
    /// packet is a query or reply to track normally.
    fn icmp_error(&mut self, d: &Datagram<'_>, hook: Hook, verify: bool) -> Option<InResult> {
        let l4 = d.l4();
        let error = |s: &mut Stats, why| {
            s.error += 1;
            Some(InResult::no_ct(PacketState::Invalid, Some(why)))
        };
        if l4.len() < 8 {
            return error(&mut self.stats, "short packet");
        }
        if verify && !icmp_checksum_ok(d) {
            return error(&mut self.stats, "bad checksum");
        }
        let ty = l4[0];
        match d.family {
            Family::V4 if ty > icmp::NR_ICMP_TYPES => {
                return error(&mut self.stats, "invalid icmp type")
            }
            Family::V6 if icmp::is_untracked_v6(ty) => {
                return Some(InResult::no_ct(PacketState::Untracked, None))
            }
            _ => {}
        }
        if !icmp::is_error(d.family, ty) {
            return None;
        }
        let quoted = match Tuple::from_quoted(d.family, &l4[8..]) {
            Ok(t) => t,
            Err(TupleError::ShortHeader | TupleError::NoInverse) => {
                return error(&mut self.stats, "failed to get tuple")
            }
        };
        let Some(inner) = quoted.invert() else {
            return error(&mut self.stats, "no reply tuple");
        };
        let Some((idx, dir)) = self.table.find(&inner, self.template.zone) else {
            if hook == Hook::LocalOut && self.last_discarded == Some(quoted) {
                // The host answers a packet it dropped (TTL exceeded, say): the kernel
                // attached that packet's unconfirmed connection to the error, which is
                // RELATED but never confirmed.
                return Some(InResult::no_ct(
                    PacketState::Tracked(CtInfo::RelatedReply),
                    None,
                ));
            }
            return error(&mut self.stats, "no matching connection");
        };
        if self.table.tuples(idx)[dir].dst != d.dst {
            return error(&mut self.stats, "outer daddr differs from inner");
        }
        let info = if dir == 1 {
            CtInfo::RelatedReply
        } else {
            CtInfo::Related
        };
        Some(InResult {
            state: PacketState::Tracked(info),
            ct: Some(CtRef::Confirmed(idx)),
            drop: None,
            invalid: None,
        })
    }

    /// Header and checksum checks of TCP and UDP (`tcp_error`, `udp_error`).
    fn l4_error(&self, d: &Datagram<'_>, verify: bool) -> Option<&'static str> {
        let l4 = d.l4();
        match d.proto {
            p::TCP => {
                let Some(seg) = TcpView::new(l4) else {
                    return Some("truncated packet");
                };
                if verify && !transport_checksum_ok(d) {
                    return Some("bad checksum");
                }
                tcp::error(seg.flags())
            }
            p::UDP | p::UDPLITE => {
                if l4.len() < 8 {
                    return Some("truncated header");
                }
                let ulen = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
                if d.proto == p::UDP && (ulen > l4.len() || ulen < 8) {
                    return Some("truncated/malformed packet");
                }
                let csum = u16::from_be_bytes([l4[6], l4[7]]);
                let skip = d.proto == p::UDP && d.family == Family::V4 && csum == 0;
                if verify && !skip && !transport_checksum_ok(d) {
                    return Some("bad checksum");
                }
                None
            }
            _ => None,
        }
    }
}

/// Where a datagram's bytes are and how many, to know the [`Prefetched`] made of it.
/// What a packet of a connection in the table is, in direction `dir` (1 for the reply).
#[inline(always)]
fn ctinfo_of(c: &Conn, dir: usize) -> CtInfo {
    if dir == 1 {
        CtInfo::EstablishedReply
    } else if c.seen_reply() {
        CtInfo::Established
    } else if c.has(ips::EXPECTED) {
        CtInfo::Related
    } else {
        CtInfo::New
    }
}

fn bytes_of(d: &Datagram<'_>) -> (usize, usize) {
    place_of_bytes(d.bytes)
}

/// Where bytes are and how many: what a hint made of a datagram's bytes is checked by.
fn place_of_bytes(bytes: &[u8]) -> (usize, usize) {
    (bytes.as_ptr() as usize, bytes.len())
}

fn transport_checksum_ok(d: &Datagram<'_>) -> bool {
    let l4 = d.l4();
    if d.proto == p::UDP {
        let ulen = usize::from(u16::from_be_bytes([l4[4], l4[5]])).min(l4.len());
        return checksum::verify(d.family, d.src, d.dst, d.proto, &l4[..ulen], true);
    }
    if d.proto == p::UDPLITE {
        // Coverage 0 means the whole datagram.
        let cov = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
        let cov = if cov == 0 {
            l4.len()
        } else {
            cov.min(l4.len())
        };
        let acc = checksum::pseudo_header(d.family, d.src, d.dst, d.proto, l4.len() as u32);
        return checksum::finish(checksum::sum(&l4[..cov], acc)) == 0;
    }
    checksum::verify(d.family, d.src, d.dst, d.proto, l4, true)
}

fn icmp_checksum_ok(d: &Datagram<'_>) -> bool {
    let with_pseudo = d.family == Family::V6;
    checksum::verify(d.family, d.src, d.dst, d.proto, d.l4(), with_pseudo)
}
