//! Expectations and the FTP helper: connections announced in a control connection's
//! payload (`nf_conntrack_expect.c`, `nf_conntrack_ftp.c`).
//!
//! The FTP helper reads `PORT` and `EPRT` from the client and the `227` and `229` answers
//! from the server, at the start of a segment's payload and only in complete lines, and
//! expects one data connection per control connection (a newer one replaces the older) for
//! five minutes. A new connection that matches an expectation (any source port) is RELATED,
//! its master the control connection.

use crate::conn::{Conn, HelperName};
use ctrack_packet::{Addr, Family, Tuple};
use std::fmt::Write;

/// How long an expectation waits: five minutes for both the FTP and TFTP helpers.
pub const EXPECT_TIMEOUT_NS: u64 = 300 * 1_000_000_000;

/// An expected connection (`struct nf_conntrack_expect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// The expected connection's original tuple; its source port is a wildcard.
    pub tuple: Tuple,
    /// The master's original tuple.
    pub master: Tuple,
    /// The master's zone.
    pub zone: u16,
    /// When it expires (ns).
    pub deadline: u64,
    /// The helper that made it.
    pub helper: HelperName,
    /// The expected connection takes its master's NAT binding (`nf_nat_follow_master`, set by
    /// the NAT half of a helper when the master is translated).
    pub follow_master: bool,
}

impl Expectation {
    /// True when a new connection's tuple is the expected one.
    pub fn matches(&self, t: &Tuple, zone: u16) -> bool {
        self.zone == zone
            && self.tuple.family == t.family
            && self.tuple.proto == t.proto
            && self.tuple.src == t.src
            && self.tuple.dst == t.dst
            && self.tuple.dst_port == t.dst_port
    }

    /// One line of `/proc/net/nf_conntrack_expect`.
    pub fn proc_line(&self, now: u64) -> String {
        let t = &self.tuple;
        let mut s = String::new();
        let _ = write!(
            s,
            "{} l3proto = {} proto={} src={} dst={} sport=0 dport={} {}",
            self.deadline.saturating_sub(now) / 1_000_000_000,
            t.family.number(),
            t.proto,
            t.src.display(t.family),
            t.dst.display(t.family),
            t.dst_port,
            self.helper.as_str()
        );
        s
    }

    /// One line of `conntrack -L expect`.
    pub fn conntrack_line(&self, now: u64) -> String {
        let t = &self.tuple;
        let m = &self.master;
        let full = match t.family {
            Family::V4 => "255.255.255.255",
            Family::V6 => "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        };
        format!(
            "{} proto={} src={} dst={} sport=0 dport={} mask-src={full} mask-dst={full} sport=0 dport=65535 master-src={} master-dst={} sport={} dport={} class=0 helper={}",
            self.deadline.saturating_sub(now) / 1_000_000_000,
            t.proto,
            t.src.display(t.family),
            t.dst.display(t.family),
            t.dst_port,
            m.src.display(m.family),
            m.dst.display(m.family),
            m.src_port,
            m.dst_port,
            self.helper.as_str()
        )
    }
}

/// What an FTP command or answer announces: address (when it gives one) and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announce {
    /// The address announced; `None` for EPSV, which names only a port.
    pub addr: Option<Addr>,
    /// The port.
    pub port: u16,
}

fn rfc959(s: &str) -> Option<Announce> {
    // h1,h2,h3,h4,p1,p2
    let nums: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>().ok().filter(|&n| n <= 255))
        .collect::<Option<Vec<_>>>()?;
    if nums.len() != 6 {
        return None;
    }
    Some(Announce {
        addr: Some(Addr::v4([
            nums[0] as u8,
            nums[1] as u8,
            nums[2] as u8,
            nums[3] as u8,
        ])),
        port: (nums[4] * 256 + nums[5]) as u16,
    })
}

fn eprt(s: &str) -> Option<Announce> {
    // |1|addr|port| or |2|addr|port| with any delimiter.
    let d = s.chars().next()?;
    let parts: Vec<&str> = s.split(d).collect();
    if parts.len() < 5 {
        return None;
    }
    let addr = match parts[1] {
        "1" => Addr::v4(parts[2].parse::<std::net::Ipv4Addr>().ok()?.octets()),
        "2" => Addr::v6(parts[2].parse::<std::net::Ipv6Addr>().ok()?.octets()),
        _ => return None,
    };
    Some(Announce {
        addr: Some(addr),
        port: parts[3].parse().ok()?,
    })
}

fn epsv(s: &str) -> Option<Announce> {
    // (|||port|)
    let inner = s.split('(').nth(1)?.split(')').next()?;
    let d = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(d).collect();
    Some(Announce {
        addr: None,
        port: parts.get(3)?.parse().ok()?,
    })
}

