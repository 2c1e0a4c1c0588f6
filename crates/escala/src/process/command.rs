//! Command units: an external program as a process unit, with the same handle.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::slot::ChildSlot;
use super::sys;
use crate::error::{ErrorKind, ExitReason};
use crate::events::{self, EventKind};
use crate::handle::{Handle, TaskName, UnitKind, pair};
use crate::runtime::{self, LiveUnit};

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
        self.inner.env(key, value);
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl AsRef<std::path::Path>) -> Command {
        self.inner.current_dir(dir);
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

    /// Starts the command.
    pub fn spawn(self) -> Handle<()> {
        let Command { mut inner, name, daemon, grace } = self;
        let kind = if daemon { UnitKind::DaemonProcess } else { UnitKind::Command };
        let (handle, c) = pair::<()>(TaskName::from(name.clone()), kind);
        let slot = Arc::new(ChildSlot::new());
        let (ended_tx, ended_rx) = crossbeam_channel::bounded::<()>(0);
        slot.install_cancel(&handle, ended_rx.clone(), grace);
        runtime::register(LiveUnit {
            id: handle.id(),
            name,
            kind,
            daemon,
            ended: ended_rx,
            stop: {
                let slot = slot.clone();
                Box::new(move || {
                    if daemon {
                        slot.signal(Signal::SIGTERM)
                    }
                })
            },
            force: {
                let slot = slot.clone();
                Some(Box::new(move || slot.signal(Signal::SIGKILL)))
            },
        });
        let watcher =
            std::thread::Builder::new().name(format!("escala-cmd-{}", handle.id().0)).spawn(move || {
                let _ended = ended_tx;
                let child = match inner.spawn() {
                    Ok(ch) => ch,
                    Err(e) => {
                        c.fail(ErrorKind::Spawn(format!(
                            "cannot run `{}`: {e}",
                            inner.get_program().to_string_lossy()
                        )));
                        return;
                    }
                };
                let pid = child.id();
                c.core().set_pid(pid);
                slot.put(child);
                if events::enabled() {
                    events::emit(c.core(), EventKind::Started);
                }
                sys::wait_exit_no_reap(pid);
                match slot.reap().map(ExitReason::from_status) {
                    Some(ExitReason::Code(0)) => {
                        c.ok(());
                    }
                    Some(ExitReason::Code(code)) => {
                        c.fail(ErrorKind::Exited(code));
                    }
                    other => {
                        let reason = other.unwrap_or(ExitReason::Code(-1));
                        c.fail(ErrorKind::WorkerLost { reason, stderr: Vec::new() });
                    }
                }
            });
        if let Err(e) = watcher {
            tracing::error!("could not start a watcher thread: {e}");
        }
        handle
    }
}
