//! `ctrack plan`: from "table full, dropping packet" to a fix, chosen from the ruleset and the
//! traffic rather than by guesswork.
//!
//! [`deps::dependencies`] lists every rule that needs connection tracking (state matches,
//! NAT, helpers, connmark, connlimit, connbytes, CT targets) and gives the [`deps::Verdict`]:
//! tracking can go entirely, can go for named traffic classes, or cannot go because the host
//! does NAT. [`rewrite`] generates the two rulesets that take tracking away: the stateless
//! one (state matches replaced by explicit reply rules) and the NOTRACK one (raw-table
//! NOTRACK for services that need no tracking, with the filter rules their packets then
//! need). [`sizing`] computes `nf_conntrack_max` and `hashsize` from the observed peak by the
//! current kernel's rule and the older one operators quote. [`report`] holds what the plan
//! found and prints it for a terminal, as Markdown, JSON or HTML; [`plot`] draws the table's
//! occupancy as SVG. Proving a remedy by replay is the caller's: this crate has no I/O.

pub mod deps;
pub mod plot;
pub mod report;
pub mod rewrite;
pub mod sizing;
