//! Integration tests for the process pool (`ProcessPool`): the `Executor` API, crash
//! isolation, crash loops, cancel and timeouts, recycling, hygiene (zombies, fds, parent
//! death, Ctrl-C) and a bounded chaos test.
//!
//! Everything uses real worker processes and real signals. The binary doubles as
//! - a pool worker (re-executed by the pool; `escala::init()` first thing in `main` serves it),
//! - a "scenario" program: with `ESCALA_TEST_SCENARIO=<name>` set, `main` runs that scenario
//!   and returns, so a test can signal a whole program that owns a pool.
//!
//! Synchronisation is by events: handles, a Unix socket a task connects to when it runs (and
//! blocks on until the test hangs up), files a task waits for, events of `escala::events`,
//! process exit. The only polling is bounded: for the start of a replacement worker (no event
//! announces it: `EventKind::WorkerStarted` is never emitted by the pool) and for the death of
//! a process this test cannot reap.
//!
//! Tests that count `/proc/self/fd` or look for zombies take an exclusive lock, so no other
//! test opens fds or starts processes meanwhile. `ESCALA_CHAOS_TASKS` sets the chaos test's
//! size (default 300 tasks per round).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::ops::Deref;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use escala::events::{self, EventKind, Subscription};
use escala::{
    ErrorKind, Executor, ExitReason, Handle, Outcome, ProcessPool, ProcessPoolBuilder, QueuePolicy,
    RetryPolicy, Shutdown, Task, TaskError, TaskId, ThreadPool, UnitKind,
};
use libtest_mimic::{Arguments, Failed, Trial};
use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, kill, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Failed>;

/// Selects a scenario: `main` runs it instead of the test harness.
const SCENARIO_ENV: &str = "ESCALA_TEST_SCENARIO";
/// The marker escala's re-executed children read.
const CHILD_ENV: &str = "ESCALA_CHILD";
/// Tasks per round of the chaos test.
const CHAOS_ENV: &str = "ESCALA_CHAOS_TASKS";

/// How long any single wait in a test may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);
/// No task blocks longer than this, whatever happens to the test that started it.
const TASK_CAP: Duration = Duration::from_secs(8);

static SUBREAPER: AtomicBool = AtomicBool::new(false);
/// Taken shared by every test, exclusively by those counting fds or zombies.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

// ---------------------------------------------------------------------------------------
// Registered tasks (they run in the pool's worker processes)
// ---------------------------------------------------------------------------------------

#[escala::task]
fn square(x: u64) -> u64 {
    x * x
}

#[escala::task]
fn whoami() -> u32 {
    std::process::id()
}

#[escala::task]
fn tagged(i: u64) -> (u64, u32) {
    (i * i + 1, std::process::id())
}

/// Works (sleeps) for `ms` milliseconds: a task of known length.
#[escala::task]
fn busy(i: u64, ms: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(ms));
    (i, std::process::id())
}

#[escala::task]
fn chaos_job(i: u64, micros: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(micros));
    i * 3 + 1
}

/// Creates `path` (the proof that it ran) and returns its pid.
#[escala::task]
fn touch(path: String) -> u32 {
    std::fs::write(&path, std::process::id().to_string()).expect("write the touch file");
    std::process::id()
}

/// Waits until the file `gate` exists (or its token is set), then returns `x * x`.
#[escala::task]
fn gated(x: u64, gate: Option<String>) -> u64 {
    if let Some(gate) = gate {
        let me = escala::current();
        let deadline = Instant::now() + TASK_CAP;
        while !Path::new(&gate).exists() && Instant::now() < deadline {
            if me.wait_timeout(Duration::from_millis(2)) {
                break;
            }
        }
    }
    x * x
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Hold {
    /// Returns when its token is set (writing "token" to its note file) or the test hangs up.
    Cooperative,
    /// Returns only when the test hangs up.
    IgnoreToken,
    /// Ignores SIGTERM in its whole worker process, then behaves like `IgnoreToken`.
    IgnoreTerm,
}

/// Connects to the test's socket `sock`, sends its pid, and blocks as `mode` says. Returns
/// its pid. Never blocks longer than `TASK_CAP`.
#[escala::task]
fn hold(sock: String, mode: Hold, note: String) -> u32 {
    let pid = std::process::id();
    if mode == Hold::IgnoreTerm {
        // SAFETY: SIG_IGN installs no handler code, so nothing runs in signal context.
        unsafe { nix::sys::signal::signal(Signal::SIGTERM, SigHandler::SigIgn) }.expect("ignore SIGTERM");
    }
    let me = escala::current();
    let Ok(mut s) = UnixStream::connect(&sock) else { return pid };
    if writeln!(s, "{pid}").is_err() {
        return pid;
    }
    let _ = s.set_read_timeout(Some(Duration::from_millis(5)));
    let deadline = Instant::now() + TASK_CAP;
    let mut b = [0u8; 1];
    while Instant::now() < deadline {
        match s.read(&mut b) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            _ => break, // the test hung up (or wrote): released
        }
        if mode == Hold::Cooperative && me.is_cancelled() {
            if !note.is_empty() {
                let _ = std::fs::write(&note, "token");
            }
            break;
        }
    }
    pid
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Crash {
    /// Prints these lines on stderr, then `std::process::abort()`: what a `panic = "abort"`
    /// build does on a panic.
    Abort(Vec<String>),
    Exit(i32),
    Panic(String),
    Fail(String),
}

fn do_crash(how: Crash) -> Result<u32, String> {
    match how {
        Crash::Abort(lines) => {
            for l in lines {
                eprintln!("{l}");
            }
            std::process::abort()
        }
        Crash::Exit(code) => std::process::exit(code),
        Crash::Panic(msg) => panic!("{msg}"),
        Crash::Fail(msg) => Err(msg),
    }
}

/// Writes its pid to `pidfile` (unless empty), then crashes as `how` says.
#[escala::task]
fn crash(how: Crash, pidfile: String) -> Result<u32, String> {
    if !pidfile.is_empty() {
        std::fs::write(&pidfile, std::process::id().to_string()).expect("write the pid file");
    }
    do_crash(how)
}

/// The first run (no `marker` yet) writes its pid to `marker` and crashes; later runs
/// return their pid.
#[escala::task]
fn crash_once(marker: String, how: Crash) -> Result<u32, String> {
    if Path::new(&marker).exists() {
        return Ok(std::process::id());
    }
    std::fs::write(&marker, std::process::id().to_string()).expect("write the marker");
    do_crash(how)
}

/// Counts its runs in the file `counter`; fails until run number `succeed_on`.
#[escala::task]
fn fail_until(counter: String, succeed_on: u32) -> Result<u32, String> {
    let n =
        std::fs::read_to_string(&counter).ok().and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(0) + 1;
    std::fs::write(&counter, n.to_string()).expect("write the counter");
    if n < succeed_on { Err(format!("attempt {n} failed")) } else { Ok(n) }
}

/// The first run (no `marker` yet) gets stuck: until its token is set when `cooperative`
/// (then returns "interrupted"), else ignoring its token. Later runs return "fresh".
#[escala::task]
fn stuck_once(marker: String, cooperative: bool) -> String {
    if Path::new(&marker).exists() {
        return "fresh".into();
    }
    std::fs::write(&marker, std::process::id().to_string()).expect("write the marker");
    let me = escala::current();
    let deadline = Instant::now() + TASK_CAP;
    while Instant::now() < deadline {
        if cooperative {
            if me.wait_timeout(Duration::from_millis(5)) {
                return "interrupted".into();
            }
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    "late".into()
}

static INIT_TAG: Mutex<Option<String>> = Mutex::new(None);

/// The pool initializer: remembers `tag@pid` in the worker, or refuses with tag "fail".
#[escala::task]
fn init_worker(tag: String) -> Result<(), String> {
    if tag == "fail" {
        return Err("init refused".into());
    }
    *INIT_TAG.lock().unwrap() = Some(format!("{tag}@{}", std::process::id()));
    Ok(())
}

#[escala::task]
fn init_seen() -> (Option<String>, u32) {
    (INIT_TAG.lock().unwrap().clone(), std::process::id())
}

/// Allocates and touches `mb` MiB that it never frees; returns its pid.
#[escala::task]
fn bloat(mb: usize) -> u32 {
    let mut v = vec![0u8; mb << 20];
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    std::mem::forget(v);
    std::process::id()
}

#[escala::task]
fn echo_len(s: String) -> usize {
    s.len()
}

#[escala::task]
fn bytes_of(n: usize) -> Vec<u8> {
    vec![7; n]
}

#[escala::task]
fn reversed(bytes: Vec<u8>) -> Vec<u8> {
    bytes.into_iter().rev().collect()
}

/// The open fds of a command this worker starts, as `ls -l /proc/self/fd` lists them.
#[escala::task]
fn fds_of_a_command() -> Result<String, String> {
    let out = std::process::Command::new("ls")
        .args(["-l", "/proc/self/fd/"])
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------
// main: worker / scenario / harness
// ---------------------------------------------------------------------------------------

fn main() {
    let exit = escala::init();
    if let Ok(name) = std::env::var(SCENARIO_ENV) {
        scenario_main(&name);
        drop(exit);
        return;
    }
    // Workers of a killed scenario are re-parented to this process, so a test can wait for
    // their death as an event instead of polling.
    SUBREAPER.store(nix::sys::prctl::set_child_subreaper(true).is_ok(), Ordering::Relaxed);
    let args = Arguments::from_args();
    let conclusion = libtest_mimic::run(&args, trials());
    if conclusion.has_failed() {
        // A failed test may have left a unit running; do not let the exit policy hang.
        std::mem::forget(exit);
    } else {
        drop(exit);
    }
    conclusion.exit();
}

fn shared(name: &'static str, f: fn() -> TestResult) -> Trial {
    Trial::test(name, move || {
        let _g = EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner());
        f()
    })
}

fn exclusive(name: &'static str, f: fn() -> TestResult) -> Trial {
    Trial::test(name, move || {
        let _g = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
        f()
    })
}

fn trials() -> Vec<Trial> {
    macro_rules! shared {
        ($($f:ident),* $(,)?) => { vec![$(shared(stringify!($f), $f)),*] };
    }
    let mut v = shared![
        // the Executor API
        submit_runs_in_a_worker_process,
        values_errors_and_panics_come_back_and_the_worker_survives,
        map_is_ordered_lazy_and_bounded,
        map_unordered_yields_in_completion_order,
        executor_code_runs_on_processes_and_threads_alike,
        shutdown_finishes_queued_work_then_rejects,
        shutdown_cancel_pending_cancels_queued_and_prefetched_tasks,
        shutdown_timeout_gives_up_while_a_task_runs,
        dropping_the_pool_finishes_queued_work,
        stats_count_tasks_and_show_each_worker,
        stats_include_a_task_as_soon_as_its_handle_resolves,
        stats_latency_is_each_tasks_run_time,
        queue_reject_policy_refuses_when_full,
        queue_block_policy_waits_for_room,
        queue_caller_runs_policy_runs_in_the_caller,
        big_payloads_both_ways_never_stall,
        commands_a_task_starts_inherit_no_pool_socket,
        initializer_runs_in_every_worker_and_its_replacements,
        failing_initializer_resolves_callers_and_never_spins,
        oversized_args_and_results_are_codec_errors,
        pool_threads_run_batch_and_workers_keep_the_callers_policy,
        // crash isolation
        abort_is_worker_lost_sigabrt_and_spares_the_other_tasks,
        sigkill_is_worker_lost_and_the_worker_is_replaced,
        exit_in_a_task_is_worker_lost_with_its_code,
        prefetched_tasks_of_a_dead_worker_are_requeued_not_lost,
        a_finished_task_resolves_while_the_next_prefetched_one_runs,
        killing_a_worker_fails_only_the_task_it_was_running,
        crash_loop_backs_off_and_is_reported,
        // retries
        retry_reruns_a_failed_task,
        retry_reruns_a_task_whose_worker_died,
        retry_gives_up_after_max_attempts,
        retry_on_timeout_reruns_a_stuck_task,
        retry_on_timeout_reruns_a_cooperative_task,
        // cancel and timeouts
        cancel_of_queued_and_prefetched_tasks_removes_them,
        cancelled_prefetched_tasks_never_run,
        cancel_of_a_running_task_sets_its_token_and_keeps_the_worker,
        cancel_of_a_task_ignoring_its_token_terms_its_worker_alone,
        cancel_of_a_task_ignoring_sigterm_kills_its_worker,
        timeout_of_a_stuck_task_resolves_timed_out_and_replaces_the_worker,
        timeout_of_a_cooperative_task_keeps_its_worker,
        timeout_kills_a_worker_ignoring_sigterm,
        timeout_is_per_task_not_per_batch,
        // recycling
        max_tasks_recycles_after_n_tasks_one_at_a_time,
        max_tasks_holds_with_a_full_queue,
        max_rss_recycles_a_bloated_worker,
        idle_timeout_replaces_an_idle_worker,
        idle_timeout_does_not_retire_a_busy_worker,
        // hygiene
        workers_die_when_the_parent_is_killed,
        ctrl_c_ends_the_parent_and_its_workers,
        ctrl_c_to_the_process_group_ends_everything,
    ];
    v.push(exclusive(
        "crashes_cancels_and_timeouts_leave_no_zombies_and_no_fds",
        crashes_cancels_and_timeouts_leave_no_zombies_and_no_fds,
    ));
    v.push(exclusive("chaos_sigkill_workers_at_random", chaos_sigkill_workers_at_random));
    v
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn our_pid() -> u32 {
    std::process::id()
}

fn pid_of(p: u32) -> Pid {
    Pid::from_raw(p as i32)
}

/// True when no process (not even a zombie) answers to `pid`.
fn is_gone(pid: u32) -> bool {
    kill(pid_of(pid), None) == Err(Errno::ESRCH)
}

/// The fields of a `stat` file from the third (the state) on: past the command name, which
/// may hold spaces and parentheses.
fn stat_fields(stat: &str) -> Option<String> {
    let s = std::fs::read_to_string(stat).ok()?;
    Some(s.rsplit_once(") ")?.1.to_string())
}

/// State letter and parent pid of `pid`, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let rest = stat_fields(&format!("/proc/{pid}/stat"))?;
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Scheduling policy (field 41 of a `stat` file: 0 normal, 3 batch) of a process or thread.
fn sched_policy(stat: &str) -> Option<u32> {
    stat_fields(stat)?.split_whitespace().nth(38)?.parse().ok()
}

fn is_zombie(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state == 'Z')
}

/// Our children that are zombies (exited, not reaped).
fn our_zombies() -> Vec<u32> {
    let me = our_pid();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| proc_stat(p) == Some(('Z', me)))
        .collect()
}

/// This process's open fds, with what they point to.
fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let to = std::fs::read_link(e.path()).map_or_else(|_| "?".into(), |t| t.display().to_string());
            format!("{} -> {to}", e.file_name().to_string_lossy())
        })
        .collect();
    v.sort();
    v
}

