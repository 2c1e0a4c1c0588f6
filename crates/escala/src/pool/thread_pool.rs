//! [`ThreadPool`]: a fixed set of worker threads with futures, bounded queues, cooperative
//! cancellation, timeouts, retries and stats.
//!
//! Tasks travel to workers over one MPMC channel (`crossbeam-channel`). A task is a boxed
//! closure that owns its [`Completer`]; a queued task that is cancelled is resolved at once
//! and skipped (never run) when a worker reaches it. Counters live per worker.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;

use super::clock::Clock;
use super::map::{Map, MapUnordered};
use super::policy::{QueuePolicy, RetryPolicy};
use super::stats::{Stats, WorkerStats, summarize};
use super::{Executor, Shutdown};
use crate::error::{ErrorKind, Outcome};
use crate::events::{self, EventKind};
use crate::handle::{CancelToken, Completer, Handle, TaskName, UnitKind, pair};
use crate::task::{self, Call, Task};
use crate::unwind::run_task;

type Job = Box<dyn FnOnce(&Worker<'_>) + Send>;
type Init = Arc<dyn Fn(usize) + Send + Sync>;

struct PoolShared {
    name: Arc<str>,
    tx: RwLock<Option<Sender<Job>>>,
    rx: Receiver<Job>,
    cap: Option<(usize, QueuePolicy)>,
    space: Condvar,
    space_lock: Mutex<()>,
    blocked: AtomicUsize,
    submitted: AtomicU64,
    rejected: AtomicU64,
    cancelled: AtomicU64,
    retried: AtomicU64,
    workers: Box<[CachePadded<WorkerStats>]>,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    clock: Clock,
    live: Mutex<usize>,
    ended: Condvar,
    window: usize,
}

struct Worker<'a> {
    index: usize,
    stats: &'a WorkerStats,
    pool: &'a Arc<PoolShared>,
}

