//! The per-namespace counters `conntrack -S` prints.

use serde::Serialize;

/// `conntrack -S` counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Obsolete in current kernels; always 0 here as there.
    pub found: u64,
    /// Packets that could not be tracked (no connection, tracker said INVALID).
    pub invalid: u64,
    /// Not incremented by current kernels.
    pub insert: u64,
    /// Confirmation lost a race (never in a single-threaded replay).
    pub insert_failed: u64,
    /// Packets dropped because the table was full.
    pub drop: u64,
    /// Entries evicted to make room.
    pub early_drop: u64,
    /// ICMP(v6) errors that matched no connection or were malformed.
    pub error: u64,
    /// Lookups restarted (never in replay).
    pub search_restart: u64,
    /// Clashes resolved at confirmation (never in replay).
    pub clash_resolve: u64,
    /// Chains too long (never in replay).
    pub chaintoolong: u64,
}

impl Stats {
    /// The line `conntrack -S` prints for one CPU.
    pub fn line(&self, cpu: u32) -> String {
        format!(
            "cpu={:<4}\tfound={} invalid={} insert={} insert_failed={} drop={} early_drop={} error={} search_restart={} clash_resolve={} chaintoolong={} ",
            cpu,
            self.found,
            self.invalid,
            self.insert,
            self.insert_failed,
            self.drop,
            self.early_drop,
            self.error,
            self.search_restart,
            self.clash_resolve,
            self.chaintoolong
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_matches_conntrack_s() {
        let s = super::Stats::default();
        assert_eq!(
            s.line(0),
            "cpu=0   \tfound=0 invalid=0 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0 "
        );
    }
}
