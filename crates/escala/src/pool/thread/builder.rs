//! [`ThreadPoolBuilder`]: a pool's settings, and starting its workers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::worker::worker_main;
use super::{Init, PoolShared, ThreadPool};
use crate::pool::clock::Clock;
use crate::pool::policy::{QueuePolicy, RetryPolicy};
use crate::pool::stats::WorkerStats;

/// Configures a [`ThreadPool`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use escala::{QueuePolicy, ThreadPool};
/// let pool = ThreadPool::builder()
///     .size(2)
///     .name("io")
///     .queue(100, QueuePolicy::Block)
///     .timeout(Duration::from_secs(30))
///     .build();
/// assert_eq!(pool.size(), 2);
/// ```
#[derive(Clone)]
#[must_use]
pub struct ThreadPoolBuilder {
    size: Option<usize>,
    name: String,
    cap: Option<(usize, QueuePolicy)>,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    init: Option<Init>,
    window: Option<usize>,
    stack_size: Option<usize>,
}

impl std::fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("size", &self.size)
            .field("name", &self.name)
            .field("queue", &self.cap)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ThreadPoolBuilder {
    /// Worker count (default: the available parallelism, which respects cgroup CPU quotas).
    pub fn size(mut self, n: usize) -> Self {
        self.size = Some(n.max(1));
        self
    }

    /// Prefix of worker thread names (`name-0`, `name-1`, …) and default task name.
    pub fn name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Bounds the queue to `capacity` waiting tasks, with `policy` when it is full.
    pub fn queue(mut self, capacity: usize, policy: QueuePolicy) -> Self {
        self.cap = Some((capacity.max(1), policy));
        self
    }

    /// Every task times out after `d` of running: its handle resolves as
    /// [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) at once and its
    /// [`CancelToken`](crate::CancelToken) is set.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Retry policy for [`ThreadPool::submit_fallible`] and registered tasks. A timeout is
    /// final on a thread pool (a thread cannot be stopped from outside).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Runs `f(worker_index)` on each worker thread before it takes tasks.
    pub fn initializer(mut self, f: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.init = Some(Arc::new(f));
        self
    }

    /// Tasks kept in flight by `map` (default: 4 × size, at least 16).
    pub fn map_window(mut self, n: usize) -> Self {
        self.window = Some(n.max(1));
        self
    }

    /// Stack size of the worker threads.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts the workers.
    ///
    /// # Panics
    ///
    /// If the OS refuses to start a worker thread.
    pub fn build(self) -> ThreadPool {
        let size = self.size.unwrap_or_else(default_size);
        let (tx, rx) = crossbeam_channel::unbounded();
        let name: Arc<str> = self.name.into();
        let shared = Arc::new(CachePadded::new(PoolShared {
            name: name.clone(),
            tx: RwLock::new(Some(tx)),
            rx,
            cap: self.cap,
            space: Condvar::new(),
            space_lock: Mutex::new(()),
            blocked: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            submits: CachePadded::default(),
            rejected: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            cancelled_queued: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            retry_cancelled: AtomicU64::new(0),
            cancelling: AtomicBool::new(false),
            workers: (0..size).map(|_| CachePadded::new(WorkerStats::new())).collect(),
            timeout: self.timeout,
            retry: self.retry,
            clock: Clock::new(size, name.to_string()),
            live: Mutex::new(size),
            ended: Condvar::new(),
            window: self.window.unwrap_or((4 * size).max(16)),
        }));
        for index in 0..size {
            let pool = shared.clone();
            let init = self.init.clone();
            let mut b = std::thread::Builder::new().name(format!("{name}-{index}"));
            if let Some(s) = self.stack_size {
                b = b.stack_size(s);
            }
            b.spawn(move || worker_main(pool, index, init)).expect("cannot start a pool worker thread");
        }
        ThreadPool { shared }
    }
}

fn default_size() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl ThreadPool {
    /// A builder with the defaults.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder {
            size: None,
            name: "escala-pool".into(),
            cap: None,
            timeout: None,
            retry: RetryPolicy::never(),
            init: None,
            window: None,
            stack_size: None,
        }
    }
}
