//! [`ProcessPool`]: persistent worker processes that survive crashes, stop runaway tasks,
//! recycle themselves and batch tiny tasks with nothing to tune. The protocol and the
//! task state machine are in `README.md` beside this file.

mod batch;
mod builder;
mod child;
mod ledger;
mod life;
mod map;
mod pending;
mod sched;
mod settle;
mod shared;
mod slot;
mod stage;
mod wire;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use batch::Work;
pub use builder::ProcessPoolBuilder;
pub(crate) use child::serve_worker;
use pending::{Pending, SinkRef};
use shared::{Config, Shared};
use slot::Slot;

use super::policy::QueuePolicy;
use super::stats::{Stats, summarize};
use super::{Executor, Shutdown};
use crate::error::ErrorKind;
use crate::events::{self, EventKind};
use crate::handle::{CancelToken, Handle, QueueHook, TaskName, UnitKind, pair_queued};
use crate::task::{self, Call, Task};

/// A pool of worker processes running registered tasks, each with its own [`Handle`].
///
/// A worker that dies (panic=abort, SIGKILL, OOM kill, `exit`) fails only the task it was
/// running — [`ErrorKind::WorkerLost`] with the signal's name or the exit code and its last
/// stderr lines, or a retry if the policy says so — and is replaced; tasks it had prefetched
/// go back to the queue. Timeouts and `cancel()` stop the task: its token first, then SIGTERM,
/// then SIGKILL of that worker alone. Dropping the pool finishes queued work.
///
/// The binary must start with `escala::init()` (or `#[escala::main]`).
///
/// # Examples
///
/// ```
/// use escala::{Executor, ProcessPool};
///
/// #[escala::task]
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() {
///     let _exit = escala::init();
///     let pool = ProcessPool::new(2);
///     let squares: Vec<u64> = pool.map_tasks((1..=4).map(square::call)).map(Result::unwrap).collect();
///     assert_eq!(squares, vec![1, 4, 9, 16]);
/// }
/// ```
pub struct ProcessPool {
    shared: Arc<Shared>,
}

impl ProcessPool {
    /// A pool of `size` workers with the defaults.
    pub fn new(size: usize) -> ProcessPool {
        ProcessPool::builder().size(size).build()
    }

    /// Worker count.
    pub fn size(&self) -> usize {
        self.shared.slots.len()
    }

    /// The pids of the live workers.
    pub fn pids(&self) -> Vec<u32> {
        self.shared.slots.iter().filter_map(Slot::pid).collect()
    }

    fn admit(&self) -> Result<(), String> {
        let p = &self.shared;
        // Without a cap, a shut-down pool is seen where the task is sent (one lock less per
        // submit).
        let Some((cap, policy)) = p.cfg.cap else { return Ok(()) };
        if p.is_closed() {
            return Err("the pool is shut down".into());
        }
        let full = || p.queued.load(SeqCst) >= cap as i64;
        if !full() {
            return Ok(());
        }
        match policy {
            QueuePolicy::Reject => Err(format!("the queue is full ({cap} tasks)")),
            // A registered task can run anywhere: here, in the caller, is one place.
            QueuePolicy::CallerRuns => Ok(()),
            QueuePolicy::Block => {
                let mut g = p.space.0.lock().unwrap_or_else(|e| e.into_inner());
                while full() && !p.is_closed() {
                    g = p
                        .space
                        .1
                        .wait_timeout(g, Duration::from_millis(50))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                if p.is_closed() { Err("the pool is shut down".into()) } else { Ok(()) }
            }
        }
    }

    /// Queues one call of a registered task.
    pub fn submit_task<K: Task>(&self, call: Call<K>) -> Handle<K::Output> {
        let p = &self.shared;
        let hook = p.clone() as Arc<dyn QueueHook>;
        let (handle, c) = pair_queued::<K::Output>(TaskName::Static(K::NAME), UnitKind::PoolTask, Some(hook));
        if !p.ready {
            let why = "process pools need `escala::init()` (or #[escala::main]) at the start of main";
            c.fail(ErrorKind::Spawn(why.into()));
            return handle;
        }
        let args = match task::encode_into(call.args(), pending::Args::new()) {
            Ok(a) if a.len() > p.cfg.max_frame => {
                let why = format!(
                    "the arguments are {} bytes, over the limit of {} bytes",
                    a.len(),
                    p.cfg.max_frame
                );
                c.fail(ErrorKind::Codec(why));
                return handle;
            }
            Ok(a) => a,
            Err(e) => {
                c.fail(ErrorKind::Codec(format!("cannot encode the arguments: {e}")));
                return handle;
            }
        };
        if let Err(why) = self.admit() {
            p.counts.rejected.fetch_add(1, Relaxed);
            c.fail(ErrorKind::Rejected(why));
            return handle;
        }
        if matches!(p.cfg.cap, Some((cap, QueuePolicy::CallerRuns)) if p.queued.load(SeqCst) >= cap as i64) {
            // The queue is full: run it here, on the caller's thread, in this process.
            p.submitted.fetch_add(1, Relaxed);
            let result = task::run_by_name(K::NAME, &args, &CancelToken::of(&c)).into_result();
            SinkRef::new(c).settle(result.as_deref().map_err(Clone::clone), &p.counts);
            return handle;
        }
        let pending = Pending {
            id: handle.id().0,
            task: K::NAME,
            args,
            attempt: 1,
            reclaim: false,
            sink: SinkRef::new(c),
        };
        if events::enabled() {
            events::emit(pending.sink.core(), EventKind::Queued);
        }
        p.submitted.fetch_add(1, Relaxed);
        p.queued.fetch_add(1, SeqCst);
        let tx = p.tx.read().unwrap_or_else(|e| e.into_inner());
        let refused = match tx.as_ref() {
            Some(tx) => tx.send(Work::One(pending)).err().map(|e| e.into_inner()),
            None => Some(Work::One(pending)),
        };
        drop(tx);
        if let Some(back) = refused {
            // Shut down between admission and send.
            p.submitted.fetch_sub(1, Relaxed);
            p.queued.fetch_sub(1, SeqCst);
            back.settle_err(ErrorKind::Rejected("the pool is shut down".into()), &p.counts);
        }
        handle
    }

    /// Stops accepting work and ends the workers; see [`Shutdown`]. Queued tasks run unless
    /// `cancel_pending` (which also cancels tasks prefetched by workers and retries waiting
    /// out their backoff). Returns `true` when every worker has ended. Idempotent.
    pub fn shutdown(&self, how: Shutdown) -> bool {
        let p = &self.shared;
        drop(p.tx.write().unwrap_or_else(|e| e.into_inner()).take());
        p.wake_blocked();
        if how.cancel_pending {
            p.cancelling.store(true, SeqCst);
            while let Ok(job) = p.rx.try_recv() {
                p.queued.fetch_sub(job.len() as i64, SeqCst);
                if let Work::One(j) = &job {
                    j.sink.core().try_discard();
                }
                job.settle_err(ErrorKind::Cancelled, &p.counts);
            }
            for slot in p.slots.iter() {
                slot.cancel_prefetched(p);
            }
        }
        p.clock.flush();
        drop(p.close_tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        {
            let _g = p.nap.0.lock();
            p.nap.1.notify_all();
        }
        super::wait_workers(&p.live, &p.ended, how.wait.then_some(how.timeout))
    }

    /// A snapshot of the counters, with each worker's pid, RSS and task count.
    pub fn stats(&self) -> Stats {
        let p = &self.shared;
        let mut running = 0;
        let mut prefetched = 0;
        let mut processes = Vec::new();
        for slot in p.slots.iter() {
            let (n, info) = slot.snapshot();
            running += u64::from(n > 0);
            prefetched += n.saturating_sub(1) as u64;
            processes.extend(info);
        }
        let mut s = Stats {
            workers: p.slots.len(),
            submitted: p.submitted.load(Relaxed),
            running,
            queued: p.queued.load(SeqCst).max(0) as u64 + prefetched,
            completed: p.counts.completed.load(Relaxed),
            failed: p.counts.failed.load(Relaxed),
            cancelled: p.counts.cancelled.load(Relaxed),
            rejected: p.counts.rejected.load(Relaxed),
            retried: p.retried.load(Relaxed),
            restarts: p.restarts.load(Relaxed),
            crash_loops: p.crash_loops.load(Relaxed),
            processes,
            ..Stats::default()
        };
        summarize(p.slots.iter().map(|s| &s.stats), &mut s);
        s
    }
}

impl Executor for ProcessPool {
    fn submit_task<K: Task>(&self, call: Call<K>) -> Handle<K::Output> {
        ProcessPool::submit_task(self, call)
    }

    fn shutdown(&self, how: Shutdown) -> bool {
        ProcessPool::shutdown(self, how)
    }

    fn stats(&self) -> Stats {
        ProcessPool::stats(self)
    }

    fn map_window(&self) -> usize {
        self.shared.cfg.window
    }

    /// Batched: elements travel many per frame, with no handle each; see
    /// [`ProcessPool::map_tasks`].
    fn map_tasks<K, I>(&self, calls: I) -> impl Iterator<Item = crate::error::Outcome<K::Output>>
    where
        K: Task,
        I: IntoIterator<Item = Call<K>>,
        Self: Sized,
    {
        ProcessPool::map_tasks(self, calls)
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        self.shutdown(Shutdown::default());
    }
}

impl std::fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool").field("name", &self.shared.name).field("size", &self.size()).finish()
    }
}
