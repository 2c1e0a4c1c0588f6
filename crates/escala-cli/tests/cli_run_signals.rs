//! `escala run` stopped by SIGTERM or SIGINT: every running job's process group is killed,
//! their joblog lines record the signal, escala exits 255, and no process is left behind.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod common;

fn stop_with(sig: Signal) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pids");
    let rx = common::pid_fifo(&fifo);
    let log = dir.path().join("log");
    // Each job reports its shell's pid and a grandchild's pid, then waits.
    let script = format!("echo $$ > {0}; sleep 600 & echo $! > {0}; wait", fifo.display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_escala"))
        .args(["run", "-j3", "-N0", "--joblog", log.to_str().unwrap(), &script, ":::", "a", "b", "c"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pids: Vec<i32> =
        (0..6).map(|_| rx.recv_timeout(Duration::from_secs(30)).expect("a job did not start")).collect();
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    assert!(common::ends_within(child.id() as i32, 30), "escala did not stop on {sig}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(255), "{sig}");
    for pid in &pids {
        assert!(common::ends_within(*pid, 10), "process {pid} was left behind after {sig}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 3, "{text}");
    for r in rows {
        assert_eq!((r[6], r[7]), ("-1", "15"), "{text}");
    }
}

#[test]
fn sigterm_kills_every_job_group_and_leaves_nothing_behind() {
    stop_with(Signal::SIGTERM);
}

#[test]
fn sigint_kills_every_job_group_and_leaves_nothing_behind() {
    stop_with(Signal::SIGINT);
}
