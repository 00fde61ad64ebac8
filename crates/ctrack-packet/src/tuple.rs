//! The conntrack tuple: what identifies one direction of a connection.

use crate::{proto, Addr, Datagram, Family};
use std::fmt::{self, Write};

/// One direction of a connection, as the kernel's `nf_conntrack_tuple`.
///
/// The meaning of the two 16-bit fields depends on the protocol: ports for TCP, UDP,
/// UDP-Lite, SCTP and DCCP; for ICMP and ICMPv6 `src_port` is the identifier and
/// `dst_port` holds `type << 8 | code`; GRE keys; zero for the generic tracker.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Tuple {
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Source port, ICMP identifier or GRE key.
    pub src_port: u16,
    /// Destination port, ICMP `type << 8 | code`, or GRE key.
    pub dst_port: u16,
    /// Transport protocol number.
    pub proto: u8,
    /// Address family.
    pub family: Family,
}

/// Why no tuple could be built from a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TupleError {
    /// The transport header is shorter than the fields the tuple needs.
    ShortHeader,
    /// An ICMP type without a reply type cannot start a connection.
    NoInverse,
}

/// The name conntrack prints for a protocol number (`unknown` for the generic tracker).
pub fn proto_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::ICMP => "icmp",
        proto::ICMPV6 => "icmpv6",
        proto::UDPLITE => "udplite",
        proto::GRE => "gre",
        proto::SCTP => "sctp",
        33 => "dccp",
        _ => "unknown",
    }
}

/// Whether the protocol's tuple carries 16-bit ports at the start of its header.
fn has_ports(p: u8) -> bool {
    matches!(p, proto::TCP | proto::UDP | proto::UDPLITE)
}

/// The reply type of an ICMP query type (`icmp_invert_tuple`'s map).
fn icmp_reply_type(family: Family, ty: u8) -> Option<u8> {
    match family {
        Family::V4 => match ty {
            8 => Some(0),
            0 => Some(8),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        },
        Family::V6 => match ty {
            128 => Some(129),
            129 => Some(128),
            139 => Some(140),
            140 => Some(139),
            _ => None,
        },
    }
}

impl Tuple {
    /// The tuple of a datagram's first fragment or whole packet (`nf_ct_get_tuple`).
    pub fn from_datagram(d: &Datagram<'_>) -> Result<Tuple, TupleError> {
        Self::from_l4(d.family, d.src, d.dst, d.proto, d.l4())
    }

    /// The tuple from addresses, protocol and the transport bytes.
    pub fn from_l4(
        family: Family,
        src: Addr,
        dst: Addr,
        p: u8,
        l4: &[u8],
    ) -> Result<Tuple, TupleError> {
        let (src_port, dst_port) = if has_ports(p) {
            let h = l4.get(..4).ok_or(TupleError::ShortHeader)?;
            (
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
            )
        } else if (family, p) == (Family::V4, proto::ICMP)
            || (family, p) == (Family::V6, proto::ICMPV6)
        {
            let h = l4.get(..8).ok_or(TupleError::ShortHeader)?;
            (
                u16::from_be_bytes([h[4], h[5]]),
                u16::from_be_bytes([h[0], h[1]]),
            )
        } else if p == proto::GRE {
            gre_keys(l4)?
        } else {
            (0, 0)
        };
        Ok(Tuple {
            src,
            dst,
            src_port,
            dst_port,
            proto: p,
            family,
        })
    }

    /// The tuple of the packet quoted inside an ICMP error: its IP header is read without
    /// length checks, since an error quotes only the start of the offending datagram.
    pub fn from_quoted(family: Family, quoted: &[u8]) -> Result<Tuple, TupleError> {
        match family {
            Family::V4 => {
                let h = quoted.get(..20).ok_or(TupleError::ShortHeader)?;
                if h[0] >> 4 != 4 {
                    return Err(TupleError::ShortHeader);
                }
                let ihl = usize::from(h[0] & 0x0f) * 4;
                let l4 = quoted.get(ihl..).ok_or(TupleError::ShortHeader)?;
                let src = Addr::v4([h[12], h[13], h[14], h[15]]);
                let dst = Addr::v4([h[16], h[17], h[18], h[19]]);
                Self::from_l4(family, src, dst, h[9], l4)
            }
            Family::V6 => {
                let h = quoted.get(..40).ok_or(TupleError::ShortHeader)?;
                let mut src = [0u8; 16];
                let mut dst = [0u8; 16];
                src.copy_from_slice(&h[8..24]);
                dst.copy_from_slice(&h[24..40]);
                let (p, off) = skip_ipv6_ext(quoted, h[6], 40).ok_or(TupleError::ShortHeader)?;
                Self::from_l4(family, Addr::v6(src), Addr::v6(dst), p, &quoted[off..])
            }
        }
    }

