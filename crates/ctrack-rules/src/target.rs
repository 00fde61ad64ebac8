//! Targets: what a matching rule does, with the options iptables reads and prints.

use crate::args::{bounded, number, value_mask, Args};
use crate::error::{OptError, OptResult};
use crate::lex::save_string;
use ctrack_packet::{Addr, Family};
use std::fmt::Write;

/// The `--reject-with` types, with their aliases, per family.
const REJECT_V4: [(&str, &str); 8] = [
    ("icmp-net-unreachable", "net-unreach"),
    ("icmp-host-unreachable", "host-unreach"),
    ("icmp-port-unreachable", "port-unreach"),
    ("icmp-proto-unreachable", "proto-unreach"),
    ("icmp-net-prohibited", "net-prohib"),
    ("icmp-host-prohibited", "host-prohib"),
    ("tcp-reset", "tcp-rst"),
    ("icmp-admin-prohibited", "admin-prohib"),
];
const REJECT_V6: [(&str, &str); 7] = [
    ("icmp6-no-route", "no-route"),
    ("icmp6-adm-prohibited", "adm-prohibited"),
    ("icmp6-addr-unreachable", "addr-unreach"),
    ("icmp6-port-unreachable", "port-unreach"),
    ("tcp-reset", "tcp-rst"),
    ("icmp6-policy-fail", "policy-fail"),
    ("icmp6-reject-route", "reject-route"),
];

/// What REJECT answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectWith {
    /// A TCP reset.
    TcpReset,
    /// Destination unreachable (ICMP type 3, or ICMPv6 type 1) with this code.
    Unreachable(u8),
}

/// ICMP codes of the `--reject-with` types, in the tables' order (`None` is tcp-reset).
const REJECT_V4_CODES: [Option<u8>; 8] = [
    Some(0),
    Some(1),
    Some(3),
    Some(2),
    Some(9),
    Some(10),
    None,
    Some(13),
];
const REJECT_V6_CODES: [Option<u8>; 7] =
    [Some(0), Some(1), Some(3), Some(4), None, Some(5), Some(6)];

/// `--ctevents` and `--expevents` names, as `IPCT_*` bits.
const CT_EVENTS: [(&str, u16); 10] = [
    ("new", 1 << 0),
    ("related", 1 << 1),
    ("destroy", 1 << 2),
    ("reply", 1 << 3),
    ("assured", 1 << 4),
    ("protoinfo", 1 << 5),
    ("helper", 1 << 6),
    ("mark", 1 << 7),
    ("natseqinfo", 1 << 8),
    ("secmark", 1 << 9),
];

/// The `IPCT_*` bits of a checked `--ctevents` list.
pub fn event_mask(list: &str) -> u16 {
    list.split(',')
        .filter_map(|w| CT_EVENTS.iter().find(|(n, _)| *n == w).map(|(_, b)| *b))
        .fold(0, |a, b| a | b)
}

/// True when the kernel has helper `name` for protocol `proto`.
pub fn helper_exists(name: &str, proto: u8) -> bool {
    ctrack_conntrack::conn::HELPERS
        .iter()
        .any(|(n, p)| *n == name && *p == proto)
}

/// Syslog levels by name, as `--log-level` accepts them.
const LOG_LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
];

/// `-j LOG` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// `--log-level` (default 4, warning).
    pub level: u8,
    /// `--log-prefix`.
    pub prefix: Option<String>,
    /// `--log-tcp-sequence`, `--log-tcp-options`, `--log-ip-options`, `--log-uid`, `--log-macdecode`.
    pub flags: [bool; 5],
}

/// A parsed NAT range: addresses (lowest, highest) and ports (lowest, highest).
pub type ParsedRange = (Option<(Addr, Addr)>, Option<(u16, u16)>);

