//! The generic tracker: any protocol without a tracker of its own. One timeout, no state.

use super::Verdict;
use crate::Settings;

/// Every packet refreshes the generic timeout (`nf_conntrack_generic_timeout`).
pub fn packet(s: &Settings) -> Verdict {
    Verdict::Accept {
        timeout: s.generic_timeout,
    }
}
