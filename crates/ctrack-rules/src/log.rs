//! The kernel log lines of `-j LOG` (`nf_log_syslog`): the same fields in the same order,
//! so a replay's lines compare with `dmesg`.

use crate::ctx::PacketCtx;
use crate::target::Log;
use ctrack_packet::{Addr, Family};
use std::fmt::Write;

const TCPSEQ: usize = 0;
const TCPOPT: usize = 1;
const IPOPT: usize = 2;
const MACDECODE: usize = 4;

/// One LOG line as `dmesg` shows it after the timestamp (with the kernel's trailing space).
pub fn line(l: &Log, p: &PacketCtx<'_, '_>) -> String {
    let mut m = String::with_capacity(256);
    if let Some(prefix) = &l.prefix {
        m.push_str(prefix);
    }
    let _ = write!(m, "IN={} OUT={} ", p.iif, p.oif);
    if !p.iif.is_empty() {
        if let Some(h) = p.mac_header {
            if l.flags[MACDECODE] {
                let mac = |b: &[u8]| {
                    b.iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                };
                let _ = write!(
                    m,
                    "MACSRC={} MACDST={} MACPROTO={:04x} ",
                    mac(&h[6..12]),
                    mac(&h[0..6]),
                    u16::from_be_bytes([h[12], h[13]])
                );
            } else {
                m.push_str("MAC=");
                for (i, b) in h.iter().enumerate() {
                    let _ = write!(m, "{b:02x}{}", if i == 13 { ' ' } else { ':' });
                }
            }
        }
    }
    // The TTL as the hook sees it: lowered already when forwarding.
    let bytes = p.packet.bytes;
    let ttl = Some(p.packet.ttl);
    match p.family() {
        Family::V4 => ipv4(&mut m, bytes, &l.flags, ttl),
        Family::V6 => ipv6(&mut m, bytes, &l.flags, ttl),
    }
    if p.mark != 0 {
        let _ = write!(m, "MARK=0x{:x} ", p.mark);
    }
    m
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn incomplete(m: &mut String, have: usize) {
    let _ = write!(m, "INCOMPLETE [{have} bytes] ");
}

/// `ttl` is the packet's own (outer) TTL; `None` for a packet quoted in an ICMP error.
fn ipv4(m: &mut String, b: &[u8], flags: &[bool; 5], ttl: Option<u8>) {
    let inner = ttl.is_none();
    if b.len() < 20 {
        let _ = write!(m, "TRUNCATED");
        return;
    }
    let src = Addr::v4([b[12], b[13], b[14], b[15]]).to_ip(Family::V4);
    let dst = Addr::v4([b[16], b[17], b[18], b[19]]).to_ip(Family::V4);
    let _ = write!(m, "SRC={src} DST={dst} ");
    let fo = be16(b, 6).unwrap_or(0);
    let _ = write!(
        m,
        "LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
        be16(b, 2).unwrap_or(0),
        b[1] & 0x1e,
        b[1] & 0xe0,
        ttl.unwrap_or(b[8]),
        be16(b, 4).unwrap_or(0)
    );
    if fo & 0x8000 != 0 {
        m.push_str("CE ");
    }
    if fo & 0x4000 != 0 {
        m.push_str("DF ");
    }
    if fo & 0x2000 != 0 {
        m.push_str("MF ");
    }
    let offset = fo & 0x1fff;
    if offset != 0 {
        let _ = write!(m, "FRAG:{offset} ");
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    if flags[IPOPT] && ihl > 20 {
        m.push_str("OPT (");
        for x in b.get(20..ihl).unwrap_or(&[]) {
            let _ = write!(m, "{x:02X}");
        }
        m.push_str(") ");
    }
    let l4 = b.get(ihl..).unwrap_or(&[]);
    let frag = offset != 0;
    match b[9] {
        6 => tcp(m, l4, frag, flags),
        17 | 136 => udp(m, l4, frag, b[9] == 136),
        1 => {
            m.push_str("PROTO=ICMP ");
            if frag {
                return;
            }
            if l4.len() < 4 {
                incomplete(m, l4.len());
                return;
            }
            let (ty, code) = (l4[0], l4[1]);
            let _ = write!(m, "TYPE={ty} CODE={code} ");
            let required = match ty {
                0 | 8 | 12 | 5 | 3 | 4 | 11 => 8,
                13 | 14 => 20,
                17 | 18 => 12,
                _ => 0,
            };
            if required > 0 && l4.len() < required {
                incomplete(m, l4.len());
                return;
            }
            match ty {
                0 | 8 => {
                    let _ = write!(
                        m,
                        "ID={} SEQ={} ",
                        be16(l4, 4).unwrap_or(0),
                        be16(l4, 6).unwrap_or(0)
                    );
                }
                12 => {
                    let _ = write!(m, "PARAMETER={} ", l4[4]);
                }
                5 | 3 | 4 | 11 => {
                    if ty == 5 {
                        let _ = write!(
                            m,
                            "GATEWAY={} ",
                            Addr::v4([l4[4], l4[5], l4[6], l4[7]]).to_ip(Family::V4)
                        );
                    }
                    if !inner {
                        m.push('[');
                        ipv4(m, &l4[8..], flags, None);
                        m.push_str("] ");
                    }
                    if ty == 3 && code == 4 {
                        let _ = write!(m, "MTU={} ", be16(l4, 6).unwrap_or(0));
                    }
                }
                _ => {}
            }
        }
        50 | 51 => {
            let name = if b[9] == 50 { "ESP" } else { "AH" };
            let _ = write!(m, "PROTO={name} ");
            if frag {
                return;
            }
            let at = if b[9] == 50 { 0 } else { 4 };
            match be32(l4, at) {
                Some(spi) => {
                    let _ = write!(m, "SPI=0x{spi:x} ");
                }
                None => incomplete(m, l4.len()),
            }
        }
        p => {
            let _ = write!(m, "PROTO={p} ");
        }
    }
}

fn tcp(m: &mut String, l4: &[u8], frag: bool, flags: &[bool; 5]) {
    m.push_str("PROTO=TCP ");
    if frag {
        return;
    }
    if l4.len() < 20 {
        incomplete(m, l4.len());
        return;
    }
    let _ = write!(
        m,
        "SPT={} DPT={} ",
        be16(l4, 0).unwrap_or(0),
        be16(l4, 2).unwrap_or(0)
    );
    if flags[TCPSEQ] {
        let _ = write!(
            m,
            "SEQ={} ACK={} ",
            be32(l4, 4).unwrap_or(0),
            be32(l4, 8).unwrap_or(0)
        );
    }
    let _ = write!(m, "WINDOW={} ", be16(l4, 14).unwrap_or(0));
    let _ = write!(m, "RES=0x{:02x} ", (l4[12] & 0x0f) << 2);
    for (bit, name) in [
        (0x80, "CWR"),
        (0x40, "ECE"),
        (0x20, "URG"),
        (0x10, "ACK"),
        (0x08, "PSH"),
        (0x04, "RST"),
        (0x02, "SYN"),
        (0x01, "FIN"),
    ] {
        if l4[13] & bit != 0 {
            let _ = write!(m, "{name} ");
        }
    }
    let _ = write!(m, "URGP={} ", be16(l4, 18).unwrap_or(0));
    let doff = usize::from(l4[12] >> 4) * 4;
    if flags[TCPOPT] && doff > 20 {
        m.push_str("OPT (");
        for x in l4.get(20..doff).unwrap_or(&[]) {
            let _ = write!(m, "{x:02X}");
        }
        m.push_str(") ");
    }
}

fn udp(m: &mut String, l4: &[u8], frag: bool, lite: bool) {
    m.push_str(if lite { "PROTO=UDPLITE " } else { "PROTO=UDP " });
    if frag {
        return;
    }
    if l4.len() < 8 {
        incomplete(m, l4.len());
        return;
    }
    let _ = write!(
        m,
        "SPT={} DPT={} LEN={} ",
        be16(l4, 0).unwrap_or(0),
        be16(l4, 2).unwrap_or(0),
        be16(l4, 4).unwrap_or(0)
    );
}

fn full_v6(a: &[u8]) -> String {
    a.chunks(2)
        .map(|c| format!("{:02x}{:02x}", c[0], c.get(1).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(":")
}

/// `hop_limit` is the packet's own; `None` for a packet quoted in an ICMPv6 error.
fn ipv6(m: &mut String, b: &[u8], flags: &[bool; 5], hop_limit: Option<u8>) {
    let inner = hop_limit.is_none();
    if b.len() < 40 {
        m.push_str("TRUNCATED");
        return;
    }
    let _ = write!(m, "SRC={} DST={} ", full_v6(&b[8..24]), full_v6(&b[24..40]));
    let w = be32(b, 0).unwrap_or(0);
    let _ = write!(
        m,
        "LEN={} TC={} HOPLIMIT={} FLOWLBL={} ",
        usize::from(be16(b, 4).unwrap_or(0)) + 40,
        (w & 0x0ff0_0000) >> 20,
        hop_limit.unwrap_or(b[7]),
        w & 0x000f_ffff
    );
    let mut next = b[6];
    let mut off = 40;
    while matches!(next, 0 | 43 | 60) {
        let Some(h) = b.get(off..off + 2) else {
            incomplete(m, b.len().saturating_sub(off));
            return;
        };
        if flags[IPOPT] {
            m.push_str("OPT ( ) ");
        }
        next = h[0];
        off += (usize::from(h[1]) + 1) * 8;
    }
    let l4 = b.get(off..).unwrap_or(&[]);
    match next {
        6 => tcp(m, l4, false, flags),
        17 | 136 => udp(m, l4, false, next == 136),
        58 => {
            m.push_str("PROTO=ICMPv6 ");
            if l4.len() < 8 {
                incomplete(m, l4.len());
                return;
            }
            let (ty, code) = (l4[0], l4[1]);
            let _ = write!(m, "TYPE={ty} CODE={code} ");
            match ty {
                128 | 129 => {
                    let _ = write!(
                        m,
                        "ID={} SEQ={} ",
                        be16(l4, 4).unwrap_or(0),
                        be16(l4, 6).unwrap_or(0)
                    );
                }
                4 => {
                    let _ = write!(m, "POINTER={:08x} ", be32(l4, 4).unwrap_or(0));
                }
                1..=3 => {
                    if !inner {
                        m.push('[');
                        ipv6(m, &l4[8..], flags, None);
                        m.push_str("] ");
                    }
                    if ty == 2 {
                        let _ = write!(m, "MTU={} ", be32(l4, 4).unwrap_or(0));
                    }
                }
                _ => {}
            }
        }
        p => {
            let _ = write!(m, "PROTO={p} ");
        }
    }
}
