//! ctrack-capture
