//! `escala run` stopped by SIGTERM or SIGINT: every running job's process group is killed,
//! their joblog lines record the signal, escala exits 255, and no process is left behind.

use std::process::Stdio;

use nix::sys::signal::Signal;

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
    common::stop_and_check(&mut child, &rx, &log, sig);
}

#[test]
fn sigterm_kills_every_job_group_and_leaves_nothing_behind() {
    stop_with(Signal::SIGTERM);
}

#[test]
fn sigint_kills_every_job_group_and_leaves_nothing_behind() {
    stop_with(Signal::SIGINT);
}
