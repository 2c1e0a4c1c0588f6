//! One Redis connection that reconnects with backoff, and parsing of stream replies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::{Connection, RedisError, RedisResult, Value};

const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The URL with any password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Opens a client for `url`: `redis://`, `unix://`, or `rediss://` (TLS, with the `tls`
/// feature; the server's certificate is checked against the CA certificates of `ca_file`,
/// a PEM file, or else the system's roots).
pub(crate) fn client(url: &str, ca_file: Option<&std::path::Path>) -> Result<redis::Client, crate::Error> {
    let bad = |e: redis::RedisError| crate::Error::config(format!("bad Redis URL `{}`: {e}", redact(url)));
    if !url.starts_with("rediss://") {
        if ca_file.is_some() {
            return Err(crate::Error::config(format!(
                "a TLS CA file is for rediss:// URLs only, not `{}`",
                redact(url)
            )));
        }
        return redis::Client::open(url).map_err(bad);
    }
    tls_client(url, ca_file)
}

#[cfg(feature = "tls")]
fn tls_client(url: &str, ca_file: Option<&std::path::Path>) -> Result<redis::Client, crate::Error> {
    // One provider for the whole process (ring); if the program installed one, it stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = ca_file else {
        return redis::Client::open(url)
            .map_err(|e| crate::Error::config(format!("bad Redis URL `{}`: {e}", redact(url))));
    };
    let pem = std::fs::read(path)
        .map_err(|e| crate::Error::config(format!("cannot read the TLS CA file {}: {e}", path.display())))?;
    let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
    redis::Client::build_with_tls(url, certs).map_err(|e| {
        crate::Error::config(format!(
            "cannot use `{}` with the TLS CA file {}: {e}",
            redact(url),
            path.display()
        ))
    })
}

#[cfg(not(feature = "tls"))]
fn tls_client(url: &str, _ca_file: Option<&std::path::Path>) -> Result<redis::Client, crate::Error> {
    Err(crate::Error::config(format!(
        "`{}`: rediss:// URLs need escala-redis built with its `tls` feature",
        redact(url)
    )))
}

/// Opens `url`, connects once (an unreachable server is an error now, not later) and makes
/// sure `queue`'s stream and consumer group exist: what an executor and a worker both do
/// first.
pub(crate) fn open_queue(
    url: &str,
    ca_file: Option<&std::path::Path>,
    queue: &str,
) -> Result<(redis::Client, Connection, crate::keys::QueueKeys), crate::Error> {
    let client = client(url, ca_file)?;
    let mut c = connect_once(&client, url)?;
    let keys = crate::keys::QueueKeys::new(queue);
    crate::status::ensure_queue(&mut c, &keys).map_err(|e| crate::Error::command(url, e))?;
    Ok((client, c, keys))
}

/// Connects once, failing fast: for constructors that should report an unreachable broker.
pub(crate) fn connect_once(client: &redis::Client, url: &str) -> Result<Connection, crate::Error> {
    client.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(|e| crate::Error::unreachable(url, e))
}

/// True for errors that a reconnect (or waiting for Redis to load) can cure.
pub(crate) fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(e.code(), Some("LOADING" | "TRYAGAIN" | "MASTERDOWN" | "BUSY"))
}

/// A connection that is re-opened after a transient error, with exponential backoff.
pub(crate) struct Conn {
    client: redis::Client,
    conn: Option<Connection>,
    backoff: Duration,
    read_timeout: Option<Duration>,
}

impl Conn {
    pub(crate) fn new(client: redis::Client, read_timeout: Option<Duration>) -> Conn {
        Conn { client, conn: None, backoff: BACKOFF_MIN, read_timeout }
    }

    /// Runs `f` until it succeeds, reconnecting with backoff after transient errors. Returns
    /// `None` once `stop` is set while failing; a non-transient error is returned at once.
    pub(crate) fn run<T>(
        &mut self,
        stop: &AtomicBool,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Option<RedisResult<T>> {
        loop {
            let err = match self.connection() {
                Ok(c) => match f(c) {
                    Ok(v) => {
                        self.backoff = BACKOFF_MIN;
                        return Some(Ok(v));
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if !is_transient(&err) {
                return Some(Err(err));
            }
            self.conn = None;
            if stop.load(Ordering::Acquire) {
                return None;
            }
            // Backoff between reconnects is the point here, not synchronization.
            std::thread::sleep(self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn connection(&mut self) -> RedisResult<&mut Connection> {
        if self.conn.is_none() {
            let c = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
            c.set_read_timeout(self.read_timeout)?;
            c.set_write_timeout(Some(CONNECT_TIMEOUT))?;
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }
}

/// One stream entry: its id and fields.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub(crate) fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
}

pub(crate) fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

pub(crate) fn string(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// Parses `[[id, [field, value, …]], …]`; entries deleted meanwhile (nil) are skipped.
pub(crate) fn entries(v: &Value) -> Vec<Entry> {
    let Value::Array(items) = v else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else { return None };
            let id = string(pair.first()?)?;
            let fields = match pair.get(1) {
                Some(Value::Array(kv)) => {
                    kv.chunks(2).filter_map(|c| Some((string(c.first()?)?, bytes(c.get(1)?)?))).collect()
                }
                Some(Value::Map(kv)) => {
                    kv.iter().filter_map(|(k, v)| Some((string(k)?, bytes(v)?))).collect()
                }
                _ => Vec::new(),
            };
            Some(Entry { id, fields })
        })
        .collect()
}

/// Parses an XREAD/XREADGROUP reply for one stream: `[[key, entries]]` (nil on timeout).
pub(crate) fn read_reply(v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => entries(&kv[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
