//! The Redis executor and worker against a real `redis-server` this test starts: round
//! trips, refusals, limits, malformed and signed entries, a worker SIGKILLed mid-task, a
//! task longer than its lease, and Redis restarted mid-run.
//!
//! `harness = false`: the binary doubles as a worker process. With `ESCALA_REDIS_WORKER`
//! set (`url queue lease_ms`), `main` runs a worker until SIGTERM instead of the tests, so
//! a test can kill a real worker process.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use escala::{ErrorKind, Executor, Shutdown, Task};
use escala_redis::{RedisExecutor, Worker};
use libtest_mimic::{Arguments, Failed, Trial};
use redis::Value;
use support::{ChildGuard, RedisServer};

type TestResult = Result<(), Failed>;

const WORKER_ENV: &str = "ESCALA_REDIS_WORKER";
/// The longest any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

#[escala::task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[escala::task]
fn bytes_len(v: Vec<u8>) -> usize {
    v.len()
}

#[escala::task]
fn fails(why: String) -> Result<u8, String> {
    Err(why)
}

/// Counts its runs in Redis; the first run announces itself and then works forever
/// (until its worker is killed); later runs return the run number.
#[escala::task]
fn stuck_first(url: String, key: String) -> i64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let n: i64 = redis::cmd("INCR").arg(&key).query(&mut c).unwrap();
    if n == 1 {
        let _: () =
            redis::cmd("XADD").arg(format!("{key}:started")).arg("*").arg("n").arg(n).query(&mut c).unwrap();
        loop {
            std::thread::sleep(Duration::from_millis(50)); // work that never ends
        }
    }
    n
}

/// Counts its runs in Redis; the first run announces itself and waits for the test to
/// open its gate (a list it pops); later runs return at once. Returns the run number.
#[escala::task]
fn gated_first(url: String, key: String) -> i64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let n: i64 = redis::cmd("INCR").arg(&key).query(&mut c).unwrap();
    if n == 1 {
        let _: () =
            redis::cmd("XADD").arg(format!("{key}:started")).arg("*").arg("n").arg(n).query(&mut c).unwrap();
        let _: Value =
            redis::cmd("BLPOP").arg(format!("{key}:gate")).arg(WAIT.as_secs()).query(&mut c).unwrap();
    }
    n
}

/// Counts its runs in Redis, then works for `ms` milliseconds.
#[escala::task]
fn slow_counted(url: String, key: String, ms: u64) -> i64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let n: i64 = redis::cmd("INCR").arg(&key).query(&mut c).unwrap();
    std::thread::sleep(Duration::from_millis(ms)); // the work
    n
}

/// Records its run in Redis (`HINCRBY runs {i} 1`, retried across a Redis restart), then
/// works for `ms` milliseconds and returns `i`.
#[escala::task]
fn recorded(url: String, i: u64, ms: u64) -> u64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let done = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut c| redis::cmd("HINCRBY").arg("runs").arg(i).arg(1).query::<i64>(&mut c));
        match done {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() > deadline => panic!("cannot record run {i}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)), // Redis is restarting
        }
    }
    std::thread::sleep(Duration::from_millis(ms)); // the work
    i
}

/// A task type that no `#[escala::task]` registered: workers do not know it.
struct Ghost;
impl Task for Ghost {
    const NAME: &'static str = "tests::ghost";
    type Args = u8;
    type Output = u8;
    fn run(args: u8) -> Result<u8, String> {
        Ok(args)
    }
}

fn main() {
    let _exit = escala::init();
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        let parts: Vec<&str> = spec.split(' ').collect();
        let lease = Duration::from_millis(parts[2].parse().unwrap());
        let mut builder = Worker::builder(parts[0]).queue(parts[1]).concurrency(2).lease(lease);
        if let Some(attempts) = parts.get(3) {
            builder = builder.max_attempts(attempts.parse().unwrap());
        }
        // Started while Redis restarts (the chaos test), try again for a while.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match builder.clone().run_until_signal() {
                Err(e) if e.is_unreachable() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => {
                    other.unwrap();
                    return;
                }
            }
        }
    }
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test("round_trip_blocking_async_and_map", round_trip),
        Trial::test("task_errors_come_back", task_errors),
        Trial::test("unknown_task_is_refused", unknown_task),
        Trial::test("oversized_payload_is_refused_on_both_sides", oversized),
        Trial::test("malformed_entries_are_dead_lettered", malformed),
        Trial::test("signed_unsigned_and_tampered", signing),
        Trial::test("worker_sigkilled_mid_task_is_reclaimed", worker_killed),
        Trial::test("task_longer_than_lease_runs_once", long_task),
        Trial::test("hung_worker_duplicate_is_counted_and_dropped", hung_worker),
        Trial::test("redis_restart_mid_run_loses_nothing", redis_restart),
        Trial::test("shutdown_and_rejection", shutdown),
        Trial::test("acl_user_and_password_in_the_url", acl),
        Trial::test("chaos_workers_killed_and_redis_restarted", chaos),
    ];
    libtest_mimic::run(&args, tests).exit();
}

