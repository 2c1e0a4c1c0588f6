//! The Redis executor and worker against a real `redis-server` this test starts: round
//! trips, refusals, limits, malformed and signed entries, a worker SIGKILLed mid-task (and
//! one holding prefetched tasks), a task longer than its lease, Redis restarted mid-run,
//! remote cancels, kept results fetched by id, and `rediss://`.
//!
//! `harness = false`: the binary doubles as a worker process. With `ESCALA_REDIS_WORKER`
//! set (`url queue lease_ms [max_attempts [concurrency]]`), `main` runs a worker until
//! SIGTERM instead of the tests, so a test can kill a real worker process.

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

/// Announces `name` on `{key}:started`, then waits for the test to open its gate (a list
/// it pops).
#[escala::task]
fn gated(url: String, key: String, name: String) -> String {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("XADD")
        .arg(format!("{key}:started"))
        .arg("*")
        .arg("name")
        .arg(&name)
        .query(&mut c)
        .unwrap();
    let _: Value =
        redis::cmd("BLPOP").arg(format!("{key}:gate:{name}")).arg(WAIT.as_secs()).query(&mut c).unwrap();
    name
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
        let concurrency = parts.get(4).map_or(2, |c| c.parse().unwrap());
        let mut builder = Worker::builder(parts[0]).queue(parts[1]).concurrency(concurrency).lease(lease);
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
    #[allow(unused_mut)] // without the `tls` feature
    let mut tests = vec![
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
        Trial::test("shutdown_cancelling_pending_cancels_on_the_workers", shutdown_cancels_on_the_workers),
        Trial::test("acl_user_and_password_in_the_url", acl),
        Trial::test("chaos_workers_killed_and_redis_restarted", chaos),
        Trial::test("prefetched_tasks_of_a_killed_worker_cost_no_attempt", prefetched_not_counted),
        Trial::test("short_tasks_are_started_at_most_three_ahead_per_run_thread", started_ahead_bound),
        Trial::test("cancel_before_start_skips_the_task", cancel_queued),
        Trial::test("cancel_while_running_sets_the_task_token", cancel_running_task),
        Trial::test("cancel_while_running_kills_the_command_group", cancel_running_command),
        Trial::test("cancel_kills_a_command_group_that_ignores_sigterm", cancel_command_ignoring_term),
        Trial::test("kept_result_fetched_by_id", kept_result),
        Trial::test("a_busy_worker_holds_no_task_another_could_start", no_hold_behind_busy),
    ];
    #[cfg(feature = "tls")]
    tests.push(Trial::test("rediss_round_trip_and_untrusted_ca", tls));
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

/// A worker process; `attempts` overrides its started-runs-before-dead-letter limit.
fn spawn_worker_with(r: &RedisServer, queue: &str, lease_ms: u64, attempts: Option<u32>) -> ChildGuard {
    let attempts = attempts.map_or(String::new(), |a| format!(" {a}"));
    spawn_worker_spec(r, &format!("{queue} {lease_ms}{attempts}"))
}

/// A worker process from a spec after the URL: `queue lease_ms [max_attempts [concurrency]]`.
fn spawn_worker_spec(r: &RedisServer, spec: &str) -> ChildGuard {
    ChildGuard(
        Command::new(std::env::current_exe().unwrap())
            .env(WORKER_ENV, format!("{} {spec}", r.url()))
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
    // Each kill also redelivers what the victim had prefetched; those never started, so
    // they cost no attempt: with the default limit (3 started runs) nothing is
    // dead-lettered, and nothing is lost.
    let chaos_worker = |r: &RedisServer| spawn_worker(r, "chaos", 300);
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

/// Waits (bounded, polling) until `cond` holds; `what` says what for when it never does.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(10)); // polling a condition Redis cannot push
    }
}

/// Entries in the queue's pending list (delivered, not acknowledged).
fn pending(c: &mut redis::Connection, queue: &str) -> i64 {
    let v: Value =
        redis::cmd("XPENDING").arg(format!("escala:q:{queue}")).arg("escala-workers").query(c).unwrap();
    match v {
        Value::Array(v) => redis::from_redis_value_ref(&v[0]).unwrap(),
        _ => panic!("no pending summary"),
    }
}

/// A worker killed while it runs one task and holds three more it had only prefetched:
/// with a dead-letter limit of 1, the three still complete on the next worker (they never
/// started, so their redelivery cost no attempt), while the task that was running has
/// used its one attempt and is dead-lettered instead of run again.
fn prefetched_not_counted() -> TestResult {
    let r = RedisServer::start();
    let mut c = r.conn();
    let ex = exec(&r, "pf");
    // A 2 ms task first: once it has ended, the worker knows its tasks are short enough
    // to fetch ahead (50 ms of work: 3 as long as the run took under 16 ms), yet not short
    // enough (under 1 ms) to send starts ahead, which would count attempts. Before it, the
    // worker holds only what it runs.
    let quick = ex.submit_task(slow_counted::call(r.url(), "pf-w".into(), 2));
    let running = ex.submit_task(stuck_first::call(r.url(), "pf-a".into()));
    let prefetched: Vec<_> = (0..3).map(|i| ex.submit_task(add::call(i, 1))).collect();
    wait_until("five tasks queued", || {
        redis::cmd("XLEN").arg("escala:q:pf").query::<i64>(&mut c).unwrap() == 5
    });
    let mut victim = spawn_worker_spec(&r, "pf 500 1 1"); // max attempts 1, concurrency 1
    assert_eq!(join(quick)?, 1);
    next_entry(&mut c, "pf-a:started", "0-0");
    wait_until("the victim holds the running task and three prefetched", || pending(&mut c, "pf") == 4);
    victim.kill(); // SIGKILL
    let w = Worker::builder(&r.url())
        .queue("pf")
        .concurrency(2)
        .lease(Duration::from_millis(500))
        .max_attempts(1)
        .start()?;
    for (i, h) in prefetched.into_iter().enumerate() {
        assert_eq!(join(h)?, i as i64 + 1, "a prefetched task redelivered is not an attempt");
    }
    let e = join(running).unwrap_err();
    assert!(e.to_string().contains("gave up after 1 started run(s) (max attempts 1)"), "{e}");
    let runs: i64 = redis::cmd("GET").arg("pf-a").query(&mut c)?;
    assert_eq!(runs, 1, "the running task was not run again");
    let (_, dead) = next_entry(&mut c, "escala:dead:pf", "0-0");
    assert!(String::from_utf8_lossy(field(&dead, "reason")).contains("stopped renewing its lease"));
    let q = ex.queue_status()?;
    assert_eq!((q.completed, q.dead_letters, q.redelivered, q.pending), (5, 1, 0, 0));
    let report = w.report();
    assert_eq!((report.ran, report.ok, report.dead_lettered, report.redelivered), (3, 3, 1, 0));
    Ok(())
}

/// A run thread with short tasks sends the starts of up to 3 more with its own: when its
/// worker dies, at most those 3 of its prefetched tasks were counted without running.
fn started_ahead_bound() -> TestResult {
    let r = RedisServer::start();
    let mut c = r.conn();
    let ex = exec(&r, "sa");
    let quick: Vec<_> = (0..20).map(|i| ex.submit_task(add::call(i, 1))).collect();
    let running = ex.submit_task(stuck_first::call(r.url(), "sa-a".into()));
    let later: Vec<_> = (0..10).map(|i| ex.submit_task(add::call(i, 2))).collect();
    wait_until("31 tasks queued", || {
        redis::cmd("XLEN").arg("escala:q:sa").query::<i64>(&mut c).unwrap() == 31
    });
    let mut victim = spawn_worker_spec(&r, "sa 500 1 1"); // max attempts 1, concurrency 1
    for (i, h) in quick.into_iter().enumerate() {
        assert_eq!(join(h)?, i as i64 + 1);
    }
    next_entry(&mut c, "sa-a:started", "0-0");
    victim.kill(); // SIGKILL, while the stuck task runs and the later ones wait
    let _w =
        Worker::builder(&r.url()).queue("sa").lease(Duration::from_millis(500)).max_attempts(1).start()?;
    let (mut ok, mut gave_up) = (0, 0);
    for (i, h) in later.into_iter().enumerate() {
        match join(h) {
            Ok(v) => {
                assert_eq!(v, i as i64 + 2);
                ok += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("gave up after 1 started run(s)"), "{e}");
                gave_up += 1;
            }
        }
    }
    assert!(gave_up <= 3, "{gave_up} prefetched tasks were counted: more than the 3 started ahead");
    assert_eq!(ok + gave_up, 10);
    assert!(join(running).unwrap_err().to_string().contains("gave up after 1 started run(s)"));
    Ok(())
}

