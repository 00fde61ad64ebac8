//! Listings in the kernel's and conntrack-tools' formats.
//!
//! `/proc/net/nf_conntrack` ([`proc_line`]), `conntrack -L -o extended` ([`conntrack_line`]),
//! `conntrack -E -o timestamp,extended` ([`event_line`]) and a JSON form ([`json`]).

use crate::conn::{Conn, Counter, Extras};
use crate::core::{Event, EventKind};
use crate::status::ips;
use ctrack_packet::{proto_name, Tuple};
use std::fmt::Write;

/// Which listing a line is for; the formats differ in small ways.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Proc,
    Conntrack,
    Event(EventKind),
}

/// The line of a connection with reply tuple `reply`; `(acct, timestamp)` say whether its
/// counters and start time are shown.
fn line(
    c: &Conn,
    reply: &Tuple,
    x: &Extras,
    now: u64,
    (acct, timestamp): (bool, bool),
    style: Style,
    bits: u16,
) -> String {
    let shown = (acct.then_some(x.counters), timestamp.then_some(x.start));
    line_with(c, reply, now, shown, style, bits, None)
}

/// The line, with the counters and start time when accounting and timestamps are on.
fn line_with(
    c: &Conn,
    reply: &Tuple,
    now: u64,
    (counters, start): (Option<[Counter; 2]>, Option<u64>),
    style: Style,
    bits: u16,
    gre: Option<(u64, u64)>,
) -> String {
    let t = &c.original;
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "{:<8} {} {:<8} {} ",
        t.family.name(),
        t.family.number(),
        proto_name(t.proto),
        t.proto
    );
    // A DESTROY event carries the timeout only while some of it is left (a kill, not an
    // expiry).
    let left = c.seconds_left(now);
    if style != Style::Event(EventKind::Destroy) || left > 0 {
        let _ = write!(s, "{left} ");
    }
    // Events carry the protocol state only when it changed (IPCT_PROTOINFO), and always
    // on DESTROY.
    let with_state = match style {
        Style::Event(EventKind::Destroy) | Style::Proc | Style::Conntrack => true,
        Style::Event(_) => bits & crate::status::ipct::PROTOINFO != 0,
    };
    if let (true, Some(state)) = (with_state, c.proto.tcp_state_name()) {
        let _ = write!(s, "{state} ");
    }
    // /proc prints GRE's own timeouts (`gre_print_conntrack`).
    if let (Style::Proc, Some((t, st)), crate::proto::ProtoState::Gre(_)) = (style, gre, &c.proto) {
        let _ = write!(s, "timeout={t}, stream_timeout={st} ");
    }
    let counters = counters.filter(|_| {
        style != Style::Event(EventKind::New) && style != Style::Event(EventKind::Update)
    });
    for (dir, tuple) in [&c.original, reply].into_iter().enumerate() {
        if style == Style::Proc {
            tuple.write_proc(&mut s);
        } else {
            tuple.write_to(&mut s);
        }
        if let Some(k) = counters.map(|k| k[dir]) {
            let _ = write!(s, "packets={} bytes={} ", k.packets, k.bytes);
        }
        if dir == 0 && !c.has(ips::SEEN_REPLY) {
            s.push_str("[UNREPLIED] ");
        }
    }
    if c.has(ips::ASSURED) {
        s.push_str("[ASSURED] ");
    }
    match style {
        Style::Proc => {
            let _ = write!(s, "mark={} zone={} ", c.mark, c.zone);
            if let Some(start) = start {
                let _ = write!(
                    s,
                    "delta-time={} ",
                    now.saturating_sub(start) / 1_000_000_000
                );
            }
            s.push_str("use=2");
        }
        Style::Conntrack => {
            let _ = write!(s, "mark={} ", c.mark);
            if c.zone != 0 {
                let _ = write!(s, "zone={} ", c.zone);
            }
            if let Some(start) = start {
                let _ = write!(
                    s,
                    "delta-time={} ",
                    now.saturating_sub(start) / 1_000_000_000
                );
            }
            if let Some(h) = &c.helper {
                let _ = write!(s, "helper={} ", h.as_str());
            }
            s.push_str("use=1");
        }
        Style::Event(_) => {
            if c.mark != 0 {
                let _ = write!(s, "mark={} ", c.mark);
            }
            if c.zone != 0 {
                let _ = write!(s, "zone={} ", c.zone);
            }
            if let (Some(h), false) = (&c.helper, style == Style::Event(EventKind::Destroy)) {
                let _ = write!(s, "helper={} ", h.as_str());
            }
            while s.ends_with(' ') {
                s.pop();
            }
        }
    }
    s
}

