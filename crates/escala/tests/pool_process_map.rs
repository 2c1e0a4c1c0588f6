//! Integration tests for `ProcessPool::map_tasks`, whose elements travel in batches: order,
//! laziness, and crashes, timeouts and cancels that hit one element of a batch.
//!
//! Real worker processes and real signals. The binary doubles as a pool worker
//! (`escala::init()` first thing in `main`). Synchronisation is by events: a Unix socket an
//! element connects to when it runs (and blocks on until the test hangs up), results, the
//! pool's shutdown. No sleeps, no timed assertions.
//!
//! To make sure the elements under test share one batch, each test first runs a map of
//! tiny tasks on the same one-worker pool: the measured task time then makes batches far
//! larger than the few elements the test sends. `ESCALA_CHAOS_TASKS` sets the size of the
//! chaos test's maps (default 8,000 elements per round).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use escala::{ErrorKind, Executor, ExitReason, Outcome, ProcessPool, ProcessPoolBuilder, Shutdown};
use libtest_mimic::{Arguments, Failed, Trial};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Failed>;

/// How long any single wait in a test may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);
/// No element blocks longer than this, whatever happens to the test that started it.
const TASK_CAP: Duration = Duration::from_secs(15);

#[escala::task]
fn inc(x: u64) -> u64 {
    x + 1
}

/// A number whose encoding fails for [`Enc::Fail`] (serde lets a type refuse).
#[derive(Debug, Clone, Copy)]
enum Enc {
    Num(u64),
    Fail,
}

impl Serialize for Enc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Enc::Num(n) => s.serialize_u64(*n),
            Enc::Fail => Err(serde::ser::Error::custom("this value refuses to be encoded")),
        }
    }
}

impl<'de> Deserialize<'de> for Enc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Enc::Num)
    }
}

#[escala::task]
fn enc_inc(x: Enc) -> u64 {
    match x {
        Enc::Num(n) => n + 1,
        Enc::Fail => unreachable!("never encoded, so never sent"),
    }
}

/// A short task of known length: `3i + 1` after `micros` µs.
#[escala::task]
fn chaos_step(i: u64, micros: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(micros));
    i * 3 + 1
}

/// What element `at` of a `step` map does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Act {
    /// Connects to the test's socket, sends its pid, and returns when its token is set
    /// (writing "token" to the note file) or the test hangs up.
    Cooperative,
    /// The same, but ignores its token.
    IgnoreToken,
}

/// Element `i` of a map: `(i + 1, pid)`, except element `at`, which holds as `act` says.
#[escala::task]
fn step(i: u64, at: u64, act: Act, sock: String, note: String) -> (u64, u32) {
    let pid = std::process::id();
    if i != at {
        return (i + 1, pid);
    }
    let me = escala::current();
    let Ok(mut s) = UnixStream::connect(&sock) else { return (i + 1, pid) };
    if writeln!(s, "{pid}").is_err() {
        return (i + 1, pid);
    }
    let _ = s.set_read_timeout(Some(Duration::from_millis(5)));
    let deadline = Instant::now() + TASK_CAP;
    let mut b = [0u8; 1];
    while Instant::now() < deadline {
        match s.read(&mut b) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            _ => break, // the test hung up: released
        }
        if act == Act::Cooperative && me.is_cancelled() {
            let _ = std::fs::write(&note, "token");
            break;
        }
    }
    (i + 1, pid)
}

fn main() {
    let exit = escala::init();
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test("map_is_ordered_and_every_value_checked", map_is_ordered_and_every_value_checked),
        Trial::test(
            "an_unencodable_element_fails_alone_and_its_batch_keeps_the_rest",
            unencodable_element_fails_alone,
        ),
        Trial::test(
            "map_reads_input_only_as_results_are_consumed",
            map_reads_input_only_as_results_are_consumed,
        ),
        Trial::test("sigkill_mid_batch_keeps_finished_values_and_reruns_the_rest", sigkill_mid_batch),
        Trial::test("timeout_inside_a_batch_stops_that_element_alone", timeout_inside_a_batch),
        Trial::test("timeout_of_a_cooperative_element_keeps_the_worker", timeout_cooperative_element),
        Trial::test("dropping_a_map_cancels_its_elements_and_sets_the_running_token", dropping_a_map_cancels),
        Trial::test("shutdown_cancel_pending_cancels_a_maps_queued_elements", shutdown_cancels_map),
        Trial::test(
            "max_tasks_splits_batches_and_recycles_without_losing_elements",
            max_tasks_splits_batches,
        ),
        Trial::test("a_retried_element_runs_again_alone", retried_element_runs_again),
        Trial::test("chaos_sigkill_workers_during_a_map", chaos_map),
    ];
    let conclusion = libtest_mimic::run(&args, tests);
    if conclusion.has_failed() {
        std::mem::forget(exit);
    } else {
        drop(exit);
    }
    conclusion.exit();
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct TmpDir(PathBuf);