/// Reads an FTP command (`reply == false`) or answer at the start of `payload`, as the
/// kernel's helper does: the whole line must be there.
pub fn ftp_announce(payload: &[u8], reply: bool) -> Option<Announce> {
    let end = payload
        .windows(2)
        .position(|w| w == b"\r\n")
        .or_else(|| payload.iter().position(|&b| b == b'\n'))?;
    let line = std::str::from_utf8(&payload[..end]).ok()?;
    if !reply {
        if let Some(rest) = line
            .strip_prefix("PORT ")
            .or_else(|| line.strip_prefix("port "))
        {
            return rfc959(rest.trim());
        }
        if let Some(rest) = line
            .strip_prefix("EPRT ")
            .or_else(|| line.strip_prefix("eprt "))
        {
            return eprt(rest.trim());
        }
        None
    } else if let Some(rest) = line.strip_prefix("227 ") {
        let inner = rest
            .split('(')
            .nth(1)
            .map(|x| x.split(')').next().unwrap_or(x))
            .unwrap_or(rest);
        rfc959(inner)
    } else if let Some(rest) = line.strip_prefix("229 ") {
        epsv(rest)
    } else {
        None
    }
}

/// The expectation a TFTP request makes (`tftp_help`): the server answers from another
/// port, so any source port of the server's address to the client's port is expected.
pub fn tftp_expectation(c: &Conn, dir: usize, payload: &[u8], now: u64) -> Option<Expectation> {
    let helper = c.helper?;
    if helper.as_str() != "tftp" || dir != 0 {
        return None;
    }
    // Read (1) and write (2) requests.
    let op = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    if op != 1 && op != 2 {
        return None;
    }
    let reply = c.tuple[1];
    Some(Expectation {
        tuple: Tuple {
            src: reply.src,
            dst: reply.dst,
            src_port: 0,
            dst_port: reply.dst_port,
            proto: ctrack_packet::proto::UDP,
            family: reply.family,
        },
        master: c.tuple[0],
        zone: c.zone,
        deadline: now + EXPECT_TIMEOUT_NS,
        helper,
        // nf_nat_tftp: the answer comes back to the translated client, which it must reach.
        follow_master: c.is_translated(),
    })
}

/// The expectation an FTP control connection's packet makes, if any.
pub fn ftp_expectation(c: &Conn, dir: usize, payload: &[u8], now: u64) -> Option<Expectation> {
    let helper = c.helper?;
    if helper.as_str() != "ftp" {
        return None;
    }
    let a = ftp_announce(payload, dir == 1)?;
    let sender = c.tuple[dir].src;
    let family = c.tuple[0].family;
    let addr = a.addr.unwrap_or(sender);
    // An IPv4 address other than the sender's is not recorded (a server behind NAT that
    // names another address).
    if family == Family::V4 && addr != sender {
        return None;
    }
    if family == Family::V4 && a.addr.is_some_and(|x| x.0[4..] != [0; 12]) {
        return None;
    }
    let peer = c.tuple[1 - dir].src;
    Some(Expectation {
        tuple: Tuple {
            src: peer,
            dst: addr,
            src_port: 0,
            dst_port: a.port,
            proto: ctrack_packet::proto::TCP,
            family,
        },
        master: c.tuple[0],
        zone: c.zone,
        deadline: now + EXPECT_TIMEOUT_NS,
        helper,
        // The FTP command's address is not rewritten under NAT, so nothing to follow.
        follow_master: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_four_forms() {
        assert_eq!(
            ftp_announce(b"PORT 10,0,0,2,200,10\r\n", false),
            Some(Announce {
                addr: Some(Addr::v4([10, 0, 0, 2])),
                port: 51210
            })
        );
        assert_eq!(
            ftp_announce(b"EPRT |2|fd00::1|4000|\r\n", false).map(|a| a.port),
            Some(4000)
        );
        assert_eq!(
            ftp_announce(b"227 Entering Passive Mode (10,77,2,2,117,57).\r\n", true),
            Some(Announce {
                addr: Some(Addr::v4([10, 77, 2, 2])),
                port: 30009
            })
        );
        assert_eq!(
            ftp_announce(b"229 Entering extended passive mode (|||30009|).\r\n", true),
            Some(Announce {
                addr: None,
                port: 30009
            })
        );
        assert_eq!(
            ftp_announce(b"PORT 10,0,0,2,200", false),
            None,
            "an incomplete line"
        );
        assert_eq!(
            ftp_announce(b"227 hello\r\n", false),
            None,
            "answers only from the server"
        );
    }
}
