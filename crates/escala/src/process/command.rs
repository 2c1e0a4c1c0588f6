//! Command units: an external program as a process unit, with the same handle.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::environment::{self, Environment};
use super::reaper::{self, Reaper};
use super::{ChildSlot, launch, lost, reap, register_unit, spawn, spawn_into, sys, watcher};
use crate::error::{ErrorKind, ExitReason};
use crate::handle::{Handle, TaskName, UnitKind, pair};

/// An external command run as a unit: `Ok(())` on exit code 0,
/// [`ErrorKind::Exited`] on another code, [`ErrorKind::WorkerLost`] when killed by a signal.
///
/// # Examples
///
/// ```
/// let ok = escala::process::Command::new("true").spawn();
/// assert!(ok.join().is_ok());
/// let bad = escala::process::Command::new("sh").args(["-c", "exit 3"]).spawn();
/// assert_eq!(bad.join().unwrap_err().exit_reason(), Some(escala::ExitReason::Code(3)));
/// ```
#[derive(Debug)]
pub struct Command {
    inner: std::process::Command,
    name: String,
    daemon: bool,
    grace: Duration,
    tail: usize,
    group: bool,
    die_with_parent: bool,
    reaper: Option<Arc<reaper::Inner>>,
    /// The environment to start from instead of ours, captured once.
    environment: Option<Environment>,
    /// `env` and `env_remove` calls, in order (`None`: removed).
    changes: Vec<(OsString, Option<OsString>)>,
    /// Descriptors for stdin, stdout, stderr, given by `stdin_fd`…
    fds: [Option<OwnedFd>; 3],
    /// A stream or the directory set on `inner` (which only `std` can start).
    std_only: bool,
}

