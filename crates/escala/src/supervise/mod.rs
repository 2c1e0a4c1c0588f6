//! Supervision: keep daemons alive, as cotyledon and supervisord do.
//!
//! A [`Supervisor`] runs [`Service`]s of N workers each — a command or a registered task in
//! a re-executed child — and restarts a worker by its [`Restart`] policy the moment it dies
//! (the unit's watcher thread blocks in `waitid`: no polling), after a capped exponential
//! [`Backoff`]. A service that dies [`CrashLoop::max`] times within the window is marked
//! failed. Every worker leads its own process group and dies with the supervisor
//! (`PR_SET_PDEATHSIG`); stopping one sends the service's stop signal to the group, waits
//! the stop timeout, then kills the group. A reload replaces the workers of changed services
//! one at a time — start the new one, wait until it is ready, stop the old — so a service
//! never has zero workers. Hooks and subscribers see every [`SupervisorEvent`].
//!
//! In-process background work has its own pieces: [`Periodic`] runs a unit every interval
//! (no overlap by default, with jitter) and [`DaemonThread`] keeps a daemon thread alive
//! with the same restart policy, backoff and crash-loop limit.
//!
//! ```
//! use escala::supervise::{Service, Supervisor, SupervisorEvent};
//! use nix::sys::signal::{Signal, kill};
//!
//! fn main() {
//!     let _exit = escala::init();
//!     let (tx, started) = std::sync::mpsc::channel();
//!     let sup = Supervisor::builder()
//!         .service(Service::shell("sleeper", "exec sleep 60"))
//!         .on_event(move |e| {
//!             if let SupervisorEvent::WorkerStarted { pid, .. } = e {
//!                 let _ = tx.send(*pid);
//!             }
//!         })
//!         .start()
//!         .unwrap();
//!     let first = started.recv().unwrap();
//!     kill(nix::unistd::Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
//!     let second = started.recv().unwrap(); // replaced at once
//!     assert_ne!(first, second);
//!     assert!(sup.stop().is_success());
//! }
//! ```

mod control;
mod daemon;
mod event;
mod logfile;
mod notify;
mod periodic;
mod policy;
mod service;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

pub use daemon::{DaemonHandle, DaemonReport, DaemonThread};
pub use event::{Reload, ServiceState, ServiceStatus, SupervisorEvent, WorkerStatus};
pub use logfile::LogFile;
pub use notify::sd_notify_to;
pub use periodic::{Periodic, PeriodicHandle, PeriodicReport};
pub use policy::{Backoff, CrashLoop, Restart};
pub use service::{Output, Ready, Service};
pub use worker::WorkerExit;

use control::{Control, Msg};

/// Why a supervisor refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuperviseError {
    /// The services do not make a valid set (the message says which and why).
    #[error("{0}")]
    Invalid(String),
    /// No service has this name.
    #[error("no service is named `{0}`")]
    UnknownService(String),
    /// The supervisor is stopping (or has stopped).
    #[error("the supervisor is stopping")]
    Stopping,
    /// The supervisor could not set itself up.
    #[error("cannot start the supervisor: {0}")]
    Io(String),
}

type Hook = Box<dyn Fn(&SupervisorEvent) + Send + Sync>;

/// What the control thread shares with the [`Supervisor`] handle.
pub(crate) struct Shared {
    hooks: Vec<Hook>,
    subs: Mutex<Vec<Sender<SupervisorEvent>>>,
    ended: Mutex<Option<Ended>>,
    cv: Condvar,
}

impl Shared {
    pub(crate) fn emit(&self, ev: SupervisorEvent) {
        for hook in &self.hooks {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&ev))).is_err() {
                tracing::error!("a supervisor hook panicked");
            }
        }
        self.subs.lock().unwrap_or_else(|e| e.into_inner()).retain(|tx| tx.send(ev.clone()).is_ok());
    }
}

