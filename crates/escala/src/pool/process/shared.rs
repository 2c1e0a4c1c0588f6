//! The state a process pool's threads share: settings, the queue, counters, and what a
//! slot does with a task it gives up (requeue, retry, fail).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;

use super::batch::{Batch, Work};
use super::pending::Counts;
use super::slot::Slot;
use crate::error::ErrorKind;
use crate::events::{self, EventKind};
use crate::handle::{Core, QueueHook};
use crate::pool::clock::Clock;
use crate::pool::policy::{QueuePolicy, RetryPolicy};

/// Settings fixed when the pool is built.
pub(super) struct Config {
    pub(super) timeout: Option<Duration>,
    pub(super) retry: RetryPolicy,
    pub(super) max_frame: usize,
    pub(super) max_tasks: Option<u64>,
    pub(super) max_rss: Option<u64>,
    pub(super) idle: Option<Duration>,
    pub(super) crash_max: usize,
    pub(super) crash_window: Duration,
    pub(super) backoff_initial: Duration,
    pub(super) backoff_max: Duration,
    pub(super) grace: Duration,
    pub(super) stderr_tail: usize,
    pub(super) init: Option<(String, Vec<u8>)>,
    pub(super) cap: Option<(usize, QueuePolicy)>,
    pub(super) window: usize,
}

/// What a pool's threads share. The fields one thread writes for every task have a cache
/// line each (`CachePadded`), and so does the `Arc`'s count, which every `submit` bumps
/// (the struct's alignment puts the fields after it on another line): a line that two cores
/// write in turn moves between them at each write, and the slot threads read `cfg` at every
/// reply. (W2 one by one, `perf record`: `submit_task`, mostly those writes, went from 5.6 %
/// to 4.6 % of all samples.)
pub(super) struct Shared {
    /// This pool, for timers that must not keep it alive.
    pub(super) me: std::sync::Weak<Shared>,
    pub(super) name: Arc<str>,
    pub(super) cfg: Config,
    /// Submissions; `None` once shut down.
    pub(super) tx: CachePadded<RwLock<Option<Sender<Work>>>>,
    /// Tasks handed back by a dead or retiring worker, and retries. Never closed, so the
    /// queue stays open while the slots need it; `closed` says when to stop.
    pub(super) requeue: Sender<Work>,
    pub(super) rx: Receiver<Work>,
    /// Disconnected at shutdown: wakes writers waiting for work.
    pub(super) close_tx: Mutex<Option<Sender<()>>>,
    pub(super) close_rx: Receiver<()>,
    pub(super) slots: Box<[Slot]>,
    pub(super) clock: Clock,
    pub(super) cancelling: AtomicBool,
    /// Retries waiting on the clock.
    pub(super) retry_pending: AtomicUsize,
    pub(super) queued: CachePadded<AtomicI64>,
    pub(super) submitted: CachePadded<AtomicU64>,
    pub(super) counts: CachePadded<Counts>,
    pub(super) retried: AtomicU64,
    pub(super) restarts: AtomicU64,
    pub(super) crash_loops: AtomicU64,
    /// `escala::init()` ran, so workers can start.
    pub(super) ready: bool,
    pub(super) space: (Mutex<()>, Condvar),
    pub(super) live: Mutex<usize>,
    pub(super) ended: Condvar,
    /// Wakes slot threads sleeping out a crash-loop backoff at shutdown.
    pub(super) nap: (Mutex<()>, Condvar),
}

impl Shared {
    pub(super) fn is_closed(&self) -> bool {
        self.tx.read().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// True when no work is left for any worker: closed, queue empty, no retry pending.
    pub(super) fn finished(&self) -> bool {
        self.is_closed() && self.rx.is_empty() && self.retry_pending.load(SeqCst) == 0
    }

    /// Puts work back in the queue (a worker died or retired holding it, or a retry).
    pub(super) fn put_back(&self, mut w: Work) {
        if let Work::One(p) = &mut w {
            p.reclaim = false;
            p.sink.core().requeue();
        }
        self.queued.fetch_add(w.len() as i64, SeqCst);
        // Cannot fail: `rx` lives in `self`.
        let _ = self.requeue.send(w);
    }

    /// Ends a task (or a batch's single element) with an error, or schedules its retry
    /// when the policy allows.
    pub(super) fn fail_or_retry(self: &Arc<Self>, w: Work, kind: ErrorKind) {
        if w.is_settled() || !self.cfg.retry.should_retry(&kind, w.attempt()) {
            w.settle_err(kind, &self.counts);
            return;
        }
        let delay = self.cfg.retry.delay(w.attempt());
        self.retried.fetch_add(w.len() as u64, Relaxed);
        if let (Work::One(p), true) = (&w, events::enabled()) {
            events::emit(
                p.sink.core(),
                EventKind::Retried { attempt: p.attempt + 1, delay_ms: delay.as_millis() as u64 },
            );
        }
        self.retry_pending.fetch_add(1, SeqCst);
        let pool = self.clone();
        let mut w = w;
        match &mut w {
            Work::One(p) => p.attempt += 1,
            Work::Many(b) => b.attempt += 1,
        }
        self.clock.after(
            delay,
            Box::new(move || {
                if pool.cancelling.load(SeqCst) {
                    w.settle_err(ErrorKind::Cancelled, &pool.counts);
                } else {
                    pool.put_back(w);
                }
                pool.retry_pending.fetch_sub(1, SeqCst);
            }),
        );
    }

    /// Queues a batch of a map (counted as its elements).
    pub(super) fn submit_batch(&self, b: Batch) {
        let n = b.len();
        self.submitted.fetch_add(n as u64, Relaxed);
        if !self.ready {
            let why = "process pools need `escala::init()` (or #[escala::main]) at the start of main";
            b.settle_all(&ErrorKind::Spawn(why.into()), &self.counts);
            return;
        }
        self.queued.fetch_add(n as i64, SeqCst);
        let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
        let refused = match tx.as_ref() {
            Some(tx) => tx.send(Work::Many(b)).err().map(|e| e.into_inner()),
            None => Some(Work::Many(b)),
        };
        drop(tx);
        if let Some(back) = refused {
            self.queued.fetch_sub(n as i64, SeqCst);
            self.submitted.fetch_sub(n as u64, Relaxed);
            back.settle_err(ErrorKind::Rejected("the pool is shut down".into()), &self.counts);
        }
    }

    /// The measured run time of one task, averaged over the workers (0 before any).
    pub(super) fn avg_ns(&self) -> u64 {
        let (sum, n) = self
            .slots
            .iter()
            .map(Slot::avg_ns)
            .filter(|&ns| ns > 0)
            .fold((0, 0), |(s, n), ns| (s + ns, n + 1));
        sum.checked_div(n).unwrap_or(0)
    }

    pub(super) fn wake_blocked(&self) {
        let _g = self.space.0.lock();
        self.space.1.notify_all();
    }

    pub(super) fn slot_ended(&self) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        if *live == 0 {
            self.clock.close();
        }
        self.ended.notify_all();
    }
}

impl QueueHook for Shared {
    fn cancelled(&self, core: &Core, discarded: bool) {
        self.counts.cancelled.fetch_add(1, Relaxed);
        if discarded {
            self.queued.fetch_sub(1, SeqCst);
            self.wake_blocked();
            return;
        }
        // Sent to a worker: tell it; a running task then gets the grace period.
        for slot in self.slots.iter() {
            if slot.cancel(core.id.0, self) {
                return;
            }
        }
    }
}
