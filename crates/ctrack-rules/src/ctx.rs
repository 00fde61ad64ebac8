//! What rules see of a packet and its connection.

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
