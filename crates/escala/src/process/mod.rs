//! Process units: a registered task in a re-executed child process, or a command.
//!
//! A child is started by re-executing the current binary (`/proc/self/exe`, so it is the
//! very same file even if it was replaced on disk) — never by `fork` of a threaded parent.
//! The parent passes one end of a socket pair as the child's stdin; stdout and stderr are
//! inherited, so the child's prints appear as they would from a thread. `escala::init()` in
//! the child reads the request frame, checks the build, runs the task and answers with one
//! reply frame (see `frame.rs`). A watcher thread per unit owns the child: it reads the
//! reply, reaps the child and resolves the handle; a child that dies without replying
//! resolves as [`crate::ErrorKind::WorkerLost`] with the signal's name or the exit code.
//! A command unit given a [`Reaper`] has no watcher: the thread that calls
//! [`Reaper::wait`] reaps it (`reaper.rs`).
//! Children get `PR_SET_PDEATHSIG` (tied to the watcher thread, which lives at least as long
//! as the child; idle watchers are reused, see `watcher.rs`), so they die with the parent.

pub(crate) mod child;
mod command;
mod environment;
pub(crate) mod frame;
mod reaper;
mod slot;
mod spawn;
pub(crate) mod sys;
mod watcher;
mod zygote;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use nix::sys::signal::Signal;

pub use command::{Command, Signaller};
pub use environment::Environment;
pub use reaper::{Reaper, Waker};

use crate::error::{ErrorKind, ExitReason};
use crate::events::{self, EventKind};
use crate::handle::{Completer, Handle, TaskName, UnitKind, pair};
use crate::runtime::{self, LiveUnit};
use crate::task::{self, Call, Reply, Task};
use frame::{FrameKind, Request};
pub(crate) use slot::ChildSlot;

/// This build's identity: the escala version and the executable's device, inode, size and
/// modification time. A child refuses a request from a parent of another build.
pub(crate) fn build_id() -> &'static String {
    static ID: LazyLock<String> = LazyLock::new(|| {
        use std::os::unix::fs::MetadataExt;
        let v = env!("CARGO_PKG_VERSION");
        match std::fs::metadata("/proc/self/exe") {
            Ok(m) => {
                format!("escala-{v}/{}:{}:{}:{}.{}", m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
            }
            Err(_) => format!("escala-{v}/unknown"),
        }
    });
    &ID
}

/// What a re-executed copy of this binary is asked to be (the mode in `ESCALA_CHILD`).
#[derive(Clone, Copy)]
pub(crate) enum ChildMode {
    /// One process unit: one request, one reply.
    Unit = 1,
    /// A process pool's persistent worker.
    PoolWorker = 2,
    /// The fork server.
    ForkServer = 3,
}

/// A command that re-executes this very binary (`/proc/self/exe`, so it is the same file
/// even if replaced on disk) as a child in `mode`, with frames capped at `max` bytes.
pub(crate) fn reexec_command(mode: ChildMode, max: usize) -> std::process::Command {
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.env(sys::CHILD_ENV, format!("{}:{}:{max}", mode as u8, std::process::id()));
    cmd
}

/// The last stderr lines a tail thread kept (none without one).
pub(crate) fn tail_lines(tail: Option<StderrTail>) -> Vec<String> {
    tail.and_then(|t| t.join().ok()).map(Vec::from).unwrap_or_default()
}

