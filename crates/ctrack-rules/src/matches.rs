//! Match extensions: options as iptables reads them, canonical form as iptables-save
//! prints it, and evaluation against a packet.

use crate::addr::{parse_addr, Net};
use crate::args::{bounded, number, port_range, value_mask, Args};
use crate::ctx::{addrtype, PacketCtx};
use crate::error::{OptError, OptResult};
use crate::lex::save_string;
use ctrack_conntrack::status::ips;
use ctrack_conntrack::{CtInfo, PacketState};
use ctrack_packet::{proto, Addr, Family, TcpView};
use std::fmt::Write;

/// `[!] from:to` on ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Lowest.
    pub lo: u16,
    /// Highest.
    pub hi: u16,
    /// Inverted.
    pub inv: bool,
}

impl Ports {
    fn matches(&self, p: u16) -> bool {
        (self.lo <= p && p <= self.hi) != self.inv
    }
    fn save(&self, out: &mut String, name: &str) {
        let inv = if self.inv { " !" } else { "" };
        if self.lo == self.hi {
            let _ = write!(out, "{inv} --{name} {}", self.lo);
        } else {
            let _ = write!(out, "{inv} --{name} {}:{}", self.lo, self.hi);
        }
    }
}

/// TCP flag names in the order iptables prints them.
const TCP_FLAG_NAMES: [(&str, u8); 6] = [
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
    ("URG", 0x20),
];

fn parse_tcp_flags(opt: &str, s: &str) -> OptResult<u8> {
    let mut v = 0u8;
    for f in s.split(',') {
        v |= match f.to_ascii_uppercase().as_str() {
            "ALL" => 0x3f,
            "NONE" => 0,
            name => TCP_FLAG_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| *b)
                .ok_or_else(|| OptError::opt(opt, format!("unknown TCP flag `{f}'")))?,
        };
    }
    Ok(v)
}

fn save_tcp_flags(out: &mut String, mut flags: u8) {
    if flags == 0 {
        out.push_str("NONE");
        return;
    }
    let mut first = true;
    while flags != 0 {
        let (name, bit) = TCP_FLAG_NAMES
            .iter()
            .find(|(_, b)| flags & b != 0)
            .expect("a flag bit");
        if !first {
            out.push(',');
        }
        out.push_str(name);
        first = false;
        flags &= !bit;
    }
}

/// ICMP type names of iptables (`--icmp-type`), as (name, type, code range).
const ICMP_TYPES: &[(&str, u8, u8, u8)] = &[
    ("any", 255, 0, 255),
    ("echo-reply", 0, 0, 255),
    ("pong", 0, 0, 255),
    ("destination-unreachable", 3, 0, 255),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 255),
    ("redirect", 5, 0, 255),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 255),
    ("ping", 8, 0, 255),
    ("router-advertisement", 9, 0, 255),
    ("router-solicitation", 10, 0, 255),
    ("time-exceeded", 11, 0, 255),
    ("ttl-exceeded", 11, 0, 255),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 255),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 255),
    ("timestamp-reply", 14, 0, 255),
    ("address-mask-request", 17, 0, 255),
    ("address-mask-reply", 18, 0, 255),
];

const ICMP6_TYPES: &[(&str, u8, u8, u8)] = &[
    ("destination-unreachable", 1, 0, 255),
    ("no-route", 1, 0, 0),
    ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2),
    ("address-unreachable", 1, 3, 3),
    ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5),
    ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 255),
    ("time-exceeded", 3, 0, 255),
    ("ttl-exceeded", 3, 0, 255),
    ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 255),
    ("bad-header", 4, 0, 0),
    ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 255),
    ("ping", 128, 0, 255),
    ("echo-reply", 129, 0, 255),
    ("pong", 129, 0, 255),
    ("router-solicitation", 133, 0, 255),
    ("router-advertisement", 134, 0, 255),
    ("neighbour-solicitation", 135, 0, 255),
    ("neighbor-solicitation", 135, 0, 255),
    ("neighbour-advertisement", 136, 0, 255),
    ("neighbor-advertisement", 136, 0, 255),
    ("redirect", 137, 0, 255),
];

/// `--icmp-type` / `--icmpv6-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpType {
    /// Type (255: any, ICMPv4 only).
    pub ty: u8,
    /// Lowest code.
    pub code_lo: u8,
    /// Highest code.
    pub code_hi: u8,
    /// Inverted.
    pub inv: bool,
}

fn parse_icmp_type(opt: &str, s: &str, v6: bool) -> OptResult<(u8, u8, u8)> {
    let table = if v6 { ICMP6_TYPES } else { ICMP_TYPES };
    if let Some(&(_, t, lo, hi)) = table.iter().find(|(n, ..)| n.eq_ignore_ascii_case(s)) {
        return Ok((t, lo, hi));
    }
    let (t, c) = match s.split_once('/') {
        Some((t, c)) => (t, Some(c)),
        None => (s, None),
    };
    let t = bounded(opt, t, 255)
        .map_err(|_| OptError::opt(opt, format!("invalid ICMP type `{s}' specified")))?
        as u8;
    match c {
        Some(c) => {
            let c = bounded(opt, c, 255)? as u8;
            Ok((t, c, c))
        }
        None => Ok((t, 0, 255)),
    }
}

/// `-m conntrack`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConntrackMatch {
    /// `--ctstate` bits and inversion.
    pub state: Option<(u16, bool)>,
    /// `--ctproto`.
    pub proto: Option<(u8, bool)>,
    /// `--ctorigsrc`, `--ctorigdst`, `--ctreplsrc`, `--ctrepldst`.
    pub addrs: [Option<(Net, bool)>; 4],
    /// `--ctorigsrcport`, `--ctorigdstport`, `--ctreplsrcport`, `--ctrepldstport`.
    pub ports: [Option<Ports>; 4],
    /// `--ctstatus`.
    pub status: Option<(u32, bool)>,
    /// `--ctexpire`.
    pub expire: Option<(u32, u32, bool)>,
    /// `--ctdir`: true for REPLY.
    pub dir: Option<bool>,
}

/// State bits of `--state`/`--ctstate`, in the order iptables prints them.
pub const STATE_NAMES: [(&str, u16); 7] = [
    ("INVALID", 1 << 0),
    ("NEW", 1 << 1),
    ("RELATED", 1 << 2),
    ("ESTABLISHED", 1 << 3),
    ("UNTRACKED", 1 << 4),
    ("SNAT", 1 << 5),
    ("DNAT", 1 << 6),
];

const STATUS_NAMES: [(&str, u32); 5] = [
    ("NONE", 0),
    ("EXPECTED", ips::EXPECTED),
    ("SEEN_REPLY", ips::SEEN_REPLY),
    ("ASSURED", ips::ASSURED),
    ("CONFIRMED", ips::CONFIRMED),
];

fn parse_states(opt: &str, s: &str, ct: bool) -> OptResult<u16> {
    let mut v = 0;
    for w in s.split(',') {
        let bit = STATE_NAMES
            .iter()
            .take(if ct { 7 } else { 5 })
            .find(|(n, _)| n.eq_ignore_ascii_case(w))
            .map(|(_, b)| *b)
            .ok_or_else(|| OptError::opt(opt, format!("Bad ctstate \"{w}\"")))?;
        v |= bit;
    }
    Ok(v)
}

fn save_names<T: Copy + std::ops::BitAnd<Output = T> + PartialEq + Default>(
    out: &mut String,
    names: &[(&str, T)],
    v: T,
) {
    let mut first = true;
    for (n, b) in names {
        if *b != T::default() && v & *b == *b {
            if !first {
                out.push(',');
            }
            out.push_str(n);
            first = false;
        }
    }
    if first {
        out.push_str(names[0].0);
    }
}

