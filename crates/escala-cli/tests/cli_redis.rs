//! `escala worker` and `escala status` end to end: the built binary against a real
//! `redis-server` this test starts on a free loopback port.

#[path = "../../escala-redis/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use escala::{ErrorKind, Executor};
use escala_redis::RedisExecutor;
use support::{ChildGuard, RedisServer};

const WAIT: Duration = Duration::from_secs(60);

#[escala::task]
fn plus_one(x: u32) -> u32 {
    x + 1
}

fn escala(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_escala")).args(args).output().expect("the escala binary runs")
}

fn worker(r: &RedisServer, queue: &str, extra: &[&str]) -> ChildGuard {
    let url = r.url();
    let mut args = vec!["worker", "--redis", &url, "--queue", queue, "--concurrency", "2"];
    args.extend_from_slice(extra);
    ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_escala"))
            .args(&args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the escala binary runs"),
    )
}

fn join<T>(h: escala::Handle<T>) -> escala::Outcome<T> {
    h.join_timeout(WAIT).unwrap_or_else(|_| panic!("no result within {WAIT:?}"))
}

#[test]
fn unreachable_broker_is_one_line_and_non_zero() {
    for args in [
        vec!["status", "--redis", "redis://127.0.0.1:1"],
        vec!["worker", "--redis", "redis://127.0.0.1:1", "--queue", "q"],
    ] {
        let o = escala(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("escala: error:") && last.contains("cannot reach Redis"), "{err}");
    }
}

#[test]
fn worker_runs_commands_status_shows_it_and_sigterm_stops_it() {
    let r = RedisServer::start();
    let mut w = worker(&r, "cmds", &["--allow-commands"]);
    let ex = RedisExecutor::builder(&r.url()).queue("cmds").build().unwrap();
    let out = join(ex.submit_command("echo", ["hello", "redis"])).unwrap();
    assert!(out.success());
    assert_eq!(out.stdout_lossy(), "hello redis\n");
    // A registered task of this test binary is another build than `escala`'s.
    let e = join(ex.submit_task(plus_one::call(1))).unwrap_err();
    match e.kind() {
        ErrorKind::Refused(m) => assert!(m.contains("comes from build"), "{m}"),
        other => panic!("expected refused, got {other}"),
    }

    let o = escala(&["status", "--redis", &r.url(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: escala_redis::Status = serde_json::from_slice(&o.stdout).unwrap();
    let q = s.queues.iter().find(|q| q.name == "cmds").unwrap();
    assert_eq!((q.completed, q.pending, q.depth, q.dead_letters), (2, 0, 0, 1));
    assert_eq!(s.workers.len(), 1);
    assert_eq!((s.workers[0].pid, s.workers[0].concurrency), (w.0.id(), 2));
    let o = escala(&["status", "--redis", &r.url()]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.lines().any(|l| l.starts_with("cmds ")), "{table}");
    assert!(table.contains("1 live worker(s)"), "{table}");

    // SIGTERM: the worker finishes, leaves the membership list and exits 0.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.0.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = w.0.wait().unwrap();
    let stderr: Vec<String> =
        BufReader::new(w.0.stderr.take().unwrap()).lines().map_while(Result::ok).collect();
    assert!(status.success(), "{stderr:?}");
    assert!(stderr.iter().any(|l| l.contains("stopped after 1 tasks")), "{stderr:?}");
    let s: escala_redis::Status =
        serde_json::from_slice(&escala(&["status", "--redis", &r.url(), "--json"]).stdout).unwrap();
    assert!(s.workers.is_empty());
}

#[test]
fn commands_are_refused_without_the_flag() {
    let r = RedisServer::start();
    let _w = worker(&r, "nocmd", &[]);
    let ex = RedisExecutor::builder(&r.url()).queue("nocmd").build().unwrap();
    let e = join(ex.submit_command("echo", ["no"])).unwrap_err();
    assert!(e.to_string().contains("--allow-commands"), "{e}");
}

#[test]
fn key_file_signs_and_refuses_unsigned() {
    let r = RedisServer::start();
    let key = r.dir.join("key");
    std::fs::write(&key, "not so secret\n").unwrap();
    let key_arg = key.to_str().unwrap().to_string();
    let _w = worker(&r, "signed", &["--allow-commands", "--key-file", &key_arg]);
    let signed = RedisExecutor::builder(&r.url()).queue("signed").key_file(&key).build().unwrap();
    assert_eq!(join(signed.submit_command("echo", ["ok"])).unwrap().stdout_lossy(), "ok\n");
    let unsigned = RedisExecutor::builder(&r.url()).queue("signed").build().unwrap();
    let e = join(unsigned.submit_command("echo", ["no"])).unwrap_err();
    assert!(e.to_string().contains("unsigned message refused"), "{e}");
}