/// Runs a registered task in a new child process; joined at program exit.
///
/// The binary must call [`crate::init`] (or use `#[escala::main]`) first thing in `main`.
///
/// # Examples
///
/// ```
/// #[escala::task]
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() {
///     let _exit = escala::init();
///     let h = escala::process::spawn(square::call(7));
///     assert_eq!(h.join().unwrap(), 49);
/// }
/// ```
pub fn spawn<K: Task>(call: Call<K>) -> Handle<K::Output> {
    Builder::new().spawn(call)
}

/// Configures a process unit before starting it.
///
/// # Examples
///
/// ```
/// #[escala::task]
/// fn hello(who: String) -> String { format!("hello {who}") }
///
/// fn main() {
///     let _exit = escala::init();
///     let h = escala::process::Builder::new().name("greeter").spawn(hello::call("ana".into()));
///     assert_eq!(h.name(), "greeter");
///     assert_ne!(h.pid(), Some(std::process::id()));
///     assert_eq!(h.join().unwrap(), "hello ana");
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    grace: Duration,
    max_frame: usize,
    stderr_tail: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the defaults: named after the task, not a daemon, 1 s stop grace,
    /// 64 MiB frame limit, stderr inherited.
    pub fn new() -> Builder {
        Builder {
            name: None,
            daemon: false,
            grace: Duration::from_secs(1),
            max_frame: frame::DEFAULT_MAX_FRAME,
            stderr_tail: 0,
        }
    }

    /// Names the unit (default: the task's registered name).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Makes it a daemon process: stopped (TERM, grace, KILL) at exit instead of joined.
    pub fn daemon(mut self, daemon: bool) -> Builder {
        self.daemon = daemon;
        self
    }

    /// Time between SIGTERM and SIGKILL when the unit is cancelled or stopped at exit.
    pub fn stop_grace(mut self, grace: Duration) -> Builder {
        self.grace = grace;
        self
    }

    /// Caps the encoded arguments and the encoded result, in bytes (default 64 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Builder {
        self.max_frame = bytes;
        self
    }

    /// Keeps the last `lines` lines of the child's stderr (still passing them through to
    /// this process's stderr) to report them if the child is lost.
    pub fn stderr_tail(mut self, lines: usize) -> Builder {
        self.stderr_tail = lines;
        self
    }

    /// Starts the child running `call`.
    pub fn spawn<K: Task>(self, call: Call<K>) -> Handle<K::Output> {
        self.spawn_with(call, None).0
    }

    /// Starts the child running `call`; with `own`, re-executed (never forked by the fork
    /// server) with that environment, output and its own process group. Returns the slot
    /// that owns the child, for the caller to signal it.
    pub(crate) fn spawn_with<K: Task>(
        self,
        call: Call<K>,
        own: Option<OwnChild>,
    ) -> (Handle<K::Output>, Arc<ChildSlot>) {
        let slot = Arc::new(if own.is_some() { ChildSlot::group() } else { ChildSlot::new() });
        let kind = if self.daemon { UnitKind::DaemonProcess } else { UnitKind::Process };
        let name = self.name.clone().map_or(TaskName::Static(K::NAME), TaskName::from);
        let (handle, completer) = pair::<K::Output>(name, kind);
        if !runtime::is_initialized() {
            completer.fail(ErrorKind::Spawn(
                "process units need `escala::init()` (or #[escala::main]) at the start of main".into(),
            ));
            return (handle, slot);
        }
        let args = match task::encode(call.args()) {
            Ok(a) if a.len() > self.max_frame => {
                completer.fail(ErrorKind::Codec(format!(
                    "the arguments are {} bytes, over the limit of {} bytes",
                    a.len(),
                    self.max_frame
                )));
                return (handle, slot);
            }
            Ok(a) => a,
            Err(e) => {
                completer.fail(ErrorKind::Codec(format!("cannot encode the arguments: {e}")));
                return (handle, slot);
            }
        };
        let req = Request {
            build: build_id().clone(),
            task: K::NAME.into(),
            args,
            max_reply: self.max_frame as u64,
        };
        let decode = |bytes: &[u8]| task::decode::<K::Output>(bytes);
        let (max, tail) = (self.max_frame, self.stderr_tail);
        let h = launch(
            (handle, completer),
            (self.daemon, self.grace, true),
            slot.clone(),
            move |c, slot, started| {
                let mut cmd = reexec_command(ChildMode::Unit, max);
                let forkable = own.is_none();
                if let Some(own) = own {
                    own.apply(&mut cmd);
                }
                run_child(c, slot, started, Job { req, cmd, decode, forkable }, tail, max);
            },
        );
        (h, slot)
    }
}

/// What makes a child its own: its environment, output and process group. A child with
/// these is always re-executed (the fork server's children share the server's).
#[derive(Debug, Default)]
pub(crate) struct OwnChild {
    pub(crate) env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    pub(crate) env_remove: Vec<std::ffi::OsString>,
    pub(crate) cwd: Option<std::path::PathBuf>,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
}

impl OwnChild {
    /// Sets these on `cmd`, and makes the child lead a new process group.
    pub(crate) fn apply(self, cmd: &mut std::process::Command) {
        for key in self.env_remove {
            cmd.env_remove(key);
        }
        cmd.envs(self.env).process_group(0);
        if let Some(dir) = self.cwd {
            cmd.current_dir(dir);
        }
        if let Some(fd) = self.stdout {
            cmd.stdout(fd);
        }
        if let Some(fd) = self.stderr {
            cmd.stderr(fd);
        }
    }
}

/// Tells [`launch`] that the child exists (its pid is set) or could not be started.
pub(crate) struct Started(crossbeam_channel::Sender<()>);

impl Started {
    pub(crate) fn done(self) {
        let _ = self.0.send(());
    }
}