/// How a supervisor ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ended {
    /// Services that hit their crash-loop limit.
    pub failed: Vec<String>,
}

impl Ended {
    /// True when no service failed.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Configures a [`Supervisor`].
///
/// # Examples
///
/// ```
/// use escala::supervise::{Service, Supervisor, SupervisorEvent};
/// fn main() {
///     let _exit = escala::init();
///     let (tx, rx) = std::sync::mpsc::channel();
///     let sup = Supervisor::builder()
///         .service(Service::command("once", ["true"]).restart(escala::supervise::Restart::Never))
///         .on_event(move |e| if let SupervisorEvent::WorkerExited { exit, .. } = e { tx.send(exit.success()).unwrap() })
///         .start()
///         .unwrap();
///     assert!(rx.recv().unwrap());
///     assert!(sup.wait().is_success()); // nothing left to run: it ends by itself
/// }
/// ```
#[derive(Default)]
pub struct SupervisorBuilder {
    services: Vec<Service>,
    hooks: Vec<Hook>,
    exit_on_failure: bool,
    sd_notify: bool,
}

impl std::fmt::Debug for SupervisorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorBuilder").field("services", &self.services).finish_non_exhaustive()
    }
}

impl SupervisorBuilder {
    /// Adds a service.
    pub fn service(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    /// Adds services.
    pub fn services(mut self, services: impl IntoIterator<Item = Service>) -> Self {
        self.services.extend(services);
        self
    }

    /// Calls `hook` with every event, on the supervisor's thread (keep it short). A panic in
    /// it is logged and goes no further.
    pub fn on_event(mut self, hook: impl Fn(&SupervisorEvent) + Send + Sync + 'static) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }

    /// Stops everything when a service fails (default: keep the other services running).
    pub fn exit_on_failure(mut self, yes: bool) -> Self {
        self.exit_on_failure = yes;
        self
    }

    /// Sends `READY=1` (all services ready) and `STOPPING=1` to `$NOTIFY_SOCKET` when set,
    /// as systemd expects of a `Type=notify` unit (default: off).
    pub fn sd_notify(mut self, yes: bool) -> Self {
        self.sd_notify = yes;
        self
    }

    /// Checks the services and starts them (each after its dependencies are ready).
    ///
    /// # Errors
    ///
    /// [`SuperviseError::Invalid`] for duplicate names, an empty command, zero workers with
    /// dependents, unknown or circular dependencies; [`SuperviseError::Io`] when the
    /// runtime directory or the control thread cannot be created.
    pub fn start(self) -> Result<Supervisor, SuperviseError> {
        validate(&self.services)?;
        let dir = runtime_dir().map_err(|e| SuperviseError::Io(e.to_string()))?;
        let shared = Arc::new(Shared {
            hooks: self.hooks,
            subs: Mutex::new(Vec::new()),
            ended: Mutex::new(None),
            cv: Condvar::new(),
        });
        let (tx, rx) = control::Mailbox::new().map_err(|e| SuperviseError::Io(e.to_string()))?;
        let mut control = Control::new(tx.clone(), rx, shared.clone(), dir);
        control.exit_on_failure = self.exit_on_failure;
        control.sd_notify = self.sd_notify;
        let services = self.services;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("escala-supervisor".into())
            .spawn(move || {
                let failed = control.run(services);
                *s.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ended { failed });
                s.cv.notify_all();
            })
            .map_err(|e| SuperviseError::Io(e.to_string()))?;
        Ok(Supervisor { tx, shared })
    }
}

/// Keeps services of worker processes alive. See the [module docs](self).
///
/// Dropping it stops every worker gracefully and waits for them.
pub struct Supervisor {
    tx: control::Mailbox,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A builder with no services.
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder::default()
    }

