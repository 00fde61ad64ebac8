//! One connection: its original tuple (and where a translated reply tuple is kept), status,
//! timer, and the tracker's state.

use crate::proto::ProtoState;
use crate::status::ips;
use ctrack_packet::Tuple;
use serde::Serialize;

/// Packet and byte counters of one direction (`nf_conn_counter`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes, counted at the IP layer.
    pub bytes: u64,
}

/// A connection (`struct nf_conn`).
///
/// Only the original tuple is kept here. The reply tuple is the original's inverse unless NAT
/// changed it; a changed one is kept apart with the other values few connections have
/// ([`Rare`]), and the table and the tracker hand out both tuples (`Table::tuples`,
/// `Conntrack::tuples`). So every connection is 128 bytes, two cache lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// The original tuple.
    pub original: Tuple,
    /// `IPS_*` bits.
    pub status: u32,
    /// When the entry expires (packet time, ns). Before confirmation: the timeout itself.
    pub deadline: u64,
    /// `mark=`.
    pub mark: u32,
    /// `zone=`.
    pub zone: u16,
    /// The tracker's state.
    pub proto: ProtoState,
    /// The id `conntrack -o id` prints.
    pub id: u32,
    /// Events cached for delivery (`IPCT_*`).
    pub events: u16,
    /// The helper assigned by `CT --helper`.
    pub helper: Option<HelperName>,
    /// Where its [`Rare`] values are kept, for a connection that has any;
    /// [`Conn::NO_RARE`] for the others.
    pub rare: u32,
    /// Where its counters and start time are kept ([`Extras`]), for a connection made
    /// with `nf_conntrack_acct` or `nf_conntrack_timestamp` on; [`Conn::NO_EXTRAS`] for
    /// the others.
    pub extras: u32,
}

/// What few connections have, kept apart so that every connection does not carry it, as
/// the kernel's `nf_ct_ext` does: a connection whose values are all the default has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rare {
    /// For an expected (RELATED) connection: the helper of its master.
    pub master_helper: Option<HelperName>,
    /// The timeout policy `CT --timeout` gave it, as an index into the tracker's policies.
    pub timeout_policy: Option<u8>,
    /// Events this connection reports (`CT --ctevents`; all by default).
    pub event_mask: u16,
    /// Where its helper's state is kept ([`HelperData`]), for a connection whose helper
    /// has state; [`Rare::NO_HELPER_DATA`] for the others.
    pub helper_data: u32,
    /// Its reply tuple, when NAT made it other than the original's inverse: kept here at
    /// confirmation (`Conntrack::reply` gives any connection's, a pending one's too).
    pub nat_reply: Option<Tuple>,
}

impl Rare {
    /// [`Rare::helper_data`] of a connection without helper state.
    pub const NO_HELPER_DATA: u32 = u32::MAX;
}

impl Default for Rare {
    fn default() -> Self {
        Rare {
            master_helper: None,
            timeout_policy: None,
            event_mask: u16::MAX,
            helper_data: Rare::NO_HELPER_DATA,
            nat_reply: None,
        }
    }
}

/// What `nf_conntrack_acct=1` and `nf_conntrack_timestamp=1` add to a connection made
/// while they are on, as the kernel's acct and tstamp extensions: kept apart, so that the
/// connections of a table without them do not carry 40 bytes each for nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// Per-direction counters (`nf_conntrack_acct`).
    pub counters: [Counter; 2],
    /// When the first packet was seen, for `delta-time=` (`nf_conntrack_timestamp`).
    pub start: u64,
}

/// Values some connections have and most do not (helper state, counters), each kept at a
/// place a connection names, places reused once their connection is gone. In a slab, so
/// that a table of millions holds at most one chunk unused, not half its room.
pub(crate) struct ExtStore<T: Copy> {
    items: crate::huge::Slab<T>,
    free: Vec<u32>,
}

impl<T: Copy> Default for ExtStore<T> {
    fn default() -> Self {
        ExtStore {
            items: crate::huge::Slab::default(),
            free: Vec::new(),
        }
    }
}

impl<T: Copy> ExtStore<T> {
    /// Keeps a value; returns its place.
    pub(crate) fn add(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(at) => {
                self.items[at as usize] = value;
                at
            }
            None => {
                self.items.push(value);
                (self.items.len() - 1) as u32
            }
        }
    }

    /// The value at a place (none for a connection's "no place", `u32::MAX`).
    pub(crate) fn get(&self, at: u32) -> Option<&T> {
        self.items.get(at as usize)
    }

    /// The value at a place, mutably.
    pub(crate) fn get_mut(&mut self, at: u32) -> Option<&mut T> {
        self.items.get_mut(at as usize)
    }

    /// Gives a place back, returning what it held (the place keeps it until reused).
    pub(crate) fn remove(&mut self, at: u32) -> Option<T> {
        let v = *self.items.get(at as usize)?;
        self.free.push(at);
        Some(v)
    }
}