impl TmpDir {
    fn new(tag: &str) -> Result<TmpDir, Failed> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("escala-ppm-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TmpDir(p))
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A socket the held element connects to; a note file it writes when its token is set.
struct Rendezvous {
    dir: TmpDir,
    path: String,
    listener: UnixListener,
}

impl Rendezvous {
    fn new() -> Result<Rendezvous, Failed> {
        let dir = TmpDir::new("sock")?;
        let path = dir.file("s");
        let listener = UnixListener::bind(&path)?;
        Ok(Rendezvous { dir, path, listener })
    }

    fn note(&self) -> String {
        self.dir.file("note")
    }

    /// `n` calls of `step`, element `at` holding as `act` says.
    fn calls(&self, n: u64, at: u64, act: Act) -> Vec<escala::Call<step>> {
        (0..n).map(|i| step::call(i, at, act, self.path.clone(), self.note())).collect()
    }

    /// Waits (bounded) for the held element to run; returns its connection and pid.
    fn accept(&self) -> Result<(UnixStream, u32), Failed> {
        let l = self.listener.try_clone()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(l.accept());
        });
        let (mut conn, _) = match rx.recv_timeout(WAIT) {
            Ok(r) => r?,
            Err(_) => {
                let _ = UnixStream::connect(&self.path); // release the accepting thread
                return Err(format!("no element connected within {WAIT:?}").into());
            }
        };
        conn.set_read_timeout(Some(WAIT))?;
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while conn.read(&mut b)? == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        let pid =
            String::from_utf8_lossy(&line).trim().parse::<u32>().map_err(|e| format!("bad pid: {e}"))?;
        Ok((conn, pid))
    }
}

/// Runs `f` on its own thread; fails the test if it takes longer than `WAIT`.
fn in_thread<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failed> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WAIT).map_err(|_| format!("{what}: no result within {WAIT:?}").into())
}

/// A one-worker pool that has measured a tiny task's time, so its batches are large.
fn warm_pool(b: ProcessPoolBuilder) -> Result<ProcessPool, Failed> {
    let pool = b.size(1).build();
    let n = 5_000u64;
    let sum: u64 = pool.map_tasks((0..n).map(inc::call)).map(|r| r.expect("inc")).sum();
    assert_eq!(sum, n * (n + 1) / 2);
    Ok(pool)
}

fn settle(pool: &ProcessPool) -> Result<escala::Stats, Failed> {
    if !pool.shutdown(Shutdown { timeout: Some(WAIT), ..Shutdown::default() }) {
        return Err("the pool did not shut down in time".into());
    }
    Ok(pool.stats())
}

fn kind<T: std::fmt::Debug>(o: &Outcome<T>) -> Result<ErrorKind, Failed> {
    match o {
        Err(e) => Ok(e.kind().clone()),
        Ok(v) => Err(format!("expected an error, got {v:?}").into()),
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

fn map_is_ordered_and_every_value_checked() -> TestResult {
    let pool = ProcessPool::builder().size(2).build();
    let n = 30_000u64;
    for (i, out) in (0..n).zip(pool.map_tasks((0..n).map(inc::call))) {
        assert_eq!(out.map_err(|e| e.to_string())?, i + 1);
    }
    // Also through the trait, as generic code sees it.
    let via_trait: Vec<u64> =
        Executor::map_tasks(&pool, (0..100).map(inc::call)).map(Result::unwrap).collect();
    assert_eq!(via_trait, (1..=100).collect::<Vec<u64>>());
    let s = settle(&pool)?;
    assert_eq!((s.submitted, s.completed, s.failed, s.cancelled), (n + 100, n + 100, 0, 0), "{s:?}");
    Ok(())
}

/// An element whose arguments cannot be encoded fails alone, as a codec error; the elements
/// encoded before it into the same batch keep their bytes and their values, and the ones
/// after it run in the next batch.
fn unencodable_element_fails_alone() -> TestResult {
    let pool = warm_pool(ProcessPool::builder())?;
    let calls = [Enc::Num(1), Enc::Num(2), Enc::Fail, Enc::Num(4)].map(enc_inc::call);
    let outs: Vec<Outcome<u64>> = pool.map_tasks(calls).collect();
    assert_eq!(outs.len(), 4);
    assert_eq!(outs[0].as_ref().ok(), Some(&2), "{:?}", outs[0]);
    assert_eq!(outs[1].as_ref().ok(), Some(&3), "{:?}", outs[1]);
    let k = kind(&outs[2])?;
    assert!(matches!(&k, ErrorKind::Codec(m) if m.contains("cannot encode the arguments")), "{k:?}");
    assert_eq!(outs[3].as_ref().ok(), Some(&5), "{:?}", outs[3]);
    settle(&pool)?;
    Ok(())
}

fn map_reads_input_only_as_results_are_consumed() -> TestResult {
    let window = 64;
    let pool = warm_pool(ProcessPool::builder().map_window(window))?;
    let pulled = std::sync::Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    // An endless input: only laziness lets this end.
    let input = (0u64..).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    });
    let mut it = pool.map_tasks(input.map(inc::call));
    for taken in 1..=1_000u64 {
        assert_eq!(it.next().ok_or("the map ended")?.map_err(|e| e.to_string())?, taken);
        let read = pulled.load(Ordering::SeqCst) as u64;
        assert!(
            read <= taken + window as u64,
            "took {taken} results with a window of {window} but read {read}"
        );
        assert!(read >= taken);
    }
    drop(it);
    let read = pulled.load(Ordering::SeqCst) as u64;
    let s = settle(&pool)?;
    // The warm-up's 5,000 and what this map read: done, or cancelled when it was dropped.
    assert_eq!(s.submitted, 5_000 + read, "{s:?}");
    assert_eq!(s.completed + s.cancelled, 5_000 + read, "{s:?}");
    assert!(s.completed >= 5_000 + 1_000, "{s:?}");
    Ok(())
}

