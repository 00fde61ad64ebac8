//! Rewriting a packet's addresses and ports for NAT, with correct checksums.

use ctrack_packet::{checksum, proto, Addr, Datagram, Family};

/// A copy of `d` with the source and/or destination replaced (address and port; for ICMP
/// queries the port is the identifier), checksums recomputed.
pub fn rewrite(d: &Datagram<'_>, src: Option<(Addr, u16)>, dst: Option<(Addr, u16)>) -> Vec<u8> {
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
        let ihl = usize::from(b[0] & 0x0f) * 4;
        b[10] = 0;
        b[11] = 0;
        let c = checksum::finish(checksum::sum(&b[..ihl], 0));
        b[10..12].copy_from_slice(&c.to_be_bytes());
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
                let acc = if d.proto == proto::ICMP {
                    0
                } else {
                    checksum::pseudo_header(d.family, new_src, new_dst, d.proto, l4.len() as u32)
                };
                let mut c = checksum::finish(checksum::sum(l4, acc));
                if d.proto == proto::UDP && c == 0 {
                    c = 0xffff;
                }
                l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
    b
}
