//! Per-protocol trackers behind one interface, as the kernel's `nf_conntrack_l4proto`.
//!
//! Each tracker decides whether a packet may start a connection (`new`), what it does to an
//! existing one (`packet`), and the timeout that follows. Dispatch is a `match` on the
//! protocol number that falls back to the generic tracker.

pub mod generic;
pub mod icmp;
pub mod tcp;
pub mod udp;

use crate::Settings;
use ctrack_packet::TcpView;

/// Per-connection state kept by the tracker of its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoState {
    /// TCP window tracking and state.
    Tcp(tcp::TcpConn),
    /// UDP and UDP-Lite: when the flow becomes a stream.
    Udp(udp::UdpConn),
    /// GRE: like UDP but with its own timeouts.
    Gre(udp::UdpConn),
    /// ICMP and ICMPv6 queries.
    Icmp,
    /// Everything else.
    Generic,
}

/// What a tracker made of a packet for an existing or new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted: refresh the timer to this many nanoseconds and count the packet.
    Accept {
        /// New timeout, relative to now.
        timeout: u64,
    },
    /// Accepted, but neither the timer nor the counters move (ignored TCP segments,
    /// retransmitted SYNs, simultaneous-open SYNs).
    AcceptNoRefresh,
    /// INVALID: the packet keeps no connection; the reason is counted and can be logged.
    Invalid(&'static str),
    /// TCP: a SYN reopens a closed connection: destroy it and look up again.
    Repeat,
    /// TCP: a RST answering a SYN: the entry dies now.
    Kill,
}

/// What the TCP tracker needs of the packet besides its header.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// The TCP header and payload.
    pub tcp: TcpView<'a>,
}

/// The timeout of a freshly created non-TCP connection, and its initial state.
pub fn initial_state(proto: u8, is_icmp: bool, now: u64, _s: &Settings) -> ProtoState {
    use ctrack_packet::proto as p;
    match proto {
        _ if is_icmp => ProtoState::Icmp,
        p::TCP => ProtoState::Tcp(tcp::TcpConn::default()),
        p::UDP | p::UDPLITE => ProtoState::Udp(udp::UdpConn::new(now)),
        p::GRE => ProtoState::Gre(udp::UdpConn::new(now)),
        _ => ProtoState::Generic,
    }
}

impl ProtoState {
    /// The TCP state name, for listings; `None` for other protocols.
    pub fn tcp_state_name(&self) -> Option<&'static str> {
        match self {
            ProtoState::Tcp(t) => Some(t.state.name()),
            _ => None,
        }
    }
}
