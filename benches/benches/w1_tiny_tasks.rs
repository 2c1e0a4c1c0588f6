//! W1: 200,000 tiny tasks (return the input integer) submitted one by one to a 2-worker
//! pool, every result awaited through its own handle, sum checked.
//!
//! Peers, side by side in one criterion group: rayon `spawn` + a channel per task (the
//! analogue of a handle per task) and + one shared channel carrying (index, value), tokio
//! `spawn` + `JoinHandle`, and the minimal std pool + one shared result channel (the
//! fire-and-forget reference: no handle per task). Each pool is built once, outside the
//! measured batch; one measured iteration is the whole batch of 200,000 tasks.
//!
//! `cargo bench -p escala-benches --bench w1_tiny_tasks`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use escala_benches::{MiniPool, W1_TASKS, W1_WORKERS, sum_below};

fn escala_submit_join(pool: &escala::ThreadPool, n: u64) -> u64 {
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n {
        handles.push(pool.submit(move || black_box(i)));
    }
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

fn rayon_spawn_channel(pool: &rayon::ThreadPool, n: u64) -> u64 {
    let mut rxs = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (tx, rx) = crossbeam_channel::bounded(1);
        pool.spawn(move || {
            let _ = tx.send(black_box(i));
        });
        rxs.push(rx);
    }
    rxs.into_iter().map(|rx| rx.recv().unwrap()).sum()
}

fn rayon_spawn_shared_channel(pool: &rayon::ThreadPool, n: u64) -> u64 {
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..n {
        let tx = tx.clone();
        pool.spawn(move || {
            let _ = tx.send((i, black_box(i)));
        });
    }
    drop(tx);
    // The index says which task each result belongs to; here every result is its index.
    rx.iter().take(n as usize).map(|(_, v)| v).sum()
}

fn tokio_spawn_joinhandle(rt: &tokio::runtime::Runtime, n: u64) -> u64 {
    rt.block_on(async {
        let mut handles = Vec::with_capacity(n as usize);
        for i in 0..n {
            handles.push(tokio::spawn(async move { black_box(i) }));
        }
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    })
}

fn threadpool_channel(pool: &MiniPool, n: u64) -> u64 {
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..n {
        let tx = tx.clone();
        pool.execute(move || {
            let _ = tx.send(black_box(i));
        });
    }
    drop(tx);
    rx.iter().take(n as usize).sum()
}

fn w1(c: &mut Criterion) {
    let n = W1_TASKS;
    let want = sum_below(n);
    let mut g = c.benchmark_group("W1 tiny tasks");
    g.throughput(Throughput::Elements(n))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    {
        let pool = escala::ThreadPool::new(W1_WORKERS);
        g.bench_function("escala ThreadPool submit+join", |b| {
            b.iter(|| assert_eq!(escala_submit_join(&pool, n), want))
        });
    }
    {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(W1_WORKERS).build().unwrap();
        g.bench_function("rayon spawn+channel", |b| {
            b.iter(|| assert_eq!(rayon_spawn_channel(&pool, n), want))
        });
        g.bench_function("rayon spawn+shared channel (index)", |b| {
            b.iter(|| assert_eq!(rayon_spawn_shared_channel(&pool, n), want))
        });
    }
    {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(W1_WORKERS).build().unwrap();
        g.bench_function("tokio spawn+JoinHandle", |b| {
            b.iter(|| assert_eq!(tokio_spawn_joinhandle(&rt, n), want))
        });
    }
    {
        let pool = MiniPool::new(W1_WORKERS);
        g.bench_function("threadpool+channel (fire-and-forget)", |b| {
            b.iter(|| assert_eq!(threadpool_channel(&pool, n), want))
        });
    }
    g.finish();
}

// No plots: they take longer than the measurements here (10 samples per benchmark).
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = w1
}
criterion_main!(benches);
