//! The worker: fetches tasks from a queue in batches, runs them on `concurrency` threads,
//! and commits results in pipelined batches; a lease thread renews its tasks' leases,
//! reclaims expired ones and announces the worker; a cancel thread hears callers' cancels. See `README.md` in `src/` for the
//! task state machine.

mod builder;
mod cancel;
mod command;
mod commit;
mod exec;
mod fetch;
mod lease;
mod start;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

pub use builder::WorkerBuilder;

use crate::keys::{self, QueueKeys};
use crate::wire::{self, Signer};
use crate::{Error, conn};

/// A worker for a user's binary: it runs the binary's own registered tasks (and commands,
/// when allowed) from one queue.
///
/// # Examples
///
/// ```no_run
/// #[escala::task]
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() -> Result<(), escala_redis::Error> {
///     let _exit = escala::init();
///     escala_redis::Worker::builder("redis://127.0.0.1:6379")
///         .queue("math")
///         .concurrency(4)
///         .run_until_signal()?; // until SIGTERM or Ctrl-C
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Worker;

impl Worker {
    /// Starts configuring a worker for the Redis server at `url`.
    pub fn builder(url: &str) -> WorkerBuilder {
        WorkerBuilder::new(url)
    }
}

/// Counters of one worker, as [`RunningWorker::report`] and [`RunningWorker::join`] give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Tasks run (whatever their outcome).
    pub ran: u64,
    /// Tasks that returned a value.
    pub ok: u64,
    /// Tasks that ended with an error, or were refused.
    pub failed: u64,
    /// Entries sent to the dead-letter stream.
    pub dead_lettered: u64,
    /// Runs started that were not a task's first (its earlier run's worker died or hung).
    /// A task that was only prefetched by a worker that died is not counted: it never ran.
    pub redelivered: u64,
    /// Results this worker found already stored by an earlier attempt.
    pub duplicate_results: u64,
    /// Tasks their caller cancelled: skipped before they started, or stopped while running.
    pub cancelled: u64,
}

/// Settings every thread of a worker reads.
pub(crate) struct Config {
    pub(crate) keys: QueueKeys,
    pub(crate) consumer: String,
    pub(crate) concurrency: usize,
    /// Entries held beyond the running ones at most (see [`Shared::capacity`]).
    pub(crate) prefetch: usize,
    pub(crate) lease: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) allow_commands: bool,
    pub(crate) signer: Signer,
    pub(crate) max_bytes: usize,
    pub(crate) ttl_secs: u64,
}

/// State shared by a worker's threads.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    /// Stream entries this worker holds: fetched or reclaimed, not yet committed.
    held: Mutex<HashSet<String>>,
    space: Condvar,
    /// Set by `stop`: fetch and reclaim no more.
    pub(crate) stopping: AtomicBool,
    /// Set once everything held is committed: the lease thread leaves.
    pub(crate) done: AtomicBool,
    /// Never set: for commits, which must be retried until Redis is back.
    pub(crate) never: AtomicBool,
    pub(crate) running: AtomicU64,
    pub(crate) ran: AtomicU64,
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    /// The tasks the run threads have taken, for remote cancels.
    pub(crate) runs: cancel::Runs,
    /// The start step's script (`start.rs`).
    pub(crate) start_script: redis::Script,
    /// Moving average of this worker's run times, in ns (0 before the first ends).
    avg_ns: AtomicU64,
}

/// The moving average of run times after a run of `ns` (`avg` 0: none yet); never 0.
pub(crate) fn moving_avg(avg: u64, ns: u64) -> u64 {
    match avg {
        0 => ns.max(1),
        avg => (avg.saturating_mul(7).saturating_add(ns) / 8).max(1),
    }
}

/// Entries fetched ahead of the running ones cover about this much work per run thread,
/// by the measured run time: many for tiny tasks (one `XREADGROUP` for many, W6), none for
/// long ones, which would wait behind a busy run thread while other workers idle.
const PREFETCH_NS: u64 = 50_000_000;

