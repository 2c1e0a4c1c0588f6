//! W4: start one unit, run a function returning a value, join — per-unit latency.
//!
//! One measured iteration is 300 units started and joined one after the other
//! (`Throughput::Elements(300)`): the time per unit is the iteration time / 300.
//!
//! - thread unit: `escala::thread::spawn` vs `std::thread::spawn` + `join` (plus a named
//!   `std::thread::Builder`, as a diagnostic: escala names its threads);
//! - process unit: `escala::process::spawn(ident::call(x))` vs `std::process::Command` of
//!   `/bin/true` (the near-physical limit), plus a diagnostic `Command` re-executing this
//!   very binary, which exits right after `escala::init()` (the floor of a re-exec design).
//!
//! Process units re-execute this binary, so `main` is written by hand and calls
//! `escala::init()` first (criterion_main! would generate a `main` without it).
//!
//! `cargo bench -p escala-benches --bench w4_unit_latency`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group};
use escala_benches::W4_UNITS;

/// Set on the diagnostic re-exec child: exit at once after `escala::init()`.
const REEXEC_MARKER: &str = "ESCALA_BENCH_W4_REEXEC";

/// The function a process unit runs: gives its argument back.
#[escala::task]
fn ident(x: u64) -> u64 {
    x
}

fn w4_thread(c: &mut Criterion) {
    let n = W4_UNITS;
    let mut g = c.benchmark_group("W4 thread unit");
    g.throughput(Throughput::Elements(n))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("escala::thread::spawn+join", |b| {
        b.iter(|| {
            for i in 0..n {
                let h = escala::thread::spawn("w4", move || black_box(i));
                assert_eq!(h.join().unwrap(), i);
            }
        })
    });
    g.bench_function("std::thread::spawn+join", |b| {
        b.iter(|| {
            for i in 0..n {
                let h = std::thread::spawn(move || black_box(i));
                assert_eq!(h.join().unwrap(), i);
            }
        })
    });
    g.bench_function("std::thread::Builder named+join (diagnostic)", |b| {
        b.iter(|| {
            for i in 0..n {
                let h = std::thread::Builder::new().name("w4".into()).spawn(move || black_box(i)).unwrap();
                assert_eq!(h.join().unwrap(), i);
            }
        })
    });
    g.finish();
}

fn w4_process(c: &mut Criterion) {
    let n = W4_UNITS;
    let mut g = c.benchmark_group("W4 process unit");
    g.throughput(Throughput::Elements(n))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("escala::process::spawn+join", |b| {
        b.iter(|| {
            for i in 0..n {
                let h = escala::process::spawn(ident::call(i));
                assert_eq!(h.join().unwrap(), i);
            }
        })
    });
    g.bench_function("Command /bin/true", |b| {
        b.iter(|| {
            for _ in 0..n {
                let st = std::process::Command::new("/bin/true").status().unwrap();
                assert!(st.success());
            }
        })
    });
    g.bench_function("Command re-exec self (diagnostic)", |b| {
        b.iter(|| {
            for _ in 0..n {
                let st =
                    std::process::Command::new("/proc/self/exe").env(REEXEC_MARKER, "1").status().unwrap();
                assert!(st.success());
            }
        })
    });
    g.finish();
}

// No plots: they take longer than the measurements here (10 samples per benchmark).
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = w4_thread, w4_process
}

// What `criterion_main!(benches)` expands to (criterion 0.8.2, src/macros.rs), with
// `escala::init()` first: in a re-executed child it runs the task and never returns.
fn main() {
    let _exit = escala::init();
    if std::env::var_os(REEXEC_MARKER).is_some() {
        std::process::exit(0);
    }
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
