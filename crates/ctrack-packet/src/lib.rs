//! Packets as conntrack sees them.
//!
//! This crate turns the bytes of one IP datagram into what the connection tracker needs,
//! without copying: [`Datagram`] is a checked view of an IPv4 or IPv6 packet (extension
//! headers walked, fragments recognised), [`TcpView`] reads a TCP header and its options,
//! and [`Tuple`] is the kernel's `nf_conntrack_tuple`: addresses, protocol and the
//! protocol's identifying fields, with [`Tuple::invert`] giving the reply direction.
//! [`checksum`] verifies transport checksums in one place, and [`Reassembler`] puts
//! fragments back together, as the kernel's `nf_defrag_ipv4`/`nf_defrag_ipv6` do before
//! conntrack sees a packet. [`Udp4`] reads the commonest datagram, IPv4/UDP without
//! options, in place for the tracker's fast path.
//!
//! The IPv4 header is read in place (a proptest holds it to `etherparse`), the IPv6 header
//! with `etherparse`; malformed input is an error value, never a panic.

pub mod addr;
pub mod checksum;
pub mod frag;
pub mod ip;
pub mod tcp;
pub mod tuple;
pub mod udp4;

pub use addr::{Addr, Family};
pub use frag::{Reassembler, Reassembly};
pub use ip::{Datagram, Fragment, Malformed};
pub use tcp::{TcpFlags, TcpView};
pub use tuple::{proto_name, Tuple, TupleError};
pub use udp4::Udp4;

/// IANA protocol numbers that conntrack gives trackers of their own.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// IGMP (generic tracker).
    pub const IGMP: u8 = 2;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ESP (generic tracker).
    pub const ESP: u8 = 50;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDPLITE: u8 = 136;
}
