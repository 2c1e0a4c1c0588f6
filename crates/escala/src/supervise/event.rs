//! What a supervisor tells its hooks and subscribers, and what its status reports.

use std::time::Duration;

use serde::Serialize;

use super::worker::WorkerExit;

/// One thing that happened in a supervisor. Hooks and subscribers see them in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A worker process started (the start hook).
    WorkerStarted {
        /// The service.
        service: String,
        /// The worker's index in the service.
        worker: usize,
        /// Its pid (also its process group id).
        pid: u32,
    },
    /// A worker became ready (at start, or when it sent `READY=1`).
    WorkerReady {
        /// The service.
        service: String,
        /// The worker's index.
        worker: usize,
        /// Its pid.
        pid: u32,
    },
    /// A worker could not be started.
    SpawnFailed {
        /// The service.
        service: String,
        /// The worker's index.
        worker: usize,
        /// Why.
        error: String,
    },
    /// A worker died (the death hook), with its exit status.
    WorkerExited {
        /// The service.
        service: String,
        /// The worker's index.
        worker: usize,
        /// Its pid.
        pid: u32,
        /// How it ended.
        exit: WorkerExit,
        /// True when the supervisor had asked it to stop (stop, reload, restart).
        expected: bool,
    },
    /// A dead worker will be started again after `delay` (zero: at once).
    Restarting {
        /// The service.
        service: String,
        /// The worker's index.
        worker: usize,
        /// The backoff.
        delay: Duration,
    },
    /// The service hit its crash-loop limit: its workers are stopped and not restarted.
    ServiceFailed {
        /// The service.
        service: String,
        /// Deaths within the crash-loop window.
        deaths: u32,
    },
    /// New settings were applied (the reload hook).
    Reloaded(Reload),
    /// A rolling replacement (after a reload or a restart) finished.
    Replaced {
        /// The service.
        service: String,
    },
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reload {
    /// New services, started.
    pub added: Vec<String>,
    /// Services whose settings changed: their workers are replaced one at a time.
    pub changed: Vec<String>,
    /// Services no longer configured: stopped.
    pub removed: Vec<String>,
    /// Services left alone.
    pub unchanged: Vec<String>,
}

/// Where a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Not started yet: waiting for its dependencies to be ready.
    Waiting,
    /// Workers are running (or being restarted).
    Running,
    /// Every worker ended and none is to be restarted.
    Exited,
    /// Crash loop: given up on.
    Failed,
    /// Stopped by the supervisor.
    Stopped,
}

/// The status of one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// Its state.
    pub state: ServiceState,
    /// Restarts of its workers since it started.
    pub restarts: u64,
    /// Its workers.
    pub workers: Vec<WorkerStatus>,
}

/// The status of one worker slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus {
    /// The worker's index.
    pub index: usize,
    /// The running process, if any.
    pub pid: Option<u32>,
    /// Whether it is ready.
    pub ready: bool,
    /// How long the running process has been up.
    #[serde(serialize_with = "secs")]
    pub uptime: Duration,
    /// Restarts of this slot.
    pub restarts: u64,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
