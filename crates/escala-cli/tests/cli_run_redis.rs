//! `escala run --redis URL --queue Q`: the same jobs, run by `escala worker` processes
//! through a real `redis-server` this test starts on a free loopback port.

#[path = "../../escala-redis/tests/support/mod.rs"]
mod support;

mod common;

use std::process::{Command, Output, Stdio};

use support::{ChildGuard, RedisServer};

fn escala(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_escala")).args(args).output().expect("the escala binary runs")
}

fn worker(r: &RedisServer, queue: &str) -> ChildGuard {
    ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_escala"))
            .args(["worker", "--redis", &r.url(), "--queue", queue, "--concurrency", "2", "--allow-commands"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the escala binary runs"),
    )
}

#[test]
fn jobs_run_on_workers_in_order_with_exit_codes_and_a_joblog() {
    let r = RedisServer::start();
    let (_w1, _w2) = (worker(&r, "jobs"), worker(&r, "jobs"));
    let url = r.url();
    let o =
        escala(&["run", "--redis", &url, "--queue", "jobs", "-k", "echo", "job-{}", ":::", "a", "b", "c"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "job-a\njob-b\njob-c\n");

    // Shell syntax runs through the worker's /bin/sh; failures count as in GNU parallel.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.tsv");
    let o = escala(&[
        "run",
        "--redis",
        &url,
        "--queue",
        "jobs",
        "--joblog",
        log.to_str().unwrap(),
        "-k",
        "echo out-{}; exit {}",
        ":::",
        "0",
        "3",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(2), "two jobs failed: {o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out-0\nout-3\nout-4\n");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    assert_eq!(text.lines().next().unwrap().split('\t').count(), 9, "GNU parallel's header");
    assert!(lines.iter().all(|l| l[1] == "redis"), "the host column: {text}");
    let mut exits: Vec<(&str, &str)> = lines.iter().map(|l| (l[0], l[6])).collect();
    exits.sort();
    assert_eq!(exits, [("1", "0"), ("2", "3"), ("3", "4")]);
}

#[test]
fn local_only_options_and_an_unreachable_broker_are_one_line_errors() {
    let o = escala(&["run", "--redis", "redis://127.0.0.1:1", "echo", ":::", "a"]);
    assert_eq!(o.status.code(), Some(255), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("escala: error: ") && err.lines().count() == 1, "{err}");

    let r = RedisServer::start();
    let o = escala(&["run", "--redis", &r.url(), "--timeout", "1", "echo", ":::", "a"]);
    assert_eq!(o.status.code(), Some(255));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--timeout is not supported with --redis"), "{err}");

    let o = escala(&["run", "--queue", "q", "echo", ":::", "a"]);
    assert_ne!(o.status.code(), Some(0), "--queue needs --redis: {o:?}");
}

/// Ctrl-C (or SIGTERM) to `escala run --redis`: the jobs running on the workers are stopped
/// there (their shells and the shells' children end), their joblog lines record SIGTERM,
/// and escala exits 255, as for local jobs.
fn stop_remote_with(sig: nix::sys::signal::Signal) {
    let r = RedisServer::start();
    let (_w1, _w2) = (worker(&r, "stop"), worker(&r, "stop"));
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pids");
    let rx = common::pid_fifo(&fifo);
    let log = dir.path().join("log");
    // Each job reports its shell's pid and a grandchild's pid, then waits.
    let script = format!("echo $$ > {0}; sleep 600 & echo $! > {0}; wait", fifo.display());
    let url = r.url();
    // Killed on drop, should the test fail before escala ends.
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_escala"))
            .args([
                "run",
                "--redis",
                &url,
                "--queue",
                "stop",
                "-j3",
                "-N0",
                "--joblog",
                log.to_str().unwrap(),
            ])
            .args([&script, ":::", "a", "b", "c"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::stop_and_check(&mut child.0, &rx, &log, sig);
}

#[test]
fn sigint_stops_the_remote_jobs_on_their_workers() {
    stop_remote_with(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_stops_the_remote_jobs_on_their_workers() {
    stop_remote_with(nix::sys::signal::Signal::SIGTERM);
}
