//! Pool statistics: counters and a run-time histogram, kept per worker (no shared cache
//! line on the hot path) and summed when [`Stats`] is asked for.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const BUCKETS: usize = 256;

/// A snapshot of a pool's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Worker count.
    pub workers: usize,
    /// Tasks accepted (rejected ones not included).
    pub submitted: u64,
    /// Tasks running now.
    pub running: u64,
    /// Tasks waiting in the queue.
    pub queued: u64,
    /// Tasks that produced a value.
    pub completed: u64,
    /// Tasks that ended with an error (panic, failure, timeout).
    pub failed: u64,
    /// Tasks cancelled (queued or running).
    pub cancelled: u64,
    /// Tasks refused by a full queue or a shut-down pool.
    pub rejected: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Total time spent running tasks.
    pub busy: Duration,
    /// Run-time percentiles of finished tasks.
    pub latency: Percentiles,
    /// Worker processes started to replace others (process pools).
    pub restarts: u64,
    /// Times a worker slot entered a crash loop and backed off (process pools).
    pub crash_loops: u64,
    /// The live worker processes (process pools).
    pub processes: Vec<WorkerProcess>,
}

/// One live worker process of a process pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerProcess {
    /// Its pid.
    pub pid: u32,
    /// Resident memory, sampled every 64 tasks.
    pub rss_bytes: u64,
    /// Tasks it ran.
    pub tasks: u64,
}

/// Run-time percentiles (bucketed: within 25% of the true value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest bucket seen.
    pub max: Duration,
}

/// One worker's counters (a caller-runs task writes worker 0's). Every started attempt
/// ends as exactly one of `ok`, `err`, `requeued` (retried later) or `preempted` (a cancel
/// wrote the outcome first); `skipped` counts tasks popped already resolved.
pub(crate) struct WorkerStats {
    pub(crate) started: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) ok: AtomicU64,
    pub(crate) err: AtomicU64,
    pub(crate) requeued: AtomicU64,
    pub(crate) preempted: AtomicU64,
    busy_ns: AtomicU64,
    hist: Box<[AtomicU64]>,
}

impl WorkerStats {
    pub(crate) fn new() -> WorkerStats {
        WorkerStats {
            started: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            err: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            preempted: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            hist: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records one attempt's run time.
    pub(crate) fn record(&self, took: Duration) {
        let ns = took.as_nanos().min(u64::MAX as u128) as u64;
        self.busy_ns.fetch_add(ns, Relaxed);
        self.hist[bucket(ns)].fetch_add(1, Relaxed);
    }

    /// Records `n` tasks of `each` run time.
    pub(crate) fn record_n(&self, each: Duration, n: u64) {
        let ns = each.as_nanos().min(u64::MAX as u128) as u64;
        self.busy_ns.fetch_add(ns.saturating_mul(n), Relaxed);
        self.hist[bucket(ns)].fetch_add(n, Relaxed);
    }

    /// Sums one counter over the workers.
    pub(crate) fn sum<'a>(
        workers: impl Iterator<Item = &'a WorkerStats>,
        f: fn(&WorkerStats) -> &AtomicU64,
    ) -> u64 {
        workers.map(|w| f(w).load(Relaxed)).sum()
    }
}

/// Log-linear bucket: 4 sub-buckets per power of two.
fn bucket(ns: u64) -> usize {
    if ns < 4 {
        return ns as usize;
    }
    let e = 63 - ns.leading_zeros() as usize;
    let sub = ((ns >> (e - 2)) & 3) as usize;
    (e * 4 + sub).min(BUCKETS - 1)
}

fn bucket_floor(b: usize) -> u64 {
    if b < 4 {
        return b as u64;
    }
    let (e, sub) = (b / 4, (b % 4) as u64);
    (1u64 << e) | (sub << (e - 2))
}

/// Sums worker counters into the time fields of `out`.
pub(crate) fn summarize<'a>(workers: impl Iterator<Item = &'a WorkerStats>, out: &mut Stats) {
    let mut hist = [0u64; BUCKETS];
    let mut busy = 0u64;
    for w in workers {
        busy = busy.saturating_add(w.busy_ns.load(Relaxed));
        for (h, b) in hist.iter_mut().zip(w.hist.iter()) {
            *h += b.load(Relaxed);
        }
    }
    out.busy = Duration::from_nanos(busy);
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return;
    }
    let pick = |q: f64| {
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in hist.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Duration::from_nanos(bucket_floor(b));
            }
        }
        Duration::ZERO
    };
    let max = hist.iter().rposition(|n| *n > 0).map_or(0, bucket_floor);
    out.latency =
        Percentiles { p50: pick(0.5), p90: pick(0.9), p99: pick(0.99), max: Duration::from_nanos(max) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in [0u64, 1, 3, 4, 5, 7, 8, 100, 1_000, 1_000_000, u64::MAX / 2] {
            let b = bucket(ns);
            assert!(b >= last);
            last = b;
            let floor = bucket_floor(b);
            assert!(floor <= ns && (ns - floor) as f64 <= ns as f64 * 0.25, "{ns} -> {floor}");
        }
    }

    #[test]
    fn percentiles_from_histogram() {
        let w = WorkerStats::new();
        for i in 1..=100u64 {
            w.record(Duration::from_micros(i));
        }
        let mut s = Stats::default();
        summarize(std::iter::once(&w), &mut s);
        let near = |d: Duration, us: u64| (d.as_micros() as i64 - us as i64).unsigned_abs() <= us / 4 + 1;
        assert!(near(s.latency.p50, 50), "{:?}", s.latency);
        assert!(near(s.latency.p99, 99), "{:?}", s.latency);
        assert_eq!(s.busy, Duration::from_micros(5050));
    }
}
