//! Conntrack settings under their Linux sysctl names, and the kernel's default sizing.

use thiserror::Error;

const SEC: u64 = 1_000_000_000;

/// Every `net.netfilter.nf_conntrack_*` knob that changes what the tracker does.
/// Timeouts are kept in nanoseconds; sysctls set and print whole seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `nf_conntrack_max`: entries allowed before early drop and drop.
    pub max: u32,
    /// `nf_conntrack_buckets`: hash table size.
    pub buckets: u32,
    /// `nf_conntrack_expect_max`.
    pub expect_max: u32,
    /// `nf_conntrack_acct`: keep packet and byte counters.
    pub acct: bool,
    /// `nf_conntrack_timestamp`: record start time, print `delta-time=`.
    pub timestamp: bool,
    /// `nf_conntrack_checksum`: verify transport checksums at PREROUTING.
    pub checksum: bool,
    /// `nf_conntrack_events`: 0 off, 1 on, 2 on when somebody listens (treated as on).
    pub events: u8,
    /// `nf_conntrack_log_invalid`: protocol number whose invalid packets are logged (255 all).
    pub log_invalid: u8,
    /// `nf_conntrack_tcp_loose`: pick up connections mid-stream.
    pub tcp_loose: bool,
    /// `nf_conntrack_tcp_be_liberal`: only out-of-window RSTs are INVALID.
    pub tcp_be_liberal: bool,
    /// `nf_conntrack_tcp_ignore_invalid_rst`.
    pub tcp_ignore_invalid_rst: bool,
    /// `nf_conntrack_tcp_max_retrans`.
    pub tcp_max_retrans: u32,
    /// TCP timeouts per state, indexed by [`crate::proto::tcp::TcpState`], then
    /// `max_retrans` and `unacknowledged` at indexes 10 and 11.
    pub tcp_timeouts: [u64; 12],
    /// `nf_conntrack_udp_timeout`.
    pub udp_timeout: u64,
    /// `nf_conntrack_udp_timeout_stream`.
    pub udp_timeout_stream: u64,
    /// `nf_conntrack_icmp_timeout`.
    pub icmp_timeout: u64,
    /// `nf_conntrack_icmpv6_timeout`.
    pub icmpv6_timeout: u64,
    /// `nf_conntrack_generic_timeout`.
    pub generic_timeout: u64,
    /// `nf_conntrack_gre_timeout`.
    pub gre_timeout: u64,
    /// `nf_conntrack_gre_timeout_stream`.
    pub gre_timeout_stream: u64,
}

/// Index of the max_retrans timeout in [`Settings::tcp_timeouts`].
pub const TCP_RETRANS: usize = 10;
/// Index of the unacknowledged timeout in [`Settings::tcp_timeouts`].
pub const TCP_UNACK: usize = 11;

/// TCP timeout sysctl suffixes in [`Settings::tcp_timeouts`] order (index 0, NONE, has none).
const TCP_TIMEOUT_KEYS: [(&str, usize); 11] = [
    ("syn_sent", 1),
    ("syn_recv", 2),
    ("established", 3),
    ("fin_wait", 4),
    ("close_wait", 5),
    ("last_ack", 6),
    ("time_wait", 7),
    ("close", 8),
    ("syn_sent2", 9),
    ("max_retrans", TCP_RETRANS),
    ("unacknowledged", TCP_UNACK),
];

/// A setting that could not be applied.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingError {
    /// The key is not a conntrack sysctl ctrack knows.
    #[error("unknown conntrack setting '{0}'")]
    UnknownKey(String),
    /// The value does not parse as the key's type.
    #[error("invalid value '{value}' for {key}: {why}")]
    BadValue {
        /// The key as given.
        key: String,
        /// The value as given.
        value: String,
        /// What was expected.
        why: &'static str,
    },
}