/// A dead worker must be reaped by the time the handle of its task resolves.
fn assert_reaped(pid: u32, what: &str) {
    assert!(!is_zombie(pid), "{what}: worker {pid} is a zombie after its task resolved");
    assert!(is_gone(pid), "{what}: worker {pid} still exists after its task resolved");
}

/// Waits (bounded) until `pid` is gone. Polling is the only way to see the death of a
/// process reaped by someone else; it is short and bounded.
fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if is_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    is_gone(pid)
}

/// Waits (bounded) until the pool has `n` live workers, none of them in `dead`. No event
/// announces a worker start, so this polls.
fn wait_workers(pool: &ProcessPool, n: usize, dead: &[u32]) -> Result<Vec<u32>, Failed> {
    let deadline = Instant::now() + WAIT;
    loop {
        let pids = pool.pids();
        if pids.len() == n && !pids.iter().any(|p| dead.contains(p)) {
            return Ok(pids);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the pool did not get back to {n} live workers (excluding {dead:?}) within {WAIT:?}: {pids:?}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits (bounded) for an outcome.
fn join<T>(h: Handle<T>, what: &str) -> Result<Outcome<T>, Failed> {
    if !h.wait_timeout(WAIT) {
        h.cancel();
        return Err(format!("{what}: the handle did not resolve within {WAIT:?}").into());
    }
    Ok(h.join())
}

fn ok<T>(h: Handle<T>, what: &str) -> Result<T, Failed> {
    join(h, what)?.map_err(|e| format!("{what}: expected a value, got: {e}").into())
}

fn err<T: std::fmt::Debug>(h: Handle<T>, what: &str) -> Result<TaskError, Failed> {
    match join(h, what)? {
        Ok(v) => Err(format!("{what}: expected an error, got Ok({v:?})").into()),
        Err(e) => Ok(e),
    }
}

/// Runs `f` on its own thread and waits (bounded) for it: for APIs that block unbounded.
fn in_thread<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failed> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WAIT).map_err(|_| format!("{what}: did not finish within {WAIT:?}").into())
}

/// The reason of the `WorkerLost` event of task `id` (emitted once its worker was reaped).
fn lost_event(sub: &Subscription, id: TaskId) -> Result<String, Failed> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sub.recv_timeout(left) {
            Ok(ev) if ev.task == id => {
                if let EventKind::WorkerLost { reason } = ev.kind {
                    return Ok(reason);
                }
            }
            Ok(_) => {}
            Err(_) => return Err(format!("no worker-lost event for task {id} within {WAIT:?}").into()),
        }
    }
}

/// Every event of the tasks `ids` emitted so far (they precede the outcomes, so once the
/// handles resolved, their events are all here).
fn events_of(sub: &Subscription, ids: &[TaskId]) -> Vec<events::Event> {
    sub.try_iter().filter(|ev| ids.contains(&ev.task)).collect()
}

/// Shuts the pool down (waiting for its slots) and returns its final counters.
fn settled(pool: &ProcessPool) -> Result<escala::Stats, Failed> {
    if !pool.shutdown(Shutdown { timeout: Some(WAIT), ..Shutdown::default() }) {
        return Err(format!("the pool did not shut down within {WAIT:?}").into());
    }
    Ok(pool.stats())
}

/// A pool that never hangs the test on drop: it shuts down with a deadline, kills its
/// workers if that is not enough, and is leaked (reported) as a last resort.
struct TestPool(Option<ProcessPool>);

impl TestPool {
    fn new(b: ProcessPoolBuilder) -> TestPool {
        TestPool(Some(b.build()))
    }
}

impl Deref for TestPool {
    type Target = ProcessPool;
    fn deref(&self) -> &ProcessPool {
        self.0.as_ref().expect("a live pool")
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        let Some(pool) = self.0.take() else { return };
        if pool.shutdown(Shutdown::now(Duration::from_secs(2))) {
            return;
        }
        for p in pool.pids() {
            let _ = kill(pid_of(p), Signal::SIGKILL);
        }
        if pool.shutdown(Shutdown::now(Duration::from_secs(2))) {
            return;
        }
        eprintln!("pool_process: leaking a pool that did not shut down");
        std::mem::forget(pool);
    }
}

fn builder(size: usize) -> ProcessPoolBuilder {
    ProcessPool::builder().size(size)
}

/// Builds a one-worker pool and runs `submit` before its worker is ready, so that the
/// worker's first batch holds every task submitted (up to its initial prefetch of 4) in
/// order, and the rest stays queued. Checked: `pids()` is still empty afterwards.
fn before_ready<T>(
    make: impl Fn() -> ProcessPoolBuilder,
    submit: impl Fn(&ProcessPool) -> Result<T, Failed>,
) -> Result<(TestPool, T), Failed> {
    for _ in 0..5 {
        let pool = TestPool::new(make().size(1));
        let t = submit(&pool)?;
        if pool.pids().is_empty() {
            return Ok((pool, t));
        }
        eprintln!("pool_process: the worker was ready before the submissions; trying again");
        drop(t); // release what it holds before the pool shuts down
    }
    Err("the worker was always ready before the tasks were submitted".into())
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary directory, removed on drop.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(tag: &str) -> Result<TmpDir, Failed> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("escala-pp-{}-{n}-{tag}", our_pid()));
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

fn read_pid(path: &str) -> Result<u32, Failed> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("no pid file {path}: {e}"))?;
    Ok(s.trim().parse::<u32>().map_err(|e| format!("bad pid {s:?}: {e}"))?)
}

/// A Unix socket `hold` tasks connect to, to say "I am running, this is my pid". Dropping
/// it (and the accepted connections) releases them.
struct Rendezvous {
    _dir: TmpDir,
    path: String,
    listener: UnixListener,
}

impl Rendezvous {
    fn new() -> Result<Rendezvous, Failed> {
        let dir = TmpDir::new("sock")?;
        let path = dir.file("s");
        let listener = UnixListener::bind(&path)?;
        Ok(Rendezvous { _dir: dir, path, listener })
    }

    fn path(&self) -> String {
        self.path.clone()
    }

    /// Waits (bounded) for one running task and the pid it sends.
    fn accept(&self) -> Result<(UnixStream, u32), Failed> {
        let l = self.listener.try_clone()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let r = l.accept();
            drop(l);
            let _ = tx.send(r);
        });
        let (mut conn, _) = match rx.recv_timeout(WAIT) {
            Ok(r) => r?,
            Err(_) => {
                let _ = UnixStream::connect(&self.path); // release the accepting thread
                return Err(format!("no task connected within {WAIT:?}").into());
            }
        };
        conn.set_read_timeout(Some(WAIT))?;
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while conn.read(&mut b)? == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        let pid = String::from_utf8_lossy(&line)
            .trim()
            .parse::<u32>()
            .map_err(|e| format!("bad pid line {line:?}: {e}"))?;
        Ok((conn, pid))
    }
}

fn hold_call(r: &Rendezvous, mode: Hold) -> escala::Call<hold> {
    hold::call(r.path(), mode, String::new())
}