thread_local! {
    static IN_POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A pool of worker threads running closures and registered tasks, each with its own
/// [`Handle`].
///
/// Dropping the pool finishes queued work (like [`Executor::shutdown`] with the defaults).
///
/// # Examples
///
/// ```
/// use escala::ThreadPool;
/// let pool = ThreadPool::new(3);
/// let handles: Vec<_> = (0..3).map(|i| pool.submit(move || i * i)).collect();
/// let squares: Vec<i32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
/// assert_eq!(squares, vec![0, 1, 4]);
/// ```
pub struct ThreadPool {
    shared: Arc<PoolShared>,
}

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
    /// [`ErrorKind::TimedOut`] at once and its [`CancelToken`] is set.
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
        let shared = Arc::new(PoolShared {
            name: name.clone(),
            tx: RwLock::new(Some(tx)),
            rx,
            cap: self.cap,
            space: Condvar::new(),
            space_lock: Mutex::new(()),
            blocked: AtomicUsize::new(0),
            submitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            workers: (0..size).map(|_| CachePadded::new(WorkerStats::new())).collect(),
            timeout: self.timeout,
            retry: self.retry,
            clock: Clock::new(size, name.to_string()),
            live: Mutex::new(size),
            ended: Condvar::new(),
            window: self.window.unwrap_or((4 * size).max(16)),
        });
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

fn worker_main(pool: Arc<PoolShared>, index: usize, init: Option<Init>) {
    IN_POOL.with(|p| p.set(Arc::as_ptr(&pool) as usize));
    if let Some(init) = init {
        if let Err(k) = run_task(CancelToken::never(), || init(index)) {
            eprintln!("escala: pool `{}` worker {index}: initializer {k}", pool.name);
        }
    }
    let w = Worker { index, stats: &pool.workers[index], pool: &pool };
    while let Ok(job) = pool.rx.recv() {
        if pool.blocked.load(Ordering::Relaxed) > 0 {
            let _g = pool.space_lock.lock();
            pool.space.notify_all();
        }
        job(&w);
    }
    let mut live = pool.live.lock().unwrap_or_else(|e| e.into_inner());
    *live -= 1;
    pool.ended.notify_all();
}

impl Worker<'_> {
    /// Marks the start of a task; false if it was cancelled while queued.
    fn begin<T>(&self, c: &Completer<T>) -> bool {
        if c.is_done() || !c.core().try_start() {
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        if events::enabled() {
            events::emit(c.core(), EventKind::Started);
        }
        true
    }

    /// Runs `f` as the task of `c` with timing, timeout and panic capture.
    fn run<T: Send + 'static, R>(
        &self,
        c: &Completer<T>,
        f: impl FnOnce() -> R,
    ) -> (Result<R, ErrorKind>, Duration) {
        let token = CancelToken::of(c);
        if let Some(t) = self.pool.timeout {
            self.pool.clock.arm(self.index, token.clone(), t);
        }
        let t0 = Instant::now();
        let r = run_task(token, f);
        let took = t0.elapsed();
        if self.pool.timeout.is_some() {
            self.pool.clock.disarm(self.index);
        }
        (r, took)
    }

    /// Writes the outcome and counts it (a cancel or timeout that won counts as such).
    fn finish<T>(&self, c: &Completer<T>, out: Outcome<T>, took: Duration) {
        let ok = out.is_ok();
        if c.complete(out) {
            self.stats.record(took, ok);
        } else if c.was_timed_out() {
            self.stats.record(took, false);
        } else {
            self.stats.record(took, true);
            self.pool.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl PoolShared {
    fn queued(&self) -> u64 {
        let popped: u64 = self
            .workers
            .iter()
            .map(|w| w.started.load(Ordering::Relaxed) + w.discarded.load(Ordering::Relaxed))
            .sum();
        self.submitted.load(Ordering::Relaxed).saturating_sub(popped)
    }

    /// Sends a job; gives it back if the pool is shut down.
    fn send(&self, job: Job) -> Result<(), Job> {
        let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
        match tx.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.into_inner()),
            None => Err(job),
        }
    }
}

enum Admit {
    Go,
    Reject(String),
    RunHere,
}

impl ThreadPool {
    /// A pool of `size` workers with the defaults.
    pub fn new(size: usize) -> ThreadPool {
        ThreadPool::builder().size(size).build()
    }

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

    /// Worker count.
    pub fn size(&self) -> usize {
        self.shared.workers.len()
    }

    fn admit(&self) -> Admit {
        let p = &self.shared;
        if p.tx.read().unwrap_or_else(|e| e.into_inner()).is_none() {
            return Admit::Reject("the pool is shut down".into());
        }
        let Some((cap, policy)) = p.cap else {
            return Admit::Go;
        };
        if p.queued() < cap as u64 {
            return Admit::Go;
        }
        match policy {
            QueuePolicy::Reject => Admit::Reject(format!("the queue is full ({cap} tasks)")),
            QueuePolicy::CallerRuns => Admit::RunHere,
            QueuePolicy::Block => {
                p.blocked.fetch_add(1, Ordering::SeqCst);
                let mut g = p.space_lock.lock().unwrap_or_else(|e| e.into_inner());
                while p.queued() >= cap as u64 && p.tx.read().unwrap_or_else(|e| e.into_inner()).is_some() {
                    g = p
                        .space
                        .wait_timeout(g, Duration::from_millis(50))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                drop(g);
                p.blocked.fetch_sub(1, Ordering::SeqCst);
                Admit::Go
            }
        }
    }

    /// Queues `body` as a task named `name`, applying the queue policy.
    fn enqueue<T, B>(&self, name: TaskName, body: B) -> Handle<T>
    where
        T: Send + 'static,
        B: FnOnce(&Worker<'_>, Completer<T>) + Send + 'static,
    {
        let (handle, c) = pair::<T>(name, UnitKind::PoolTask);
        match self.admit() {
            Admit::Go => {}
            Admit::Reject(why) => {
                self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                c.fail(ErrorKind::Rejected(why));
                return handle;
            }
            Admit::RunHere => {
                // Runs on the caller's thread, counted on worker 0's books.
                self.shared.submitted.fetch_add(1, Ordering::Relaxed);
                let w = Worker { index: 0, stats: &self.shared.workers[0], pool: &self.shared };
                body(&w, c);
                return handle;
            }
        }
        self.shared.submitted.fetch_add(1, Ordering::Relaxed);
        if events::enabled() {
            events::emit(c.core(), EventKind::Queued);
        }
        if let Err(job) = self.shared.send(Box::new(move |w: &Worker<'_>| body(w, c))) {
            // Shut down between admission and send: dropping the job resolves the handle.
            self.shared.submitted.fetch_sub(1, Ordering::Relaxed);
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            drop(job);
        }
        handle
    }

    /// Runs `f` on a worker.
    pub fn submit<T, F>(&self, f: F) -> Handle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit_as(TaskName::Shared(self.shared.name.clone()), f)
    }

    /// Runs `f` on a worker, as a task named `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = escala::ThreadPool::new(1);
    /// let h = pool.submit_named("Concurrencia 0", || ());
    /// assert_eq!(h.name(), "Concurrencia 0");
    /// ```
    pub fn submit_named<T, F>(&self, name: impl Into<String>, f: F) -> Handle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit_as(TaskName::from(name.into()), f)
    }

    fn submit_as<T, F>(&self, name: TaskName, f: F) -> Handle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.enqueue(name, move |w, c| {
            if !w.begin(&c) {
                return;
            }
            let (r, took) = w.run(&c, f);
            let out = r.map_err(|k| c.error(k));
            w.finish(&c, out, took);
        })
    }

    /// Runs `f` on a worker; an `Err(e)` resolves as [`ErrorKind::Failed`]. Errors and panics
    /// are retried by the pool's [`RetryPolicy`] (with backoff, off the worker), so `f` is
    /// `FnMut`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use escala::{RetryPolicy, ThreadPool};
    /// let pool = ThreadPool::builder()
    ///     .retry(RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(5)))
    ///     .build();
    /// let tries = std::sync::Arc::new(AtomicU32::new(0));
    /// let t = tries.clone();
    /// let h = pool.submit_fallible(move || {
    ///     if t.fetch_add(1, Ordering::SeqCst) < 2 { Err("flaky") } else { Ok("fine") }
    /// });
    /// assert_eq!(h.join().unwrap(), "fine");
    /// assert_eq!(tries.load(Ordering::SeqCst), 3);
    /// ```
    pub fn submit_fallible<T, E, F>(&self, f: F) -> Handle<T>
    where
        T: Send + 'static,
        E: Display,
        F: FnMut() -> Result<T, E> + Send + 'static,
    {
        let retry = self.shared.retry.clone();
        self.enqueue(TaskName::Shared(self.shared.name.clone()), move |w, c| attempt(w, c, f, 1, retry))
    }

    /// Like [`submit`](Self::submit), but gives the closure back when the pool refuses it
    /// (full queue with [`QueuePolicy::Reject`], or shut down).
    ///
    /// # Errors
    ///
    /// [`Rejected`] holding `f` and the reason.
    pub fn try_submit<T, F>(&self, f: F) -> Result<Handle<T>, Rejected<F>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if let Admit::Reject(reason) = self.admit() {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Rejected { task: f, reason });
        }
        Ok(self.submit(f))
    }

    /// Applies `f` to every item with at most the map window in flight; yields outcomes in
    /// input order, reading `items` lazily.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = escala::ThreadPool::new(2);
    /// let v: Vec<u64> = pool.map(|x: u64| x * 2, 1..=4).map(Result::unwrap).collect();
    /// assert_eq!(v, vec![2, 4, 6, 8]);
    /// ```
    pub fn map<I, F, T>(&self, f: F, items: I) -> Map<I::IntoIter, impl FnMut(I::Item) -> Handle<T> + '_, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        Map::new(
            items.into_iter(),
            move |x| {
                let f = f.clone();
                self.submit(move || f(x))
            },
            self.shared.window,
        )
    }

    /// Like [`map`](Self::map), yielding outcomes as tasks finish.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = escala::ThreadPool::new(2);
    /// let mut v: Vec<u64> = pool.map_unordered(|x: u64| x + 1, 0..4).map(Result::unwrap).collect();
    /// v.sort();
    /// assert_eq!(v, vec![1, 2, 3, 4]);
    /// ```
    pub fn map_unordered<I, F, T>(
        &self,
        f: F,
        items: I,
    ) -> MapUnordered<I::IntoIter, impl FnMut(I::Item) -> Handle<T> + '_, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        MapUnordered::new(
            items.into_iter(),
            move |x| {
                let f = f.clone();
                self.submit(move || f(x))
            },
            self.shared.window,
        )
    }
}