/// A NAT target's range (`--to-source`/`--to-destination`/`--to-ports`), as written.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NatSpec {
    /// The range exactly as given (checked, printed back).
    pub to: Option<String>,
    /// The range parsed: addresses and ports.
    pub range: Option<ParsedRange>,
    /// `--random`.
    pub random: bool,
    /// `--random-fully`.
    pub random_fully: bool,
    /// `--persistent`.
    pub persistent: bool,
    /// The base port of a shifted range (`PORT-PORT/BASE`, `NF_NAT_RANGE_PROTO_OFFSET`).
    pub base: Option<u16>,
}

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// No `-j`: only counts.
    None,
    /// `ACCEPT`.
    Accept,
    /// `DROP`.
    Drop,
    /// `RETURN`.
    Return,
    /// `-j CHAIN`.
    Jump(String),
    /// `-g CHAIN`.
    Goto(String),
    /// `REJECT --reject-with TYPE` (index into the family's table).
    Reject(usize),
    /// `LOG`.
    Log(Log),
    /// `NFLOG`: group, prefix, size (true when given as the old `--nflog-range`), threshold.
    Nflog(u16, Option<String>, Option<(u32, bool)>, u16),
    /// `NOTRACK`.
    Notrack,
    /// `CT`.
    Ct {
        /// `--notrack`.
        notrack: bool,
        /// `--helper`.
        helper: Option<String>,
        /// `--timeout`.
        timeout: Option<String>,
        /// `--ctevents`.
        ctevents: Option<String>,
        /// `--expevents`.
        expevents: Option<String>,
        /// `--zone`.
        zone: u16,
    },
    /// `MARK --set-xmark value/mask`.
    Mark(u32, u32),
    /// `CONNMARK --set-xmark value/mask`.
    ConnMarkSet(u32, u32),
    /// `CONNMARK --save-mark --nfmask --ctmask`.
    ConnMarkSave(u32, u32),
    /// `CONNMARK --restore-mark --nfmask --ctmask`.
    ConnMarkRestore(u32, u32),
    /// `SNAT`.
    Snat(NatSpec),
    /// `DNAT`.
    Dnat(NatSpec),
    /// `MASQUERADE`.
    Masquerade(NatSpec),
    /// `REDIRECT`.
    Redirect(NatSpec),
}

/// A NAT range as iptables-save prints it: one address or `a-b`, one port or `p-q`.
fn save_nat_range(n: &NatSpec, written: &str, family: Family) -> String {
    let Some((addrs, ports)) = n.range else {
        return written.to_string();
    };
    let ports_s = ports.map(|(lo, hi)| {
        let base = n.base.map(|b| format!("/{b}")).unwrap_or_default();
        if lo == hi {
            format!("{lo}{base}")
        } else {
            format!("{lo}-{hi}{base}")
        }
    });
    let addrs_s = addrs.map(|(lo, hi)| {
        let (a, b) = (lo.to_ip(family), hi.to_ip(family));
        if lo == hi {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    });
    match (addrs_s, ports_s) {
        (Some(a), Some(p)) if family == Family::V6 => format!("[{a}]:{p}"),
        (Some(a), Some(p)) => format!("{a}:{p}"),
        (Some(a), None) => a,
        (None, Some(p)) if n.to.as_deref().is_some_and(|t| t.starts_with(':')) => format!(":{p}"),
        (None, Some(p)) => p,
        (None, None) => written.to_string(),
    }
}

/// `PORT` (a number or a service name), or `PORT-PORT` in numbers, as the NAT targets read
/// them.
fn parse_port_range(opt: &str, s: &str) -> OptResult<(u16, u16)> {
    // A service name may itself hold a dash (`ftp-data`).
    let (lo, hi) = match (crate::args::port(opt, s), s.split_once('-')) {
        (Ok(p), _) => (p, p),
        (Err(e), None) => return Err(e),
        (Err(_), Some((a, b))) => (
            bounded(opt, a, 65535)? as u16,
            bounded(opt, b, 65535)? as u16,
        ),
    };
    if lo > hi {
        return Err(OptError::opt(opt, format!("invalid port range \"{s}\"")));
    }
    Ok((lo, hi))
}

/// A NAT range's ports with an optional `/BASE` (a number or a service name).
fn parse_ports_base(opt: &str, s: &str) -> OptResult<((u16, u16), Option<u16>)> {
    match s.split_once('/') {
        Some((range, base)) => {
            let b = crate::args::port(opt, base)?;
            if b == 0 {
                return Err(OptError::opt(opt, format!("invalid base port in \"{s}\"")));
            }
            Ok((parse_port_range(opt, range)?, Some(b)))
        }
        None => Ok((parse_port_range(opt, s)?, None)),
    }
}

/// `addr[-addr][:port[-port]]`; IPv6 addresses in brackets when a port follows.
#[allow(clippy::type_complexity)]
fn parse_nat_range(
    opt: &str,
    s: &str,
    family: Family,
) -> OptResult<((Option<(Addr, Addr)>, Option<(u16, u16)>), Option<u16>)> {
    let (addrs, ports) = match family {
        Family::V4 => match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        },
        Family::V6 => {
            if let Some(rest) = s.strip_prefix('[') {
                let (a, tail) = rest.split_once(']').ok_or_else(|| {
                    OptError::opt(opt, format!("Invalid address:port specification \"{s}\""))
                })?;
                (a, tail.strip_prefix(':'))
            } else {
                (s, None)
            }
        }
    };
    let (ports, base) = match ports.map(|p| parse_ports_base(opt, p)).transpose()? {
        Some((p, b)) => (Some(p), b),
        None => (None, None),
    };
    let addrs = if addrs.is_empty() {
        None
    } else {
        let (a, b) = addrs.split_once('-').unwrap_or((addrs, addrs));
        let lo = crate::addr::parse_addr(family, a, opt)?;
        let hi = crate::addr::parse_addr(family, b, opt)?;
        if lo.0 > hi.0 {
            return Err(OptError::opt(opt, format!("Bad IP range \"{addrs}\"")));
        }
        Some((lo, hi))
    };
    Ok(((addrs, ports), base))
}

