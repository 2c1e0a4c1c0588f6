//! [`Periodic`]: in-process work every interval, on any unit or executor, without overlap
//! by default, with jitter.

use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::Handle;

/// Starts a run every `interval`: the closure starts one run on whatever unit it likes — a
/// thread, a pool task, a process — and returns its [`Handle`]. The first run starts at once.
///
/// By default runs never overlap: the next one starts at its tick or when the current run
/// ends, whichever is later (ticks missed meanwhile are skipped and counted).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use escala::supervise::Periodic;
///
/// let pool = escala::ThreadPool::new(2);
/// let (tx, rx) = std::sync::mpsc::channel();
/// let every = Periodic::every("flush", Duration::from_millis(5))
///     .jitter(Duration::from_millis(1))
///     .spawn(move || {
///         let tx = tx.clone();
///         pool.submit(move || tx.send(()).unwrap())
///     });
/// for _ in 0..3 {
///     rx.recv().unwrap(); // three runs
/// }
/// let report = every.stop();
/// assert!(report.runs >= 3 && report.failures == 0);
/// ```
#[derive(Debug, Clone)]
pub struct Periodic {
    name: String,
    interval: Duration,
    jitter: Duration,
    overlap: bool,
}

/// What a stopped [`Periodic`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodicReport {
    /// Runs started.
    pub runs: u64,
    /// Runs that ended with an error (including a panic).
    pub failures: u64,
    /// Ticks skipped because the previous run was still going.
    pub skipped: u64,
}

/// A running [`Periodic`]; [`stop`](PeriodicHandle::stop) it to end it (dropping it stops
/// it too, without waiting).
#[derive(Debug)]
pub struct PeriodicHandle {
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<PeriodicReport>>,
}

impl Periodic {
    /// Runs every `interval`.
    pub fn every(name: impl Into<String>, interval: Duration) -> Periodic {
        Periodic { name: name.into(), interval, jitter: Duration::ZERO, overlap: false }
    }

    /// Delays each run by a random amount below `max` (default none), so that many
    /// processes with the same interval do not run in step.
    pub fn jitter(mut self, max: Duration) -> Periodic {
        self.jitter = max;
        self
    }

    /// Starts runs at their ticks even while the previous one is still going (default no).
    pub fn allow_overlap(mut self, yes: bool) -> Periodic {
        self.overlap = yes;
        self
    }

    /// Starts ticking on a thread of its own.
    pub fn spawn<T, F>(self, mut start: F) -> PeriodicHandle
    where
        T: Send + 'static,
        F: FnMut() -> Handle<T> + Send + 'static,
    {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name(format!("escala-every-{}", self.name))
            .spawn(move || {
                let mut report = PeriodicReport::default();
                let (done_tx, done_rx) = crossbeam_channel::unbounded::<bool>();
                let mut in_flight = 0u64;
                let mut next = Instant::now();
                loop {
                    let jitter = if self.jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        self.jitter.mul_f64(fastrand::f64())
                    };
                    match stopped.recv_deadline(next + jitter) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                    if !self.overlap {
                        // Wait for the run in flight (a stop is seen at the next tick).
                        while in_flight > 0 {
                            match done_rx.recv() {
                                Ok(ok) => {
                                    in_flight -= 1;
                                    report.failures += u64::from(!ok);
                                }
                                Err(_) => in_flight = 0,
                            }
                        }
                    }
                    if let Err(crossbeam_channel::TryRecvError::Disconnected) = stopped.try_recv() {
                        break; // stopped while the last run was finishing
                    }
                    while let Ok(ok) = done_rx.try_recv() {
                        in_flight = in_flight.saturating_sub(1);
                        report.failures += u64::from(!ok);
                    }
                    let h = start();
                    report.runs += 1;
                    in_flight += 1;
                    let tx = done_tx.clone();
                    h.on_done(move |out| {
                        let _ = tx.send(out.is_ok());
                    });
                    let now = Instant::now();
                    next += self.interval;
                    while next + self.interval <= now {
                        next += self.interval;
                        report.skipped += 1;
                    }
                }
                drop(done_tx);
                while in_flight > 0 {
                    let Ok(ok) = done_rx.recv() else { break };
                    in_flight -= 1;
                    report.failures += u64::from(!ok);
                }
                report
            })
            .ok();
        PeriodicHandle { stop: Some(stop), thread }
    }
}

impl PeriodicHandle {
    /// Stops ticking, waits for the runs in flight, and reports.
    pub fn stop(mut self) -> PeriodicReport {
        drop(self.stop.take());
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for PeriodicHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}
