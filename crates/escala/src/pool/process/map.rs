//! `ProcessPool::map_tasks`: a lazy, bounded, ordered map whose elements travel in batches
//! — many calls per `Batch` frame, their replies in a few `Replies` frames, and no handle
//! per element. The batch size follows the measured task time and the window; there is no
//! chunk size to give.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};

use super::batch::{Args, Batch, BatchSink};
use super::pending::Counts;
use super::{ProcessPool, Shared};
use crate::error::{ErrorKind, Outcome, TaskError};
use crate::handle::TaskId;
use crate::task::{self, Call, Task};

/// Work per batch, by the measured task time.
const BATCH_NS: u64 = 500_000;
/// Elements per batch at most.
const MAX_BATCH: usize = 4096;
/// Encoded arguments per batch at most (a single bigger element travels alone).
const BATCH_BYTES: usize = 1 << 20;
/// Encoded arguments in flight at most, whatever the window.
const INFLIGHT_BYTES: usize = 64 << 20;
/// Batches in flight per worker at most: ~8 ms of work once batches are sized by the task
/// time, a runway well beyond a reply's flush delay (1 ms) plus the consumer's wake-up and
/// refill. With 4 (~2 ms) the workers ran dry between refills: W3 through `map_tasks`
/// (400 tasks of ~100 µs) reached 1.51× where `submit` reached 1.78× (`w3_probe`).
const BATCHES_PER_WORKER: usize = 16;

/// The outcomes of a map, by element index, for its iterator.
struct Out<T> {
    st: Mutex<OutState<T>>,
    ready: Condvar,
    abandoned: AtomicBool,
    name: &'static str,
}

struct OutState<T> {
    /// The index of `slots[0]`: the next outcome to yield.
    base: u64,
    slots: VecDeque<Option<Outcome<T>>>,
    waiting: bool,
}

impl<T: serde::de::DeserializeOwned + Send + 'static> BatchSink for Out<T> {
    fn settle(&self, items: &mut dyn Iterator<Item = (u64, Result<&[u8], ErrorKind>)>, counts: &Counts) {
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        let mut wake = false;
        for (i, r) in items {
            let Some(pos) = i.checked_sub(st.base) else { continue };
            let Some(slot @ None) = st.slots.get_mut(pos as usize) else { continue };
            let outcome = r.and_then(|b| {
                task::decode::<T>(b).map_err(|e| ErrorKind::Codec(format!("cannot decode the result: {e}")))
            });
            counts.of(outcome.as_ref().err()).fetch_add(1, Relaxed);
            *slot = Some(outcome.map_err(|k| TaskError::new(TaskId::next(), self.name, k)));
            wake |= pos == 0;
        }
        if wake && st.waiting {
            self.ready.notify_one();
        }
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(Relaxed)
    }
}

/// The iterator of [`ProcessPool::map_tasks`].
struct ProcessMap<K: Task, I> {
    pool: Arc<Shared>,
    input: I,
    out: Arc<Out<K::Output>>,
    window: usize,
    /// Elements read from the input, and outcomes yielded.
    read: u64,
    yielded: u64,
    /// Encoded arguments in flight: (index past a batch's last element, its bytes).
    bytes: VecDeque<(u64, usize)>,
    bytes_inflight: usize,
    input_done: bool,
    /// Outcomes taken from `out` in one go (fewer lock round trips), not yet yielded.
    taken: VecDeque<Outcome<K::Output>>,
    _k: PhantomData<fn() -> K>,
}

impl ProcessPool {
    /// Runs `calls` in order, lazily, with at most [`map_window`](crate::Executor::map_window)
    /// in flight, and yields their outcomes in input order.
    ///
    /// Elements travel in batches: many calls in one frame, their replies in a few, and no
    /// handle each. The batch size follows the measured task time (about 0.5 ms of work per
    /// batch, one element while nothing is measured yet) and the window; there is no chunk
    /// size to give. Crashes, timeouts and retries apply to each element as to a task (see
    /// the module's README): a worker that dies mid-batch keeps the values it had finished,
    /// fails the element it was running, and the rest run again elsewhere. Dropping the
    /// iterator cancels the elements not yet yielded.
    ///
    /// # Examples
    ///
    /// ```
    /// use escala::ProcessPool;
    ///
    /// #[escala::task]
    /// fn inc(x: u64) -> u64 { x + 1 }
    ///
    /// fn main() {
    ///     let _exit = escala::init();
    ///     let pool = ProcessPool::new(2);
    ///     let sum: u64 = pool.map_tasks((0..10_000).map(inc::call)).map(Result::unwrap).sum();
    ///     assert_eq!(sum, 50_005_000);
    /// }
    /// ```
    pub fn map_tasks<K, I>(&self, calls: I) -> impl Iterator<Item = Outcome<K::Output>> + use<K, I>
    where
        K: Task,
        I: IntoIterator<Item = Call<K>>,
    {
        let out = Out {
            st: Mutex::new(OutState { base: 0, slots: VecDeque::new(), waiting: false }),
            ready: Condvar::new(),
            abandoned: AtomicBool::new(false),
            name: K::NAME,
        };
        ProcessMap::<K, I::IntoIter> {
            pool: self.shared.clone(),
            input: calls.into_iter(),
            out: Arc::new(out),
            window: self.shared.cfg.window.max(1),
            read: 0,
            yielded: 0,
            bytes: VecDeque::new(),
            bytes_inflight: 0,
            input_done: false,
            taken: VecDeque::new(),
            _k: PhantomData,
        }
    }
}

