//! Expectations (`nf_conntrack_expect.c`) and the TFTP helper (`nf_conntrack_tftp.c`).
//!
//! A helper expects one connection per master at a time (a newer one replaces the older)
//! for five minutes. A new connection that matches an expectation (any source port) is
//! RELATED, its master the connection that announced it. The FTP helper is in
//! [`crate::ftp`].

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
    pub follow_master: Option<FollowMaster>,
}

/// The binding an expected connection takes from its master (`nf_nat_follow_master`): its
/// source becomes where the master's packets went, its destination where they came from,
/// at the port the helper first saw announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowMaster {
    /// New source address.
    pub src: Addr,
    /// New destination address.
    pub dst: Addr,
    /// New destination port (`saved_proto`).
    pub dst_port: u16,
}

impl Expectation {
    /// True when both expect the same connection (`expect_clash`, for masks that differ only
    /// in the source port).
    pub fn same_tuple(&self, other: &Expectation) -> bool {
        self.zone == other.zone && self.tuple == other.tuple
    }

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

/// The expectation a TFTP request makes (`tftp_help`): the server answers from another
/// port, so any source port of the server's address to the client's port is expected.
pub fn tftp_expectation(
    c: &Conn,
    reply: Tuple,
    dir: usize,
    payload: &[u8],
    now: u64,
) -> Option<Expectation> {
    let helper = c.helper?;
    if helper.as_str() != "tftp" || dir != 0 {
        return None;
    }
    // Read (1) and write (2) requests.
    let op = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    if op != 1 && op != 2 {
        return None;
    }
    Some(Expectation {
        tuple: Tuple {
            src: reply.src,
            dst: reply.dst,
            src_port: 0,
            dst_port: reply.dst_port,
            proto: ctrack_packet::proto::UDP,
            family: reply.family,
        },
        master: c.original,
        zone: c.zone,
        deadline: now + EXPECT_TIMEOUT_NS,
        helper,
        // nf_nat_tftp: the answer comes back to the translated client, which it must reach.
        follow_master: c.is_translated().then_some(FollowMaster {
            src: c.original.dst,
            dst: c.original.src,
            dst_port: reply.dst_port,
        }),
    })
}