/// A worker whose only run thread is busy with a task of unknown length fetches nothing
/// ahead: the next task starts on another worker as soon as one comes, instead of waiting
/// behind the first (held, and out of the other worker's reach) until it ends.
fn no_hold_behind_busy() -> TestResult {
    let r = RedisServer::start();
    let mut c = r.conn();
    let ex = exec(&r, "hol");
    let a = ex.submit_task(gated::call(r.url(), "hol".into(), "a".into()));
    let b = ex.submit_task(gated::call(r.url(), "hol".into(), "b".into()));
    wait_until("two tasks queued", || {
        redis::cmd("XLEN").arg("escala:q:hol").query::<i64>(&mut c).unwrap() == 2
    });
    let first = Worker::builder(&r.url()).queue("hol").concurrency(1).start()?;
    let (id, started) = next_entry(&mut c, "hol:started", "0-0");
    assert_eq!(field(&started, "name"), b"a");
    assert_eq!(pending(&mut c, "hol"), 1, "the busy worker holds only the task it runs");
    let second = Worker::builder(&r.url()).queue("hol").concurrency(1).start()?;
    let (_, started) = next_entry(&mut c, "hol:started", &id);
    assert_eq!(field(&started, "name"), b"b", "the second task started while the first still ran");
    for name in ["a", "b"] {
        let _: () = redis::cmd("LPUSH").arg(format!("hol:gate:{name}")).arg(1).query(&mut c)?;
    }
    assert_eq!((join(a)?, join(b)?), ("a".to_string(), "b".to_string()));
    assert_eq!((first.report().ran, second.report().ran), (1, 1));
    Ok(())
}