/// Runs attempt number `n` of a fallible task; schedules the next one on failure if the
/// policy allows.
fn attempt<T, E, F>(w: &Worker<'_>, c: Completer<T>, mut f: F, n: u32, retry: RetryPolicy)
where
    T: Send + 'static,
    E: Display,
    F: FnMut() -> Result<T, E> + Send + 'static,
{
    if !w.begin(&c) {
        return;
    }
    let (r, took) = w.run(&c, &mut f);
    let kind = match r {
        Ok(Ok(v)) => return w.finish(&c, Ok(v), took),
        Ok(Err(e)) => ErrorKind::Failed(e.to_string()),
        Err(k) => k,
    };
    if c.is_done() || !retry.should_retry(&kind, n) {
        return w.finish(&c, Err(c.error(kind)), took);
    }
    w.stats.record(took, false);
    let delay = retry.delay(n);
    w.pool.retried.fetch_add(1, Ordering::Relaxed);
    if events::enabled() {
        events::emit(c.core(), EventKind::Retried { attempt: n + 1, delay_ms: delay.as_millis() as u64 });
    }
    c.core().requeue();
    w.pool.submitted.fetch_add(1, Ordering::Relaxed);
    let pool = w.pool.clone();
    w.pool.clock.after(
        delay,
        Box::new(move || {
            let job: Job = Box::new(move |w: &Worker<'_>| attempt(w, c, f, n + 1, retry));
            if let Err(job) = pool.send(job) {
                pool.submitted.fetch_sub(1, Ordering::Relaxed);
                drop(job); // shut down meanwhile: the handle resolves as cancelled
            }
        }),
    );
}

/// A task the pool refused, given back with the reason.
pub struct Rejected<F> {
    task: F,
    reason: String,
}

impl<F> Rejected<F> {
    /// The closure that was not queued.
    pub fn into_inner(self) -> F {
        self.task
    }

    /// Why it was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl<F> std::fmt::Debug for Rejected<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejected").field("reason", &self.reason).finish_non_exhaustive()
    }
}

impl<F> std::fmt::Display for Rejected<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task rejected: {}", self.reason)
    }
}

