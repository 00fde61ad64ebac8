//! The FTP helper (`nf_conntrack_ftp.c`) and its NAT half (`nf_nat_ftp.c`).
//!
//! The helper reads a control connection's segments that start a line: `PORT` and `EPRT`
//! from the client, the `227` and `229` answers from the server, each matched at the start of
//! the segment without regard to case. A segment starts a line when its sequence number is
//! one the helper remembered after a segment that ended in a newline (two a direction, as
//! the kernel keeps), so the first segment of each direction is never read. A command that
//! starts right but does not parse ("partial matching") makes the kernel drop the packet.
//!
//! Under NAT the announced address and port are rewritten to the ones the peer must use
//! ([`nat_text`]), and a change of length shifts the direction's sequence numbers
//! ([`crate::seqadj`]).

use ctrack_packet::tcp::{seq_after, seq_before};
use ctrack_packet::{Addr, Family};

/// Which announcement (`enum nf_ct_ftp_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `PORT h1,h2,h3,h4,p1,p2` from the client.
    Port,
    /// `227 … h1,h2,h3,h4,p1,p2` from the server.
    Pasv,
    /// `EPRT |af|addr|port|` from the client.
    Eprt,
    /// `229 … (|||port|)` from the server.
    Epsv,
}

/// What an FTP command or answer announces, and where in the payload it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announce {
    /// Which form.
    pub kind: Kind,
    /// The address announced; `None` for EPSV, which names only a port.
    pub addr: Option<Addr>,
    /// The port.
    pub port: u16,
    /// Offset of the address and port text in the payload (`matchoff`).
    pub at: usize,
    /// Its length (`matchlen`).
    pub len: usize,
}

/// What the helper made of a segment's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// Nothing announced.
    Nothing,
    /// A command began but did not parse: the kernel drops the packet, for this reason
    /// (as its helper log words it).
    Partial(&'static str),
    /// An announcement.
    Found(Announce),
}

/// Where each direction's lines start (`seq_aft_nl` of `struct nf_ct_ftp_master`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FtpLines {
    seq_aft_nl: [[u32; 2]; 2],
    count: [u8; 2],
}

impl FtpLines {
    /// True when a segment of direction `dir` starting at `seq` starts a line.
    pub fn starts_line(&self, dir: usize, seq: u32) -> bool {
        self.seq_aft_nl[dir][..usize::from(self.count[dir])].contains(&seq)
    }

    /// `update_nl_seq`: a segment of `dir` ended in a newline just before `seq`. The newer of
    /// two remembered positions is kept.
    pub fn ended_line(&mut self, dir: usize, seq: u32) {
        let n = usize::from(self.count[dir]);
        let seen = &mut self.seq_aft_nl[dir];
        if seen[..n].contains(&seq) {
            return;
        }
        if n < 2 {
            seen[n] = seq;
            self.count[dir] += 1;
        } else {
            let oldest = if seq_before(seen[0], seen[1]) { 0 } else { 1 };
            if seq_after(seq, seen[oldest]) {
                seen[oldest] = seq;
            }
        }
    }
}

struct Pattern {
    text: &'static [u8],
    skip: Option<u8>,
    term: u8,
    kind: Kind,
}

const FROM_CLIENT: [Pattern; 2] = [
    Pattern {
        text: b"PORT",
        skip: Some(b' '),
        term: b'\r',
        kind: Kind::Port,
    },
    Pattern {
        text: b"EPRT",
        skip: Some(b' '),
        term: b'\r',
        kind: Kind::Eprt,
    },
];

const FROM_SERVER: [Pattern; 2] = [
    // RFC 1123: the numbers of a 227 answer need no parentheses; the first digit starts them.
    Pattern {
        text: b"227 ",
        skip: None,
        term: 0,
        kind: Kind::Pasv,
    },
    Pattern {
        text: b"229 ",
        skip: Some(b'('),
        term: b')',
        kind: Kind::Epsv,
    },
];

/// Reads a segment's payload as the kernel's helper does: `reply` is the server's direction,
/// `family` the control connection's.
pub fn parse(payload: &[u8], reply: bool, family: Family) -> Parse {
    let patterns = if reply { &FROM_SERVER } else { &FROM_CLIENT };
    for p in patterns {
        match find_pattern(payload, p, family) {
            Parse::Nothing => continue,
            other => return other,
        }
    }
    Parse::Nothing
}

