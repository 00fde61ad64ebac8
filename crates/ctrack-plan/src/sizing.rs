//! Sizing the table: `nf_conntrack_max` and `hashsize` from the peak the traffic needs.
//!
//! Two rules are in use. The current kernel's: buckets = RAM / 131072 (RAM / 16384 /
//! `sizeof(struct hlist_head)`), 65536 above 1 GiB, 262144 above 4 GiB on 64-bit, at least
//! 1024, and `nf_conntrack_max` = buckets; with `hashsize` given, `nf_conntrack_max` = 8 ×
//! hashsize. The older rule operators still quote: buckets = RAM / 16384, at most 65536 (all a
//! host of 4 GiB and more gets), `nf_conntrack_max` = 4 × buckets, and buckets ≈ max / 4 for
//! the best lookup.
//!
//! The headroom policy: twice the peak (bursts, and the table must never be the thing that
//! fills first), rounded up to a power of two, and never below what the kernel would give
//! the host by default.

use serde::Serialize;

/// Bytes one entry costs in the kernel: the `nf_conn` slab object (256 bytes) and its
/// extension area with accounting and timestamps (about 64).
pub const BYTES_PER_ENTRY: u64 = 320;
/// Bytes one bucket costs: an `hlist_nulls_head`.
pub const BYTES_PER_BUCKET: u64 = 8;

/// One sizing rule's numbers for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// `nf_conntrack_buckets` (hashsize).
    pub buckets: u64,
    /// `nf_conntrack_max`.
    pub max: u64,
}

/// The current kernel's default for a host with `memory` bytes.
pub fn current_default(memory: u64) -> Rule {
    let buckets = u64::from(ctrack_conntrack::settings::default_buckets(Some(memory)));
    Rule {
        buckets,
        max: buckets,
    }
}

/// The older rule: buckets = RAM / 16384, at most 65536 (which a host of 4 GiB and more
/// always gets); max = 4 × buckets.
pub fn older_default(memory: u64) -> Rule {
    let buckets = (memory / 16384).clamp(16, 65536);
    Rule {
        buckets,
        max: buckets * 4,
    }
}

/// The table's memory for `max` entries in `buckets` buckets.
pub fn table_bytes(max: u64, buckets: u64) -> u64 {
    max * BYTES_PER_ENTRY + buckets * BYTES_PER_BUCKET
}

/// What the plan recommends.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sizing {
    /// The modelled host's RAM (bytes).
    pub memory: u64,
    /// Peak concurrent entries the traffic needs (replayed without a limit).
    pub peak: u64,
    /// Seconds after the capture's start when the peak was reached.
    pub peak_at: f64,
    /// Most new connections in one second.
    pub new_per_second_peak: u64,
    /// New connections per second over the capture.
    pub new_per_second_mean: f64,
    /// The limit the host has now.
    pub configured: Rule,
    /// The current kernel's default for this RAM.
    pub current_rule: Rule,
    /// The older rule's numbers for this RAM.
    pub older_rule: Rule,
    /// Recommended `nf_conntrack_max`.
    pub max: u64,
    /// Recommended `hashsize` by the current rule (buckets = max).
    pub hashsize: u64,
    /// `hashsize` by the older guidance (buckets ≈ max / 4).
    pub hashsize_older: u64,
    /// The table's memory at the recommended size (current rule).
    pub bytes: u64,
    /// The table's memory with the older ratio.
    pub bytes_older: u64,
    /// The headroom policy, in words.
    pub policy: &'static str,
}

/// The headroom policy in words.
pub const POLICY: &str =
    "twice the peak, rounded up to a power of two, and never below the kernel's default for this RAM";