/// Waits (bounded) until a worker has stored task `id`'s result; returns it.
fn stored<T: serde::de::DeserializeOwned>(ex: &RedisExecutor, id: &str) -> Result<T, ErrorKind> {
    let mut got = None;
    wait_until(&format!("the result of {id} stored"), || {
        got = ex.result::<T>(id).unwrap();
        got.is_some()
    });
    got.unwrap()
}

/// A task cancelled while a worker holds it prefetched (its one run thread is busy) is
/// skipped: it never runs, its result is stored as cancelled, the entry is acknowledged.
fn cancel_queued() -> TestResult {
    let r = RedisServer::start();
    let mut c = r.conn();
    let w = Worker::builder(&r.url()).queue("cq").concurrency(1).start()?;
    let ex = exec(&r, "cq");
    // A quick task first: then the worker knows its tasks are short and fetches ahead.
    assert_eq!(join(ex.submit_task(add::call(1, 1)))?, 2);
    let busy = ex.submit_task(gated_first::call(r.url(), "cq-g".into()));
    next_entry(&mut c, "cq-g:started", "0-0");
    let victim = ex.submit_task(slow_counted::call(r.url(), "cq-x".into(), 0));
    let id = ex.task_id(&victim);
    wait_until("the worker holds both tasks", || pending(&mut c, "cq") == 2);
    assert!(victim.cancel());
    assert!(join(victim).unwrap_err().is_cancelled());
    let _: () = redis::cmd("RPUSH").arg("cq-g:gate").arg(1).query(&mut c)?;
    assert_eq!(join(busy)?, 1);
    assert!(matches!(stored::<i64>(&ex, &id), Err(ErrorKind::Cancelled)));
    let runs: Option<i64> = redis::cmd("GET").arg("cq-x").query(&mut c)?;
    assert_eq!(runs, None, "the cancelled task never ran");
    wait_until("both entries acknowledged", || pending(&mut c, "cq") == 0);
    let report = w.report();
    assert_eq!((report.ran, report.cancelled), (2, 1));
    let s = ex.stats();
    assert_eq!((s.completed, s.failed), (2, 1), "the cancelled handle resolved once");
    // Cancelled before any worker saw it: skipped the same way.
    w.stop();
    w.join();
    let early = ex.submit_task(slow_counted::call(r.url(), "cq-y".into(), 0));
    let early_id = ex.task_id(&early);
    early.cancel();
    let _w = Worker::builder(&r.url()).queue("cq").concurrency(1).start()?;
    assert!(matches!(stored::<i64>(&ex, &early_id), Err(ErrorKind::Cancelled)));
    let runs: Option<i64> = redis::cmd("GET").arg("cq-y").query(&mut c)?;
    assert_eq!(runs, None);
    Ok(())
}

