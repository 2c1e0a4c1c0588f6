//! The outcome of every task: [`TaskError`] and its [`ErrorKind`].
//!
//! Every unit — thread, daemon thread, child process, pool task — ends in exactly one
//! [`Outcome`]: `Ok(value)` or a [`TaskError`] that names the task and says why.

use std::fmt;

use crate::handle::TaskId;

/// What a finished task produced: its value, or why there is none.
pub type Outcome<T> = Result<T, TaskError>;

/// Why a task has no value. Displays the task's name and id and the reason.
///
/// # Examples
///
/// ```
/// let h = escala::thread::spawn("boom", || -> u32 { panic!("no luck") });
/// let err = h.join().unwrap_err();
/// assert!(err.is_panicked());
/// assert_eq!(err.name(), "boom");
/// assert!(err.to_string().contains("no luck"));
/// ```
#[derive(Clone, thiserror::Error)]
#[error("task `{}` ({}) {}", .0.name, .0.id, .0.kind)]
pub struct TaskError(Box<Parts>);

/// A [`TaskError`]'s contents, boxed: an error is the rare outcome, and a pointer keeps
/// every pending handle's outcome slot small (see BENCHMARKS.md, W2 and W10).
#[derive(Clone)]
struct Parts {
    id: TaskId,
    name: String,
    kind: ErrorKind,
}

impl std::fmt::Debug for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Parts { id, name, kind } = &*self.0;
        f.debug_struct("TaskError").field("id", id).field("name", name).field("kind", kind).finish()
    }
}

/// The reason a task ended without a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The task panicked; the message and source location of the panic are kept.
    #[error("panicked at {}: {message}", location.as_deref().unwrap_or("<unknown>"))]
    Panicked {
        /// The panic payload, when it was a string.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The task returned its own error (`Err(e)`), kept as its display text.
    #[error("failed: {0}")]
    Failed(String),
    /// A command unit exited with a non-zero code.
    #[error("exited with code {0}")]
    Exited(i32),
    /// The task ran past its timeout.
    #[error("timed out after {0:?}")]
    TimedOut(std::time::Duration),
    /// The task was cancelled before it produced a value.
    #[error("was cancelled")]
    Cancelled,
    /// The process running the task died before it reported a result.
    #[error("lost its worker: {reason}{}", fmt_stderr(stderr))]
    WorkerLost {
        /// How the worker ended: a signal by name, or an exit code.
        reason: ExitReason,
        /// The last lines the worker wrote to stderr, when they were captured.
        stderr: Vec<String>,
    },
    /// The executor refused the task (a full queue with the reject policy, or shut down).
    #[error("was rejected: {0}")]
    Rejected(String),
    /// Arguments or result could not be encoded or decoded, or a frame was too large.
    #[error("codec error: {0}")]
    Codec(String),
    /// The unit could not be started (for example, the executable could not be run).
    #[error("could not start: {0}")]
    Spawn(String),
    /// The child refused the request: unknown task name, or a different build.
    #[error("refused by the worker: {0}")]
    Refused(String),
    /// A remote worker reported an error about the task.
    #[error("remote error: {0}")]
    Remote(String),
    /// The broker could not be reached or answered with an error.
    #[error("broker error: {0}")]
    Broker(String),
}

fn fmt_stderr(lines: &[String]) -> String {
    if lines.is_empty() { String::new() } else { format!(" (last stderr: {})", lines.join(" | ")) }
}

/// How a process ended when it did not report a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Killed by a signal.
    Signal(nix::sys::signal::Signal),
    /// Killed by a signal number that has no name on this platform.
    SignalNumber(i32),
    /// Exited with this code.
    Code(i32),
}

impl ExitReason {
    /// Builds the reason from a standard exit status.
    pub fn from_status(status: std::process::ExitStatus) -> ExitReason {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitReason::Code(code),
            (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(s) => ExitReason::Signal(s),
                Err(_) => ExitReason::SignalNumber(sig),
            },
            (None, None) => ExitReason::Code(-1),
        }
    }

    /// The signal's name (`"SIGKILL"`), when the process was killed by a named signal.
    pub fn signal_name(&self) -> Option<&'static str> {
        match self {
            ExitReason::Signal(s) => Some(s.as_str()),
            _ => None,
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Signal(s) => write!(f, "killed by {}", s.as_str()),
            ExitReason::SignalNumber(n) => write!(f, "killed by signal {n}"),
            ExitReason::Code(c) => write!(f, "exited with code {c}"),
        }
    }
}

impl TaskError {
    pub(crate) fn new(id: TaskId, name: impl Into<String>, kind: ErrorKind) -> TaskError {
        TaskError(Box::new(Parts { id, name: name.into(), kind }))
    }

    /// The id of the task this error belongs to.
    pub fn id(&self) -> TaskId {
        self.0.id
    }

    /// The name of the task this error belongs to.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The reason, to match on.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// Consumes the error and returns the reason.
    pub fn into_kind(self) -> ErrorKind {
        self.0.kind
    }

    /// True when the task panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self.0.kind, ErrorKind::Panicked { .. })
    }

    /// True when the task returned its own error.
    pub fn is_failed(&self) -> bool {
        matches!(self.0.kind, ErrorKind::Failed(_) | ErrorKind::Exited(_))
    }

    /// True when the task ran past its timeout.
    pub fn is_timed_out(&self) -> bool {
        matches!(self.0.kind, ErrorKind::TimedOut(_))
    }

    /// True when the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.0.kind, ErrorKind::Cancelled)
    }

    /// True when the process running the task died.
    pub fn is_worker_lost(&self) -> bool {
        matches!(self.0.kind, ErrorKind::WorkerLost { .. })
    }

    /// True when the executor refused the task.
    pub fn is_rejected(&self) -> bool {
        matches!(self.0.kind, ErrorKind::Rejected(_))
    }

    /// True for encode/decode and frame-size errors.
    pub fn is_codec(&self) -> bool {
        matches!(self.0.kind, ErrorKind::Codec(_))
    }

    /// The panic message, when the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.0.kind {
            ErrorKind::Panicked { message, .. } => Some(message),
            _ => None,
        }
    }

    /// How the worker process ended, when it was lost.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        match &self.0.kind {
            ErrorKind::WorkerLost { reason, .. } => Some(*reason),
            ErrorKind::Exited(code) => Some(ExitReason::Code(*code)),
            _ => None,
        }
    }

    /// A short label for the outcome kind (`"panicked"`, `"worker-lost"`, …), used in events.
    pub fn label(&self) -> &'static str {
        self.0.kind.label()
    }
}

impl ErrorKind {
    /// A short stable label (`"panicked"`, `"failed"`, `"timed-out"`, …).
    pub fn label(&self) -> &'static str {
        match self {
            ErrorKind::Panicked { .. } => "panicked",
            ErrorKind::Failed(_) => "failed",
            ErrorKind::Exited(_) => "exited",
            ErrorKind::TimedOut(_) => "timed-out",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::WorkerLost { .. } => "worker-lost",
            ErrorKind::Rejected(_) => "rejected",
            ErrorKind::Codec(_) => "codec",
            ErrorKind::Spawn(_) => "spawn",
            ErrorKind::Refused(_) => "refused",
            ErrorKind::Remote(_) => "remote",
            ErrorKind::Broker(_) => "broker",
        }
    }
}

/// Turns a caught panic payload into [`ErrorKind::Panicked`].
pub(crate) fn panic_kind(payload: &(dyn std::any::Any + Send), location: Option<String>) -> ErrorKind {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    };
    ErrorKind::Panicked { message, location }
}
