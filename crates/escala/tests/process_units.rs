//! Integration tests for process units: registered tasks in re-executed children, command
//! units, the child-side protocol, PDEATHSIG, reaping, and the exit policy.
//!
//! Everything here uses real child processes and real signals. The binary doubles as
//! - a re-executed child (handled by `escala::init()` first thing in `main`), and
//! - a "scenario" program: with `ESCALA_TEST_SCENARIO=<name>` set, `main` runs that scenario
//!   (after `init()`) and returns, so the exit policy of a real `main` can be observed from
//!   the outside by the test that started it.
//!
//! Synchronisation is by events (socket connections, FIFO reads, stdout lines, handles,
//! process exit); the only polling is for the death of a process this thread cannot wait
//! for, bounded to a few seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use escala::{ErrorKind, ExitGuard, ExitReason, Handle, Task};
use libtest_mimic::{Arguments, Failed, Trial};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Failed>;

/// Selects a scenario: `main` runs it instead of the test harness.
const SCENARIO_ENV: &str = "ESCALA_TEST_SCENARIO";
/// A socket path a scenario's child connects to (owned by the test).
const SOCK_ENV: &str = "ESCALA_TEST_SOCK";
/// The marker escala's re-executed children read.
const CHILD_ENV: &str = "ESCALA_CHILD";

/// How long any single wait in a test may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);
/// How long a scenario subprocess may run before it is killed and the test fails.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(8);

static SUBREAPER: AtomicBool = AtomicBool::new(false);

// ---------------------------------------------------------------------------------------
// Registered tasks (run in re-executed children)
// ---------------------------------------------------------------------------------------

#[escala::task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[escala::task]
fn whoami() -> u32 {
    std::process::id()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    label: String,
}

#[escala::task]
fn describe(p: Point, times: u8) -> Vec<String> {
    (0..times).map(|i| format!("{}#{i}@{}", p.label, p.x)).collect()
}

#[escala::task]
fn boom(msg: String) -> u8 {
    panic!("{} @{}", msg, line!())
}

#[escala::task]
fn abort_with_stderr(lines: Vec<String>) {
    for l in lines {
        eprintln!("{l}");
    }
    std::process::abort()
}

#[escala::task]
fn sigkill_self() {
    let _ = nix::sys::signal::raise(Signal::SIGKILL);
    unreachable!("SIGKILL cannot be survived")
}

#[escala::task]
fn exit_with(code: i32) {
    std::process::exit(code)
}

#[escala::task]
fn refuse(reason: String) -> Result<u32, String> {
    Err(reason)
}

#[escala::task]
fn bytes_of(n: usize) -> Vec<u8> {
    vec![7; n]
}

#[escala::task]
fn len_of(s: String) -> usize {
    s.len()
}

#[escala::task]
fn fail_with_len(n: usize) -> Result<(), String> {
    Err("e".repeat(n))
}

/// Connects to `sock`, sends its pid, and blocks until killed. With `ignore_term`, SIGTERM
/// is blocked first (the child is single-threaded, so it stays pending forever).
#[escala::task]
fn report_and_block(sock: String, ignore_term: bool) {
    if ignore_term {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.thread_block().expect("block SIGTERM");
    }
    let mut s = UnixStream::connect(&sock).expect("connect to the test's socket");
    writeln!(s, "{}", std::process::id()).expect("send pid");
    block_forever()
}

/// Connects to `sock`, sends its pid, waits for the other side to hang up, then prints.
#[escala::task]
fn wait_for_hangup(sock: String) -> String {
    let mut s = UnixStream::connect(&sock).expect("connect to the test's socket");
    writeln!(s, "{}", std::process::id()).expect("send pid");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    println!("child-done");
    "ok".into()
}

#[escala::task]
fn print_lines(out: String, err: String) {
    println!("{out}");
    print!("{out}-unterminated");
    eprintln!("{err}");
}

#[escala::task]
fn print_pid_and_block() {
    println!("grandchild-pid {}", std::process::id());
    block_forever()
}

fn block_forever() -> ! {
    loop {
        std::thread::park();
    }
}

// ---------------------------------------------------------------------------------------
// main: child / scenario / harness
// ---------------------------------------------------------------------------------------

fn main() {
    let exit = escala::init();
    if let Ok(name) = std::env::var(SCENARIO_ENV) {
        // The guard (if the scenario gives it back) drops when `main` returns, as in a real
        // program.
        let _exit = scenario_main(&name, exit);
        return;
    }
    // Orphaned grandchildren (scenario tests) are re-parented to this process, so a test
    // can wait for their death as an event instead of polling.
    SUBREAPER.store(nix::sys::prctl::set_child_subreaper(true).is_ok(), Ordering::Relaxed);
    let args = Arguments::from_args();
    let conclusion = libtest_mimic::run(&args, trials());
    if conclusion.has_failed() {
        // A failed test may have left a unit running; do not let the exit policy hang the
        // run. Children die with this process (PDEATHSIG).
        std::mem::forget(exit);
    } else {
        drop(exit);
    }
    conclusion.exit();
}

fn trials() -> Vec<Trial> {
    macro_rules! trials {
        ($($f:ident),* $(,)?) => { vec![$(Trial::test(stringify!($f), $f)),*] };
    }
    trials![
        // registered tasks in child processes
        process_runs_in_another_pid_and_is_reaped,
        process_passes_serde_args_and_result,
        process_many_children_at_once,
        process_panic_is_panicked_with_message_and_location,
        process_abort_is_worker_lost_sigabrt,
        process_raise_sigkill_is_worker_lost,
        process_exit_3_is_worker_lost_code_3,
        process_err_is_failed,
        process_result_at_limit_is_ok_and_over_limit_is_codec,
        process_args_over_limit_is_codec_without_a_child,
        process_args_at_limit_are_accepted,
        process_error_text_over_limit_does_not_hang,
        process_killed_from_outside_is_worker_lost_sigkill,
        process_cancel_stops_the_child,
        process_cancel_escalates_to_sigkill,
        process_stderr_tail_of_aborting_child,
        process_output_is_inherited,
        process_dies_with_its_parent,
        // the child side of the protocol, driven by hand
        child_runs_a_hand_written_request,
        child_refuses_a_build_mismatch,
        child_refuses_an_unknown_task,
        child_reports_an_undecodable_request,
        child_reports_undecodable_arguments,
        child_reports_a_bad_frame,
        child_refuses_an_oversized_request_frame,
        child_exits_when_the_parent_hangs_up,
        child_with_malformed_marker_exits_2,
        child_with_unknown_marker_version_exits_2,
        child_with_stdin_not_a_socket_exits_2,
        child_of_another_parent_runs_nothing,
        // command units
        command_exit_0_is_ok,
        command_exit_3_is_exited_3,
        command_killed_by_signal_is_worker_lost,
        command_missing_program_is_spawn_error,
        command_cancel_kills_it,
        command_cancel_escalates_to_sigkill,
        command_dies_with_its_parent,
        // exit policy
        exit_joins_non_daemon_thread,
        exit_stops_cooperative_daemon_thread,
        exit_abandons_stubborn_daemon_thread,
        exit_stops_daemon_process_and_command,
        exit_kills_daemon_process_ignoring_term,
        exit_uses_the_units_stop_grace,
        exit_joins_non_daemon_process_and_command,
        exit_guard_shutdown_reports_units,
    ]
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

/// True when `pid` has been reaped (no process, not even a zombie, answers to it).
fn is_gone(pid: u32) -> bool {
    kill(pid_of(pid), None) == Err(Errno::ESRCH)
}

/// True when `pid` is not a child of ours waiting to be reaped (no zombie left behind).
fn not_our_zombie(pid: u32) -> bool {
    waitpid(pid_of(pid), Some(WaitPidFlag::WNOHANG)) == Err(Errno::ECHILD)
}

/// Waits (bounded) until `pid` is gone. Polling is the only way to observe the death of a
/// process reaped by someone else; it is kept short and bounded.
fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if is_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    is_gone(pid)
}