fn exec(r: &RedisServer, queue: &str) -> RedisExecutor {
    RedisExecutor::builder(&r.url()).queue(queue).build().unwrap()
}

fn join<T>(h: escala::Handle<T>) -> escala::Outcome<T> {
    h.join_timeout(WAIT).unwrap_or_else(|h| panic!("task {} had no result within {WAIT:?}", h.id()))
}

/// Blocks (bounded) until `stream` has an entry after `after`; returns its id and fields.
fn next_entry(c: &mut redis::Connection, stream: &str, after: &str) -> (String, Vec<(String, Vec<u8>)>) {
    let v: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(1)
        .arg("BLOCK")
        .arg(WAIT.as_millis() as u64)
        .arg("STREAMS")
        .arg(stream)
        .arg(after)
        .query(c)
        .unwrap();
    let Value::Array(streams) = v else { panic!("nothing on {stream} within {WAIT:?}") };
    let Value::Array(kv) = &streams[0] else { panic!() };
    let Value::Array(entries) = &kv[1] else { panic!() };
    let Value::Array(e) = &entries[0] else { panic!() };
    let id: String = redis::from_redis_value_ref(&e[0]).unwrap();
    let fields: Vec<(String, Vec<u8>)> = redis::from_redis_value_ref(&e[1]).unwrap();
    (id, fields)
}

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &fields.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no field {name}")).1
}

fn round_trip() -> TestResult {
    let r = RedisServer::start();
    let w = Worker::builder(&r.url()).queue("rt").concurrency(2).start()?;
    let ex = exec(&r, "rt");
    let hs: Vec<_> = (0..50).map(|i| ex.submit_task(add::call(i, i))).collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.kind(), escala::UnitKind::Remote);
        assert_eq!(join(h)?, 2 * i as i64);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let v = rt.block_on(async { ex.submit_task(add::call(40, 2)).await })?;
    assert_eq!(v, 42);
    let mut sum = 0;
    for h in escala::as_completed((0..5).map(|i| ex.submit_task(add::call(i, 0))).collect::<Vec<_>>()) {
        sum += h.join()?;
    }
    assert_eq!(sum, 10);
    let mapped: Vec<i64> = ex.map_tasks((0..20).map(|i| add::call(i, 1))).map(Result::unwrap).collect();
    assert_eq!(mapped, (1..=20).collect::<Vec<_>>());
    let s = ex.stats();
    assert_eq!((s.submitted, s.completed, s.queued), (76, 76, 0));
    let q = ex.queue_status()?;
    assert_eq!((q.completed, q.pending, q.depth, q.dead_letters), (76, 0, 0, 0));
    w.stop();
    let report = w.join();
    assert_eq!((report.ran, report.ok, report.redelivered), (76, 76, 0));
    Ok(())
}

fn task_errors() -> TestResult {
    let r = RedisServer::start();
    let _w = Worker::builder(&r.url()).queue("err").concurrency(1).start()?;
    let ex = exec(&r, "err");
    let e = join(ex.submit_task(fails::call("no luck".into()))).unwrap_err();
    assert!(e.is_failed(), "{e}");
    assert!(e.to_string().contains("no luck"));
    Ok(())
}

fn unknown_task() -> TestResult {
    let r = RedisServer::start();
    let _w = Worker::builder(&r.url()).queue("unk").concurrency(1).start()?;
    let ex = exec(&r, "unk");
    let e = join(ex.submit_task(escala::Call::<Ghost>::new(1))).unwrap_err();
    match e.kind() {
        ErrorKind::Refused(m) => assert!(m.contains("unknown task `tests::ghost`"), "{m}"),
        other => panic!("expected refused, got {other}"),
    }
    assert_eq!(ex.queue_status()?.dead_letters, 1);
    // The worker goes on.
    assert_eq!(join(ex.submit_task(add::call(1, 2)))?, 3);
    Ok(())
}

