//! The exit policy: what happens to still-running units when `main` returns.
//!
//! Like Python, non-daemon units (threads, processes) are joined; daemon units get a stop
//! request (their [`crate::CancelToken`] is set, daemon processes get SIGTERM), a grace
//! period, and then daemon processes are killed. What was still running is reported.
//! [`init`] (or `#[escala::main]`) returns the [`ExitGuard`] that applies this policy when
//! dropped; it is also where a re-executed child process takes over to run its task.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

use crate::handle::{TaskId, UnitKind};

static INITIALIZED: AtomicBool = AtomicBool::new(false);
static LIVE: Mutex<Registry> = Mutex::new(Registry { units: Vec::new(), prune_at: 64 });

struct Registry {
    units: Vec<LiveUnit>,
    prune_at: usize,
}

/// What the exit policy needs to know about one running unit.
pub(crate) struct LiveUnit {
    pub(crate) id: TaskId,
    pub(crate) name: String,
    pub(crate) kind: UnitKind,
    pub(crate) daemon: bool,
    /// Disconnects when the unit has really ended (thread returned, child reaped).
    pub(crate) ended: Receiver<()>,
    /// Asks the unit to stop (sets its token, or sends the stop signal).
    pub(crate) stop: Box<dyn FnOnce() + Send>,
    /// Forces the unit to stop after the grace period (SIGKILL), where that is possible.
    pub(crate) force: Option<Box<dyn FnOnce() + Send>>,
    /// The unit's own grace period; the guard's applies when `None`.
    pub(crate) grace: Option<Duration>,
}

fn has_ended(rx: &Receiver<()>) -> bool {
    matches!(rx.try_recv(), Err(TryRecvError::Disconnected))
}

pub(crate) fn register(unit: LiveUnit) {
    let mut reg = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if reg.units.len() >= reg.prune_at {
        reg.units.retain(|u| !has_ended(&u.ended));
        reg.prune_at = (reg.units.len() * 2).max(64);
    }
    reg.units.push(unit);
}

pub(crate) fn is_initialized() -> bool {
    INITIALIZED.load(Ordering::Acquire)
}

pub(crate) fn mark_initialized() {
    INITIALIZED.store(true, Ordering::Release);
}

/// Prepares the process for escala units and returns the guard that applies the exit policy.
///
/// Call it first thing in `main` (or put `#[escala::main]` on `main`). In a child process
/// started by a process unit this call never returns: it runs the requested task and exits.
///
/// # Examples
///
/// ```
/// fn main() {
///     let _exit = escala::init();
///     escala::thread::spawn("background", || ()); // joined when `_exit` drops
/// }
/// ```
pub fn init() -> ExitGuard {
    crate::process::child::run_if_child();
    mark_initialized();
    ExitGuard::new()
}

/// Applies the exit policy when dropped (or on [`ExitGuard::shutdown`]).
#[must_use = "the exit policy runs when the guard is dropped: keep it alive until main ends"]
#[derive(Debug)]
pub struct ExitGuard {
    grace: Duration,
    done: bool,
}

/// What the exit policy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExitReport {
    /// Non-daemon units that were still running and were waited for.
    pub joined: Vec<String>,
    /// Daemon units that stopped within the grace period after the stop request.
    pub stopped: Vec<String>,
    /// Daemon processes killed after the grace period.
    pub killed: Vec<String>,
    /// Daemon threads still running after the grace period; the process exits without them.
    pub abandoned: Vec<String>,
}

impl ExitGuard {
    pub(crate) fn new() -> ExitGuard {
        ExitGuard { grace: Duration::from_secs(1), done: false }
    }

    /// How long daemon units get between the stop request and being killed or abandoned.
    /// Default: 1 s.
    pub fn daemon_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Applies the exit policy now and says what it did. Idempotent.
    pub fn shutdown(mut self) -> ExitReport {
        self.run()
    }

    fn run(&mut self) -> ExitReport {
        if std::mem::replace(&mut self.done, true) {
            return ExitReport::default();
        }
        shutdown_units(self.grace)
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let report = self.run();
        for name in &report.killed {
            eprintln!("escala: daemon {name} did not stop within {:?}; killed", self.grace);
        }
        for name in &report.abandoned {
            eprintln!("escala: daemon {name} still running after {:?}; abandoned at exit", self.grace);
        }
    }
}

fn label(u: &LiveUnit) -> String {
    format!("{} `{}` ({})", u.kind, u.name, u.id)
}

fn shutdown_units(grace: Duration) -> ExitReport {
    let units = std::mem::take(&mut LIVE.lock().unwrap_or_else(|e| e.into_inner()).units);
    let (daemons, others): (Vec<_>, Vec<_>) =
        units.into_iter().filter(|u| !has_ended(&u.ended)).partition(|u| u.daemon);
    let mut report = ExitReport::default();
    // Non-daemon units first, while daemons keep serving them (Python's order).
    for u in others {
        report.joined.push(label(&u));
        let _ = u.ended.recv();
    }
    // Units started while joining (a thread may start another) are joined too.
    if !LIVE.lock().unwrap_or_else(|e| e.into_inner()).units.is_empty() {
        let more = shutdown_units(grace);
        report.joined.extend(more.joined);
        report.stopped.extend(more.stopped);
        report.killed.extend(more.killed);
        report.abandoned.extend(more.abandoned);
    }
    let mut pending = Vec::new();
    let stop_time = Instant::now();
    for u in daemons {
        if has_ended(&u.ended) {
            continue;
        }
        let name = label(&u);
        (u.stop)();
        pending.push((stop_time + u.grace.unwrap_or(grace), name, u.ended, u.force));
    }
    pending.sort_by_key(|p| p.0);
    for (deadline, name, ended, force) in pending {
        let left = deadline.saturating_duration_since(Instant::now());
        if ended.recv_timeout(left).is_err_and(|e| e.is_disconnected()) {
            report.stopped.push(name);
        } else if let Some(force) = force {
            force();
            let _ = ended.recv_timeout(Duration::from_secs(5));
            report.killed.push(name);
        } else {
            report.abandoned.push(name);
        }
    }
    report
}
