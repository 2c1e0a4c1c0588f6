//! W3, interleaved: serial, escala `ProcessPool` and `ThreadPool` (2 workers), and two plain
//! `std::thread`s splitting the work (the ceiling on this machine), one after the other in
//! each round, so a noisy machine slows all of them alike. Prints the median speed-ups
//! (`serial ÷ x` per round) and the CPU time each spent (from `/proc`, in clock ticks: the
//! pool's workers and the parent separately), which tells overhead from idle time.
//!
//! `cargo run --release -p escala-benches --bin w3_probe -- [ROUNDS]` (default 21)

use std::hint::black_box;
use std::time::Instant;

use escala::{Executor, ProcessPool, ThreadPool};
use escala_benches::{W2_WORKERS, W3_N, W3_TASKS, fib, wait_for_workers};

/// The W3 task, for both escala pools.
#[escala::task]
fn fib_task(n: u32) -> u64 {
    fib(n)
}

/// CPU time (user + system, in clock ticks) of a process so far: `self` or a pid.
fn ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

fn on_pool(pool: &impl Executor) -> u64 {
    let handles: Vec<_> = (0..W3_TASKS).map(|_| pool.submit_task(fib_task::call(black_box(W3_N)))).collect();
    handles.into_iter().map(|h| h.join().expect("fib task")).sum()
}

fn wait_all_on_pool(pool: &impl Executor) -> u64 {
    let handles: Vec<_> = (0..W3_TASKS).map(|_| pool.submit_task(fib_task::call(black_box(W3_N)))).collect();
    let (done, _) = escala::wait(handles, escala::WaitFor::AllCompleted, None);
    done.into_iter().map(|h| h.join().expect("fib task")).sum()
}

fn map_on_pool(pool: &impl Executor) -> u64 {
    let calls = (0..W3_TASKS).map(|_| fib_task::call(black_box(W3_N)));
    pool.map_tasks(calls).map(|out| out.expect("fib task")).sum()
}

fn two_threads() -> u64 {
    std::thread::scope(|s| {
        let half = || (0..W3_TASKS / 2).map(|_| fib(black_box(W3_N))).sum::<u64>();
        let (a, b) = (s.spawn(half), s.spawn(half));
        a.join().expect("thread") + b.join().expect("thread")
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let _escala = escala::init();
    let rounds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(21);
    let procs = ProcessPool::new(W2_WORKERS);
    wait_for_workers(&procs);
    let threads = ThreadPool::new(W2_WORKERS);
    let pids: Vec<String> = procs.stats().processes.iter().map(|w| w.pid.to_string()).collect();
    let workers = || pids.iter().map(|p| ticks(p)).sum::<u64>();
    let want = W3_TASKS * fib(W3_N);
    let (mut serial, mut pp, mut tp, mut th) = (vec![], vec![], vec![], vec![]);
    let (mut pm, mut tm) = (vec![], vec![]);
    let (mut pw, mut tw) = (vec![], vec![]);
    let (mut cpu_serial, mut cpu_parent, mut cpu_workers, mut cpu_threads) = (0, 0, 0, 0);
    let timed = |f: &dyn Fn() -> u64| {
        let t = Instant::now();
        assert_eq!(f(), want);
        t.elapsed().as_secs_f64()
    };
    for _ in 0..rounds {
        let c = ticks("self");
        let s = timed(&|| (0..W3_TASKS).map(|_| fib(black_box(W3_N))).sum());
        cpu_serial += ticks("self") - c;
        let (c, w) = (ticks("self"), workers());
        let p = timed(&|| on_pool(&procs));
        (cpu_parent, cpu_workers) = (cpu_parent + ticks("self") - c, cpu_workers + workers() - w);
        let t = timed(&|| on_pool(&threads));
        pm.push(s / timed(&|| map_on_pool(&procs)));
        tm.push(s / timed(&|| map_on_pool(&threads)));
        pw.push(s / timed(&|| wait_all_on_pool(&procs)));
        tw.push(s / timed(&|| wait_all_on_pool(&threads)));
        let c = ticks("self");
        let h = timed(&two_threads);
        cpu_threads += ticks("self") - c;
        serial.push(s);
        pp.push(s / p);
        tp.push(s / t);
        th.push(s / h);
    }
    println!("W3 interleaved, {rounds} rounds, median serial {:.1} ms", median(serial) * 1e3);
    println!(
        "speed-up: ProcessPool {:.2}, ThreadPool {:.2}, two threads {:.2}",
        median(pp),
        median(tp),
        median(th)
    );
    println!("speed-up through map_tasks: ProcessPool {:.2}, ThreadPool {:.2}", median(pm), median(tm));
    println!("speed-up waiting for all at once: ProcessPool {:.2}, ThreadPool {:.2}", median(pw), median(tw));
    println!(
        "CPU ticks: serial {cpu_serial}, ProcessPool workers {cpu_workers} + parent {cpu_parent}, two threads {cpu_threads}"
    );
}
