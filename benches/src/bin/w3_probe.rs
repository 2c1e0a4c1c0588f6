//! W3, interleaved: serial, escala `ProcessPool` and `ThreadPool` (2 workers), two plain
//! `std::thread`s splitting the work and a 2-thread rayon pool (the ceiling on this
//! machine), one after the other in each round, so a noisy machine slows all of them alike.
//! Each round runs serial first, then the parallel runs in an order rotated by one per
//! round: the run right after the serial one finds a cold, idle second core (the process
//! pool's parent used 7.75 µs of CPU per task when it always ran there, 4.05 µs rotated).
//! Prints the median speed-ups (`serial ÷ x` per round) and the CPU time the ProcessPool spent beyond the serial run's
//! (from `/proc`: the pool's workers and the parent separately), which tells overhead from
//! idle time and is far steadier than the speed-up on a noisy machine.
//!
//! `cargo run --release -p escala-benches --bin w3_probe -- [ROUNDS [procs]]` (default 21;
//! `procs`: only the ProcessPool rounds, back to back, for profiling; prints the workers' and
//! the parent's CPU per task, and for each of their threads the CPU, the times it blocked
//! (each a wake-up later) and the times it was preempted, per task. `W3_IDLE_MS=N` sleeps N ms before each of those rounds, to see
//! what idle cores cost a round: on this noisy VM, from nothing to a fifth, run to run)

use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use escala::{Executor, ProcessPool, ThreadPool};
use escala_benches::{W2_WORKERS, W3_N, W3_TASKS, fib, wait_for_workers};

/// The W3 task, for both escala pools.
#[escala::task]
fn fib_task(n: u32) -> u64 {
    fib(n)
}

/// What the threads of one name (trailing digits dropped: a pool's slot threads count as
/// one) have used so far: CPU time in ns (`/proc/PID/task/*/schedstat`, exact, unlike clock
/// ticks, which miss the short runs of a pool's helper threads), and how often they blocked
/// (voluntary switches: each a wake-up later) or were preempted (involuntary).
#[derive(Default, Clone, Copy)]
struct Usage {
    cpu_ns: u64,
    blocked: u64,
    preempted: u64,
}

/// The `/proc` folders of a process's threads (`self` or a pid).
fn thread_dirs(pid: &str) -> impl Iterator<Item = std::path::PathBuf> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
    tasks.filter_map(|t| Some(t.ok()?.path()))
}

