//! Watcher threads, reused: each process unit's child is owned by one watcher thread from
//! spawn to reap. Starting a thread per unit costs more than handing the work to one that
//! is idle, so a finished watcher waits a while for the next unit before it exits.
//!
//! A child's PR_SET_PDEATHSIG is tied to the thread that started it; a reused watcher lives
//! at least as long as every child it started (it reaps each before taking the next).

use std::sync::LazyLock;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// How long an idle watcher waits for the next unit before it exits.
const IDLE: Duration = Duration::from_secs(5);

type Work = Box<dyn FnOnce() + Send + 'static>;

/// A rendezvous channel: a send succeeds only when an idle watcher is waiting for it.
static HANDOFF: LazyLock<(Sender<Work>, Receiver<Work>)> = LazyLock::new(|| crossbeam_channel::bounded(0));

/// Runs `work` on an idle watcher thread, or on a new one.
pub(crate) fn run(work: Work) -> std::io::Result<()> {
    let work = match HANDOFF.0.try_send(work) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Full(w) | TrySendError::Disconnected(w)) => w,
    };
    let rx = HANDOFF.1.clone();
    std::thread::Builder::new().name("escala-watch".into()).spawn(move || {
        work();
        while let Ok(next) = rx.recv_timeout(IDLE) {
            next();
        }
    })?;
    Ok(())
}
