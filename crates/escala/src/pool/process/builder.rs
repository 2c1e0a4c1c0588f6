//! [`ProcessPoolBuilder`]: a process pool's settings, and starting its worker slots.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::life::slot_main;
use super::slot::Slot;
use super::{Config, ProcessPool, Shared};
use crate::pool::clock::Clock;
use crate::pool::policy::{QueuePolicy, RetryPolicy};
use crate::process::frame::DEFAULT_MAX_FRAME;
use crate::task::{self, Call, Task};

/// Configures a [`ProcessPool`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use escala::{ProcessPool, RetryPolicy};
///
/// fn main() {
///     let _exit = escala::init();
///     let pool = ProcessPool::builder()
///         .size(2)
///         .timeout(Duration::from_secs(30))
///         .retry(RetryPolicy::attempts(2))
///         .max_tasks_per_worker(10_000)
///         .build();
///     assert_eq!(pool.size(), 2);
/// }
/// ```
#[must_use]
pub struct ProcessPoolBuilder {
    size: Option<usize>,
    name: String,
    cfg: Config,
}

impl std::fmt::Debug for ProcessPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPoolBuilder")
            .field("size", &self.size)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ProcessPool {
    /// A builder with the defaults.
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder {
            size: None,
            name: "escala-procs".into(),
            cfg: Config {
                timeout: None,
                retry: RetryPolicy::never(),
                max_frame: DEFAULT_MAX_FRAME,
                max_tasks: None,
                max_rss: None,
                idle: None,
                crash_max: 5,
                crash_window: Duration::from_secs(10),
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(15),
                grace: Duration::from_secs(1),
                stderr_tail: 20,
                init: None,
                cap: None,
                window: 0,
            },
        }
    }
}

impl ProcessPoolBuilder {
    /// Worker count (default: the available parallelism, which respects cgroup CPU quotas).
    pub fn size(mut self, n: usize) -> Self {
        self.size = Some(n.max(1));
        self
    }

    /// Name of the pool's threads.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Bounds the queue to `capacity` waiting tasks, with `policy` when it is full
    /// (caller-runs runs the task in this process, on the submitting thread).
    pub fn queue(mut self, capacity: usize, policy: QueuePolicy) -> Self {
        self.cfg.cap = Some((capacity.max(1), policy));
        self
    }

    /// A task running longer than `d` resolves as timed out; its token is set, then after
    /// the stop grace its worker gets SIGTERM, then SIGKILL, and is replaced.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.cfg.timeout = Some(d);
        self
    }

    /// How failed, panicked, lost or timed-out tasks are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.cfg.retry = policy;
        self
    }

    /// Runs `call` in each worker before it takes tasks; if it fails, the worker is not
    /// used (and queued callers are told if no worker can start).
    pub fn initializer<K: Task>(mut self, call: Call<K>) -> Self {
        if let Ok(args) = task::encode(call.args()) {
            self.cfg.init = Some((K::NAME.to_string(), args));
        }
        self
    }

    /// Caps encoded arguments and results, in bytes (default 64 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.cfg.max_frame = bytes;
        self
    }

    /// Replaces a worker after it ran `n` tasks.
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.cfg.max_tasks = Some(n.max(1));
        self
    }

    /// Replaces a worker whose resident memory passes `bytes` (sampled every 64 tasks).
    pub fn max_rss(mut self, bytes: u64) -> Self {
        self.cfg.max_rss = Some(bytes);
        self
    }

    /// Replaces a worker that had no work for `d`.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.idle = Some(d);
        self
    }

    /// More than `max` worker deaths within `window` is a crash loop: the slot then waits
    /// (from `initial`, doubling up to `cap`) before each new start. Defaults: 5 in 10 s,
    /// 100 ms → 15 s.
    pub fn crash_loop(mut self, max: usize, window: Duration, initial: Duration, cap: Duration) -> Self {
        self.cfg.crash_max = max;
        self.cfg.crash_window = window;
        self.cfg.backoff_initial = initial;
        self.cfg.backoff_max = cap.max(initial);
        self
    }

    /// Time between asking a task to stop and SIGTERM, and between SIGTERM and SIGKILL.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.cfg.grace = grace;
        self
    }

    /// Lines of a worker's stderr kept to report when it is lost (default 20; 0 leaves
    /// stderr inherited untouched).
    pub fn stderr_tail(mut self, lines: usize) -> Self {
        self.cfg.stderr_tail = lines;
        self
    }

    /// Tasks `map_tasks` keeps in flight (default: 4096 × size; batches are at most half
    /// a worker's share of it, and encoded arguments in flight stay under 64 MiB).
    pub fn map_window(mut self, n: usize) -> Self {
        self.cfg.window = n.max(1);
        self
    }

    /// Starts the worker slots (each starts its worker process).
    ///
    /// Without `escala::init()` in `main` no worker can start: every task then resolves as
    /// [`ErrorKind::Spawn`](crate::ErrorKind::Spawn).
    ///
    /// # Panics
    ///
    /// If the OS refuses to start a slot thread.
    pub fn build(mut self) -> ProcessPool {
        let size = self.size.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if self.cfg.window == 0 {
            self.cfg.window = 4096 * size;
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let (close_tx, close_rx) = crossbeam_channel::bounded::<()>(0);
        let ready = crate::runtime::is_initialized();
        let name: Arc<str> = self.name.into();
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            name: name.clone(),
            cfg: self.cfg,
            requeue: tx.clone(),
            tx: CachePadded::new(RwLock::new(Some(tx))),
            rx,
            close_tx: Mutex::new(Some(close_tx)),
            close_rx,
            slots: (0..size).map(Slot::new).collect(),
            clock: Clock::new(size, name.to_string()),
            cancelling: AtomicBool::new(false),
            retry_pending: AtomicUsize::new(0),
            queued: CachePadded::new(AtomicI64::new(0)),
            submitted: CachePadded::new(AtomicU64::new(0)),
            counts: Default::default(),
            retried: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            crash_loops: AtomicU64::new(0),
            ready,
            space: (Mutex::new(()), Condvar::new()),
            live: Mutex::new(if ready { size } else { 0 }),
            ended: Condvar::new(),
            nap: (Mutex::new(()), Condvar::new()),
        });
        if ready {
            for idx in 0..size {
                let pool = shared.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{idx}"))
                    .spawn(move || slot_main(pool, idx))
                    .expect("cannot start a process pool slot thread");
            }
        }
        ProcessPool { shared }
    }
}
