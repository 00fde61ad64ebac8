//! Runs the real `ctrack` binary on the bundled example, recorded from a real kernel, and on
//! the public corpus.

use std::collections::BTreeMap;

mod common;
use common::{ctrack, ctrack_ok, root, temp_dir};

/// `conntrack -L` lines keyed without timeout and `use=`, valued by timeout.
fn entries(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| l.starts_with("ipv"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let timeout: u64 = f[4].parse().unwrap();
            let key: Vec<&str> = f
                .iter()
                .enumerate()
                .filter(|(i, w)| *i != 4 && !w.starts_with("use="))
                .map(|(_, w)| *w)
                .collect();
            (key.join(" "), timeout)
        })
        .collect()
}

#[test]
fn example_replay_lists_what_the_kernel_listed() {
    let ex = root().join("examples/basic");
    let at = std::fs::read_to_string(ex.join("kernel-at.txt")).unwrap();
    let out = ctrack_ok(&[
        "replay",
        "examples/basic/capture.pcap",
        "--sysctl-file",
        "examples/basic/sysctl.conf",
        "--at",
        at.trim(),
        "--table",
        "conntrack",
    ]);
    let ours = entries(&String::from_utf8(out.stdout).unwrap());
    let kernel = entries(&std::fs::read_to_string(ex.join("kernel-conntrack-L.txt")).unwrap());
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        kernel.keys().collect::<Vec<_>>()
    );
    for (k, t) in &kernel {
        assert!(
            ours[k].abs_diff(*t) <= 1,
            "timeout {} vs kernel {t}: {k}",
            ours[k]
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("conntrack v1.4.7 (conntrack-tools): 5 flow entries have been shown."));
}

#[test]
fn every_corpus_capture_replays_without_error() {
    let corpus = root().join("../shared/corpus");
    let mut n = 0;
    for e in std::fs::read_dir(&corpus).expect("../shared/corpus is present") {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.contains(".pcap") {
            continue;
        }
        ctrack_ok(&["replay", p.to_str().unwrap(), "--table", "proc", "--stats"]);
        n += 1;
    }
    assert!(n >= 10, "expected the ten corpus captures, found {n}");
}

#[test]
fn damaged_capture_reports_file_and_offset_after_replaying_the_rest() {
    let dir = temp_dir("test");
    let bytes = std::fs::read(root().join("examples/basic/capture.pcap")).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let out = ctrack(&["replay", cut.to_str().unwrap(), "--table", "conntrack"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.pcap: at byte "), "{err}");
    assert!(
        !out.stdout.is_empty(),
        "the packets before the damage were replayed"
    );
}

#[test]
fn bad_sysctl_names_the_file_and_line() {
    let dir = temp_dir("test-sysctl");
    let f = dir.join("bad.conf");
    std::fs::write(
        &f,
        "net.netfilter.nf_conntrack_acct = 1\nnet.netfilter.nf_conntrack_max = many\n",
    )
    .unwrap();
    let out = ctrack(&[
        "replay",
        "examples/basic/capture.pcap",
        "--sysctl-file",
        f.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf:2:") && err.contains("many"), "{err}");
}

#[test]
fn events_file_has_conntrack_e_lines() {
    let dir = temp_dir("test-ev");
    let ev = dir.join("ev.txt");
    ctrack_ok(&[
        "replay",
        "examples/basic/capture.pcap",
        "--sysctl-file",
        "examples/basic/sysctl.conf",
        "--events",
        ev.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(ev).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with('[') && first.contains("\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT "),
        "{first}"
    );
}

#[test]
fn ct_timeout_needs_a_policy_of_the_rules_protocol() {
    let dir = temp_dir("nfct");
    let rules = dir.join("rules.v4");
    std::fs::write(
        &rules,
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A PREROUTING -p tcp -j CT --timeout short\nCOMMIT\n",
    )
    .unwrap();
    let policies = dir.join("nfct.conf");
    let run = |nfct: &str| {
        std::fs::write(&policies, nfct).unwrap();
        let out = ctrack(&[
            "replay",
            "examples/basic/capture.pcap",
            "--rules",
            rules.to_str().unwrap(),
            "--nfct",
            policies.to_str().unwrap(),
            "-q",
        ]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run("");
    assert!(
        !ok && err.contains("rules.v4:4") && err.contains("no timeout policy `short`"),
        "{err}"
    );
    let (ok, err) = run("add timeout short inet udp unreplied 5\n");
    assert!(!ok && err.contains("another family or protocol"), "{err}");
    let (ok, err) = run("# policies\nadd timeout short inet tcp establishd 5\n");
    assert!(
        !ok && err.contains("nfct.conf:2") && err.contains("establishd"),
        "{err}"
    );
    let (ok, err) = run("add timeout short inet tcp established 5\n");
    assert!(ok, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Everything a replay writes, with `--threads N`.
fn replay_outputs(captures: &[String], threads: &str, dir: &std::path::Path) -> Vec<Vec<u8>> {
    let files = ["verdicts.json", "events.txt", "out.pcap", "log.txt"].map(|f| dir.join(f));
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let mut args: Vec<&str> = vec!["replay", "--threads", threads];
    args.extend(captures.iter().map(String::as_str));
    args.extend([
        "--rules",
        "tests/rules/plan/router-corpus.rules",
        "--rules6",
        "tests/rules/plan/router-corpus6.rules",
        // A small table, so that some packets meet a full one and early drop.
        "--sysctl",
        "net.netfilter.nf_conntrack_max=40",
        "--verdicts",
        &paths[0],
        "--events",
        &paths[1],
        "--out",
        &paths[2],
        "--log",
        &paths[3],
        "--table",
        "conntrack",
        "--stats",
        "--counters",
    ]);
    let out = ctrack_ok(&args);
    let mut all = vec![out.stdout, out.stderr];
    all.extend(files.iter().map(|f| std::fs::read(f).expect("written")));
    all
}

#[test]
fn replay_with_threads_writes_what_one_thread_writes() {
    let corpus = root().join("../shared/corpus");
    let mut captures: Vec<String> = std::fs::read_dir(&corpus)
        .expect("../shared/corpus is present")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".pcap"))
        .map(|p| p.display().to_string())
        .collect();
    captures.sort();
    assert!(captures.len() >= 10, "expected the ten corpus captures");
    let dir = temp_dir("threads");
    // Each capture alone, then all of them merged (read on several threads).
    let mut runs: Vec<Vec<String>> = captures.iter().map(|c| vec![c.clone()]).collect();
    runs.push(captures.clone());
    let mut dropped_somewhere = false;
    for run in &runs {
        let one = replay_outputs(run, "1", &dir);
        dropped_somewhere |= String::from_utf8_lossy(&one[2]).contains("table full");
        assert!(!one[2].is_empty(), "{run:?}: verdicts written");
        for threads in ["2", "3"] {
            let many = replay_outputs(run, threads, &dir);
            for (k, (a, b)) in one.iter().zip(&many).enumerate() {
                assert!(a == b, "{run:?}: output {k} differs with {threads} threads");
            }
        }
    }
    assert!(
        dropped_somewhere,
        "the small table made no packet meet a full table"
    );
    let _ = std::fs::remove_dir_all(dir);
}
