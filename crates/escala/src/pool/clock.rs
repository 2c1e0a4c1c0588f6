//! A pool's clock thread: per-task timeouts and delayed retries.
//!
//! Timeouts are kept one slot per worker (a worker runs one task at a time), so arming one
//! allocates nothing and finished tasks leave no entries behind. Retries wait in a heap.
//! The thread starts on first use and ends when the pool shuts down.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
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

struct State {
    armed: Vec<Option<(Instant, CancelToken, Duration)>>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
    closed: bool,
}

struct Inner {
    state: Mutex<State>,
    cond: Condvar,
}

pub(crate) struct Clock {
    inner: Arc<Inner>,
    /// Started on first use; it exits by itself once closed and drained.
    thread: OnceLock<std::thread::JoinHandle<()>>,
    name: String,
}

impl Clock {
    pub(crate) fn new(workers: usize, name: String) -> Clock {
        Clock {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    armed: (0..workers).map(|_| None).collect(),
                    delayed: BinaryHeap::new(),
                    seq: 0,
                    closed: false,
                }),
                cond: Condvar::new(),
            }),
            thread: OnceLock::new(),
            name,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ensure_started(&self) {
        self.thread.get_or_init(|| {
            let inner = self.inner.clone();
            std::thread::Builder::new()
                .name(format!("{}-clock", self.name))
                .spawn(move || run(&inner))
                .expect("cannot start the pool's clock thread")
        });
    }

    /// Times out `token`'s task `after` from now unless disarmed first.
    pub(crate) fn arm(&self, worker: usize, token: CancelToken, after: Duration) {
        self.ensure_started();
        self.lock().armed[worker] = Some((Instant::now() + after, token, after));
        self.inner.cond.notify_one();
    }

    pub(crate) fn disarm(&self, worker: usize) {
        self.lock().armed[worker] = None;
    }

    /// Runs `job` on the clock thread after `delay` (at once if the pool is shutting down).
    pub(crate) fn after(&self, delay: Duration, job: Job) {
        self.ensure_started();
        let mut st = self.lock();
        st.seq += 1;
        let seq = st.seq;
        st.delayed.push(Reverse(Delayed { at: Instant::now() + delay, seq, job }));
        drop(st);
        self.inner.cond.notify_one();
    }

    /// Fires every delayed job now and stops the thread.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.inner.cond.notify_one();
    }
}

fn run(inner: &Inner) {
    let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let mut due: Vec<Job> = Vec::new();
        while st.delayed.peek().is_some_and(|d| st.closed || d.0.at <= now) {
            due.push(st.delayed.pop().expect("peeked").0.job);
        }
        let mut expired = Vec::new();
        for slot in st.armed.iter_mut() {
            if slot.as_ref().is_some_and(|(at, _, _)| *at <= now) {
                expired.push(slot.take().expect("checked"));
            }
        }
        if !due.is_empty() || !expired.is_empty() {
            drop(st);
            for (_, token, after) in expired {
                token.time_out(after);
            }
            for job in due {
                job();
            }
            st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if st.closed && st.delayed.is_empty() {
            return;
        }
        let next =
            st.armed.iter().flatten().map(|(at, _, _)| *at).chain(st.delayed.peek().map(|d| d.0.at)).min();
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
