//! W2: 100,000 tiny tasks `f(x) = x + 1` on a 2-worker process pool, all results checked;
//! (a) submitted one by one (a handle per task, every handle joined), (b) through `map`.
//!
//! Side by side in one criterion group, pools built once outside the measured batch:
//! - escala `ProcessPool::new(2)`: (a) `submit_task(inc::call(i))` for every `i`, then
//!   `join()` on each handle; (b) `Executor::map_tasks` with no chunk size (escala has none
//!   to give: it batches by the measured task time and the window, many calls per frame);
//! - procspawn's `Pool::new(2)`: `pool.spawn(i, |x| x + 1)` + `join()` on each handle, over
//!   5,000 tasks instead of 100,000 (it runs about 2 × 10^4 tasks/s, and each pending handle
//!   holds 2 file descriptors); the figure is a throughput like all the others;
//! - diagnostic: escala `map_tasks` on a pool built with `map_window(1024)` instead of the
//!   default 4096 × size = 8192 tasks in flight (so batches of at most 256);
//! - the minimal pipe pool of `escala_benches::pipe_pool` (the limit): one `write(2)` per
//!   task, and chunks of 1,000 tasks per `write(2)`; plus, as a diagnostic, one `read(2)`
//!   and one `write(2)` per task on both sides.
//!
//! The Python peers of W2 are in `benchmarks/python/w2_process_pool.py`.
//!
//! Every worker here is this binary re-executed, so `main` is written by hand: escala's
//! `init()`, then the pipe pool's and procspawn's own entry points, then criterion.
//!
//! `cargo bench -p escala-benches --bench w2_process_pool`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group};
use escala::{Executor, ProcessPool};
use escala_benches::pipe_pool::{self, Mode, PipePool};
use escala_benches::{W2_PROCSPAWN_TASKS, W2_TASKS, W2_WORKERS, timing, wait_for_workers};

/// A smaller `map_window` than the default (4096 × size), for the diagnostic `map` row.
const MAP_WINDOW_DIAG: usize = 1024;

/// The W2 task.
#[escala::task]
fn inc(x: u64) -> u64 {
    x + 1
}

/// (a) One by one: a handle per task, every handle joined and its result checked.
fn escala_submit_join(pool: &ProcessPool, n: u64) -> u64 {
    let handles: Vec<_> = (0..n).map(|i| pool.submit_task(inc::call(black_box(i)))).collect();
    let mut sum = 0;
    for (i, h) in (0..n).zip(handles) {
        let v = h.join().expect("escala task");
        assert_eq!(v, i + 1);
        sum += v;
    }
    sum
}

/// (b) Through `map`, no chunk size.
fn escala_map(pool: &ProcessPool, n: u64) -> u64 {
    let mut sum = 0;
    for (i, out) in (0..n).zip(Executor::map_tasks(pool, (0..n).map(|i| inc::call(black_box(i))))) {
        let v = out.expect("escala task");
        assert_eq!(v, i + 1);
        sum += v;
    }
    sum
}

fn procspawn_submit_join(pool: &procspawn::Pool, n: u64) -> u64 {
    let handles: Vec<_> = (0..n).map(|i| pool.spawn(i, |x: u64| x + 1)).collect();
    let mut sum = 0;
    for (i, h) in (0..n).zip(handles) {
        let v = h.join().expect("procspawn task");
        assert_eq!(v, i + 1);
        sum += v;
    }
    sum
}

/// The sum of `f(i) = i + 1` over `0..n`.
const fn want(n: u64) -> u64 {
    n * (n + 1) / 2
}