fn find_pattern(data: &[u8], p: &Pattern, family: Family) -> Parse {
    let partial = Parse::Partial(match p.kind {
        Kind::Port => "partial matching of `PORT'",
        Kind::Eprt => "partial matching of `EPRT'",
        Kind::Pasv => "partial matching of `227 '",
        Kind::Epsv => "partial matching of `229 '",
    });
    let plen = p.text.len();
    if data.len() <= plen {
        return if !data.is_empty() && data.eq_ignore_ascii_case(&p.text[..data.len()]) {
            partial
        } else {
            Parse::Nothing
        };
    }
    if !data[..plen].eq_ignore_ascii_case(p.text) {
        return Parse::Nothing;
    }
    let mut at = plen;
    if let Some(skip) = p.skip {
        match data[plen..].iter().position(|&b| b == skip) {
            Some(i) => at = plen + i + 1,
            None => return partial,
        }
    }
    let rest = &data[at..];
    let found = match p.kind {
        Kind::Port => rfc959(rest, p.term).map(|(a, port, len)| (0, Some(a), port, len)),
        Kind::Pasv => {
            // The numbers start at the first digit.
            rest.iter().position(u8::is_ascii_digit).and_then(|skip| {
                rfc959(&rest[skip..], 0).map(|(a, port, len)| (skip, Some(a), port, len))
            })
        }
        Kind::Eprt => eprt(rest, family).map(|(a, port, len)| (0, Some(a), port, len)),
        Kind::Epsv => epsv(rest).map(|(port, len)| (0, None, port, len)),
    };
    match found {
        Some((skip, addr, port, len)) => Parse::Found(Announce {
            kind: p.kind,
            addr,
            port,
            at: at + skip,
            len,
        }),
        None => partial,
    }
}

/// `try_number`: `N` numbers separated by `sep`, ended by `term` (any other character when
/// `term` is 0); the length read, or `None`.
fn numbers<const N: usize>(data: &[u8], sep: u8, term: u8) -> Option<([u32; N], usize)> {
    let mut v = [0u32; N];
    let mut i = 0;
    for (len, &c) in data.iter().enumerate() {
        if c.is_ascii_digit() {
            v[i] = v[i].wrapping_mul(10).wrapping_add(u32::from(c - b'0'));
        } else if c == sep {
            i += 1;
            if i == N {
                return None;
            }
        } else {
            return ((c == term || term == 0) && i == N - 1).then_some((v, len));
        }
    }
    None
}

fn rfc959(data: &[u8], term: u8) -> Option<(Addr, u16, usize)> {
    let (n, len) = numbers::<6>(data, b',', term)?;
    let ip = (n[0] << 24) | (n[1] << 16) | (n[2] << 8) | n[3];
    let port = ((n[4] << 8) | n[5]) as u16;
    Some((Addr::v4(ip.to_be_bytes()), port, len))
}

/// `get_port`: digits from `start` to the delimiter; the length up to and including it.
fn port_until(data: &[u8], start: usize, delim: u8) -> Option<(u16, usize)> {
    let mut port = 0u16;
    for (i, &c) in data.iter().enumerate().skip(start) {
        if c == delim {
            return (port != 0).then_some((port, i + 1));
        }
        if !c.is_ascii_digit() {
            return None;
        }
        port = port.wrapping_mul(10).wrapping_add(u16::from(c - b'0'));
    }
    None
}

fn delimiter(c: u8) -> bool {
    !c.is_ascii_digit() && (33..=126).contains(&c)
}

fn eprt(data: &[u8], family: Family) -> Option<(Addr, u16, usize)> {
    if data.len() <= 3 || !delimiter(data[0]) || data[2] != data[0] {
        return None;
    }
    let delim = data[0];
    let (addr, len) = match (family, data[1]) {
        (Family::V4, b'1') => {
            let (n, len) = numbers::<4>(&data[3..], b'.', delim)?;
            let ip = (n[0] << 24) | (n[1] << 16) | (n[2] << 8) | n[3];
            (Addr::v4(ip.to_be_bytes()), len)
        }
        (Family::V6, b'2') => {
            let len = data[3..].iter().position(|&c| c == delim)?;
            let text = std::str::from_utf8(&data[3..3 + len]).ok()?;
            let a: std::net::Ipv6Addr = text.parse().ok()?;
            (Addr::v6(a.octets()), len)
        }
        _ => return None,
    };
    if len == 0 {
        return None;
    }
    let (port, end) = port_until(data, 3 + len + 1, delim)?;
    Some((addr, port, end))
}

fn epsv(data: &[u8]) -> Option<(u16, usize)> {
    if data.len() <= 3 || !delimiter(data[0]) || data[1] != data[0] || data[2] != data[0] {
        return None;
    }
    port_until(data, 3, data[0])
}

