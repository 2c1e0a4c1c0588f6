//! W9: scaling of escala's pools.
//!
//! - Per-task cost as the work grows: batches of 10^3, 10^4, 10^5 and 10^6 tasks on a
//!   2-worker pool, submitted one by one, every handle joined and every result checked.
//!   The thread pool runs the W1 task (return the input integer), the process pool the W2
//!   task (`x + 1`). Per-task cost = median batch time ÷ batch size; the target is
//!   max ÷ min ≤ 1.3 across the four sizes.
//! - Throughput at 1, 2, 4 and 8 workers: the W1 batch (200,000 tasks) on the thread pool,
//!   the W2 batch (100,000 tasks, one by one) on the process pool. The target is throughput
//!   non-decreasing up to the core count.
//!
//! Each pool is built once per size or worker count, outside the measurement. The process
//! pool re-executes this binary, so `main` calls `escala::init()` first.
//!
//! `cargo bench -p escala-benches --bench w9_scaling`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};
use escala::{ProcessPool, ThreadPool};
use escala_benches::{
    W1_TASKS, W2_TASKS, W2_WORKERS, W9_SIZES, W9_WORKERS, sum_below, timing, wait_for_workers,
};

/// The W2 task.
#[escala::task]
fn inc(x: u64) -> u64 {
    x + 1
}

/// W1's batch: `n` closures returning their input, a handle each, sum checked.
fn thread_batch(pool: &ThreadPool, n: u64) {
    let handles: Vec<_> = (0..n).map(|i| pool.submit(move || black_box(i))).collect();
    let sum: u64 = handles.into_iter().map(|h| h.join().expect("thread task")).sum();
    assert_eq!(sum, sum_below(n));
}

/// W2's batch, one by one: `n` calls of `inc`, a handle each, every result checked.
fn process_batch(pool: &ProcessPool, n: u64) {
    let handles: Vec<_> = (0..n).map(|i| pool.submit_task(inc::call(black_box(i)))).collect();
    for (i, h) in (0..n).zip(handles) {
        assert_eq!(h.join().expect("process task"), i + 1);
    }
}

fn configure(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let (warm_up, measure) = timing(Duration::from_secs(1), Duration::from_secs(3));
    g.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(warm_up).measurement_time(measure);
}

fn per_task_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("W9 per-task cost ThreadPool");
    configure(&mut g);
    let pool = ThreadPool::new(W2_WORKERS);
    for n in W9_SIZES {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| b.iter(|| thread_batch(&pool, n)));
    }
    g.finish();
    drop(pool);

    let mut g = c.benchmark_group("W9 per-task cost ProcessPool");
    configure(&mut g);
    let pool = ProcessPool::new(W2_WORKERS);
    wait_for_workers(&pool);
    for n in W9_SIZES {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| b.iter(|| process_batch(&pool, n)));
    }
    g.finish();
}

fn workers(c: &mut Criterion) {
    let mut g = c.benchmark_group("W9 workers ThreadPool");
    configure(&mut g);
    g.throughput(Throughput::Elements(W1_TASKS));
    for w in W9_WORKERS {
        let pool = ThreadPool::new(w);
        g.bench_with_input(BenchmarkId::from_parameter(w), &W1_TASKS, |b, &n| {
            b.iter(|| thread_batch(&pool, n))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("W9 workers ProcessPool");
    configure(&mut g);
    g.throughput(Throughput::Elements(W2_TASKS));
    for w in W9_WORKERS {
        let pool = ProcessPool::new(w);
        wait_for_workers(&pool);
        g.bench_with_input(BenchmarkId::from_parameter(w), &W2_TASKS, |b, &n| {
            b.iter(|| process_batch(&pool, n))
        });
    }
    g.finish();
}

/// For profilers: `ESCALA_BENCH_ONCE=<thread|process>:<tasks>:<batches>` runs that many
/// batches on a 2-worker pool (built first), prints the time per task on stderr and exits,
/// without criterion.
const ONCE_ENV: &str = "ESCALA_BENCH_ONCE";

fn once(what: &str) {
    let parts: Vec<&str> = what.split(':').collect();
    let [kind, n, batches] = parts[..] else { panic!("{ONCE_ENV}=<thread|process>:<tasks>:<batches>") };
    let (n, batches): (u64, u64) = (n.parse().expect("tasks"), batches.parse().expect("batches"));
    let t = std::time::Instant::now();
    match kind {
        "thread" => {
            let pool = ThreadPool::new(W2_WORKERS);
            let t0 = std::time::Instant::now();
            (0..batches).for_each(|_| thread_batch(&pool, n));
            eprintln!("thread: {:?} per task", t0.elapsed() / (n * batches) as u32);
        }
        "process" => {
            let pool = ProcessPool::new(W2_WORKERS);
            wait_for_workers(&pool);
            let t0 = std::time::Instant::now();
            (0..batches).for_each(|_| process_batch(&pool, n));
            eprintln!("process: {:?} per task", t0.elapsed() / (n * batches) as u32);
        }
        _ => panic!("{ONCE_ENV}=<thread|process>:<tasks>:<batches>"),
    }
    eprintln!("total {:?}", t.elapsed());
}

// No plots: they take longer than the measurements here (10 samples per benchmark).
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = per_task_cost, workers
}

// What `criterion_main!(benches)` expands to (criterion 0.8.2), with `escala::init()`
// first: in a re-executed pool worker it serves tasks and never returns.
fn main() {
    let _exit = escala::init();
    if let Ok(what) = std::env::var(ONCE_ENV) {
        return once(&what);
    }
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
