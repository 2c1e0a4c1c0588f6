//! `escala bench` end to end: the table, the verdicts, `--json`, the chart and the timeline.
//! Only what the runs must show is asserted (outcomes, which units ran), never a timing.

use std::process::{Command, Output};

fn escala(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_escala")).args(args).output().expect("the escala binary runs")
}

#[test]
fn crash_workload_in_json_runs_only_on_processes_and_reports_every_crash() {
    let o = escala(&["bench", "crash", "--repeat", "1", "--json", "--workers", "2"]);
    assert!(o.status.success(), "{o:?}");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "one row per unit kind");
    for r in rows {
        let unit = r["unit"].as_str().unwrap();
        if unit == "process" || unit == "process-pool" {
            assert_eq!(r["skipped"], serde_json::Value::Null, "{r}");
            assert_eq!(r["tally"]["ok"], 95, "{r}");
            assert_eq!(r["tally"]["lost"], 5, "every abort is a WorkerLost: {r}");
            assert_eq!(r["correct"], true, "{r}");
        } else {
            assert!(r["skipped"].as_str().unwrap().contains("abort"), "{r}");
        }
    }
    let verdict = &doc["verdicts"][0];
    assert_eq!(verdict["workload"], "crash");
    assert!(["process", "process-pool"].contains(&verdict["unit"].as_str().unwrap()), "{verdict}");
}

#[test]
fn table_chart_and_timeline_for_cpu_and_io() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.svg");
    let timeline = dir.path().join("timeline.svg");
    let o = escala(&[
        "bench",
        "io",
        "cpu",
        "--repeat",
        "1",
        "--chart",
        chart.to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let verdicts: Vec<&str> =
        out.lines().skip_while(|l| !l.starts_with("Which unit for which job")).skip(1).collect();
    assert!(verdicts[0].trim_start().starts_with("cpu "), "workloads in a fixed order:\n{out}");
    assert!(verdicts[1].trim_start().starts_with("io "), "{out}");
    for unit in ["serial", "thread per job", "process per job", "ThreadPool", "ProcessPool"] {
        assert_eq!(
            out.lines().filter(|l| l.contains(unit) && l.contains(" ok")).count(),
            2,
            "{unit} ran both:\n{out}"
        );
    }
    let chart = std::fs::read_to_string(&chart).unwrap();
    assert_eq!(chart.matches("class=\"bar\"").count(), 10, "a bar per workload and unit");
    let timeline = std::fs::read_to_string(&timeline).unwrap();
    for panel in ["cpu on ThreadPool", "io on ProcessPool", "io on process per job"] {
        assert!(timeline.contains(panel), "{panel} drawn");
    }
    assert!(!timeline.contains("on serial"), "serial runs have no units to draw");
    // 4 units × (64 cpu + 32 io) jobs, one bar each.
    assert_eq!(timeline.matches("class=\"bar ok\"").count(), 4 * (64 + 32));
}

#[test]
fn bad_arguments_are_one_line_errors() {
    for args in [&["bench", "gpu"][..], &["bench", "--repeat", "0"], &["bench", "--workers", "x"]] {
        let o = escala(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("escala: error: "), "{err}");
    }
}
