//! The packet REJECT answers with, as the kernel builds it (`nf_send_reset`,
//! `nf_send_unreach`, `icmp_send` and their IPv6 twins).
//!
//! A reset goes from the rejected packet's destination to its source: if the packet
//! acknowledged something, `seq` is its ACK; otherwise the reset acknowledges what it sent.
//! An ICMP error quotes the rejected datagram, up to 576 bytes in all for IPv4 and 1280 for
//! IPv6, from the host's address on the way back (or the rejected packet's own destination
//! when that is the host). No answer to a reset, to an ICMP error, or to a non-first
//! fragment. The kernel's ICMP rate limit is not modelled.

use crate::Host;
use ctrack_packet::{checksum, proto, Addr, Datagram, Family, TcpView};
use ctrack_rules::RejectWith;

/// Default TTL / hop limit of packets the host sends.
const TTL: u8 = 64;

/// The answer to `d`, or `None` when the kernel sends none. `forwarded` says the packet
/// was rejected after the routing decision sent it on: its TTL was already decremented, and
/// an ICMP error quotes it so.
pub fn reply(d: &Datagram<'_>, with: RejectWith, host: &Host, forwarded: bool) -> Option<Vec<u8>> {
    if d.fragment.is_some_and(|f| f.offset != 0) {
        return None;
    }
    match with {
        RejectWith::TcpReset => reset(d),
        RejectWith::Unreachable(code) => unreachable(d, code, host, forwarded),
    }
}

/// `ip_decrease_ttl`: the TTL (or hop limit) one lower, the IPv4 header checksum with it.
pub fn decrement_ttl(ip: &mut [u8], family: Family) {
    match family {
        Family::V4 if ip.len() >= 20 => {
            ip[8] = ip[8].saturating_sub(1);
            let ihl = (usize::from(ip[0] & 0x0f) * 4).clamp(20, ip.len());
            ip[10] = 0;
            ip[11] = 0;
            let c = checksum::finish(checksum::sum(&ip[..ihl], 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        Family::V6 if ip.len() >= 40 => ip[7] = ip[7].saturating_sub(1),
        _ => {}
    }
}

fn ip_header(
    family: Family,
    src: Addr,
    dst: Addr,
    proto: u8,
    payload: usize,
    tos: u8,
    df: bool,
) -> Vec<u8> {
    match family {
        Family::V4 => {
            let mut h = vec![
                0x45,
                tos,
                0,
                0,
                0,
                0,
                if df { 0x40 } else { 0 },
                0,
                TTL,
                proto,
                0,
                0,
            ];
            h[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
            h.extend_from_slice(&src.0[..4]);
            h.extend_from_slice(&dst.0[..4]);
            let c = checksum::finish(checksum::sum(&h, 0));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        }
        Family::V6 => {
            let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, TTL];
            h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
            h.extend_from_slice(&src.0);
            h.extend_from_slice(&dst.0);
            h
        }
    }
}

fn reset(d: &Datagram<'_>) -> Option<Vec<u8>> {
    if d.proto != proto::TCP {
        return None;
    }
    let t = TcpView::new(d.l4())?;
    if t.flags().rst() || !checksum::verify(d.family, d.src, d.dst, proto::TCP, d.l4(), true) {
        return None;
    }
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&t.dst_port().to_be_bytes());
    tcp[2..4].copy_from_slice(&t.src_port().to_be_bytes());
    tcp[12] = 5 << 4;
    if t.flags().ack() {
        tcp[4..8].copy_from_slice(&t.ack().to_be_bytes());
        tcp[13] = 0x04;
    } else {
        tcp[8..12].copy_from_slice(&t.end().to_be_bytes());
        tcp[13] = 0x14;
    }
    let acc = checksum::pseudo_header(d.family, d.dst, d.src, proto::TCP, 20);
    let c = checksum::finish(checksum::sum(&tcp, acc));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut out = ip_header(d.family, d.dst, d.src, proto::TCP, 20, 0, true);
    out.extend_from_slice(&tcp);
    Some(out)
}

fn unreachable(d: &Datagram<'_>, code: u8, host: &Host, forwarded: bool) -> Option<Vec<u8>> {
    if d.is_icmp() {
        let ty = *d.l4().first()?;
        let is_error = match d.family {
            Family::V4 => matches!(ty, 3 | 4 | 5 | 11 | 12),
            Family::V6 => ty < 128,
        };
        if is_error {
            return None;
        }
    }
    let src = if host.is_local(d.dst, d.family) {
        d.dst
    } else {
        host.source_toward(d.src, d.family)?
    };
    let (ty, proto_no, max, tos) = match d.family {
        Family::V4 => (3u8, proto::ICMP, 576usize, (d.tos & 0x1e) | 0xc0),
        Family::V6 => (1u8, proto::ICMPV6, 1280usize, 0),
    };
    let ip_len = if d.family == Family::V4 { 20 } else { 40 };
    let quoted = &d.bytes[..d.bytes.len().min(max - ip_len - 8)];
    let mut icmp = vec![ty, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    if forwarded {
        decrement_ttl(&mut icmp[8..], d.family);
    }
    let acc = if d.family == Family::V6 {
        checksum::pseudo_header(d.family, src, d.src, proto_no, icmp.len() as u32)
    } else {
        0
    };
    let c = checksum::finish(checksum::sum(&icmp, acc));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut out = ip_header(d.family, src, d.src, proto_no, icmp.len(), tos, false);
    out.extend_from_slice(&icmp);
    Some(out)
}