/// The state bit of a packet for `--state`/`--ctstate` (without SNAT/DNAT).
pub fn state_bit(s: PacketState) -> u16 {
    match s {
        PacketState::Invalid => 1,
        PacketState::Untracked => 1 << 4,
        PacketState::Tracked(CtInfo::New) => 1 << 1,
        PacketState::Tracked(CtInfo::Related | CtInfo::RelatedReply) => 1 << 2,
        PacketState::Tracked(CtInfo::Established | CtInfo::EstablishedReply) => 1 << 3,
    }
}

/// The state bits `--state` tests, and with `nat` the SNAT and DNAT bits `--ctstate` adds
/// for a connection translated so.
pub(crate) fn state_bits(p: &PacketCtx<'_, '_>, nat: bool) -> u16 {
    state_bits_of(p.state, p.conn.map_or(0, |c| c.status), nat)
}

/// [`state_bits`] of a packet in state `state` whose connection has the status bits
/// `status` (0 without a connection).
#[inline(always)]
pub(crate) fn state_bits_of(state: PacketState, status: u32, nat: bool) -> u16 {
    let mut bits = state_bit(state);
    if nat {
        if status & ips::SRC_NAT != 0 {
            bits |= 1 << 5;
        }
        if status & ips::DST_NAT != 0 {
            bits |= 1 << 6;
        }
    }
    bits
}

impl ConntrackMatch {
    /// True when `--ctstate` is all it tests, or nothing: no option needs the connection.
    pub(crate) fn tests_state_only(&self) -> bool {
        self.proto.is_none()
            && self.addrs.iter().all(Option::is_none)
            && self.ports.iter().all(Option::is_none)
            && self.status.is_none()
            && self.expire.is_none()
            && self.dir.is_none()
    }
}

/// `-m limit` token bucket, in the kernel's units (`XT_LIMIT_SCALE` = 10000 per second).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Average interval between packets in 1/10000 s.
    pub avg: u32,
    /// Burst.
    pub burst: u32,
    /// Credit left (runtime).
    credit: u64,
    /// Last time credit was added (ns, runtime).
    prev: Option<u64>,
}

const LIMIT_UNITS: [(&str, u32); 4] = [("day", 86400), ("hour", 3600), ("min", 60), ("sec", 1)];

fn parse_rate(opt: &str, s: &str) -> OptResult<u32> {
    let (n, unit) = match s.split_once('/') {
        Some((n, u)) => (n, u),
        None => (s, "sec"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| OptError::opt(opt, format!("bad rate \"{s}\"")))?;
    let secs = match unit {
        u if u.starts_with('s') => 1,
        u if u.starts_with('m') => 60,
        u if u.starts_with('h') => 3600,
        u if u.starts_with('d') => 86400,
        _ => return Err(OptError::opt(opt, format!("bad rate \"{s}\""))),
    };
    if n == 0 {
        return Err(OptError::opt(opt, format!("bad rate \"{s}\"")));
    }
    let avg = 10000 * secs / n;
    if avg == 0 {
        return Err(OptError::opt(opt, format!("Rate too fast \"{s}\"")));
    }
    Ok(avg.min(u64::from(u32::MAX)) as u32)
}

fn save_rate(out: &mut String, period: u32) {
    let mut i = 1;
    while i < LIMIT_UNITS.len() {
        let mult = LIMIT_UNITS[i].1 * 10000;
        if period > mult || mult / period < mult % period {
            break;
        }
        i += 1;
    }
    let (name, secs) = LIMIT_UNITS[i - 1];
    let _ = write!(out, " --limit {}/{}", secs * 10000 / period, name);
}

/// `-m recent` commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecentCmd {
    /// `--set`.
    Set,
    /// `--rcheck`.
    Check,
    /// `--update`.
    Update,
    /// `--remove`.
    Remove,
}

/// `-m recent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recent {
    /// Command.
    pub cmd: Option<RecentCmd>,
    /// Inverted.
    pub inv: bool,
    /// `--seconds`.
    pub seconds: u32,
    /// `--reap`.
    pub reap: bool,
    /// `--hitcount`.
    pub hitcount: u32,
    /// `--rttl`.
    pub rttl: bool,
    /// `--name` (default `DEFAULT`).
    pub name: String,
    /// `--mask`.
    pub mask: Addr,
    /// `--rdest` (else source).
    pub rdest: bool,
}

/// `-m multiport`: which ports (0 source, 1 destination, 2 either), the list of ranges,
/// inverted.
pub type MultiportSpec = (u8, Vec<(u16, u16)>, bool);

/// `--sport`/`--dport` of the tcp and udp matches.
fn parse_ports(
    opt: &str,
    inv: bool,
    args: &mut Args<'_>,
    sport: &mut Option<Ports>,
    dport: &mut Option<Ports>,
) -> OptResult<bool> {
    let slot = match opt {
        "--sport" | "--source-port" => sport,
        "--dport" | "--destination-port" => dport,
        _ => return Ok(false),
    };
    let (lo, hi) = port_range(opt, args.value(opt)?)?;
    *slot = Some(Ports { lo, hi, inv });
    Ok(true)
}

/// One match of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// `-m tcp`.
    Tcp {
        /// `--sport`.
        sport: Option<Ports>,
        /// `--dport`.
        dport: Option<Ports>,
        /// `--tcp-flags mask comp`, inverted.
        flags: Option<(u8, u8, bool)>,
        /// `--tcp-option N`, inverted.
        option: Option<(u8, bool)>,
    },
    /// `-m udp` (and udplite).
    Udp {
        /// `--sport`.
        sport: Option<Ports>,
        /// `--dport`.
        dport: Option<Ports>,
    },
    /// `-m icmp`.
    Icmp(Option<IcmpType>),
    /// `-m icmp6`.
    Icmp6(Option<IcmpType>),
    /// `-m state`.
    State(Option<(u16, bool)>),
    /// `-m conntrack`.
    Conntrack(Box<ConntrackMatch>),
    /// `-m multiport`: which ports (0 source, 1 destination, 2 either), list, inverted.
    Multiport(Option<MultiportSpec>),
    /// `-m comment`.
    Comment(Option<String>),
    /// `-m iprange`: source and destination ranges, inverted.
    IpRange([Option<(Addr, Addr, bool)>; 2]),
    /// `-m mark`: value, mask, inverted.
    Mark(Option<(u32, u32, bool)>),
    /// `-m connmark`.
    ConnMark(Option<(u32, u32, bool)>),
    /// `-m length`.
    Length(Option<(u16, u16, bool)>),
    /// `-m ttl`: operator (0 eq, 1 ne, 2 lt, 3 gt) and value.
    Ttl(Option<(u8, u8)>),
    /// `-m hl`: the same for IPv6.
    Hl(Option<(u8, u8)>),
    /// `-m addrtype`: source and destination types with inversion, limit-iface flags.
    AddrType {
        /// `--src-type`.
        src: Option<(u16, bool)>,
        /// `--dst-type`.
        dst: Option<(u16, bool)>,
        /// `--limit-iface-in`.
        limit_in: bool,
        /// `--limit-iface-out`.
        limit_out: bool,
    },
    /// `-m pkttype`.
    PktType(Option<(u8, bool)>),
    /// `-m tos`: value, mask, inverted.
    Tos(Option<(u8, u8, bool)>),
    /// `-m dscp`.
    Dscp(Option<(u8, bool)>),
    /// `-m helper`.
    Helper(Option<(String, bool)>),
    /// `-m limit`.
    Limit(Limit),
    /// `-m mac`.
    Mac(Option<([u8; 6], bool)>),
    /// `-m connbytes`: from, to, inverted, mode (0 packets, 1 bytes, 2 avgpkt), dir (0 original, 1 reply, 2 both).
    ConnBytes(Option<(u64, u64, bool)>, Option<u8>, Option<u8>),
    /// `-m connlimit`: limit, above (else upto), mask length, by destination, and the
    /// connections it has counted.
    ConnLimit(Option<(u32, bool)>, u8, bool, ConnCount),
    /// `-m recent`.
    Recent(Recent),
}

fn inv_str(inv: bool) -> &'static str {
    if inv {
        " !"
    } else {
        ""
    }
}

