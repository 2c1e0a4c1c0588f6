//! [`DaemonThread`]: an in-process daemon thread kept alive with the same restart policy,
//! backoff and crash-loop limit as a service's workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::policy::{Backoff, CrashLoop, DeathLog, Restart};

/// A daemon thread restarted when it returns an error or panics (by its [`Restart`]
/// policy), after a [`Backoff`], until it hits its [`CrashLoop`] limit.
///
/// The function runs as an escala daemon-thread unit: it should watch
/// [`escala::current()`](crate::current)`.is_cancelled()` and return when it is set.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use escala::supervise::DaemonThread;
///
/// let runs = Arc::new(AtomicU32::new(0));
/// let r = runs.clone();
/// let (tx, rx) = std::sync::mpsc::channel();
/// let d = DaemonThread::new("flaky").spawn(move || {
///     if r.fetch_add(1, Ordering::SeqCst) < 2 {
///         return Err("not yet".to_string()); // restarted
///     }
///     tx.send(()).unwrap();
///     while !escala::current().is_cancelled() {
///         std::thread::park_timeout(std::time::Duration::from_millis(5));
///     }
///     Ok(())
/// });
/// rx.recv().unwrap(); // the third run is up
/// let report = d.stop();
/// assert_eq!((report.runs, report.failed), (3, false));
/// assert_eq!(report.last_error.as_deref(), Some("not yet"));
/// ```
#[derive(Debug, Clone)]
pub struct DaemonThread {
    name: String,
    restart: Restart,
    backoff: Backoff,
    crash_loop: CrashLoop,
    stop_timeout: Duration,
}

/// What a [`DaemonThread`] did, once it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonReport {
    /// Runs started.
    pub runs: u64,
    /// True when it hit its crash-loop limit and was given up on.
    pub failed: bool,
    /// True when the last run did not return within the stop timeout after a stop.
    pub abandoned: bool,
    /// The last error or panic message.
    pub last_error: Option<String>,
}

/// A running [`DaemonThread`].
#[derive(Debug)]
pub struct DaemonHandle {
    stop: Option<Sender<()>>,
    ended: Receiver<DaemonReport>,
}

impl DaemonThread {
    /// A daemon thread restarted on failure, with the default backoff and crash-loop limit,
    /// given 1 s to return after a stop.
    pub fn new(name: impl Into<String>) -> DaemonThread {
        DaemonThread {
            name: name.into(),
            restart: Restart::OnFailure,
            backoff: Backoff::default(),
            crash_loop: CrashLoop::default(),
            stop_timeout: Duration::from_secs(1),
        }
    }

    /// Which ends are followed by a restart (default [`Restart::OnFailure`]).
    pub fn restart(mut self, policy: Restart) -> DaemonThread {
        self.restart = policy;
        self
    }

    /// The backoff between restarts.
    pub fn backoff(mut self, backoff: Backoff) -> DaemonThread {
        self.backoff = backoff;
        self
    }

    /// The crash-loop limit.
    pub fn crash_loop(mut self, limit: CrashLoop) -> DaemonThread {
        self.crash_loop = limit;
        self
    }

    /// How long a run gets to return after a stop before it is abandoned (default 1 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> DaemonThread {
        self.stop_timeout = timeout;
        self
    }

    /// Starts the first run; a watcher thread restarts it.
    pub fn spawn<F>(self, f: F) -> DaemonHandle
    where
        F: Fn() -> Result<(), String> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let (report_tx, ended) = crossbeam_channel::bounded(1);
        let watcher =
            std::thread::Builder::new().name(format!("escala-keep-{}", self.name)).spawn(move || {
                let _ = report_tx.send(self.watch(&f, &stopped));
            });
        if let Err(e) = watcher {
            tracing::error!("could not start a daemon-thread watcher: {e}");
        }
        DaemonHandle { stop: Some(stop), ended }
    }

    fn watch<F>(&self, f: &Arc<F>, stopped: &Receiver<()>) -> DaemonReport
    where
        F: Fn() -> Result<(), String> + Send + Sync + 'static,
    {
        let mut report = DaemonReport::default();
        let mut deaths = DeathLog::default();
        let mut failures = 0;
        loop {
            let (ended_tx, ended_rx) = crossbeam_channel::bounded::<()>(1);
            let run = f.clone();
            let started = Instant::now();
            let h = crate::thread::Builder::new(self.name.clone()).daemon(true).spawn(move || {
                // Dropped on return and on a panic alike: the run has really ended.
                let _ended = ended_tx;
                run()
            });
            report.runs += 1;
            crossbeam_channel::select! {
                recv(ended_rx) -> _ => {}
                recv(stopped) -> _ => {
                    h.cancel();
                    report.abandoned = ended_rx.recv_timeout(self.stop_timeout).is_err_and(|e| e.is_timeout());
                    return report;
                }
            }
            let success = match h.join() {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    report.last_error = Some(e);
                    false
                }
                Err(e) => {
                    report.last_error = Some(e.panic_message().map_or_else(|| e.to_string(), str::to_owned));
                    false
                }
            };
            if !self.restart.restarts(success) {
                return report;
            }
            if deaths.record(&self.crash_loop, Instant::now()).1 {
                report.failed = true;
                return report;
            }
            if started.elapsed() >= self.backoff.reset_after {
                failures = 0;
            }
            failures += 1;
            // The backoff, cut short by a stop.
            match stopped.recv_timeout(self.backoff.delay(failures)) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                _ => return report,
            }
        }
    }
}

impl DaemonHandle {
    /// Stops it (the running unit's token is set), waits for the run to return (at most the
    /// stop timeout), and reports.
    pub fn stop(mut self) -> DaemonReport {
        drop(self.stop.take());
        self.ended.recv().unwrap_or_default()
    }

    /// Waits until it ends by itself: a clean end not to be restarted, or a crash loop.
    pub fn wait(self) -> DaemonReport {
        self.ended.recv().unwrap_or_default()
    }
}