/// Starts a child-owning unit: registers it with the exit policy, makes `cancel()` stop it,
/// and runs `body` on a watcher thread that owns the child from spawn to reap (the child's
/// PDEATHSIG is tied to that thread, which lives exactly as long as the child). Returns once
/// the child has started — or failed to, in which case the handle is already resolved.
pub(crate) fn launch<T, B>(
    (handle, completer): (Handle<T>, Completer<T>),
    (daemon, grace, wait_start): (bool, Duration, bool),
    slot: Arc<ChildSlot>,
    body: B,
) -> Handle<T>
where
    T: Send + 'static,
    B: FnOnce(Completer<T>, &ChildSlot, Started) + Send + 'static,
{
    let ended_tx = register_unit(&handle, &slot, daemon, grace);
    let (started_tx, started_rx) = crossbeam_channel::bounded::<()>(1);
    let watcher = watcher::run(Box::new(move || {
        let _ended = ended_tx;
        body(completer, &slot, Started(started_tx));
    }));
    match watcher {
        // Err: the watcher ended before the child started; the handle has its outcome.
        Ok(_) if wait_start => drop(started_rx.recv()),
        Ok(_) => {}
        // The closure, and the completer in it, were dropped: the handle resolved.
        Err(e) => tracing::error!("could not start a watcher thread: {e}"),
    }
    handle
}

/// Registers a child-owning unit with the exit policy and makes `cancel()` stop it. The unit
/// has ended for the exit policy once the returned sender is dropped (after the reap).
pub(crate) fn register_unit<T>(
    handle: &Handle<T>,
    slot: &Arc<ChildSlot>,
    daemon: bool,
    grace: Duration,
) -> crossbeam_channel::Sender<()> {
    let (ended_tx, ended_rx) = crossbeam_channel::bounded::<()>(0);
    slot.install_cancel(handle, ended_rx.clone(), grace);
    let stop_slot = slot.clone();
    let kill_slot = slot.clone();
    runtime::register(LiveUnit {
        id: handle.id(),
        name: handle.name().to_string(),
        kind: handle.kind(),
        daemon,
        ended: ended_rx,
        stop: Box::new(move || {
            if daemon {
                stop_slot.signal(Signal::SIGTERM);
            }
        }),
        force: Some(Box::new(move || kill_slot.signal(Signal::SIGKILL))),
        grace: Some(grace),
    });
    ended_tx
}

struct Job<D> {
    req: Request,
    cmd: std::process::Command,
    decode: D,
    /// May be forked by the fork server (false: the child has its own environment or group).
    forkable: bool,
}

/// Owns one task child from spawn to reap, and resolves its handle. The child is forked by
/// the zygote when it can be, re-executed otherwise.
fn run_child<T, D>(c: Completer<T>, slot: &ChildSlot, started: Started, job: Job<D>, tail: usize, max: usize)
where
    D: Fn(&[u8]) -> Result<T, String>,
{
    let Job { req, mut cmd, decode, forkable } = job;
    let (mut ours, theirs) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => {
            c.fail(ErrorKind::Spawn(format!("cannot create a socket pair: {e}")));
            return;
        }
    };
    let forked = zygote::get(max)
        .filter(|_| forkable)
        .and_then(|z| fork_unit(&c, slot, &z, OwnedFd::from(theirs.try_clone().ok()?), tail));
    let (pid, stderr, reports) = match forked {
        Some((pid, stderr, reports)) => {
            // The zygote's child has its own copy; ours must close, or its death is no EOF.
            drop(theirs);
            (pid, stderr, Some(reports))
        }
        None => {
            cmd.stdin(Stdio::from(OwnedFd::from(theirs)));
            if tail > 0 {
                cmd.stderr(Stdio::piped());
            }
            let Some((pid, stderr)) = spawn_into(&c, slot, &mut cmd, tail, "cannot re-execute this binary")
            else {
                return;
            };
            (pid, stderr, None)
        }
    };
    drop(cmd); // closes our copy of the child's socket end
    started.done();
    let outcome = exchange(&mut ours, &req, max);
    if let Exchange::Broken(_) = outcome {
        // The child may be blocked writing what we refuse to read: stop it before waiting.
        slot.signal(Signal::SIGKILL);
    }
    drop(ours);
    let (status, lines) = match reports {
        Some(reports) => {
            let status = loop {
                match reports.recv() {
                    Ok(zygote::Report::Exited(raw)) => {
                        break Some(std::os::unix::process::ExitStatusExt::from_raw(raw));
                    }
                    Ok(zygote::Report::Forked(_)) => continue,
                    _ => break None,
                }
            };
            slot.set_reaped(status);
            let lines = tail_lines(stderr);
            (slot.reap().map(ExitReason::from_status), lines)
        }
        None => reap(slot, pid, stderr),
    };
    let _ = match outcome {
        Exchange::Reply(reply) => match reply.into_result() {
            Ok(bytes) => match decode(&bytes) {
                Ok(v) => c.ok(v),
                Err(e) => c.fail(ErrorKind::Codec(format!("cannot decode the result: {e}"))),
            },
            Err(kind) => c.fail(kind),
        },
        Exchange::Broken(m) => c.fail(ErrorKind::Codec(m)),
        Exchange::Lost => lost(&c, status, lines),
    };
}