impl Match {
    /// True when the match decides alike for every packet of a connection in one direction
    /// and conntrack state, once the connection is confirmed: it reads only the packet's
    /// ports and ICMP type (its tuple), its addresses, the host model, and what the
    /// connection keeps from its start (its tuples, its master's helper). Not the flags,
    /// lengths, TTLs and marks that differ packet by packet, nor the connection's status,
    /// timer, mark and counters that change over its life, nor rate limits and lists.
    pub(crate) fn same_for_a_flow(&self) -> bool {
        match self {
            Match::Tcp { flags, option, .. } => flags.is_none() && option.is_none(),
            Match::Conntrack(c) => c.status.is_none() && c.expire.is_none(),
            Match::Udp { .. }
            | Match::Icmp(_)
            | Match::Icmp6(_)
            | Match::State(_)
            | Match::Multiport(_)
            | Match::Comment(_)
            | Match::IpRange(_)
            | Match::AddrType { .. }
            | Match::PktType(_)
            | Match::Helper(_) => true,
            Match::Mark(_)
            | Match::ConnMark(_)
            | Match::Length(_)
            | Match::Ttl(_)
            | Match::Hl(_)
            | Match::Tos(_)
            | Match::Dscp(_)
            | Match::Limit(_)
            | Match::Mac(_)
            | Match::ConnBytes(..)
            | Match::ConnLimit(..)
            | Match::Recent(_) => false,
        }
    }

    /// A match by its `-m` name, for a family. `None` for an unknown or unsupported match.
    pub fn new(name: &str, family: Family) -> Option<Match> {
        Some(match name {
            "tcp" => Match::Tcp {
                sport: None,
                dport: None,
                flags: None,
                option: None,
            },
            "udp" | "udplite" => Match::Udp {
                sport: None,
                dport: None,
            },
            "icmp" if family == Family::V4 => Match::Icmp(None),
            "icmp6" | "icmpv6" | "ipv6-icmp" if family == Family::V6 => Match::Icmp6(None),
            "state" => Match::State(None),
            "conntrack" => Match::Conntrack(Box::default()),
            "multiport" => Match::Multiport(None),
            "comment" => Match::Comment(None),
            "iprange" => Match::IpRange([None, None]),
            "mark" => Match::Mark(None),
            "connmark" => Match::ConnMark(None),
            "length" => Match::Length(None),
            "ttl" if family == Family::V4 => Match::Ttl(None),
            "hl" if family == Family::V6 => Match::Hl(None),
            "addrtype" => Match::AddrType {
                src: None,
                dst: None,
                limit_in: false,
                limit_out: false,
            },
            "pkttype" => Match::PktType(None),
            "tos" if family == Family::V4 => Match::Tos(None),
            "dscp" => Match::Dscp(None),
            "helper" => Match::Helper(None),
            "limit" => Match::Limit(Limit {
                avg: 10000 * 3600 / 3,
                burst: 5,
                credit: 0,
                prev: None,
            }),
            "mac" => Match::Mac(None),
            "connbytes" => Match::ConnBytes(None, None, None),
            "connlimit" => {
                let mask = if family == Family::V4 { 32 } else { 128 };
                Match::ConnLimit(None, mask, false, ConnCount::default())
            }
            "recent" => Match::Recent(Recent {
                cmd: None,
                inv: false,
                seconds: 0,
                reap: false,
                hitcount: 0,
                rttl: false,
                name: "DEFAULT".into(),
                mask: Addr([0xff; 16]),
                rdest: false,
            }),
            _ => return None,
        })
    }

