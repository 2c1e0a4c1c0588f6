//! A pool's clock thread: per-task timeouts and delayed retries.
//!
//! Timeouts are kept in slots — one per worker, plus extra slots for tasks run on a
//! submitting thread (caller-runs) — so arming one allocates nothing and finished tasks
//! leave no entries behind. Retries wait in a heap. The thread starts on demand and exits
//! once the pool is closed and nothing is armed or waiting; a later use starts it again.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::handle::CancelToken;

type Job = Box<dyn FnOnce() + Send>;

struct Delayed {
    at: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// What an armed slot does when its time comes.
enum Alarm {
    /// Time out the task of this token (thread pools).
    TimeOut(CancelToken, Duration),
    /// Run this (process pools: stop the worker running the task).
    Call(Job),
}

type Armed = Option<(Instant, Alarm)>;

struct State {
    slots: Vec<Armed>,
    free: Vec<usize>,
    fixed: usize,
    delayed: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
    closed: bool,
    /// Fire every delayed job now (the pool is cancelling what waits).
    flush: bool,
    running: bool,
}

struct Inner {
    state: Mutex<State>,
    cond: Condvar,
}

pub(crate) struct Clock {
    inner: Arc<Inner>,
    name: String,
}

impl Clock {
    /// A clock with `fixed` permanent timeout slots (one per worker).
    pub(crate) fn new(fixed: usize, name: String) -> Clock {
        Clock {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    slots: (0..fixed).map(|_| None).collect(),
                    free: Vec::new(),
                    fixed,
                    delayed: BinaryHeap::new(),
                    seq: 0,
                    closed: false,
                    flush: false,
                    running: false,
                }),
                cond: Condvar::new(),
            }),
            name,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the thread if it is not running; called with the state locked.
    fn wake(&self, mut st: MutexGuard<'_, State>) {
        if !st.running {
            st.running = true;
            let inner = self.inner.clone();
            let started =
                std::thread::Builder::new().name(format!("{}-clock", self.name)).spawn(move || run(&inner));
            if started.is_err() {
                st.running = false;
                tracing::error!("cannot start the clock thread of pool `{}`", self.name);
            }
        }
        drop(st);
        self.inner.cond.notify_one();
    }

    /// A slot beyond the fixed ones, for a task running outside the workers.
    pub(crate) fn extra_slot(&self) -> usize {
        let mut st = self.lock();
        match st.free.pop() {
            Some(i) => i,
            None => {
                st.slots.push(None);
                st.slots.len() - 1
            }
        }
    }

    /// Times out `token`'s task `after` from now unless disarmed first.
    pub(crate) fn arm(&self, slot: usize, token: CancelToken, after: Duration) {
        let mut st = self.lock();
        st.slots[slot] = Some((Instant::now() + after, Alarm::TimeOut(token, after)));
        self.wake(st);
    }

    /// Runs `f` at `at` unless the slot is disarmed or re-armed first.
    pub(crate) fn arm_call(&self, slot: usize, at: Instant, f: Job) {
        let mut st = self.lock();
        st.slots[slot] = Some((at, Alarm::Call(f)));
        self.wake(st);
    }

    /// Clears a slot; an extra slot is given back.
    pub(crate) fn disarm(&self, slot: usize) {
        let mut st = self.lock();
        st.slots[slot] = None;
        if slot >= st.fixed {
            st.free.push(slot);
        }
    }

    /// Runs `job` on the clock thread after `delay`.
    pub(crate) fn after(&self, delay: Duration, job: Job) {
        let mut st = self.lock();
        st.seq += 1;
        let seq = st.seq;
        st.delayed.push(Reverse(Delayed { at: Instant::now() + delay, seq, job }));
        self.wake(st);
    }

    /// Runs every delayed job now, and from now on runs new ones at once.
    pub(crate) fn flush(&self) {
        let mut st = self.lock();
        st.flush = true;
        self.wake(st);
    }

    /// Lets the thread exit once nothing is armed or waiting.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        self.wake(st);
    }
}

fn run(inner: &Inner) {
    let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let mut due: Vec<Job> = Vec::new();
        while st.delayed.peek().is_some_and(|d| st.flush || d.0.at <= now) {
            due.push(st.delayed.pop().expect("peeked").0.job);
        }
        let mut expired = Vec::new();
        for slot in st.slots.iter_mut() {
            if slot.as_ref().is_some_and(|(at, _)| *at <= now) {
                expired.push(slot.take().expect("checked"));
            }
        }
        if !due.is_empty() || !expired.is_empty() {
            drop(st);
            for (_, alarm) in expired {
                match alarm {
                    Alarm::TimeOut(token, after) => {
                        token.time_out(after);
                    }
                    Alarm::Call(f) => f(),
                }
            }
            for job in due {
                job();
            }
            st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let next =
            st.slots.iter().flatten().map(|(at, _)| *at).chain(st.delayed.peek().map(|d| d.0.at)).min();
        if st.closed && next.is_none() {
            st.running = false;
            return;
        }
        st = match next {
            Some(at) => {
                inner
                    .cond
                    .wait_timeout(st, at.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => inner.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
        };
    }
}