    /// Receives every event from now on.
    pub fn subscribe(&self) -> Receiver<SupervisorEvent> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.shared.subs.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    /// The status of every service (empty once the supervisor has ended).
    pub fn status(&self) -> Vec<ServiceStatus> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send(Msg::Status(tx)).is_err() {
            return Vec::new();
        }
        rx.recv().unwrap_or_default()
    }

    /// Applies a new set of services: new ones start, removed ones stop, changed ones have
    /// their workers replaced one at a time; the rest are not touched.
    ///
    /// # Errors
    ///
    /// [`SuperviseError::Invalid`] as for [`SupervisorBuilder::start`] (nothing changes
    /// then); [`SuperviseError::Stopping`] once stopping.
    pub fn reload(&self, services: Vec<Service>) -> Result<Reload, SuperviseError> {
        validate(&services)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx.send(Msg::Reload(services, tx)).map_err(|_| SuperviseError::Stopping)?;
        rx.recv().map_err(|_| SuperviseError::Stopping)
    }

    /// Replaces the workers of one service one at a time (a rolling restart).
    ///
    /// # Errors
    ///
    /// [`SuperviseError::UnknownService`], or [`SuperviseError::Stopping`].
    pub fn restart(&self, name: &str) -> Result<(), SuperviseError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx.send(Msg::Restart(name.into(), tx)).map_err(|_| SuperviseError::Stopping)?;
        rx.recv().map_err(|_| SuperviseError::Stopping)?
    }

    /// Asks every worker to stop (stop signal, stop timeout, SIGKILL) without waiting.
    pub fn request_stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }

    /// Stops every worker and waits until all are gone.
    pub fn stop(&self) -> Ended {
        self.request_stop();
        self.wait()
    }

    /// Waits until the supervisor ends: stopped, a failure with
    /// [`exit_on_failure`](SupervisorBuilder::exit_on_failure), or nothing left to run.
    pub fn wait(&self) -> Ended {
        let mut ended = self.shared.ended.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(e) = ended.as_ref() {
                return e.clone();
            }
            ended = self.shared.cv.wait(ended).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; `None` if still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Ended> {
        let ended = self.shared.ended.lock().unwrap_or_else(|e| e.into_inner());
        let (ended, _) = self
            .shared
            .cv
            .wait_timeout_while(ended, timeout, |e| e.is_none())
            .unwrap_or_else(|e| e.into_inner());
        ended.clone()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private directory (mode 0700) for the workers' notify sockets.
fn runtime_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("escala-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

fn validate(services: &[Service]) -> Result<(), SuperviseError> {
    let bad = |m: String| Err(SuperviseError::Invalid(m));
    for (i, s) in services.iter().enumerate() {
        if s.name.is_empty() || s.name.contains(['/', '\n']) {
            return bad(format!("`{}` is not a service name", s.name));
        }
        if services[..i].iter().any(|o| o.name == s.name) {
            return bad(format!("two services are named `{}`", s.name));
        }
        if let service::Program::Command(argv) = &s.program {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return bad(format!("service `{}`: the command is empty", s.name));
            }
        }
        for d in &s.depends_on {
            if !services.iter().any(|o| o.name == *d) {
                return bad(format!("service `{}` depends on `{d}`, which is not a service", s.name));
            }
        }
    }
    // Circular dependencies: repeatedly drop services whose dependencies are all dropped.
    let mut left: Vec<&Service> = services.iter().collect();
    loop {
        let before = left.len();
        let names: Vec<&str> = left.iter().map(|s| s.name.as_str()).collect();
        let free: Vec<&str> = left
            .iter()
            .filter(|s| s.depends_on.iter().all(|d| !names.contains(&d.as_str())))
            .map(|s| s.name.as_str())
            .collect();
        left.retain(|s| !free.contains(&s.name.as_str()));
        if left.is_empty() {
            return Ok(());
        }
        if left.len() == before {
            let names: Vec<&str> = left.iter().map(|s| s.name.as_str()).collect();
            return bad(format!("circular depends_on among: {}", names.join(", ")));
        }
    }
}
