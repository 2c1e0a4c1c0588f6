//! Waiting on many handles at once: [`as_completed`] and [`wait`].
//!
//! Both register a one-shot notifier on each handle that sends the handle's index on a
//! channel, so waiting costs nothing per poll and works for any mix of unit kinds.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::Handle;

/// Iterator over handles in the order they finish. See [`as_completed`].
pub struct AsCompleted<T> {
    slots: Vec<Option<Handle<T>>>,
    rx: Receiver<usize>,
    remaining: usize,
    deadline: Option<Instant>,
    timed_out: bool,
}

fn watch<T>(handles: impl IntoIterator<Item = Handle<T>>) -> (Vec<Option<Handle<T>>>, Receiver<usize>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let slots: Vec<Option<Handle<T>>> = handles
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let tx = tx.clone();
            h.notify_when_done(move || {
                let _ = tx.send(i);
            });
            Some(h)
        })
        .collect();
    (slots, rx)
}

/// Yields each handle as soon as it is done, whatever kind of unit it belongs to.
///
/// The yielded handle's [`Handle::join`] returns without blocking.
///
/// # Examples
///
/// ```
/// let handles: Vec<_> = (0..3u64)
///     .map(|i| escala::thread::spawn(format!("t{i}"), move || i * 10))
///     .collect();
/// let mut sum = 0;
/// for done in escala::as_completed(handles) {
///     sum += done.join().unwrap();
/// }
/// assert_eq!(sum, 30);
/// ```
pub fn as_completed<T>(handles: impl IntoIterator<Item = Handle<T>>) -> AsCompleted<T> {
    let (slots, rx) = watch(handles);
    let remaining = slots.len();
    AsCompleted { slots, rx, remaining, deadline: None, timed_out: false }
}

impl<T> AsCompleted<T> {
    /// Stops yielding once `timeout` has passed (counted from this call); then
    /// [`timed_out`](Self::timed_out) is true and [`into_pending`](Self::into_pending) gives
    /// back the handles that are not done.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some(Instant::now() + timeout);
        self
    }

    /// True when iteration stopped because the timeout passed with handles still pending.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The handles not yielded yet.
    pub fn into_pending(self) -> Vec<Handle<T>> {
        self.slots.into_iter().flatten().collect()
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = Handle<T>;

    fn next(&mut self) -> Option<Handle<T>> {
        if self.remaining == 0 || self.timed_out {
            return None;
        }
        let idx = match self.deadline {
            None => self.rx.recv().ok()?,
            Some(d) => match self.rx.recv_deadline(d) {
                Ok(i) => i,
                Err(RecvTimeoutError::Timeout) => {
                    self.timed_out = true;
                    return None;
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            },
        };
        self.remaining -= 1;
        self.slots[idx].take()
    }
}

/// When [`wait`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// As soon as any handle is done.
    FirstCompleted,
    /// As soon as any handle is done with an error, or all are done.
    FirstError,
    /// When all handles are done.
    AllCompleted,
}

/// Waits on many handles of any unit kinds; returns `(done, pending)`.
///
/// Returns when the condition holds or `timeout` (if any) passes, like Python's
/// `concurrent.futures.wait`. Both lists keep the input order.
///
/// # Examples
///
/// ```
/// use escala::WaitFor;
/// let hs = vec![
///     escala::thread::spawn("ok", || 1),
///     escala::thread::spawn("bad", || -> i32 { panic!("x") }),
/// ];
/// let (done, pending) = escala::wait(hs, WaitFor::AllCompleted, None);
/// assert_eq!((done.len(), pending.len()), (2, 0));
/// ```
pub fn wait<T>(
    handles: impl IntoIterator<Item = Handle<T>>,
    until: WaitFor,
    timeout: Option<Duration>,
) -> (Vec<Handle<T>>, Vec<Handle<T>>) {
    let deadline = timeout.map(|t| Instant::now() + t);
    let (slots, rx) = watch(handles);
    let total = slots.len();
    let mut finished = vec![false; total];
    let mut count = 0;
    let satisfied = |idx: usize, count: usize, slots: &[Option<Handle<T>>]| match until {
        WaitFor::FirstCompleted => true,
        WaitFor::FirstError => count == total || slots[idx].as_ref().is_some_and(|h| h.peek_is_err()),
        WaitFor::AllCompleted => count == total,
    };
    let mut done_now = total == 0;
    while !done_now {
        let next = match deadline {
            None => rx.recv().map_err(|_| ()),
            Some(d) => rx.recv_deadline(d).map_err(|_| ()),
        };
        let Ok(idx) = next else { break };
        finished[idx] = true;
        count += 1;
        done_now = satisfied(idx, count, &slots);
    }
    let (mut done, mut pending) = (Vec::new(), Vec::new());
    for (h, f) in slots.into_iter().zip(finished) {
        let h = h.expect("every slot is filled until split");
        // A handle may finish between the last receive and this split: count it as done.
        if f || h.is_done() { done.push(h) } else { pending.push(h) }
    }
    (done, pending)
}