/// Sizing from the traffic's needs and the host.
pub fn size(
    memory: u64,
    configured: Rule,
    peak: u64,
    peak_at: f64,
    new_per_second_peak: u64,
    new_per_second_mean: f64,
) -> Sizing {
    let current_rule = current_default(memory);
    let max = (peak.max(1) * 2).next_power_of_two().max(current_rule.max);
    let hashsize = max;
    let hashsize_older = (max / 4).max(1);
    Sizing {
        memory,
        peak,
        peak_at,
        new_per_second_peak,
        new_per_second_mean,
        configured,
        current_rule,
        older_rule: older_default(memory),
        max,
        hashsize,
        hashsize_older,
        bytes: table_bytes(max, hashsize),
        bytes_older: table_bytes(max, hashsize_older),
        policy: POLICY,
    }
}

impl Sizing {
    /// The exact configuration, as files and commands.
    pub fn config(&self) -> Vec<(String, String)> {
        vec![
            (
                "/etc/sysctl.d/90-conntrack.conf (or /etc/sysctl.conf)".to_string(),
                format!(
                    "net.netfilter.nf_conntrack_max = {m}\nnet.nf_conntrack_max = {m}\n",
                    m = self.max
                ),
            ),
            (
                "/etc/modprobe.d/netfilter.conf".to_string(),
                format!("options nf_conntrack hashsize={}\n", self.hashsize),
            ),
            (
                "apply now".to_string(),
                format!(
                    "sysctl -p /etc/sysctl.d/90-conntrack.conf\necho {} > /sys/module/nf_conntrack/parameters/hashsize\n",
                    self.hashsize
                ),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand computations, for a host with 2 GiB of RAM:
    // current rule: 2 GiB > 1 GiB, so buckets = 65536 and max = 65536;
    // older rule: 2 GiB / 16384 = 131072, capped at 65536 buckets, max = 4 × 65536 = 262144.
    #[test]
    fn both_rules_for_two_gib() {
        assert_eq!(
            current_default(2 << 30),
            Rule {
                buckets: 65536,
                max: 65536
            }
        );
        assert_eq!(
            older_default(2 << 30),
            Rule {
                buckets: 65536,
                max: 262144
            }
        );
    }

    // 512 MiB: current rule 512 MiB / 131072 = 4096 buckets; older rule 32768 buckets, max
    // 131072. 8 GiB: current 262144; older capped at 65536 buckets, max 262144.
    #[test]
    fn the_caps_of_both_rules() {
        assert_eq!(current_default(512 << 20).buckets, 4096);
        assert_eq!(
            older_default(512 << 20),
            Rule {
                buckets: 32768,
                max: 131072
            }
        );
        assert_eq!(current_default(8 << 30).max, 262144);
        assert_eq!(
            older_default(8 << 30),
            Rule {
                buckets: 65536,
                max: 262144
            }
        );
    }

    // A peak of 50,000 entries on 512 MiB: twice is 100,000, the next power of two 131072,
    // above the default 4096: max = hashsize = 131072; memory 131072 × 320 + 131072 × 8 =
    // 42,991,616 bytes; with the older ratio 32768 buckets: 41,943,040 + 262,144 = 42,205,184.
    #[test]
    fn recommendation_by_hand() {
        let s = size(
            512 << 20,
            Rule {
                buckets: 4096,
                max: 4096,
            },
            50_000,
            1.0,
            900,
            120.0,
        );
        assert_eq!(
            (s.max, s.hashsize, s.hashsize_older),
            (131072, 131072, 32768)
        );
        assert_eq!(s.bytes, 42_991_616);
        assert_eq!(s.bytes_older, 42_205_184);
        assert!(s.config()[0]
            .1
            .contains("net.netfilter.nf_conntrack_max = 131072"));
        assert!(s.config()[1]
            .1
            .contains("options nf_conntrack hashsize=131072"));
    }

    // A small peak never goes below the default.
    #[test]
    fn never_below_the_default() {
        let s = size(
            2 << 30,
            Rule {
                buckets: 64,
                max: 64,
            },
            100,
            0.0,
            10,
            1.0,
        );
        assert_eq!(s.max, 65536);
    }
}
