//! `escala run` end to end: joblog, resume, results, timeouts, retries, halting, delay and
//! the events file, checked against GNU parallel's documented behaviour.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn escala() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_escala"));
    c.arg("run").timeout(std::time::Duration::from_secs(60));
    c
}

/// The joblog's rows (after the header), split at tabs.
fn rows(log: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand")
    );
    let mut rows: Vec<Vec<String>> = lines.map(|l| l.split('\t').map(str::to_string).collect()).collect();
    rows.sort_by_key(|r| r[0].parse::<usize>().unwrap());
    rows
}

#[test]
fn joblog_has_gnu_parallels_header_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    escala().args(["--joblog", log.to_str().unwrap(), "echo", ":::", "a", "b c"]).assert().success();
    let rows = rows(&log);
    assert_eq!(rows.len(), 2);
    for (r, (cmd, bytes)) in rows.iter().zip([("echo a", "2"), ("echo 'b c'", "4")]) {
        assert_eq!(r.len(), 9);
        assert_eq!(r[1], ":");
        let start: f64 = r[2].parse().unwrap();
        assert!(start > 1.6e9, "{r:?}");
        assert_eq!(r[2].split('.').nth(1).map(str::len), Some(3));
        assert_eq!(r[3].len(), 10, "runtime is %10.3f: {r:?}");
        assert_eq!((r[4].as_str(), r[5].as_str(), r[6].as_str(), r[7].as_str()), ("0", bytes, "0", "0"));
        assert_eq!(r[8], cmd);
    }
}

#[test]
fn resume_skips_logged_jobs_and_resume_failed_reruns_failures() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let l = log.to_str().unwrap();
    escala().args(["--joblog", l, "exit {}", ":::", "0", "1"]).assert().code(1);
    // Everything is logged: nothing runs again.
    escala().args(["--resume", "--joblog", l, "exit {}", ":::", "0", "1"]).assert().code(0);
    assert_eq!(rows(&log).len(), 2);
    // Only the failed job (seq 2) runs again, now with an input that succeeds.
    escala().args(["--resume-failed", "--joblog", l, "echo", ":::", "x", "y"]).assert().code(0).stdout("y\n");
    let r = rows(&log);
    assert_eq!(r.len(), 3);
    assert_eq!((r[2][0].as_str(), r[2][6].as_str()), ("2", "0"));
}

#[test]
fn results_dir_has_gnu_parallels_layout() {
    let dir = tempfile::tempdir().unwrap();
    let res = dir.path().join("res");
    escala()
        .args(["--results", res.to_str().unwrap(), "echo", ":::", "a", "b/c", ":::", "1"])
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(res.join("1/a/2/1/stdout")).unwrap(), "a 1\n");
    assert_eq!(std::fs::read_to_string(res.join("1/b\\_c/2/1/stdout")).unwrap(), "b/c 1\n");
    assert_eq!(std::fs::read_to_string(res.join("1/a/2/1/stderr")).unwrap(), "");
    assert!(res.join("1/a/2/1/seq").exists());
}

#[test]
fn timeout_kills_the_jobs_process_group_and_logs_minus_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let pid_file = dir.path().join("pid");
    // The job's shell starts a grandchild; the timeout must kill both (the whole group).
    // The timeout leaves the shell ample time to write the pid first, even on a busy machine.
    let script = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
    escala()
        .args(["-N0", "--timeout", "2", "--joblog", log.to_str().unwrap(), &script, ":::", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("timed out"));
    let r = rows(&log);
    assert_eq!((r[0][6].as_str(), r[0][7].as_str()), ("-1", "15"));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(common::ends_within(pid, 10), "grandchild {pid} outlived the timeout");
}

#[test]
fn retries_count_runs_in_total_and_only_the_last_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let count = dir.path().join("count");
    // Fails on the first two runs, succeeds on the third.
    let script = format!("echo run >> {0}; test $(wc -l < {0}) -ge 3", count.display());
    let l = log.to_str().unwrap();
    escala().args(["-N0", "--retries", "2", "--joblog", l, &script, ":::", "x"]).assert().code(1);
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 2);
    let r = rows(&log);
    assert_eq!((r.len(), r[0][6].as_str()), (1, "1"), "one line, for the last run");
    escala()
        .args(["-N0", "--retries", "3", "--retry-delay", "0.01", "--joblog", l, &script, ":::", "x"])
        .assert()
        .code(0);
    let r = rows(&log);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0][6], "0");
}

