//! [`ThreadPool`]: a fixed set of worker threads with futures, bounded queues, cooperative
//! cancellation, timeouts, retries and stats.
//!
//! Tasks travel to workers over one MPMC channel (`crossbeam-channel`) as boxed jobs that
//! own their `Completer`. A queued task that is cancelled resolves at once, frees its queue
//! slot through the pool's queue hook, and is skipped when a worker reaches it. Counters
//! live per worker (see `stats.rs`); `worker.rs` holds what a job does.

mod builder;
mod worker;

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;

pub use builder::ThreadPoolBuilder;
use worker::{IN_POOL, Mode, Worker, attempt};

use super::clock::Clock;
use super::map::{Map, MapUnordered};
use super::policy::{QueuePolicy, RetryPolicy};
use super::stats::{Stats, WorkerStats, summarize};
use super::{Executor, Shutdown};
use crate::error::ErrorKind;
use crate::events::{self, EventKind};
use crate::handle::{Completer, Handle, QueueHook, TaskName, UnitKind, pair, pair_queued};
use crate::task::{self, Call, Task};

type Job = Box<dyn FnOnce(&Worker<'_>) + Send>;

/// The pool as tasks and workers hold it. Padded so that the reference count, written by
/// the submitting thread for every task (the queue hook), shares no cache line with the
/// fields the workers read.
type PoolRef = Arc<CachePadded<PoolShared>>;

/// Counters only the submitting side writes, on a cache line of their own.
#[derive(Default)]
struct Submits {
    /// Tasks accepted.
    submitted: AtomicU64,
    /// Jobs put in the queue: first attempts, retries, caller-runs.
    enqueued: AtomicU64,
}
type Init = Arc<dyn Fn(usize) + Send + Sync>;

struct PoolShared {
    name: Arc<str>,
    tx: RwLock<Option<Sender<Job>>>,
    rx: Receiver<Job>,
    cap: Option<(usize, QueuePolicy)>,
    space: Condvar,
    space_lock: Mutex<()>,
    blocked: AtomicUsize,
    /// Set by `shutdown` before the sender is dropped: one load instead of a lock.
    closed: AtomicBool,
    submits: CachePadded<Submits>,
    rejected: AtomicU64,
    retried: AtomicU64,
    cancelled_queued: AtomicU64,
    drained: AtomicU64,
    retry_cancelled: AtomicU64,
    cancelling: AtomicBool,
    workers: Box<[CachePadded<WorkerStats>]>,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    clock: Clock,
    live: Mutex<usize>,
    ended: Condvar,
    window: usize,
}

impl PoolShared {
    fn sum(&self, f: fn(&WorkerStats) -> &AtomicU64) -> u64 {
        WorkerStats::sum(self.workers.iter().map(|w| &**w), f)
    }

    /// Tasks waiting in the queue.
    fn queued(&self) -> u64 {
        let popped = self.sum(|w| &w.started) + self.sum(|w| &w.skipped);
        let gone = popped + self.cancelled_queued.load(Relaxed) + self.drained.load(Relaxed);
        self.submits.enqueued.load(Relaxed).saturating_sub(gone)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Wakes submitters blocked on a full queue.
    fn wake_blocked(&self) {
        if self.blocked.load(SeqCst) > 0 {
            let _g = self.space_lock.lock();
            self.space.notify_all();
        }
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

impl QueueHook for CachePadded<PoolShared> {
    fn cancelled(&self, _core: &crate::handle::Core, discarded: bool) {
        // A running task sees its token; only a queued one needs the pool.
        if discarded {
            self.cancelled_queued.fetch_add(1, Relaxed);
            self.wake_blocked();
        }
    }
}

/// A pool of worker threads running closures and registered tasks, each with its own
/// [`Handle`].
///
/// Dropping the pool finishes queued work (like [`ThreadPool::shutdown`] with the defaults).
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
    shared: PoolRef,
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

    /// Worker count.
    pub fn size(&self) -> usize {
        self.shared.workers.len()
    }

    /// How many tasks `map` keeps in flight.
    pub fn map_window(&self) -> usize {
        self.shared.window
    }

    fn admit(&self) -> Admit {
        let p = &self.shared;
        if p.is_closed() {
            return Admit::Reject("the pool is shut down".into());
        }
        let Some((cap, policy)) = p.cap else { return Admit::Go };
        if p.queued() < cap as u64 {
            return Admit::Go;
        }
        match policy {
            QueuePolicy::Reject => Admit::Reject(format!("the queue is full ({cap} tasks)")),
            QueuePolicy::CallerRuns => Admit::RunHere,
            QueuePolicy::Block => {
                p.blocked.fetch_add(1, SeqCst);
                let mut g = p.space_lock.lock().unwrap_or_else(|e| e.into_inner());
                while p.queued() >= cap as u64 && !p.is_closed() {
                    // The timeout only guards against a missed wake-up; wakes are explicit.
                    g = p
                        .space
                        .wait_timeout(g, Duration::from_millis(50))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                drop(g);
                p.blocked.fetch_sub(1, SeqCst);
                if p.is_closed() { Admit::Reject("the pool is shut down".into()) } else { Admit::Go }
            }
        }
    }

    /// Queues `body` as a task named `name`, after admission said how.
    fn enqueue<T, B>(&self, name: TaskName, admit: Admit, body: B) -> Handle<T>
    where
        T: Send + 'static,
        B: FnOnce(&Worker<'_>, Completer<T>) + Send + 'static,
    {
        let p = &self.shared;
        let hook = p.clone() as Arc<dyn QueueHook>;
        let (handle, c) = pair_queued::<T>(name, UnitKind::PoolTask, Some(hook));
        match admit {
            Admit::Go => {}
            Admit::Reject(why) => {
                p.rejected.fetch_add(1, Relaxed);
                c.fail(ErrorKind::Rejected(why));
                return handle;
            }
            Admit::RunHere => {
                p.submits.submitted.fetch_add(1, Relaxed);
                p.submits.enqueued.fetch_add(1, Relaxed);
                // On the caller's thread, counted on worker 0's books, with its own timeout slot.
                body(&Worker { stats: &p.workers[0], slot: None, pool: p, mode: Mode::Run }, c);
                return handle;
            }
        }
        if events::enabled() {
            events::emit(c.core(), EventKind::Queued);
        }
        p.submits.submitted.fetch_add(1, Relaxed);
        p.submits.enqueued.fetch_add(1, Relaxed);
        if let Err(job) = p.send(Box::new(move |w: &Worker<'_>| body(w, c))) {
            // Shut down between admission and send.
            p.submits.submitted.fetch_sub(1, Relaxed);
            p.submits.enqueued.fetch_sub(1, Relaxed);
            p.rejected.fetch_add(1, Relaxed);
            job(&Worker { stats: &p.workers[0], slot: None, pool: p, mode: Mode::Reject });
        }
        handle
    }

    /// Runs `f` on a worker.
    pub fn submit<T, F>(&self, f: F) -> Handle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit_as(TaskName::Shared(self.shared.name.clone()), self.admit(), f)
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
        self.submit_as(TaskName::from(name.into()), self.admit(), f)
    }

    fn submit_as<T, F>(&self, name: TaskName, admit: Admit, f: F) -> Handle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.enqueue(name, admit, move |w, c| {
            if w.begin(&c) {
                let out = w.run(&c, f).map_err(|k| c.error(k));
                w.finish(&c, out);
            }
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
        let name = TaskName::Shared(self.shared.name.clone());
        self.enqueue(name, self.admit(), move |w, c| attempt(w, c, f, 1, retry))
    }

    /// Like [`submit`](Self::submit), but gives the closure back when the pool refuses it
    /// (full queue with [`QueuePolicy::Reject`], or shut down).
    ///
    /// # Errors
    ///
    /// [`Rejected`] holding `f` and the reason.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = escala::ThreadPool::new(1);
    /// pool.shutdown(escala::Shutdown::default());
    /// let back = pool.try_submit(|| 5).unwrap_err();
    /// assert_eq!((back.into_inner())(), 5);
    /// ```
    pub fn try_submit<T, F>(&self, f: F) -> Result<Handle<T>, Rejected<F>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self.admit() {
            Admit::Reject(reason) => {
                self.shared.rejected.fetch_add(1, Relaxed);
                Err(Rejected { task: f, reason })
            }
            admit => Ok(self.submit_as(TaskName::Shared(self.shared.name.clone()), admit, f)),
        }
    }

    /// Runs a registered task on a worker thread (arguments move in; with retries they are
    /// encoded once and decoded for each attempt).
    ///
    /// # Examples
    ///
    /// ```
    /// #[escala::task]
    /// fn triple(x: i64) -> i64 { 3 * x }
    ///
    /// let pool = escala::ThreadPool::new(1);
    /// assert_eq!(pool.submit_task(triple::call(5)).join().unwrap(), 15);
    /// ```
    pub fn submit_task<K: Task>(&self, call: Call<K>) -> Handle<K::Output> {
        let name = TaskName::Static(K::NAME);
        let retry = self.shared.retry.clone();
        if retry.max_attempts() <= 1 {
            let args = call.into_args();
            return self.enqueue(name, self.admit(), move |w, c| {
                if w.begin(&c) {
                    let out = match w.run(&c, move || K::run(args)) {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => Err(c.error(ErrorKind::Failed(e))),
                        Err(k) => Err(c.error(k)),
                    };
                    w.finish(&c, out);
                }
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
        self.enqueue(name, self.admit(), move |w, c| attempt(w, c, f, 1, retry))
    }

    /// Applies `f` to every item with at most [`map_window`](Self::map_window) in flight;
    /// yields outcomes in input order, reading `items` lazily.
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
        Map::new(items.into_iter(), self.submit_each(f), self.shared.window)
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
        MapUnordered::new(items.into_iter(), self.submit_each(f), self.shared.window)
    }

    fn submit_each<X, F, T>(&self, f: F) -> impl FnMut(X) -> Handle<T> + '_
    where
        X: Send + 'static,
        F: Fn(X) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        move |x| {
            let f = f.clone();
            self.submit(move || f(x))
        }
    }

    /// Stops accepting work and ends the workers; see [`Shutdown`]. New submissions resolve
    /// as rejected. Queued tasks run unless `cancel_pending`; retries waiting out their
    /// backoff run at once (or are cancelled with `cancel_pending`). Returns `true` when every worker has ended. Idempotent. Called from inside
    /// one of its own tasks, it does not wait (that would wait for itself).
    pub fn shutdown(&self, how: Shutdown) -> bool {
        let p = &self.shared;
        p.closed.store(true, SeqCst);
        drop(p.tx.write().unwrap_or_else(|e| e.into_inner()).take());
        {
            let _g = p.space_lock.lock();
            p.space.notify_all();
        }
        if how.cancel_pending {
            p.cancelling.store(true, Relaxed);
            let drain = Worker { stats: &p.workers[0], slot: None, pool: p, mode: Mode::Drain };
            while let Ok(job) = p.rx.try_recv() {
                job(&drain);
            }
        }
        // Retries waiting out their backoff are due now: run (or, cancelling, cancel) them.
        p.clock.flush();
        p.clock.close();
        let me = IN_POOL.with(|c| c.get()) == Arc::as_ptr(p) as usize;
        super::wait_workers(&p.live, &p.ended, (how.wait && !me).then_some(how.timeout))
    }

    /// A snapshot of the counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = escala::ThreadPool::new(2);
    /// pool.submit(|| ()).join().unwrap();
    /// let s = pool.stats();
    /// assert_eq!((s.submitted, s.completed, s.failed), (1, 1, 0));
    /// ```
    pub fn stats(&self) -> Stats {
        let p = &self.shared;
        let (started, skipped) = (p.sum(|w| &w.started), p.sum(|w| &w.skipped));
        let (ok, err) = (p.sum(|w| &w.ok), p.sum(|w| &w.err));
        let (requeued, preempted) = (p.sum(|w| &w.requeued), p.sum(|w| &w.preempted));
        let mut s = Stats {
            workers: p.workers.len(),
            submitted: p.submits.submitted.load(Relaxed),
            completed: ok,
            failed: err,
            cancelled: p.cancelled_queued.load(Relaxed)
                + p.drained.load(Relaxed)
                + p.retry_cancelled.load(Relaxed)
                + preempted
                + skipped,
            rejected: p.rejected.load(Relaxed),
            retried: p.retried.load(Relaxed),
            running: started.saturating_sub(ok + err + requeued + preempted),
            queued: p.queued(),
            ..Stats::default()
        };
        summarize(p.workers.iter().map(|w| &**w), &mut s);
        s
    }
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
    fn submit_task<K: Task>(&self, call: Call<K>) -> Handle<K::Output> {
        ThreadPool::submit_task(self, call)
    }

    fn shutdown(&self, how: Shutdown) -> bool {
        ThreadPool::shutdown(self, how)
    }

    fn stats(&self) -> Stats {
        ThreadPool::stats(self)
    }

    fn map_window(&self) -> usize {
        ThreadPool::map_window(self)
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
