//! What travels through Redis: task messages, result messages, their limits and signatures.
//!
//! Messages are `postcard`-encoded structs of fixed types, checked against a size limit
//! before decoding; nothing arbitrary is ever deserialized. With a shared key, each message
//! carries an HMAC-SHA256 of its bytes in a second field.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};

use escala::ErrorKind;

/// Version of the message format; a worker dead-letters messages of another version.
pub(crate) const VERSION: u8 = 1;
/// Stream field holding the encoded message.
pub(crate) const MSG: &str = "m";
/// Stream field holding the message's HMAC, when signed.
pub(crate) const SIG: &str = "s";
/// Default limit on an encoded task message or result (1 MiB).
pub(crate) const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// One task as a caller sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) version: u8,
    /// Globally unique: `{client}-{sequence}`.
    pub(crate) id: String,
    /// The caller's client id: results go to its reply stream.
    pub(crate) client: String,
    pub(crate) job: Job,
}

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Job {
    /// A registered task of the caller's build.
    Task { name: String, build: String, args: Vec<u8> },
    /// An external command (only run by workers started with commands allowed).
    Command { program: String, args: Vec<String> },
}

impl Job {
    /// What it runs, in a few words, as kept beside its result (`task NAME`, `command PROGRAM
    /// ARGS…`, cut at 200 bytes).
    pub(crate) fn label(&self) -> String {
        let mut s = match self {
            Job::Task { name, .. } => format!("task {name}"),
            Job::Command { program, args } => std::iter::once(format!("command {program}"))
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
        };
        if s.len() > 200 {
            let mut cut = 200;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    }
}

/// One result as a worker sends it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResultMsg {
    pub(crate) id: String,
    /// Which attempt produced it (1 for the first delivery).
    pub(crate) attempt: u32,
    pub(crate) outcome: Result<Vec<u8>, WireError>,
}

/// A task's error as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireError {
    Failed(String),
    Panicked {
        message: String,
        location: Option<String>,
    },
    Codec(String),
    Refused(String),
    Remote(String),
    /// The caller cancelled the task (added last: older decoders still read the rest).
    Cancelled,
}

impl WireError {
    pub(crate) fn from_kind(kind: ErrorKind) -> WireError {
        match kind {
            ErrorKind::Failed(m) => WireError::Failed(m),
            ErrorKind::Panicked { message, location } => WireError::Panicked { message, location },
            ErrorKind::Codec(m) => WireError::Codec(m),
            ErrorKind::Refused(m) => WireError::Refused(m),
            ErrorKind::Cancelled => WireError::Cancelled,
            other => WireError::Remote(other.to_string()),
        }
    }

    pub(crate) fn into_kind(self) -> ErrorKind {
        match self {
            WireError::Failed(m) => ErrorKind::Failed(m),
            WireError::Panicked { message, location } => ErrorKind::Panicked { message, location },
            WireError::Codec(m) => ErrorKind::Codec(m),
            WireError::Refused(m) => ErrorKind::Refused(m),
            WireError::Remote(m) => ErrorKind::Remote(m),
            WireError::Cancelled => ErrorKind::Cancelled,
        }
    }
}

/// What an external command produced on the worker.
///
/// # Examples
///
/// ```
/// let out = escala_redis::CommandOutput { code: Some(0), signal: None, stdout: b"hi\n".to_vec(), stderr: vec![] };
/// assert!(out.success());
/// assert_eq!(out.stdout_lossy(), "hi\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// The exit code, when the command exited.
    pub code: Option<i32>,
    /// The signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Its standard output (cut at the result size limit).
    pub stdout: Vec<u8>,
    /// Its standard error (cut at the result size limit).
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// True when the command exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Encodes a message.
pub(crate) fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Our own message structs of strings, bytes and integers always encode.
    postcard::to_stdvec(msg).unwrap_or_default()
}

/// Decodes a message of exactly type `T`, refusing more than `max` bytes first.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], max: usize) -> Result<T, String> {
    if bytes.len() > max {
        return Err(format!("message of {} bytes exceeds the limit of {max} bytes", bytes.len()));
    }
    postcard::from_bytes(bytes).map_err(|e| format!("malformed message: {e}"))
}

/// A shared HMAC-SHA256 key, or none.
#[derive(Clone, Default)]
pub(crate) struct Signer {
    key: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.key.is_some() { "Signer(key)" } else { "Signer(none)" })
    }
}

type HmacSha256 = Hmac<sha2::Sha256>;

impl Signer {
    pub(crate) fn new(key: Option<Vec<u8>>) -> Signer {
        Signer { key: key.map(Into::into) }
    }

    fn mac(key: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length.
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length")
    }

    /// The signature of `msg`, empty without a key.
    pub(crate) fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.key {
            None => Vec::new(),
            Some(k) => {
                let mut m = Self::mac(k);
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Checks a signature; always fine without a key.
    pub(crate) fn verify(&self, msg: &[u8], sig: Option<&[u8]>) -> Result<(), String> {
        let Some(k) = &self.key else { return Ok(()) };
        match sig {
            None | Some([]) => Err("unsigned message refused (this side requires a signing key)".into()),
            Some(sig) => {
                let mut m = Self::mac(k);
                m.update(msg);
                m.verify_slice(sig).map_err(|_| {
                    "bad signature: the message was tampered with or signed with another key".into()
                })
            }
        }
    }
}

/// Reads a signing key file: its bytes with surrounding whitespace trimmed; must not be empty.
/// The signing key a builder was given: the key itself, else the one in its key file.
pub(crate) fn resolve_key(
    key: Option<Vec<u8>>,
    file: Option<&std::path::Path>,
) -> Result<Option<Vec<u8>>, crate::Error> {
    match (key, file) {
        (Some(k), _) => Ok(Some(k)),
        (None, Some(path)) => read_key(path).map(Some),
        (None, None) => Ok(None),
    }
}

pub(crate) fn read_key(path: &std::path::Path) -> Result<Vec<u8>, crate::Error> {
    let raw = std::fs::read(path).map_err(|e| crate::Error::key(format!("{}: {e}", path.display())))?;
    let key = raw.trim_ascii().to_vec();
    if key.is_empty() {
        return Err(crate::Error::key(format!("{} is empty", path.display())));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_detect_tampering() {
        let s = Signer::new(Some(b"k".to_vec()));
        let sig = s.sign(b"hello");
        assert!(s.verify(b"hello", Some(&sig)).is_ok());
        assert!(s.verify(b"hellp", Some(&sig)).is_err());
        assert!(s.verify(b"hello", None).is_err());
        assert!(Signer::default().verify(b"x", None).is_ok());
    }

    #[test]
    fn oversized_and_malformed_messages_are_refused() {
        assert!(decode::<Envelope>(&[0u8; 10], 4).unwrap_err().contains("exceeds"));
        assert!(decode::<Envelope>(&[0xff; 8], 100).unwrap_err().contains("malformed"));
    }
}