    /// The name iptables-save prints after `-m`.
    pub fn name(&self) -> &'static str {
        match self {
            Match::Tcp { .. } => "tcp",
            Match::Udp { .. } => "udp",
            Match::Icmp(_) => "icmp",
            Match::Icmp6(_) => "icmp6",
            Match::State(_) => "state",
            Match::Conntrack(_) => "conntrack",
            Match::Multiport(_) => "multiport",
            Match::Comment(_) => "comment",
            Match::IpRange(_) => "iprange",
            Match::Mark(_) => "mark",
            Match::ConnMark(_) => "connmark",
            Match::Length(_) => "length",
            Match::Ttl(_) => "ttl",
            Match::Hl(_) => "hl",
            Match::AddrType { .. } => "addrtype",
            Match::PktType(_) => "pkttype",
            Match::Tos(_) => "tos",
            Match::Dscp(_) => "dscp",
            Match::Helper(_) => "helper",
            Match::Limit(_) => "limit",
            Match::Mac(_) => "mac",
            Match::ConnBytes(..) => "connbytes",
            Match::ConnLimit(..) => "connlimit",
            Match::Recent(_) => "recent",
        }
    }

    /// True when the match depends on connection tracking.
    pub fn needs_conntrack(&self) -> bool {
        matches!(
            self,
            Match::State(_)
                | Match::Conntrack(_)
                | Match::ConnMark(_)
                | Match::Helper(_)
                | Match::ConnBytes(..)
                | Match::ConnLimit(..)
        )
    }

    /// Consumes one option if it belongs to this match; `Ok(false)` if it does not.
    pub fn parse_opt(
        &mut self,
        opt: &str,
        inv: bool,
        args: &mut Args<'_>,
        family: Family,
    ) -> OptResult<bool> {
        let icmp_opt = if matches!(self, Match::Icmp6(_)) {
            "--icmpv6-type"
        } else {
            "--icmp-type"
        };
        let val = |args: &mut Args<'_>| args.value(opt).map(|s| s.to_string());
        match self {
            Match::Tcp {
                sport,
                dport,
                flags,
                option,
            } => match opt {
                "--tcp-flags" => {
                    let mask = parse_tcp_flags(opt, &val(args)?)?;
                    let comp = parse_tcp_flags(opt, &val(args)?)?;
                    *flags = Some((mask, comp, inv));
                }
                "--syn" => *flags = Some((0x17, 0x02, inv)),
                "--tcp-option" => *option = Some((bounded(opt, &val(args)?, 255)? as u8, inv)),
                _ => return parse_ports(opt, inv, args, sport, dport),
            },
            Match::Udp { sport, dport } => return parse_ports(opt, inv, args, sport, dport),
            Match::Icmp(t) | Match::Icmp6(t) => {
                if opt != icmp_opt {
                    return Ok(false);
                }
                let v6 = icmp_opt == "--icmpv6-type";
                if t.is_some() {
                    return Err(OptError::opt(opt, "can only be given once"));
                }
                let (ty, code_lo, code_hi) = parse_icmp_type(opt, &val(args)?, v6)?;
                *t = Some(IcmpType {
                    ty,
                    code_lo,
                    code_hi,
                    inv,
                });
            }
            Match::State(s) => match opt {
                "--state" => *s = Some((parse_states(opt, &val(args)?, false)?, inv)),
                _ => return Ok(false),
            },
            Match::Conntrack(c) => match opt {
                "--ctstate" => c.state = Some((parse_states(opt, &val(args)?, true)?, inv)),
                "--ctproto" => c.proto = Some((parse_proto(opt, &val(args)?)?, inv)),
                "--ctorigsrc" | "--ctorigdst" | "--ctreplsrc" | "--ctrepldst" => {
                    let i = ["--ctorigsrc", "--ctorigdst", "--ctreplsrc", "--ctrepldst"]
                        .iter()
                        .position(|o| *o == opt)
                        .expect("listed");
                    c.addrs[i] = Some((Net::parse(family, &val(args)?, opt)?, inv));
                }
                "--ctorigsrcport" | "--ctorigdstport" | "--ctreplsrcport" | "--ctrepldstport" => {
                    let i = [
                        "--ctorigsrcport",
                        "--ctorigdstport",
                        "--ctreplsrcport",
                        "--ctrepldstport",
                    ]
                    .iter()
                    .position(|o| *o == opt)
                    .expect("listed");
                    let (lo, hi) = port_range(opt, &val(args)?)?;
                    c.ports[i] = Some(Ports { lo, hi, inv });
                }
                "--ctstatus" => {
                    let mut v = 0;
                    for w in val(args)?.split(',') {
                        v |= STATUS_NAMES
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(w))
                            .map(|(_, b)| *b)
                            .ok_or_else(|| OptError::opt(opt, format!("Bad ctstatus \"{w}\"")))?;
                    }
                    c.status = Some((v, inv));
                }
                "--ctexpire" => {
                    let s = val(args)?;
                    let (lo, hi) = match s.split_once(':') {
                        Some((a, b)) => (
                            bounded(opt, a, u64::from(u32::MAX))?,
                            bounded(opt, b, u64::from(u32::MAX))?,
                        ),
                        None => {
                            let n = bounded(opt, &s, u64::from(u32::MAX))?;
                            (n, n)
                        }
                    };
                    c.expire = Some((lo as u32, hi as u32, inv));
                }
                "--ctdir" => {
                    c.dir = Some(match val(args)?.to_ascii_uppercase().as_str() {
                        "ORIGINAL" => false,
                        "REPLY" => true,
                        other => return Err(OptError::opt(opt, format!("Bad ctdir \"{other}\""))),
                    })
                }
                _ => return Ok(false),
            },
            Match::Multiport(m) => {
                let which = match opt {
                    "--sports" | "--source-ports" => 0,
                    "--dports" | "--destination-ports" => 1,
                    "--ports" => 2,
                    _ => return Ok(false),
                };
                let mut list = Vec::new();
                for p in val(args)?.split(',') {
                    list.push(port_range(opt, p)?);
                }
                if list.len() > 15 {
                    return Err(OptError::opt(opt, "too many ports specified"));
                }
                *m = Some((which, list, inv));
            }
            Match::Comment(c) => match opt {
                "--comment" => {
                    let v = val(args)?;
                    if v.len() > 255 {
                        return Err(OptError::opt(opt, "comment is longer than 255 characters"));
                    }
                    *c = Some(v)
                }
                _ => return Ok(false),
            },
            Match::IpRange(r) => {
                let i = match opt {
                    "--src-range" => 0,
                    "--dst-range" => 1,
                    _ => return Ok(false),
                };
                let v = val(args)?;
                let (a, b) = v.split_once('-').ok_or_else(|| {
                    OptError::opt(opt, format!("range `{v}' is not of the form from-to"))
                })?;
                r[i] = Some((
                    parse_addr(family, a, opt)?,
                    parse_addr(family, b, opt)?,
                    inv,
                ));
            }
            Match::Mark(m) | Match::ConnMark(m) => match opt {
                "--mark" => {
                    let (v, k) = value_mask(opt, &val(args)?)?;
                    *m = Some((v, k, inv));
                }
                _ => return Ok(false),
            },
            Match::Length(l) => match opt {
                "--length" => {
                    let s = val(args)?;
                    let (a, b) = match s.split_once(':') {
                        Some((a, b)) => (
                            if a.is_empty() {
                                0
                            } else {
                                bounded(opt, a, 65535)?
                            },
                            if b.is_empty() {
                                65535
                            } else {
                                bounded(opt, b, 65535)?
                            },
                        ),
                        None => {
                            let n = bounded(opt, &s, 65535)?;
                            (n, n)
                        }
                    };
                    *l = Some((a as u16, b as u16, inv));
                }
                _ => return Ok(false),
            },
            Match::Ttl(t) | Match::Hl(t) => {
                let base = if opt.starts_with("--ttl") {
                    "ttl"
                } else {
                    "hl"
                };
                let op = match opt.strip_prefix("--").and_then(|o| o.strip_prefix(base)) {
                    Some("-eq") => {
                        if inv {
                            1
                        } else {
                            0
                        }
                    }
                    Some("-lt") => 2,
                    Some("-gt") => 3,
                    _ => return Ok(false),
                };
                if t.is_some() {
                    return Err(OptError::opt(opt, "only one comparison can be given"));
                }
                *t = Some((op, bounded(opt, &val(args)?, 255)? as u8));
            }
            Match::AddrType {
                src,
                dst,
                limit_in,
                limit_out,
            } => match opt {
                "--src-type" | "--dst-type" => {
                    let mut v = 0;
                    for w in val(args)?.split(',') {
                        v |= addrtype::NAMES
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(w))
                            .map(|(_, b)| *b)
                            .ok_or_else(|| {
                                OptError::opt(opt, format!("addrtype: bad type \"{w}\""))
                            })?;
                    }
                    if opt == "--src-type" {
                        *src = Some((v, inv));
                    } else {
                        *dst = Some((v, inv));
                    }
                }
                "--limit-iface-in" | "--limit-iface-out" if *limit_in || *limit_out => {
                    return Err(OptError::opt(
                        opt,
                        "--limit-iface-in and --limit-iface-out are mutually exclusive",
                    ))
                }
                "--limit-iface-in" => *limit_in = true,
                "--limit-iface-out" => *limit_out = true,
                _ => return Ok(false),
            },
            Match::PktType(p) => match opt {
                "--pkt-type" => {
                    let v = val(args)?;
                    let t = match v.as_str() {
                        "unicast" | "host" => 0,
                        "broadcast" => 1,
                        "multicast" => 2,
                        "otherhost" => 3,
                        _ => return Err(OptError::opt(opt, format!("Bad packet type '{v}'"))),
                    };
                    *p = Some((t, inv));
                }
                _ => return Ok(false),
            },
            Match::Tos(t) => match opt {
                "--tos" => {
                    let v = val(args)?;
                    let (value, mask) = match v.as_str() {
                        "Minimize-Delay" => (0x10, 0x3f),
                        "Maximize-Throughput" => (0x08, 0x3f),
                        "Maximize-Reliability" => (0x04, 0x3f),
                        "Minimize-Cost" => (0x02, 0x3f),
                        "Normal-Service" => (0x00, 0x3f),
                        s => {
                            let (a, b) = value_mask(opt, s)?;
                            if a > 255 {
                                return Err(OptError::opt(opt, format!("Bad TOS value \"{s}\"")));
                            }
                            (a as u8, if s.contains('/') { b as u8 } else { 0xff })
                        }
                    };
                    *t = Some((value, mask, inv));
                }
                _ => return Ok(false),
            },
            Match::Dscp(d) => match opt {
                "--dscp" | "--dscp-class" if d.is_some() => {
                    return Err(OptError::opt(
                        opt,
                        "only one of --dscp and --dscp-class can be given",
                    ))
                }
                "--dscp" => *d = Some((bounded(opt, &val(args)?, 63)? as u8, inv)),
                "--dscp-class" => {
                    let v = val(args)?;
                    let c = dscp_class(&v)
                        .ok_or_else(|| OptError::opt(opt, format!("Invalid DSCP value `{v}'")))?;
                    *d = Some((c, inv));
                }
                _ => return Ok(false),
            },
            Match::Helper(h) => match opt {
                "--helper" => *h = Some((val(args)?, inv)),
                _ => return Ok(false),
            },
            Match::Limit(l) => match opt {
                "--limit" => l.avg = parse_rate(opt, &val(args)?)?,
                "--limit-burst" => l.burst = bounded(opt, &val(args)?, 10000)? as u32,
                _ => return Ok(false),
            },
            Match::Mac(m) => match opt {
                "--mac-source" => {
                    let v = val(args)?;
                    let parts: Vec<&str> = v.split(':').collect();
                    let mut mac = [0u8; 6];
                    if parts.len() != 6 {
                        return Err(OptError::opt(opt, format!("Bad mac address \"{v}\"")));
                    }
                    for (i, p) in parts.iter().enumerate() {
                        mac[i] = u8::from_str_radix(p, 16)
                            .map_err(|_| OptError::opt(opt, format!("Bad mac address \"{v}\"")))?;
                    }
                    *m = Some((mac, inv));
                }
                _ => return Ok(false),
            },
            Match::ConnBytes(range, mode, dir) => match opt {
                "--connbytes" => {
                    let s = val(args)?;
                    let (a, b) = match s.split_once(':') {
                        Some((a, b)) => (
                            number(opt, a)?,
                            if b.is_empty() {
                                u64::MAX
                            } else {
                                number(opt, b)?
                            },
                        ),
                        None => (number(opt, &s)?, u64::MAX),
                    };
                    *range = Some((a, b, inv));
                }
                "--connbytes-mode" => {
                    *mode = Some(match val(args)?.as_str() {
                        "packets" => 0,
                        "bytes" => 1,
                        "avgpkt" => 2,
                        v => {
                            return Err(OptError::opt(
                                opt,
                                format!("Unknown --connbytes-mode \"{v}\""),
                            ))
                        }
                    })
                }
                "--connbytes-dir" => {
                    *dir = Some(match val(args)?.as_str() {
                        "original" => 0,
                        "reply" => 1,
                        "both" => 2,
                        v => {
                            return Err(OptError::opt(
                                opt,
                                format!("Unknown --connbytes-dir \"{v}\""),
                            ))
                        }
                    })
                }
                _ => return Ok(false),
            },
            Match::ConnLimit(limit, mask, daddr, _) => match opt {
                "--connlimit-saddr" | "--connlimit-daddr"
                    if args.seen_before("--connlimit-saddr")
                        || args.seen_before("--connlimit-daddr") =>
                {
                    return Err(OptError::opt(
                        opt,
                        "--connlimit-saddr and --connlimit-daddr are mutually exclusive",
                    ))
                }
                "--connlimit-above" => {
                    *limit = Some((bounded(opt, &val(args)?, u64::from(u32::MAX))? as u32, !inv))
                }
                "--connlimit-upto" => {
                    *limit = Some((bounded(opt, &val(args)?, u64::from(u32::MAX))? as u32, inv))
                }
                "--connlimit-mask" => {
                    let max = if family == Family::V4 { 32 } else { 128 };
                    *mask = bounded(opt, &val(args)?, max)? as u8;
                }
                "--connlimit-saddr" => *daddr = false,
                "--connlimit-daddr" => *daddr = true,
                _ => return Ok(false),
            },
            Match::Recent(r) => match opt {
                "--set" | "--rcheck" | "--update" | "--remove" => {
                    if r.cmd.is_some() {
                        return Err(OptError::opt(
                            opt,
                            "use only one of --set, --rcheck, --update or --remove",
                        ));
                    }
                    r.cmd = Some(match opt {
                        "--set" => RecentCmd::Set,
                        "--rcheck" => RecentCmd::Check,
                        "--update" => RecentCmd::Update,
                        _ => RecentCmd::Remove,
                    });
                    r.inv = inv;
                }
                "--seconds" => r.seconds = bounded(opt, &val(args)?, u64::from(u32::MAX))? as u32,
                "--reap" => r.reap = true,
                "--hitcount" => r.hitcount = bounded(opt, &val(args)?, 65535)? as u32,
                "--rttl" => r.rttl = true,
                "--name" => r.name = val(args)?,
                "--mask" => r.mask = parse_addr(family, &val(args)?, opt)?,
                "--rsource" => r.rdest = false,
                "--rdest" => r.rdest = true,
                _ => return Ok(false),
            },
        }
        Ok(true)
    }

    /// Checks that required options were given.
    pub fn finish(&self) -> OptResult<()> {
        let need = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(OptError::line(format!("{} match: {what}", self.name())))
            }
        };
        match self {
            Match::State(s) => need(s.is_some(), "you must specify \"--state\""),
            Match::Multiport(m) => need(m.is_some(), "no ports specified"),
            Match::Comment(c) => need(c.is_some(), "\"--comment\" is required"),
            Match::Mark(m) | Match::ConnMark(m) => need(m.is_some(), "\"--mark\" is required"),
            Match::Length(l) => need(l.is_some(), "\"--length\" is required"),
            Match::Ttl(t) | Match::Hl(t) => need(t.is_some(), "a comparison is required"),
            Match::PktType(p) => need(p.is_some(), "\"--pkt-type\" is required"),
            Match::Tos(t) => need(t.is_some(), "\"--tos\" is required"),
            Match::Dscp(d) => need(d.is_some(), "\"--dscp\" or \"--dscp-class\" is required"),
            Match::Helper(h) => need(h.is_some(), "\"--helper\" is required"),
            Match::Mac(m) => need(m.is_some(), "\"--mac-source\" is required"),
            Match::ConnBytes(r, m, d) => need(
                r.is_some() && m.is_some() && d.is_some(),
                "\"--connbytes\", \"--connbytes-dir\" and \"--connbytes-mode\" are required",
            ),
            Match::ConnLimit(l, ..) => need(
                l.is_some(),
                "\"--connlimit-above\" or \"--connlimit-upto\" is required",
            ),
            Match::IpRange(r) => need(
                r[0].is_some() || r[1].is_some(),
                "\"--src-range\" or \"--dst-range\" is required",
            ),
            Match::AddrType { src, dst, .. } => {
                need(src.is_some() || dst.is_some(), "a type is required")
            }
            Match::Icmp(_) | Match::Icmp6(_) => Ok(()),
            Match::Conntrack(c) => need(
                **c != ConntrackMatch::default(),
                "you must specify one or more options",
            ),
            Match::Recent(r) => need(
                !r.rttl || matches!(r.cmd, Some(RecentCmd::Check | RecentCmd::Update)),
                "--rttl is only valid with --rcheck or --update",
            ),
            _ => Ok(()),
        }
    }

    /// Appends ` -m NAME OPTIONS` as iptables-save prints it.
    pub fn save(&self, out: &mut String, family: Family) {
        let _ = write!(out, " -m {}", self.name());
        match self {
            Match::Tcp {
                sport,
                dport,
                flags,
                option,
            } => {
                if let Some(p) = sport {
                    p.save(out, "sport");
                }
                if let Some(p) = dport {
                    p.save(out, "dport");
                }
                if let Some((o, inv)) = option {
                    let _ = write!(out, "{} --tcp-option {o}", inv_str(*inv));
                }
                if let Some((mask, comp, inv)) = flags {
                    let _ = write!(out, "{} --tcp-flags ", inv_str(*inv));
                    save_tcp_flags(out, *mask);
                    out.push(' ');
                    save_tcp_flags(out, *comp);
                }
            }
            Match::Udp { sport, dport } => {
                if let Some(p) = sport {
                    p.save(out, "sport");
                }
                if let Some(p) = dport {
                    p.save(out, "dport");
                }
            }
            Match::Icmp(t) | Match::Icmp6(t) => {
                let name = if matches!(self, Match::Icmp(_)) {
                    "icmp-type"
                } else {
                    "icmpv6-type"
                };
                if let Some(t) = t {
                    if t.ty == 255 && matches!(self, Match::Icmp(_)) {
                        let _ = write!(out, "{} --{name} any", inv_str(t.inv));
                    } else if t.code_lo == 0 && t.code_hi == 255 {
                        let _ = write!(out, "{} --{name} {}", inv_str(t.inv), t.ty);
                    } else {
                        let _ = write!(out, "{} --{name} {}/{}", inv_str(t.inv), t.ty, t.code_lo);
                    }
                }
            }
            Match::State(Some((mask, inv))) => {
                let _ = write!(out, "{} --state ", inv_str(*inv));
                save_names(out, &STATE_NAMES, *mask);
            }
            Match::State(None) => {}
            Match::Conntrack(c) => {
                if let Some((mask, inv)) = c.state {
                    let _ = write!(out, "{} --ctstate ", inv_str(inv));
                    save_names(out, &STATE_NAMES, mask);
                }
                if let Some((p, inv)) = c.proto {
                    let _ = write!(out, "{} --ctproto {p}", inv_str(inv));
                }
                for (i, name) in ["ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"]
                    .iter()
                    .enumerate()
                {
                    if let Some((n, inv)) = &c.addrs[i] {
                        let _ = write!(out, "{} --{name} {}", inv_str(*inv), n.save_short(family));
                    }
                }
                for (i, name) in [
                    "ctorigsrcport",
                    "ctorigdstport",
                    "ctreplsrcport",
                    "ctrepldstport",
                ]
                .iter()
                .enumerate()
                {
                    if let Some(p) = &c.ports[i] {
                        p.save(out, name);
                    }
                }
                if let Some((v, inv)) = c.status {
                    let _ = write!(out, "{} --ctstatus ", inv_str(inv));
                    save_names(out, &STATUS_NAMES, v);
                }
                if let Some((lo, hi, inv)) = c.expire {
                    if lo == hi {
                        let _ = write!(out, "{} --ctexpire {lo}", inv_str(inv));
                    } else {
                        let _ = write!(out, "{} --ctexpire {lo}:{hi}", inv_str(inv));
                    }
                }
                if let Some(reply) = c.dir {
                    let _ = write!(out, " --ctdir {}", if reply { "REPLY" } else { "ORIGINAL" });
                }
            }
            Match::Multiport(Some((which, list, inv))) => {
                let name = ["sports", "dports", "ports"][usize::from(*which)];
                let _ = write!(out, "{} --{name} ", inv_str(*inv));
                for (i, (lo, hi)) in list.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if lo == hi {
                        let _ = write!(out, "{lo}");
                    } else {
                        let _ = write!(out, "{lo}:{hi}");
                    }
                }
            }
            Match::Multiport(None) => {}
            Match::Comment(c) => {
                let _ = write!(
                    out,
                    " --comment {}",
                    save_string(c.as_deref().unwrap_or(""))
                );
            }
            Match::IpRange(r) => {
                for (i, name) in ["src-range", "dst-range"].iter().enumerate() {
                    if let Some((a, b, inv)) = r[i] {
                        let _ = write!(
                            out,
                            "{} --{name} {}-{}",
                            inv_str(inv),
                            a.to_ip(family),
                            b.to_ip(family)
                        );
                    }
                }
            }
            Match::Mark(Some((v, m, inv))) | Match::ConnMark(Some((v, m, inv))) => {
                if *m == u32::MAX {
                    let _ = write!(out, "{} --mark 0x{v:x}", inv_str(*inv));
                } else {
                    let _ = write!(out, "{} --mark 0x{v:x}/0x{m:x}", inv_str(*inv));
                }
            }
            Match::Mark(None) | Match::ConnMark(None) => {}
            Match::Length(Some((a, b, inv))) => {
                if a == b {
                    let _ = write!(out, "{} --length {a}", inv_str(*inv));
                } else {
                    let _ = write!(out, "{} --length {a}:{b}", inv_str(*inv));
                }
            }
            Match::Length(None) => {}
            Match::Ttl(Some((op, v))) | Match::Hl(Some((op, v))) => {
                let base = if matches!(self, Match::Ttl(_)) {
                    "ttl"
                } else {
                    "hl"
                };
                let s = match op {
                    0 => format!(" --{base}-eq {v}"),
                    1 => format!(" ! --{base}-eq {v}"),
                    2 => format!(" --{base}-lt {v}"),
                    _ => format!(" --{base}-gt {v}"),
                };
                out.push_str(&s);
            }
            Match::Ttl(None) | Match::Hl(None) => {}
            Match::AddrType {
                src,
                dst,
                limit_in,
                limit_out,
            } => {
                for (name, v) in [("src-type", src), ("dst-type", dst)] {
                    if let Some((mask, inv)) = v {
                        let _ = write!(out, "{} --{name} ", inv_str(*inv));
                        save_names(out, &addrtype::NAMES, *mask);
                    }
                }
                if *limit_in {
                    out.push_str(" --limit-iface-in");
                }
                if *limit_out {
                    out.push_str(" --limit-iface-out");
                }
            }
            Match::PktType(Some((t, inv))) => {
                let name = ["unicast", "broadcast", "multicast", "otherhost"][usize::from(*t)];
                let _ = write!(out, "{} --pkt-type {name}", inv_str(*inv));
            }
            Match::PktType(None) => {}
            Match::Tos(Some((v, m, inv))) => {
                let _ = write!(out, "{} --tos 0x{v:02x}/0x{m:02x}", inv_str(*inv));
            }
            Match::Tos(None) => {}
            Match::Dscp(Some((v, inv))) => {
                let _ = write!(out, "{} --dscp 0x{v:02x}", inv_str(*inv));
            }
            Match::Dscp(None) => {}
            Match::Helper(Some((h, inv))) => {
                let _ = write!(out, "{} --helper {}", inv_str(*inv), save_string(h));
            }
            Match::Helper(None) => {}
            Match::Limit(l) => {
                save_rate(out, l.avg);
                if l.burst != 5 {
                    let _ = write!(out, " --limit-burst {}", l.burst);
                }
            }
            Match::Mac(Some((m, inv))) => {
                let _ = write!(
                    out,
                    "{} --mac-source {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    inv_str(*inv),
                    m[0],
                    m[1],
                    m[2],
                    m[3],
                    m[4],
                    m[5]
                );
            }
            Match::Mac(None) => {}
            Match::ConnBytes(r, mode, dir) => {
                if let Some((a, b, inv)) = r {
                    if *b == u64::MAX {
                        let _ = write!(out, "{} --connbytes {a}", inv_str(*inv));
                    } else {
                        let _ = write!(out, "{} --connbytes {a}:{b}", inv_str(*inv));
                    }
                }
                if let Some(m) = mode {
                    let _ = write!(
                        out,
                        " --connbytes-mode {}",
                        ["packets", "bytes", "avgpkt"][usize::from(*m)]
                    );
                }
                if let Some(d) = dir {
                    let _ = write!(
                        out,
                        " --connbytes-dir {}",
                        ["original", "reply", "both"][usize::from(*d)]
                    );
                }
            }
            Match::ConnLimit(limit, mask, daddr, _) => {
                if let Some((n, above)) = limit {
                    let _ = write!(
                        out,
                        " --connlimit-{} {n}",
                        if *above { "above" } else { "upto" }
                    );
                }
                let _ = write!(out, " --connlimit-mask {mask}");
                out.push_str(if *daddr {
                    " --connlimit-daddr"
                } else {
                    " --connlimit-saddr"
                });
            }
            Match::Recent(r) => {
                if let Some(cmd) = r.cmd {
                    let name = match cmd {
                        RecentCmd::Set => "set",
                        RecentCmd::Check => "rcheck",
                        RecentCmd::Update => "update",
                        RecentCmd::Remove => "remove",
                    };
                    let _ = write!(out, "{} --{name}", inv_str(r.inv));
                }
                if r.seconds != 0 {
                    let _ = write!(out, " --seconds {}", r.seconds);
                }
                if r.reap {
                    out.push_str(" --reap");
                }
                if r.hitcount != 0 {
                    let _ = write!(out, " --hitcount {}", r.hitcount);
                }
                if r.rttl {
                    out.push_str(" --rttl");
                }
                let _ = write!(out, " --name {}", r.name);
                let _ = write!(out, " --mask {}", r.mask.to_ip(family));
                out.push_str(if r.rdest { " --rdest" } else { " --rsource" });
            }
        }
    }

    /// Evaluates the match (`&mut` for the limit bucket and recent lists).
    #[inline(never)]
    pub fn eval(&mut self, p: &PacketCtx<'_, '_>, recent: &mut crate::eval::RecentTables) -> bool {
        let d = p.packet;
        match self {
            Match::Tcp {
                sport,
                dport,
                flags,
                option,
            } => {
                if d.proto != proto::TCP || p.later_fragment() {
                    return false;
                }
                let Some(t) = TcpView::new(d.l4()) else {
                    return false;
                };
                sport.is_none_or(|s| s.matches(t.src_port()))
                    && dport.is_none_or(|s| s.matches(t.dst_port()))
                    && flags.is_none_or(|(m, c, inv)| ((t.flags().0 & m) == c) != inv)
                    && option.is_none_or(|(o, inv)| has_tcp_option(&t, o) != inv)
            }
            Match::Udp { sport, dport } => {
                if !matches!(d.proto, proto::UDP | proto::UDPLITE) {
                    return false;
                }
                let Some((s, dp)) = p.ports() else {
                    return false;
                };
                sport.is_none_or(|x| x.matches(s)) && dport.is_none_or(|x| x.matches(dp))
            }
            Match::Icmp(t) | Match::Icmp6(t) => {
                if !d.is_icmp() || p.later_fragment() {
                    return false;
                }
                let Some(t) = t else { return true };
                let l4 = d.l4();
                let (Some(&ty), Some(&code)) = (l4.first(), l4.get(1)) else {
                    return false;
                };
                let hit = t.ty == 255 || (t.ty == ty && t.code_lo <= code && code <= t.code_hi);
                hit != t.inv
            }
            Match::State(s) => {
                s.is_none_or(|(mask, inv)| (mask & state_bits(p, false) != 0) != inv)
            }
            Match::Conntrack(c) => eval_conntrack(c, p),
            Match::Multiport(m) => {
                let Some((which, list, inv)) = m else {
                    return false;
                };
                let Some((s, dp)) = p.ports() else {
                    return false;
                };
                if !matches!(
                    d.proto,
                    proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP | 33
                ) {
                    return false;
                }
                let inr = |x: u16| list.iter().any(|(lo, hi)| *lo <= x && x <= *hi);
                let hit = match which {
                    0 => inr(s),
                    1 => inr(dp),
                    _ => inr(s) || inr(dp),
                };
                hit != *inv
            }
            Match::Comment(_) => true,
            Match::IpRange(r) => {
                let inr = |a: Addr, lo: Addr, hi: Addr| lo.0 <= a.0 && a.0 <= hi.0;
                r[0].is_none_or(|(lo, hi, inv)| inr(d.src, lo, hi) != inv)
                    && r[1].is_none_or(|(lo, hi, inv)| inr(d.dst, lo, hi) != inv)
            }
            Match::Mark(m) => m.is_none_or(|(v, k, inv)| ((p.mark & k) == v) != inv),
            Match::ConnMark(m) => {
                if p.conn.is_none() {
                    return false;
                }
                m.is_none_or(|(v, k, inv)| ((p.ct_mark & k) == v) != inv)
            }
            Match::Length(l) => l.is_none_or(|(a, b, inv)| {
                let len = d.len() as u16;
                (a <= len && len <= b) != inv
            }),
            Match::Ttl(t) | Match::Hl(t) => t.is_none_or(|(op, v)| match op {
                0 => d.ttl == v,
                1 => d.ttl != v,
                2 => d.ttl < v,
                _ => d.ttl > v,
            }),
            Match::AddrType { src, dst, .. } => {
                let f = p.family();
                src.is_none_or(|(m, inv)| (p.host.addr_type(d.src, f) & m != 0) != inv)
                    && dst.is_none_or(|(m, inv)| (p.host.addr_type(d.dst, f) & m != 0) != inv)
            }
            Match::PktType(t) => t.is_none_or(|(t, inv)| {
                let ty = p.host.addr_type(d.dst, p.family());
                let actual = if ty & addrtype::MULTICAST != 0 {
                    2
                } else if ty & addrtype::BROADCAST != 0 {
                    1
                } else {
                    0
                };
                (actual == t) != inv
            }),
            Match::Tos(t) => t.is_none_or(|(v, m, inv)| ((d.tos & m) == v) != inv),
            Match::Dscp(x) => x.is_none_or(|(v, inv)| ((d.tos >> 2) == v) != inv),
            Match::Helper(h) => {
                // xt_helper looks at the helper of the connection's master: it matches the
                // expected (RELATED) connections a helper announced.
                let Some((name, inv)) = h else { return true };
                let master = p.rare().and_then(|r| r.master_helper);
                // strncmp(helper, name, strlen(helper)): the name starts with the helper's.
                let hit = master.is_some_and(|m| name.is_empty() || name.starts_with(m.as_str()));
                hit != *inv
            }
            Match::Limit(l) => l.take(p.now),
            Match::Mac(m) => {
                let Some((mac, inv)) = m else { return false };
                // Only packets that came in have a source hardware address.
                let Some(h) = p.mac_header.filter(|_| !p.iif.is_empty()) else {
                    return false;
                };
                (h[6..12] == mac[..]) != *inv
            }
            Match::ConnBytes(r, mode, dir) => {
                let (Some((a, b, inv)), Some(mode), Some(dir)) = (*r, *mode, *dir) else {
                    return false;
                };
                if p.conn.is_none() {
                    return false;
                }
                let k = p.counters;
                let (pk, by) = match dir {
                    0 => (k[0].packets, k[0].bytes),
                    1 => (k[1].packets, k[1].bytes),
                    _ => (k[0].packets + k[1].packets, k[0].bytes + k[1].bytes),
                };
                let v = match mode {
                    0 => pk,
                    1 => by,
                    _ => by.checked_div(pk).unwrap_or(0),
                };
                (a <= v && v <= b) != inv
            }
            Match::ConnLimit(limit, mask, daddr, seen) => {
                let Some((limit, above)) = *limit else {
                    return false;
                };
                let count = seen.count(p, *mask, *daddr);
                if above {
                    count > u64::from(limit)
                } else {
                    count <= u64::from(limit)
                }
            }
            Match::Recent(r) => recent.eval(r, p),
        }
    }
}

