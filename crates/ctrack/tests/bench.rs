//! `ctrack bench` runs its workloads and prints what it measured in the documented form.

mod common;
use common::{ctrack, ctrack_ok};

fn bench(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["bench", "--json"];
    all.extend_from_slice(args);
    let out = ctrack_ok(&all);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

#[test]
fn every_line_has_the_documented_keys() {
    let lines = bench(&[
        "ovs-single",
        "many-flows",
        "--flows",
        "1000",
        "--count",
        "3200",
    ]);
    assert_eq!(
        lines.len(),
        7,
        "ovs-single, then insert and lookup in order, at random and batched"
    );
    for l in &lines {
        for key in [
            "workload",
            "threads",
            "packets",
            "mpps",
            "ns_per_packet",
            "bytes_per_conn",
        ] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
        assert!(l["mpps"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(lines[0]["workload"], "ovs-single");
    assert_eq!(lines[0]["packets"], 3200);
    // Bytes per connection come from the allocator: more than the entry's own size.
    assert!(lines[1]["bytes_per_conn"].as_f64().unwrap() > 100.0);
}

#[test]
fn threads_multiply_the_work() {
    let lines = bench(&["ovs-single", "--threads", "2", "--count", "3200"]);
    assert_eq!(lines[0]["threads"], 2);
    assert_eq!(lines[0]["packets"], 6400);
}

#[test]
fn the_machine_ceiling_runs_on_every_thread() {
    // `cpu` is the yardstick for threads against one: each thread does the whole count.
    let lines = bench(&["cpu", "--threads", "2", "--count", "5000"]);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["workload"], "cpu");
    assert_eq!(lines[0]["threads"], 2);
    assert_eq!(lines[0]["packets"], 10000);
    assert!(lines[0]["mpps"].as_f64().unwrap() > 0.0);
    assert!(
        lines[0]["bytes_per_conn"].is_null(),
        "no connections: no bytes"
    );
}

#[test]
fn the_pipeline_is_timed_beside_its_baseline() {
    // The target compares the pipeline with tracking alone on the same packets: the five
    // come from one run, the baseline first, each with every packet it was given.
    let lines = bench(&["pipeline", "--count", "20000"]);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["workload"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pipeline-conntrack-alone 10000",
            "pipeline 10000",
            "pipeline-10-rules 10000",
            "pipeline-10-rules-all-tables 10000",
            "pipeline-10-rules-walked 10000"
        ]
    );
    for l in &lines {
        assert_eq!(l["packets"], 20000, "{l}");
    }
}

#[test]
fn an_unknown_workload_is_named() {
    let out = ctrack(&["bench", "warp-speed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload `warp-speed`"));
}