/// The text NAT puts in place of an announcement (`nf_nat_ftp_fmt_cmd`): the address the
/// peer must use and the expected port. IPv6 addresses are written in full, as the kernel's
/// `%pI6` writes them.
pub fn nat_text(kind: Kind, family: Family, addr: Addr, port: u16) -> String {
    let a = &addr.0;
    match (kind, family) {
        (Kind::Port | Kind::Pasv, _) => {
            format!(
                "{},{},{},{},{},{}",
                a[0],
                a[1],
                a[2],
                a[3],
                port >> 8,
                port & 0xff
            )
        }
        (Kind::Eprt, Family::V4) => format!("|1|{}.{}.{}.{}|{port}|", a[0], a[1], a[2], a[3]),
        (Kind::Eprt, Family::V6) => {
            let groups: Vec<String> = a
                .chunks(2)
                .map(|g| format!("{:02x}{:02x}", g[0], g[1]))
                .collect();
            format!("|2|{}|{port}|", groups.join(":"))
        }
        (Kind::Epsv, _) => format!("|||{port}|"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(p: Parse) -> Announce {
        match p {
            Parse::Found(a) => a,
            other => panic!("expected an announcement, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_four_forms_with_their_place() {
        let a = found(parse(b"PORT 10,0,0,2,200,10\r\n", false, Family::V4));
        assert_eq!(
            (a.addr, a.port, a.at, a.len),
            (Some(Addr::v4([10, 0, 0, 2])), 51210, 5, 15)
        );
        let a = found(parse(b"EPRT |2|fd00::1|4000|\r\n", false, Family::V6));
        assert_eq!((a.port, a.at, a.len), (4000, 5, 16));
        assert_eq!(
            a.addr,
            Some(Addr::v6(
                "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
            ))
        );
        let a = found(parse(
            b"227 Entering Passive Mode (10,77,2,2,117,57).\r\n",
            true,
            Family::V4,
        ));
        assert_eq!(
            (a.addr, a.port, a.at, a.len),
            (Some(Addr::v4([10, 77, 2, 2])), 30009, 27, 16)
        );
        let a = found(parse(
            b"229 Entering extended passive mode (|||30009|).\r\n",
            true,
            Family::V4,
        ));
        assert_eq!(
            (a.kind, a.addr, a.port, a.at, a.len),
            (Kind::Epsv, None, 30009, 36, 9)
        );
    }

    #[test]
    fn commands_are_matched_without_regard_to_case() {
        let a = found(parse(b"port 10,0,0,2,0,21\r\n", false, Family::V4));
        assert_eq!(a.port, 21);
        let a = found(parse(b"ePrT |1|10.0.0.2|2121|\r\n", false, Family::V4));
        assert_eq!((a.addr, a.port), (Some(Addr::v4([10, 0, 0, 2])), 2121));
    }

    #[test]
    fn a_227_without_parentheses_is_read() {
        let a = found(parse(b"227 =10,77,2,2,117,57\r\n", true, Family::V4));
        assert_eq!(a.port, 30009);
    }

    #[test]
    fn a_command_that_starts_but_does_not_parse_is_partial() {
        assert_eq!(
            parse(b"PORT 10,0,0,2,200", false, Family::V4),
            Parse::Partial("partial matching of `PORT'")
        );
        assert_eq!(
            parse(b"PORT x\r\n", false, Family::V4),
            Parse::Partial("partial matching of `PORT'")
        );
        assert_eq!(
            parse(b"PO", false, Family::V4),
            Parse::Partial("partial matching of `PORT'")
        );
        assert_eq!(
            parse(b"EPRT |2|fd00::1|4000|\r\n", false, Family::V4),
            Parse::Partial("partial matching of `EPRT'")
        );
    }

    #[test]
    fn other_lines_announce_nothing() {
        assert_eq!(parse(b"227 hello\r\n", false, Family::V4), Parse::Nothing);
        assert_eq!(
            parse(b"226 Transfer complete.\r\n", true, Family::V4),
            Parse::Nothing
        );
        assert_eq!(
            parse(b"USER anonymous\r\n", false, Family::V4),
            Parse::Nothing
        );
    }

    #[test]
    fn lines_start_after_a_newline_and_the_newer_two_are_kept() {
        let mut l = FtpLines::default();
        assert!(
            !l.starts_line(0, 100),
            "the first segment starts no known line"
        );
        l.ended_line(0, 100);
        l.ended_line(0, 200);
        l.ended_line(0, 300);
        assert!(!l.starts_line(0, 100) && l.starts_line(0, 200) && l.starts_line(0, 300));
        assert!(!l.starts_line(1, 300), "each direction has its own");
    }

    #[test]
    fn nat_text_is_the_kernels() {
        let v4 = Addr::v4([192, 0, 2, 10]);
        assert_eq!(
            nat_text(Kind::Port, Family::V4, v4, 30009),
            "192,0,2,10,117,57"
        );
        assert_eq!(
            nat_text(Kind::Eprt, Family::V4, v4, 30009),
            "|1|192.0.2.10|30009|"
        );
        let v6 = Addr::v6("fd77:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(
            nat_text(Kind::Eprt, Family::V6, v6, 40000),
            "|2|fd77:0002:0000:0000:0000:0000:0000:0001|40000|"
        );
        assert_eq!(nat_text(Kind::Epsv, Family::V6, v6, 40000), "|||40000|");
    }
}