/// What `-m connlimit` keeps (`nf_conncount`): for each masked address, the connections
/// it has counted, by original tuple and zone, in the order it met them, and when it last
/// cleaned that list. A connection is counted once the rule sees it, not because it is in
/// the table: connections from the same address that never reached the rule do not count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnCount {
    lists: std::collections::HashMap<Addr, CountList>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct CountList {
    conns: Vec<(ctrack_packet::Tuple, u16)>,
    /// The jiffy of the last clean-up, and how many were listed after it.
    last_gc: u64,
    last_gc_count: usize,
}

/// Entries one clean-up drops at most before it stops (`CONNCOUNT_GC_MAX_COLLECT`).
const CONNCOUNT_GC_MAX_COLLECT: usize = 64;

impl ConnCount {
    /// The count for this packet's masked address, this packet's connection added first
    /// unless listed already.
    fn count(&mut self, p: &PacketCtx<'_, '_>, mask_len: u8, by_dst: bool) -> u64 {
        let d = p.packet;
        let family = p.family();
        let addr = if by_dst { d.dst } else { d.src };
        let key = crate::addr::masked(addr, crate::addr::prefix_mask(family, u32::from(mask_len)));
        let (tuple, zone) = match p.conn {
            Some(c) => (c.original, c.zone),
            None => match ctrack_packet::Tuple::from_datagram(d) {
                Ok(t) => (t, 0),
                // No tuple to count: the kernel drops the packet (hotdrop); nothing counts.
                Err(_) => return 0,
            },
        };
        let now = ctrack_conntrack::conn::jiffies(p.now);
        match self.lists.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut l) => {
                l.get_mut().add(p, tuple, zone, now);
                l.get().conns.len() as u64
            }
            // A first connection for the address starts its list (`insert_tree`).
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(CountList {
                    conns: vec![(tuple, zone)],
                    last_gc: now,
                    last_gc_count: 0,
                });
                1
            }
        }
    }
}