impl<K: Task, I: Iterator<Item = Call<K>>> ProcessMap<K, I> {
    /// Reads input into new batches while the window has room for one.
    fn fill(&mut self) {
        let size = self.pool.slots.len();
        while !self.input_done {
            let inflight = (self.read - self.yielded) as usize;
            let avg = self.pool.avg_ns();
            // Nothing measured yet: one element per batch, one probe per worker or two.
            let (target, cap) = match avg {
                0 => (1, self.window.min(2 * size)),
                ns => (((BATCH_NS / ns) as usize).clamp(1, MAX_BATCH), self.window),
            };
            let target = target.min((self.window / (2 * size)).max(1));
            let room = cap.saturating_sub(inflight);
            // At most a few batches per worker in flight, so that batches sized while the
            // task time was still poorly known do not fill the whole window.
            let batches = self.bytes.len();
            if room == 0
                || (room < target && inflight > 0)
                || self.bytes_inflight >= INFLIGHT_BYTES
                || batches >= BATCHES_PER_WORKER * size
            {
                return;
            }
            self.batch(target.min(room));
        }
    }

    /// Reads up to `n` calls into one batch and queues it.
    fn batch(&mut self, n: usize) {
        let max = self.pool.cfg.max_frame;
        let cap = BATCH_BYTES.min(max);
        let mut bytes = Vec::new();
        let mut offs = vec![0u32];
        let mut bad: Vec<(u64, ErrorKind)> = Vec::new();
        let base = self.read;
        while offs.len() <= n && bytes.len() < cap {
            let Some(call) = self.input.next() else {
                self.input_done = true;
                break;
            };
            let start = bytes.len();
            bytes.extend_from_slice(&[0; 4]);
            // Into the batch's buffer by reference: a failed encoding leaves the elements
            // before it in place (the partial bytes are cut off below).
            let encoded = task::encode_into(call.args(), &mut bytes);
            let failure = match encoded {
                Ok(_) => {
                    let len = bytes.len() - start - 4;
                    if len > max {
                        Some(format!("the arguments are {len} bytes, over the limit of {max} bytes"))
                    } else {
                        bytes[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
                        offs.push(bytes.len() as u32);
                        None
                    }
                }
                Err(e) => Some(format!("cannot encode the arguments: {e}")),
            };
            if let Some(why) = failure {
                // This element never travels: it ends here, and the batch with it.
                bytes.truncate(start);
                let i = base + offs.len() as u64 - 1;
                bad.push((i, ErrorKind::Codec(why)));
                break;
            }
        }
        let sent = offs.len() as u64 - 1;
        let total = sent + bad.len() as u64;
        if total == 0 {
            return;
        }
        {
            let mut st = self.out.st.lock().unwrap_or_else(|e| e.into_inner());
            st.slots.extend((0..total).map(|_| None));
        }
        self.read += total;
        let out: Arc<dyn BatchSink> = self.out.clone();
        if !bad.is_empty() {
            self.pool.submitted.fetch_add(bad.len() as u64, Relaxed);
            let mut items = bad.into_iter().map(|(i, k)| (i, Err(k)));
            out.settle(&mut items, &self.pool.counts);
        }
        if sent == 0 {
            return;
        }
        self.bytes.push_back((base + sent, bytes.len()));
        self.bytes_inflight += bytes.len();
        let b = Batch {
            id: TaskId::next().0,
            task: K::NAME,
            args: Arc::new(Args { bytes, offs }),
            base,
            from: 0,
            to: sent as u32,
            attempt: 1,
            out,
        };
        self.pool.submit_batch(b);
    }
}

impl<K: Task, I: Iterator<Item = Call<K>>> Iterator for ProcessMap<K, I> {
    type Item = Outcome<K::Output>;

    fn next(&mut self) -> Option<Outcome<K::Output>> {
        self.fill();
        if self.taken.is_empty() {
            let mut st = self.out.st.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                match st.slots.front() {
                    None => return None, // nothing in flight, and `fill` found no more input
                    Some(Some(_)) => break,
                    Some(None) => {
                        st.waiting = true;
                        st = self.out.ready.wait(st).unwrap_or_else(|e| e.into_inner());
                        st.waiting = false;
                    }
                }
            }
            // Every outcome ready at the front, in one go.
            while let Some(Some(_)) = st.slots.front() {
                if let Some(Some(o)) = st.slots.pop_front() {
                    self.taken.push_back(o);
                }
                st.base += 1;
            }
        }
        let outcome = self.taken.pop_front();
        self.yielded += 1;
        while self.bytes.front().is_some_and(|&(end, _)| end <= self.yielded) {
            let (_, n) = self.bytes.pop_front().unwrap_or_default();
            self.bytes_inflight -= n;
        }
        outcome
    }
}

impl<K: Task, I> Drop for ProcessMap<K, I> {
    fn drop(&mut self) {
        // The elements not yielded are cancelled: queued batches never go out, workers
        // drop the ones they hold and set the running one's token.
        self.out.abandoned.store(true, Relaxed);
        {
            let mut st = self.out.st.lock().unwrap_or_else(|e| e.into_inner());
            let name = self.out.name;
            for slot in st.slots.iter_mut().filter(|s| s.is_none()) {
                self.pool.counts.cancelled.fetch_add(1, Relaxed);
                *slot = Some(Err(TaskError::new(TaskId::next(), name, ErrorKind::Cancelled)));
            }
        }
        let out: Arc<dyn BatchSink> = self.out.clone();
        for slot in self.pool.slots.iter() {
            slot.cancel_batches(&out);
        }
    }
}
