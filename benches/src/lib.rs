//! Shared pieces of the escala benchmarks (see `BENCHMARKS.md` at the workspace root).
//!
//! The benchmarks themselves live in `benches/`; this library holds the hand-written peers
//! that are not a crate of their own, so every benchmark measures the same reference code.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

pub mod pipe_pool;

/// W1: tasks per measured batch.
pub const W1_TASKS: u64 = 200_000;

/// W1: pool size.
pub const W1_WORKERS: usize = 2;

/// W4: units started and joined, one after the other, per measured batch.
pub const W4_UNITS: u64 = 300;

/// W2: tasks per measured batch (`f(x) = x + 1`).
pub const W2_TASKS: u64 = 100_000;

/// W2: procspawn's batch, smaller: procspawn runs about 2 × 10^4 tasks/s (100,000 would
/// take ~5 s per sample), and each of its pending handles holds an IPC channel (2 file
/// descriptors), so 10,000 pending tasks already pass a 20,000-descriptor limit. Its
/// figure is a throughput (tasks/s), like everything in W2.
pub const W2_PROCSPAWN_TASKS: u64 = 5_000;

/// W2, W3: pool size.
pub const W2_WORKERS: usize = 2;

/// W3: `fib(W3_N)` computed this many times per measured batch.
pub const W3_TASKS: u64 = 400;

/// W3: the argument of the recursive Fibonacci.
pub const W3_N: u32 = 24;

/// W9: batch sizes of the per-task cost sweep.
pub const W9_SIZES: [u64; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// W9: worker counts of the throughput sweep.
pub const W9_WORKERS: [usize; 4] = [1, 2, 4, 8];

/// Set by `benchmarks/run.sh --quick`: shorter warm-up and measurement in the W2, W3 and
/// W9 groups (the workloads stay the same).
pub const QUICK_ENV: &str = "ESCALA_BENCH_QUICK";

/// Warm-up and measurement time of a W2/W3/W9 benchmark: `(warm_up, measurement)`
/// normally, a fraction of that with [`QUICK_ENV`] set.
pub fn timing(
    warm_up: std::time::Duration,
    measurement: std::time::Duration,
) -> (std::time::Duration, std::time::Duration) {
    if std::env::var_os(QUICK_ENV).is_some() {
        (warm_up / 4, measurement / 4)
    } else {
        (warm_up, measurement)
    }
}

/// Waits until every worker of `pool` is up (at most 30 s), so that no measurement
/// includes a worker's start.
///
/// # Panics
///
/// If the workers are not all up after 30 s.
pub fn wait_for_workers(pool: &escala::ProcessPool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pool.pids().len() < pool.size() {
        assert!(std::time::Instant::now() < deadline, "the process pool's workers did not start");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// W3: the naive recursive Fibonacci (the CPU-bound task).
pub fn fib(n: u32) -> u64 {
    if n < 2 { u64::from(n) } else { fib(n - 1) + fib(n - 2) }
}

/// The sum of `0..n`, what W1 checks.
pub const fn sum_below(n: u64) -> u64 {
    n * (n - 1) / 2
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The minimal thread pool: `n` std threads taking boxed closures from one crossbeam
/// channel. No handles, no outcomes, no panic capture: the fire-and-forget reference of W1
/// (results go back through whatever channel the closure captures).
pub struct MiniPool {
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl MiniPool {
    /// Starts `n` worker threads.
    pub fn new(n: usize) -> MiniPool {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::unbounded();
        let workers = (0..n)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
            })
            .collect();
        MiniPool { tx: Some(tx), workers }
    }

    /// Queues `f` on a worker.
    pub fn execute(&self, f: impl FnOnce() + Send + 'static) {
        self.tx.as_ref().expect("the pool is running").send(Box::new(f)).expect("the workers are alive");
    }
}

impl Drop for MiniPool {
    fn drop(&mut self) {
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