impl Shared {
    pub(crate) fn held(&self) -> MutexGuard<'_, HashSet<String>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many entries this worker may hold now: one per run thread, plus
    /// [`PREFETCH_NS`] of work per run thread ahead once run times are known (at most the
    /// configured prefetch). Until a task has ended, none ahead: the first tasks may be
    /// long.
    pub(crate) fn capacity(&self) -> usize {
        let c = self.cfg.concurrency;
        let ahead = match self.avg_ns.load(Relaxed) {
            0 => 0,
            avg => (PREFETCH_NS.saturating_mul(c as u64) / avg).min(self.cfg.prefetch as u64) as usize,
        };
        c + ahead
    }

    /// Records how long a run took.
    pub(crate) fn ran_for(&self, ns: u64) {
        // Run threads race here; a lost update only delays the average a little.
        self.avg_ns.store(moving_avg(self.avg_ns.load(Relaxed), ns), Relaxed);
    }

    /// Waits until fewer than [`capacity`](Self::capacity) entries are held; returns how
    /// many more fit (0 when stopping).
    pub(crate) fn wait_space(&self) -> usize {
        let mut h = self.held();
        loop {
            if self.stopping.load(Relaxed) {
                return 0;
            }
            // Fetch when a quarter of the room is free, not for every entry committed:
            // fewer, bigger `XREADGROUP`s (W6: about 2.5 entries per read before), while
            // what is still held keeps the run threads busy.
            let capacity = self.capacity();
            let free = capacity.saturating_sub(h.len());
            if free >= (capacity / 4).max(1) {
                return free;
            }
            h = self.space.wait_timeout(h, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Forgets committed entries and wakes the fetcher.
    pub(crate) fn release(&self, ids: impl IntoIterator<Item = String>) {
        let mut h = self.held();
        for id in ids {
            h.remove(&id);
        }
        drop(h);
        self.space.notify_all();
    }

    fn report(&self) -> WorkerReport {
        WorkerReport {
            ran: self.ran.load(Relaxed),
            ok: self.ok.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dead_lettered: self.dead.load(Relaxed),
            redelivered: self.redelivered.load(Relaxed),
            duplicate_results: self.duplicates.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
        }
    }
}

/// A started worker. [`stop`](Self::stop) asks it to finish what it holds and leave;
/// [`join`](Self::join) waits for that. Dropping it stops and joins it.
pub struct RunningWorker {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// The lease and cancel threads, which leave once everything held is committed.
    lease: Vec<JoinHandle<()>>,
}

impl RunningWorker {
    fn start(b: WorkerBuilder) -> Result<RunningWorker, Error> {
        if !keys::valid_name(&b.queue) {
            return Err(Error::config(format!(
                "bad queue name `{}`: use 1 to 128 of A-Z a-z 0-9 _ . -",
                b.queue
            )));
        }
        if b.concurrency == 0 || b.max_attempts == 0 || b.lease < Duration::from_millis(30) {
            return Err(Error::config(
                "concurrency and max attempts must be at least 1, the lease at least 30 ms",
            ));
        }
        let key = wire::resolve_key(b.key, b.key_file.as_deref())?;
        let (client, mut c, keys) = conn::open_queue(&b.url, b.tls_ca_file.as_deref(), &b.queue)?;
        let consumer =
            format!("{}-{}-{:08x}", crate::status::hostname(), std::process::id(), fastrand::u32(..));
        let shared = Arc::new(Shared {
            cfg: Config {
                keys,
                consumer,
                concurrency: b.concurrency,
                prefetch: b.prefetch,
                lease: b.lease,
                max_attempts: b.max_attempts,
                allow_commands: b.allow_commands,
                signer: Signer::new(key),
                max_bytes: b.max_bytes,
                ttl_secs: b.result_ttl.as_secs().max(1),
            },
            held: Mutex::new(HashSet::new()),
            space: Condvar::new(),
            stopping: AtomicBool::new(false),
            done: AtomicBool::new(false),
            never: AtomicBool::new(false),
            running: AtomicU64::new(0),
            ran: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            runs: cancel::Runs::default(),
            start_script: redis::Script::new(start::START),
            avg_ns: AtomicU64::new(0),
        });
        let scripts = commit::Scripts::load(&mut c).map_err(|e| Error::command(&b.url, e))?;
        // Announced before any task runs, so `escala status` sees a worker that has.
        let started = crate::status::now_ms();
        redis::cmd("HSET")
            .arg(keys::WORKERS)
            .arg(&shared.cfg.consumer)
            .arg(lease::record(&shared, started))
            .query::<()>(&mut c)
            .map_err(|e| Error::command(&b.url, e))?;
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f).map_err(|e| Error::config(e.to_string()))
        };
        let (run_tx, run_rx) =
            crossbeam_channel::bounded::<exec::Delivery>(shared.cfg.concurrency + shared.cfg.prefetch);
        let (commit_tx, commit_rx) = crossbeam_channel::unbounded::<commit::Commit>();
        let mut workers = Vec::new();
        let lease = {
            let (s, cl, tx) = (shared.clone(), client.clone(), run_tx.clone());
            spawn("escala-redis-lease", Box::new(move || lease::run(&s, cl, started, tx)))?
        };
        let cancels = {
            let (s, cl) = (shared.clone(), client.clone());
            spawn("escala-redis-cancel", Box::new(move || cancel::run(&s, cl)))?
        };
        {
            let (s, cl) = (shared.clone(), client.clone());
            workers.push(spawn("escala-redis-fetch", Box::new(move || fetch::run(&s, cl, run_tx)))?);
        }
        let (start_tx, start_rx) = crossbeam_channel::unbounded::<start::Request>();
        for i in 0..b.concurrency {
            let (s, st, rx, ctx) = (shared.clone(), start_tx.clone(), run_rx.clone(), commit_tx.clone());
            workers
                .push(spawn(&format!("escala-redis-run-{i}"), Box::new(move || exec::run(&s, st, rx, ctx)))?);
        }
        drop(start_tx);
        {
            let (s, cl) = (shared.clone(), client.clone());
            workers.push(spawn("escala-redis-start", Box::new(move || start::run(&s, cl, start_rx)))?);
        }
        drop((run_rx, commit_tx));
        {
            let s = shared.clone();
            workers.push(spawn(
                "escala-redis-commit",
                Box::new(move || commit::run(&s, client, scripts, commit_rx)),
            )?);
        }
        Ok(RunningWorker { shared, workers, lease: vec![lease, cancels] })
    }

    /// This worker's consumer name in the group (`host-pid-random`).
    pub fn id(&self) -> &str {
        &self.shared.cfg.consumer
    }

    /// Asks the worker to stop: fetch nothing more, finish and commit what it holds.
    /// Returns at once; [`join`](Self::join) waits.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Relaxed);
        self.shared.space.notify_all();
    }

    /// The counters so far.
    pub fn report(&self) -> WorkerReport {
        self.shared.report()
    }

    /// Waits until the worker has stopped (after [`stop`](Self::stop)) and returns its
    /// counters.
    pub fn join(mut self) -> WorkerReport {
        self.join_threads();
        self.shared.report()
    }

    fn join_threads(&mut self) {
        for t in self.workers.drain(..) {
            let _ = t.join();
        }
        self.shared.done.store(true, Relaxed);
        for t in self.lease.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.stop();
        self.join_threads();
    }
}

impl std::fmt::Debug for RunningWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWorker").field("id", &self.id()).field("report", &self.report()).finish()
    }
}

/// `first` and what else waits in `rx` at once, up to `max` in all: one script call's worth
/// for the starter and commit threads.
fn take_batch<T>(rx: &crossbeam_channel::Receiver<T>, first: T, max: usize) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(x) => batch.push(x),
            Err(_) => break,
        }
    }
    batch
}