/// Waits (bounded) until the main thread of process `pid` is sleeping (state `S`), for the
/// one moment no event announces: a scenario blocked inside `ExitGuard::shutdown`.
fn wait_main_thread_sleeping(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat"));
        match stat {
            Ok(s) if s.rsplit(") ").next().is_some_and(|r| r.starts_with('S')) => return true,
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return false,
        }
    }
    false
}

/// Kills `pid` (cleanup after a failed expectation), ignoring a process already gone.
/// A pidfd for the parent of `pid`, read from `/proc/<pid>/stat` while `pid` is alive.
fn parent_pidfd(pid: u32) -> Result<OwnedFd, Failed> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ppid: i32 = stat
        .rsplit(") ")
        .next()
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no parent pid in /proc/{pid}/stat: {stat}"))?;
    let ppid = rustix::process::Pid::from_raw(ppid).ok_or("parent pid 0")?;
    Ok(rustix::process::pidfd_open(ppid, rustix::process::PidfdFlags::empty())?)
}

/// Waits (bounded) until the process behind `pidfd` has exited: true if it did.
fn wait_pidfd(pidfd: &OwnedFd, within: Duration) -> Result<bool, Failed> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec::try_from(within)?;
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) => return Ok(n == 1),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("poll(pidfd): {e}").into()),
        }
    }
}

fn force_kill(pid: u32) {
    let _ = kill(pid_of(pid), Signal::SIGKILL);
}

fn join_bounded<T>(h: Handle<T>, what: &str) -> Result<escala::Outcome<T>, Failed> {
    join_within(h, what, WAIT)
}

fn join_within<T>(h: Handle<T>, what: &str, within: Duration) -> Result<escala::Outcome<T>, Failed> {
    Ok(join_pid(h, what, within)?.0)
}

/// Joins (bounded) and also returns the child's pid, read once the handle resolved (it is
/// set by a watcher thread, so right after `spawn` it may still be `None`).
fn join_pid<T>(
    h: Handle<T>,
    what: &str,
    within: Duration,
) -> Result<(escala::Outcome<T>, Option<u32>), Failed> {
    let done = h.wait_timeout(within);
    let pid = h.pid();
    if !done {
        h.cancel();
        if let Some(p) = pid {
            force_kill(p);
        }
        return Err(format!("{what}: the handle did not resolve within {within:?} (pid {pid:?})").into());
    }
    Ok((h.join(), pid))
}

/// Asserts that the child that ran a resolved process unit was reaped.
fn assert_reaped(pid: Option<u32>, what: &str) {
    let pid = pid.unwrap_or_else(|| panic!("{what}: a process unit that ran has no pid"));
    assert!(not_our_zombie(pid), "{what}: child {pid} was not reaped by the time join returned");
    assert!(is_gone(pid), "{what}: child {pid} still exists after join");
}

fn expect_err<T: std::fmt::Debug>(out: escala::Outcome<T>, what: &str) -> escala::TaskError {
    match out {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e,
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique temporary path, removed on drop.
struct TmpPath(PathBuf);

impl TmpPath {
    fn new(tag: &str) -> TmpPath {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TmpPath(std::env::temp_dir().join(format!("escala-pu-{}-{n}-{tag}", our_pid())))
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn string(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TmpPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A Unix socket a child connects to, to say "I am running, this is my pid".
struct Rendezvous {
    path: TmpPath,
    listener: UnixListener,
}

impl Rendezvous {
    fn new() -> std::io::Result<Rendezvous> {
        let path = TmpPath::new("sock");
        let listener = UnixListener::bind(path.path())?;
        Ok(Rendezvous { path, listener })
    }

    fn path(&self) -> String {
        self.path.string()
    }

    /// Waits (bounded) for one connection and the pid line it sends.
    fn accept(&self, within: Duration) -> Result<(UnixStream, u32), Failed> {
        let l = self.listener.try_clone()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(l.accept());
        });
        let (mut conn, _) = match rx.recv_timeout(within) {
            Ok(r) => r?,
            Err(_) => {
                // Release the accepting thread.
                let _ = UnixStream::connect(self.path.path());
                return Err(format!("no child connected within {within:?}").into());
            }
        };
        conn.set_read_timeout(Some(within))?;
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

/// A named pipe a shell command writes one line to.
struct Fifo {
    path: TmpPath,
}

impl Fifo {
    fn new() -> Result<Fifo, Failed> {
        use nix::sys::stat::Mode;
        let path = TmpPath::new("fifo");
        nix::unistd::mkfifo(path.path(), Mode::S_IRUSR | Mode::S_IWUSR)?;
        Ok(Fifo { path })
    }

    fn path(&self) -> String {
        self.path.string()
    }

    /// Waits (bounded) for a writer and returns what it wrote, trimmed.
    fn read(&self, within: Duration) -> Result<String, Failed> {
        let p = self.path.path().to_path_buf();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let r = std::fs::read_to_string(&p);
            let _ = tx.send(r);
        });
        match rx.recv_timeout(within) {
            Ok(r) => Ok(r?.trim().to_string()),
            Err(_) => {
                // Release the reading thread.
                let _ = std::fs::OpenOptions::new().write(true).open(self.path.path());
                Err(format!("nothing was written to the FIFO within {within:?}").into())
            }
        }
    }
}

/// Waits (bounded) for the exit of a child of this process (possibly an adopted orphan).
fn wait_child_exit(pid: u32, within: Duration) -> Result<Option<WaitStatus>, Failed> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(waitpid(pid_of(pid), None));
    });
    match rx.recv_timeout(within) {
        Ok(Ok(st)) => Ok(Some(st)),
        Ok(Err(Errno::ECHILD)) => Ok(None), // not ours to wait for
        Ok(Err(e)) => Err(format!("waitpid({pid}): {e}").into()),
        Err(_) => {
            force_kill(pid);
            let _ = rx.recv_timeout(WAIT);
            Err(format!("process {pid} was still alive {within:?} after its parent died").into())
        }
    }
}

