//! [`Pending`]: a submitted task on its way through a process pool, with its value type
//! erased (a [`Sink`] decodes the reply and resolves the caller's handle).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::ErrorKind;
use crate::handle::{CancelToken, Completer, Core};

/// Resolves one caller's handle from encoded bytes.
pub(super) trait Sink: Send {
    fn core(&self) -> &Core;
    fn token(&self) -> CancelToken;
    fn is_done(&self) -> bool;
    /// Writes the outcome, counted in `counts` before the handle resolves (so `stats()`
    /// after `join()` includes it); true if this call wrote it (a cancel or timeout may have
    /// first, and then counted it).
    fn settle(&self, result: Result<&[u8], ErrorKind>, counts: &Counts) -> bool;
    /// Resolves as timed out now (if still pending) and sets the token.
    fn time_out(&self, after: Duration) -> bool;
}

pub(super) struct Typed<T> {
    pub(super) c: Completer<T>,
    pub(super) decode: fn(&[u8]) -> Result<T, String>,
}

impl<T: Send + 'static> Sink for Typed<T> {
    fn core(&self) -> &Core {
        self.c.core()
    }

    fn token(&self) -> CancelToken {
        CancelToken::of(&self.c)
    }

    fn is_done(&self) -> bool {
        self.c.is_done()
    }

    fn settle(&self, result: Result<&[u8], ErrorKind>, counts: &Counts) -> bool {
        if self.c.is_done() {
            return false;
        }
        let decoded = result.and_then(|b| {
            (self.decode)(b).map_err(|e| ErrorKind::Codec(format!("cannot decode the result: {e}")))
        });
        let counter = counts.of(decoded.as_ref().err());
        counter.fetch_add(1, Relaxed);
        let won = match decoded {
            Ok(v) => self.c.ok(v),
            Err(k) => self.c.fail(k),
        };
        if !won {
            counter.fetch_sub(1, Relaxed);
        }
        won
    }

    fn time_out(&self, after: Duration) -> bool {
        self.token().time_out(after)
    }
}

/// How a pool's tasks ended.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) completed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) rejected: AtomicU64,
}

impl Counts {
    /// The counter for an outcome: a value (`None`), a cancellation, or a failure.
    pub(super) fn of(&self, err: Option<&ErrorKind>) -> &AtomicU64 {
        match err {
            None => &self.completed,
            Some(ErrorKind::Cancelled) => &self.cancelled,
            Some(ErrorKind::Rejected(_)) => &self.rejected,
            Some(_) => &self.failed,
        }
    }
}

/// A task between `submit` and its outcome.
pub(super) struct Pending {
    /// The handle's task id, also the job id on the wire.
    pub(super) id: u64,
    pub(super) task: &'static str,
    /// Encoded once at submit; moved (not copied) into retries.
    pub(super) args: Vec<u8>,
    /// 1 for the first run.
    pub(super) attempt: u32,
    /// Taken back from a retiring worker: a `Cancelled` reply puts it back in the queue.
    pub(super) reclaim: bool,
    pub(super) sink: Box<dyn Sink>,
}
