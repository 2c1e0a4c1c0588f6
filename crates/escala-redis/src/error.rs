//! The crate's error type.

/// Why an executor, a worker or a status query could not start or talk to Redis.
///
/// # Examples
///
/// ```
/// let err = escala_redis::RedisExecutor::builder("not a url").queue("q").build().unwrap_err();
/// assert!(err.is_config());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct Error {
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
enum Kind {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot reach Redis at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("Redis answered with an error: {0}")]
    Redis(String),
    #[error("cannot read the signing key: {0}")]
    Key(String),
    #[error("{0}")]
    Stored(String),
}

impl Error {
    pub(crate) fn config(why: impl Into<String>) -> Error {
        Error { kind: Kind::Config(why.into()) }
    }
    pub(crate) fn unreachable(url: &str, why: impl std::fmt::Display) -> Error {
        Error { kind: Kind::Unreachable { url: crate::conn::redact(url), why: why.to_string() } }
    }
    pub(crate) fn redis(e: redis::RedisError) -> Error {
        Error { kind: Kind::Redis(e.to_string()) }
    }
    /// A failed command: unreachable when the error is transient (connection lost,
    /// Redis loading its data), otherwise Redis's own error.
    pub(crate) fn command(url: &str, e: redis::RedisError) -> Error {
        if crate::conn::is_transient(&e) { Error::unreachable(url, e) } else { Error::redis(e) }
    }
    pub(crate) fn key(why: impl Into<String>) -> Error {
        Error { kind: Kind::Key(why.into()) }
    }
    pub(crate) fn stored(why: impl Into<String>) -> Error {
        Error { kind: Kind::Stored(why.into()) }
    }

    /// The configuration was invalid (a bad URL, a zero concurrency, …).
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Config(_))
    }

    /// Redis could not be reached.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, Kind::Unreachable { .. })
    }

    /// Redis answered a command with an error.
    pub fn is_redis(&self) -> bool {
        matches!(self.kind, Kind::Redis(_))
    }

    /// The signing key could not be read or was empty.
    pub fn is_key(&self) -> bool {
        matches!(self.kind, Kind::Key(_))
    }

    /// Something read from Redis (a kept result) was malformed, or not signed with the key.
    pub fn is_stored(&self) -> bool {
        matches!(self.kind, Kind::Stored(_))
    }
}