/// A thread's CPU time so far, in ns.
fn thread_ns(dir: &std::path::Path) -> u64 {
    let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
    stat.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// CPU time of a process so far, in ns: the sum over its threads.
fn cpu_ns(pid: &str) -> u64 {
    thread_dirs(pid).map(|d| thread_ns(&d)).sum()
}

/// [`Usage`] of each thread name of a process.
fn threads_of(pid: &str) -> HashMap<String, Usage> {
    let mut by_name: HashMap<String, Usage> = HashMap::new();
    for dir in thread_dirs(pid) {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let name = read("comm").trim().trim_end_matches(|c: char| c.is_ascii_digit()).to_string();
        let status = read("status");
        let field = |key: &str| {
            let line = status.lines().find(|l| l.starts_with(key));
            line.and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).unwrap_or(0)
        };
        let u = by_name.entry(name).or_default();
        u.cpu_ns += thread_ns(&dir);
        u.blocked += field("voluntary_ctxt_switches");
        u.preempted += field("nonvoluntary_ctxt_switches");
    }
    by_name
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

/// CPU time of the calling thread so far, in ns.
fn thread_cpu_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The work split over two plain threads: the sum, and the CPU time the two threads used.
fn two_threads() -> (u64, u64) {
    std::thread::scope(|s| {
        let half = || ((0..W3_TASKS / 2).map(|_| fib(black_box(W3_N))).sum::<u64>(), thread_cpu_ns());
        let (a, b) = (s.spawn(half), s.spawn(half));
        let ((x, cx), (y, cy)) = (a.join().expect("thread"), b.join().expect("thread"));
        (x + y, cx + cy)
    })
}

fn on_rayon(pool: &rayon::ThreadPool) -> u64 {
    use rayon::prelude::*;
    pool.install(|| (0..W3_TASKS).into_par_iter().map(|_| fib(black_box(W3_N))).sum())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn serial() -> u64 {
    (0..W3_TASKS).map(|_| fib(black_box(W3_N))).sum()
}

fn main() {
    let _escala = escala::init();
    let rounds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(21);
    let procs = ProcessPool::new(W2_WORKERS);
    wait_for_workers(&procs);
    let want = W3_TASKS * fib(W3_N);
    let timed = |f: &dyn Fn() -> u64| {
        let t = Instant::now();
        assert_eq!(f(), want);
        t.elapsed().as_secs_f64()
    };
    let pids: Vec<String> = procs.stats().processes.iter().map(|w| w.pid.to_string()).collect();
    let workers = || pids.iter().map(|p| cpu_ns(p)).sum::<u64>();
    // The ProcessPool's submit + join, adding the CPU time its parent and workers spent;
    // `pp_secs` is its own time, without the reads from /proc around it.
    let (parent, worked, pp_secs) = (Cell::new(0), Cell::new(0), Cell::new(0.0));
    let pp = || {
        let (c, w) = (cpu_ns("self"), workers());
        let t = Instant::now();
        let sum = on_pool(&procs);
        pp_secs.set(t.elapsed().as_secs_f64());
        parent.set(parent.get() + cpu_ns("self") - c);
        worked.set(worked.get() + workers() - w);
        sum
    };
    let time_of = |name: &str, f: &dyn Fn() -> u64| {
        let secs = timed(f);
        if name == "pp" { pp_secs.get() } else { secs }
    };
    let per_task = |ns: u64| ns as f64 / (rounds as u64 * W3_TASKS) as f64 / 1e3;
    if std::env::args().nth(2).as_deref() == Some("procs") {
        // Only the ProcessPool, submit and join (for `perf`), back to back; the speed-up
        // against serial rounds run before them.
        let s = median((0..5).map(|_| timed(&serial)).collect());
        let idle = std::env::var("W3_IDLE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut ups = vec![];
        let procs_of = || {
            let all = std::iter::once("self").chain(pids.iter().map(String::as_str));
            all.map(threads_of).collect::<Vec<_>>()
        };
        let before = procs_of();
        for _ in 0..rounds {
            std::thread::sleep(std::time::Duration::from_millis(idle));
            ups.push(s / time_of("pp", &pp));
        }
        println!(
            "ProcessPool back to back: speed-up {:.2}, CPU per task: workers {:.1} µs, parent {:.1} µs",
            median(ups),
            per_task(worked.get()),
            per_task(parent.get())
        );
        // Per task, for each thread of the parent and of each worker.
        let tasks = (rounds as u64 * W3_TASKS) as f64;
        for (i, (b, a)) in before.iter().zip(&procs_of()).enumerate() {
            let mut names: Vec<_> = a.keys().collect();
            names.sort();
            for name in names {
                let (x, y) = (a[name], b.get(name).copied().unwrap_or_default());
                let who = if i == 0 { "parent".to_string() } else { format!("worker {i}") };
                println!(
                    "  {who:8} {name:18} CPU {:6.2} µs, blocked {:.3}, preempted {:.3} per task",
                    (x.cpu_ns - y.cpu_ns) as f64 / tasks / 1e3,
                    (x.blocked - y.blocked) as f64 / tasks,
                    (x.preempted - y.preempted) as f64 / tasks
                );
            }
        }
        return;
    }
    let threads = ThreadPool::new(W2_WORKERS);
    let rayon = rayon::ThreadPoolBuilder::new().num_threads(W2_WORKERS).build().expect("rayon pool");
    let (mut serials, mut cpu_serial) = (vec![], 0);
    let cpu_threads = Cell::new(0);
    let th = || {
        let (sum, c) = two_threads();
        cpu_threads.set(cpu_threads.get() + c);
        sum
    };
    // The parallel runs, in a different order each round: whichever runs right after the
    // serial run finds the second core idle and cold (on this VM that costs the first run
    // several % of its speed), so each takes that place as often as the others.
    let modes: [(&str, &dyn Fn() -> u64); 8] = [
        ("pp", &pp),
        ("tp", &|| on_pool(&threads)),
        ("pm", &|| map_on_pool(&procs)),
        ("tm", &|| map_on_pool(&threads)),
        ("pw", &|| wait_all_on_pool(&procs)),
        ("tw", &|| wait_all_on_pool(&threads)),
        ("th", &th),
        ("ry", &|| on_rayon(&rayon)),
    ];
    let mut ups: HashMap<&str, Vec<f64>> = HashMap::new();
    for round in 0..rounds {
        let c = cpu_ns("self");
        let s = timed(&serial);
        cpu_serial += cpu_ns("self") - c;
        serials.push(s);
        for k in 0..modes.len() {
            let (name, f) = modes[(round + k) % modes.len()];
            ups.entry(name).or_default().push(s / time_of(name, f));
        }
    }
    let (cpu_parent, cpu_workers) = (parent.get(), worked.get());
    let m = |name: &str| median(ups[name].clone());
    let (pp, tp, th, ry) = (m("pp"), m("tp"), m("th"), m("ry"));
    let (pm, tm, pw, tw) = (m("pm"), m("tm"), m("pw"), m("tw"));
    println!("W3 interleaved, {rounds} rounds, median serial {:.1} ms", median(serials) * 1e3);
    println!("speed-up: ProcessPool {:.2}, ThreadPool {:.2}, two threads {:.2}, rayon {:.2}", pp, tp, th, ry);
    println!("speed-up through map_tasks: ProcessPool {pm:.2}, ThreadPool {tm:.2}");
    println!("speed-up waiting for all at once: ProcessPool {pw:.2}, ThreadPool {tw:.2}");
    println!(
        "CPU per task, µs: serial {:.1}; two threads {:.1}; ProcessPool workers {:.1} + parent {:.1} (overhead {:.1}%)",
        per_task(cpu_serial),
        per_task(cpu_threads.get()),
        per_task(cpu_workers),
        per_task(cpu_parent),
        100.0 * (cpu_workers + cpu_parent) as f64 / cpu_serial as f64 - 100.0,
    );
}
