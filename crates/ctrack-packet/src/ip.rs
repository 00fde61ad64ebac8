//! A checked view of one IPv4 or IPv6 datagram, as the kernel has it when netfilter's
//! hooks run: header validated, trimmed to its IP length, extension headers walked.

use crate::{proto, Addr, Family};
use etherparse::Ipv6HeaderSlice;

/// Why a datagram was refused before it reached netfilter (`ip_rcv`/`ipv6_rcv` drop these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the header it claims, or empty.
    Truncated,
    /// The version nibble is neither 4 nor 6.
    BadVersion,
    /// The IPv4 header length is below 20 bytes or beyond the packet.
    BadHeaderLength,
    /// The IP length field disagrees with the bytes captured.
    BadTotalLength,
    /// The IPv4 header checksum is wrong.
    BadHeaderChecksum,
    /// An IPv6 extension header runs past the packet.
    BadExtensionHeader,
}

impl Malformed {
    /// A short reason for summaries and verdict logs.
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::Truncated => "truncated",
            Malformed::BadVersion => "bad IP version",
            Malformed::BadHeaderLength => "bad IP header length",
            Malformed::BadTotalLength => "bad IP total length",
            Malformed::BadHeaderChecksum => "bad IPv4 header checksum",
            Malformed::BadExtensionHeader => "bad IPv6 extension header",
        }
    }
}

/// Where a fragment sits in its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
    /// Byte offset of this fragment's data in the reassembled payload.
    pub offset: u32,
    /// More fragments follow.
    pub more: bool,
    /// Length of the part that every fragment repeats: the IPv4 header, or the IPv6 header
    /// and the extension headers before the fragment header.
    pub unfragmentable_len: usize,
    /// Offset of the fragmentable data (after the IPv6 fragment header).
    pub data_offset: usize,
    /// For IPv6: offset of the "next header" byte that points at the fragment header.
    pub next_header_at: usize,
}

/// One IP datagram (or fragment), trimmed to the length its header gives.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    /// IPv4 or IPv6.
    pub family: Family,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Transport protocol, after any IPv6 extension headers (`NoNext` is 59).
    pub proto: u8,
    /// The datagram bytes from the IP header on.
    pub bytes: &'a [u8],
    /// Offset of the transport header in `bytes`.
    pub l4_offset: usize,
    /// Set when this is one fragment of a larger datagram.
    pub fragment: Option<Fragment>,
    /// TTL or hop limit.
    pub ttl: u8,
    /// TOS or traffic class.
    pub tos: u8,
}