fn oversized() -> TestResult {
    let r = RedisServer::start();
    let _w = Worker::builder(&r.url()).queue("big").concurrency(1).max_message_bytes(4096).start()?;
    // Caller side: refused before it is sent.
    let small = RedisExecutor::builder(&r.url()).queue("big").max_message_bytes(1024).build()?;
    let e = join(small.submit_task(bytes_len::call(vec![7; 2000]))).unwrap_err();
    assert!(e.is_codec() && e.to_string().contains("over the limit"), "{e}");
    // Worker side: a message over the worker's limit is dead-lettered, never decoded.
    let mut c = r.conn();
    let _: () =
        redis::cmd("XADD").arg("escala:q:big").arg("*").arg("m").arg(vec![0u8; 10_000]).query(&mut c)?;
    let (_, dead) = next_entry(&mut c, "escala:dead:big", "0-0");
    assert!(String::from_utf8_lossy(field(&dead, "reason")).contains("oversized message: 10000 bytes"));
    // A result over the limit comes back as a codec error.
    let ex = exec(&r, "big");
    assert_eq!(join(ex.submit_task(bytes_len::call(vec![1; 100])))?, 100);
    Ok(())
}

fn malformed() -> TestResult {
    let r = RedisServer::start();
    let w = Worker::builder(&r.url()).queue("bad").concurrency(1).start()?;
    let mut c = r.conn();
    let _: () = redis::cmd("XADD").arg("escala:q:bad").arg("*").arg("x").arg("y").query(&mut c)?;
    let _: () = redis::cmd("XADD")
        .arg("escala:q:bad")
        .arg("*")
        .arg("m")
        .arg(b"\xff\xff\xff garbage".as_slice())
        .query(&mut c)?;
    let (id, first) = next_entry(&mut c, "escala:dead:bad", "0-0");
    assert!(String::from_utf8_lossy(field(&first, "reason")).contains("no `m` field"));
    let (_, second) = next_entry(&mut c, "escala:dead:bad", &id);
    assert!(String::from_utf8_lossy(field(&second, "reason")).contains("malformed message"));
    let ex = exec(&r, "bad");
    assert_eq!(join(ex.submit_task(add::call(2, 2)))?, 4);
    let q = ex.queue_status()?;
    assert_eq!((q.dead_letters, q.pending), (2, 0));
    assert_eq!(w.report().dead_lettered, 2);
    Ok(())
}

fn signing() -> TestResult {
    let r = RedisServer::start();
    let _w = Worker::builder(&r.url()).queue("sig").concurrency(1).key(b"shared secret").start()?;
    let signed = RedisExecutor::builder(&r.url()).queue("sig").key(b"shared secret").build()?;
    assert_eq!(join(signed.submit_task(add::call(20, 22)))?, 42);
    // Unsigned: refused and dead-lettered; the caller is told why.
    let unsigned = exec(&r, "sig");
    let e = join(unsigned.submit_task(add::call(1, 1))).unwrap_err();
    assert!(e.to_string().contains("unsigned message refused"), "{e}");
    // Tampered: a signed message sent to a queue nobody runs, altered, then moved.
    let staged = RedisExecutor::builder(&r.url()).queue("stage").key(b"shared secret").build()?;
    let h = staged.submit_task(add::call(5, 5));
    let mut c = r.conn();
    let (_, entry) = next_entry(&mut c, "escala:q:stage", "0-0");
    let mut m = field(&entry, "m").to_vec();
    *m.last_mut().unwrap() ^= 0x01; // the last argument byte: 5 becomes another number
    let s = field(&entry, "s").to_vec();
    let _: () =
        redis::cmd("XADD").arg("escala:q:sig").arg("*").arg("m").arg(m).arg("s").arg(s).query(&mut c)?;
    let e = join(h).unwrap_err();
    assert!(e.to_string().contains("bad signature"), "{e}");
    assert_eq!(signed.queue_status()?.dead_letters, 2);
    Ok(())
}

fn spawn_worker(r: &RedisServer, queue: &str, lease_ms: u64) -> ChildGuard {
    spawn_worker_with(r, queue, lease_ms, None)
}