/// Announces its start, then waits for its cancel token; says on `{key}:stopped` whether the
/// token stopped it.
#[escala::task]
fn until_cancelled(url: String, key: String) -> u8 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () =
        redis::cmd("XADD").arg(format!("{key}:started")).arg("*").arg("n").arg(1).query(&mut c).unwrap();
    let stopped = escala::current().wait_timeout(WAIT);
    let said = if stopped { "token" } else { "timeout" };
    let _: () = redis::cmd("RPUSH").arg(format!("{key}:stopped")).arg(said).query(&mut c).unwrap();
    0
}

fn cancel_running_task() -> TestResult {
    let r = RedisServer::start();
    let mut c = r.conn();
    let w = Worker::builder(&r.url()).queue("cr").concurrency(1).start()?;
    let ex = exec(&r, "cr");
    let h = ex.submit_task(until_cancelled::call(r.url(), "cr".into()));
    let id = ex.task_id(&h);
    next_entry(&mut c, "cr:started", "0-0");
    let t0 = std::time::Instant::now();
    assert!(h.cancel());
    assert!(join(h).unwrap_err().is_cancelled());
    let (_, said): (String, String) = redis::cmd("BLPOP").arg("cr:stopped").arg(10).query(&mut c)?;
    assert_eq!(said, "token", "the running task saw its token set");
    assert!(t0.elapsed() < Duration::from_secs(5), "stopped in {:?}", t0.elapsed());
    assert!(matches!(stored::<u8>(&ex, &id), Err(ErrorKind::Cancelled)));
    let report = w.report();
    assert_eq!((report.ran, report.cancelled, report.ok), (1, 1, 0));
    assert_eq!(ex.stats().failed, 1);
    Ok(())
}

/// `shutdown` with `cancel_pending` cancels the waiting tasks on the workers as well as
/// their handles: the running one sees its token set, the queued one never runs.
fn shutdown_cancels_on_the_workers() -> TestResult {
    let r = RedisServer::start();
    let mut c = r.conn();
    let w = Worker::builder(&r.url()).queue("sc").concurrency(1).start()?;
    let ex = exec(&r, "sc");
    let running = ex.submit_task(until_cancelled::call(r.url(), "sc".into()));
    let running_id = ex.task_id(&running);
    next_entry(&mut c, "sc:started", "0-0");
    let queued = ex.submit_task(slow_counted::call(r.url(), "sc-x".into(), 0));
    let queued_id = ex.task_id(&queued);
    assert!(ex.shutdown(Shutdown::now(Duration::ZERO)));
    assert!(join(running).unwrap_err().is_cancelled());
    assert!(join(queued).unwrap_err().is_cancelled());
    let (_, said): (String, String) = redis::cmd("BLPOP").arg("sc:stopped").arg(10).query(&mut c)?;
    assert_eq!(said, "token", "the running task saw its token set");
    assert!(matches!(stored::<u8>(&ex, &running_id), Err(ErrorKind::Cancelled)));
    assert!(matches!(stored::<i64>(&ex, &queued_id), Err(ErrorKind::Cancelled)));
    let runs: Option<i64> = redis::cmd("GET").arg("sc-x").query(&mut c)?;
    assert_eq!(runs, None, "the queued task never ran");
    let report = w.report();
    assert_eq!((report.ran, report.cancelled, report.ok), (1, 2, 0));
    Ok(())
}

