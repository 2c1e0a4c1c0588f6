//! [`WorkerBuilder`]: the queue, concurrency, lease and limits of a [`Worker`](super::Worker).

use std::time::Duration;

use super::RunningWorker;
use crate::Error;

/// Settings of a worker; made by [`Worker::builder`](super::Worker::builder).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// let worker = escala_redis::Worker::builder("redis://127.0.0.1:6379")
///     .queue("math")
///     .concurrency(4)
///     .lease(Duration::from_secs(30))
///     .start()?;
/// worker.stop();
/// let report = worker.join();
/// println!("ran {} tasks", report.ran);
/// # Ok::<(), escala_redis::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    pub(crate) url: String,
    pub(crate) queue: String,
    pub(crate) concurrency: usize,
    pub(crate) prefetch: usize,
    pub(crate) lease: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) allow_commands: bool,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) key_file: Option<std::path::PathBuf>,
    pub(crate) tls_ca_file: Option<std::path::PathBuf>,
    pub(crate) max_bytes: usize,
    pub(crate) result_ttl: Duration,
}

impl WorkerBuilder {
    pub(crate) fn new(url: &str) -> WorkerBuilder {
        WorkerBuilder {
            url: url.to_string(),
            queue: "default".into(),
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch: 64,
            lease: Duration::from_secs(30),
            max_attempts: 3,
            allow_commands: false,
            key: None,
            key_file: None,
            tls_ca_file: None,
            max_bytes: crate::wire::DEFAULT_MAX_BYTES,
            result_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// The queue to run (default `default`).
    pub fn queue(mut self, name: &str) -> Self {
        self.queue = name.to_string();
        self
    }

    /// How many tasks run at once, each on its own thread (default: the CPU count).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// How many fetched tasks may wait beyond those running, at most (default 64). Within
    /// that, the worker fetches ahead about 50 ms of work per run thread, by the run times
    /// it has measured, and nothing ahead before a task has ended: long tasks do not wait
    /// behind a busy worker while another is idle. Tasks fetched ahead are held under this
    /// worker's lease too, and reclaimed by others if it dies.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// The lease on each task this worker holds (default 30 s). The worker renews it
    /// every third of a lease while it lives, so a long task is never taken from it; when
    /// a worker dies, others reclaim its tasks once the lease has expired.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Runs of one task that may start (default 3): a task whose runs were cut short this
    /// many times (each time its worker died or hung) goes to the dead-letter stream
    /// instead of running again. A delivery that never started (a dead worker's prefetched
    /// task) is not counted.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Runs external commands sent with `submit_command` (default: refused).
    pub fn allow_commands(mut self, yes: bool) -> Self {
        self.allow_commands = yes;
        self
    }

    /// Requires every task to be signed with this shared key (HMAC-SHA256), and signs
    /// results with it. Unsigned or tampered tasks are dead-lettered with the reason.
    pub fn key(mut self, key: &[u8]) -> Self {
        self.key = Some(key.to_vec());
        self
    }

    /// Like [`key`](Self::key), reading the key from a file (surrounding whitespace trimmed).
    pub fn key_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }

    /// For a `rediss://` URL: checks the server's certificate against the CA certificates
    /// in this PEM file instead of the system's roots (with the `tls` feature). Building
    /// fails with a clear error if the file cannot be read or the server's certificate is
    /// not signed by them.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// The largest task message or result accepted (default 1 MiB).
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// How long results are kept in Redis (default one day).
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// Connects, joins the queue's consumer group and starts the worker's threads.
    ///
    /// # Errors
    ///
    /// A bad URL, queue name or setting, an unreadable key file, or Redis not reachable.
    pub fn start(self) -> Result<RunningWorker, Error> {
        RunningWorker::start(self)
    }

    /// Starts the worker, runs until SIGTERM or SIGINT, then stops gracefully: no more
    /// fetching, every task already held is finished and acknowledged, and the worker
    /// leaves the membership list. This is the entry for a user's worker binary.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), or the signal handlers could not be installed.
    pub fn run_until_signal(self) -> Result<super::WorkerReport, Error> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
            .map_err(|e| Error::config(format!("cannot install signal handlers: {e}")))?;
        let worker = self.start()?;
        let _ = signals.forever().next();
        worker.stop();
        Ok(worker.join())
    }
}
