//! W10: memory — resident bytes per pending task while 1,000,000 tasks wait in a thread
//! pool whose 2 workers are blocked; peak RSS.
//!
//! Each side runs in a fresh child process (this binary re-executed with `--side NAME`), so
//! no side inherits another's heap. A side blocks both workers, reads its RSS, submits the
//! tasks keeping every handle in a `Vec` (8 bytes each, as a Python list of futures would),
//! reads its RSS again and prints `(after - before) / tasks`. The user's closure captures
//! one `u64`. The Python TPE peer is `benchmarks/python/w10_memory.py`.
//!
//! `cargo bench -p escala-benches --bench w10_memory` (prints a table; `ESCALA_BENCH_QUICK=1`
//! for one repetition)

use std::sync::{Arc, Barrier};

const TASKS: usize = 1_000_000;
const SIDES: [&str; 2] = ["escala ThreadPool", "tokio spawn + JoinHandle"];

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * 4096
}

/// Blocks `workers` workers until the returned barrier is passed by the caller too.
fn escala_side() -> (u64, u64) {
    let pool = escala::ThreadPool::new(2);
    let (started, gate) = (Arc::new(Barrier::new(3)), Arc::new(Barrier::new(3)));
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let (s, g) = (started.clone(), gate.clone());
            pool.submit(move || {
                s.wait();
                g.wait();
            })
        })
        .collect();
    started.wait();
    let mut handles = Vec::with_capacity(TASKS);
    let before = rss_bytes();
    for i in 0..TASKS as u64 {
        handles.push(pool.submit(move || i));
    }
    let after = rss_bytes();
    gate.wait();
    for h in blockers {
        h.join().expect("blocker");
    }
    let sum: u64 = handles.into_iter().map(|h| h.join().expect("task")).sum();
    assert_eq!(sum, (TASKS as u64 - 1) * TASKS as u64 / 2);
    (before, after)
}

fn tokio_side() -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("runtime");
    let (started, gate) = (Arc::new(Barrier::new(3)), Arc::new(Barrier::new(3)));
    for _ in 0..2 {
        let (s, g) = (started.clone(), gate.clone());
        // Blocking inside a task holds its worker thread, as the escala side does.
        rt.spawn(async move {
            s.wait();
            g.wait();
        });
    }
    started.wait();
    let mut handles = Vec::with_capacity(TASKS);
    let before = rss_bytes();
    for i in 0..TASKS as u64 {
        handles.push(rt.spawn(async move { i }));
    }
    let after = rss_bytes();
    gate.wait();
    let sum: u64 = rt.block_on(async {
        let mut s = 0;
        for h in handles {
            s += h.await.expect("task");
        }
        s
    });
    assert_eq!(sum, (TASKS as u64 - 1) * TASKS as u64 / 2);
    (before, after)
}

fn measure(side: &str) -> (u64, u64) {
    let exe = std::env::current_exe().expect("this binary");
    let out = std::process::Command::new(exe).args(["--side", side]).output().expect("side runs");
    assert!(out.status.success(), "{side}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().expect("bytes"));
    (f.next().expect("before"), f.next().expect("after"))
}

fn main() {
    let _exit = escala::init();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--side") {
        let (before, after) = match args[i + 1].as_str() {
            "escala ThreadPool" => escala_side(),
            _ => tokio_side(),
        };
        println!("{before} {after}");
        return;
    }
    let reps = if std::env::var_os("ESCALA_BENCH_QUICK").is_some() { 1 } else { 3 };
    let mut per_task: Vec<Vec<f64>> = vec![Vec::new(); SIDES.len()];
    let mut peak: Vec<Vec<f64>> = vec![Vec::new(); SIDES.len()];
    for _ in 0..reps {
        for (s, side) in SIDES.iter().enumerate() {
            let (before, after) = measure(side);
            per_task[s].push((after.saturating_sub(before)) as f64 / TASKS as f64);
            peak[s].push(after as f64 / (1 << 20) as f64);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    println!("W10: {TASKS} pending tasks, 2 blocked workers, {reps} repetitions (median [min–max])");
    println!("{:<28} {:>28} {:>24}", "side", "bytes per pending task", "RSS with all pending");
    for (s, side) in SIDES.iter().enumerate() {
        let (m, lo, hi) = median(&mut per_task[s]);
        let (pm, plo, phi) = median(&mut peak[s]);
        println!(
            "{side:<28} {:>28} {:>24}",
            format!("{m:.0} [{lo:.0}–{hi:.0}]"),
            format!("{pm:.0} MiB [{plo:.0}–{phi:.0}]")
        );
        println!("W10\t{side}\t{m:.1}\t{lo:.1}\t{hi:.1}\t{pm:.1}");
    }
}
