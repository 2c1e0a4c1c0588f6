//! [`Pending`]: a submitted task on its way through a process pool, with its value type
//! erased (a [`Sink`] decodes the reply and resolves the caller's handle).

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::de::DeserializeOwned;

use crate::error::ErrorKind;
use crate::handle::{Completer, Shared, TokenSource, Wakeup};

/// Resolves one caller's handle from encoded bytes: the handle's own shared state, so a
/// task in the queue costs no allocation beyond its handle.
pub(super) trait Sink: TokenSource {
    fn is_done(&self) -> bool;
    /// Writes the outcome, counted in `counts` before the handle resolves (so `stats()`
    /// after `join()` includes it); true if this call wrote it (a cancel or timeout may have
    /// first, and then counted it).
    fn settle(&self, result: Result<&[u8], ErrorKind>, counts: &Counts) -> bool {
        match self.settle_quiet(result, counts) {
            Some(w) => {
                self.wake(w);
                true
            }
            None => false,
        }
    }
    /// Like [`settle`](Self::settle), leaving the waiters asleep until the [`Wakeup`]
    /// returned (when this call wrote the outcome) is passed to [`wake`](Self::wake).
    fn settle_quiet(&self, result: Result<&[u8], ErrorKind>, counts: &Counts) -> Option<Wakeup>;
    fn wake(&self, w: Wakeup);
    /// Resolves as cancelled if nothing has resolved it (what dropping a `Completer` does).
    fn abandon(&self);
}

impl<T: DeserializeOwned + Send + 'static> Sink for Shared<T> {
    fn is_done(&self) -> bool {
        Shared::is_done(self)
    }

    fn settle_quiet(&self, result: Result<&[u8], ErrorKind>, counts: &Counts) -> Option<Wakeup> {
        if Shared::is_done(self) {
            return None;
        }
        let decoded = result.and_then(|b| {
            crate::task::decode::<T>(b)
                .map_err(|e| ErrorKind::Codec(format!("cannot decode the result: {e}")))
        });
        let counter = counts.of(decoded.as_ref().err());
        counter.fetch_add(1, Relaxed);
        let won = match decoded {
            Ok(v) => self.complete_quiet(Ok(v)),
            Err(k) => self.complete_quiet(Err(self.err_kind(k))),
        };
        if won.is_none() {
            counter.fetch_sub(1, Relaxed);
        }
        won
    }

    fn wake(&self, w: Wakeup) {
        Shared::wake(self, w);
    }

    fn abandon(&self) {
        Shared::abandon(self);
    }
}

/// The pool's side of a caller's handle, its value type erased. Dropped unresolved (a pool
/// dropping its queue), it resolves the handle as cancelled, as a `Completer` does.
pub(super) struct SinkRef(Arc<dyn Sink>);

impl SinkRef {
    pub(super) fn new<T: DeserializeOwned + Send + 'static>(c: Completer<T>) -> SinkRef {
        SinkRef(c.into_shared())
    }
}

impl Deref for SinkRef {
    type Target = dyn Sink;

    fn deref(&self) -> &(dyn Sink + 'static) {
        &*self.0
    }
}

impl Drop for SinkRef {
    fn drop(&mut self) {
        self.0.abandon();
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

/// A task's encoded arguments: up to 16 bytes (most: a few numbers) are kept inline. That
/// saves an allocation per task and, above all, its free on a slot thread: a free from
/// another thread than the allocating one costs glibc's allocator far more than a local one.
/// Measured (W2 one by one, alternated 3×): 0.97–1.03 → 1.12–1.17 M tasks/s; with jemalloc
/// preloaded instead, which handles such frees well, the `Vec` version ran 1.09–1.12.
pub(super) type Args = smallvec::SmallVec<[u8; 16]>;

/// A task between `submit` and its outcome.
pub(super) struct Pending {
    /// The handle's task id, also the job id on the wire.
    pub(super) id: u64,
    pub(super) task: &'static str,
    /// Encoded once at submit; moved (not copied) into retries.
    pub(super) args: Args,
    /// 1 for the first run.
    pub(super) attempt: u32,
    /// Taken back from a retiring worker: a `Cancelled` reply puts it back in the queue.
    pub(super) reclaim: bool,
    pub(super) sink: SinkRef,
}
