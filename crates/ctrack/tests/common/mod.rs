//! What the integration tests share: the repository's root and the real binary.

// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

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

/// [`ctrack`] that must succeed: the test fails with the arguments and the error output.
pub fn ctrack_ok(args: &[&str]) -> Output {
    let out = ctrack(args);
    assert!(
        out.status.success(),
        "ctrack {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh directory of this test process's own, under the system's temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ctrack-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}
