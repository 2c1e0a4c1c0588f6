//! The built-in workloads of `escala bench` and the units they run on.
//!
//! Each workload is one kind of job a user has — CPU-bound, I/O-bound, tiny, crash-prone —
//! and runs on every unit kind it can: the caller's thread (serial), a thread per task, a
//! process per task, a `ThreadPool` and a `ProcessPool`. The job is the same function
//! everywhere; on processes it is the registered task [`job`].

use std::time::{Duration, Instant};

use escala::{Handle, ProcessPool, ThreadPool};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Workload {
    /// Recursive fib(27): about 1 ms of one core.
    Cpu,
    /// Waits 10 ms, as a job blocked on I/O does.
    Io,
    /// Returns its input: the cost of a unit itself.
    Tiny,
    /// fib(22), except that one job in 20 aborts its process.
    Crash,
}

impl Workload {
    pub(crate) const ALL: [Workload; 4] = [Workload::Cpu, Workload::Io, Workload::Tiny, Workload::Crash];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Workload::Cpu => "cpu",
            Workload::Io => "io",
            Workload::Tiny => "tiny",
            Workload::Crash => "crash",
        }
    }

    /// Jobs per run on a unit kind: one-unit-per-job kinds get fewer tiny jobs.
    pub(crate) fn jobs(self, unit: Unit) -> u64 {
        match (self, unit) {
            (Workload::Cpu, _) => 64,
            (Workload::Io, _) => 32,
            (Workload::Tiny, Unit::Thread | Unit::Process) => 200,
            (Workload::Tiny, _) => 10_000,
            (Workload::Crash, _) => 100,
        }
    }

    /// Jobs that end their process on purpose.
    pub(crate) fn crashes(self, jobs: u64) -> u64 {
        if self == Workload::Crash { (0..jobs).filter(|&i| crashes(i)).count() as u64 } else { 0 }
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Workload {
        Workload::ALL.get(code as usize).copied().unwrap_or(Workload::Tiny)
    }
}

/// Where the jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Unit {
    Serial,
    Thread,
    Process,
    ThreadPool,
    ProcessPool,
}

impl Unit {
    pub(crate) const ALL: [Unit; 5] =
        [Unit::Serial, Unit::Thread, Unit::Process, Unit::ThreadPool, Unit::ProcessPool];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Unit::Serial => "serial",
            Unit::Thread => "thread per job",
            Unit::Process => "process per job",
            Unit::ThreadPool => "ThreadPool",
            Unit::ProcessPool => "ProcessPool",
        }
    }

    /// Why a unit cannot run a workload at all, if it cannot.
    pub(crate) fn cannot_run(self, w: Workload) -> Option<&'static str> {
        match (w, self) {
            (Workload::Crash, Unit::Serial | Unit::Thread | Unit::ThreadPool) => {
                Some("an abort in a thread ends the whole process")
            }
            _ => None,
        }
    }
}

fn crashes(i: u64) -> bool {
    i % 20 == 19
}

fn fib(n: u32) -> u64 {
    if n < 2 { n as u64 } else { fib(n - 1) + fib(n - 2) }
}

/// The job itself, the same on every unit.
pub(crate) fn work(w: Workload, i: u64) -> u64 {
    // Opaque to the optimiser, so that fib is computed on every call.
    let n = |n: u32| std::hint::black_box(n);
    match w {
        Workload::Cpu => fib(n(27)) + i,
        Workload::Io => {
            std::thread::sleep(Duration::from_millis(10));
            i
        }
        Workload::Tiny => std::hint::black_box(i),
        Workload::Crash => {
            if crashes(i) {
                std::process::abort();
            }
            fib(n(22)) + i
        }
    }
}

/// The job as a registered task, for process units and process pools.
#[escala::task(name = "escala.bench.job")]
fn job(workload: u8, i: u64) -> u64 {
    work(Workload::from_code(workload), i)
}

/// How one run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct Tally {
    pub(crate) ok: u64,
    /// Jobs whose process died (`WorkerLost`).
    pub(crate) lost: u64,
    /// Any other error, or a wrong value.
    pub(crate) failed: u64,
}

/// The pools a run may use, built once (with their workers started) outside the timing.
pub(crate) struct Pools {
    pub(crate) threads: ThreadPool,
    pub(crate) processes: ProcessPool,
}

impl Pools {
    pub(crate) fn new(workers: usize) -> Pools {
        let threads = ThreadPool::builder().size(workers).name("bench").build();
        let processes = ProcessPool::builder().size(workers).name("bench").build();
        // Warm both up: the process pool's workers are started and have answered.
        let _ = threads.submit(|| 0).join();
        for h in (0..workers as u64)
            .map(|i| processes.submit_task(job::call(Workload::Tiny.code(), i)))
            .collect::<Vec<_>>()
        {
            let _ = h.join();
        }
        Pools { threads, processes }
    }
}

/// Runs `jobs` jobs of `w` on `unit`; returns the wall time and how they ended.
pub(crate) fn run(w: Workload, unit: Unit, pools: &Pools) -> (Duration, Tally) {
    let jobs = w.jobs(unit);
    let code = w.code();
    let t0 = Instant::now();
    let mut tally = Tally::default();
    let handles: Vec<Handle<u64>> = match unit {
        Unit::Serial => {
            for i in 0..jobs {
                count(&mut tally, i, Ok(work(w, i)));
            }
            return (t0.elapsed(), tally);
        }
        Unit::Thread => (0..jobs).map(|i| escala::thread::spawn("bench", move || work(w, i))).collect(),
        Unit::Process => (0..jobs).map(|i| escala::process::spawn(job::call(code, i))).collect(),
        Unit::ThreadPool => (0..jobs).map(|i| pools.threads.submit(move || work(w, i))).collect(),
        Unit::ProcessPool => (0..jobs).map(|i| pools.processes.submit_task(job::call(code, i))).collect(),
    };
    for (i, h) in handles.into_iter().enumerate() {
        count(&mut tally, i as u64, h.join());
    }
    (t0.elapsed(), tally)
}

/// Every job returns at least its index, so a smaller value is a wrong one.
fn count(tally: &mut Tally, i: u64, outcome: escala::Outcome<u64>) {
    match outcome {
        Ok(v) if v >= i => tally.ok += 1,
        Err(e) if e.is_worker_lost() => tally.lost += 1,
        _ => tally.failed += 1,
    }
}

/// True when a run ended as it must: every job ok, except the crashing ones, which must be
/// reported lost (never silently missing, never taking the others down).
pub(crate) fn correct(w: Workload, unit: Unit, t: Tally) -> bool {
    let jobs = w.jobs(unit);
    let crashes = w.crashes(jobs);
    t.ok == jobs - crashes && t.lost == crashes && t.failed == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_in_twenty_crashes() {
        assert_eq!(Workload::Crash.crashes(100), 5);
        assert_eq!(Workload::Cpu.crashes(100), 0);
    }

    #[test]
    fn correctness_counts_crashes_as_lost() {
        let ok = Tally { ok: 95, lost: 5, failed: 0 };
        assert!(correct(Workload::Crash, Unit::ProcessPool, ok));
        assert!(!correct(Workload::Crash, Unit::ProcessPool, Tally { ok: 95, lost: 4, failed: 1 }));
        assert!(correct(Workload::Cpu, Unit::Thread, Tally { ok: 64, lost: 0, failed: 0 }));
    }

    #[test]
    fn workload_codes_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::from_code(w.code()), w);
        }
    }
}