    /// The ICMP type of an ICMP/ICMPv6 tuple.
    pub fn icmp_type(&self) -> u8 {
        (self.dst_port >> 8) as u8
    }

    /// The ICMP code of an ICMP/ICMPv6 tuple.
    pub fn icmp_code(&self) -> u8 {
        self.dst_port as u8
    }

    /// The source and destination ports as a hash of either direction takes them: an ICMP
    /// query's destination port is its type and code, which its reply changes, so its
    /// identifier (the source port) stands for both.
    pub fn end_ports(&self) -> (u16, u16) {
        if self.is_icmp() {
            (self.src_port, self.src_port)
        } else {
            (self.src_port, self.dst_port)
        }
    }

    /// True for ICMP or ICMPv6 in their own family.
    pub fn is_icmp(&self) -> bool {
        matches!(
            (self.family, self.proto),
            (Family::V4, proto::ICMP) | (Family::V6, proto::ICMPV6)
        )
    }

    /// True when this tuple is what [`Tuple::invert`] makes of `other`, found without
    /// building the inverse for the protocols whose inverse swaps ends.
    pub fn is_inverse_of(&self, other: &Tuple) -> bool {
        if self.is_icmp() {
            return other.invert().as_ref() == Some(self);
        }
        self.src == other.dst
            && self.dst == other.src
            && self.src_port == other.dst_port
            && self.dst_port == other.src_port
            && self.proto == other.proto
            && self.family == other.family
    }

    /// The tuple of the other direction (`nf_ct_invert_tuple`), `None` for ICMP types that
    /// have no reply.
    pub fn invert(&self) -> Option<Tuple> {
        let (src_port, dst_port) = if self.is_icmp() {
            let reply = icmp_reply_type(self.family, self.icmp_type())?;
            (
                self.src_port,
                u16::from(reply) << 8 | u16::from(self.icmp_code()),
            )
        } else {
            (self.dst_port, self.src_port)
        };
        Some(Tuple {
            src: self.dst,
            dst: self.src,
            src_port,
            dst_port,
            proto: self.proto,
            family: self.family,
        })
    }

    /// Appends the tuple as `conntrack -L` prints it, with a trailing space:
    /// `src=… dst=… sport=… dport=… `.
    pub fn write_to(&self, out: &mut String) {
        self.write_styled(out, false);
    }

    /// Appends the tuple as `/proc/net/nf_conntrack` prints it: the same, but IPv6
    /// addresses in full (`%pI6`, eight groups of four digits).
    pub fn write_proc(&self, out: &mut String) {
        self.write_styled(out, true);
    }

    fn write_styled(&self, out: &mut String, full_v6: bool) {
        if full_v6 && self.family == Family::V6 {
            out.push_str("src=");
            write_full_v6(out, &self.src);
            out.push_str(" dst=");
            write_full_v6(out, &self.dst);
            out.push(' ');
        } else {
            let _ = write!(
                out,
                "src={} dst={} ",
                self.src.display(self.family),
                self.dst.display(self.family)
            );
        }
        match self.proto {
            _ if self.is_icmp() => {
                let _ = write!(
                    out,
                    "type={} code={} id={} ",
                    self.icmp_type(),
                    self.icmp_code(),
                    self.src_port
                );
            }
            proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP | 33 => {
                let _ = write!(out, "sport={} dport={} ", self.src_port, self.dst_port);
            }
            proto::GRE => {
                let _ = write!(
                    out,
                    "srckey=0x{:x} dstkey=0x{:x} ",
                    self.src_port, self.dst_port
                );
            }
            _ => {}
        }
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_to(&mut s);
        f.write_str(s.trim_end())
    }
}

/// An IPv6 address as the kernel's `%pI6`: eight groups of four hex digits.
fn write_full_v6(out: &mut String, a: &Addr) {
    for (i, pair) in a.0.chunks_exact(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{:02x}{:02x}", pair[0], pair[1]);
    }
}

