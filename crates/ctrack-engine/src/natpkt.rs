//! Rewriting a packet's addresses and ports for NAT, a helper's payload rewrite and the
//! sequence adjustment after it, with correct lengths and checksums.

use ctrack_conntrack::seqadj::SeqAdj;
use ctrack_packet::{checksum, proto, Addr, Datagram, Family};

/// `nf_nat_mangle_tcp_packet`: `len` bytes at `at` of the TCP payload become `text`; the IP
/// length, the IPv4 header checksum and the TCP checksum follow. Does nothing to a datagram
/// that is not TCP or too short for the rewrite. True when the bytes changed.
pub fn mangle_tcp_payload(bytes: &mut Vec<u8>, at: usize, len: usize, text: &[u8]) -> bool {
    let Ok(d) = Datagram::parse(bytes) else {
        return false;
    };
    let Some(hlen) = ctrack_packet::TcpView::new(d.l4()).map(|t| t.header_len()) else {
        return false;
    };
    let (family, src, dst, l4) = (d.family, d.src, d.dst, d.l4_offset);
    let start = l4 + hlen + at;
    if d.proto != proto::TCP || start + len > bytes.len() || bytes[start..start + len] == *text {
        return false;
    }
    bytes.splice(start..start + len, text.iter().copied());
    let total = bytes.len();
    match family {
        Family::V4 => {
            bytes[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            checksum::set_ipv4_header(bytes);
        }
        Family::V6 => bytes[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes()),
    }
    let seg = &mut bytes[l4..];
    seg[16..18].copy_from_slice(&[0, 0]);
    let c = checksum::transport(family, src, dst, proto::TCP, seg);
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    true
}

/// `nf_ct_seq_adjust` on a leaving TCP datagram: `this` is the correction of the direction
/// it is sent in, `other` the opposite one's. True when a number changed.
pub fn seq_adjust(bytes: &mut [u8], this: &SeqAdj, other: &SeqAdj) -> bool {
    let Ok(d) = Datagram::parse(bytes) else {
        return false;
    };
    if d.proto != proto::TCP || d.fragment.is_some_and(|f| f.offset != 0) {
        return false;
    }
    let l4 = d.l4_offset;
    SeqAdj::adjust(&mut bytes[l4..], this, other)
}

/// An end of a packet: address and port (identifier for ICMP queries).
pub type End = (Addr, u16);

/// A copy of `d` with the source and/or destination replaced (address and port; for ICMP
/// queries the port is the identifier), checksums recomputed.
pub fn rewrite(d: &Datagram<'_>, src: Option<End>, dst: Option<End>) -> Vec<u8> {
    rewrite_with_inner(d, src, dst, None)
}

/// The same, and for an ICMP error the packet it quotes rewritten too (`inner`: new source,
/// new destination), as `nf_nat_icmp_reply_translation` does.
pub fn rewrite_with_inner(
    d: &Datagram<'_>,
    src: Option<End>,
    dst: Option<End>,
    inner: Option<(Option<End>, Option<End>)>,
) -> Vec<u8> {
    let mut b = d.bytes.to_vec();
    let v4 = d.family == Family::V4;
    let (s_at, d_at, alen) = if v4 { (12, 16, 4) } else { (8, 24, 16) };
    let mut new_src = d.src;
    let mut new_dst = d.dst;
    if let Some((a, _)) = src {
        b[s_at..s_at + alen].copy_from_slice(&a.0[..alen]);
        new_src = a;
    }
    if let Some((a, _)) = dst {
        b[d_at..d_at + alen].copy_from_slice(&a.0[..alen]);
        new_dst = a;
    }
    if v4 {
        checksum::set_ipv4_header(&mut b);
    }
    let off = d.l4_offset;
    let later_fragment = d.fragment.is_some_and(|f| f.offset != 0);
    if later_fragment {
        return b;
    }
    let l4 = &mut b[off..];
    let icmp_query = d.is_icmp()
        && l4
            .first()
            .is_some_and(|&t| matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18 | 128 | 129));
    match d.proto {
        proto::TCP | proto::UDP | proto::UDPLITE if l4.len() >= 8 => {
            if let Some((_, p)) = src {
                l4[0..2].copy_from_slice(&p.to_be_bytes());
            }
            if let Some((_, p)) = dst {
                l4[2..4].copy_from_slice(&p.to_be_bytes());
            }
        }
        _ if icmp_query && l4.len() >= 8 => {
            // The identifier is the query's "port"; a reply carries it as the destination's.
            let id = if d.proto == proto::ICMP || d.proto == proto::ICMPV6 {
                src.map(|(_, p)| p).or(dst.map(|(_, p)| p))
            } else {
                None
            };
            if let Some(id) = id {
                l4[4..6].copy_from_slice(&id.to_be_bytes());
            }
        }
        _ => {}
    }
    if let (Some((isrc, idst)), true) = (inner, d.is_icmp()) {
        if l4.len() > 8 {
            rewrite_quoted(&mut l4[8..], d.family, isrc, idst);
        }
    }
    let at = match d.proto {
        proto::TCP => Some(16),
        proto::UDP | proto::UDPLITE => Some(6),
        proto::ICMP | proto::ICMPV6 => Some(2),
        _ => None,
    };
    if let Some(at) = at {
        if l4.len() >= at + 2 {
            let udp_zero = d.proto == proto::UDP && v4 && l4[6] == 0 && l4[7] == 0;
            if !udp_zero {
                l4[at] = 0;
                l4[at + 1] = 0;
                let mut c = checksum::transport(d.family, new_src, new_dst, d.proto, l4);
                if d.proto == proto::UDP && c == 0 {
                    c = 0xffff;
                }
                l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
    b
}

/// Rewrites the (possibly truncated) packet quoted in an ICMP error: addresses, ports, the
/// IPv4 header checksum, and the transport checksum incrementally, as the kernel does.
fn rewrite_quoted(q: &mut [u8], family: Family, src: Option<End>, dst: Option<End>) {
    let v4 = family == Family::V4;
    let (hl, s_at, d_at, alen, proto_at) = if v4 {
        if q.len() < 20 {
            return;
        }
        (usize::from(q[0] & 0x0f) * 4, 12, 16, 4, 9)
    } else {
        if q.len() < 40 {
            return;
        }
        (40, 8, 24, 16, 6)
    };
    let p = q[proto_at];
    let l4_csum_at = match p {
        proto::TCP => Some(16),
        proto::UDP | proto::UDPLITE => Some(6),
        _ => None,
    };
    let mut l4_csum = l4_csum_at
        .and_then(|at| q.get(hl + at..hl + at + 2))
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    let udp_zero = p == proto::UDP && v4 && l4_csum == Some(0);
    for (end, a_at, port_at) in [(src, s_at, 0usize), (dst, d_at, 2usize)] {
        let Some((addr, port)) = end else { continue };
        let old_addr = q[a_at..a_at + alen].to_vec();
        q[a_at..a_at + alen].copy_from_slice(&addr.0[..alen]);
        if let Some(c) = l4_csum.as_mut() {
            *c = checksum::replace(*c, &old_addr, &addr.0[..alen]);
        }
        if matches!(p, proto::TCP | proto::UDP | proto::UDPLITE) && q.len() >= hl + port_at + 2 {
            let old = [q[hl + port_at], q[hl + port_at + 1]];
            q[hl + port_at..hl + port_at + 2].copy_from_slice(&port.to_be_bytes());
            if let Some(c) = l4_csum.as_mut() {
                *c = checksum::replace(*c, &old, &port.to_be_bytes());
            }
        }
    }
    if let (Some(at), Some(c)) = (l4_csum_at, l4_csum) {
        if !udp_zero && q.len() >= hl + at + 2 {
            q[hl + at..hl + at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    if v4 && q.len() >= hl {
        checksum::set_ipv4_header(q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP segment with `payload` and correct checksums.
    fn segment(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 3,
        ];
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&21u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        tcp.extend_from_slice(payload);
        b.extend(tcp);
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        checksum::set_ipv4_header(&mut b);
        let (s, d) = (Addr::v4([10, 0, 0, 2]), Addr::v4([10, 0, 0, 3]));
        let c = checksum::transport(Family::V4, s, d, proto::TCP, &b[20..]);
        b[36..38].copy_from_slice(&c.to_be_bytes());
        b
    }

    fn checksums_ok(b: &[u8]) -> bool {
        let d = Datagram::parse(b).expect("parses");
        checksum::finish(checksum::sum(&b[..20], 0)) == 0
            && checksum::verify(d.family, d.src, d.dst, proto::TCP, d.l4(), true)
            && usize::from(u16::from_be_bytes([b[2], b[3]])) == b.len()
    }

    #[test]
    fn a_longer_announcement_fixes_length_and_checksums() {
        let mut b = segment(b"PORT 10,0,0,2,1,2\r\n");
        assert!(checksums_ok(&b));
        assert!(mangle_tcp_payload(&mut b, 5, 12, b"192,168,100,200,1,2"));
        assert!(b.ends_with(b"PORT 192,168,100,200,1,2\r\n"));
        assert!(checksums_ok(&b));
    }

    #[test]
    fn a_rewrite_past_the_payload_changes_nothing() {
        let b0 = segment(b"PORT 1\r\n");
        let mut b = b0.clone();
        assert!(!mangle_tcp_payload(&mut b, 5, 40, b"x"));
        assert_eq!(b, b0);
    }

    #[test]
    fn seq_adjust_moves_a_later_segment() {
        let mut b = segment(b"NOOP\r\n");
        let mut this = SeqAdj::default();
        this.record(500, 7);
        assert!(seq_adjust(&mut b, &this, &SeqAdj::default()));
        assert_eq!(u32::from_be_bytes([b[24], b[25], b[26], b[27]]), 1007);
        assert!(checksums_ok(&b));
    }
}