// ---- scenario subprocesses -------------------------------------------------------------

struct Scenario {
    name: String,
    pid: u32,
    started: Instant,
    deadline: Instant,
    stdin: Option<std::process::ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Receiver<String>,
    status: Receiver<ExitStatus>,
    exited: Option<ExitStatus>,
}

struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
    elapsed: Duration,
}

impl Finished {
    fn position(&self, line: &str) -> Option<usize> {
        self.stdout.iter().position(|l| l == line)
    }
}

fn start_scenario(name: &str, envs: &[(&str, String)]) -> Result<Scenario, Failed> {
    start_scenario_within(name, envs, SCENARIO_DEADLINE)
}

fn start_scenario_within(
    name: &str,
    envs: &[(&str, String)],
    deadline: Duration,
) -> Result<Scenario, Failed> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.env(SCENARIO_ENV, name)
        .env_remove(CHILD_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let stdin = child.stdin.take();
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
    let started = Instant::now();
    Ok(Scenario {
        name: name.to_string(),
        pid,
        started,
        deadline: started + deadline,
        stdin,
        lines,
        seen: Vec::new(),
        stderr: erx,
        status,
        exited: None,
    })
}

impl Scenario {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Reads stdout until a line starting with `prefix`; returns that line.
    fn wait_line(&mut self, prefix: &str) -> Result<String, Failed> {
        loop {
            match self.lines.recv_timeout(self.left()) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return Ok(l);
                    }
                }
                Err(e) => {
                    let err = self.stderr_now();
                    return Err(format!(
                        "scenario {}: no stdout line starting with {prefix:?} ({e}); \
                         stdout so far: {:?}; stderr: {err}",
                        self.name, self.seen
                    )
                    .into());
                }
            }
        }
    }

    /// Reads the number after `prefix` on the next line starting with it.
    fn wait_pid(&mut self, prefix: &str) -> Result<u32, Failed> {
        let line = self.wait_line(prefix)?;
        line[prefix.len()..].trim().parse().map_err(|e| format!("bad pid line {line:?}: {e}").into())
    }

    fn close_stdin(&mut self) {
        self.stdin.take();
    }

    fn stderr_now(&self) -> String {
        self.stderr.recv_timeout(Duration::from_millis(200)).unwrap_or_else(|_| "<stderr still open>".into())
    }

    /// SIGKILLs the scenario process and reaps it.
    fn kill(&mut self) -> Result<ExitStatus, Failed> {
        force_kill(self.pid);
        let st = self
            .status
            .recv_timeout(WAIT)
            .map_err(|e| format!("scenario {} not reaped after SIGKILL: {e}", self.name))?;
        self.exited = Some(st);
        Ok(st)
    }

    /// Closes stdin and waits (bounded) for the exit, all of stdout and stderr.
    fn finish(mut self) -> Result<Finished, Failed> {
        self.close_stdin();
        let status = match self.status.recv_timeout(self.left()) {
            Ok(st) => st,
            Err(_) => {
                let _ = self.kill();
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return Err(format!(
                    "scenario {} did not exit within {:?}; stdout: {:?}; stderr: {}",
                    self.name,
                    self.deadline - self.started,
                    self.seen,
                    self.stderr_now()
                )
                .into());
            }
        };
        self.exited = Some(status);
        let elapsed = self.started.elapsed();
        loop {
            match self.lines.recv_timeout(self.left()) {
                Ok(l) => self.seen.push(l),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "scenario {}: its stdout stayed open after it exited \
                         (a descendant outlived it); stdout: {:?}",
                        self.name, self.seen
                    )
                    .into());
                }
            }
        }
        let stderr = self
            .stderr
            .recv_timeout(self.left())
            .map_err(|_| format!("scenario {}: stderr stayed open after exit", self.name))?;
        Ok(Finished { status, stdout: std::mem::take(&mut self.seen), stderr, elapsed })
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if self.exited.is_none() {
            force_kill(self.pid);
            let _ = self.status.recv_timeout(WAIT);
        }
    }
}

fn expect_success(f: &Finished, what: &str) {
    assert!(
        f.status.success(),
        "{what}: scenario exited with {:?}; stdout: {:?}; stderr: {}",
        f.status,
        f.stdout,
        f.stderr
    );
}

// ---- hand-driven children ----------------------------------------------------------------

/// Mirror of escala's request payload (process/frame.rs).
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    build: String,
    task: String,
    args: Vec<u8>,
    max_reply: u64,
}

/// Mirror of escala's reply payload (task.rs); the variant order is the wire format.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Reply {
    Ok(Vec<u8>),
    Failed(String),
    Panicked { message: String, location: Option<String> },
    Codec(String),
    Refused(String),
}

const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = b"ESCF".to_vec();
    v.extend([1, kind, 0, 0]);
    v.extend((payload.len() as u32).to_le_bytes());
    v.extend(payload);
    v
}

fn request_frame(req: &Request) -> Vec<u8> {
    frame(KIND_REQUEST, &postcard::to_stdvec(req).expect("encode request"))
}

fn marker(max: usize) -> String {
    format!("1:{}:{max}", our_pid())
}

