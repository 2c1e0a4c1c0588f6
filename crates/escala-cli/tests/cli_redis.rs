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

#[test]
fn status_shows_a_kept_result_by_id() {
    let r = RedisServer::start();
    let url = r.url();
    let _w = worker(&r, "kept", &["--allow-commands"]);
    let ex = RedisExecutor::builder(&url).queue("kept").build().unwrap();
    let h = ex.submit_command("sh", ["-c", "echo out; echo err >&2; exit 3"]);
    let id = ex.task_id(&h);
    assert_eq!(join(h).unwrap().code, Some(3));

    let o = escala(&["status", "--redis", &url, "--result", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [format!("task     {id}"), "job      command sh -c".into(), "exited with code 3".into()] {
        assert!(text.contains(&want), "{want:?} in {text}");
    }
    assert!(text.contains("stdout\n  out\nstderr\n  err\n"), "{text}");
    let o = escala(&["status", "--redis", &url, "--result", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["ok"].as_bool(), v["attempt"].as_u64()), (Some(true), Some(1)));
    assert_eq!((v["command"]["code"].as_i64(), v["command"]["stdout"].as_str()), (Some(3), Some("out\n")));

    // A task this worker refused: its error is kept too.
    let h = ex.submit_task(plus_one::call(1));
    let refused = ex.task_id(&h);
    join(h).unwrap_err();
    let o = escala(&["status", "--redis", &url, "--result", &refused, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["ok"].as_bool(), v["error"]["kind"].as_str()), (Some(false), Some("refused")));

    // No such result, and a malformed id: one line each, exit 2.
    let unknown = format!("{}-999999", ex.client_id());
    for (id, want) in [(unknown.as_str(), "no result is kept for task"), ("../x", "bad task id")] {
        let o = escala(&["status", "--redis", &url, "--result", id]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("escala: error:") && err.contains(want), "{err}");
    }
}

#[test]
fn worker_run_and_status_over_rediss() {
    let r = RedisServer::start_tls(&[]);
    let files = r.tls.as_ref().unwrap();
    let (url, ca) = (r.url(), files.ca.to_str().unwrap().to_string());
    assert!(url.starts_with("rediss://"));
    let _w = worker(&r, "tlsq", &["--allow-commands", "--tls-ca", &ca]);
    let o = escala(&[
        "run", "--redis", &url, "--tls-ca", &ca, "--queue", "tlsq", "-k", "echo", "tls-{}", ":::", "a", "b",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "tls-a\ntls-b\n");
    let o = escala(&["status", "--redis", &url, "--tls-ca", &ca, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: escala_redis::Status = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s.queues.iter().find(|q| q.name == "tlsq").map(|q| q.completed), Some(2));
    // The CA file can come from the environment too.
    let o = Command::new(env!("CARGO_BIN_EXE_escala"))
        .args(["status", "--redis", &url])
        .env("ESCALA_REDIS_TLS_CA", &ca)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A CA that did not sign the server's certificate: one error line, non-zero, at once
    // (the worker says what it is about to run first).
    let wrong = files.wrong_ca.to_str().unwrap();
    for (args, code) in [
        (vec!["status", "--redis", &url, "--tls-ca", wrong], 2),
        (vec!["worker", "--redis", &url, "--tls-ca", wrong, "--queue", "tlsq"], 2),
        // `escala run` exits 255 on errors, as GNU parallel does.
        (vec!["run", "--redis", &url, "--tls-ca", wrong, "--queue", "tlsq", "echo", ":::", "x"], 255),
    ] {
        let t0 = std::time::Instant::now();
        let o = escala(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| !l.starts_with("escala worker:")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(errors[0].starts_with("escala: error:") && errors[0].contains("certificate"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", t0.elapsed());
    }
}
