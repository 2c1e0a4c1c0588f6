//! Hooks for executors that run registered tasks somewhere else (another machine, through a
//! broker such as Redis): the caller side makes a [`Handle`] it completes when the result
//! arrives; the worker side runs a task by name on encoded arguments.
//!
//! These are the only parts of escala a remote executor needs; `escala-redis` is built on
//! them. Arguments and results use the same `postcard` codec as process units, so only the
//! declared types are ever decoded.
//!
//! # Examples
//!
//! A round trip without a broker: encode a call, run it by name, decode the value into the
//! caller's handle.
//!
//! ```
//! use escala::remote;
//!
//! #[escala::task]
//! fn double(x: u32) -> u32 { x * 2 }
//!
//! let call = double::call(21);
//! let args = remote::encode(call.args()).unwrap();
//! let (handle, completer) = remote::pair::<u32>(call.task_name());
//!
//! // On the worker:
//! let reply = remote::run_registered(call.task_name(), &args);
//!
//! // Back on the caller:
//! completer.complete_encoded(reply);
//! assert_eq!(handle.join().unwrap(), 42);
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorKind;
use crate::handle::{self, Handle, TaskName, UnitKind};

/// This build's identity (escala version and the executable's identity). A worker refuses
/// a task sent by a caller of another build, as a process-unit child does.
///
/// # Examples
///
/// ```
/// assert!(escala::remote::build_id().starts_with("escala-"));
/// ```
pub fn build_id() -> &'static str {
    crate::process::build_id()
}

/// Encodes a value with the codec of registered tasks (`postcard`).
///
/// # Errors
///
/// The value's `Serialize` implementation failed; the text says why.
///
/// # Examples
///
/// ```
/// let bytes = escala::remote::encode(&(1u8, "a")).unwrap();
/// assert_eq!(escala::remote::decode::<(u8, String)>(&bytes).unwrap(), (1, "a".into()));
/// ```
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    crate::task::encode(value)
}

/// Decodes a value of exactly type `T` (never an arbitrary type).
///
/// # Errors
///
/// The bytes are not a valid encoding of `T`.
///
/// # Examples
///
/// ```
/// assert!(escala::remote::decode::<u64>(&[]).is_err());
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    crate::task::decode(bytes)
}

/// True when this binary registers a task named `name`.
///
/// # Examples
///
/// ```
/// #[escala::task]
/// fn here() {}
/// assert!(escala::remote::is_registered(here::call().task_name()));
/// assert!(!escala::remote::is_registered("no::such::task"));
/// ```
pub fn is_registered(name: &str) -> bool {
    crate::task::lookup(name).is_some()
}

/// Runs the task registered as `name` on encoded arguments, on this thread, catching
/// panics. Returns the encoded value, or why the task ended without one
/// ([`ErrorKind::Refused`] for an unknown name, [`ErrorKind::Codec`] for undecodable
/// arguments, [`ErrorKind::Failed`] or [`ErrorKind::Panicked`] from the task).
///
/// # Examples
///
/// ```
/// let out = escala::remote::run_registered("no::such::task", &[]);
/// assert!(matches!(out, Err(escala::ErrorKind::Refused(_))));
/// ```
pub fn run_registered(name: &str, args: &[u8]) -> Result<Vec<u8>, ErrorKind> {
    run_registered_with(name, args, crate::CancelToken::never())
}

/// Like [`run_registered`], with the [`CancelToken`](crate::CancelToken) the task sees as
/// [`escala::current()`](crate::current): a remote worker passes the token of a
/// [`RemoteCompleter`] ([`RemoteCompleter::token`]) so that cancelling that handle asks the
/// running task to stop.
///
/// # Examples
///
/// ```
/// #[escala::task]
/// fn until_cancelled() -> String {
///     escala::current().wait();
///     "stopped".to_string()
/// }
///
/// let (h, c) = escala::remote::pair::<()>("run");
/// let token = c.token();
/// h.cancel(); // before or while it runs: the task sees its token set
/// let out = escala::remote::run_registered_with(until_cancelled::call().task_name(), &[], token);
/// assert_eq!(escala::remote::decode::<String>(&out.unwrap()).unwrap(), "stopped");
/// ```
pub fn run_registered_with(name: &str, args: &[u8], token: crate::CancelToken) -> Result<Vec<u8>, ErrorKind> {
    crate::task::run_by_name(name, args, &token).into_result()
}

/// Creates a pending remote task named `name`: the caller's [`Handle`] and the
/// [`RemoteCompleter`] the executor resolves when the result comes back.
///
/// # Examples
///
/// ```
/// let (h, c) = escala::remote::pair::<String>("greet");
/// assert_eq!(h.kind(), escala::UnitKind::Remote);
/// c.complete(Ok("hi".to_string()));
/// assert_eq!(h.join().unwrap(), "hi");
/// ```
pub fn pair<T>(name: &str) -> (Handle<T>, RemoteCompleter<T>) {
    let (h, c) = handle::pair(TaskName::from(name.to_string()), UnitKind::Remote);
    (h, RemoteCompleter { inner: c })
}

/// The producer side of a remote task's [`Handle`]. The first outcome written wins;
/// dropping it unwritten resolves the handle as cancelled, so no caller waits forever.
///
/// # Examples
///
/// ```
/// let (h, c) = escala::remote::pair::<u8>("t");
/// assert!(c.fail(escala::ErrorKind::Remote("no worker".into())));
/// assert!(!c.fail(escala::ErrorKind::Cancelled)); // first write won
/// assert!(h.join().is_err());
/// ```
pub struct RemoteCompleter<T> {
    inner: handle::Completer<T>,
}

impl<T> RemoteCompleter<T> {
    /// Writes the outcome; returns whether this write won.
    pub fn complete(&self, outcome: Result<T, ErrorKind>) -> bool {
        match outcome {
            Ok(v) => self.inner.ok(v),
            Err(kind) => self.inner.fail(kind),
        }
    }

    /// Resolves with an error of this kind; returns whether this write won.
    pub fn fail(&self, kind: ErrorKind) -> bool {
        self.inner.fail(kind)
    }

    /// True once the handle has an outcome (for example, the caller cancelled it).
    pub fn is_done(&self) -> bool {
        self.inner.is_done()
    }
}

impl<T: Send + 'static> RemoteCompleter<T> {
    /// The cancel token of this task: set when its [`Handle`] is cancelled. Code that runs
    /// the task (for example [`run_registered_with`]) watches it.
    ///
    /// # Examples
    ///
    /// ```
    /// let (h, c) = escala::remote::pair::<u8>("t");
    /// let token = c.token();
    /// assert!(!token.is_cancelled());
    /// h.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn token(&self) -> crate::CancelToken {
        crate::CancelToken::of(&self.inner)
    }
}

impl<T: DeserializeOwned> RemoteCompleter<T> {
    /// Decodes an encoded value (as [`run_registered`] returns it) into the outcome;
    /// undecodable bytes resolve as [`ErrorKind::Codec`]. Returns whether this write won.
    pub fn complete_encoded(&self, reply: Result<Vec<u8>, ErrorKind>) -> bool {
        self.complete(reply.and_then(|bytes| {
            decode(&bytes).map_err(|e| ErrorKind::Codec(format!("cannot decode the result: {e}")))
        }))
    }
}

impl<T> std::fmt::Debug for RemoteCompleter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCompleter").field("id", &self.inner.core().id).finish_non_exhaustive()
    }
}