impl<F> std::error::Error for Rejected<F> {}

impl Executor for ThreadPool {
    /// Runs the registered task on a worker thread (arguments move in; with retries they
    /// are encoded once and decoded for each attempt).
    fn submit_task<K: Task>(&self, call: Call<K>) -> Handle<K::Output> {
        let name = TaskName::Static(K::NAME);
        let retry = self.shared.retry.clone();
        if retry.max_attempts() <= 1 {
            let args = call.into_args();
            return self.enqueue(name, move |w, c| {
                if !w.begin(&c) {
                    return;
                }
                let (r, took) = w.run(&c, move || K::run(args));
                let out = match r {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(c.error(ErrorKind::Failed(e))),
                    Err(k) => Err(c.error(k)),
                };
                w.finish(&c, out, took);
            });
        }
        let bytes = match task::encode(call.args()) {
            Ok(b) => b,
            Err(e) => {
                let (h, c) = pair(name, UnitKind::PoolTask);
                c.fail(ErrorKind::Codec(format!("cannot encode the arguments: {e}")));
                return h;
            }
        };
        let f = move || -> Result<K::Output, String> { K::run(task::decode(&bytes)?) };
        self.enqueue(name, move |w, c| attempt(w, c, f, 1, retry))
    }

    fn shutdown(&self, how: Shutdown) -> bool {
        let p = &self.shared;
        drop(p.tx.write().unwrap_or_else(|e| e.into_inner()).take());
        {
            let _g = p.space_lock.lock();
            p.space.notify_all();
        }
        if how.cancel_pending {
            while let Ok(job) = p.rx.try_recv() {
                p.cancelled.fetch_add(1, Ordering::Relaxed);
                p.submitted.fetch_sub(1, Ordering::Relaxed);
                drop(job); // dropping the completer resolves the handle as cancelled
            }
        }
        p.clock.close();
        let me = IN_POOL.with(|c| c.get()) == Arc::as_ptr(p) as usize;
        let mut live = p.live.lock().unwrap_or_else(|e| e.into_inner());
        if how.wait && !me {
            let deadline = how.timeout.map(|t| Instant::now() + t);
            while *live > 0 {
                live = match deadline {
                    None => p.ended.wait(live).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            break;
                        }
                        p.ended.wait_timeout(live, d - now).unwrap_or_else(|e| e.into_inner()).0
                    }
                };
            }
        }
        *live == 0
    }

    fn stats(&self) -> Stats {
        let p = &self.shared;
        let mut s = Stats {
            workers: p.workers.len(),
            submitted: p.submitted.load(Ordering::Relaxed),
            rejected: p.rejected.load(Ordering::Relaxed),
            retried: p.retried.load(Ordering::Relaxed),
            ..Stats::default()
        };
        let (mut started, mut ok, mut err, mut discarded) = (0, 0, 0, 0);
        for w in p.workers.iter() {
            started += w.started.load(Ordering::Relaxed);
            ok += w.ok.load(Ordering::Relaxed);
            err += w.err.load(Ordering::Relaxed);
            discarded += w.discarded.load(Ordering::Relaxed);
        }
        let cancelled_running = p.cancelled.load(Ordering::Relaxed);
        s.cancelled = cancelled_running + discarded;
        // Retried attempts are counted as started and as errors; report tasks, not attempts.
        s.failed = err.saturating_sub(s.retried);
        s.completed = ok.saturating_sub(cancelled_running);
        s.running = started.saturating_sub(ok + err);
        s.queued = s.submitted.saturating_sub(started + discarded);
        s.submitted = s.submitted.saturating_sub(s.retried);
        summarize(p.workers.iter().map(|w| &**w), &mut s);
        s
    }

    fn map_window(&self) -> usize {
        self.shared.window
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shutdown(Shutdown::default());
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool").field("name", &self.shared.name).field("size", &self.size()).finish()
    }
}