/// The mark-setting options MARK and CONNMARK share, as the `(value, mask)` of
/// `--set-xmark` they amount to; `None` for any other option.
fn parse_xmark(opt: &str, args: &mut Args<'_>) -> OptResult<Option<(u32, u32)>> {
    Ok(Some(match opt {
        "--set-xmark" => value_mask(opt, args.value(opt)?)?,
        "--set-mark" => {
            let (v, m) = value_mask(opt, args.value(opt)?)?;
            (v, v | m)
        }
        "--and-mark" => (0, !(number(opt, args.value(opt)?)? as u32)),
        "--or-mark" => {
            let x = number(opt, args.value(opt)?)? as u32;
            (x, x)
        }
        "--xor-mark" => (number(opt, args.value(opt)?)? as u32, 0),
        _ => return Ok(None),
    }))
}

impl Target {
    /// A target by name; user chains are resolved by the loader.
    pub fn new(name: &str) -> Option<Target> {
        Some(match name {
            "ACCEPT" => Target::Accept,
            "DROP" => Target::Drop,
            "RETURN" => Target::Return,
            "REJECT" => Target::Reject(usize::MAX),
            "LOG" => Target::Log(Log {
                level: 4,
                prefix: None,
                flags: [false; 5],
            }),
            "NFLOG" => Target::Nflog(0, None, None, 0),
            "NOTRACK" => Target::Notrack,
            "CT" => Target::Ct {
                notrack: false,
                helper: None,
                timeout: None,
                ctevents: None,
                expevents: None,
                zone: 0,
            },
            "MARK" => Target::Mark(0, 0),
            "CONNMARK" => Target::ConnMarkSet(0, 0),
            "SNAT" => Target::Snat(NatSpec::default()),
            "DNAT" => Target::Dnat(NatSpec::default()),
            "MASQUERADE" => Target::Masquerade(NatSpec::default()),
            "REDIRECT" => Target::Redirect(NatSpec::default()),
            _ => return None,
        })
    }

    /// Where a `--reject-with` name stands in a family's names.
    fn reject_index(family: Family, name: &str) -> Option<usize> {
        match family {
            Family::V4 => REJECT_V4.iter().position(|(n, _)| *n == name),
            Family::V6 => REJECT_V6.iter().position(|(n, _)| *n == name),
        }
    }

    /// For REJECT, what it answers with.
    pub fn reject_with(&self, family: Family) -> Option<RejectWith> {
        let Target::Reject(k) = self else { return None };
        let code = match family {
            Family::V4 => REJECT_V4_CODES[*k],
            Family::V6 => REJECT_V6_CODES[*k],
        };
        Some(code.map_or(RejectWith::TcpReset, RejectWith::Unreachable))
    }