/// Waits (bounded) for the exit of a child of this process (possibly an adopted orphan).
/// `None`: not ours to wait for (another process reaped it).
fn wait_child_exit(pid: u32, within: Duration) -> Result<Option<WaitStatus>, Failed> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(waitpid(pid_of(pid), None));
    });
    match rx.recv_timeout(within) {
        Ok(Ok(st)) => Ok(Some(st)),
        Ok(Err(Errno::ECHILD)) => Ok(None),
        Ok(Err(e)) => Err(format!("waitpid({pid}): {e}").into()),
        Err(_) => {
            let _ = kill(pid_of(pid), Signal::SIGKILL);
            let _ = rx.recv_timeout(WAIT);
            Err(format!("process {pid} was still alive {within:?} after its parent died").into())
        }
    }
}

/// Runs one pool in this process to open whatever a first use opens for good, so that fd
/// counts taken afterwards compare like with like.
fn warm_up() -> TestResult {
    let pool = TestPool::new(builder(1));
    ok(pool.submit_task(square::call(3)), "warm-up")?;
    assert!(pool.shutdown(Shutdown { timeout: Some(WAIT), ..Shutdown::default() }));
    Ok(())
}

// ---- scenario subprocesses -------------------------------------------------------------

/// A copy of this binary running a scenario, its stdout read line by line.
struct Scenario {
    name: String,
    pid: u32,
    group: bool,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Receiver<String>,
    status: Receiver<ExitStatus>,
    exited: bool,
}

fn start_scenario(name: &str, own_group: bool) -> Result<Scenario, Failed> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.env(SCENARIO_ENV, name)
        .env_remove(CHILD_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        // Like a program started from a shell: its own process group, the one a terminal's
        // Ctrl-C signals.
        cmd.process_group(0);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (ltx, lines) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if ltx.send(line).is_err() {
                break;
            }
        }
    });
    let (etx, erx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        let _ = etx.send(s);
    });
    let (stx, status) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        if let Ok(st) = child.wait() {
            let _ = stx.send(st);
        }
    });
    Ok(Scenario {
        name: name.into(),
        pid,
        group: own_group,
        lines,
        seen: Vec::new(),
        stderr: erx,
        status,
        exited: false,
    })
}

impl Scenario {
    fn stderr_now(&self) -> String {
        self.stderr.recv_timeout(Duration::from_millis(200)).unwrap_or_else(|_| "<stderr still open>".into())
    }

    /// The next stdout line (bounded).
    fn line(&mut self) -> Result<String, Failed> {
        match self.lines.recv_timeout(WAIT) {
            Ok(l) => {
                self.seen.push(l.clone());
                Ok(l)
            }
            Err(e) => Err(format!(
                "scenario {}: no stdout line ({e}); stdout so far: {:?}; stderr: {}",
                self.name,
                self.seen,
                self.stderr_now()
            )
            .into()),
        }
    }

    fn wait_exit(&mut self) -> Result<ExitStatus, Failed> {
        let st = self.status.recv_timeout(WAIT).map_err(|_| {
            format!("scenario {} did not exit within {WAIT:?}; stdout: {:?}", self.name, self.seen)
        })?;
        self.exited = true;
        Ok(st)
    }

    /// Once it exited: its stdout must close, i.e. no descendant (worker) holds it open.
    fn stdout_closes(&mut self) -> TestResult {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(l) => self.seen.push(l),
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "scenario {}: its stdout stayed open {WAIT:?} after it exited (a worker outlived it)",
                        self.name
                    )
                    .into());
                }
            }
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !self.exited {
            if self.group {
                let _ = killpg(pid_of(self.pid), Signal::SIGKILL);
            } else {
                let _ = kill(pid_of(self.pid), Signal::SIGKILL);
            }
            let _ = self.status.recv_timeout(WAIT);
        }
    }
}