/// A worker process; `attempts` overrides its deliveries-before-dead-letter limit.
fn spawn_worker_with(r: &RedisServer, queue: &str, lease_ms: u64, attempts: Option<u32>) -> ChildGuard {
    let attempts = attempts.map_or(String::new(), |a| format!(" {a}"));
    ChildGuard(
        Command::new(std::env::current_exe().unwrap())
            .env(WORKER_ENV, format!("{} {queue} {lease_ms}{attempts}", r.url()))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn worker_killed() -> TestResult {
    let r = RedisServer::start();
    let ex = exec(&r, "kill");
    let mut victim = spawn_worker(&r, "kill", 500);
    let h = ex.submit_task(stuck_first::call(r.url(), "runs".into()));
    let mut c = r.conn();
    next_entry(&mut c, "runs:started", "0-0"); // the first run is under way in `victim`
    victim.kill(); // SIGKILL, and reaped
    // Another worker reclaims the task once the dead worker's lease has expired.
    let w =
        Worker::builder(&r.url()).queue("kill").concurrency(1).lease(Duration::from_millis(500)).start()?;
    assert_eq!(join(h)?, 2, "the second run returns");
    let q = ex.queue_status()?;
    assert_eq!((q.redelivered, q.completed, q.pending, q.dead_letters), (1, 1, 0, 0));
    assert_eq!(w.report().redelivered, 1);
    Ok(())
}

fn long_task() -> TestResult {
    let r = RedisServer::start();
    // Renewed every 300 ms; only a stall of 600 ms would let the other worker take it.
    let lease = Duration::from_millis(900);
    let a = Worker::builder(&r.url()).queue("long").concurrency(1).lease(lease).start()?;
    let b = Worker::builder(&r.url()).queue("long").concurrency(1).lease(lease).start()?;
    let ex = exec(&r, "long");
    // Runs for many leases; the other worker is idle and would reclaim it if it could.
    let h = ex.submit_task(slow_counted::call(r.url(), "long-runs".into(), 3000));
    assert_eq!(join(h)?, 1);
    let q = ex.queue_status()?;
    assert_eq!((q.redelivered, q.duplicate_results, q.completed), (0, 0, 1));
    let runs: i64 = redis::cmd("GET").arg("long-runs").query(&mut r.conn())?;
    assert_eq!(runs, 1);
    let (ra, rb) = (a.report(), b.report());
    assert_eq!(ra.ran + rb.ran, 1);
    Ok(())
}

fn redis_restart() -> TestResult {
    let mut r = RedisServer::start();
    let n: i64 =
        std::env::var("ESCALA_REDIS_RESTART_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    // A delivery whose reply is lost with the connection is reclaimed after the lease.
    let lease = Duration::from_millis(1000);
    let _a = Worker::builder(&r.url()).queue("rs").concurrency(4).lease(lease).start()?;
    let _b = Worker::builder(&r.url()).queue("rs").concurrency(4).lease(lease).start()?;
    let ex = exec(&r, "rs");
    let mut hs: Vec<_> = (0..n).map(|i| ex.submit_task(add::call(i, 1))).collect();
    // Mid-run: once the first tenth has come back, Redis dies and comes back from its AOF.
    let rest = hs.split_off((n / 10) as usize);
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(join(h)?, i as i64 + 1);
    }
    r.kill();
    // Sent while Redis is down: the executor retries with backoff until it is back.
    let late: Vec<_> = (0..100).map(|i| ex.submit_task(add::call(i, 1000))).collect();
    r.start_again();
    for (i, h) in rest.into_iter().enumerate() {
        assert_eq!(join(h)?, (n / 10) + i as i64 + 1);
    }
    for (i, h) in late.into_iter().enumerate() {
        assert_eq!(join(h)?, i as i64 + 1000);
    }
    // And the executor still works after the restart.
    assert_eq!(join(ex.submit_task(add::call(-1, 1)))?, 0);
    assert!(ex.shutdown(Shutdown::default()));
    Ok(())
}

fn shutdown() -> TestResult {
    let r = RedisServer::start();
    let ex = exec(&r, "nobody");
    let h = ex.submit_task(add::call(1, 1)); // no worker runs this queue
    assert!(!ex.shutdown(Shutdown { wait: true, cancel_pending: false, timeout: Some(Duration::ZERO) }));
    assert!(ex.shutdown(Shutdown::now(Duration::ZERO)));
    assert!(join(h).unwrap_err().is_cancelled());
    assert!(join(ex.submit_task(add::call(1, 1))).unwrap_err().is_rejected());
    // An unreachable broker is reported at once.
    assert!(RedisExecutor::builder("redis://127.0.0.1:1").build().unwrap_err().is_unreachable());
    assert!(Worker::builder("redis://127.0.0.1:1").start().unwrap_err().is_unreachable());
    Ok(())
}

/// Thousands of tasks (`ESCALA_REDIS_CHAOS_TASKS`, default 400) on worker processes
/// killed and replaced at random points of progress, with Redis restarted once midway:
/// every task returns its own value, and every extra execution shows as a redelivery.
fn chaos() -> TestResult {
    let n: u64 = std::env::var("ESCALA_REDIS_CHAOS_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let mut rng = fastrand::Rng::new();
    let mut r = RedisServer::start();
    let ex = exec(&r, "chaos");
    // Each kill also redelivers what the victim had prefetched, and a delivery counts as an
    // attempt: with kills this close together a task may be held by three victims in a row,
    // so the dead-letter limit (tested on its own) is lifted here; the contract under test
    // is that nothing is lost.
    let chaos_worker = |r: &RedisServer| spawn_worker_with(r, "chaos", 300, Some(u32::MAX));
    let mut workers: Vec<ChildGuard> = (0..3).map(|_| chaos_worker(&r)).collect();
    let hs: Vec<_> = (0..n).map(|i| ex.submit_task(recorded::call(r.url(), i, 2))).collect();
    let step = (n / 8).max(1);
    for (i, h) in hs.into_iter().enumerate() {
        let i = i as u64;
        assert_eq!(join(h)?, i, "task {i}");
        if i % step == step / 2 {
            let k = rng.usize(..workers.len());
            workers[k].kill(); // SIGKILL, mid-run for whatever it held
            workers[k] = chaos_worker(&r);
        }
        if i == n / 2 {
            r.restart();
        }
    }
    let runs: std::collections::HashMap<u64, u64> = redis::cmd("HGETALL").arg("runs").query(&mut r.conn())?;
    assert_eq!(runs.len() as u64, n, "every task ran");
    let extra: u64 = runs.values().map(|c| c - 1).sum();
    let q = ex.queue_status()?;
    assert!(extra <= q.redelivered, "{extra} extra runs but only {} redeliveries reported", q.redelivered);
    assert_eq!((q.pending, q.depth, q.dead_letters), (0, 0, 0));
    eprintln!("chaos: {n} tasks, 0 lost, {extra} extra runs, {} redelivered", q.redelivered);
    Ok(())
}

fn acl() -> TestResult {
    let r = RedisServer::start_with(&[
        "--user", "default", "off", "--user", "app", "on", ">s3cret", "~*", "&*", "+@all",
    ]);
    let url = format!("redis://app:s3cret@127.0.0.1:{}", r.port);
    let _w = Worker::builder(&url).queue("acl").concurrency(1).start()?;
    let ex = RedisExecutor::builder(&url).queue("acl").build()?;
    assert_eq!(join(ex.submit_task(add::call(3, 4)))?, 7);
    let wrong = format!("redis://app:nope@127.0.0.1:{}", r.port);
    let e = RedisExecutor::builder(&wrong).queue("acl").build().unwrap_err();
    assert!(!e.to_string().contains("nope"), "the password is not shown: {e}");
    Ok(())
}

fn signal(child: &ChildGuard, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(child.0.id().to_string()).status().unwrap();
    assert!(ok.success());
}

/// A worker that hangs (SIGSTOP) past its lease loses the task to another worker; when it
/// comes back and finishes too, its result is detected as a duplicate, counted, and never
/// reaches the caller, who saw the first result.
fn hung_worker() -> TestResult {
    let r = RedisServer::start();
    let ex = exec(&r, "hung");
    let mut hung = spawn_worker(&r, "hung", 500);
    let h = ex.submit_task(gated_first::call(r.url(), "g".into()));
    let mut c = r.conn();
    next_entry(&mut c, "g:started", "0-0");
    signal(&hung, "STOP"); // no more lease renewals
    let w =
        Worker::builder(&r.url()).queue("hung").concurrency(1).lease(Duration::from_millis(500)).start()?;
    assert_eq!(join(h)?, 2, "the reclaimed run answers first");
    // The hung worker resumes, finishes its run, and stops gracefully (committing it).
    let _: () = redis::cmd("RPUSH").arg("g:gate").arg(1).query(&mut c)?;
    signal(&hung, "CONT");
    signal(&hung, "TERM");
    assert!(hung.0.wait()?.success());
    let q = ex.queue_status()?;
    assert_eq!((q.redelivered, q.completed, q.duplicate_results, q.pending), (1, 1, 1, 0));
    let s = ex.stats();
    assert_eq!((s.completed, s.failed), (1, 0), "one result per task");
    drop(w);
    Ok(())
}
