//! [`Server`]: a Redis server to read from without an executor — its status and the
//! results it keeps — with the TLS and signing settings that reading needs.

use std::path::PathBuf;

use crate::wire::Signer;
use crate::{Error, Status, StoredResult, conn};

/// A Redis server to read from: its URL, for `rediss://` the CA file its certificate is
/// checked against, and the key results are signed with (if they are).
///
/// # Examples
///
/// ```no_run
/// let server = escala_redis::Server::new("rediss://redis.internal:6380").tls_ca_file("ca.pem");
/// let status = server.status()?;
/// println!("{} queue(s)", status.queues.len());
/// if let Some(r) = server.result("1f2e3d4c5b6a7988-42")? {
///     println!("{} (attempt {}): ok = {}", r.job, r.attempt, r.outcome.is_ok());
/// }
/// # Ok::<(), escala_redis::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    url: String,
    tls_ca_file: Option<PathBuf>,
    key: Option<Vec<u8>>,
    key_file: Option<PathBuf>,
    max_bytes: usize,
}

impl Server {
    /// The server at `url` (`redis://[user:password@]host:port[/db]`, `rediss://…`).
    pub fn new(url: &str) -> Server {
        Server {
            url: url.to_string(),
            tls_ca_file: None,
            key: None,
            key_file: None,
            max_bytes: crate::wire::DEFAULT_MAX_BYTES,
        }
    }

    /// For a `rediss://` URL: the PEM file of the CA certificates the server's certificate
    /// must be signed by (default: the system's roots).
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Server {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Accepts only results signed with this shared key (as the workers' `key`).
    pub fn key(mut self, key: &[u8]) -> Server {
        self.key = Some(key.to_vec());
        self
    }

    /// Like [`key`](Self::key), reading the key from a file (surrounding whitespace trimmed).
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Server {
        self.key_file = Some(path.into());
        self
    }

    /// Every queue and live worker, read now.
    ///
    /// # Errors
    ///
    /// A bad URL or CA file, Redis not reachable (or its certificate not trusted), or an
    /// error answer.
    pub fn status(&self) -> Result<Status, Error> {
        let client = conn::client(&self.url, self.tls_ca_file.as_deref())?;
        let mut c = conn::connect_once(&client, &self.url)?;
        crate::status::read(&mut c).map_err(|e| Error::command(&self.url, e))
    }

    /// The result kept for task `task_id` (as [`RedisExecutor::task_id`] gives it), or
    /// `None` if there is none: not finished yet, an unknown id, or expired after the
    /// result TTL.
    ///
    /// [`RedisExecutor::task_id`]: crate::RedisExecutor::task_id
    ///
    /// # Errors
    ///
    /// As [`status`](Self::status); also a malformed id, an unreadable key file, or a
    /// stored result that is malformed or (with a key) not signed with it.
    pub fn result(&self, task_id: &str) -> Result<Option<StoredResult>, Error> {
        let key = crate::wire::resolve_key(self.key.clone(), self.key_file.as_deref())?;
        let client = conn::client(&self.url, self.tls_ca_file.as_deref())?;
        crate::results::fetch(&client, &self.url, task_id, &Signer::new(key), self.max_bytes)
    }
}