impl CountList {
    /// `__nf_conncount_add`: the listed connections looked up, those gone or closed
    /// dropped, and this one added unless it is listed already.
    fn add(&mut self, p: &PacketCtx<'_, '_>, tuple: ctrack_packet::Tuple, zone: u16, now: u64) {
        use ctrack_conntrack::proto::{tcp::TcpState, ProtoState};
        let confirmed = p.conn.is_some_and(|c| c.confirmed());
        if confirmed && p.conn.is_some_and(|c| c.assured()) {
            // Set up already: counted when it was new.
            return;
        }
        if !confirmed
            && now == self.last_gc
            && self.conns.len().saturating_sub(self.last_gc_count) < CONNCOUNT_GC_MAX_COLLECT
        {
            // Cleaned this jiffy already: just listed.
            self.conns.push((tuple, zone));
            return;
        }
        let mut collected = 0;
        let mut i = 0;
        while i < self.conns.len() && collected <= CONNCOUNT_GC_MAX_COLLECT {
            let (t, z) = self.conns[i];
            // One thread: a listed connection not in the table is gone, not about to be
            // confirmed by another CPU.
            let found = p
                .table()
                .and_then(|tb| tb.find(&t, z).map(|(idx, _)| tb.get(idx)));
            let Some(c) = found else {
                self.conns.remove(i);
                collected += 1;
                continue;
            };
            if t == tuple && z == zone {
                return;
            }
            let closed = matches!(
                c.proto,
                ProtoState::Tcp(tc) if matches!(tc.state, TcpState::TimeWait | TcpState::Close)
            );
            if closed {
                self.conns.remove(i);
                collected += 1;
                continue;
            }
            i += 1;
        }
        self.last_gc = now;
        self.last_gc_count = self.conns.len();
        self.conns.push((tuple, zone));
    }
}

