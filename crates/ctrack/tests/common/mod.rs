//! What the integration tests share: the repository's root and the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root (examples, tests/rules, ../shared/corpus beside it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real `ctrack` binary run with `args` from the root.
pub fn ctrack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ctrack"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("ctrack runs")
}
