//! ctrack-conntrack