/// A line of a sysctl file that was ignored: line number, key, why.
pub type IgnoredLine = (usize, String, &'static str);

/// What became of a `KEY=VALUE` line.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The setting took effect.
    Set,
    /// A read-only or non-conntrack key (such as `nf_conntrack_count` in `sysctl -a`
    /// output): noted and ignored.
    Ignored(&'static str),
}

impl Default for Settings {
    fn default() -> Self {
        let mut tcp = [0u64; 12];
        for (i, s) in [0, 120, 60, 432000, 120, 60, 30, 120, 10, 120, 300, 300]
            .iter()
            .enumerate()
        {
            tcp[i] = s * SEC;
        }
        let buckets = default_buckets(None);
        Settings {
            max: buckets,
            buckets,
            expect_max: 4096,
            acct: false,
            timestamp: false,
            checksum: true,
            events: 2,
            log_invalid: 0,
            tcp_loose: true,
            tcp_be_liberal: false,
            tcp_ignore_invalid_rst: false,
            tcp_max_retrans: 3,
            tcp_timeouts: tcp,
            udp_timeout: 30 * SEC,
            udp_timeout_stream: 120 * SEC,
            icmp_timeout: 30 * SEC,
            icmpv6_timeout: 30 * SEC,
            generic_timeout: 600 * SEC,
            gre_timeout: 30 * SEC,
            gre_timeout_stream: 180 * SEC,
        }
    }
}

/// The kernel's default bucket count for a host with `memory` bytes of RAM
/// (`nf_conntrack_init_start`): RAM/131072, 65536 above 1 GiB, 262144 above 4 GiB on
/// 64-bit, at least 1024; `None` is the 24 GiB host these defaults were observed on.
pub fn default_buckets(memory: Option<u64>) -> u32 {
    const GIB: u64 = 1 << 30;
    let mem = memory.unwrap_or(24 * GIB);
    let size = if mem > 4 * GIB {
        262_144
    } else if mem > GIB {
        65_536
    } else {
        (mem / 16384 / 8) as u32
    };
    round_buckets(size.max(1024))
}

/// Rounds a bucket count up as `nf_ct_alloc_hashtable` does (whole pages of 8-byte heads).
pub fn round_buckets(n: u32) -> u32 {
    n.div_ceil(512).max(1) * 512
}

impl Settings {
    /// Defaults for a host with `memory` bytes of RAM, as the current kernel sizes them:
    /// `nf_conntrack_max` equals the bucket count.
    pub fn for_memory(memory: u64) -> Settings {
        let buckets = default_buckets(Some(memory));
        Settings {
            max: buckets,
            buckets,
            ..Settings::default()
        }
    }

    /// `options nf_conntrack hashsize=N`: buckets as given (rounded as the kernel
    /// allocates them) and `nf_conntrack_max` eight times N.
    pub fn set_hashsize(&mut self, hashsize: u32) {
        self.buckets = round_buckets(hashsize.max(1));
        self.max = hashsize.saturating_mul(8);
    }

    /// Applies one sysctl. Accepts `net.netfilter.nf_conntrack_X`, `net/netfilter/...`,
    /// the bare `nf_conntrack_X`, and the old alias `net.nf_conntrack_max`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<Applied, SettingError> {
        let norm = key.trim().replace('/', ".");
        let name = norm
            .strip_prefix("net.netfilter.")
            .or_else(|| norm.strip_prefix("net."))
            .unwrap_or(&norm);
        let Some(name) = name.strip_prefix("nf_conntrack_") else {
            return if norm.starts_with("net.") || norm.contains('.') {
                Ok(Applied::Ignored("not a conntrack setting"))
            } else {
                Err(SettingError::UnknownKey(key.to_string()))
            };
        };
        let value = value.trim();
        let num = || -> Result<u64, SettingError> {
            value.parse::<u64>().map_err(|_| SettingError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                why: "expected a whole number",
            })
        };
        let u32v = || -> Result<u32, SettingError> {
            let n = num()?;
            u32::try_from(n).map_err(|_| SettingError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                why: "number too large",
            })
        };
        let secs = || num().map(|n| n.saturating_mul(SEC));
        let flag = || num().map(|n| n != 0);
        match name {
            "max" => self.max = u32v()?,
            "buckets" => self.buckets = u32v()?.max(1),
            "expect_max" => self.expect_max = u32v()?,
            "acct" => self.acct = flag()?,
            "timestamp" => self.timestamp = flag()?,
            "checksum" => self.checksum = flag()?,
            "events" => self.events = num()?.min(2) as u8,
            "log_invalid" => self.log_invalid = num()?.min(255) as u8,
            "tcp_loose" => self.tcp_loose = flag()?,
            "tcp_be_liberal" => self.tcp_be_liberal = flag()?,
            "tcp_ignore_invalid_rst" => self.tcp_ignore_invalid_rst = flag()?,
            "tcp_max_retrans" => self.tcp_max_retrans = u32v()?,
            "udp_timeout" => self.udp_timeout = secs()?,
            "udp_timeout_stream" => self.udp_timeout_stream = secs()?,
            "icmp_timeout" => self.icmp_timeout = secs()?,
            "icmpv6_timeout" => self.icmpv6_timeout = secs()?,
            "generic_timeout" => self.generic_timeout = secs()?,
            "gre_timeout" => self.gre_timeout = secs()?,
            "gre_timeout_stream" => self.gre_timeout_stream = secs()?,
            "count" => return Ok(Applied::Ignored("read-only")),
            "helper" | "frag6_timeout" | "frag6_low_thresh" | "frag6_high_thresh" => {
                return Ok(Applied::Ignored("has no effect on replay"))
            }
            n if n.starts_with("sctp_") || n.starts_with("dccp_") => {
                return Ok(Applied::Ignored("SCTP and DCCP use the generic tracker"))
            }
            n => {
                let Some(state) = n.strip_prefix("tcp_timeout_") else {
                    return Err(SettingError::UnknownKey(key.to_string()));
                };
                let Some(&(_, i)) = TCP_TIMEOUT_KEYS.iter().find(|(k, _)| *k == state) else {
                    return Err(SettingError::UnknownKey(key.to_string()));
                };
                self.tcp_timeouts[i] = secs()?;
            }
        }
        Ok(Applied::Set)
    }

    /// Applies a file in `sysctl.conf` syntax, or the output of `sysctl -a`: `KEY = VALUE`
    /// lines, `#` and `;` comments, a leading `-` (ignore errors) accepted. Returns the
    /// keys that were ignored, with why; errors name the line.
    pub fn apply_file(&mut self, text: &str) -> Result<Vec<IgnoredLine>, (usize, SettingError)> {
        let mut ignored = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let line = line.strip_prefix('-').unwrap_or(line);
            let Some((k, v)) = line.split_once('=') else {
                return Err((
                    i + 1,
                    SettingError::BadValue {
                        key: line.to_string(),
                        value: String::new(),
                        why: "expected KEY = VALUE",
                    },
                ));
            };
            match self.set(k, v) {
                Ok(Applied::Set) => {}
                Ok(Applied::Ignored(why)) => ignored.push((i + 1, k.trim().to_string(), why)),
                Err(SettingError::UnknownKey(key)) if !key.contains("nf_conntrack") => {
                    ignored.push((i + 1, key, "not a conntrack setting"))
                }
                Err(e) => return Err((i + 1, e)),
            }
        }
        Ok(ignored)
    }

    /// The timeout of a TCP state index (see [`Settings::tcp_timeouts`]).
    pub fn tcp_timeout(&self, i: usize) -> u64 {
        self.tcp_timeouts[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_kernel() {
        let s = Settings::default();
        assert_eq!(s.tcp_timeouts[3], 432000 * SEC);
        assert_eq!((s.max, s.buckets), (262144, 262144));
        assert_eq!(s.udp_timeout_stream, 120 * SEC);
    }

    #[test]
    fn sizing_follows_memory() {
        const GIB: u64 = 1 << 30;
        assert_eq!(default_buckets(Some(GIB / 2)), 4096);
        assert_eq!(default_buckets(Some(GIB)), 8192);
        assert_eq!(default_buckets(Some(2 * GIB)), 65536);
        assert_eq!(default_buckets(Some(8 * GIB)), 262144);
        assert_eq!(default_buckets(Some(64 << 20)), 1024);
        let mut s = Settings::for_memory(2 * GIB);
        assert_eq!(s.max, 65536);
        s.set_hashsize(16384);
        assert_eq!((s.buckets, s.max), (16384, 131072));
    }

    #[test]
    fn accepts_linux_key_spellings() {
        let mut s = Settings::default();
        assert_eq!(
            s.set("net.netfilter.nf_conntrack_max", "10"),
            Ok(Applied::Set)
        );
        assert_eq!(s.max, 10);
        s.set("net.nf_conntrack_max", "20").unwrap();
        assert_eq!(s.max, 20);
        s.set("net/netfilter/nf_conntrack_tcp_timeout_time_wait", "5")
            .unwrap();
        assert_eq!(s.tcp_timeouts[7], 5 * SEC);
        assert_eq!(
            s.set("net.netfilter.nf_conntrack_count", "3"),
            Ok(Applied::Ignored("read-only"))
        );
        assert!(matches!(
            s.set("nf_conntrack_bogus", "1"),
            Err(SettingError::UnknownKey(_))
        ));
        assert!(matches!(
            s.set("nf_conntrack_acct", "yes"),
            Err(SettingError::BadValue { .. })
        ));
    }

    #[test]
    fn file_later_lines_override_and_errors_name_the_line() {
        let mut s = Settings::default();
        let ignored = s
            .apply_file("# c\nnet.netfilter.nf_conntrack_acct = 1\nnet.ipv4.ip_forward = 1\nnet.netfilter.nf_conntrack_acct=0\n")
            .unwrap();
        assert!(!s.acct);
        assert_eq!(ignored.len(), 1);
        let err = s
            .apply_file("\n\nnet.netfilter.nf_conntrack_max = lots\n")
            .unwrap_err();
        assert_eq!(err.0, 3);
    }
}