/// True once `pid` no longer runs (gone, or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn cancel_running_command() -> TestResult {
    cancel_command_group("")
}

/// The same with a shell and a `sleep` that both ignore SIGTERM: only the SIGKILL that
/// follows the grace period ends them.
fn cancel_command_ignoring_term() -> TestResult {
    cancel_command_group("trap '' TERM; ")
}

/// Cancels a running command (`prefix` then a shell that starts a `sleep` in the
/// background) and checks that the shell and the `sleep` are gone and the result is kept as
/// cancelled.
fn cancel_command_group(prefix: &str) -> TestResult {
    let r = RedisServer::start();
    let w = Worker::builder(&r.url()).queue("cc").concurrency(1).allow_commands(true).start()?;
    let ex = exec(&r, "cc");
    let pids = r.dir.join("pids");
    // A shell and the `sleep` it started in the background, in one process group.
    let script = format!("{prefix}sleep 30 & echo $$ $! > {0}.tmp && mv {0}.tmp {0}; wait", pids.display());
    let h = ex.submit_command("sh", ["-c", &script]);
    let id = ex.task_id(&h);
    let mut text = String::new();
    wait_until("the command wrote its pids", || {
        text = std::fs::read_to_string(&pids).unwrap_or_default();
        !text.is_empty()
    });
    let pids: Vec<i32> = text.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 2);
    assert!(!gone(pids[0]) && !gone(pids[1]));
    let t0 = std::time::Instant::now();
    assert!(h.cancel());
    assert!(join(h).unwrap_err().is_cancelled());
    wait_until("the shell and its sleep are gone", || pids.iter().all(|&p| gone(p)));
    assert!(t0.elapsed() < Duration::from_secs(10), "stopped in {:?}", t0.elapsed());
    let mut kept = None;
    wait_until("the cancelled command's result stored", || {
        kept = ex.stored_result(&id).unwrap();
        kept.is_some()
    });
    let kept = kept.unwrap();
    assert!(kept.is_command() && kept.job.starts_with("command sh -c"), "{}", kept.job);
    assert!(matches!(kept.command_output(), Some(Err(ErrorKind::Cancelled))));
    assert_eq!(w.report().cancelled, 1);
    Ok(())
}