fn has_tcp_option(t: &TcpView<'_>, kind: u8) -> bool {
    let mut o = t.options();
    while let Some(&k) = o.first() {
        if k == kind {
            return true;
        }
        match k {
            0 => return false,
            1 => o = &o[1..],
            _ => {
                let len = usize::from(*o.get(1).unwrap_or(&0));
                if len < 2 || len > o.len() {
                    return false;
                }
                o = &o[len..];
            }
        }
    }
    false
}

fn eval_conntrack(c: &ConntrackMatch, p: &PacketCtx<'_, '_>) -> bool {
    if let Some((mask, inv)) = c.state {
        if (mask & state_bits(p, true) != 0) == inv {
            return false;
        }
    }
    if c.tests_state_only() {
        return true;
    }
    let Some(conn) = p.conn else { return false };
    // Options 0 and 1 are the original direction's, 2 and 3 the reply's: the reply tuple is
    // kept apart from the connection, so it is looked up only for an option that asks.
    let tuple = |i: usize| {
        if i < 2 {
            Some(conn.original)
        } else {
            p.reply()
        }
    };
    if let Some((pr, inv)) = c.proto {
        if (conn.original.proto == pr) == inv {
            return false;
        }
    }
    for (i, a) in c.addrs.iter().enumerate() {
        if let Some((n, inv)) = a {
            let Some(t) = tuple(i) else { return false };
            let addr = if i % 2 == 0 { t.src } else { t.dst };
            if n.contains(addr) == *inv {
                return false;
            }
        }
    }
    for (i, pt) in c.ports.iter().enumerate() {
        if let Some(pt) = pt {
            let Some(t) = tuple(i) else { return false };
            let port = if i % 2 == 0 { t.src_port } else { t.dst_port };
            if !pt.matches(port) {
                return false;
            }
        }
    }
    if let Some((st, inv)) = c.status {
        if ((conn.status & st) == st && st != 0 || st == 0 && conn.status == 0) == inv {
            return false;
        }
    }
    if let Some((lo, hi, inv)) = c.expire {
        let left = conn.seconds_left(p.now) as u32;
        if (lo <= left && left <= hi) == inv {
            return false;
        }
    }
    if let Some(reply) = c.dir {
        let is_reply = matches!(p.state, PacketState::Tracked(ci) if ci.is_reply());
        if is_reply != reply {
            return false;
        }
    }
    true
}

