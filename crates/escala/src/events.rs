//! Lifecycle events: the one source for logs, progress bars, `--events` files and timelines.
//!
//! Units emit an [`Event`] when a task is queued, starts, finishes (with its outcome), is
//! retried or cancelled, and when a worker starts or is lost. Emitting costs one relaxed
//! atomic load while nobody listens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::handle::{Core, TaskId, UnitKind};

/// One thing that happened to one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Time since the process's event clock started (monotonic; orders events).
    #[serde(with = "micros")]
    pub at: Duration,
    /// Wall-clock time, microseconds since the Unix epoch.
    pub unix_us: u64,
    /// The task.
    pub task: TaskId,
    /// The task's name.
    pub name: String,
    /// Which kind of unit runs it.
    pub unit: UnitKind,
    /// The pid that runs (or ran) the task.
    pub pid: u32,
    /// The OS thread id that emitted the event.
    pub tid: i32,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventKind {
    /// Accepted by an executor, waiting for a worker.
    Queued,
    /// Began running.
    Started,
    /// Ended with an outcome: `"ok"` or an error label such as `"panicked"`.
    Finished {
        /// `"ok"` or the [`crate::ErrorKind::label`] of the error.
        outcome: String,
        /// The error's text, when there was one.
        error: Option<String>,
    },
    /// Will run again after an error.
    Retried {
        /// The attempt that is about to run (2 for the first retry).
        attempt: u32,
        /// The backoff before it.
        delay_ms: u64,
    },
    /// Cancelled by its caller.
    Cancelled,
    /// A worker process started.
    WorkerStarted,
    /// A worker process died.
    WorkerLost {
        /// How it ended (`"killed by SIGKILL"`, `"exited with code 3"`).
        reason: String,
    },
    /// A pool's worker slot died too often and waits before starting the next worker.
    /// Emitted for the pool itself: `task` is `#0` and `name` the pool's name.
    CrashLoop {
        /// The worker slot.
        worker: usize,
        /// Deaths within the crash-loop window.
        deaths: usize,
        /// The wait before the next start.
        backoff_ms: u64,
    },
}

mod micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

static LISTENERS: AtomicUsize = AtomicUsize::new(0);
static SUBSCRIBERS: RwLock<Vec<(u64, Sender<Event>)>> = RwLock::new(Vec::new());
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The instant the event clock counts from.
pub fn epoch() -> Instant {
    *EPOCH
}

/// True while at least one [`Subscription`] is alive.
#[inline]
pub fn enabled() -> bool {
    LISTENERS.load(Ordering::Relaxed) != 0
}

/// A live subscription to every event of this process. Dropping it unsubscribes.
///
/// # Examples
///
/// ```
/// use escala::events::{self, EventKind};
/// let sub = events::subscribe();
/// escala::thread::spawn("seen", || ()).join().unwrap();
/// let kinds: Vec<_> = sub.try_iter().filter(|e| e.name == "seen").map(|e| e.kind).collect();
/// assert_eq!(kinds[0], EventKind::Started);
/// assert!(matches!(kinds[1], EventKind::Finished { .. }));
/// ```
pub struct Subscription {
    id: u64,
    rx: Receiver<Event>,
}

/// Starts receiving every event emitted from now on.
pub fn subscribe() -> Subscription {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let _ = *EPOCH;
    let id = NEXT.fetch_add(1, Ordering::Relaxed) as u64;
    let (tx, rx) = crossbeam_channel::unbounded();
    SUBSCRIBERS.write().unwrap_or_else(|e| e.into_inner()).push((id, tx));
    LISTENERS.fetch_add(1, Ordering::Relaxed);
    Subscription { id, rx }
}

impl std::ops::Deref for Subscription {
    type Target = Receiver<Event>;
    fn deref(&self) -> &Receiver<Event> {
        &self.rx
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        SUBSCRIBERS.write().unwrap_or_else(|e| e.into_inner()).retain(|(id, _)| *id != self.id);
        LISTENERS.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn emit(core: &Core, kind: EventKind) {
    let pid = core.pid();
    let pid = if pid == 0 { std::process::id() } else { pid };
    send(event(core.id, core.name.to_string(), core.kind, pid, kind));
}

/// Emits [`EventKind::Retried`] for the task behind `handle`, for a caller that runs a failed
/// unit again by itself (as `escala run --retries` does, one unit per attempt): `attempt` is
/// the run about to start (2 for the first retry), `delay` the wait before it. Costs one
/// relaxed load while nobody listens.
///
/// # Examples
///
/// ```
/// use escala::events::{self, EventKind};
/// let sub = events::subscribe();
/// let h = escala::process::Command::new("false").spawn();
/// events::emit_retried(&h, 2, std::time::Duration::from_millis(5));
/// let _ = h.join();
/// let retried = sub.try_iter().find(|e| matches!(e.kind, EventKind::Retried { .. })).unwrap();
/// assert_eq!(retried.kind, EventKind::Retried { attempt: 2, delay_ms: 5 });
/// ```
pub fn emit_retried<T>(handle: &crate::Handle<T>, attempt: u32, delay: Duration) {
    if enabled() {
        emit(handle.core(), EventKind::Retried { attempt, delay_ms: delay.as_millis() as u64 });
    }
}

/// Emits an event about a pool rather than one task (`task` is `#0`).
pub(crate) fn emit_pool(name: &str, kind: EventKind) {
    send(event(TaskId(0), name.to_string(), UnitKind::PoolTask, std::process::id(), kind));
}

fn event(task: TaskId, name: String, unit: UnitKind, pid: u32, kind: EventKind) -> Event {
    Event {
        // Whole microseconds, so an event survives a JSON round trip unchanged.
        at: Duration::from_micros(EPOCH.elapsed().as_micros() as u64),
        unix_us: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64),
        task,
        name,
        unit,
        pid,
        tid: nix::unistd::gettid().as_raw(),
        kind,
    }
}

pub(crate) fn emit_finished(core: &Core, err: Option<&TaskError>) {
    let kind = match err {
        None => EventKind::Finished { outcome: "ok".into(), error: None },
        Some(e) => EventKind::Finished { outcome: e.label().into(), error: Some(e.kind().to_string()) },
    };
    emit(core, kind);
}

fn send(ev: Event) {
    let subs = SUBSCRIBERS.read().unwrap_or_else(|e| e.into_inner());
    if let Some(((_, last), rest)) = subs.split_last() {
        for (_, tx) in rest {
            let _ = tx.send(ev.clone());
        }
        let _ = last.send(ev);
    }
}
