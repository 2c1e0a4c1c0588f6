//! W3: 400 × recursive fib(24), serial vs 2 workers: speed-up.
//!
//! One criterion group, one measured iteration = the 400 computations, sum checked:
//! - `serial`: the 400 calls one after the other on the benchmark thread;
//! - escala `ThreadPool::new(2)` and `ProcessPool::new(2)`: `submit_task(fib_task::call(24))`
//!   400 times, then `join()` on every handle;
//! - rayon, a 2-thread pool: `(0..400).into_par_iter().map(|_| fib(24)).sum()`.
//!
//! The speed-up of a pool is `serial ÷ pool` from the criterion medians of the same run
//! (`benchmarks/run.sh` computes it and notes `/proc/loadavg` beside it). The Python peers
//! (serial, `ThreadPoolExecutor`, `ProcessPoolExecutor`) are in
//! `benchmarks/python/w3_speedup.py`.
//!
//! The process pool re-executes this binary, so `main` calls `escala::init()` first.
//!
//! `cargo bench -p escala-benches --bench w3_speedup`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group};
use escala::{Executor, ProcessPool, ThreadPool};
use escala_benches::{W2_WORKERS, W3_N, W3_TASKS, fib, timing, wait_for_workers};
use rayon::prelude::*;

/// The W3 task, for both escala pools.
#[escala::task]
fn fib_task(n: u32) -> u64 {
    fib(n)
}

fn on_pool(pool: &impl Executor, tasks: u64) -> u64 {
    let handles: Vec<_> = (0..tasks).map(|_| pool.submit_task(fib_task::call(black_box(W3_N)))).collect();
    handles.into_iter().map(|h| h.join().expect("fib task")).sum()
}

fn w3(c: &mut Criterion) {
    let n = W3_TASKS;
    let want = n * fib(W3_N);
    let (warm_up, measure) = timing(Duration::from_secs(1), Duration::from_secs(4));
    let mut g = c.benchmark_group("W3 fib speed-up");
    g.throughput(Throughput::Elements(n))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(measure);
    g.bench_function("serial", |b| {
        b.iter(|| assert_eq!((0..n).map(|_| fib(black_box(W3_N))).sum::<u64>(), want))
    });
    {
        let pool = ThreadPool::new(W2_WORKERS);
        g.bench_function("escala ThreadPool 2 workers", |b| b.iter(|| assert_eq!(on_pool(&pool, n), want)));
    }
    {
        let pool = ProcessPool::new(W2_WORKERS);
        wait_for_workers(&pool);
        g.bench_function("escala ProcessPool 2 workers", |b| b.iter(|| assert_eq!(on_pool(&pool, n), want)));
    }
    {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(W2_WORKERS).build().expect("rayon pool");
        g.bench_function("rayon 2 threads", |b| {
            b.iter(|| {
                let sum: u64 = pool.install(|| (0..n).into_par_iter().map(|_| fib(black_box(W3_N))).sum());
                assert_eq!(sum, want);
            })
        });
    }
    g.finish();
}

// No plots: they take longer than the measurements here (10 samples per benchmark).
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = w3
}

// What `criterion_main!(benches)` expands to (criterion 0.8.2), with `escala::init()`
// first: in a re-executed pool worker it serves tasks and never returns.
fn main() {
    let _exit = escala::init();
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
