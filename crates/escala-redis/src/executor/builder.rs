//! [`RedisExecutorBuilder`]: the URL, queue and limits of a [`RedisExecutor`].

use std::time::Duration;

use super::RedisExecutor;
use crate::Error;

/// Settings of a [`RedisExecutor`]; made by [`RedisExecutor::builder`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// let exec = escala_redis::RedisExecutor::builder("redis://127.0.0.1:6379")
///     .queue("images")
///     .result_ttl(Duration::from_secs(600))
///     .build()?;
/// # Ok::<(), escala_redis::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisExecutorBuilder {
    pub(crate) url: String,
    pub(crate) queue: String,
    pub(crate) result_ttl: Duration,
    pub(crate) max_bytes: usize,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) key_file: Option<std::path::PathBuf>,
    pub(crate) tls_ca_file: Option<std::path::PathBuf>,
    pub(crate) map_window: usize,
}

impl RedisExecutorBuilder {
    pub(crate) fn new(url: &str) -> RedisExecutorBuilder {
        RedisExecutorBuilder {
            url: url.to_string(),
            queue: "default".to_string(),
            result_ttl: Duration::from_secs(24 * 3600),
            max_bytes: crate::wire::DEFAULT_MAX_BYTES,
            key: None,
            key_file: None,
            tls_ca_file: None,
            map_window: 1024,
        }
    }

    /// The queue tasks go to (default `default`): 1 to 128 of `A-Z a-z 0-9 _ . -`.
    pub fn queue(mut self, name: &str) -> Self {
        self.queue = name.to_string();
        self
    }

    /// How long workers keep each result in Redis (default one day).
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// The largest encoded task message or result accepted (default 1 MiB). A bigger task
    /// resolves at once as a codec error.
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Signs every task with this shared key (HMAC-SHA256) and accepts only results signed
    /// with it. Workers must use the same key.
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

    /// How many tasks `map_tasks` keeps in flight (default 1024).
    pub fn map_window(mut self, n: usize) -> Self {
        self.map_window = n.max(1);
        self
    }

    /// Connects to Redis, creates the queue's consumer group if needed and starts the
    /// executor's two threads (one sends batches of tasks, one reads results).
    ///
    /// # Errors
    ///
    /// A bad URL or queue name, an unreadable key file, or Redis not reachable now.
    pub fn build(self) -> Result<RedisExecutor, Error> {
        RedisExecutor::start(self)
    }
}