/// Element 20 of 60 holds; the test SIGKILLs its worker. Elements 0..20 finished in the
/// dead worker (their replies were staged, not sent): they keep their values and that pid.
/// Element 20 is WorkerLost; 21..60 never started and run again on the replacement.
fn sigkill_mid_batch() -> TestResult {
    let pool = std::sync::Arc::new(warm_pool(ProcessPool::builder())?);
    let r = Rendezvous::new()?;
    let calls = r.calls(60, 20, Act::IgnoreToken);
    let p = pool.clone();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(p.map_tasks(calls).collect::<Vec<_>>());
    });
    let (_conn, victim) = r.accept()?;
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL)?;
    let outs = rx.recv_timeout(WAIT).map_err(|_| "the map did not finish after the kill")?;
    assert_eq!(outs.len(), 60);
    for (i, o) in outs.iter().enumerate().take(20) {
        let (v, pid) = o.as_ref().map_err(|e| format!("element {i}: {e}"))?;
        assert_eq!(
            (*v, *pid),
            (i as u64 + 1, victim),
            "element {i} finished before the kill: kept, not re-run"
        );
    }
    match kind(&outs[20])? {
        ErrorKind::WorkerLost { reason, .. } => assert_eq!(reason, ExitReason::Signal(Signal::SIGKILL)),
        k => return Err(format!("element 20: {k:?}").into()),
    }
    for (i, o) in outs.iter().enumerate().skip(21) {
        let (v, pid) = o.as_ref().map_err(|e| format!("element {i}: {e}"))?;
        assert_eq!(*v, i as u64 + 1);
        assert_ne!(*pid, victim, "element {i} never started in the dead worker: re-run elsewhere");
    }
    let s = settle(&pool)?;
    assert_eq!((s.completed, s.failed, s.restarts), (5_000 + 59, 1, 1), "{s:?}");
    Ok(())
}

/// Element 10 of 40 ignores its token; the pool's timeout stops it, then SIGTERM ends its
/// worker. The others all have their values: 0..10 from that worker, 11..40 from the next.
fn timeout_inside_a_batch() -> TestResult {
    let b = ProcessPool::builder().timeout(Duration::from_millis(300)).stop_grace(Duration::from_millis(50));
    let pool = std::sync::Arc::new(warm_pool(b)?);
    let r = Rendezvous::new()?;
    let calls = r.calls(40, 10, Act::IgnoreToken);
    let p = pool.clone();
    let outs_thread = std::thread::spawn(move || p.map_tasks(calls).collect::<Vec<_>>());
    let (_conn, stuck) = r.accept()?;
    let outs = in_thread("map", move || outs_thread.join().expect("map thread"))?;
    assert!(matches!(kind(&outs[10])?, ErrorKind::TimedOut(_)), "{:?}", outs[10]);
    for (i, o) in outs.iter().enumerate().filter(|&(i, _)| i != 10) {
        let (v, pid) = o.as_ref().map_err(|e| format!("element {i}: {e}"))?;
        assert_eq!(*v, i as u64 + 1);
        assert_eq!(*pid == stuck, i < 10, "element {i}: ran in pid {pid}, the stopped worker was {stuck}");
    }
    let s = settle(&pool)?;
    assert_eq!((s.completed, s.failed, s.restarts), (5_000 + 39, 1, 1), "{s:?}");
    Ok(())
}

