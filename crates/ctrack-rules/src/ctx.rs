//! What rules see of a packet and its connection: the whole [`PacketCtx`], and the
//! [`LazyCtx`] a chain walk starts from, which makes the whole context only when a rule
//! needs it.

use ctrack_conntrack::{Conn, PacketState};
use ctrack_packet::{Addr, Datagram, Family};

/// Address types of `-m addrtype` (`RTN_*` bits).
pub mod addrtype {
    /// UNSPEC.
    pub const UNSPEC: u16 = 1 << 0;
    /// UNICAST.
    pub const UNICAST: u16 = 1 << 1;
    /// LOCAL.
    pub const LOCAL: u16 = 1 << 2;
    /// BROADCAST.
    pub const BROADCAST: u16 = 1 << 3;
    /// ANYCAST.
    pub const ANYCAST: u16 = 1 << 4;
    /// MULTICAST.
    pub const MULTICAST: u16 = 1 << 5;
    /// The names, in the order iptables prints them.
    pub const NAMES: [(&str, u16); 12] = [
        ("UNSPEC", 1 << 0),
        ("UNICAST", 1 << 1),
        ("LOCAL", 1 << 2),
        ("BROADCAST", 1 << 3),
        ("ANYCAST", 1 << 4),
        ("MULTICAST", 1 << 5),
        ("BLACKHOLE", 1 << 6),
        ("UNREACHABLE", 1 << 7),
        ("PROHIBIT", 1 << 8),
        ("THROW", 1 << 9),
        ("NAT", 1 << 10),
        ("XRESOLVE", 1 << 11),
    ];
}

/// The host facts rules need: which addresses are local.
pub trait HostInfo {
    /// The address type of `a` (an `addrtype::*` bit).
    fn addr_type(&self, a: Addr, family: Family) -> u16;
}

/// A packet as one rule evaluation sees it.
pub struct PacketCtx<'a, 'b> {
    /// The datagram.
    pub packet: &'a Datagram<'b>,
    /// Input interface name (empty when none).
    pub iif: &'a str,
    /// Output interface name (empty when none).
    pub oif: &'a str,
    /// Conntrack state.
    pub state: PacketState,
    /// The connection, if tracked.
    pub conn: Option<&'a Conn>,
    /// The tracker the packet went through: what the connection keeps apart (its reply
    /// tuple) is looked up there by the rules that need it, and `-m connlimit` looks up the
    /// connections it counted.
    pub tracker: Option<&'a ctrack_conntrack::Conntrack>,
    /// The packet's connection in the tracker, if tracked.
    pub ct: Option<ctrack_conntrack::CtRef>,
    /// The connection's counters, for `-m connbytes` (zero without accounting).
    pub counters: [ctrack_conntrack::conn::Counter; 2],
    /// The packet's mark (nfmark); MARK and CONNMARK change it as rules run.
    pub mark: u32,
    /// The connection's mark; CONNMARK changes it as rules run.
    pub ct_mark: u32,
    /// Packet time (ns).
    pub now: u64,
    /// Host facts.
    pub host: &'a dyn HostInfo,
    /// The link-layer header the packet arrived with (destination, source, EtherType), for
    /// LOG's `MAC=` and `-m mac`.
    pub mac_header: Option<[u8; 14]>,
}

/// A packet as a chain walk first sees it: what the rules' records and a state test need,
/// with the whole [`PacketCtx`] made only when a rule or a target needs more.
///
/// Most rules of most chains are told apart by their records (addresses and protocol) and
/// most packets are then decided by a state test (`--ctstate RELATED,ESTABLISHED`), so most
/// walks need neither the interfaces' names, nor the counters, nor the marks: making the
/// whole context for every packet at every chain cost more than the rules it walked.
pub struct LazyCtx<'m, 'a, 'b> {
    packet: &'a Datagram<'b>,
    state: PacketState,
    status: u32,
    /// A rule tested, or a target used, what may differ between the packets of one
    /// connection in one direction and state.
    varies: bool,
    made: Option<PacketCtx<'a, 'b>>,
    make: &'m mut dyn FnMut() -> PacketCtx<'a, 'b>,
}

impl<'m, 'a, 'b> LazyCtx<'m, 'a, 'b> {
    /// A packet in conntrack state `state`, whose connection's status is `status` (`IPS_*`
    /// bits; 0 without a connection); `make` makes its whole context, with the same packet,
    /// state and connection, when a walk first needs it.
    pub fn new(
        packet: &'a Datagram<'b>,
        state: PacketState,
        status: u32,
        make: &'m mut dyn FnMut() -> PacketCtx<'a, 'b>,
    ) -> Self {
        LazyCtx {
            packet,
            state,
            status,
            varies: false,
            made: None,
            make,
        }
    }

    /// The datagram.
    pub(crate) fn packet(&self) -> &'a Datagram<'b> {
        self.packet
    }

    /// The state bits `--state` tests, and with `nat` the SNAT and DNAT bits `--ctstate`
    /// adds: what [`crate::matches`] reads from the whole context, read without it.
    pub(crate) fn state_bits(&self, nat: bool) -> u16 {
        crate::matches::state_bits_of(self.state, self.status, nat)
    }

    /// The whole context, made now if no rule needed it before.
    pub(crate) fn get(&mut self) -> &mut PacketCtx<'a, 'b> {
        self.made.get_or_insert_with(&mut self.make)
    }

    /// Notes that the walk read, or changed, what may differ between the packets of one
    /// connection in one direction and state: the walk is not to be taken again.
    pub(crate) fn vary(&mut self) {
        self.varies = true;
    }

    /// True when the walk read, or changed, what may differ between the packets of one
    /// connection in one direction and state ([`LazyCtx::vary`]).
    pub(crate) fn varies(&self) -> bool {
        self.varies
    }

    /// The whole context if a walk made it (and so may have changed its marks).
    pub fn made(&self) -> Option<&PacketCtx<'a, 'b>> {
        self.made.as_ref()
    }
}

impl PacketCtx<'_, '_> {
    /// The connection's reply tuple.
    pub fn reply(&self) -> Option<ctrack_packet::Tuple> {
        self.tracker?.reply(self.ct?)
    }

    /// The connection's rare values (its master's helper, its timeout policy, …), if it
    /// has any.
    pub fn rare(&self) -> Option<&ctrack_conntrack::Rare> {
        self.tracker?.rare(self.ct?)
    }

    /// The connection table.
    pub fn table(&self) -> Option<&ctrack_conntrack::table::Table> {
        self.tracker.map(|t| t.table())
    }

    /// Family.
    pub fn family(&self) -> Family {
        self.packet.family
    }
    /// True for a fragment other than the first (no transport header).
    pub fn later_fragment(&self) -> bool {
        self.packet.fragment.is_some_and(|f| f.offset != 0)
    }
    /// Transport ports, if the packet has them.
    pub fn ports(&self) -> Option<(u16, u16)> {
        if self.later_fragment() {
            return None;
        }
        let l4 = self.packet.l4();
        let h = l4.get(..4)?;
        Some((
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[2], h[3]]),
        ))
    }
}