/// A task's result is kept in Redis and can be read by its id: from the executor that sent
/// it, or from any process with [`escala_redis::Server`].
fn kept_result() -> TestResult {
    let r = RedisServer::start();
    let _w = Worker::builder(&r.url()).queue("kr").concurrency(1).allow_commands(true).key(b"k").start()?;
    let ex = RedisExecutor::builder(&r.url()).queue("kr").key(b"k").build()?;
    let h = ex.submit_task(add::call(2, 3));
    let id = ex.task_id(&h);
    assert!(id.starts_with(&format!("{}-", ex.client_id())), "{id}");
    assert_eq!(join(h)?, 5);
    assert_eq!(ex.result::<i64>(&id)?, Some(Ok(5)));
    let kept = ex.stored_result(&id)?.expect("kept");
    assert_eq!((kept.task.as_str(), kept.attempt), (id.as_str(), 1));
    assert!(kept.job.starts_with("task ") && kept.job.ends_with("add"), "{}", kept.job);
    let ttl: i64 = redis::cmd("TTL").arg(format!("escala:result:{id}")).query(&mut r.conn())?;
    assert!(ttl > 0, "kept for the result TTL, not forever: {ttl}");
    // Another process: the same result, checked with the key.
    let server = escala_redis::Server::new(&r.url()).key(b"k");
    assert_eq!(server.result(&id)?.expect("kept").value::<i64>(), Ok(5));
    let e = escala_redis::Server::new(&r.url()).key(b"other").result(&id).unwrap_err();
    assert!(e.is_stored() && e.to_string().contains("bad signature"), "{e}");
    // Errors and commands are kept too.
    let failed = ex.submit_task(fails::call("kept".into()));
    let failed_id = ex.task_id(&failed);
    join(failed).unwrap_err();
    assert!(matches!(ex.result::<u8>(&failed_id)?, Some(Err(ErrorKind::Failed(m))) if m == "kept"));
    let cmd = ex.submit_command("echo", ["kept"]);
    let cmd_id = ex.task_id(&cmd);
    join(cmd)?;
    let out = server.result(&cmd_id)?.expect("kept").command_output().expect("a command")?;
    assert_eq!((out.code, out.stdout_lossy().as_str()), (Some(0), "kept\n"));
    // Unknown and malformed ids.
    assert_eq!(ex.result::<i64>(&format!("{}-999999", ex.client_id()))?, None);
    assert!(ex.result::<i64>("no such id").unwrap_err().is_config());
    Ok(())
}

/// `rediss://`: a worker and an executor over TLS (with an ACL user in the URL), the
/// server's certificate checked against the test CA; another CA is refused at once, with
/// one line that says why.
#[cfg(feature = "tls")]
fn tls() -> TestResult {
    let r = RedisServer::start_tls(&[
        "--user", "default", "off", "--user", "app", "on", ">s3cret", "~*", "&*", "+@all",
    ]);
    let files = r.tls.as_ref().unwrap();
    let url = format!("rediss://app:s3cret@127.0.0.1:{}", r.port);
    let w = Worker::builder(&url).queue("tls").concurrency(1).tls_ca_file(&files.ca).start()?;
    let ex = RedisExecutor::builder(&url).queue("tls").tls_ca_file(&files.ca).build()?;
    let h = ex.submit_task(add::call(20, 22));
    let id = ex.task_id(&h);
    assert_eq!(join(h)?, 42);
    assert_eq!(ex.result::<i64>(&id)?, Some(Ok(42)));
    let q = ex.queue_status()?;
    assert_eq!((q.name.as_str(), q.completed), ("tls", 1));
    let status = escala_redis::Server::new(&url).tls_ca_file(&files.ca).status()?;
    assert_eq!(status.workers.len(), 1);
    assert_eq!(w.report().ok, 1);
    for refused in [
        RedisExecutor::builder(&url).queue("tls").tls_ca_file(&files.wrong_ca).build().unwrap_err(),
        // The system's roots do not know the test CA either.
        RedisExecutor::builder(&url).queue("tls").build().unwrap_err(),
        Worker::builder(&url).tls_ca_file(&files.wrong_ca).start().unwrap_err(),
    ] {
        let msg = refused.to_string();
        assert!(refused.is_unreachable(), "{msg}");
        assert!(msg.contains("certificate") && !msg.contains('\n') && !msg.contains("s3cret"), "{msg}");
    }
    let e = RedisExecutor::builder(&url).tls_ca_file(r.dir.join("missing.pem")).build().unwrap_err();
    assert!(e.is_config() && e.to_string().contains("missing.pem"), "{e}");
    let e = RedisExecutor::builder("redis://127.0.0.1:1").tls_ca_file(&files.ca).build().unwrap_err();
    assert!(e.is_config() && e.to_string().contains("rediss://"), "{e}");
    Ok(())
}