/// One line of `/proc/net/nf_conntrack` at `now` (no newline).
///
/// `reply` is the connection's reply tuple (`Table::reply`), `x` its counters and start time.
pub fn proc_line(c: &Conn, reply: &Tuple, x: &Extras, now: u64, s: &crate::Settings) -> String {
    let gre = (
        s.gre_timeout / 1_000_000_000,
        s.gre_timeout_stream / 1_000_000_000,
    );
    let shown = (s.acct.then_some(x.counters), s.timestamp.then_some(x.start));
    line_with(c, reply, now, shown, Style::Proc, 0, Some(gre))
}

/// One line of `conntrack -L -o extended` at `now` (no newline), as [`proc_line`] takes
/// its connection.
pub fn conntrack_line(
    c: &Conn,
    reply: &Tuple,
    x: &Extras,
    now: u64,
    acct: bool,
    timestamp: bool,
) -> String {
    line(c, reply, x, now, (acct, timestamp), Style::Conntrack, 0)
}

/// The summary `conntrack -L` writes to standard error.
pub fn conntrack_summary(entries: usize) -> String {
    format!("conntrack v1.4.7 (conntrack-tools): {entries} flow entries have been shown.")
}

/// One line of `conntrack -E -o timestamp,extended` (no newline). The timestamp is the
/// packet time at which the kernel would have delivered the event.
pub fn event_line(e: &Event, acct: bool) -> String {
    let label = match e.kind {
        EventKind::New => "[NEW]",
        EventKind::Update => "[UPDATE]",
        EventKind::Destroy => "[DESTROY]",
    };
    let body = line(
        &e.conn,
        &e.reply,
        &e.extras,
        e.time,
        (acct, false),
        Style::Event(e.kind),
        e.bits,
    );
    format!(
        "[{}.{:06}]\t{:>9} {}",
        e.time / 1_000_000_000,
        e.time % 1_000_000_000 / 1000,
        label,
        body
    )
}

/// The connection as a JSON object, as [`proc_line`] takes it.
pub fn json(c: &Conn, reply: &Tuple, x: &Extras, now: u64) -> serde_json::Value {
    let t = |dir: usize| {
        let t = [&c.original, reply][dir];
        let mut v = serde_json::json!({
            "src": t.src.to_ip(t.family).to_string(),
            "dst": t.dst.to_ip(t.family).to_string(),
            "packets": x.counters[dir].packets,
            "bytes": x.counters[dir].bytes,
        });
        if t.is_icmp() {
            v["type"] = t.icmp_type().into();
            v["code"] = t.icmp_code().into();
            v["id"] = t.src_port.into();
        } else if matches!(t.proto, 6 | 17 | 136 | 132 | 33) {
            v["sport"] = t.src_port.into();
            v["dport"] = t.dst_port.into();
        }
        v
    };
    let t0 = &c.original;
    serde_json::json!({
        "id": c.id,
        "family": t0.family.name(),
        "protocol": proto_name(t0.proto),
        "protonum": t0.proto,
        "timeout": c.seconds_left(now),
        "state": c.proto.tcp_state_name(),
        "original": t(0),
        "reply": t(1),
        "unreplied": !c.has(ips::SEEN_REPLY),
        "assured": c.has(ips::ASSURED),
        "mark": c.mark,
        "zone": c.zone,
        "helper": c.helper.map(|h| h.as_str().to_string()),
    })
}
