//! The connection table and its trackers, with the Linux kernel's semantics.
//!
//! [`Conntrack`] is the kernel's `nf_conntrack` for one network namespace: a hash table of
//! [`Conn`] entries reachable by either direction's [`ctrack_packet::Tuple`], per-protocol
//! trackers in [`proto`] behind one interface, timeouts in packet time, early drop when
//! full, events, and the `conntrack -S` counters. [`Settings`] holds the sysctls under their
//! Linux names, and [`format`](mod@format) prints what `/proc/net/nf_conntrack`, `conntrack -L`,
//! `conntrack -E` and `conntrack -S` print. [`Conntrack::conntrack_in_udp4`] is a fast path
//! for IPv4/UDP packets, read in place from their bytes (a connection's next packets, and
//! a new connection's first): the general path's decision and effects, where it can decide
//! at all.
//!
//! The crate is sans-IO: time is always an argument (nanoseconds), nothing reads a clock,
//! and the same packets and seed give the same table.

pub mod conn;
pub mod core;
pub mod expect;
pub mod format;
pub mod ftp;
mod huge;
pub mod nat;
pub mod proto;
pub mod seqadj;
pub mod settings;
pub mod shard;
mod siphash;
pub mod stats;
pub mod status;
pub mod table;
pub mod timeout;
mod timers;

pub use crate::core::{
    Conntrack, CtRef, Event, EventKind, Help, Hook, InResult, Mangle, Prefetched, Udp4Hash,
    EXPECT_FULL_LOG, TABLE_FULL_LOG,
};
pub use conn::{Conn, Extras, HelperData, HelperName, Rare, Template, TimeoutName};
pub use settings::{Applied, SettingError, Settings};
pub use stats::Stats;
pub use status::{ipct, ips, CtInfo, PacketState};