#[test]
fn halt_now_on_first_failure_exits_with_its_code_and_starts_nothing_more() {
    escala()
        .args(["-j1", "-k", "--halt", "now,fail=1", "echo {}; exit {}", ":::", "0", "3", "0", "0"])
        .assert()
        .code(3)
        .stdout("0\n3\n")
        .stderr(predicate::str::contains("this job failed"));
    escala()
        .args(["-j1", "--halt", "soon,success=1", "echo", ":::", "a", "b", "c"])
        .assert()
        .code(0)
        .stdout("a\n");
    // With a percentage, the exit code is the percentage of all jobs that failed.
    escala()
        .args(["-j1", "--halt", "soon,fail=50%", "-N0", "exit 1", ":::", "a", "b", "c", "d"])
        .assert()
        .code(50);
    escala().args(["-j1", "--halt", "now,fail=2", "exit {}", ":::", "1", "2", "0", "0"]).assert().code(2);
}

#[test]
fn delay_spaces_starts_and_every_job_still_runs() {
    let out = escala().args(["--delay", "0.05", "-k", "echo", ":::", "a", "b", "c"]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a\nb\nc\n");
}

#[test]
fn events_file_has_a_start_and_a_finish_for_every_job() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("ev.jsonl");
    escala().args(["--events", ev.to_str().unwrap(), "exit {}", ":::", "0", "2"]).assert().code(1);
    let text = std::fs::read_to_string(&ev).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds = |k: &str| events.iter().filter(|e| e["kind"]["event"] == k).count();
    assert_eq!(kinds("started"), 2);
    assert_eq!(kinds("finished"), 2);
    assert!(events.iter().any(|e| e["kind"]["outcome"] == "exited"), "{text}");
}

#[test]
fn events_file_has_a_retried_event_for_each_run_that_will_be_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("ev.jsonl");
    // Job `1` fails all three runs, job `0` succeeds at once.
    escala()
        .args(["-j1", "--retries", "3", "--retry-delay", "0.01", "--events", ev.to_str().unwrap()])
        .args(["exit {}", ":::", "1", "0"])
        .assert()
        .code(1);
    let text = std::fs::read_to_string(&ev).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |name: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["name"] == name)
            .map(|e| match e["kind"]["event"].as_str().unwrap() {
                "retried" => format!("retried:{}:{}", e["kind"]["attempt"], e["kind"]["delay_ms"]),
                "finished" => format!("finished:{}", e["kind"]["outcome"].as_str().unwrap()),
                other => other.to_string(),
            })
            .collect()
    };
    // Each retry follows the failed run it repeats, with the attempt about to start and its
    // backoff (10 ms, doubled); the last run is not retried.
    assert_eq!(
        of("1 exit 1"),
        [
            "started",
            "finished:exited",
            "retried:2:10",
            "started",
            "finished:exited",
            "retried:3:20",
            "started",
            "finished:exited"
        ],
        "{text}"
    );
    assert_eq!(of("2 exit 0"), ["started", "finished:ok"], "{text}");
    // The retried event names the run that failed.
    let first_run = events.iter().find(|e| e["name"] == "1 exit 1").unwrap()["task"].clone();
    let retried = events.iter().find(|e| e["kind"]["event"] == "retried").unwrap();
    assert_eq!(retried["task"], first_run, "{text}");
}

mod common;

#[test]
fn memfree_and_load_gates_that_hold_let_every_job_run() {
    escala()
        .args(["-k", "--memfree", "1k", "--load", "10000", "--progress", "echo", ":::", "a", "b"])
        .assert()
        .success()
        .stdout("a\nb\n");
    escala().args(["--memfree", "lots", "echo", ":::", "a"]).assert().failure();
}

#[test]
fn timeline_draws_a_bar_per_job_in_its_slot_coloured_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("t.svg");
    escala()
        .args(["-j2", "--timeline", svg.to_str().unwrap(), "exit {}", ":::", "0", "0", "5", "0"])
        .assert()
        .code(1);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{text}");
    assert_eq!(text.matches("class=\"bar ").count(), 4);
    assert_eq!(text.matches("class=\"bar exited\"").count(), 1, "one failed bar: {text}");
    assert!(text.contains("\nslot 1\n") && text.contains("\nslot 2\n"));
    assert!(!text.contains("slot 3"));
}