/// GRE keys: version 1 (PPTP) carries a call ID; version 0 has none, and the kernel uses 0.
fn gre_keys(l4: &[u8]) -> Result<(u16, u16), TupleError> {
    let h = l4.get(..4).ok_or(TupleError::ShortHeader)?;
    if h[1] & 0x07 != 1 {
        return Ok((0, 0));
    }
    let k = l4.get(6..8).ok_or(TupleError::ShortHeader)?;
    Ok((0, u16::from_be_bytes([k[0], k[1]])))
}

/// Skips IPv6 extension headers from `off`, returning the transport protocol and offset.
fn skip_ipv6_ext(b: &[u8], mut next: u8, mut off: usize) -> Option<(u8, usize)> {
    loop {
        match next {
            0 | 43 | 60 => {
                let h = b.get(off..off + 2)?;
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
            }
            51 => {
                let h = b.get(off..off + 2)?;
                next = h[0];
                off += (usize::from(h[1]) + 2) * 4;
            }
            44 => {
                let h = b.get(off..off + 8)?;
                next = h[0];
                off += 8;
            }
            _ => return (off <= b.len()).then_some((next, off)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: u8, sp: u16, dp: u16) -> Tuple {
        Tuple {
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 0, 2]),
            src_port: sp,
            dst_port: dp,
            proto: p,
            family: Family::V4,
        }
    }

    #[test]
    fn inverts_ports_and_addresses() {
        let r = t(6, 1234, 80).invert().unwrap();
        assert_eq!(
            (r.src, r.src_port, r.dst_port),
            (Addr::v4([10, 0, 0, 2]), 80, 1234)
        );
        assert_eq!(r.invert().unwrap(), t(6, 1234, 80));
    }

    #[test]
    fn inverts_icmp_echo_keeping_id() {
        let r = t(1, 77, 8 << 8).invert().unwrap();
        assert_eq!((r.icmp_type(), r.src_port), (0, 77));
        assert!(
            t(1, 0, 3 << 8).invert().is_none(),
            "an error type has no reply"
        );
    }

    #[test]
    fn the_inverse_is_known_without_building_it() {
        for tuple in [t(6, 1234, 80), t(17, 53, 53), t(47, 7, 9), t(1, 77, 8 << 8)] {
            let r = tuple.invert().unwrap();
            assert!(r.is_inverse_of(&tuple) && tuple.is_inverse_of(&r));
            assert!(
                !tuple.is_inverse_of(&tuple),
                "{tuple} is not its own inverse"
            );
            let mut nated = r;
            nated.dst_port ^= 1;
            assert!(!nated.is_inverse_of(&tuple));
        }
        // An echo request's inverse is the reply of the same id, not another request.
        let request = t(1, 77, 8 << 8);
        let mut swapped = request;
        (swapped.src, swapped.dst) = (request.dst, request.src);
        assert!(!swapped.is_inverse_of(&request));
    }

    #[test]
    fn prints_like_proc() {
        let mut s = String::new();
        t(17, 53, 5353).write_to(&mut s);
        assert_eq!(s, "src=10.0.0.1 dst=10.0.0.2 sport=53 dport=5353 ");
        s.clear();
        t(1, 9, 8 << 8).write_to(&mut s);
        assert_eq!(s, "src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=9 ");
        s.clear();
        t(50, 0, 0).write_to(&mut s);
        assert_eq!(s, "src=10.0.0.1 dst=10.0.0.2 ");
    }

    #[test]
    fn proc_prints_ipv6_in_full() {
        let mut t = t(6, 1, 2);
        t.family = Family::V6;
        t.src = Addr::v6([0xfd, 0x77, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        t.dst = Addr::v6([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1a]);
        let mut s = String::new();
        t.write_proc(&mut s);
        assert_eq!(
            s,
            "src=fd77:0001:0000:0000:0000:0000:0000:0002 dst=fe80:0000:0000:0000:0000:0000:0000:001a sport=1 dport=2 "
        );
        s.clear();
        t.write_to(&mut s);
        assert_eq!(s, "src=fd77:1::2 dst=fe80::1a sport=1 dport=2 ");
    }

    #[test]
    fn short_headers_give_no_tuple() {
        let e = Tuple::from_l4(Family::V4, Addr::default(), Addr::default(), 6, &[0, 1]);
        assert_eq!(e.unwrap_err(), TupleError::ShortHeader);
    }
}
