//! Benchmarks W6 and W7 of the spec, run by `benchmarks/w6_redis.sh` against a Redis server
//! the script starts. One binary is the producer and (re-executed) the workers, so the
//! workers run the producer's registered tasks.
//!
//! ```text
//! w6_w7 w6 URL [TASKS]   # throughput of TASKS tiny tasks with 2 worker processes, then
//!                        # p50/p99 round trip of 1,000 sequential tasks; prints JSON
//! w6_w7 w7 URL [TASKS]   # TASKS x (sleep 1 ms) with 2 workers; one is SIGKILLed at 2 s
//!                        # and restarted; counts lost and duplicated; prints JSON
//! w6_w7 worker URL QUEUE CONCURRENCY LEASE_MS
//! ```
//!
//! W7's workers hold leases of 2 s, so the killed worker's tasks are reclaimed 2 s after
//! its last renewal (the default lease is 30 s).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use escala::Executor;
use escala_redis::{RedisExecutor, Worker};

#[escala::task]
fn tiny(x: u64) -> u64 {
    x + 1
}

#[escala::task]
fn sleep_1ms(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    x
}

const CONCURRENCY: &str = "4";

fn main() {
    let _exit = escala::init();
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "worker" => {
            let conc = arg(4).parse().unwrap();
            let lease = Duration::from_millis(arg(5).parse().unwrap());
            Worker::builder(&arg(2))
                .queue(&arg(3))
                .concurrency(conc)
                .lease(lease)
                .run_until_signal()
                .unwrap();
        }
        "w6" => w6(&arg(2), arg(3).parse().unwrap_or(20_000)),
        "w7" => w7(&arg(2), arg(3).parse().unwrap_or(20_000)),
        _ => eprintln!("usage: w6_w7 w6|w7 URL [TASKS] | worker URL QUEUE CONCURRENCY LEASE_MS"),
    }
}

fn worker(url: &str, queue: &str, lease_ms: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["worker", url, queue, CONCURRENCY, lease_ms])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut c: Child) {
    let _ = nix_kill(c.id(), "TERM");
    let _ = c.wait();
}

fn nix_kill(pid: u32, sig: &str) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status()
}

fn w6(url: &str, n: u64) {
    let queue = format!("w6-{}", std::process::id());
    let ex = RedisExecutor::builder(url).queue(&queue).map_window(usize::MAX).build().unwrap();
    let workers = [worker(url, &queue, "30000"), worker(url, &queue, "30000")];
    // Warm up: both workers are up once a few tasks come back.
    for h in (0..200).map(|i| ex.submit_task(tiny::call(i))).collect::<Vec<_>>() {
        h.join().unwrap();
    }
    let t = Instant::now();
    let hs: Vec<_> = (0..n).map(|i| ex.submit_task(tiny::call(i))).collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), i as u64 + 1);
    }
    let secs = t.elapsed().as_secs_f64();
    let mut rt: Vec<Duration> = (0..1000)
        .map(|i| {
            let t = Instant::now();
            ex.submit_task(tiny::call(i)).join().unwrap();
            t.elapsed()
        })
        .collect();
    rt.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{{\"workload\":\"W6\",\"side\":\"escala\",\"tasks\":{n},\"seconds\":{secs:.3},\"tasks_per_s\":{:.0},\"rt_p50_ms\":{:.3},\"rt_p99_ms\":{:.3}}}",
        n as f64 / secs,
        ms(rt[499]),
        ms(rt[989])
    );
    for w in workers {
        stop(w);
    }
}

fn w7(url: &str, n: u64) {
    let queue = format!("w7-{}", std::process::id());
    let ex = RedisExecutor::builder(url).queue(&queue).map_window(usize::MAX).build().unwrap();
    let mut victim = worker(url, &queue, "2000");
    let other = worker(url, &queue, "2000");
    let t = Instant::now();
    let hs: Vec<_> = (0..n).map(|i| ex.submit_task(sleep_1ms::call(i))).collect();
    // Kill one worker 2 s in (a sleep here is the workload's schedule, not a sync).
    std::thread::sleep(Duration::from_secs(2).saturating_sub(t.elapsed()));
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let restarted = worker(url, &queue, "2000");
    let mut lost = 0;
    for (i, h) in hs.into_iter().enumerate() {
        match h.join_timeout(Duration::from_secs(300)) {
            Ok(Ok(v)) if v == i as u64 => {}
            _ => lost += 1,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let q = ex.queue_status().unwrap();
    println!(
        "{{\"workload\":\"W7\",\"side\":\"escala\",\"tasks\":{n},\"seconds\":{secs:.3},\"lost\":{lost},\"redelivered\":{},\"duplicate_results\":{}}}",
        q.redelivered, q.duplicate_results
    );
    stop(other);
    stop(restarted);
}
