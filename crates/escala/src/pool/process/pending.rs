//! [`Pending`]: a submitted task on its way through a process pool, with its value type
//! erased (a [`Sink`] decodes the reply and resolves the caller's handle).

use std::sync::Arc;
use std::time::Duration;

use crate::error::ErrorKind;
use crate::handle::{CancelToken, Completer, Core};

/// Resolves one caller's handle from encoded bytes.
pub(super) trait Sink: Send {
    fn core(&self) -> &Core;
    fn token(&self) -> CancelToken;
    fn is_done(&self) -> bool;
    /// Writes the outcome; true if this call wrote it (a cancel or timeout may have first).
    fn settle(&self, result: Result<Vec<u8>, ErrorKind>) -> bool;
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

    fn settle(&self, result: Result<Vec<u8>, ErrorKind>) -> bool {
        match result.and_then(|b| {
            (self.decode)(&b).map_err(|e| ErrorKind::Codec(format!("cannot decode the result: {e}")))
        }) {
            Ok(v) => self.c.ok(v),
            Err(k) => self.c.fail(k),
        }
    }

    fn time_out(&self, after: Duration) -> bool {
        self.token().time_out(after)
    }
}

/// A task between `submit` and its outcome.
pub(super) struct Pending {
    /// The handle's task id, also the job id on the wire.
    pub(super) id: u64,
    pub(super) task: &'static str,
    /// Encoded once at submit; shared (not copied) by retries.
    pub(super) args: Arc<[u8]>,
    /// 1 for the first run.
    pub(super) attempt: u32,
    pub(super) sink: Box<dyn Sink>,
}
