//! Status bits, packet states and event bits, numbered as in the kernel's uapi headers.

/// `IPS_*` status bits of a connection (`enum ip_conntrack_status`).
pub mod ips {
    /// Expected connection (RELATED through a helper).
    pub const EXPECTED: u32 = 1 << 0;
    /// Packets seen in both directions.
    pub const SEEN_REPLY: u32 = 1 << 1;
    /// Assured: never early-dropped.
    pub const ASSURED: u32 = 1 << 2;
    /// In the table.
    pub const CONFIRMED: u32 = 1 << 3;
    /// Source NAT applied.
    pub const SRC_NAT: u32 = 1 << 4;
    /// Destination NAT applied.
    pub const DST_NAT: u32 = 1 << 5;
    /// Source NAT binding set up.
    pub const SRC_NAT_DONE: u32 = 1 << 7;
    /// Destination NAT binding set up.
    pub const DST_NAT_DONE: u32 = 1 << 8;
    /// Being destroyed.
    pub const DYING: u32 = 1 << 9;
    /// Timeout fixed by `CT --timeout` or ctnetlink.
    pub const FIXED_TIMEOUT: u32 = 1 << 10;
    /// TCP sequence numbers are adjusted after a helper changed a payload's length.
    pub const SEQ_ADJUST: u32 = 1 << 11;
}

/// Where a packet stands relative to its connection (`enum ip_conntrack_info`), with the
/// states iptables' `state`/`conntrack` matches see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtInfo {
    /// First packet of a connection not yet confirmed, original direction.
    New,
    /// Original direction of a connection that has seen a reply.
    Established,
    /// Reply direction.
    EstablishedReply,
    /// Related (ICMP error or expected connection), original direction.
    Related,
    /// Related, reply direction.
    RelatedReply,
}

impl CtInfo {
    /// True for the reply direction.
    pub fn is_reply(self) -> bool {
        matches!(self, CtInfo::EstablishedReply | CtInfo::RelatedReply)
    }
}

/// The state a packet has for the `state` and `conntrack` matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketState {
    /// No connection: the packet was INVALID.
    Invalid,
    /// Untracked (NOTRACK, or ICMPv6 neighbour discovery and MLD).
    Untracked,
    /// Tracked, with its ctinfo.
    Tracked(CtInfo),
}

impl PacketState {
    /// The name the `state` match uses.
    pub fn name(self) -> &'static str {
        match self {
            PacketState::Invalid => "INVALID",
            PacketState::Untracked => "UNTRACKED",
            PacketState::Tracked(CtInfo::New) => "NEW",
            PacketState::Tracked(CtInfo::Established | CtInfo::EstablishedReply) => "ESTABLISHED",
            PacketState::Tracked(CtInfo::Related | CtInfo::RelatedReply) => "RELATED",
        }
    }
}

/// `IPCT_*` event bits (`enum ip_conntrack_events`).
pub mod ipct {
    /// New conntrack.
    pub const NEW: u16 = 1 << 0;
    /// Related conntrack.
    pub const RELATED: u16 = 1 << 1;
    /// Destroyed conntrack.
    pub const DESTROY: u16 = 1 << 2;
    /// Connection has seen a reply.
    pub const REPLY: u16 = 1 << 3;
    /// Connection is assured.
    pub const ASSURED: u16 = 1 << 4;
    /// Protocol info changed (TCP state).
    pub const PROTOINFO: u16 = 1 << 5;
    /// Helper changed.
    pub const HELPER: u16 = 1 << 6;
    /// Mark changed.
    pub const MARK: u16 = 1 << 7;
}