/// What a helper keeps for its connection: the FTP helper's record of where lines start,
/// and the sequence correction of each direction after a rewrite changed a payload's
/// length (`nf_conn_seqadj`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelperData {
    /// The FTP helper's record of where lines start.
    pub ftp: crate::ftp::FtpLines,
    /// Sequence corrections per direction.
    pub seqadj: [crate::seqadj::SeqAdj; 2],
}

/// A short name kept inline so connections stay `Copy`: `N` bytes with the kernel's NUL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlineName<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

/// The kernel's connection tracking helpers and the protocol each works on: the only
/// names `CT --helper` loads (xt_CT looks the helper up and refuses others).
pub const HELPERS: [(&str, u8); 12] = [
    ("ftp", 6),
    ("tftp", 17),
    ("sip", 17),
    ("sip", 6),
    ("irc", 6),
    ("h323", 6),
    ("RAS", 17),
    ("Q.931", 6),
    ("pptp", 6),
    ("amanda", 17),
    ("sane", 6),
    ("snmp", 17),
];

/// A helper's name (`ftp`, `tftp`, …), one of [`HELPERS`], kept as its place in that list
/// so that a connection carries one byte, not the kernel's 16-byte name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelperName(u8);

impl HelperName {
    /// The helper of this name, if the kernel has one.
    pub fn new(name: &str) -> Option<Self> {
        let i = HELPERS.iter().position(|(n, _)| *n == name)?;
        Some(HelperName(i as u8))
    }

    /// The name.
    pub fn as_str(&self) -> &'static str {
        HELPERS[usize::from(self.0)].0
    }
}

/// A timeout policy's name (`nfct add timeout NAME`): the kernel's `CTNL_TIMEOUT_NAME_MAX`.
pub type TimeoutName = InlineName<32>;

impl<const N: usize> InlineName<N> {
    /// A name of at most `N - 1` bytes.
    pub fn new(name: &str) -> Option<Self> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() >= N {
            return None;
        }
        let mut bytes = [0u8; N];
        bytes[..b.len()].copy_from_slice(b);
        Some(InlineName {
            bytes,
            len: b.len() as u8,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

/// What a raw-table `CT` rule gives the connection a packet creates: zone, helper and the
/// events it reports (the kernel's conntrack template).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Template {
    /// `--zone`.
    pub zone: u16,
    /// `--helper`.
    pub helper: Option<HelperName>,
    /// `--ctevents`, as `IPCT_*` bits.
    pub events: Option<u16>,
    /// `--timeout`: the timeout policy's name.
    pub timeout: Option<TimeoutName>,
}

impl Conn {
    /// [`Conn::rare`] of a connection whose [`Rare`] values are all the default.
    pub const NO_RARE: u32 = u32::MAX;
    /// [`Conn::extras`] of a connection made without accounting and timestamps.
    pub const NO_EXTRAS: u32 = u32::MAX;

    /// The reply tuple of a connection NAT did not change: the original's inverse (the
    /// original itself for the ICMP types without one, which never make a connection).
    pub fn mirrored_reply(&self) -> Tuple {
        self.original.invert().unwrap_or(self.original)
    }

    /// True when the bit is set.
    pub fn has(&self, bit: u32) -> bool {
        self.status & bit != 0
    }
    /// Translated by NAT: one of its tuples is not the mirror of the other.
    pub fn is_translated(&self) -> bool {
        self.has(ips::SRC_NAT | ips::DST_NAT)
    }
    /// Seen a reply.
    pub fn seen_reply(&self) -> bool {
        self.has(ips::SEEN_REPLY)
    }
    /// Assured.
    pub fn assured(&self) -> bool {
        self.has(ips::ASSURED)
    }
    /// In the table.
    pub fn confirmed(&self) -> bool {
        self.has(ips::CONFIRMED)
    }
    /// Whole seconds left at `now`, rounded down as the kernel prints them: the kernel
    /// counts in jiffies, so both instants are taken at jiffy granularity first.
    pub fn seconds_left(&self, now: u64) -> u64 {
        jiffies(self.deadline).saturating_sub(jiffies(now)) / HZ
    }
    /// Expired at `now` (`nf_ct_is_expired`).
    pub fn expired(&self, now: u64) -> bool {
        jiffies(self.deadline) <= jiffies(now)
    }
}

/// Timer ticks per second of the kernels this was checked against (`CONFIG_HZ=250`).
pub const HZ: u64 = 250;

/// Packet time (ns) in jiffies.
pub fn jiffies(ns: u64) -> u64 {
    ns / (1_000_000_000 / HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_given_back_is_reused() {
        let mut s = ExtStore::<u64>::default();
        let (a, b) = (s.add(7), s.add(8));
        assert_eq!((s.get(a), s.get(b)), (Some(&7), Some(&8)));
        assert_eq!(s.remove(a), Some(7));
        assert_eq!(s.add(9), a);
        *s.get_mut(b).expect("kept") += 1;
        assert_eq!((s.get(a), s.get(b)), (Some(&9), Some(&9)));
        assert_eq!(s.get(Conn::NO_EXTRAS), None);
        assert_eq!(s.remove(Conn::NO_EXTRAS), None);
    }
}