    /// True when the target needs connection tracking.
    pub fn needs_conntrack(&self) -> bool {
        matches!(
            self,
            Target::Ct { .. }
                | Target::ConnMarkSet(..)
                | Target::ConnMarkSave(..)
                | Target::ConnMarkRestore(..)
                | Target::Snat(_)
                | Target::Dnat(_)
                | Target::Masquerade(_)
                | Target::Redirect(_)
        )
    }

    /// Consumes one target option; `Ok(false)` when it is not this target's.
    pub fn parse_opt(&mut self, opt: &str, args: &mut Args<'_>, family: Family) -> OptResult<bool> {
        let val = |args: &mut Args<'_>| args.value(opt).map(|s| s.to_string());
        match self {
            Target::Reject(kind) => match opt {
                "--reject-with" => {
                    let v = val(args)?;
                    let found = match family {
                        Family::V4 => REJECT_V4.iter().position(|(a, b)| *a == v || *b == v),
                        Family::V6 => REJECT_V6.iter().position(|(a, b)| *a == v || *b == v),
                    };
                    *kind = found.ok_or_else(|| {
                        OptError::opt(opt, format!("unknown reject type \"{v}\""))
                    })?;
                }
                _ => return Ok(false),
            },
            Target::Log(l) => match opt {
                "--log-level" => {
                    let v = val(args)?;
                    l.level = match LOG_LEVELS.iter().position(|n| {
                        *n == v || (*n == "error" && v == "err") || (*n == "warning" && v == "warn")
                    }) {
                        Some(i) => i as u8,
                        None => bounded(opt, &v, 7)
                            .map_err(|_| OptError::opt(opt, format!("log-level `{v}' unknown")))?
                            as u8,
                    };
                }
                "--log-prefix" => {
                    let v = val(args)?;
                    if v.len() > 29 {
                        return Err(OptError::opt(
                            opt,
                            "Maximum prefix length 29 for --log-prefix",
                        ));
                    }
                    l.prefix = Some(v);
                }
                "--log-tcp-sequence" => l.flags[0] = true,
                "--log-tcp-options" => l.flags[1] = true,
                "--log-ip-options" => l.flags[2] = true,
                "--log-uid" => l.flags[3] = true,
                "--log-macdecode" => l.flags[4] = true,
                _ => return Ok(false),
            },
            Target::Nflog(group, prefix, size, threshold) => match opt {
                "--nflog-group" => *group = bounded(opt, &val(args)?, 65535)? as u16,
                "--nflog-prefix" => *prefix = Some(val(args)?),
                "--nflog-range" | "--nflog-size" => {
                    let n = bounded(opt, &val(args)?, u64::from(u32::MAX))? as u32;
                    *size = Some((n, opt == "--nflog-range"));
                }
                "--nflog-threshold" => *threshold = bounded(opt, &val(args)?, 65535)? as u16,
                _ => return Ok(false),
            },
            Target::Ct {
                notrack,
                helper,
                timeout,
                ctevents,
                expevents,
                zone,
            } => match opt {
                "--notrack" => *notrack = true,
                "--helper" => *helper = Some(val(args)?),
                "--timeout" => *timeout = Some(val(args)?),
                "--ctevents" => {
                    let v = val(args)?;
                    if let Some(bad) = v
                        .split(',')
                        .find(|w| !CT_EVENTS.iter().any(|(n, _)| n == w))
                    {
                        return Err(OptError::opt(opt, format!("unknown event type \"{bad}\"")));
                    }
                    *ctevents = Some(v);
                }
                "--expevents" => *expevents = Some(val(args)?),
                "--zone" => *zone = bounded(opt, &val(args)?, 65535)? as u16,
                _ => return Ok(false),
            },
            Target::Mark(v, m) => match parse_xmark(opt, args)? {
                Some(x) => (*v, *m) = x,
                None => return Ok(false),
            },
            Target::ConnMarkSet(..) | Target::ConnMarkSave(..) | Target::ConnMarkRestore(..) => {
                if let Some((a, b)) = parse_xmark(opt, args)? {
                    *self = Target::ConnMarkSet(a, b);
                    return Ok(true);
                }
                match opt {
                    "--save-mark" => *self = Target::ConnMarkSave(u32::MAX, u32::MAX),
                    "--restore-mark" => *self = Target::ConnMarkRestore(u32::MAX, u32::MAX),
                    "--mask" | "--nfmask" | "--ctmask" => {
                        let x = number(opt, &val(args)?)? as u32;
                        let (Target::ConnMarkSave(nf, ct) | Target::ConnMarkRestore(nf, ct)) = self
                        else {
                            return Err(OptError::opt(
                                opt,
                                "only with --save-mark or --restore-mark",
                            ));
                        };
                        if opt != "--ctmask" {
                            *nf = x;
                        }
                        if opt != "--nfmask" {
                            *ct = x;
                        }
                    }
                    _ => return Ok(false),
                }
            }
            Target::Snat(n) | Target::Dnat(n) | Target::Masquerade(n) | Target::Redirect(n) => {
                let ports_only = matches!(opt, "--to-ports");
                match opt {
                    "--to-source" | "--to-destination" | "--to-ports" | "--to" => {
                        let v = val(args)?;
                        if v.is_empty() {
                            return Err(OptError::opt(opt, "empty range"));
                        }
                        if n.to.is_some() {
                            return Err(OptError::opt(
                                opt,
                                format!("Multiple {opt} not supported"),
                            ));
                        }
                        let (range, base) = if ports_only {
                            ((None, Some(parse_port_range(opt, &v)?)), None)
                        } else {
                            parse_nat_range(opt, &v, family)?
                        };
                        n.range = Some(range);
                        n.base = base;
                        n.to = Some(v);
                    }
                    "--random" => n.random = true,
                    "--random-fully" => n.random_fully = true,
                    "--persistent" => n.persistent = true,
                    _ => return Ok(false),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks what a target needs once its options are read, as the kernel's checkentry
    /// does: `proto` is the rule's `-p`.
    pub fn finish(
        &mut self,
        table: &str,
        family: Family,
        proto: Option<(u8, bool)>,
    ) -> OptResult<()> {
        let proto = proto.filter(|(_, inv)| !inv).map(|(p, _)| p);
        // Ports in a NAT range need a protocol that has them.
        if let Target::Snat(n) | Target::Dnat(n) | Target::Masquerade(n) | Target::Redirect(n) =
            self
        {
            let has_ports = n.range.is_some_and(|(_, p)| p.is_some());
            if has_ports && !matches!(proto, Some(6 | 17 | 136 | 132 | 33)) {
                return Err(OptError::line(
                    "Need TCP, UDP, SCTP or DCCP with port specification",
                ));
            }
        }
        let nat_only = |name: &str| {
            if table == "nat" {
                Ok(())
            } else {
                Err(OptError::line(format!(
                    "{name} target: only valid in nat table, not {table}"
                )))
            }
        };
        match self {
            Target::Reject(k) if *k == usize::MAX => {
                let default = match family {
                    Family::V4 => "icmp-port-unreachable",
                    Family::V6 => "icmp6-port-unreachable",
                };
                *k = Self::reject_index(family, default).expect("a name of the table");
            }
            Target::Reject(k)
                if Some(*k) == Self::reject_index(family, "tcp-reset") && proto != Some(6) =>
            {
                return Err(OptError::line("REJECT: TCP RST can only be used with -p tcp"))
            }
            Target::ConnMarkSet(0, 0) => {
                return Err(OptError::line("CONNMARK target: No operation specified"))
            }
            Target::Mark(v, m) if *v == 0 && *m == 0 => {
                return Err(OptError::line("MARK target: one of --set-xmark, --set-mark, --and-mark, --or-mark or --xor-mark is required"))
            }
            Target::Ct { .. } | Target::Notrack if table != "raw" => {
                return Err(OptError::line(format!("the CT and NOTRACK targets are only valid in the raw table, not {table}")))
            }
            Target::Snat(n) => {
                nat_only("SNAT")?;
                if n.to.is_none() {
                    return Err(OptError::line("SNAT target: --to-source is required"));
                }
            }
            Target::Dnat(n) => {
                nat_only("DNAT")?;
                if n.to.is_none() {
                    return Err(OptError::line("DNAT target: --to-destination is required"));
                }
            }
            Target::Masquerade(_) => nat_only("MASQUERADE")?,
            Target::Redirect(_) => nat_only("REDIRECT")?,
            _ => {}
        }
        Ok(())
    }

    /// Appends ` -j NAME OPTIONS` (or ` -g CHAIN`) as iptables-save prints it.
    pub fn save(&self, out: &mut String, family: Family) {
        match self {
            Target::None => {}
            Target::Accept => out.push_str(" -j ACCEPT"),
            Target::Drop => out.push_str(" -j DROP"),
            Target::Return => out.push_str(" -j RETURN"),
            Target::Jump(c) => {
                let _ = write!(out, " -j {c}");
            }
            Target::Goto(c) => {
                let _ = write!(out, " -g {c}");
            }
            Target::Reject(k) => {
                let name = match family {
                    Family::V4 => REJECT_V4[*k].0,
                    Family::V6 => REJECT_V6[*k].0,
                };
                let _ = write!(out, " -j REJECT --reject-with {name}");
            }
            Target::Log(l) => {
                out.push_str(" -j LOG");
                if let Some(p) = &l.prefix {
                    let _ = write!(out, " --log-prefix {}", save_string(p));
                }
                if l.level != 4 {
                    let _ = write!(out, " --log-level {}", l.level);
                }
                let names = [
                    "--log-tcp-sequence",
                    "--log-tcp-options",
                    "--log-ip-options",
                    "--log-uid",
                    "--log-macdecode",
                ];
                for (i, n) in names.iter().enumerate() {
                    if l.flags[i] {
                        let _ = write!(out, " {n}");
                    }
                }
            }
            Target::Nflog(group, prefix, size, threshold) => {
                out.push_str(" -j NFLOG");
                if let Some(p) = prefix {
                    let _ = write!(out, " --nflog-prefix {}", save_string(p));
                }
                if *group != 0 {
                    let _ = write!(out, " --nflog-group {group}");
                }
                match size {
                    Some((n, true)) => {
                        let _ = write!(out, " --nflog-range {n}");
                    }
                    Some((n, false)) => {
                        let _ = write!(out, " --nflog-size {n}");
                    }
                    None => {}
                }
                if *threshold != 0 {
                    let _ = write!(out, " --nflog-threshold {threshold}");
                }
            }
            Target::Notrack => out.push_str(" -j NOTRACK"),
            Target::Ct {
                notrack,
                helper,
                timeout,
                ctevents,
                expevents,
                zone,
            } => {
                out.push_str(" -j CT");
                if *notrack {
                    out.push_str(" --notrack");
                }
                if let Some(h) = helper {
                    let _ = write!(out, " --helper {}", save_string(h));
                }
                if let Some(t) = timeout {
                    let _ = write!(out, " --timeout {}", save_string(t));
                }
                if let Some(e) = ctevents {
                    let _ = write!(out, " --ctevents {e}");
                }
                if let Some(e) = expevents {
                    let _ = write!(out, " --expevents {e}");
                }
                if *zone != 0 {
                    let _ = write!(out, " --zone {zone}");
                }
            }
            Target::Mark(v, m) => {
                let _ = write!(out, " -j MARK --set-xmark 0x{v:x}/0x{m:x}");
            }
            Target::ConnMarkSet(v, m) => {
                let _ = write!(out, " -j CONNMARK --set-xmark 0x{v:x}/0x{m:x}");
            }
            Target::ConnMarkSave(nf, ct) => {
                let _ = write!(
                    out,
                    " -j CONNMARK --save-mark --nfmask 0x{nf:x} --ctmask 0x{ct:x}"
                );
            }
            Target::ConnMarkRestore(nf, ct) => {
                let _ = write!(
                    out,
                    " -j CONNMARK --restore-mark --nfmask 0x{nf:x} --ctmask 0x{ct:x}"
                );
            }
            Target::Snat(n) | Target::Dnat(n) | Target::Masquerade(n) | Target::Redirect(n) => {
                let (name, opt) = match self {
                    Target::Snat(_) => ("SNAT", "--to-source"),
                    Target::Dnat(_) => ("DNAT", "--to-destination"),
                    Target::Masquerade(_) => ("MASQUERADE", "--to-ports"),
                    _ => ("REDIRECT", "--to-ports"),
                };
                let _ = write!(out, " -j {name}");
                if let Some(t) = &n.to {
                    let _ = write!(out, " {opt} {}", save_nat_range(n, t, family));
                }
                if n.random {
                    out.push_str(" --random");
                }
                if n.random_fully {
                    out.push_str(" --random-fully");
                }
                if n.persistent {
                    out.push_str(" --persistent");
                }
            }
        }
    }
}