/// Has the zygote fork the unit's child; `None` if it could not (then re-execute instead).
fn fork_unit<T>(
    c: &Completer<T>,
    slot: &ChildSlot,
    z: &Arc<zygote::Zygote>,
    sock: OwnedFd,
    tail: usize,
) -> Option<(u32, Option<StderrTail>, crossbeam_channel::Receiver<zygote::Report>)> {
    let (err_r, err_w) = if tail > 0 {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let reports = z.spawn(c.core().id.0, sock, err_w);
    let pid = match reports.recv() {
        Ok(zygote::Report::Forked(pid)) => pid,
        _ => return None,
    };
    c.core().set_pid(pid);
    slot.put_remote(pid, z.clone());
    if events::enabled() {
        events::emit(c.core(), EventKind::Started);
    }
    let stderr = err_r.map(|r| tee_stderr(std::fs::File::from(r), tail));
    Some((pid, stderr, reports))
}

/// Spawns `cmd` and hands the child to `slot`; on failure resolves the handle and says so.
pub(crate) fn spawn_into<T>(
    c: &Completer<T>,
    slot: &ChildSlot,
    cmd: &mut std::process::Command,
    tail: usize,
    what: &str,
) -> Option<(u32, Option<StderrTail>)> {
    let mut child = match cmd.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            c.fail(ErrorKind::Spawn(format!("{what}: {e}")));
            return None;
        }
    };
    let pid = child.id();
    c.core().set_pid(pid);
    let stderr = child.stderr.take().map(|s| tee_stderr(s, tail));
    slot.put(child);
    started(c.core());
    Some((pid, stderr))
}

/// Reports a child as started (when events are on).
pub(crate) fn started(core: &crate::handle::Core) {
    if events::enabled() {
        events::emit(core, EventKind::Started);
    }
}

/// Waits for the child to exit, reaps it, and collects the stderr tail.
pub(crate) fn reap(
    slot: &ChildSlot,
    pid: u32,
    stderr: Option<StderrTail>,
) -> (Option<ExitReason>, Vec<String>) {
    sys::wait_exit_no_reap(pid);
    let status = slot.reap().map(ExitReason::from_status);
    let lines = tail_lines(stderr);
    (status, lines)
}

/// Resolves a handle whose child ended without a result.
pub(crate) fn lost<T>(c: &Completer<T>, status: Option<ExitReason>, stderr: Vec<String>) -> bool {
    let reason = status.unwrap_or(ExitReason::Code(-1));
    if events::enabled() {
        events::emit(c.core(), EventKind::WorkerLost { reason: reason.to_string() });
    }
    c.fail(ErrorKind::WorkerLost { reason, stderr })
}

enum Exchange {
    Reply(Reply),
    Broken(String),
    Lost,
}

fn exchange(sock: &mut UnixStream, req: &Request, max: usize) -> Exchange {
    let bytes = match task::encode(req) {
        Ok(b) => b,
        Err(e) => return Exchange::Broken(format!("cannot encode the request: {e}")),
    };
    // A child that died at once makes this write fail (EPIPE); its exit status says why.
    if frame::write_frame(sock, FrameKind::Request, &bytes).is_err() {
        return Exchange::Lost;
    }
    let _ = sock.flush();
    match frame::read_frame(sock, FrameKind::Reply, max.saturating_add(1024)) {
        Ok(Some(payload)) => match task::decode::<Reply>(&payload) {
            Ok(r) => Exchange::Reply(r),
            Err(e) => Exchange::Broken(format!("cannot decode the child's reply: {e}")),
        },
        Ok(None) => Exchange::Lost,
        Err(frame::FrameError::Io(_)) | Err(frame::FrameError::Truncated) => Exchange::Lost,
        Err(e) => Exchange::Broken(format!("bad reply frame: {e}")),
    }
}

/// The thread passing a child's stderr through; it returns the last lines.
pub(crate) type StderrTail = std::thread::JoinHandle<VecDeque<String>>;

/// Passes the child's stderr through, keeping its last `n` lines.
pub(crate) fn tee_stderr(src: impl std::io::Read + Send + 'static, n: usize) -> StderrTail {
    std::thread::spawn(move || {
        let mut last = VecDeque::with_capacity(n);
        let mut out = std::io::stderr();
        for line in BufReader::new(src).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(out, "{line}");
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(line);
        }
        last
    })
}