/// Credits per jiffy of `xt_limit` at HZ=250 (`POW2_BELOW32(0xFFFFFFFF / (HZ*60*60*24))`).
const CREDITS_PER_JIFFY: u64 = 128;
const HZ: u64 = 250;

fn user2credits(user: u64) -> u64 {
    if user > 0xFFFF_FFFF / (HZ * CREDITS_PER_JIFFY) {
        (user / 10000) * HZ * CREDITS_PER_JIFFY
    } else {
        (user * HZ * CREDITS_PER_JIFFY) / 10000
    }
}

impl Limit {
    /// The kernel's token bucket (`limit_mt`): full at the start, refilled by elapsed
    /// jiffies, one `cost` per packet.
    fn take(&mut self, now: u64) -> bool {
        let j = now / (1_000_000_000 / HZ);
        let cost = user2credits(u64::from(self.avg));
        let cap = user2credits(u64::from(self.avg) * u64::from(self.burst));
        let prev = match self.prev {
            Some(p) => p,
            None => {
                self.credit = cap;
                j
            }
        };
        if self.credit < cost && prev == j {
            self.prev = Some(j);
            return false;
        }
        self.credit = (self.credit + j.saturating_sub(prev) * CREDITS_PER_JIFFY).min(cap);
        self.prev = Some(j);
        if self.credit >= cost {
            self.credit -= cost;
            true
        } else {
            false
        }
    }
}

fn dscp_class(s: &str) -> Option<u8> {
    let s = s.to_ascii_uppercase();
    Some(match s.as_str() {
        "BE" | "CS0" => 0,
        "CS1" => 8,
        "AF11" => 10,
        "AF12" => 12,
        "AF13" => 14,
        "CS2" => 16,
        "AF21" => 18,
        "AF22" => 20,
        "AF23" => 22,
        "CS3" => 24,
        "AF31" => 26,
        "AF32" => 28,
        "AF33" => 30,
        "CS4" => 32,
        "AF41" => 34,
        "AF42" => 36,
        "AF43" => 38,
        "CS5" => 40,
        "EF" => 46,
        "CS6" => 48,
        "CS7" => 56,
        _ => return None,
    })
}

/// Protocol names iptables accepts and prints (from `/etc/protocols`).
pub const PROTO_NAMES: [(&str, u8); 54] = [
    ("icmp", 1),
    ("igmp", 2),
    ("ggp", 3),
    ("ipencap", 4),
    ("st", 5),
    ("tcp", 6),
    ("egp", 8),
    ("igp", 9),
    ("pup", 12),
    ("udp", 17),
    ("hmp", 20),
    ("xns-idp", 22),
    ("rdp", 27),
    ("iso-tp4", 29),
    ("dccp", 33),
    ("xtp", 36),
    ("ddp", 37),
    ("idpr-cmtp", 38),
    ("ipv6", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("idrp", 45),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("skip", 57),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("rspf", 73),
    ("vmtp", 81),
    ("eigrp", 88),
    ("ospf", 89),
    ("ax.25", 93),
    ("ipip", 94),
    ("etherip", 97),
    ("encap", 98),
    ("pim", 103),
    ("ipcomp", 108),
    ("vrrp", 112),
    ("l2tp", 115),
    ("isis", 124),
    ("sctp", 132),
    ("fc", 133),
    ("mobility-header", 135),
    ("udplite", 136),
    ("mpls-in-ip", 137),
    ("manet", 138),
    ("hip", 139),
    ("shim6", 140),
    ("wesp", 141),
    ("rohc", 142),
    ("ethernet", 143),
];

/// A protocol by name (also `icmpv6`, `mh`…) or number; `all` is 0.
pub fn parse_proto(opt: &str, s: &str) -> OptResult<u8> {
    let l = s.to_ascii_lowercase();
    if l == "all" {
        return Ok(0);
    }
    // iptables' own short names, beside /etc/protocols'.
    match l.as_str() {
        "icmpv6" | "icmp6" => return Ok(58),
        "mh" | "ipv6-mh" => return Ok(135),
        _ => {}
    }
    if let Some((_, n)) = PROTO_NAMES.iter().find(|(n, _)| *n == l) {
        return Ok(*n);
    }
    bounded(opt, s, 255)
        .map(|n| n as u8)
        .map_err(|_| OptError::opt(opt, format!("unknown protocol \"{s}\" specified")))
}

/// The name iptables-save prints for a protocol number.
pub fn proto_save(n: u8) -> String {
    PROTO_NAMES
        .iter()
        .find(|(_, p)| *p == n)
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| n.to_string())
}