/// Element 5 of 30 honours its token: the timeout sets it, the element returns, and its
/// worker goes on with the rest of the batch.
fn timeout_cooperative_element() -> TestResult {
    let b = ProcessPool::builder().timeout(Duration::from_millis(300)).stop_grace(Duration::from_secs(10));
    let pool = std::sync::Arc::new(warm_pool(b)?);
    let r = Rendezvous::new()?;
    let calls = r.calls(30, 5, Act::Cooperative);
    let p = pool.clone();
    let outs_thread = std::thread::spawn(move || p.map_tasks(calls).collect::<Vec<_>>());
    let (_conn, pid5) = r.accept()?;
    let outs = in_thread("map", move || outs_thread.join().expect("map thread"))?;
    assert!(matches!(kind(&outs[5])?, ErrorKind::TimedOut(_)), "{:?}", outs[5]);
    assert_eq!(std::fs::read_to_string(r.note())?, "token");
    for (i, o) in outs.iter().enumerate().filter(|&(i, _)| i != 5) {
        let (v, pid) = o.as_ref().map_err(|e| format!("element {i}: {e}"))?;
        assert_eq!((*v, *pid), (i as u64 + 1, pid5), "element {i}");
    }
    let s = settle(&pool)?;
    assert_eq!((s.completed, s.failed, s.restarts), (5_000 + 29, 1, 0), "{s:?}");
    Ok(())
}

/// A window of 2 makes batches of one element (so a held element never holds back the
/// replies of others in its batch, which the test needs before it drops the iterator).
/// Elements 0..4 are taken; the iterator is dropped while element 4 runs: it is cancelled,
/// sees its token (and returns), and the worker lives on.
fn dropping_a_map_cancels() -> TestResult {
    let pool = warm_pool(ProcessPool::builder().map_window(2))?;
    let before = pool.pids();
    let r = Rendezvous::new()?;
    let mut it = pool.map_tasks(r.calls(12, 4, Act::Cooperative));
    for i in 0..4u64 {
        let (v, pid) = it.next().ok_or("the map ended")?.map_err(|e| e.to_string())?;
        assert_eq!((v, pid), (i + 1, before[0]));
    }
    let (_conn, pid) = r.accept()?;
    assert_eq!(pid, before[0]);
    drop(it);
    let s = settle(&pool)?;
    assert_eq!(std::fs::read_to_string(r.note())?, "token", "the running element's token was set");
    // Read: the 4 taken and the one running (the window of 2 kept the rest unread).
    assert_eq!((s.submitted, s.completed, s.cancelled, s.restarts), (5_000 + 5, 5_000 + 4, 1, 0), "{s:?}");
    Ok(())
}

/// `shutdown(cancel_pending)` while a map's batch holds: the held element finishes, the
/// elements after it are cancelled (or rejected, if the map had not read them yet), nothing
/// hangs.
fn shutdown_cancels_map() -> TestResult {
    let pool = std::sync::Arc::new(warm_pool(ProcessPool::builder())?);
    let r = Rendezvous::new()?;
    let calls = r.calls(40, 3, Act::IgnoreToken);
    let p = pool.clone();
    let outs_thread = std::thread::spawn(move || p.map_tasks(calls).collect::<Vec<_>>());
    let (conn, pid) = r.accept()?;
    let p = pool.clone();
    let shut =
        std::thread::spawn(move || p.shutdown(Shutdown { cancel_pending: true, ..Shutdown::default() }));
    drop(conn); // release element 3 once the shutdown has begun or soon after
    assert!(in_thread("shutdown", move || shut.join().expect("shutdown"))?);
    let outs = in_thread("map", move || outs_thread.join().expect("map thread"))?;
    assert_eq!(outs.len(), 40);
    for (i, o) in outs.iter().enumerate().take(4) {
        assert_eq!(o.as_ref().map_err(|e| format!("element {i}: {e}"))?, &(i as u64 + 1, pid));
    }
    for (i, o) in outs.iter().enumerate().skip(4) {
        match o {
            Ok((v, _)) => assert_eq!(*v, i as u64 + 1),
            // Cancelled if queued or prefetched at the shutdown; rejected if not read yet.
            Err(e) => assert!(e.is_cancelled() || e.is_rejected(), "element {i}: {e}"),
        }
    }
    Ok(())
}

