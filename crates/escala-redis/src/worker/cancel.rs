//! Remote cancel on the worker side: the registry of the tasks this worker is about to run
//! or runs, and the thread that hears callers' cancels.
//!
//! A caller that cancels a task sets the key `escala:cancel:{task}` (with the result TTL)
//! and then publishes the task id on `escala:cancels:{queue}`. A task that has not started
//! is skipped by the start script, which checks the key. A task that runs here is stopped
//! when the message arrives. Messages sent while the listener was disconnected are lost,
//! so after each (re)subscription the listener checks the keys of every task registered
//! here; a task is registered before its start script runs, so one cancel is never missed
//! between the two.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::Value;

use super::Shared;
use crate::keys;

/// How a running task is asked to stop (its token set, or its command signalled).
pub(crate) type Stop = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Slot {
    cancelled: bool,
    stop: Option<Stop>,
}

/// The tasks this worker's run threads have taken, by task id.
#[derive(Default)]
pub(crate) struct Runs {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Runs {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a task a run thread is about to start.
    pub(crate) fn register(&self, task: &str) {
        self.slots().insert(task.to_string(), Slot::default());
    }

    /// Sets how the running task stops; stops it at once if a cancel came first.
    pub(crate) fn on_cancel(&self, task: &str, stop: Stop) {
        let mut slots = self.slots();
        match slots.get_mut(task) {
            Some(slot) if slot.cancelled => {
                drop(slots);
                stop();
            }
            Some(slot) => slot.stop = Some(stop),
            None => {}
        }
    }

    /// Forgets a task; returns whether it was cancelled meanwhile.
    pub(crate) fn finish(&self, task: &str) -> bool {
        self.slots().remove(task).is_some_and(|s| s.cancelled)
    }

    /// Marks a task cancelled and stops it if it runs; false if it is not registered here.
    pub(crate) fn cancel(&self, task: &str) -> bool {
        let stop = {
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(task) else { return false };
            slot.cancelled = true;
            slot.stop.take()
        };
        if let Some(stop) = stop {
            stop();
        }
        true
    }

    fn ids(&self) -> Vec<String> {
        self.slots().keys().cloned().collect()
    }
}

/// How long one wait for a message lasts, so that stopping is noticed.
const POLL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The cancel listener: subscribes to the queue's cancel channel until the worker is done,
/// resubscribing (and checking the cancel keys of the registered tasks) after a lost
/// connection.
pub(super) fn run(shared: &Shared, client: redis::Client) {
    let mut backoff = Duration::from_millis(20);
    while !shared.done.load(Relaxed) {
        match listen(shared, &client) {
            Ok(()) => return,
            Err(e) if crate::conn::is_transient(&e) => {}
            Err(e) => eprintln!("escala-redis worker: listening for cancels failed: {e}"),
        }
        // Backoff between reconnects is the point here, not synchronization.
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One subscription: returns `Ok` once the worker is done, the error of a lost connection.
fn listen(shared: &Shared, client: &redis::Client) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    let mut check = client.get_connection_with_timeout(Duration::from_secs(5))?;
    let mut ps = conn.as_pubsub();
    ps.subscribe(&shared.cfg.keys.cancels)?;
    ps.set_read_timeout(Some(POLL))?;
    // Cancels published before this subscription: their keys are set.
    let ids = shared.runs.ids();
    if !ids.is_empty() {
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("EXISTS").arg(keys::cancel(id));
        }
        let set: Vec<i64> = pipe.query(&mut check)?;
        for (id, set) in ids.iter().zip(set) {
            if set == 1 {
                shared.runs.cancel(id);
            }
        }
    }
    drop(check);
    while !shared.done.load(Relaxed) {
        let msg = match ps.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        if let Ok(Value::BulkString(id)) = msg.get_payload::<Value>() {
            if let Ok(id) = String::from_utf8(id) {
                shared.runs.cancel(&id);
            }
        }
    }
    Ok(())
}