fn w2(c: &mut Criterion) {
    let n = W2_TASKS;
    let (warm_up, measure) = timing(Duration::from_secs(1), Duration::from_secs(5));
    let mut g = c.benchmark_group("W2 process pool");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(warm_up).measurement_time(measure);

    g.throughput(Throughput::Elements(n));
    {
        let pool = ProcessPool::new(W2_WORKERS);
        wait_for_workers(&pool);
        g.bench_function("escala submit+join", |b| {
            b.iter(|| assert_eq!(escala_submit_join(&pool, n), want(n)))
        });
        g.bench_function("escala map_tasks", |b| b.iter(|| assert_eq!(escala_map(&pool, n), want(n))));
    }
    {
        // Diagnostic: the default map window is 4096 × size = 8192 tasks in flight.
        let pool = ProcessPool::builder().size(W2_WORKERS).map_window(MAP_WINDOW_DIAG).build();
        wait_for_workers(&pool);
        g.bench_function("escala map_tasks map_window 1024 (diagnostic)", |b| {
            b.iter(|| assert_eq!(escala_map(&pool, n), want(n)))
        });
    }
    {
        let mut pool = PipePool::new(W2_WORKERS, Mode::OneByOne);
        g.bench_function("pipe pool one-by-one (limit)", |b| b.iter(|| assert_eq!(pool.run(n), want(n))));
    }
    {
        let mut pool = PipePool::new(W2_WORKERS, Mode::Unbuffered);
        g.bench_function("pipe pool one read+write per task (diagnostic)", |b| {
            b.iter(|| assert_eq!(pool.run(n), want(n)))
        });
    }
    {
        let mut pool = PipePool::new(W2_WORKERS, Mode::Chunked(1000));
        g.bench_function("pipe pool chunks of 1000 (limit)", |b| b.iter(|| assert_eq!(pool.run(n), want(n))));
    }

    let m = W2_PROCSPAWN_TASKS;
    g.throughput(Throughput::Elements(m));
    {
        let pool = procspawn::Pool::new(W2_WORKERS).expect("procspawn pool");
        assert_eq!(procspawn_submit_join(&pool, 100), want(100));
        g.bench_function("procspawn spawn+join (5k tasks)", |b| {
            b.iter(|| assert_eq!(procspawn_submit_join(&pool, m), want(m)))
        });
        pool.shutdown();
    }
    g.finish();
}

/// For profilers: `ESCALA_BENCH_ONCE=<side>[:<tasks>]` runs one batch of one side (pool
/// built and warmed up first), prints its time on stderr and exits, without criterion.
const ONCE_ENV: &str = "ESCALA_BENCH_ONCE";

fn once(what: &str) {
    let (side, n) = match what.split_once(':') {
        Some((side, n)) => (side, n.parse().expect("a task count")),
        None => (what, W2_TASKS),
    };
    let time = |f: &mut dyn FnMut() -> u64| {
        let t = std::time::Instant::now();
        assert_eq!(f(), want(n));
        let took = t.elapsed();
        eprintln!("{side}: {n} tasks in {took:?} ({:.0} tasks/s)", n as f64 / took.as_secs_f64());
    };
    match side {
        "escala-submit" | "escala-map" => {
            let pool = ProcessPool::new(W2_WORKERS);
            wait_for_workers(&pool);
            if side == "escala-submit" {
                time(&mut || escala_submit_join(&pool, n));
            } else {
                time(&mut || escala_map(&pool, n));
            }
        }
        "pipe-one" | "pipe-chunked" => {
            let mode = if side == "pipe-one" { Mode::OneByOne } else { Mode::Chunked(1000) };
            let mut pool = PipePool::new(W2_WORKERS, mode);
            time(&mut || pool.run(n));
        }
        _ => panic!("{ONCE_ENV}: escala-submit, escala-map, pipe-one or pipe-chunked"),
    }
}

// No plots: they take longer than the measurements here (10 samples per benchmark).
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = w2
}

// What `criterion_main!(benches)` expands to (criterion 0.8.2), after the entry points of
// the three kinds of re-executed worker (each never returns in its own worker).
fn main() {
    let _exit = escala::init();
    pipe_pool::serve_if_worker();
    procspawn::init();
    if let Ok(what) = std::env::var(ONCE_ENV) {
        return once(&what);
    }
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