/// Scenarios (run in a subprocess; `main` returns after them).
fn scenario_main(name: &str) {
    match name {
        // A program with a pool of two workers, one of them running a task that only a
        // signal ends. Prints `worker <pid>` for each, then `ready`, then waits.
        "pool-hold" => {
            let pool = ProcessPool::new(2);
            let deadline = Instant::now() + WAIT;
            while pool.pids().len() < 2 {
                assert!(Instant::now() < deadline, "the workers did not start");
                std::thread::sleep(Duration::from_millis(2));
            }
            let never = std::env::temp_dir().join(format!("escala-pp-never-{}", our_pid()));
            let h = pool.submit_task(gated::call(0, Some(never.to_string_lossy().into_owned())));
            while pool.stats().running == 0 {
                assert!(Instant::now() < deadline, "the task did not start");
                std::thread::sleep(Duration::from_millis(2));
            }
            for p in pool.pids() {
                println!("worker {p}");
            }
            println!("ready");
            let _ = h.join();
            println!("unexpected: the held task ended");
        }
        other => panic!("unknown scenario {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Tests: the Executor API
// ---------------------------------------------------------------------------------------

fn submit_runs_in_a_worker_process() -> TestResult {
    let pool = TestPool::new(builder(2));
    assert_eq!(pool.size(), 2);
    let h = pool.submit_task(whoami::call());
    assert_eq!(h.kind(), UnitKind::PoolTask);
    assert_eq!(h.name(), <whoami as Task>::NAME);
    assert_eq!(h.name(), "pool_process::whoami");
    let pid = ok(h, "whoami")?;
    assert_ne!(pid, our_pid(), "the task ran in the parent");
    assert_eq!(
        proc_stat(pid).map(|s| s.1),
        Some(our_pid()),
        "worker {pid} is not a child of the pool's process"
    );
    let mut pids = wait_workers(&pool, 2, &[])?;
    assert!(pids.contains(&pid), "{pid} is not among the workers {pids:?}");
    let stats = pool.stats();
    assert_eq!(stats.workers, 2);
    let mut listed: Vec<u32> = stats.processes.iter().map(|p| p.pid).collect();
    listed.sort_unstable();
    pids.sort_unstable();
    assert_eq!(listed, pids, "stats().processes and pids() disagree");
    Ok(())
}

fn values_errors_and_panics_come_back_and_the_worker_survives() -> TestResult {
    let pool = TestPool::new(builder(1));
    let before = ok(pool.submit_task(whoami::call()), "whoami")?;
    assert_eq!(ok(pool.submit_task(square::call(12)), "square")?, 144);
    let e = err(pool.submit_task(crash::call(Crash::Fail("not today".into()), String::new())), "fail")?;
    assert_eq!(e.kind(), &ErrorKind::Failed("not today".into()));
    assert_eq!(e.name(), "pool_process::crash");
    let e = err(pool.submit_task(crash::call(Crash::Panic("kaboom".into()), String::new())), "panic")?;
    let ErrorKind::Panicked { message, location } = e.kind() else {
        return Err(format!("expected Panicked, got {e:?}").into());
    };
    assert_eq!(message, "kaboom");
    assert!(location.as_deref().is_some_and(|l| l.starts_with(file!())), "location {location:?}");
    let after = ok(pool.submit_task(whoami::call()), "whoami")?;
    assert_eq!(before, after, "an error or a caught panic must not cost the worker");
    let s = settled(&pool)?;
    assert_eq!((s.submitted, s.completed, s.failed, s.restarts), (5, 3, 2, 0), "{s:?}");
    Ok(())
}

fn map_is_ordered_lazy_and_bounded() -> TestResult {
    let pool = Arc::new(TestPool::new(builder(2).map_window(3)));
    let p = pool.clone();
    let (values, pulled) = in_thread("map_tasks", move || {
        let pulled = AtomicUsize::new(0);
        // An endless input: only laziness lets this end.
        let input = (0u64..).inspect(|_| {
            pulled.fetch_add(1, Ordering::Relaxed);
        });
        let values: Vec<Outcome<u64>> = p.map_tasks(input.map(square::call)).take(10).collect();
        (values, pulled.into_inner())
    })?;
    let values: Vec<u64> = values.into_iter().collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    assert_eq!(values, (0..10u64).map(|i| i * i).collect::<Vec<_>>());
    assert!((10..=13).contains(&pulled), "took 10 results with a window of 3 but read {pulled} inputs");
    assert_eq!(pool.stats().submitted, pulled as u64);
    Ok(())
}

fn map_unordered_yields_in_completion_order() -> TestResult {
    let dir = TmpDir::new("unordered")?;
    let gate = dir.file("gate");
    let pool = Arc::new(TestPool::new(builder(2).map_window(16)));
    // Input 0 waits for the gate; 1..=8 are quick. One worker prefetches at most 4 tasks, so
    // the other gets at least 5 quick ones and some result comes before the gate opens.
    let mut calls = vec![gated::call(0, Some(gate.clone()))];
    calls.extend((1..=8).map(|x| gated::call(x, None)));
    let (tx, rx) = crossbeam_channel::unbounded();
    let p = pool.clone();
    std::thread::spawn(move || {
        for out in p.map_tasks_unordered(calls) {
            if tx.send(out).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(WAIT).map_err(|_| "no result while the gate was closed")?;
    let first = first.map_err(|e| e.to_string())?;
    assert_ne!(first, 0, "the gated task came first: results are in input order");
    std::fs::write(&gate, "open")?;
    let mut got = vec![first];
    for _ in 0..8 {
        got.push(
            rx.recv_timeout(WAIT)
                .map_err(|_| "map_tasks_unordered stopped early")?
                .map_err(|e| e.to_string())?,
        );
    }
    got.sort_unstable();
    assert_eq!(got, (0..=8u64).map(|x| x * x).collect::<Vec<_>>());
    assert!(rx.recv_timeout(WAIT).is_err(), "more results than inputs");
    Ok(())
}

/// Code written against `Executor` runs on a process pool as on a thread pool.
fn executor_code_runs_on_processes_and_threads_alike() -> TestResult {
    fn squares<E: Executor>(e: &E) -> (Vec<u64>, Vec<u64>) {
        let ordered = e.map_tasks((0..20).map(square::call)).map(|r| r.expect("square")).collect();
        let mut unordered: Vec<u64> =
            e.map_tasks_unordered((0..20).map(square::call)).map(|r| r.expect("square")).collect();
        unordered.sort_unstable();
        (ordered, unordered)
    }
    let procs = Arc::new(TestPool::new(builder(2)));
    let p = procs.clone();
    let from_procs = in_thread("process pool", move || squares(&**p))?;
    let from_threads = in_thread("thread pool", || squares(&ThreadPool::new(2)))?;
    assert_eq!(from_procs, from_threads);
    assert_eq!(from_procs.0, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
    assert!(Executor::shutdown(&**procs, Shutdown::default()));
    assert_eq!(Executor::stats(&**procs).completed, 40);
    Ok(())
}

fn shutdown_finishes_queued_work_then_rejects() -> TestResult {
    let pool = TestPool::new(builder(2));
    let hs: Vec<_> = (0..20).map(|i| pool.submit_task(busy::call(i, 5))).collect();
    let t = Instant::now();
    assert!(pool.shutdown(Shutdown { timeout: Some(WAIT), ..Shutdown::default() }), "workers still alive");
    assert!(t.elapsed() < WAIT);
    let mut workers = HashSet::new();
    for (i, h) in hs.into_iter().enumerate() {
        assert!(h.is_done(), "task {i} not done after shutdown(wait) returned");
        let (v, pid) = h.join().map_err(|e| e.to_string())?;
        assert_eq!(v, i as u64);
        workers.insert(pid);
    }
    assert!(pool.pids().is_empty(), "live workers after shutdown: {:?}", pool.pids());
    for p in workers {
        assert_reaped(p, "after shutdown");
    }
    let e = err(pool.submit_task(square::call(2)), "after shutdown")?;
    assert!(e.is_rejected(), "{e:?}");
    assert!(e.to_string().contains("shut down"), "{e}");
    assert!(pool.shutdown(Shutdown::default()), "shutdown is idempotent");
    let s = pool.stats();
    assert_eq!((s.submitted, s.completed, s.rejected), (20, 20, 1), "{s:?}");
    assert!(s.processes.is_empty());
    Ok(())
}

fn shutdown_cancel_pending_cancels_queued_and_prefetched_tasks() -> TestResult {
    // One batch: the holder plus 3 prefetched; 3 more stay queued.
    let (pool, (dir, files, r, holder, touches)) = before_ready(
        || builder(1),
        |pool| {
            let dir = TmpDir::new("cancel-pending")?;
            let files: Vec<String> = (0..6).map(|i| dir.file(&format!("t{i}"))).collect();
            let r = Rendezvous::new()?;
            let holder = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
            let touches: Vec<_> = files.iter().map(|f| pool.submit_task(touch::call(f.clone()))).collect();
            Ok((dir, files, r, holder, touches))
        },
    )?;
    let (conn, pid) = r.accept()?;
    let how = Shutdown { wait: false, cancel_pending: true, timeout: None };
    assert!(!pool.shutdown(how), "shutdown(wait: false) says the workers ended while a task runs");
    for (i, h) in touches.into_iter().enumerate() {
        let e = err(h, "pending at shutdown")?;
        assert!(e.is_cancelled(), "task {i}: {e:?}");
    }
    assert!(!holder.is_done(), "the running task was stopped by cancel_pending");
    drop(conn);
    assert_eq!(ok(holder, "running at shutdown")?, pid);
    assert!(pool.shutdown(Shutdown { timeout: Some(WAIT), ..Shutdown::default() }));
    let ran: Vec<(&String, String)> =
        files.iter().filter_map(|f| Some((f, std::fs::read_to_string(f).ok()?))).collect();
    assert!(ran.is_empty(), "tasks cancelled at shutdown ran (file, pid): {ran:?}; the holder ran in {pid}");
    let s = pool.stats();
    assert_eq!((s.cancelled, s.completed), (6, 1), "{s:?}");
    drop(dir);
    Ok(())
}

fn shutdown_timeout_gives_up_while_a_task_runs() -> TestResult {
    let pool = TestPool::new(builder(1));
    let r = Rendezvous::new()?;
    let h = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
    let (conn, pid) = r.accept()?;
    let t = Instant::now();
    let ended = pool.shutdown(Shutdown {
        wait: true,
        cancel_pending: false,
        timeout: Some(Duration::from_millis(300)),
    });
    let took = t.elapsed();
    assert!(!ended, "shutdown says every worker ended while one runs a task");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "gave up after {took:?}");
    assert!(!h.is_done());
    drop(conn);
    assert_eq!(ok(h, "held")?, pid);
    assert!(pool.shutdown(Shutdown { timeout: Some(WAIT), ..Shutdown::default() }));
    assert!(wait_gone(pid, WAIT), "worker {pid} outlived the shutdown");
    Ok(())
}

fn dropping_the_pool_finishes_queued_work() -> TestResult {
    let pool = ProcessPool::new(2);
    let hs: Vec<_> = (0..20).map(|i| pool.submit_task(busy::call(i, 2))).collect();
    in_thread("drop", move || drop(pool))?;
    for (i, h) in hs.into_iter().enumerate() {
        assert!(h.is_done(), "task {i} not done after the pool was dropped");
        assert_eq!(h.join().map_err(|e| e.to_string())?.0, i as u64);
    }
    Ok(())
}

fn pool_threads_run_batch_and_workers_keep_the_callers_policy() -> TestResult {
    const BATCH: u32 = 3;
    let caller = sched_policy("/proc/thread-self/stat").ok_or("no policy in /proc/thread-self/stat")?;
    let pool = TestPool::new(builder(2).name("batchy"));
    let pids = wait_workers(&pool, 2, &[])?;
    assert_eq!(ok(pool.submit_task(square::call(7)), "square")?, 49);
    // The slot threads `batchy-0`, `batchy-1` and the threads they started (writers, stderr).
    let mut ours = vec![];
    for t in std::fs::read_dir("/proc/self/task")? {
        let dir = t?.path();
        let comm = std::fs::read_to_string(dir.join("comm"))?;
        if comm.starts_with("batchy-") {
            ours.push((comm.trim().to_string(), sched_policy(&dir.join("stat").to_string_lossy())));
        }
    }
    let slots = ours.iter().filter(|(c, _)| c == "batchy-0" || c == "batchy-1").count();
    assert!(slots >= 2, "slot threads not found: {ours:?}");
    // A normal caller's pool threads move to batch; a caller under another policy keeps it.
    let want = if caller == 0 { BATCH } else { caller };
    assert!(ours.iter().all(|(_, p)| *p == Some(want)), "pool threads' policies: {ours:?}");
    for pid in pids {
        assert_eq!(sched_policy(&format!("/proc/{pid}/stat")), Some(caller), "worker {pid}'s policy");
    }
    Ok(())
}

fn stats_count_tasks_and_show_each_worker() -> TestResult {
    let pool = TestPool::new(builder(2));
    let squares: Vec<_> = (0..100).map(|i| pool.submit_task(square::call(i))).collect();
    let fails: Vec<_> =
        (0..3).map(|_| pool.submit_task(crash::call(Crash::Fail("no".into()), String::new()))).collect();
    let panics: Vec<_> =
        (0..2).map(|_| pool.submit_task(crash::call(Crash::Panic("oops".into()), String::new()))).collect();
    for (i, h) in squares.into_iter().enumerate() {
        assert_eq!(ok(h, "square")?, (i * i) as u64);
    }
    for h in fails.into_iter().chain(panics) {
        err(h, "failing")?;
    }
    let pids = wait_workers(&pool, 2, &[])?;
    let s = pool.stats();
    assert_eq!(s.workers, 2);
    assert_eq!((s.running, s.queued), (0, 0), "{s:?}");
    assert_eq!(s.processes.len(), 2, "{s:?}");
    assert_eq!(s.processes.iter().map(|p| p.tasks).sum::<u64>(), 105, "per-worker task counts: {s:?}");
    for p in &s.processes {
        assert!(pids.contains(&p.pid), "{} is not a live worker ({pids:?})", p.pid);
        if p.tasks > 0 {
            // Sampled (after task 1, then every 64 tasks): it may be older than /proc's figure
            // (a panic with RUST_BACKTRACE set loads debug info, for one).
            let statm = std::fs::read_to_string(format!("/proc/{}/statm", p.pid))?;
            let now = statm.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 4096;
            assert!(
                p.rss_bytes > 1 << 20 && p.rss_bytes <= now * 2,
                "worker {} reports RSS {} bytes; /proc says {now}",
                p.pid,
                p.rss_bytes
            );
        }
    }
    assert!(s.busy > Duration::ZERO && s.latency.max > Duration::ZERO, "{s:?}");
    let s = settled(&pool)?;
    assert_eq!(
        (s.submitted, s.completed, s.failed, s.cancelled, s.rejected, s.running, s.queued, s.restarts),
        (105, 100, 5, 0, 0, 0, 0, 0),
        "{s:?}"
    );
    Ok(())
}

/// `stats()` read right after a handle resolved includes that task (as the thread pool
/// guarantees: it counts before it resolves).
fn stats_include_a_task_as_soon_as_its_handle_resolves() -> TestResult {
    let pool = TestPool::new(builder(1));
    for i in 1..=1000u64 {
        let h = pool.submit_task(square::call(i));
        // The earliest moment a caller can see the outcome (bounded spin, no sleep).
        let deadline = Instant::now() + WAIT;
        while !h.is_done() {
            if Instant::now() >= deadline {
                return Err(format!("task {i} did not resolve within {WAIT:?}").into());
            }
            std::hint::spin_loop();
        }
        let s = pool.stats();
        assert_eq!(s.completed, i, "task {i} resolved, but stats() counts {} completed", s.completed);
        ok(h, "square")?;
    }
    Ok(())
}

/// Four 40 ms tasks sent in one batch: each ran 40 ms, so the median run time is ~40 ms.
fn stats_latency_is_each_tasks_run_time() -> TestResult {
    let (pool, hs) = before_ready(
        || builder(1),
        |pool| Ok((0..4).map(|i| pool.submit_task(busy::call(i, 40))).collect::<Vec<_>>()),
    )?;
    for h in hs {
        ok(h, "busy")?;
    }
    let s = pool.stats();
    assert!(
        s.latency.p50 >= Duration::from_millis(30),
        "four tasks of 40 ms each, median run time reported {:?} (max {:?})",
        s.latency.p50,
        s.latency.max
    );
    Ok(())
}

fn queue_reject_policy_refuses_when_full() -> TestResult {
    let (pool, (a, b, c)) = before_ready(
        || builder(1).queue(2, QueuePolicy::Reject),
        |pool| {
            let a = pool.submit_task(whoami::call());
            let b = pool.submit_task(whoami::call());
            let c = pool.submit_task(whoami::call());
            Ok((a, b, c))
        },
    )?;
    let e = err(c, "third into a queue of 2")?;
    assert!(e.is_rejected(), "{e:?}");
    assert!(e.to_string().contains("full"), "{e}");
    ok(a, "a")?;
    ok(b, "b")?;
    let s = settled(&pool)?;
    assert_eq!((s.submitted, s.completed, s.rejected), (2, 2, 1), "{s:?}");
    Ok(())
}

/// Queue of 1: a holder runs, 3 tasks are prefetched (the initial prefetch is 4), one
/// waits in the queue: the next submit must block until the holder ends.
fn queue_block_policy_waits_for_room() -> TestResult {
    let dir = TmpDir::new("block")?;
    let pool = Arc::new(TestPool::new(builder(1).queue(1, QueuePolicy::Block)));
    let r = Rendezvous::new()?;
    let holder = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
    let (returned_tx, returned) = crossbeam_channel::unbounded();
    let p = pool.clone();
    let files: Vec<String> = (0..5).map(|i| dir.file(&format!("f{i}"))).collect();
    let fs = files.clone();
    std::thread::spawn(move || {
        for (i, f) in fs.into_iter().enumerate() {
            let h = p.submit_task(touch::call(f));
            if returned_tx.send((i, h)).is_err() {
                break;
            }
        }
    });
    let (conn, _) = r.accept()?;
    // The worker holds only the running task (it prefetches one job until it has measured a
    // task's time), so the queue's one place takes the first submit and the second blocks.
    let (j, h) = returned.recv_timeout(WAIT).map_err(|_| "submit #0 blocked with room in the queue")?;
    assert_eq!(j, 0);
    let mut hs = vec![h];
    // Bounded negative wait: the second submit must still be blocked.
    assert!(
        returned.recv_timeout(Duration::from_millis(300)).is_err(),
        "a submit into a full queue (policy Block) returned at once"
    );
    drop(conn);
    for i in 1..5 {
        let (j, h) =
            returned.recv_timeout(WAIT).map_err(|_| format!("blocked submit #{i} never returned"))?;
        assert_eq!(j, i);
        hs.push(h);
    }
    ok(holder, "holder")?;
    for h in hs {
        ok(h, "touch")?;
    }
    assert_eq!(pool.stats().rejected, 0);
    Ok(())
}

fn queue_caller_runs_policy_runs_in_the_caller() -> TestResult {
    let (_pool, (a, b)) = before_ready(
        || builder(1).queue(1, QueuePolicy::CallerRuns),
        |pool| {
            let a = pool.submit_task(whoami::call());
            let b = pool.submit_task(whoami::call());
            Ok((a, b))
        },
    )?;
    assert!(b.is_done(), "caller-runs: the task must be done when submit returns");
    assert_eq!(ok(b, "caller-runs")?, our_pid(), "ran elsewhere than in the caller");
    assert_ne!(ok(a, "queued")?, our_pid());
    Ok(())
}

fn initializer_runs_in_every_worker_and_its_replacements() -> TestResult {
    let pool = TestPool::new(builder(2).initializer(init_worker::call("hello".into())));
    let hs: Vec<_> = (0..20).map(|_| pool.submit_task(init_seen::call())).collect();
    for h in hs {
        let (tag, pid) = ok(h, "init_seen")?;
        assert_eq!(tag, Some(format!("hello@{pid}")), "worker {pid} did not run the initializer");
    }
    // A replacement runs it too.
    let r = Rendezvous::new()?;
    let h = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
    let (_conn, dead) = r.accept()?;
    kill(pid_of(dead), Signal::SIGKILL)?;
    assert!(err(h, "killed")?.is_worker_lost());
    let pids = wait_workers(&pool, 2, &[dead])?;
    let hs: Vec<_> = (0..20).map(|_| pool.submit_task(init_seen::call())).collect();
    for h in hs {
        let (tag, pid) = ok(h, "init_seen")?;
        assert!(pids.contains(&pid));
        assert_eq!(tag, Some(format!("hello@{pid}")), "worker {pid} did not run the initializer");
    }
    Ok(())
}

fn failing_initializer_resolves_callers_and_never_spins() -> TestResult {
    let pool = TestPool::new(builder(1).initializer(init_worker::call("fail".into())).crash_loop(
        1,
        Duration::from_secs(10),
        Duration::from_millis(100),
        Duration::from_millis(400),
    ));
    let e = err(pool.submit_task(whoami::call()), "no worker can start")?;
    let ErrorKind::Spawn(why) = e.kind() else {
        return Err(format!("expected Spawn, got {e:?}").into());
    };
    assert!(why.contains("initializer") && why.contains("init refused"), "{why}");
    // A measurement window, not a synchronisation: how often does the slot restart?
    std::thread::sleep(Duration::from_millis(800));
    let s = pool.stats();
    assert!(s.crash_loops >= 1, "a worker that can never start is not reported as a crash loop: {s:?}");
    assert!(s.restarts <= 8, "{} restarts in 0.8 s: the slot spins", s.restarts);
    let e = err(pool.submit_task(whoami::call()), "still no worker")?;
    assert!(matches!(e.kind(), ErrorKind::Spawn(_)), "{e:?}");
    let t = Instant::now();
    assert!(pool.shutdown(Shutdown { timeout: Some(WAIT), ..Shutdown::default() }));
    assert!(t.elapsed() < Duration::from_secs(1), "shutdown took {:?}", t.elapsed());
    Ok(())
}

fn oversized_args_and_results_are_codec_errors() -> TestResult {
    let pool = TestPool::new(builder(1).max_frame(1000));
    let before = ok(pool.submit_task(whoami::call()), "whoami")?;
    let e = err(pool.submit_task(echo_len::call("x".repeat(10_000))), "big args")?;
    assert!(e.is_codec() && e.to_string().contains("over the limit of 1000 bytes"), "{e}");
    let e = err(pool.submit_task(bytes_of::call(5000)), "big result")?;
    assert!(e.is_codec() && e.to_string().contains("over the limit"), "{e}");
    assert_eq!(ok(pool.submit_task(bytes_of::call(100)), "small result")?.len(), 100);
    assert_eq!(ok(pool.submit_task(whoami::call()), "whoami")?, before, "a codec error cost the worker");
    Ok(())
}

fn commands_a_task_starts_inherit_no_pool_socket() -> TestResult {
    let pool = TestPool::new(builder(1));
    let fds = ok(pool.submit_task(fds_of_a_command::call()), "fds_of_a_command")?;
    // `ls` has its stdio and the directory it reads; the job and control sockets (and the
    // ledger) are the worker's alone.
    assert!(fds.lines().any(|l| l.contains("/proc/")), "ls did not list its own fds: {fds}");
    assert!(!fds.contains("socket:") && !fds.contains("memfd:"), "a pool fd leaked into a command:\n{fds}");
    Ok(())
}

/// Big arguments and big results at once, more of both in flight than a socket holds: the
/// pool writes jobs while the worker writes replies, and every byte comes back. (The
/// unit test `a_full_socket_is_written_while_its_peer_is_read` in `writer.rs` forces the
/// case where both sides would wait on each other.)
fn big_payloads_both_ways_never_stall() -> TestResult {
    let pool = TestPool::new(builder(1));
    let size = 48 << 10;
    let payload = |i: usize| (0..size).map(|k| (k * 31 + i) as u8).collect::<Vec<u8>>();
    // Tasks about as long as their payloads take to encode: the pool sends several per write.
    let handles: Vec<_> = (0..200).map(|i| pool.submit_task(reversed::call(payload(i)))).collect();
    for (i, h) in handles.into_iter().enumerate() {
        let got = ok(h, &format!("reversed #{i}"))?;
        let mut want = payload(i);
        want.reverse();
        assert!(got == want, "task {i} came back with the wrong bytes");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests: crash isolation
// ---------------------------------------------------------------------------------------

/// `std::process::abort()` in a task is what a `panic = "abort"` build does on a panic.
fn abort_is_worker_lost_sigabrt_and_spares_the_other_tasks() -> TestResult {
    let dir = TmpDir::new("abort")?;
    let pool = TestPool::new(builder(2).stderr_tail(3));
    let others: Vec<_> = (0..20).map(|i| pool.submit_task(square::call(i))).collect();
    let lines: Vec<String> = (1..=5).map(|i| format!("last-words-{i}")).collect();
    let pidfile = dir.file("pid");
    let e = err(pool.submit_task(crash::call(Crash::Abort(lines), pidfile.clone())), "abort")?;
    let ErrorKind::WorkerLost { reason, stderr } = e.kind() else {
        return Err(format!("expected WorkerLost, got {e:?}").into());
    };
    assert_eq!(*reason, ExitReason::Signal(Signal::SIGABRT));
    assert_eq!(reason.signal_name(), Some("SIGABRT"));
    assert_eq!(stderr, &["last-words-3", "last-words-4", "last-words-5"]);
    assert!(e.to_string().contains("killed by SIGABRT"), "{e}");
    assert!(e.to_string().contains("last-words-3 | last-words-4 | last-words-5"), "{e}");
    let dead = read_pid(&pidfile)?;
    assert_reaped(dead, "aborted");
    for (i, h) in others.into_iter().enumerate() {
        let out = join(h, "other task")?;
        assert!(
            out.as_ref().is_ok_and(|v| *v == (i * i) as u64),
            "square({i}), submitted beside the aborting task, got {out:?}"
        );
    }
    let pids = wait_workers(&pool, 2, &[dead])?;
    let p = ok(pool.submit_task(whoami::call()), "after the crash")?;
    assert!(pids.contains(&p));
    let s = settled(&pool)?;
    assert_eq!((s.restarts, s.failed, s.completed), (1, 1, 21), "{s:?}");
    Ok(())
}

/// SIGKILL from outside; it also stands for an OOM kill (the kernel's OOM killer sends
/// SIGKILL; a real one needs a memory cgroup the test cannot count on).
fn sigkill_is_worker_lost_and_the_worker_is_replaced() -> TestResult {
    let sub = events::subscribe();
    let pool = TestPool::new(builder(2));
    let r = Rendezvous::new()?;
    let h = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
    let id = h.id();
    let (_conn, dead) = r.accept()?;
    let others: Vec<_> = (0..10).map(|i| pool.submit_task(square::call(i))).collect();
    kill(pid_of(dead), Signal::SIGKILL)?;
    let e = err(h, "killed")?;
    assert!(e.is_worker_lost(), "{e:?}");
    assert_eq!(e.exit_reason().and_then(|r| r.signal_name()), Some("SIGKILL"));
    assert!(e.to_string().contains("killed by SIGKILL"), "{e}");
    assert_reaped(dead, "killed");
    assert_eq!(lost_event(&sub, id)?, "killed by SIGKILL");
    for (i, h) in others.into_iter().enumerate() {
        assert_eq!(ok(h, "other task")?, (i * i) as u64);
    }
    wait_workers(&pool, 2, &[dead])?;
    let s = settled(&pool)?;
    assert_eq!((s.restarts, s.failed, s.completed), (1, 1, 10), "{s:?}");
    Ok(())
}

fn exit_in_a_task_is_worker_lost_with_its_code() -> TestResult {
    let dir = TmpDir::new("exit")?;
    let pool = TestPool::new(builder(1));
    let mut dead = Vec::new();
    for code in [3, 0] {
        let pidfile = dir.file(&format!("pid-{code}"));
        let e = err(pool.submit_task(crash::call(Crash::Exit(code), pidfile.clone())), "exit")?;
        assert!(
            matches!(e.kind(), ErrorKind::WorkerLost { reason: ExitReason::Code(c), .. } if *c == code),
            "exit({code}): {e:?}"
        );
        assert!(e.to_string().contains(&format!("exited with code {code}")), "{e}");
        let pid = read_pid(&pidfile)?;
        assert_reaped(pid, "exited");
        dead.push(pid);
    }
    let p = ok(pool.submit_task(whoami::call()), "after the exits")?;
    assert!(!dead.contains(&p));
    assert_eq!(pool.stats().restarts, 2);
    Ok(())
}

fn prefetched_tasks_of_a_dead_worker_are_requeued_not_lost() -> TestResult {
    // One batch: the holder runs, three tasks wait behind it in the same worker.
    let (pool, (r, holder, rest)) = before_ready(
        || builder(1),
        |pool| {
            let r = Rendezvous::new()?;
            let holder = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
            let rest: Vec<_> = (1..=3).map(|i| pool.submit_task(tagged::call(i))).collect();
            Ok((r, holder, rest))
        },
    )?;
    let (_conn, dead) = r.accept()?;
    kill(pid_of(dead), Signal::SIGKILL)?;
    let e = err(holder, "killed")?;
    assert_eq!(e.exit_reason().and_then(|r| r.signal_name()), Some("SIGKILL"), "{e:?}");
    for (i, h) in rest.into_iter().enumerate() {
        let (v, pid) = ok(h, "prefetched by the dead worker")?;
        let i = i as u64 + 1;
        assert_eq!(v, i * i + 1);
        assert_ne!(pid, dead);
    }
    let s = settled(&pool)?;
    assert_eq!((s.failed, s.completed, s.restarts), (1, 3, 1), "{s:?}");
    Ok(())
}

/// A worker runs a batch in order: when the second task runs, the first has returned, and
/// its handle must resolve — not wait for the rest of the batch.
fn a_finished_task_resolves_while_the_next_prefetched_one_runs() -> TestResult {
    let (_pool, (r, first, holder)) = before_ready(
        || builder(1),
        |pool| {
            let r = Rendezvous::new()?;
            let first = pool.submit_task(busy::call(1, 100));
            let holder = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
            Ok((r, first, holder))
        },
    )?;
    let (conn, pid) = r.accept()?;
    // The holder runs, so `first` returned in that same worker.
    let resolved = first.wait_timeout(Duration::from_secs(3));
    drop(conn);
    assert!(
        resolved,
        "task 1 returned (task 2 is running after it in worker {pid}) but its handle did not \
         resolve within 3 s: its reply waits for the rest of the batch"
    );
    assert_eq!(ok(first, "first")?, (1, pid));
    ok(holder, "holder")?;
    Ok(())
}

/// Killing a worker must fail the task it was running — not the one it had finished, and
/// not re-run the one that was running.
fn killing_a_worker_fails_only_the_task_it_was_running() -> TestResult {
    let (pool, (r, first, holder)) = before_ready(
        || builder(1).stop_grace(Duration::from_millis(100)),
        |pool| {
            let r = Rendezvous::new()?;
            let first = pool.submit_task(busy::call(1, 100));
            let holder = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
            Ok((r, first, holder))
        },
    )?;
    let (_conn, dead) = r.accept()?;
    kill(pid_of(dead), Signal::SIGKILL)?;
    let first_out = join(first, "first")?;
    let holder_done = holder.wait_timeout(Duration::from_secs(3));
    let rerun = r.listener.set_nonblocking(true).ok().and_then(|_| r.listener.accept().ok()).is_some();
    if !holder_done {
        holder.cancel();
    }
    assert!(
        first_out.as_ref().is_ok_and(|v| *v == (1, dead)),
        "task 1 had returned before its worker was killed, yet it got {first_out:?}"
    );
    assert!(
        holder_done,
        "the running task (killed with its worker) did not resolve; re-run elsewhere: {rerun}"
    );
    let e = err(holder, "holder")?;
    assert!(e.is_worker_lost(), "{e:?}");
    assert!(!rerun, "the task that was running when its worker was killed was run again");
    assert_eq!(settled(&pool)?.failed, 1);
    Ok(())
}

fn crash_loop_backs_off_and_is_reported() -> TestResult {
    let sub = events::subscribe();
    let pool = TestPool::new(builder(1).crash_loop(
        2,
        Duration::from_secs(10),
        Duration::from_millis(100),
        Duration::from_millis(200),
    ));
    let t = Instant::now();
    let hs: Vec<_> =
        (0..6).map(|_| pool.submit_task(crash::call(Crash::Abort(vec![]), String::new()))).collect();
    let ids: Vec<TaskId> = hs.iter().map(Handle::id).collect();
    for h in hs {
        let e = err(h, "crashing task")?;
        assert_eq!(e.exit_reason(), Some(ExitReason::Signal(Signal::SIGABRT)), "{e:?}");
    }
    let all_lost = t.elapsed();
    // Deaths 3, 4 and 5 are over the limit of 2: the slot waits 100 + 200 + 200 ms before
    // the starts that lead to deaths 4, 5 and 6.
    assert!(all_lost >= Duration::from_millis(450), "six crashes in {all_lost:?}: no backoff");
    let p = ok(pool.submit_task(whoami::call()), "after the crash loop")?;
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "a worker started {:?} after the first crash",
        t.elapsed()
    );
    assert!(p > 0);
    let s = settled(&pool)?;
    assert_eq!((s.crash_loops, s.restarts, s.failed, s.completed), (1, 6, 6, 1), "{s:?}");
    let lost: Vec<(TaskId, String)> = events_of(&sub, &ids)
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::WorkerLost { reason } => Some((ev.task, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(lost.len(), 6, "{lost:?}");
    for id in ids {
        assert!(lost.contains(&(id, "killed by SIGABRT".into())), "no worker-lost event for {id}: {lost:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests: retries
// ---------------------------------------------------------------------------------------

fn quick_retries(n: u32) -> RetryPolicy {
    RetryPolicy::attempts(n).backoff(Duration::from_millis(1), Duration::from_millis(2))
}

fn retry_reruns_a_failed_task() -> TestResult {
    let dir = TmpDir::new("retry-fail")?;
    let sub = events::subscribe();
    let pool = TestPool::new(builder(1).retry(quick_retries(3)));
    let h = pool.submit_task(fail_until::call(dir.file("ok-on-3"), 3));
    let id = h.id();
    assert_eq!(ok(h, "fails twice")?, 3);
    let e = err(pool.submit_task(fail_until::call(dir.file("ok-on-5"), 5)), "fails 5 times")?;
    assert_eq!(e.kind(), &ErrorKind::Failed("attempt 3 failed".into()));
    let s = settled(&pool)?;
    assert_eq!((s.retried, s.completed, s.failed), (4, 1, 1), "{s:?}");
    let attempts: Vec<u32> = events_of(&sub, &[id])
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Retried { attempt, .. } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![2, 3]);
    Ok(())
}

fn retry_reruns_a_task_whose_worker_died() -> TestResult {
    let dir = TmpDir::new("retry-lost")?;
    let sub = events::subscribe();
    let pool = TestPool::new(builder(1).retry(quick_retries(2)));
    let marker = dir.file("marker");
    let h = pool.submit_task(crash_once::call(marker.clone(), Crash::Abort(vec![])));
    let id = h.id();
    let second = ok(h, "crashes once")?;
    let first = read_pid(&marker)?;
    assert_ne!(first, second, "the retry ran in the dead worker");
    assert_reaped(first, "crashed");
    let s = settled(&pool)?;
    assert_eq!((s.retried, s.restarts, s.failed, s.completed), (1, 1, 0, 1), "{s:?}");
    let kinds: Vec<EventKind> = events_of(&sub, &[id]).into_iter().map(|ev| ev.kind).collect();
    let lost = kinds.iter().position(|k| matches!(k, EventKind::WorkerLost { .. }));
    let retried = kinds.iter().position(|k| matches!(k, EventKind::Retried { attempt: 2, .. }));
    assert!(lost.is_some() && retried.is_some() && lost < retried, "{kinds:?}");
    Ok(())
}

fn retry_gives_up_after_max_attempts() -> TestResult {
    let pool = TestPool::new(builder(1).retry(quick_retries(2)));
    let e = err(pool.submit_task(crash::call(Crash::Abort(vec![]), String::new())), "always crashes")?;
    assert_eq!(e.exit_reason(), Some(ExitReason::Signal(Signal::SIGABRT)), "{e:?}");
    wait_workers(&pool, 1, &[])?; // the second replacement
    let s = settled(&pool)?;
    assert_eq!((s.retried, s.restarts, s.failed), (1, 2, 1), "{s:?}");
    Ok(())
}

fn timeout_retry_pool() -> TestPool {
    TestPool::new(
        builder(1)
            .timeout(Duration::from_millis(300))
            .stop_grace(Duration::from_millis(100))
            .retry(quick_retries(2).retry_on(false, false, true)),
    )
}

fn retry_on_timeout_reruns_a_stuck_task() -> TestResult {
    let dir = TmpDir::new("retry-stuck")?;
    let pool = timeout_retry_pool();
    let marker = dir.file("marker");
    let out = ok(pool.submit_task(stuck_once::call(marker.clone(), false)), "stuck once")?;
    assert_eq!(out, "fresh");
    assert_reaped(read_pid(&marker)?, "timed out");
    let s = settled(&pool)?;
    assert_eq!((s.retried, s.restarts, s.completed), (1, 1, 1), "{s:?}");
    Ok(())
}

/// A timed-out attempt that honours its token and returns is still a timed-out attempt: with
/// timeouts retried, the task runs again; its interrupted value is not the outcome.
fn retry_on_timeout_reruns_a_cooperative_task() -> TestResult {
    let dir = TmpDir::new("retry-coop")?;
    let pool = timeout_retry_pool();
    let out = ok(pool.submit_task(stuck_once::call(dir.file("marker"), true)), "stuck once")?;
    assert_eq!(out, "fresh", "the value of the attempt stopped by the timeout became the outcome");
    assert_eq!(settled(&pool)?.retried, 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests: cancel and timeouts
// ---------------------------------------------------------------------------------------

fn cancel_of_queued_and_prefetched_tasks_removes_them() -> TestResult {
    // The holder and t0..t2 go in the first batch (prefetched); t3, t4 stay queued.
    let (pool, (_dir, files, r, holder, mut ts)) = before_ready(
        || builder(1),
        |pool| {
            let dir = TmpDir::new("cancel-queued")?;
            let files: Vec<String> = (0..5).map(|i| dir.file(&format!("t{i}"))).collect();
            let r = Rendezvous::new()?;
            let holder = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
            let ts: Vec<_> = files.iter().map(|f| pool.submit_task(touch::call(f.clone()))).collect();
            Ok((dir, files, r, holder, ts))
        },
    )?;
    let (conn, _) = r.accept()?;
    assert_eq!(pool.stats().queued, 5, "3 prefetched + 2 queued");
    let queued = ts.remove(3);
    assert!(queued.cancel(), "cancel of a queued task must win");
    assert!(queued.is_done());
    assert!(!queued.cancel(), "a second cancel must not");
    assert!(err(queued, "queued")?.is_cancelled());
    assert_eq!(pool.stats().queued, 4, "a cancelled queued task still counts as queued");
    let prefetched = ts.remove(1);
    assert!(prefetched.cancel(), "cancel of a prefetched task must win");
    assert!(err(prefetched, "prefetched")?.is_cancelled());
    drop(conn);
    ok(holder, "holder")?;
    for h in ts {
        ok(h, "touch")?;
    }
    for (i, f) in files.iter().enumerate() {
        let ran = Path::new(f).exists();
        assert_eq!(ran, i != 1 && i != 3, "{f}: ran = {ran}");
    }
    let s = settled(&pool)?;
    assert_eq!((s.cancelled, s.completed, s.restarts), (2, 4, 0), "{s:?}");
    Ok(())
}

/// A task prefetched by a worker busy with another task has not started: once `cancel()`
/// returned true it must never run. Ten rounds, each cancelling three prefetched tasks just
/// before the task ahead of them ends.
fn cancelled_prefetched_tasks_never_run() -> TestResult {
    let mut ran = Vec::new();
    for round in 0..10 {
        let (pool, (dir, files, r, holder, ts)) = before_ready(
            || builder(1),
            |pool| {
                let dir = TmpDir::new("cancel-prefetched")?;
                let files: Vec<String> = (0..3).map(|i| dir.file(&format!("t{i}"))).collect();
                let r = Rendezvous::new()?;
                let holder = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
                let ts: Vec<_> = files.iter().map(|f| pool.submit_task(touch::call(f.clone()))).collect();
                Ok((dir, files, r, holder, ts))
            },
        )?;
        let (conn, _) = r.accept()?;
        for h in &ts {
            assert!(h.cancel(), "round {round}: cancel of a task that has not started must win");
        }
        drop(conn);
        ok(holder, "holder")?;
        // The worker runs in order: once this one ran, the cancelled ones were dropped (or ran).
        ok(pool.submit_task(whoami::call()), "after")?;
        for (h, f) in ts.into_iter().zip(&files) {
            assert!(err(h, "cancelled")?.is_cancelled());
            if Path::new(f).exists() {
                ran.push(format!("round {round}: {f}"));
            }
        }
        drop(dir);
    }
    assert!(ran.is_empty(), "cancelled tasks (cancel() returned true before they started) ran: {ran:#?}");
    Ok(())
}

fn cancel_of_a_running_task_sets_its_token_and_keeps_the_worker() -> TestResult {
    let dir = TmpDir::new("cancel-coop")?;
    let note = dir.file("note");
    let pool = TestPool::new(builder(1));
    let r = Rendezvous::new()?;
    let h = pool.submit_task(hold::call(r.path(), Hold::Cooperative, note.clone()));
    let (_conn, pid) = r.accept()?;
    assert!(h.cancel());
    assert!(h.is_done(), "cancel must resolve the handle at once");
    assert!(err(h, "cancelled")?.is_cancelled());
    // The worker runs tasks in order: once this one ran, the cancelled one has returned.
    assert_eq!(ok(pool.submit_task(whoami::call()), "next")?, pid, "a cooperative task cost its worker");
    assert_eq!(std::fs::read_to_string(&note).ok().as_deref(), Some("token"), "the task never saw its token");
    let s = settled(&pool)?;
    assert_eq!((s.cancelled, s.restarts), (1, 0), "{s:?}");
    Ok(())
}

/// Cancels a task that ignores its token (and, with `Hold::IgnoreTerm`, SIGTERM); returns
/// the `WorkerLost` reason of its worker.
fn cancel_stuck(mode: Hold) -> Result<String, Failed> {
    let sub = events::subscribe();
    let pool = TestPool::new(builder(2).stop_grace(Duration::from_millis(100)));
    let before = wait_workers(&pool, 2, &[])?;
    let r = Rendezvous::new()?;
    let h = pool.submit_task(hold_call(&r, mode));
    let id = h.id();
    let (_conn, dead) = r.accept()?;
    assert!(before.contains(&dead));
    assert!(h.cancel());
    assert!(err(h, "cancelled")?.is_cancelled());
    let reason = lost_event(&sub, id)?;
    assert_reaped(dead, "cancelled");
    let after = wait_workers(&pool, 2, &[dead])?;
    let other = before.iter().find(|p| **p != dead).expect("two workers");
    assert!(after.contains(other), "the other worker {other} was replaced too: {before:?} -> {after:?}");
    let s = settled(&pool)?;
    assert_eq!((s.cancelled, s.failed, s.restarts), (1, 0, 1), "{s:?}");
    Ok(reason)
}

fn cancel_of_a_task_ignoring_its_token_terms_its_worker_alone() -> TestResult {
    assert_eq!(cancel_stuck(Hold::IgnoreToken)?, "killed by SIGTERM");
    Ok(())
}

fn cancel_of_a_task_ignoring_sigterm_kills_its_worker() -> TestResult {
    assert_eq!(cancel_stuck(Hold::IgnoreTerm)?, "killed by SIGKILL");
    Ok(())
}

fn timeout_pool(ms: u64) -> TestPool {
    TestPool::new(builder(1).timeout(Duration::from_millis(ms)).stop_grace(Duration::from_millis(100)))
}

/// Runs a `hold` task that times out; returns its worker's pid and `WorkerLost` reason.
fn time_out_stuck(pool: &ProcessPool, mode: Hold, ms: u64) -> Result<(u32, String), Failed> {
    let sub = events::subscribe();
    let r = Rendezvous::new()?;
    let t = Instant::now();
    let h = pool.submit_task(hold_call(&r, mode));
    let id = h.id();
    let (_conn, dead) = r.accept()?;
    let e = err(h, "stuck")?;
    let took = t.elapsed();
    assert_eq!(e.kind(), &ErrorKind::TimedOut(Duration::from_millis(ms)), "{e:?}");
    assert!(e.is_timed_out());
    assert!(took >= Duration::from_millis(ms) && took < Duration::from_secs(2), "timed out after {took:?}");
    let reason = lost_event(&sub, id)?;
    assert_reaped(dead, "timed out");
    Ok((dead, reason))
}

fn timeout_of_a_stuck_task_resolves_timed_out_and_replaces_the_worker() -> TestResult {
    let pool = timeout_pool(300);
    assert_eq!(ok(pool.submit_task(square::call(5)), "quick")?, 25);
    let (dead, reason) = time_out_stuck(&pool, Hold::IgnoreToken, 300)?;
    assert_eq!(reason, "killed by SIGTERM");
    let p = ok(pool.submit_task(whoami::call()), "after the timeout")?;
    assert_ne!(p, dead);
    let s = settled(&pool)?;
    assert_eq!((s.failed, s.completed, s.restarts), (1, 2, 1), "{s:?}");
    Ok(())
}

fn timeout_kills_a_worker_ignoring_sigterm() -> TestResult {
    let pool = timeout_pool(200);
    let (_, reason) = time_out_stuck(&pool, Hold::IgnoreTerm, 200)?;
    assert_eq!(reason, "killed by SIGKILL");
    ok(pool.submit_task(whoami::call()), "after the timeout")?;
    Ok(())
}

fn timeout_of_a_cooperative_task_keeps_its_worker() -> TestResult {
    let dir = TmpDir::new("timeout-coop")?;
    let note = dir.file("note");
    let pool = timeout_pool(300);
    let r = Rendezvous::new()?;
    let h = pool.submit_task(hold::call(r.path(), Hold::Cooperative, note.clone()));
    let (_conn, pid) = r.accept()?;
    let e = err(h, "cooperative")?;
    assert!(e.is_timed_out(), "{e:?}");
    assert_eq!(ok(pool.submit_task(whoami::call()), "next")?, pid, "a cooperative task cost its worker");
    assert_eq!(std::fs::read_to_string(&note).ok().as_deref(), Some("token"), "the task never saw its token");
    let s = settled(&pool)?;
    assert_eq!((s.failed, s.restarts), (1, 0), "{s:?}");
    Ok(())
}

/// Two 250 ms tasks in one batch under a 400 ms timeout: each runs within its limit.
fn timeout_is_per_task_not_per_batch() -> TestResult {
    let (pool, (a, b)) = before_ready(
        || builder(1).timeout(Duration::from_millis(400)).stop_grace(Duration::from_millis(100)),
        |pool| Ok((pool.submit_task(busy::call(1, 250)), pool.submit_task(busy::call(2, 250)))),
    )?;
    let a = join(a, "a")?;
    let b = join(b, "b")?;
    assert!(a.is_ok(), "task 1 ran 250 ms under a 400 ms timeout: {a:?}");
    assert!(b.is_ok(), "task 2 ran 250 ms under a 400 ms timeout: {b:?}");
    assert_eq!(settled(&pool)?.failed, 0);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests: recycling
// ---------------------------------------------------------------------------------------

/// Lengths of the runs of equal pids, in order.
fn runs(pids: &[u32]) -> Vec<usize> {
    let mut v: Vec<usize> = Vec::new();
    for (i, p) in pids.iter().enumerate() {
        if i > 0 && pids[i - 1] == *p {
            *v.last_mut().expect("a run") += 1;
        } else {
            v.push(1);
        }
    }
    v
}

fn max_tasks_recycles_after_n_tasks_one_at_a_time() -> TestResult {
    let pool = TestPool::new(builder(1).max_tasks_per_worker(2));
    let mut pids = Vec::new();
    for _ in 0..12 {
        pids.push(ok(pool.submit_task(whoami::call()), "whoami")?);
    }
    assert_eq!(runs(&pids), vec![2; 6], "max_tasks_per_worker(2), one task at a time: pids {pids:?}");
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 6, "a pid came back: {pids:?}");
    Ok(())
}

fn max_tasks_holds_with_a_full_queue() -> TestResult {
    let pool = TestPool::new(builder(1).max_tasks_per_worker(3));
    let hs: Vec<_> = (0..9).map(|i| pool.submit_task(tagged::call(i))).collect();
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    let mut retired = Vec::new();
    for (i, h) in hs.into_iter().enumerate() {
        let (v, pid) = ok(h, "tagged")?;
        assert_eq!(v, (i * i + 1) as u64);
        *per_pid.entry(pid).or_default() += 1;
        if !retired.contains(&pid) {
            retired.push(pid);
        }
    }
    assert!(
        per_pid.values().all(|n| *n <= 3),
        "max_tasks_per_worker(3), 9 tasks queued at once: {per_pid:?}"
    );
    // Retired workers are reaped (checked before the last one is retired at shutdown).
    for p in &retired[..retired.len() - 1] {
        assert!(!is_zombie(*p), "retired worker {p} left a zombie");
    }
    Ok(())
}

fn max_rss_recycles_a_bloated_worker() -> TestResult {
    const LIMIT: u64 = 96 << 20;
    // Control: a lean worker under the same limit is kept.
    let lean = TestPool::new(builder(1).max_rss(LIMIT));
    let a = ok(lean.submit_task(whoami::call()), "lean")?;
    let b = ok(lean.submit_task(whoami::call()), "lean")?;
    assert_eq!(a, b, "a worker under its RSS limit was replaced");
    let rss = lean.stats().processes.first().map_or(0, |p| p.rss_bytes);
    assert!(rss > 0 && rss < LIMIT, "a lean worker's RSS is {rss} bytes");
    drop(lean);

    let pool = TestPool::new(builder(1).max_rss(LIMIT));
    let fat = ok(pool.submit_task(bloat::call(160)), "bloat")?;
    let next = ok(pool.submit_task(whoami::call()), "after bloat")?;
    let later = ok(pool.submit_task(whoami::call()), "later")?;
    assert_ne!(
        next, fat,
        "the task after the one that took the worker over its RSS limit ran in that worker \
         (a later one ran in {later})"
    );
    assert_ne!(later, fat);
    assert!(!is_zombie(fat));
    Ok(())
}

fn idle_timeout_replaces_an_idle_worker() -> TestResult {
    let pool = TestPool::new(builder(1).idle_timeout(Duration::from_millis(200)));
    let first = ok(pool.submit_task(whoami::call()), "whoami")?;
    let t = Instant::now();
    let fresh = wait_workers(&pool, 1, &[first])?;
    assert!(t.elapsed() >= Duration::from_millis(150), "replaced after {:?} idle", t.elapsed());
    assert!(!is_zombie(first), "the idle worker {first} left a zombie");
    assert!(wait_gone(first, WAIT), "the idle worker {first} did not exit");
    let p = ok(pool.submit_task(whoami::call()), "after the idle time")?;
    assert_ne!(p, first);
    assert!(fresh.contains(&p) || pool.stats().restarts >= 2, "{p} vs {fresh:?}");
    Ok(())
}

/// A worker running one long task is busy, not idle.
fn idle_timeout_does_not_retire_a_busy_worker() -> TestResult {
    let pool = TestPool::new(builder(1).idle_timeout(Duration::from_millis(200)));
    let (_, busy_pid) = ok(pool.submit_task(busy::call(0, 600)), "600 ms task")?;
    let next = ok(pool.submit_task(whoami::call()), "right after")?;
    assert_eq!(
        next, busy_pid,
        "idle_timeout(200 ms) retired a worker that was running a 600 ms task and got its next \
         task at once"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests: hygiene
// ---------------------------------------------------------------------------------------

/// Starts the `pool-hold` scenario, reads its workers, signals it with `sig` (its process
/// group with `group`), and expects it and its workers to end, nothing holding its stdout.
fn signal_pool_program(sig: Signal, group: bool) -> TestResult {
    let mut sc = start_scenario("pool-hold", group)?;
    let mut workers = Vec::new();
    loop {
        let line = sc.line()?;
        if let Some(p) = line.strip_prefix("worker ") {
            workers.push(p.trim().parse::<u32>()?);
        } else if line == "ready" {
            break;
        }
    }
    assert_eq!(workers.len(), 2, "{:?}", sc.seen);
    for w in &workers {
        assert_eq!(proc_stat(*w).map(|s| s.1), Some(sc.pid), "worker {w} is not the program's child");
    }
    if group {
        killpg(pid_of(sc.pid), sig)?;
    } else {
        kill(pid_of(sc.pid), sig)?;
    }
    let status = sc.wait_exit()?;
    // Every worker is waited for (and reaped, if it became ours) before anything is reported.
    let mut problems = Vec::new();
    if status.signal() != Some(sig as i32) && status.code() != Some(128 + sig as i32) {
        problems.push(format!("the program did not end by {sig}: {status:?}"));
    }
    for w in workers {
        if SUBREAPER.load(Ordering::Relaxed) {
            // Re-parented to us: its death is an event we can wait for. An idle worker may
            // see its socket close (the parent's fds close before PDEATHSIG is sent) and exit 0.
            match wait_child_exit(w, Duration::from_secs(3)) {
                Ok(None | Some(WaitStatus::Signaled(..) | WaitStatus::Exited(_, 0))) => {}
                Ok(Some(other)) => problems.push(format!("worker {w} ended with {other:?}")),
                Err(e) => problems.push(format!("{e:?}")),
            }
        }
        let gone = wait_gone(w, Duration::from_secs(3));
        if !gone {
            let _ = kill(pid_of(w), Signal::SIGKILL);
            problems.push(format!("worker {w} outlived its program"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    sc.stdout_closes()
}

fn workers_die_when_the_parent_is_killed() -> TestResult {
    signal_pool_program(Signal::SIGKILL, false)
}

fn ctrl_c_ends_the_parent_and_its_workers() -> TestResult {
    signal_pool_program(Signal::SIGINT, false)
}

/// A terminal's Ctrl-C signals the whole foreground process group: parent and workers.
fn ctrl_c_to_the_process_group_ends_everything() -> TestResult {
    signal_pool_program(Signal::SIGINT, true)
}

fn crashes_cancels_and_timeouts_leave_no_zombies_and_no_fds() -> TestResult {
    warm_up()?;
    let zombies = our_zombies();
    assert!(zombies.is_empty(), "zombies before the test: {zombies:?}");
    let fds = open_fds();
    let dir = TmpDir::new("hygiene")?;
    let r = Rendezvous::new()?;
    let mut seen: HashSet<u32> = HashSet::new();
    let sub = events::subscribe();
    {
        let pool = TestPool::new(
            builder(2)
                .stderr_tail(5)
                .timeout(Duration::from_millis(500))
                .stop_grace(Duration::from_millis(100)),
        );
        // One at a time (each alone in its worker): abort, exit, SIGKILL, a cancel that ends
        // in SIGTERM, a timeout that ends in SIGKILL.
        let pidfile = dir.file("abort");
        err(pool.submit_task(crash::call(Crash::Abort(vec!["bye".into()]), pidfile.clone())), "abort")?;
        seen.insert(read_pid(&pidfile)?);
        let pidfile = dir.file("exit");
        err(pool.submit_task(crash::call(Crash::Exit(9), pidfile.clone())), "exit")?;
        seen.insert(read_pid(&pidfile)?);
        let h = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
        let (c1, p) = r.accept()?;
        seen.insert(p);
        kill(pid_of(p), Signal::SIGKILL)?;
        err(h, "killed")?;
        let h = pool.submit_task(hold_call(&r, Hold::IgnoreToken));
        let (c2, p) = r.accept()?;
        seen.insert(p);
        assert!(h.cancel());
        let h = pool.submit_task(hold_call(&r, Hold::IgnoreTerm));
        let id = h.id();
        let (c3, p) = r.accept()?;
        seen.insert(p);
        assert!(err(h, "timed out")?.is_timed_out());
        // Hanging up would let the task return by itself: wait for its worker's death first.
        assert_eq!(lost_event(&sub, id)?, "killed by SIGKILL");
        drop((c1, c2, c3));
        let dead: Vec<u32> = seen.iter().copied().collect();
        seen.extend(wait_workers(&pool, 2, &dead)?);
        for h in (0..50).map(|i| pool.submit_task(square::call(i))).collect::<Vec<_>>() {
            ok(h, "square")?;
        }
        seen.extend(wait_workers(&pool, 2, &[])?);
        assert!(
            pool.shutdown(Shutdown { timeout: Some(WAIT), ..Shutdown::default() }),
            "workers still alive"
        );
        let s = pool.stats();
        assert_eq!(s.restarts, 5, "{s:?}");
    }
    drop(sub);
    let zombies = our_zombies();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    for p in &seen {
        assert!(is_gone(*p), "worker {p} still exists after shutdown");
    }
    drop(r);
    let after = open_fds();
    assert_eq!(after.len(), fds.len(), "fds before: {fds:#?}\nafter: {after:#?}");
    Ok(())
}

/// One round of chaos: `n` tasks on a pool of `size` while `kills` workers are SIGKILLed at
/// random moments (after every n / (kills + 1) completions).
fn chaos_round(n: u64, kills: usize, size: usize, retry: bool, sub: &Subscription) -> TestResult {
    let policy = if retry { quick_retries(3) } else { RetryPolicy::never() };
    let pool = TestPool::new(builder(size).retry(policy).crash_loop(
        1_000_000,
        Duration::from_secs(1),
        Duration::from_millis(1),
        Duration::from_millis(1),
    ));
    let (tx, done) = crossbeam_channel::unbounded::<()>();
    let hs: Vec<Handle<u64>> = (0..n)
        .map(|i| {
            let h = pool.submit_task(chaos_job::call(i, 200 + (i % 7) * 150));
            let tx = tx.clone();
            h.on_done(move |_| {
                let _ = tx.send(());
            });
            h
        })
        .collect();
    drop(tx);
    let every = (n as usize / (kills + 1)).max(1);
    let mut killed: Vec<u32> = Vec::new();
    for count in 1..=n as usize {
        done.recv_timeout(WAIT)
            .map_err(|_| format!("chaos: {} of {n} tasks resolved, then none for {WAIT:?}", count - 1))?;
        if killed.len() < kills && count % every == 0 {
            let pids: Vec<u32> = pool.pids().into_iter().filter(|p| !killed.contains(p)).collect();
            if !pids.is_empty() {
                let victim = pids[fastrand::usize(..pids.len())];
                if kill(pid_of(victim), Signal::SIGKILL).is_ok() {
                    killed.push(victim);
                }
            }
        }
    }
    let ids: HashSet<TaskId> = hs.iter().map(Handle::id).collect();
    let mut lost: HashSet<TaskId> = HashSet::new();
    let mut retried: HashSet<TaskId> = HashSet::new();
    for ev in sub.try_iter().filter(|ev| ids.contains(&ev.task)) {
        match ev.kind {
            EventKind::WorkerLost { reason } => {
                assert_eq!(reason, "killed by SIGKILL", "task {}", ev.task);
                lost.insert(ev.task);
            }
            EventKind::Retried { .. } => {
                retried.insert(ev.task);
            }
            _ => {}
        }
    }
    let (mut oks, mut errs, mut saved) = (0u64, 0u64, 0u64);
    for (i, h) in hs.into_iter().enumerate() {
        assert!(h.is_done(), "task {i} not done");
        let id = h.id();
        match h.join() {
            Ok(v) => {
                assert_eq!(v, i as u64 * 3 + 1, "task {i}: wrong value");
                if lost.contains(&id) {
                    assert!(
                        retry && retried.contains(&id),
                        "task {i} lost its worker, yet has a value without a retry"
                    );
                    saved += 1;
                }
                oks += 1;
            }
            Err(e) => {
                assert!(e.is_worker_lost(), "task {i}: {e:?}");
                assert_eq!(e.exit_reason().and_then(|r| r.signal_name()), Some("SIGKILL"), "task {i}: {e}");
                assert!(lost.contains(&id), "task {i}: WorkerLost without its event");
                errs += 1;
            }
        }
    }
    assert!(
        lost.len() <= killed.len(),
        "{} tasks lost their worker, but only {} were killed",
        lost.len(),
        killed.len()
    );
    if retry {
        assert_eq!(saved + errs, lost.len() as u64);
    } else {
        assert_eq!(errs, lost.len() as u64);
        assert!(errs >= 1, "{} workers killed while busy, no task reported WorkerLost", killed.len());
    }
    let live = wait_workers(&pool, size, &killed)?;
    for p in &live {
        assert_eq!(proc_stat(*p).map(|s| s.1), Some(our_pid()), "worker {p} is not alive and ours");
    }
    assert_eq!(pool.stats().processes.len(), size, "{:?}", pool.stats());
    let s = settled(&pool)?;
    assert_eq!((s.submitted, s.completed, s.failed, s.cancelled), (n, oks, errs, 0), "{s:?}");
    assert_eq!(s.restarts, killed.len() as u64, "one replacement per kill: {s:?}");
    if retry {
        assert!(s.retried >= saved, "{s:?}");
    }
    for p in killed.iter().chain(&live) {
        assert!(is_gone(*p), "worker {p} still exists after shutdown");
    }
    eprintln!(
        "chaos (retry: {retry}): {n} tasks, {} kills, {} lost their worker, {errs} WorkerLost, {saved} saved by a retry",
        killed.len(),
        lost.len()
    );
    Ok(())
}

fn chaos_sigkill_workers_at_random() -> TestResult {
    let n: u64 = std::env::var(CHAOS_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(300).max(10);
    let kills = (n as usize / 100).clamp(3, 500);
    warm_up()?;
    let fds = open_fds();
    let t = Instant::now();
    let sub = events::subscribe();
    chaos_round(n, kills, 3, false, &sub)?;
    chaos_round(n, kills, 3, true, &sub)?;
    drop(sub);
    let zombies = our_zombies();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    let after = open_fds();
    assert_eq!(after.len(), fds.len(), "fds before: {fds:#?}\nafter: {after:#?}");
    eprintln!("chaos: 2 rounds of {n} tasks in {:?}", t.elapsed());
    Ok(())
}
