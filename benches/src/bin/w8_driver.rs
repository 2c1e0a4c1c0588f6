//! W8's driver: reads worker start lines from a FIFO, SIGKILLs the newest worker `--kills`
//! times (pausing `--settle-ms` between kills so no supervisor sees a crash loop), and
//! prints the restart latencies — kill to the replacement's first instruction — as
//! `label p50_ms p99_ms min_ms max_ms n`.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn now_ns() -> u128 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("a monotonic clock");
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut fifo, mut label, mut kills, mut settle) = (None, String::from("?"), 50usize, 300u64);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--fifo" => fifo = Some(val()),
            "--label" => label = val(),
            "--kills" => kills = val().parse().expect("a number of kills"),
            "--settle-ms" => settle = val().parse().expect("milliseconds"),
            other => panic!("unknown argument {other}"),
        }
    }
    let fifo = fifo.expect("--fifo PATH");
    // Read-write: writers coming and going never make it EOF.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).expect("the FIFO opens");
    let (tx, rx) = std::sync::mpsc::channel::<(i32, u128)>();
    std::thread::spawn(move || {
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let mut it = line.split(' ');
            let pid = it.next().and_then(|p| p.parse().ok()).expect("a pid");
            let ns = it.next().and_then(|p| p.parse().ok()).expect("a time");
            let _ = tx.send((pid, ns));
        }
    });
    let wait = Duration::from_secs(30);
    let (mut pid, _) = rx.recv_timeout(wait).expect("the first worker starts");
    let mut lat = Vec::with_capacity(kills);
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(settle));
        let t0 = now_ns();
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("the worker is alive");
        let (next, t1) = rx.recv_timeout(wait).expect("a replacement starts");
        lat.push((t1.saturating_sub(t0)) as f64 / 1e6);
        pid = next;
    }
    // The last worker is left to its supervisor, which stops it with everything else.
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    println!("{label} {:.3} {:.3} {:.3} {:.3} {}", q(0.5), q(0.99), lat[0], lat[lat.len() - 1], lat.len());
}