struct ChildOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Waits (bounded) for a hand-started child and collects its output.
fn collect(child: std::process::Child) -> Result<ChildOutput, Failed> {
    let pid = child.id();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => {
            let out = out?;
            Ok(ChildOutput {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
        Err(_) => {
            force_kill(pid);
            Err(format!("hand-started child {pid} did not exit within {WAIT:?}").into())
        }
    }
}

/// Starts this binary as if it were a process unit's child, with `stdin` as its stdin.
fn start_child(marker: &str, stdin: Stdio) -> Result<std::process::Child, Failed> {
    Ok(std::process::Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, marker)
        .env_remove(SCENARIO_ENV)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// A child started by hand with our end of its request socket.
struct Crafted {
    child: std::process::Child,
    sock: UnixStream,
}

impl Crafted {
    fn start(max: usize) -> Result<Crafted, Failed> {
        let (ours, theirs) = UnixStream::pair()?;
        let child = start_child(&marker(max), Stdio::from(OwnedFd::from(theirs)))?;
        ours.set_read_timeout(Some(WAIT))?;
        Ok(Crafted { child, sock: ours })
    }

    /// Sends raw bytes, reads one reply frame, and waits for the child to exit.
    fn exchange(mut self, bytes: &[u8]) -> Result<(Reply, ChildOutput), Failed> {
        self.sock.write_all(bytes)?;
        let reply = read_reply(&mut self.sock);
        let out = collect(self.child)?;
        let reply = reply.map_err(|e| format!("{e:?}; child stderr: {}", out.stderr))?;
        Ok((reply, out))
    }
}

fn read_reply(sock: &mut UnixStream) -> Result<Reply, Failed> {
    let mut header = [0u8; 12];
    sock.read_exact(&mut header).map_err(|e| format!("no reply header from the child: {e}"))?;
    assert_eq!(&header[..4], b"ESCF", "reply magic");
    assert_eq!(header[4], 1, "reply protocol version");
    assert_eq!(header[5], KIND_REPLY, "reply frame kind");
    let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let mut payload = vec![0u8; len];
    sock.read_exact(&mut payload)?;
    Ok(postcard::from_bytes(&payload).map_err(|e| format!("undecodable reply: {e}"))?)
}

/// This binary's build id, as a child reports it when refusing a foreign build.
fn build_id() -> Result<String, Failed> {
    static ID: Mutex<Option<String>> = Mutex::new(None);
    if let Some(id) = ID.lock().unwrap().clone() {
        return Ok(id);
    }
    let (reply, _) = Crafted::start(1 << 20)?.exchange(&request_frame(&Request {
        build: "not-this-build".into(),
        task: <add as Task>::NAME.into(),
        args: postcard::to_stdvec(&(1i64, 2i64))?,
        max_reply: 1 << 20,
    }))?;
    let Reply::Refused(msg) = reply else {
        return Err(format!("expected a refusal, got {reply:?}").into());
    };
    let id = msg
        .split("this child is build `")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .ok_or_else(|| format!("no build id in {msg:?}"))?
        .to_string();
    *ID.lock().unwrap() = Some(id.clone());
    Ok(id)
}

// ---------------------------------------------------------------------------------------
// Scenarios (run in a subprocess; `main` returns after them)
// ---------------------------------------------------------------------------------------

fn scenario_main(name: &str, exit: ExitGuard) -> Option<ExitGuard> {
    use escala::process::{Builder, Command};
    match name {
        "print" => {
            let h = escala::process::spawn(print_lines::call(
                "from-child-stdout".into(),
                "from-child-stderr".into(),
            ));
            h.join().expect("print_lines");
            println!();
            println!("joined");
            Some(exit)
        }
        "orphan-process" => {
            let h = escala::process::spawn(print_pid_and_block::call());
            let _ = h.join(); // the test kills this process meanwhile
            Some(exit)
        }
        "orphan-command" => {
            let h = Command::new("sh").args(["-c", "echo grandchild-pid $$; exec sleep 5"]).spawn();
            let _ = h.join();
            Some(exit)
        }
        "thread-joined" => {
            let _detached = escala::thread::spawn("late", || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                println!("done");
            });
            println!("main-returned");
            Some(exit)
        }
        "daemon-thread-stops" => {
            let (tx, rx) = std::sync::mpsc::channel();
            let _detached = escala::thread::spawn_daemon("cooperative", move || {
                let me = escala::current();
                tx.send(()).unwrap();
                // A token can only be checked, not waited on.
                while !me.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                println!("stopped");
            });
            rx.recv().unwrap();
            println!("main-returned");
            Some(exit)
        }
        "daemon-thread-abandoned" => {
            let (tx, rx) = std::sync::mpsc::channel();
            let _detached = escala::thread::spawn_daemon("stubborn", move || -> u8 {
                tx.send(()).unwrap();
                block_forever()
            });
            rx.recv().unwrap();
            println!("main-returned");
            Some(exit.daemon_grace(Duration::from_millis(100)))
        }
        "daemon-processes-stopped" => {
            let r = Rendezvous::new().unwrap();
            let _detached =
                Builder::new().name("p-daemon").daemon(true).spawn(report_and_block::call(r.path(), false));
            let (_conn, pid) = r.accept(WAIT).unwrap();
            println!("process-pid {pid}");
            let fifo = Fifo::new().unwrap();
            let _detached = Command::new("sh")
                .args(["-c", "echo $$ > \"$0\"; exec sleep 30", &fifo.path()])
                .name("c-daemon")
                .daemon(true)
                .spawn();
            println!("command-pid {}", fifo.read(WAIT).unwrap());
            println!("main-returned");
            Some(exit)
        }
        "daemon-process-killed" => {
            let r = Rendezvous::new().unwrap();
            let _detached =
                Builder::new().name("p-stubborn").daemon(true).spawn(report_and_block::call(r.path(), true));
            let (_conn, pid) = r.accept(WAIT).unwrap();
            println!("process-pid {pid}");
            println!("main-returned");
            Some(exit.daemon_grace(Duration::from_millis(200)))
        }
        "daemon-process-unit-grace" => {
            let r = Rendezvous::new().unwrap();
            let _detached = Builder::new()
                .name("p-stubborn")
                .daemon(true)
                .stop_grace(Duration::from_millis(100))
                .spawn(report_and_block::call(r.path(), true));
            let (_conn, pid) = r.accept(WAIT).unwrap();
            println!("process-pid {pid}");
            println!("main-returned");
            Some(exit.daemon_grace(Duration::from_secs(60)))
        }
        "process-joined" => {
            let sock = std::env::var(SOCK_ENV).expect("socket path");
            let _detached = Builder::new().name("p-join").spawn(wait_for_hangup::call(sock));
            let _detached =
                Command::new("sh").args(["-c", "read line; echo cmd-done"]).name("c-join").spawn();
            println!("main-returned");
            Some(exit)
        }
        "shutdown-report" => {
            let finished = escala::thread::spawn("t-finished", || 1);
            finished.join().unwrap();
            let _detached = escala::thread::spawn("t-join", || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            });
            let (tx, rx) = std::sync::mpsc::channel();
            let tx2 = tx.clone();
            let _detached = escala::thread::spawn_daemon("d-coop", move || {
                let me = escala::current();
                tx.send(()).unwrap();
                while !me.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            let _detached = escala::thread::spawn_daemon("d-stubborn", move || -> u8 {
                tx2.send(()).unwrap();
                block_forever()
            });
            rx.recv().unwrap();
            rx.recv().unwrap();
            let r1 = Rendezvous::new().unwrap();
            let _detached =
                Builder::new().name("p-daemon").daemon(true).spawn(report_and_block::call(r1.path(), false));
            let _c1 = r1.accept(WAIT).unwrap();
            let r2 = Rendezvous::new().unwrap();
            let _detached =
                Builder::new().name("p-stubborn").daemon(true).spawn(report_and_block::call(r2.path(), true));
            let _c2 = r2.accept(WAIT).unwrap();
            println!("shutting-down");
            let report = exit.daemon_grace(Duration::from_millis(300)).shutdown();
            for (k, v) in [
                ("joined", &report.joined),
                ("stopped", &report.stopped),
                ("killed", &report.killed),
                ("abandoned", &report.abandoned),
            ] {
                for unit in v {
                    println!("{k}: {unit}");
                }
            }
            println!("report-done");
            None
        }
        other => panic!("unknown scenario {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Tests: registered tasks in child processes
// ---------------------------------------------------------------------------------------

fn process_runs_in_another_pid_and_is_reaped() -> TestResult {
    let h = escala::process::spawn(whoami::call());
    assert_eq!(h.kind(), escala::UnitKind::Process);
    assert_eq!(h.name(), <whoami as Task>::NAME);
    assert_eq!(h.name(), "process_units::whoami");
    let (out, pid) = join_pid(h, "whoami", WAIT)?;
    let child_pid = out.map_err(|e| format!("whoami failed: {e}"))?;
    assert_ne!(child_pid, our_pid(), "the task ran in the parent");
    assert_eq!(pid, Some(child_pid), "handle.pid() is the pid the task saw");
    assert_reaped(pid, "whoami");
    Ok(())
}

fn process_passes_serde_args_and_result() -> TestResult {
    let h = escala::process::Builder::new()
        .name("describer")
        .spawn(describe::call(Point { x: -4, label: "ñandú".into() }, 3));
    assert_eq!(h.name(), "describer");
    let out = join_bounded(h, "describe")?;
    assert_eq!(out.map_err(|e| e.to_string())?, vec!["ñandú#0@-4", "ñandú#1@-4", "ñandú#2@-4"]);
    Ok(())
}

fn process_many_children_at_once() -> TestResult {
    let handles: Vec<_> = (0..6i64).map(|i| escala::process::spawn(add::call(i, 100))).collect();
    let mut got = Vec::new();
    for h in handles {
        let (out, pid) = join_pid(h, "add", WAIT)?;
        got.push(out.map_err(|e| e.to_string())?);
        assert_reaped(pid, "add");
    }
    assert_eq!(got, vec![100, 101, 102, 103, 104, 105]);
    Ok(())
}

fn process_panic_is_panicked_with_message_and_location() -> TestResult {
    let h = escala::process::spawn(boom::call("kaboom".into()));
    let (out, pid) = join_pid(h, "boom", WAIT)?;
    let err = expect_err(out, "boom");
    let ErrorKind::Panicked { message, location } = err.kind() else {
        panic!("expected Panicked (the child catches the panic), got {err:?}");
    };
    let (text, line) = message.rsplit_once(" @").expect("message has the line");
    assert_eq!(text, "kaboom");
    let location = location.as_deref().expect("a panic location");
    assert!(
        location.starts_with(&format!("{}:{line}:", file!())),
        "location {location:?} is not {}:{line}:<col>",
        file!()
    );
    assert_eq!(err.name(), "process_units::boom");
    assert!(err.to_string().contains("process_units::boom"), "{err}");
    assert!(err.to_string().contains("kaboom"), "{err}");
    assert_reaped(pid, "process unit");
    Ok(())
}

fn process_abort_is_worker_lost_sigabrt() -> TestResult {
    let h = escala::process::spawn(abort_with_stderr::call(vec![]));
    let (out, pid) = join_pid(h, "abort", WAIT)?;
    assert_reaped(pid, "abort");
    let err = expect_err(out, "abort");
    assert!(err.is_worker_lost(), "{err:?}");
    assert_eq!(err.exit_reason(), Some(ExitReason::Signal(Signal::SIGABRT)), "{err}");
    assert_eq!(err.exit_reason().unwrap().signal_name(), Some("SIGABRT"));
    assert!(err.to_string().contains("SIGABRT"), "{err}");
    Ok(())
}

fn process_raise_sigkill_is_worker_lost() -> TestResult {
    let h = escala::process::spawn(sigkill_self::call());
    let (out, pid) = join_pid(h, "sigkill_self", WAIT)?;
    assert_reaped(pid, "sigkill_self");
    let err = expect_err(out, "sigkill_self");
    assert!(err.is_worker_lost(), "{err:?}");
    assert_eq!(err.exit_reason().and_then(|r| r.signal_name()), Some("SIGKILL"));
    assert!(err.to_string().contains("killed by SIGKILL"), "{err}");
    Ok(())
}

fn process_exit_3_is_worker_lost_code_3() -> TestResult {
    let h = escala::process::spawn(exit_with::call(3));
    let (out, pid) = join_pid(h, "exit_with", WAIT)?;
    let err = expect_err(out, "exit_with");
    assert!(matches!(err.kind(), ErrorKind::WorkerLost { reason: ExitReason::Code(3), .. }), "{err:?}");
    assert!(err.to_string().contains("exited with code 3"), "{err}");
    assert_reaped(pid, "process unit");
    Ok(())
}

fn process_err_is_failed() -> TestResult {
    let h = escala::process::spawn(refuse::call("not today".into()));
    let err = expect_err(join_bounded(h, "refuse")?, "refuse");
    assert_eq!(err.kind(), &ErrorKind::Failed("not today".into()));
    assert!(err.is_failed());
    Ok(())
}

fn process_result_at_limit_is_ok_and_over_limit_is_codec() -> TestResult {
    assert_eq!(postcard::to_stdvec(&vec![7u8; 998])?.len(), 1000);
    let ok = escala::process::Builder::new().max_frame(1000).spawn(bytes_of::call(998));
    let v = join_bounded(ok, "bytes_of(998)")?.map_err(|e| e.to_string())?;
    assert_eq!(v.len(), 998);

    let over = escala::process::Builder::new().max_frame(1000).spawn(bytes_of::call(999));
    let err = expect_err(join_bounded(over, "bytes_of(999)")?, "bytes_of(999)");
    assert!(err.is_codec(), "{err:?}");
    assert!(err.to_string().contains("over the limit"), "{err}");
    Ok(())
}

fn process_args_over_limit_is_codec_without_a_child() -> TestResult {
    let h = escala::process::Builder::new().max_frame(100).spawn(len_of::call("x".repeat(10_000)));
    let err = expect_err(join_bounded(h, "len_of")?, "len_of");
    assert!(err.is_codec(), "{err:?}");
    assert!(err.to_string().contains("over the limit of 100 bytes"), "{err}");
    Ok(())
}

/// The cap is on "the encoded arguments" (Builder::max_frame); arguments exactly at the cap
/// must run.
fn process_args_at_limit_are_accepted() -> TestResult {
    let arg = "a".repeat(998);
    assert_eq!(postcard::to_stdvec(&arg)?.len(), 1000);
    let h = escala::process::Builder::new().max_frame(1000).spawn(len_of::call(arg));
    let out = join_bounded(h, "len_of(998)")?;
    assert_eq!(out.map_err(|e| format!("arguments of 1000 bytes with max_frame(1000): {e}"))?, 998);
    Ok(())
}

/// A task whose own error text is over the frame cap must resolve (codec error), not hang.
fn process_error_text_over_limit_does_not_hang() -> TestResult {
    let h = escala::process::Builder::new().max_frame(1000).spawn(fail_with_len::call(4 << 20));
    let (out, pid) = join_pid(h, "fail_with_len", Duration::from_secs(3))?;
    let err = expect_err(out, "fail_with_len");
    assert!(err.is_codec(), "{err:?}");
    assert_reaped(pid, "process unit");
    Ok(())
}

fn process_killed_from_outside_is_worker_lost_sigkill() -> TestResult {
    let r = Rendezvous::new()?;
    let h = escala::process::spawn(report_and_block::call(r.path(), false));
    let (_conn, pid) = r.accept(WAIT)?;
    assert_eq!(h.pid(), Some(pid), "handle.pid() is the child's own pid");
    assert_ne!(pid, our_pid());
    kill(pid_of(pid), Signal::SIGKILL)?;
    let err = expect_err(join_bounded(h, "report_and_block")?, "killed child");
    assert!(err.is_worker_lost(), "{err:?}");
    assert_eq!(err.exit_reason().and_then(|r| r.signal_name()), Some("SIGKILL"));
    assert!(not_our_zombie(pid), "killed child {pid} left as a zombie");
    Ok(())
}

fn process_cancel_stops_the_child() -> TestResult {
    let r = Rendezvous::new()?;
    let h = escala::process::spawn(report_and_block::call(r.path(), false));
    let (_conn, pid) = r.accept(WAIT)?;
    assert!(!h.is_done());
    assert!(h.cancel(), "cancel of a running child must win");
    assert!(!h.cancel(), "a second cancel must not");
    let err = expect_err(join_bounded(h, "cancelled")?, "cancelled");
    assert!(err.is_cancelled(), "{err:?}");
    let gone = wait_gone(pid, Duration::from_secs(3));
    if !gone {
        force_kill(pid);
    }
    assert!(gone, "cancelled child {pid} still exists (or was not reaped)");
    Ok(())
}

fn process_cancel_escalates_to_sigkill() -> TestResult {
    let r = Rendezvous::new()?;
    let h = escala::process::Builder::new()
        .stop_grace(Duration::from_millis(100))
        .spawn(report_and_block::call(r.path(), true));
    let (_conn, pid) = r.accept(WAIT)?;
    assert!(h.cancel());
    assert!(expect_err(join_bounded(h, "cancelled")?, "cancelled").is_cancelled());
    let gone = wait_gone(pid, Duration::from_secs(3));
    if !gone {
        force_kill(pid);
    }
    assert!(gone, "child {pid} ignoring SIGTERM survived cancel (no SIGKILL after grace)");
    Ok(())
}

fn process_stderr_tail_of_aborting_child() -> TestResult {
    let lines: Vec<String> = (1..=5).map(|i| format!("tail-line-{i}")).collect();
    let h = escala::process::Builder::new().stderr_tail(3).spawn(abort_with_stderr::call(lines));
    let err = expect_err(join_bounded(h, "abort")?, "abort");
    let ErrorKind::WorkerLost { reason, stderr } = err.kind() else {
        panic!("expected WorkerLost, got {err:?}");
    };
    assert_eq!(*reason, ExitReason::Signal(Signal::SIGABRT));
    assert_eq!(stderr, &["tail-line-3", "tail-line-4", "tail-line-5"]);
    assert!(err.to_string().contains("tail-line-3 | tail-line-4 | tail-line-5"), "{err}");
    Ok(())
}

fn process_output_is_inherited() -> TestResult {
    let f = start_scenario("print", &[])?.finish()?;
    expect_success(&f, "print");
    assert_eq!(
        f.stdout,
        vec!["from-child-stdout", "from-child-stdout-unterminated", "joined"],
        "the child's stdout (flushed before it replied) comes before the parent's line"
    );
    assert!(f.stderr.contains("from-child-stderr"), "stderr: {}", f.stderr);
    Ok(())
}

fn process_dies_with_its_parent() -> TestResult {
    orphan_test("orphan-process")
}

/// Starts a scenario whose child prints its pid and blocks, SIGKILLs the scenario, and
/// expects the child to die with it.
fn orphan_test(scenario: &str) -> TestResult {
    let mut sc = start_scenario(scenario, &[])?;
    let pid = sc.wait_pid("grandchild-pid ")?;
    assert_ne!(pid, sc.pid);
    // The child's parent is the scenario or its fork server. Children are re-parented (and
    // sent their PDEATHSIG) before a dying parent's pidfd turns readable, so once it has,
    // the orphan is ours to wait for.
    let parent = parent_pidfd(pid)?;
    sc.kill()?;
    if !wait_pidfd(&parent, Duration::from_secs(3))? {
        return Err(format!("the parent of {pid} outlived the scenario").into());
    }
    if SUBREAPER.load(Ordering::Relaxed) {
        // The orphan was re-parented to us: its death is an event we can wait for.
        match wait_child_exit(pid, Duration::from_secs(3))? {
            Some(WaitStatus::Signaled(_, sig, _)) => {
                assert_eq!(sig, Signal::SIGKILL, "the death signal is SIGKILL")
            }
            Some(other) => panic!("orphan {pid} ended with {other:?}"),
            None => assert!(is_gone(pid), "orphan {pid} is neither ours nor gone"),
        }
    } else {
        let dead = wait_gone(pid, Duration::from_secs(3)) || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'))
        };
        if !dead {
            force_kill(pid);
        }
        assert!(dead, "process {pid} outlived its parent");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests: the child side of the protocol, driven by hand
// ---------------------------------------------------------------------------------------

fn child_runs_a_hand_written_request() -> TestResult {
    let build = build_id()?;
    let (reply, out) = Crafted::start(1 << 20)?.exchange(&request_frame(&Request {
        build,
        task: <add as Task>::NAME.into(),
        args: postcard::to_stdvec(&(40i64, 2i64))?,
        max_reply: 1 << 20,
    }))?;
    assert_eq!(reply, Reply::Ok(postcard::to_stdvec(&42i64)?));
    assert!(out.status.success(), "{:?}", out.status);
    Ok(())
}

fn child_refuses_a_build_mismatch() -> TestResult {
    let (reply, out) = Crafted::start(1 << 20)?.exchange(&request_frame(&Request {
        build: "escala-0.0.0/another-binary".into(),
        task: <add as Task>::NAME.into(),
        args: postcard::to_stdvec(&(1i64, 2i64))?,
        max_reply: 1 << 20,
    }))?;
    let Reply::Refused(msg) = reply else {
        panic!("expected Refused, got {reply:?}");
    };
    assert!(msg.contains("escala-0.0.0/another-binary"), "{msg}");
    assert!(msg.contains("this child is build"), "{msg}");
    assert!(out.status.success(), "{:?}", out.status);
    Ok(())
}

fn child_refuses_an_unknown_task() -> TestResult {
    let build = build_id()?;
    let (reply, _) = Crafted::start(1 << 20)?.exchange(&request_frame(&Request {
        build,
        task: "no::such::task".into(),
        args: vec![],
        max_reply: 1 << 20,
    }))?;
    let Reply::Refused(msg) = reply else {
        panic!("expected Refused, got {reply:?}");
    };
    assert!(msg.contains("unknown task `no::such::task`"), "{msg}");
    assert!(msg.contains("process_units::add"), "lists the known tasks: {msg}");
    Ok(())
}

fn child_reports_an_undecodable_request() -> TestResult {
    let (reply, out) = Crafted::start(1 << 20)?.exchange(&frame(KIND_REQUEST, &[0xff; 8]))?;
    let Reply::Codec(msg) = reply else {
        panic!("expected Codec, got {reply:?}");
    };
    assert!(msg.contains("cannot decode the request"), "{msg}");
    assert!(out.status.success(), "{:?}", out.status);
    Ok(())
}

fn child_reports_undecodable_arguments() -> TestResult {
    let build = build_id()?;
    let (reply, _) = Crafted::start(1 << 20)?.exchange(&request_frame(&Request {
        build,
        task: <add as Task>::NAME.into(),
        args: vec![0xff, 0xff, 0xff],
        max_reply: 1 << 20,
    }))?;
    let Reply::Codec(msg) = reply else {
        panic!("expected Codec, got {reply:?}");
    };
    assert!(msg.contains("cannot decode the arguments of `process_units::add`"), "{msg}");
    Ok(())
}

fn child_reports_a_bad_frame() -> TestResult {
    let mut bad = frame(KIND_REQUEST, b"whatever");
    bad[..4].copy_from_slice(b"HTTP");
    let (reply, _) = Crafted::start(1 << 20)?.exchange(&bad)?;
    let Reply::Codec(msg) = reply else {
        panic!("expected Codec, got {reply:?}");
    };
    assert!(msg.contains("bad magic"), "{msg}");
    Ok(())
}

fn child_refuses_an_oversized_request_frame() -> TestResult {
    // A header announcing 1 MB to a child capped at 100 bytes, and no payload: the child
    // must answer from the header alone.
    let mut header = frame(KIND_REQUEST, &[]);
    header[8..12].copy_from_slice(&1_000_000u32.to_le_bytes());
    let (reply, _) = Crafted::start(100)?.exchange(&header)?;
    let Reply::Codec(msg) = reply else {
        panic!("expected Codec, got {reply:?}");
    };
    // The child allows the cap plus room for the build id and task name, not 1 MB.
    assert!(msg.contains("1000000 bytes exceeds the limit of"), "{msg}");
    Ok(())
}

fn child_exits_when_the_parent_hangs_up() -> TestResult {
    let c = Crafted::start(1 << 20)?;
    drop(c.sock);
    let out = collect(c.child)?;
    assert!(out.status.success(), "{:?} {}", out.status, out.stderr);
    assert!(out.stdout.is_empty(), "ran something: {}", out.stdout);
    Ok(())
}

fn expect_fatal(out: &ChildOutput, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{:?}; stderr: {}", out.status, out.stderr);
    let lines: Vec<_> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got {:?}", out.stderr);
    assert!(lines[0].starts_with("escala: error: "), "{:?}", lines[0]);
    assert!(lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
    assert!(out.stdout.is_empty(), "ran something: {}", out.stdout);
}

fn child_with_malformed_marker_exits_2() -> TestResult {
    let out = collect(start_child("1:not-a-pid:100", Stdio::null())?)?;
    expect_fatal(&out, "malformed");
    Ok(())
}

fn child_with_unknown_marker_version_exits_2() -> TestResult {
    let out = collect(start_child("garbage", Stdio::null())?)?;
    expect_fatal(&out, "ESCALA_CHILD");
    Ok(())
}

fn child_with_stdin_not_a_socket_exits_2() -> TestResult {
    let out = collect(start_child(&marker(100), Stdio::null())?)?;
    expect_fatal(&out, "stdin is not an escala socket");
    Ok(())
}

fn child_of_another_parent_runs_nothing() -> TestResult {
    // The marker names pid 1 as the parent: the child must see it is not and leave at once.
    let (mut ours, theirs) = UnixStream::pair()?;
    let child = start_child("1:1:1000", Stdio::from(OwnedFd::from(theirs)))?;
    ours.set_read_timeout(Some(WAIT))?;
    let out = collect(child)?;
    assert!(!out.status.success(), "{:?}", out.status);
    let mut rest = Vec::new();
    ours.read_to_end(&mut rest)?;
    assert!(rest.is_empty(), "it answered: {rest:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests: command units
// ---------------------------------------------------------------------------------------

fn command_exit_0_is_ok() -> TestResult {
    let h = escala::process::Command::new("true").spawn();
    assert_eq!(h.kind(), escala::UnitKind::Command);
    assert_eq!(h.name(), "true");
    join_bounded(h, "true")?.map_err(|e| e.to_string())?;
    Ok(())
}

fn command_exit_3_is_exited_3() -> TestResult {
    let h = escala::process::Command::new("sh").args(["-c", "exit 3"]).name("three").spawn();
    let err = expect_err(join_bounded(h, "exit 3")?, "exit 3");
    assert_eq!(err.kind(), &ErrorKind::Exited(3));
    assert_eq!(err.exit_reason(), Some(ExitReason::Code(3)));
    assert_eq!(err.name(), "three");
    Ok(())
}

fn command_killed_by_signal_is_worker_lost() -> TestResult {
    let h = escala::process::Command::new("sh").args(["-c", "kill -TERM $$"]).spawn();
    let err = expect_err(join_bounded(h, "kill -TERM")?, "kill -TERM");
    assert!(err.is_worker_lost(), "{err:?}");
    assert_eq!(err.exit_reason().and_then(|r| r.signal_name()), Some("SIGTERM"));
    assert!(err.to_string().contains("killed by SIGTERM"), "{err}");
    Ok(())
}

fn command_missing_program_is_spawn_error() -> TestResult {
    let h = escala::process::Command::new("/nonexistent/escala-no-such-program").spawn();
    let err = expect_err(join_bounded(h, "missing")?, "missing");
    let ErrorKind::Spawn(msg) = err.kind() else {
        panic!("expected Spawn, got {err:?}");
    };
    assert!(msg.contains("escala-no-such-program"), "{msg}");
    Ok(())
}

/// Starts `script` (which must write its pid to the FIFO named by `$0`) as a command unit.
fn command_with_pid(script: &str, grace: Duration) -> Result<(Handle<()>, u32, Fifo), Failed> {
    let fifo = Fifo::new()?;
    let h = escala::process::Command::new("sh").args(["-c", script, &fifo.path()]).stop_grace(grace).spawn();
    let pid = fifo.read(WAIT)?.parse::<u32>()?;
    Ok((h, pid, fifo))
}

fn command_cancel_kills_it() -> TestResult {
    let (h, pid, _fifo) = command_with_pid("echo $$ > \"$0\"; exec sleep 30", Duration::from_secs(1))?;
    assert!(h.cancel());
    assert!(expect_err(join_bounded(h, "sleep")?, "sleep").is_cancelled());
    let gone = wait_gone(pid, Duration::from_secs(3));
    if !gone {
        force_kill(pid);
    }
    assert!(gone, "cancelled command {pid} still exists");
    Ok(())
}

fn command_cancel_escalates_to_sigkill() -> TestResult {
    // The ignored SIGTERM disposition survives `exec`.
    let (h, pid, _fifo) =
        command_with_pid("trap '' TERM; echo $$ > \"$0\"; exec sleep 30", Duration::from_millis(100))?;
    assert!(h.cancel());
    assert!(expect_err(join_bounded(h, "sleep")?, "sleep").is_cancelled());
    let gone = wait_gone(pid, Duration::from_secs(3));
    if !gone {
        force_kill(pid);
    }
    assert!(gone, "command {pid} ignoring SIGTERM survived cancel");
    Ok(())
}

fn command_dies_with_its_parent() -> TestResult {
    orphan_test("orphan-command")
}

// ---------------------------------------------------------------------------------------
// Tests: the exit policy
// ---------------------------------------------------------------------------------------

fn exit_joins_non_daemon_thread() -> TestResult {
    let mut sc = start_scenario("thread-joined", &[])?;
    sc.wait_line("main-returned")?;
    // The thread can only finish now, after main printed its last line.
    sc.close_stdin();
    let f = sc.finish()?;
    expect_success(&f, "thread-joined");
    let (Some(ret), Some(done)) = (f.position("main-returned"), f.position("done")) else {
        panic!("the thread was not joined at exit: stdout {:?}", f.stdout);
    };
    assert!(ret < done);
    Ok(())
}

fn exit_stops_cooperative_daemon_thread() -> TestResult {
    let f = start_scenario("daemon-thread-stops", &[])?.finish()?;
    expect_success(&f, "daemon-thread-stops");
    assert!(
        f.position("stopped").is_some(),
        "the daemon thread did not see its stop request: stdout {:?} stderr {}",
        f.stdout,
        f.stderr
    );
    assert!(!f.stderr.contains("abandoned"), "stderr: {}", f.stderr);
    Ok(())
}

fn exit_abandons_stubborn_daemon_thread() -> TestResult {
    let f = start_scenario("daemon-thread-abandoned", &[])?.finish()?;
    expect_success(&f, "daemon-thread-abandoned");
    let line = f
        .stderr
        .lines()
        .find(|l| l.contains("`stubborn`"))
        .unwrap_or_else(|| panic!("nothing reported about the daemon: {}", f.stderr));
    assert!(line.contains("abandoned"), "{line}");
    assert!(line.contains("daemon-thread"), "{line}");
    Ok(())
}

fn exit_stops_daemon_process_and_command() -> TestResult {
    let mut sc = start_scenario("daemon-processes-stopped", &[])?;
    let ppid = sc.wait_pid("process-pid ")?;
    let cpid = sc.wait_pid("command-pid ")?;
    let f = sc.finish()?;
    expect_success(&f, "daemon-processes-stopped");
    for (what, pid) in [("daemon process", ppid), ("daemon command", cpid)] {
        let gone = is_gone(pid);
        if !gone {
            force_kill(pid);
        }
        assert!(gone, "{what} {pid} outlived the program (or was not reaped)");
    }
    assert!(!f.stderr.contains("killed"), "TERM was enough: {}", f.stderr);
    Ok(())
}

fn exit_kills_daemon_process_ignoring_term() -> TestResult {
    let mut sc = start_scenario("daemon-process-killed", &[])?;
    let pid = sc.wait_pid("process-pid ")?;
    let f = sc.finish()?;
    expect_success(&f, "daemon-process-killed");
    let gone = is_gone(pid);
    if !gone {
        force_kill(pid);
    }
    assert!(gone, "daemon process {pid} ignoring TERM outlived the program");
    let line = f
        .stderr
        .lines()
        .find(|l| l.contains("`p-stubborn`"))
        .unwrap_or_else(|| panic!("the kill was not reported: {}", f.stderr));
    assert!(line.contains("killed"), "{line}");
    Ok(())
}

/// `process::Builder::stop_grace` is documented as the time between SIGTERM and SIGKILL
/// "when the unit is cancelled or stopped at exit": a unit's own 100 ms grace must apply at
/// exit even when the guard's default grace is long.
fn exit_uses_the_units_stop_grace() -> TestResult {
    let mut sc = start_scenario_within("daemon-process-unit-grace", &[], Duration::from_secs(3))?;
    let pid = sc.wait_pid("process-pid ")?;
    let f = sc.finish().inspect_err(|_| force_kill(pid))?;
    expect_success(&f, "daemon-process-unit-grace");
    assert!(is_gone(pid));
    assert!(f.elapsed < Duration::from_secs(3));
    Ok(())
}

fn exit_joins_non_daemon_process_and_command() -> TestResult {
    let r = Rendezvous::new()?;
    let mut sc = start_scenario("process-joined", &[(SOCK_ENV, r.path())])?;
    let (conn, _pid) = r.accept(WAIT)?;
    sc.wait_line("main-returned")?;
    // Both units can only finish now, after main printed its last line.
    drop(conn);
    sc.close_stdin();
    let f = sc.finish()?;
    expect_success(&f, "process-joined");
    let ret = f.position("main-returned").expect("main-returned");
    for line in ["child-done", "cmd-done"] {
        let at = f
            .position(line)
            .unwrap_or_else(|| panic!("{line:?} missing: not joined at exit; {:?}", f.stdout));
        assert!(ret < at, "{:?}", f.stdout);
    }
    Ok(())
}

fn exit_guard_shutdown_reports_units() -> TestResult {
    let mut sc = start_scenario("shutdown-report", &[])?;
    sc.wait_line("shutting-down")?;
    // `t-join` must still be running when shutdown() looks at the units, and nothing
    // signals that moment: after printing, the scenario's main thread runs without
    // blocking until it waits for `t-join`, so its sleeping state is that moment.
    assert!(
        wait_main_thread_sleeping(sc.pid, WAIT),
        "the scenario's main thread never blocked in shutdown()"
    );
    sc.close_stdin();
    let f = sc.finish()?;
    expect_success(&f, "shutdown-report");
    assert!(f.position("report-done").is_some(), "{:?}", f.stdout);
    let entries = |kind: &str| -> Vec<String> {
        let prefix = format!("{kind}: ");
        f.stdout
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|s| s.split(" (#").next().unwrap_or(s).to_string())
            .collect()
    };
    assert_eq!(entries("joined"), vec!["thread `t-join`"], "{:?}", f.stdout);
    let mut stopped = entries("stopped");
    stopped.sort();
    assert_eq!(stopped, vec!["daemon-process `p-daemon`", "daemon-thread `d-coop`"], "{:?}", f.stdout);
    assert_eq!(entries("killed"), vec!["daemon-process `p-stubborn`"]);
    assert_eq!(entries("abandoned"), vec!["daemon-thread `d-stubborn`"]);
    assert!(!f.stderr.contains("escala: daemon"), "the guard applied the policy twice: {}", f.stderr);
    Ok(())
}
