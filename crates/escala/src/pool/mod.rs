//! Pools: the [`Executor`] trait every pool implements, and the [`ThreadPool`].
//!
//! The process pool and the Redis executor implement the same trait, so code written
//! against `Executor` moves between them by changing the constructor.

mod clock;
mod map;
mod policy;
pub(crate) mod process;
mod stats;
mod thread;

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub use map::{Map, MapUnordered};
pub use policy::{QueuePolicy, RetryPolicy};
pub use process::{ProcessPool, ProcessPoolBuilder};
pub use stats::{Percentiles, Stats, WorkerProcess};
pub use thread::{Rejected, ThreadPool, ThreadPoolBuilder};

use crate::error::Outcome;
use crate::handle::Handle;
use crate::task::{Call, Task};

/// Waits until `live` (a pool's count of running workers) is zero, signalled on `ended`:
/// not at all for `None`, without limit for `Some(None)`, at most `t` for `Some(Some(t))`.
/// Returns whether every worker has ended.
fn wait_workers(live: &Mutex<usize>, ended: &Condvar, wait: Option<Option<Duration>>) -> bool {
    let mut n = live.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(limit) = wait {
        let deadline = limit.map(|t| Instant::now() + t);
        while *n > 0 {
            n = match deadline {
                None => ended.wait(n).unwrap_or_else(|e| e.into_inner()),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    None => break,
                    Some(left) => ended.wait_timeout(n, left).unwrap_or_else(|e| e.into_inner()).0,
                },
            };
        }
    }
    *n == 0
}

/// How [`Executor::shutdown`] ends a pool.
///
/// # Examples
///
/// ```
/// use escala::{Executor, Shutdown, ThreadPool};
/// let pool = ThreadPool::new(2);
/// let h = pool.submit(|| 1);
/// assert!(pool.shutdown(Shutdown::default()));
/// assert_eq!(h.join().unwrap(), 1);
/// assert!(pool.submit(|| 2).join().unwrap_err().is_rejected());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// Wait for the workers to finish (default true).
    pub wait: bool,
    /// Resolve queued tasks (and tasks waiting to be retried) as cancelled instead of running
    /// them (default false).
    pub cancel_pending: bool,
    /// With `wait`, give up waiting after this long (default: no limit).
    pub timeout: Option<Duration>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { wait: true, cancel_pending: false, timeout: None }
    }
}

impl Shutdown {
    /// Cancel what is queued, then wait at most `timeout` for running tasks.
    pub fn now(timeout: Duration) -> Shutdown {
        Shutdown { wait: true, cancel_pending: true, timeout: Some(timeout) }
    }
}

/// What every pool does: run registered tasks, map over them, report stats, shut down.
pub trait Executor {
    /// Queues one call of a registered task.
    fn submit_task<K: Task>(&self, call: Call<K>) -> Handle<K::Output>;

    /// Stops accepting work and ends the workers. New submissions resolve as rejected.
    /// Returns `true` when every worker has ended (always `false` with `wait: false` while
    /// tasks still run). Idempotent.
    fn shutdown(&self, how: Shutdown) -> bool;

    /// A snapshot of the counters.
    fn stats(&self) -> Stats;

    /// How many tasks `map` keeps in flight.
    fn map_window(&self) -> usize;

    /// Runs `calls` with at most [`map_window`](Executor::map_window) in flight; yields
    /// outcomes in input order, reading the input lazily.
    ///
    /// # Examples
    ///
    /// ```
    /// use escala::{Executor, ThreadPool};
    /// #[escala::task]
    /// fn inc(x: u64) -> u64 { x + 1 }
    ///
    /// let pool = ThreadPool::new(2);
    /// let out: Vec<u64> = pool.map_tasks((0..5).map(inc::call)).map(Result::unwrap).collect();
    /// assert_eq!(out, vec![1, 2, 3, 4, 5]);
    /// ```
    ///
    /// A pool may send the calls in batches rather than one by one (the process pool does:
    /// see [`ProcessPool::map_tasks`]).
    fn map_tasks<K, I>(&self, calls: I) -> impl Iterator<Item = Outcome<K::Output>>
    where
        K: Task,
        I: IntoIterator<Item = Call<K>>,
        Self: Sized,
    {
        Map::new(calls.into_iter(), move |c| self.submit_task(c), self.map_window())
    }

    /// Like [`map_tasks`](Executor::map_tasks), yielding outcomes as tasks finish.
    #[allow(clippy::type_complexity)] // the submit closure is an opaque `impl FnMut`
    fn map_tasks_unordered<K, I>(
        &self,
        calls: I,
    ) -> MapUnordered<I::IntoIter, impl FnMut(Call<K>) -> Handle<K::Output>, K::Output>
    where
        K: Task,
        I: IntoIterator<Item = Call<K>>,
        Self: Sized,
    {
        MapUnordered::new(calls.into_iter(), move |c| self.submit_task(c), self.map_window())
    }
}