impl Command {
    /// A command running `program` (looked up in `PATH`).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        let name = program.as_ref().to_string_lossy().into_owned();
        Command {
            inner: std::process::Command::new(program),
            name,
            daemon: false,
            grace: Duration::from_secs(1),
            tail: 0,
            group: false,
            die_with_parent: true,
            reaper: None,
            environment: None,
            changes: Vec::new(),
            fds: [None, None, None],
            std_only: false,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Command {
        self.changes.push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable from the command's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Command {
        self.changes.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the command in `environment` (then [`env`](Self::env) and
    /// [`env_remove`](Self::env_remove) changes) instead of a copy of this process's
    /// environment made at the start. With a [`reaper`](Self::reaper), descriptors for the
    /// streams it sets (or none) and [`die_with_parent`](Self::die_with_parent) off, the
    /// command starts by `posix_spawn` with no copy of the environment at all: a program
    /// that starts many commands captures its environment once and gives it to each.
    ///
    /// # Examples
    ///
    /// ```
    /// use escala::process::{Command, Environment};
    /// let env = Environment::from_vars([("COLOUR", "red")]);
    /// let h = Command::new("/bin/sh").args(["-c", "test \"$COLOUR $SHAPE\" = 'red round'"])
    ///     .environment(&env)
    ///     .env("SHAPE", "round")
    ///     .spawn();
    /// assert!(h.join().is_ok());
    /// ```
    pub fn environment(mut self, environment: &Environment) -> Command {
        self.environment = Some(environment.clone());
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl AsRef<std::path::Path>) -> Command {
        self.inner.current_dir(dir);
        self.std_only = true;
        self
    }

    /// Names the unit (default: the program).
    pub fn name(mut self, name: impl Into<String>) -> Command {
        self.name = name.into();
        self
    }

    /// Makes it a daemon: stopped (TERM, grace, KILL) at exit instead of joined.
    pub fn daemon(mut self, daemon: bool) -> Command {
        self.daemon = daemon;
        self
    }

    /// Time between SIGTERM and SIGKILL when cancelled or stopped at exit (default 1 s).
    pub fn stop_grace(mut self, grace: Duration) -> Command {
        self.grace = grace;
        self
    }

    /// Sets the command's stdin (default: inherited).
    pub fn stdin(mut self, cfg: impl Into<Stdio>) -> Command {
        self.inner.stdin(cfg);
        self.fds[0] = None;
        self.std_only = true;
        self
    }

    /// Sets the command's stdout (default: inherited).
    pub fn stdout(mut self, cfg: impl Into<Stdio>) -> Command {
        self.inner.stdout(cfg);
        self.fds[1] = None;
        self.std_only = true;
        self
    }

    /// Sets the command's stderr (default: inherited). Overridden by
    /// [`stderr_tail`](Self::stderr_tail).
    pub fn stderr(mut self, cfg: impl Into<Stdio>) -> Command {
        self.inner.stderr(cfg);
        self.fds[2] = None;
        self.std_only = true;
        self
    }

    /// Makes `fd` the command's stdin (closed here once the command has started). Unlike
    /// [`stdin`](Self::stdin), it lets the command start by `posix_spawn` (see
    /// [`environment`](Self::environment)).
    ///
    /// # Examples
    ///
    /// ```
    /// let null = std::fs::File::open("/dev/null").unwrap();
    /// let h = escala::process::Command::new("cat").stdin_fd(null).spawn();
    /// assert!(h.join().is_ok());
    /// ```
    pub fn stdin_fd(self, fd: impl Into<OwnedFd>) -> Command {
        self.set_fd(0, fd.into())
    }

    /// Makes `fd` the command's stdout; see [`stdin_fd`](Self::stdin_fd).
    pub fn stdout_fd(self, fd: impl Into<OwnedFd>) -> Command {
        self.set_fd(1, fd.into())
    }

    /// Makes `fd` the command's stderr; see [`stdin_fd`](Self::stdin_fd).
    pub fn stderr_fd(self, fd: impl Into<OwnedFd>) -> Command {
        self.set_fd(2, fd.into())
    }

    fn set_fd(mut self, stream: usize, fd: OwnedFd) -> Command {
        self.fds[stream] = Some(fd);
        self
    }

    /// Keeps the last `lines` lines of stderr (still passing them through) to report them
    /// when the command is killed by a signal.
    pub fn stderr_tail(mut self, lines: usize) -> Command {
        self.tail = lines;
        self
    }

    /// Runs the command as the leader of a new process group (default: no). Signals to the
    /// unit — a cancel, a stop at exit — then go to the whole group, and when the command
    /// exits, whatever it left running in its group is killed (SIGKILL): no orphans.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = escala::process::Command::new("sh").args(["-c", "sleep 60 & wait"]).process_group(true).spawn();
    /// h.cancel(); // SIGTERM to `sh` and to its `sleep`
    /// assert!(h.join().unwrap_err().is_cancelled());
    /// ```
    pub fn process_group(mut self, own_group: bool) -> Command {
        self.group = own_group;
        self
    }

    /// Whether the command gets SIGKILL when this process dies (PR_SET_PDEATHSIG; default
    /// `true`). Turning it off lets the command start through `posix_spawn` (vfork), which
    /// is faster; the caller then owns stopping it (for example with a [`Signaller`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = escala::process::Command::new("true").die_with_parent(false).spawn();
    /// assert!(h.join().is_ok());
    /// ```
    pub fn die_with_parent(mut self, yes: bool) -> Command {
        self.die_with_parent = yes;
        self
    }

    /// Has `reaper` wait for the command instead of a watcher thread: the command starts on
    /// the calling thread, and its handle resolves when a [`Reaper::wait`] sees it end (or
    /// when the reaper is dropped, which kills it). Ignored with
    /// [`stderr_tail`](Self::stderr_tail), whose reader thread could hold up the reaper.
    ///
    /// With [`die_with_parent`](Self::die_with_parent) on, the command gets SIGKILL when the
    /// calling thread exits (PR_SET_PDEATHSIG belongs to the thread that starts it): turn it
    /// off unless that thread outlives the command.
    ///
    /// # Examples
    ///
    /// ```
    /// use escala::process::{Command, Reaper};
    /// let reaper = Reaper::new().unwrap();
    /// let h = Command::new("sh").args(["-c", "exit 4"]).die_with_parent(false).reaper(&reaper).spawn();
    /// assert_eq!(reaper.wait(None).unwrap(), 1);
    /// assert_eq!(h.join().unwrap_err().exit_reason(), Some(escala::ExitReason::Code(4)));
    /// ```
    pub fn reaper(mut self, reaper: &Reaper) -> Command {
        self.reaper = Some(reaper.inner());
        self
    }

    /// Starts the command; returns once it is running (its [`Handle::pid`] is set) or has
    /// failed to start. The command dies with this process (PR_SET_PDEATHSIG) unless
    /// [`die_with_parent`](Self::die_with_parent) is off.
    pub fn spawn(self) -> Handle<()> {
        self.spawn_in_slot(false).0
    }

    /// Like [`spawn`](Self::spawn), and also returns a [`Signaller`] that sends signals to
    /// the command (its process group with [`process_group`](Self::process_group)) without
    /// resolving the handle: the handle still reports how the command really ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use escala::{ExitReason, process::Command};
    /// use nix::sys::signal::Signal;
    /// let (h, sig) = Command::new("sleep").arg("30").process_group(true).spawn_with_signaller();
    /// sig.signal(Signal::SIGTERM);
    /// let err = h.join().unwrap_err();
    /// assert_eq!(err.exit_reason(), Some(ExitReason::Signal(Signal::SIGTERM)));
    /// ```
    pub fn spawn_with_signaller(self) -> (Handle<()>, Signaller) {
        let (handle, slot) = self.spawn_in_slot(false);
        (handle, Signaller { slot })
    }

    /// Starts the command and also returns the slot that owns the child. With `here`, the
    /// child is forked by the calling thread — one thread hop less before it runs — and its
    /// PDEATHSIG is tied to that thread, so only a thread that outlives its children (a
    /// supervisor's control thread) may ask for it.
    pub(crate) fn spawn_in_slot(mut self, here: bool) -> (Handle<()>, Arc<ChildSlot>) {
        let kind = if self.daemon { UnitKind::DaemonProcess } else { UnitKind::Command };
        let units = pair::<()>(TaskName::from(std::mem::take(&mut self.name)), kind);
        let slot = Arc::new(if self.group { ChildSlot::group() } else { ChildSlot::new() });
        let what = format!("cannot run `{}`", self.inner.get_program().to_string_lossy());
        let (daemon, grace, tail, die_with_parent) =
            (self.daemon, self.grace, self.tail, self.die_with_parent);
        if let Some(reaper) = self.reaper.take().filter(|_| tail == 0) {
            let start = self.into_start();
            let handle = spawn_reaped(units, start, &slot, (daemon, grace), &what, &reaper);
            return (handle, slot);
        }
        let mut inner = self.into_std();
        // Ok: already spawned here; Err: the watcher thread spawns it. The command (and our
        // copies of its stdio) is dropped right after the spawn, so a pipe reader sees EOF
        // when the child exits.
        // Nothing ties a child that need not die with us to a thread: start it here too.
        let here = here || !die_with_parent;
        let pre = if here { Ok(spawn_into(&units.1, &slot, &mut inner, tail, &what)) } else { Err(inner) };
        let h = launch(units, (daemon, grace, !here), slot.clone(), move |c, slot, started| {
            let spawned = match pre {
                Ok(spawned) => spawned,
                Err(mut inner) => spawn_into(&c, slot, &mut inner, tail, &what),
            };
            let Some((pid, stderr)) = spawned else {
                return;
            };
            started.done();
            let (status, lines) = reap(slot, pid, stderr);
            finish(&c, status, lines);
        });
        (h, slot)
    }

    /// How a reaped command starts: by `posix_spawn` when nothing needs `std` (see
    /// [`environment`](Self::environment)), by `std` otherwise.
    fn into_start(self) -> Start {
        if self.die_with_parent || self.std_only || self.environment.is_none() {
            return Start::Std(self.into_std());
        }
        let cstr = |s: &OsStr| CString::new(s.as_bytes()).ok();
        let program = cstr(self.inner.get_program());
        let argv: Option<Vec<CString>> =
            std::iter::once(self.inner.get_program()).chain(self.inner.get_args()).map(cstr).collect();
        let changes: Option<Vec<_>> =
            self.changes.iter().map(|(k, v)| environment::change(k, v.as_deref())).collect();
        match (program, argv, changes) {
            (Some(program), Some(argv), Some(changes)) => Start::Direct(Direct {
                program,
                argv,
                environment: self.environment.unwrap_or_default(),
                changes,
                fds: self.fds,
                group: self.group,
            }),
            // A NUL inside: `std` says so.
            _ => Start::Std(self.into_std()),
        }
    }

    /// The `std` command with everything set on this one.
    fn into_std(self) -> std::process::Command {
        let Command { mut inner, tail, group, die_with_parent, environment, changes, fds, .. } = self;
        if die_with_parent {
            sys::kill_with_parent(&mut inner);
        }
        if let Some(env) = environment {
            inner.env_clear().envs(env.pairs());
        }
        for (key, value) in changes {
            match value {
                Some(value) => inner.env(key, value),
                None => inner.env_remove(key),
            };
        }
        let [stdin, stdout, stderr] = fds;
        if let Some(fd) = stdin {
            inner.stdin(fd);
        }
        if let Some(fd) = stdout {
            inner.stdout(fd);
        }
        if let Some(fd) = stderr {
            inner.stderr(fd);
        }
        if tail > 0 {
            inner.stderr(Stdio::piped());
        }
        if group {
            use std::os::unix::process::CommandExt;
            inner.process_group(0);
        }
        inner
    }
}

/// How a command starts.
enum Start {
    Std(std::process::Command),
    Direct(Direct),
}

/// A command to start by `posix_spawn` (`spawn.rs`).
struct Direct {
    program: CString,
    argv: Vec<CString>,
    environment: Environment,
    changes: Vec<(CString, Option<CString>)>,
    fds: [Option<OwnedFd>; 3],
    group: bool,
}

impl Direct {
    /// Starts it and hands the child to `slot`; on failure resolves the handle.
    fn spawn(self, c: &crate::handle::Completer<()>, slot: &ChildSlot, what: &str) -> Option<u32> {
        let envp = self.environment.envp(&self.changes);
        let plan = spawn::Plan {
            program: &self.program,
            argv: &self.argv,
            envp: &envp,
            stdio: self.fds.each_ref().map(|fd| fd.as_ref().map(AsFd::as_fd)),
            group: self.group,
        };
        match spawn::start(&plan) {
            Ok(pid) => {
                c.core().set_pid(pid);
                slot.put_spawned(pid);
                super::started(c.core());
                Some(pid)
            }
            Err(e) => {
                c.fail(ErrorKind::Spawn(format!("{what}: {e}")));
                None
            }
        }
    }
}

/// Starts a command on this thread and hands its end to `reaper` (or, should its pidfd not
/// join the reaper's epoll set, to a watcher thread).
fn spawn_reaped(
    (handle, c): (Handle<()>, crate::handle::Completer<()>),
    start: Start,
    slot: &Arc<ChildSlot>,
    (daemon, grace): (bool, Duration),
    what: &str,
    reaper: &reaper::Inner,
) -> Handle<()> {
    let ended = register_unit(&handle, slot, daemon, grace);
    // Our copies of the child's stdio close right after the start, so a pipe reader sees
    // EOF when it exits.
    let spawned = match start {
        Start::Std(mut inner) => spawn_into(&c, slot, &mut inner, 0, what).map(|(pid, _)| pid),
        Start::Direct(direct) => direct.spawn(&c, slot, what),
    };
    let Some(pid) = spawned else { return handle };
    let reap_slot = slot.clone();
    let end: reaper::End = Box::new(move || {
        let _ended = ended;
        finish(&c, reap_slot.reap().map(ExitReason::from_status), Vec::new());
    });
    let refused = match slot.pidfd() {
        Some(fd) => reaper.watch(fd, slot.clone(), end),
        None => Err(end),
    };
    if let Err(end) = refused {
        // A pid that is still ours (unreaped): wait for it on a watcher thread instead.
        let wait = Box::new(move || {
            sys::wait_exit_no_reap(pid);
            end();
        });
        if let Err(e) = watcher::run(wait) {
            tracing::error!("could not start a watcher thread: {e}");
        }
    }
    handle
}

/// Resolves a command unit's handle from how its child ended.
fn finish(c: &crate::handle::Completer<()>, status: Option<ExitReason>, stderr: Vec<String>) {
    match status {
        Some(ExitReason::Code(0)) => c.ok(()),
        Some(ExitReason::Code(code)) => c.fail(ErrorKind::Exited(code)),
        status => lost(c, status, stderr),
    };
}

/// Sends signals to one command unit's process (or process group) while it runs; never to a
/// recycled pid: a command that has been reaped gets nothing. Cheap to clone.
///
/// # Examples
///
/// ```
/// let (h, sig) = escala::process::Command::new("true").spawn_with_signaller();
/// h.join().unwrap();
/// sig.signal(nix::sys::signal::Signal::SIGKILL); // already reaped: nothing is sent
/// ```
#[derive(Clone)]
pub struct Signaller {
    slot: Arc<ChildSlot>,
}

impl Signaller {
    /// Sends `sig`; a signal asked for before the process existed is sent once it does.
    pub fn signal(&self, sig: Signal) {
        self.slot.signal(sig);
    }
}

impl std::fmt::Debug for Signaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signaller")
    }
}
