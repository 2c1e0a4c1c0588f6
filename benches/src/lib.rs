//! Shared pieces of the escala benchmarks (see `BENCHMARKS.md` at the workspace root).
//!
//! The benchmarks themselves live in `benches/`; this library holds the hand-written peers
//! that are not a crate of their own, so every benchmark measures the same reference code.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

/// W1: tasks per measured batch.
pub const W1_TASKS: u64 = 200_000;

/// W1: pool size.
pub const W1_WORKERS: usize = 2;

/// W4: units started and joined, one after the other, per measured batch.
pub const W4_UNITS: u64 = 300;

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