/// With `max_tasks_per_worker(100)`, a 2,000-element map recycles its worker about 20 times:
/// batches are split so no worker gets more than it will run, and every element has its value.
fn max_tasks_splits_batches() -> TestResult {
    let pool = ProcessPool::builder().size(1).max_tasks_per_worker(100).build();
    let n = 2_000u64;
    let outs: Vec<u64> = pool
        .map_tasks((0..n).map(inc::call))
        .map(|r| r.map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    assert_eq!(outs, (1..=n).collect::<Vec<u64>>());
    let s = settle(&pool)?;
    assert_eq!((s.completed, s.failed), (n, 0), "{s:?}");
    assert!(s.restarts >= n / 100 - 1, "{s:?}");
    Ok(())
}

/// Element 7 of 20 is SIGKILLed in its first attempt; with a retry policy it runs again
/// alone, on the replacement worker, and every element ends with its value.
fn retried_element_runs_again() -> TestResult {
    let b = ProcessPool::builder()
        .retry(escala::RetryPolicy::attempts(2).backoff(Duration::from_millis(1), Duration::from_millis(1)));
    let pool = std::sync::Arc::new(warm_pool(b)?);
    let r = Rendezvous::new()?;
    let calls = r.calls(20, 7, Act::IgnoreToken);
    let p = pool.clone();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(p.map_tasks(calls).collect::<Vec<_>>());
    });
    let (conn, victim) = r.accept()?;
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL)?;
    drop(conn);
    // The retry connects again: release it at once.
    let (conn2, second) = r.accept()?;
    drop(conn2);
    assert_ne!(second, victim);
    let outs = rx.recv_timeout(WAIT).map_err(|_| "the map did not finish")?;
    for (i, o) in outs.iter().enumerate() {
        let (v, _) = o.as_ref().map_err(|e| format!("element {i}: {e}"))?;
        assert_eq!(*v, i as u64 + 1);
    }
    let s = settle(&pool)?;
    assert_eq!((s.completed, s.failed, s.retried), (5_000 + 20, 0, 1), "{s:?}");
    Ok(())
}

/// Maps of short tasks on two workers while the test SIGKILLs a worker each time another
/// slice of results has come back. Every element resolves, in order: its value, or
/// `WorkerLost` (at most one per kill: the element running), or, with retries, its value.
fn chaos_map() -> TestResult {
    let n: u64 = std::env::var("ESCALA_CHAOS_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(8_000);
    for retry in [false, true] {
        let policy = if retry {
            escala::RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(1))
        } else {
            escala::RetryPolicy::never()
        };
        let pool = ProcessPool::builder().size(2).retry(policy).crash_loop(
            1_000_000,
            Duration::from_secs(1),
            Duration::from_millis(1),
            Duration::from_millis(1),
        );
        let pool = pool.build();
        let kills = 6;
        let every = (n as usize / (kills + 1)).max(1);
        let mut killed: Vec<u32> = Vec::new();
        let mut lost = 0;
        let calls = (0..n).map(|i| chaos_step::call(i, 20 + (i % 5) * 30));
        for (i, out) in (0..n).zip(pool.map_tasks(calls)) {
            match out {
                Ok(v) => assert_eq!(v, i * 3 + 1, "element {i}"),
                Err(e) if matches!(e.kind(), ErrorKind::WorkerLost { .. }) && !retry => lost += 1,
                Err(e) => return Err(format!("element {i} (retry: {retry}): {e}").into()),
            }
            if killed.len() < kills && (i as usize + 1) % every == 0 {
                let pids: Vec<u32> = pool.pids().into_iter().filter(|p| !killed.contains(p)).collect();
                if let Some(&victim) = pids.get(fastrand_index(pids.len(), i)) {
                    if kill(Pid::from_raw(victim as i32), Signal::SIGKILL).is_ok() {
                        killed.push(victim);
                    }
                }
            }
        }
        assert!(lost <= killed.len(), "{lost} elements lost for {} kills", killed.len());
        let s = settle(&pool)?;
        assert_eq!(s.completed + s.failed, n, "{s:?}");
        assert_eq!(s.failed as usize, lost, "{s:?}");
        eprintln!("chaos map (retry: {retry}): {n} elements, {} kills, {lost} WorkerLost", killed.len());
    }
    Ok(())
}

/// An index below `len` that varies with `i` (no randomness needed to spread the kills).
fn fastrand_index(len: usize, i: u64) -> usize {
    if len == 0 { 0 } else { (i as usize / 7) % len }
}