impl<'a> Datagram<'a> {
    /// Parses and checks an IP datagram, as `ip_rcv`/`ipv6_rcv` do before PREROUTING.
    ///
    /// Trailing bytes beyond the IP length (Ethernet padding) are cut off.
    pub fn parse(bytes: &'a [u8]) -> Result<Datagram<'a>, Malformed> {
        match Family::of_datagram(bytes) {
            _ if bytes.is_empty() => Err(Malformed::Truncated),
            Some(Family::V4) => Self::parse_v4(bytes),
            Some(Family::V6) => Self::parse_v6(bytes),
            None => Err(Malformed::BadVersion),
        }
    }

    fn parse_v4(bytes: &'a [u8]) -> Result<Datagram<'a>, Malformed> {
        // The fixed header read in place: `of_datagram` saw version 4, the length checks
        // below are the ones `ip_rcv_core` makes.
        let Some(h) = bytes.first_chunk::<20>() else {
            return Err(Malformed::Truncated);
        };
        let ihl = usize::from(h[0] & 0x0f) * 4;
        if ihl < 20 || ihl > bytes.len() {
            return Err(Malformed::BadHeaderLength);
        }
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if total < ihl || total > bytes.len() {
            return Err(Malformed::BadTotalLength);
        }
        if crate::checksum::finish(crate::checksum::sum(&bytes[..ihl], 0)) != 0 {
            return Err(Malformed::BadHeaderChecksum);
        }
        let flags_offset = u16::from_be_bytes([h[6], h[7]]);
        let offset = u32::from(flags_offset & 0x1fff) * 8;
        let more = flags_offset & 0x2000 != 0;
        let fragment = (offset != 0 || more).then_some(Fragment {
            id: u32::from(u16::from_be_bytes([h[4], h[5]])),
            offset,
            more,
            unfragmentable_len: ihl,
            data_offset: ihl,
            next_header_at: 9,
        });
        Ok(Datagram {
            family: Family::V4,
            src: Addr::v4([h[12], h[13], h[14], h[15]]),
            dst: Addr::v4([h[16], h[17], h[18], h[19]]),
            proto: h[9],
            bytes: &bytes[..total],
            l4_offset: ihl,
            fragment,
            ttl: h[8],
            tos: h[1],
        })
    }

    fn parse_v6(bytes: &'a [u8]) -> Result<Datagram<'a>, Malformed> {
        let hdr = Ipv6HeaderSlice::from_slice(bytes).map_err(|_| Malformed::Truncated)?;
        let total = 40 + usize::from(hdr.payload_length());
        if total > bytes.len() {
            return Err(Malformed::BadTotalLength);
        }
        let bytes = &bytes[..total];
        let mut next = hdr.next_header().0;
        let mut next_at = 6;
        let mut off = 40;
        let mut fragment = None;
        // Walk the extension headers the way ipv6_skip_exthdr does: stop at the first
        // header that is not an extension, and after a non-first fragment.
        loop {
            match next {
                0 | 43 | 60 => {
                    let h = bytes
                        .get(off..off + 2)
                        .ok_or(Malformed::BadExtensionHeader)?;
                    let len = (usize::from(h[1]) + 1) * 8;
                    if off + len > bytes.len() {
                        return Err(Malformed::BadExtensionHeader);
                    }
                    next_at = off;
                    next = h[0];
                    off += len;
                }
                51 => {
                    let h = bytes
                        .get(off..off + 2)
                        .ok_or(Malformed::BadExtensionHeader)?;
                    let len = (usize::from(h[1]) + 2) * 4;
                    if off + len > bytes.len() {
                        return Err(Malformed::BadExtensionHeader);
                    }
                    next_at = off;
                    next = h[0];
                    off += len;
                }
                44 => {
                    let h = bytes
                        .get(off..off + 8)
                        .ok_or(Malformed::BadExtensionHeader)?;
                    let fo = u16::from_be_bytes([h[2], h[3]]);
                    let offset = u32::from(fo >> 3) * 8;
                    let more = fo & 1 == 1;
                    let frag_next_at = next_at;
                    next_at = off;
                    next = h[0];
                    let unfragmentable_len = off;
                    off += 8;
                    if offset != 0 || more {
                        fragment = Some(Fragment {
                            id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                            offset,
                            more,
                            unfragmentable_len,
                            data_offset: off,
                            next_header_at: frag_next_at,
                        });
                        break;
                    }
                }
                _ => break,
            }
        }
        let _ = next_at;
        Ok(Datagram {
            family: Family::V6,
            src: Addr::v6(hdr.source()),
            dst: Addr::v6(hdr.destination()),
            proto: next,
            bytes,
            l4_offset: off,
            fragment,
            ttl: hdr.hop_limit(),
            tos: hdr.traffic_class(),
        })
    }

    /// Length of the datagram, as the kernel's `skb->len` at the IP layer.
    pub fn len(&self) -> u32 {
        self.bytes.len() as u32
    }

    /// True for a datagram of no bytes (never produced by `parse`).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The transport header and payload.
    pub fn l4(&self) -> &'a [u8] {
        &self.bytes[self.l4_offset..]
    }

    /// True for ICMP/ICMPv6 of this datagram's family.
    pub fn is_icmp(&self) -> bool {
        matches!(
            (self.family, self.proto),
            (Family::V4, proto::ICMP) | (Family::V6, proto::ICMPV6)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_udp() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 28, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39,
            0, 53, 0, 8, 0, 0,
        ];
        let c = crate::checksum::finish(crate::checksum::sum(&p[..20], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn parses_ipv4_and_trims_padding() {
        let mut p = v4_udp();
        p.extend_from_slice(&[0; 18]);
        let d = Datagram::parse(&p).unwrap();
        assert_eq!(d.len(), 28);
        assert_eq!(d.proto, 17);
        assert_eq!(d.l4().len(), 8);
        assert!(d.fragment.is_none());
    }

    #[test]
    fn rejects_bad_header_checksum() {
        let mut p = v4_udp();
        p[10] ^= 1;
        assert_eq!(
            Datagram::parse(&p).unwrap_err(),
            Malformed::BadHeaderChecksum
        );
    }

    #[test]
    fn rejects_short_and_garbage() {
        assert_eq!(Datagram::parse(&[]).unwrap_err(), Malformed::Truncated);
        assert_eq!(
            Datagram::parse(&[0x45, 0]).unwrap_err(),
            Malformed::Truncated
        );
        assert_eq!(
            Datagram::parse(&[0x15; 40]).unwrap_err(),
            Malformed::BadVersion
        );
    }

    #[test]
    fn walks_ipv6_extension_headers_to_a_fragment() {
        let mut p = vec![0x60, 0, 0, 0, 0, 24, 0, 64];
        p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        // hop-by-hop (8 bytes) -> fragment (offset 0, more) -> UDP
        p.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[17, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
        p.extend_from_slice(&[0, 1, 0, 2, 0, 20, 0, 0]);
        let d = Datagram::parse(&p).unwrap();
        assert_eq!(d.proto, 17);
        let f = d.fragment.unwrap();
        assert_eq!((f.id, f.offset, f.more), (0xdeadbeef, 0, true));
        assert_eq!(f.unfragmentable_len, 48);
        assert_eq!(d.l4_offset, 56);
    }
}
