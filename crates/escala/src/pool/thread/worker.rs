//! A pool worker: the loop that takes jobs, and what a job does with its task — start,
//! run (with timeout and panic capture), count, resolve, and retry with backoff.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::{Init, Job, PoolRef};
use crate::error::{ErrorKind, Outcome};
use crate::events::{self, EventKind};
use crate::handle::{CancelToken, Completer};
use crate::pool::policy::RetryPolicy;
use crate::pool::stats::WorkerStats;
use crate::unwind::run_task;

thread_local! {
    /// The pool this thread works for (its address), so `shutdown` from inside a task
    /// does not wait for itself.
    pub(super) static IN_POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// What a job does with its task when it is handed one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Run it.
    Run,
    /// Resolve it as cancelled (shutdown with `cancel_pending`).
    Drain,
    /// Resolve it as rejected (the pool shut down while it was being submitted).
    Reject,
}

/// The context a job runs in: whose books it counts on, which timeout slot it uses.
pub(super) struct Worker<'a> {
    pub(super) stats: &'a WorkerStats,
    /// The worker's own timeout slot; `None` for a task run on a submitting thread.
    pub(super) slot: Option<usize>,
    pub(super) pool: &'a PoolRef,
    pub(super) mode: Mode,
}

pub(super) fn worker_main(pool: PoolRef, index: usize, init: Option<Init>) {
    IN_POOL.with(|p| p.set(Arc::as_ptr(&pool) as usize));
    if let Some(init) = init {
        if let Err(k) = run_task(CancelToken::never(), || init(index)) {
            eprintln!("escala: pool `{}` worker {index}: initializer {k}", pool.name);
        }
    }
    let w = Worker { stats: &pool.workers[index], slot: Some(index), pool: &pool, mode: Mode::Run };
    while let Ok(job) = pool.rx.recv() {
        pool.wake_blocked();
        job(&w);
    }
    let mut live = pool.live.lock().unwrap_or_else(|e| e.into_inner());
    *live -= 1;
    if *live == 0 {
        pool.clock.close();
    }
    pool.ended.notify_all();
}

impl Worker<'_> {
    /// Takes the task from queued to running; false if it must not run.
    pub(super) fn begin<T>(&self, c: &Completer<T>) -> bool {
        match self.mode {
            Mode::Run => {}
            Mode::Drain => {
                if c.core().try_discard() {
                    self.pool.drained.fetch_add(1, Relaxed);
                }
                c.fail(ErrorKind::Cancelled);
                return false;
            }
            Mode::Reject => {
                c.core().try_discard();
                c.fail(ErrorKind::Rejected("the pool is shut down".into()));
                return false;
            }
        }
        if !c.core().try_start() {
            return false; // cancelled while queued; the queue hook counted it
        }
        if c.is_done() {
            self.stats.skipped.fetch_add(1, Relaxed); // cancelled while waiting for a retry
            return false;
        }
        self.stats.started.fetch_add(1, Relaxed);
        if events::enabled() {
            events::emit(c.core(), EventKind::Started);
        }
        true
    }

    /// Runs `f` as the task of `c`, with its timeout armed and panics caught.
    pub(super) fn run<T: Send + 'static, R>(
        &self,
        c: &Completer<T>,
        f: impl FnOnce() -> R,
    ) -> Result<R, ErrorKind> {
        let token = CancelToken::of(c);
        let clock = &self.pool.clock;
        let slot = self.pool.timeout.map(|t| {
            let slot = self.slot.unwrap_or_else(|| clock.extra_slot());
            clock.arm(slot, token.clone(), t);
            slot
        });
        let t0 = Instant::now();
        let r = run_task(token, f);
        self.stats.record(t0.elapsed());
        if let Some(slot) = slot {
            clock.disarm(slot);
        }
        r
    }

    /// Writes the outcome, counted before the handle resolves so `stats()` after `join()`
    /// includes it. A cancel or timeout that wrote first is counted as such.
    pub(super) fn finish<T>(&self, c: &Completer<T>, out: Outcome<T>) {
        let counter = if out.is_ok() { &self.stats.ok } else { &self.stats.err };
        if !c.is_done() {
            counter.fetch_add(1, Relaxed);
            if c.complete(out) {
                return;
            }
            counter.fetch_sub(1, Relaxed);
        }
        if c.was_timed_out() { &self.stats.err } else { &self.stats.preempted }.fetch_add(1, Relaxed);
    }
}

/// Runs a fallible task, retrying it by `retry`: the next attempt waits on the pool's clock
/// (off the worker) and is queued again. Once the pool is shutting down, retries are due at
/// once and it takes no new work, so the attempts go on here, on this worker.
pub(super) fn attempt<T, E, F>(w: &Worker<'_>, c: Completer<T>, mut f: F, mut n: u32, retry: RetryPolicy)
where
    T: Send + 'static,
    E: Display,
    F: FnMut() -> Result<T, E> + Send + 'static,
{
    loop {
        if !w.begin(&c) {
            return;
        }
        let kind = match w.run(&c, &mut f) {
            Ok(Ok(v)) => return w.finish(&c, Ok(v)),
            Ok(Err(e)) => ErrorKind::Failed(e.to_string()),
            Err(k) => k,
        };
        if c.is_done() || !retry.should_retry(&kind, n) {
            return w.finish(&c, Err(c.error(kind)));
        }
        let delay = retry.delay(n);
        n += 1;
        w.stats.requeued.fetch_add(1, Relaxed);
        w.pool.retried.fetch_add(1, Relaxed);
        if events::enabled() {
            events::emit(c.core(), EventKind::Retried { attempt: n, delay_ms: delay.as_millis() as u64 });
        }
        let tx = w.pool.tx.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(tx) = tx else {
            // Shutting down: no new work is taken, and retries are due at once; run it here.
            c.core().requeue();
            w.pool.submits.enqueued.fetch_add(1, Relaxed);
            continue;
        };
        let pool = w.pool.clone();
        w.pool.clock.after(
            delay,
            Box::new(move || {
                if pool.cancelling.load(Relaxed) {
                    pool.retry_cancelled.fetch_add(1, Relaxed);
                    c.fail(ErrorKind::Cancelled);
                    return;
                }
                c.core().requeue();
                pool.submits.enqueued.fetch_add(1, Relaxed);
                let job: Job = Box::new(move |w: &Worker<'_>| attempt(w, c, f, n, retry));
                // Cannot fail: `tx` keeps the channel open, and the workers stay until it closes.
                let _ = tx.send(job);
            }),
        );
        return;
    }
}
