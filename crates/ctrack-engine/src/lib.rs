//! ctrack-engine
