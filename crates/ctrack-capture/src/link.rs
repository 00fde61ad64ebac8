//! Link layers: from the captured bytes to the IP datagram, and what they say of direction.

use thiserror::Error;

/// Which way a packet was going on the capturing host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the host (SLL packet types 0–3, pcapng inbound).
    Incoming,
    /// Sent by the host (SLL packet type 4, pcapng outbound).
    Outgoing,
}

/// What the link layer says about a frame besides its payload: what the kernel's LOG
/// target prints as `MAC=`, and on which interface a cooked capture saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkMeta {
    /// Destination hardware address (Ethernet captures).
    pub dst: Option<[u8; 6]>,
    /// Source hardware address (Ethernet; the sender's for cooked captures).
    pub src: Option<[u8; 6]>,
    /// EtherType of the payload.
    pub ethertype: u16,
    /// Interface index (Linux cooked v2).
    pub ifindex: Option<u32>,
}

fn mac_at(b: &[u8], at: usize) -> Option<[u8; 6]> {
    b.get(at..at + 6)
        .map(|s| [s[0], s[1], s[2], s[3], s[4], s[5]])
}

/// The link-layer facts of a frame; empty for link types that carry none.
pub fn meta(linktype: u32, frame: &[u8]) -> LinkMeta {
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
    };
    match linktype {
        ETHERNET => LinkMeta {
            dst: mac_at(frame, 0),
            src: mac_at(frame, 6),
            ethertype: be16(12),
            ifindex: None,
        },
        LINUX_SLL => LinkMeta {
            dst: None,
            src: (be16(4) == 6).then(|| mac_at(frame, 6)).flatten(),
            ethertype: be16(14),
            ifindex: None,
        },
        LINUX_SLL2 => LinkMeta {
            dst: None,
            src: (frame.get(11) == Some(&6))
                .then(|| mac_at(frame, 12))
                .flatten(),
            ethertype: be16(0),
            ifindex: frame
                .get(4..8)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
        },
        _ => LinkMeta::default(),
    }
}

/// Why a frame carries no IP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum LinkError {
    /// The link type is not one ctrack reads.
    #[error("unsupported link type {0}")]
    UnsupportedLinkType(u32),
    /// The frame is shorter than its link header.
    #[error("frame shorter than its link header")]
    Truncated,
    /// The frame carries something other than IPv4 or IPv6 (ARP, LLDP, …).
    #[error("not IP (ethertype 0x{0:04x})")]
    NotIp(u16),
}

/// `LINKTYPE_NULL`: BSD loopback, family in host byte order.
pub const NULL: u32 = 0;
/// `LINKTYPE_ETHERNET`.
pub const ETHERNET: u32 = 1;
/// `LINKTYPE_RAW`.
pub const RAW: u32 = 101;
/// `LINKTYPE_LOOP`: OpenBSD loopback, family in network byte order.
pub const LOOP: u32 = 108;
/// `LINKTYPE_LINUX_SLL`.
pub const LINUX_SLL: u32 = 113;
/// `LINKTYPE_IPV4`.
pub const IPV4: u32 = 228;
/// `LINKTYPE_IPV6`.
pub const IPV6: u32 = 229;
/// `LINKTYPE_LINUX_SLL2`.
pub const LINUX_SLL2: u32 = 276;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ: u16 = 0x9100;

fn be16(b: &[u8], at: usize) -> Result<u16, LinkError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(LinkError::Truncated)
}

fn ip_by_ethertype(ethertype: u16, payload: &[u8]) -> Result<&[u8], LinkError> {
    match ethertype {
        ETH_P_IP | ETH_P_IPV6 => Ok(payload),
        other => Err(LinkError::NotIp(other)),
    }
}

fn sll_direction(packet_type: u16) -> Option<Direction> {
    match packet_type {
        0..=3 => Some(Direction::Incoming),
        4 => Some(Direction::Outgoing),
        _ => None,
    }
}

/// Strips the link header: the IP datagram, and the direction if the header records it.
pub fn strip(linktype: u32, frame: &[u8]) -> Result<(&[u8], Option<Direction>), LinkError> {
    match linktype {
        ETHERNET => {
            let mut ethertype = be16(frame, 12)?;
            let mut at = 14;
            while matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ) {
                ethertype = be16(frame, at + 2)?;
                at += 4;
            }
            let payload = frame.get(at..).ok_or(LinkError::Truncated)?;
            Ok((ip_by_ethertype(ethertype, payload)?, None))
        }
        LINUX_SLL => {
            let packet_type = be16(frame, 0)?;
            let proto = be16(frame, 14)?;
            let payload = frame.get(16..).ok_or(LinkError::Truncated)?;
            Ok((ip_by_ethertype(proto, payload)?, sll_direction(packet_type)))
        }
        LINUX_SLL2 => {
            let proto = be16(frame, 0)?;
            let packet_type = *frame.get(10).ok_or(LinkError::Truncated)?;
            let payload = frame.get(20..).ok_or(LinkError::Truncated)?;
            Ok((
                ip_by_ethertype(proto, payload)?,
                sll_direction(u16::from(packet_type)),
            ))
        }
        RAW | 12 | 14 | IPV4 | IPV6 => match frame.first().map(|b| b >> 4) {
            Some(4) | Some(6) => Ok((frame, None)),
            Some(_) => Err(LinkError::NotIp(0)),
            None => Err(LinkError::Truncated),
        },
        NULL | LOOP => {
            let f = frame.get(..4).ok_or(LinkError::Truncated)?;
            let family = if linktype == LOOP {
                u32::from_be_bytes([f[0], f[1], f[2], f[3]])
            } else {
                // Host byte order of the capturing machine: accept either.
                let le = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
                if le < 256 {
                    le
                } else {
                    u32::from_be_bytes([f[0], f[1], f[2], f[3]])
                }
            };
            match family {
                2 | 24 | 28 | 30 => Ok((&frame[4..], None)),
                other => Err(LinkError::NotIp(other as u16)),
            }
        }
        other => Err(LinkError::UnsupportedLinkType(other)),
    }
}
