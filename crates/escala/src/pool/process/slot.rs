//! One worker slot: the state of its live worker (jobs in flight, socket, ledger), and
//! what reaches it from outside — cancels, timeouts and their escalation to SIGTERM and
//! SIGKILL. Its thread (the worker's life) is in `life.rs`.

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Shared;
use super::batch::{BatchSink, Work};
use super::ledger::{self, Ledger};
use super::wire::{ToWorkerRef, push_frame};
use crate::error::ErrorKind;
use crate::pool::stats::{WorkerProcess, WorkerStats};
use crate::process::ChildSlot;
use crate::process::frame::FrameKind;

/// Marks a whole job (not one element of a batch) in [`State::timed_out`].
pub(super) const WHOLE: u32 = u32::MAX;
/// Jobs (single tasks or batches) in flight per worker at most.
const MAX_ITEMS: usize = 256;
/// Work prefetched per worker, in ns of measured task time: twice the worker's reply wait
/// (`stage::FLUSH_WAIT`), so the refill a reply triggers lands before the worker runs dry,
/// while the end of a stream finds little work held by one worker as the other idles.
/// W3 (`w3_probe` in `benches`, 8 alternated runs, medians): with 2 ms the speed-up is
/// 1.86 / 1.895 / 1.865 (join each / map / wait all), with 3 ms 1.83 / 1.82 / 1.85; with 1 ms
/// it was a tenth slower (measured before the slot thread sent refills).
const PREFETCH_NS: u64 = 2 * super::stage::FLUSH_WAIT.as_nanos() as u64;
/// Tasks in flight per worker at most.
const MAX_TASKS: usize = 8192;

/// The live worker's sockets (write sides), process and ledger.
#[derive(Clone)]
pub(super) struct Io {
    /// Jobs (the worker's replies come back on it, read by the slot thread).
    pub(super) sock: Arc<Mutex<UnixStream>>,
    /// `Cancel` and `CancelRange`.
    pub(super) ctl: Arc<Mutex<UnixStream>>,
    pub(super) child: Arc<ChildSlot>,
    pub(super) ledger: Arc<Ledger>,
}

pub(super) struct State {
    /// Jobs sent to the worker, in the order it runs them; the front one is running.
    pub(super) inflight: VecDeque<Work>,
    /// Tasks in `inflight` (a batch counts its elements).
    pub(super) inflight_tasks: usize,
    /// When the front job started (the previous reply, or its send to an idle worker).
    pub(super) front_since: Instant,
    pub(super) alive: bool,
    /// Takes no new jobs: finishing what it holds, then replaced.
    pub(super) retiring: bool,
    /// The writer waits on `room`.
    pub(super) writer_waiting: bool,
    pub(super) io: Option<Io>,
    /// The front job (and element of a batch, or [`WHOLE`]) the clock stopped, if any.
    pub(super) timed_out: Option<(u64, u32)>,
    pub(super) pid: u32,
    pub(super) rss: u64,
    /// Tasks this worker has finished.
    pub(super) tasks: u64,
}

pub(super) struct Slot {
    pub(super) index: usize,
    state: Mutex<State>,
    /// Signalled when in-flight room frees up or the worker stops taking jobs.
    pub(super) room: Condvar,
    pub(super) stats: WorkerStats,
    /// Moving average of a task's run time, in ns: how many jobs to prefetch.
    pub(super) avg_ns: AtomicU64,
}

pub(super) enum Ended {
    /// Exited normally holding nothing (recycled, or the pool is done).
    Clean,
    /// Died; its tasks were settled or put back.
    Died,
    /// Could not be started (or its initializer failed).
    NoStart(String),
}

impl Slot {
    pub(super) fn new(index: usize) -> Slot {
        Slot {
            index,
            state: Mutex::new(State {
                inflight: VecDeque::new(),
                inflight_tasks: 0,
                front_since: Instant::now(),
                alive: false,
                retiring: false,
                writer_waiting: false,
                io: None,
                timed_out: None,
                pid: 0,
                rss: 0,
                tasks: 0,
            }),
            room: Condvar::new(),
            stats: WorkerStats::new(),
            avg_ns: AtomicU64::new(0),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn pid(&self) -> Option<u32> {
        let st = self.lock();
        st.alive.then_some(st.pid)
    }

    /// Tasks in flight, and the worker's pid, RSS (read now) and task count while it lives.
    pub(super) fn snapshot(&self) -> (usize, Option<WorkerProcess>) {
        let st = self.lock();
        let info =
            st.alive.then(|| WorkerProcess { pid: st.pid, rss_bytes: rss_bytes(st.pid), tasks: st.tasks });
        (st.inflight_tasks, info)
    }

    /// The measured run time of one task (0 before any).
    pub(super) fn avg_ns(&self) -> u64 {
        self.avg_ns.load(Relaxed)
    }

    /// Room in flight, as (jobs, tasks): enough tasks to cover ~2 ms of work, at least one
    /// (one until a task time has been measured, so a long first task holds nothing back),
    /// in at most 256 jobs.
    pub(super) fn room(&self, st: &State) -> (usize, usize) {
        let (jobs, tasks) = self.caps();
        (jobs.saturating_sub(st.inflight.len()), tasks.saturating_sub(st.inflight_tasks))
    }

    fn caps(&self) -> (usize, usize) {
        let tasks = match self.avg_ns.load(Relaxed) {
            0 => 1,
            ns => (PREFETCH_NS / ns).clamp(1, MAX_TASKS as u64) as usize,
        };
        (MAX_ITEMS, tasks)
    }

    /// Whether the writer should send now: the worker is idle, or a quarter of its room is
    /// free (so jobs go out many per write, not one per reply).
    pub(super) fn worth_sending(&self, st: &State) -> bool {
        let (cap_jobs, cap_tasks) = self.caps();
        let (jobs, tasks) = self.room(st);
        st.inflight.is_empty() || (jobs >= cap_jobs.div_ceil(4) && tasks >= cap_tasks.div_ceil(4))
    }

    /// Wakes the writer if it waits and has something to do, once (not one futex call per
    /// reply while it gets going).
    pub(super) fn wake_writer(&self, st: &mut State) {
        if st.writer_waiting && (st.retiring || !st.alive || self.worth_sending(st)) {
            st.writer_waiting = false;
            self.room.notify_all();
        }
    }

    /// Job `id` is at the front and, for a batch, its element `elem` is the one running.
    fn running_is(&self, id: u64, elem: u32) -> bool {
        let st = self.lock();
        match st.inflight.front() {
            Some(w) if w.id() == id => {
                elem == WHOLE
                    || st
                        .io
                        .as_ref()
                        .is_some_and(|io| io.ledger.progress().0 == id && io.ledger.progress().1 == elem)
            }
            _ => false,
        }
    }

    fn signal(&self, sig: Signal) {
        if let Some(io) = self.lock().io.clone() {
            io.child.signal(sig);
        }
    }

    /// Sends a `Cancel` or `CancelRange`, counted in the ledger first (see `child.rs`).
    fn send(io: Option<&Io>, msg: &ToWorkerRef<'_>) {
        if let Some(io) = io {
            io.ledger.count_cancel();
            let mut buf = Vec::new();
            push_frame(&mut buf, FrameKind::ToWorker, msg);
            let mut sock = io.ctl.lock().unwrap_or_else(|e| e.into_inner());
            let _ = std::io::Write::write_all(&mut *sock, &buf);
        }
    }

    /// Asks the worker holding job `id` to stop it; a running one also gets the grace
    /// period, then SIGTERM, then SIGKILL. Returns false if no job `id` is here.
    pub(super) fn cancel(&self, id: u64, pool: &Shared) -> bool {
        let st = self.lock();
        let Some(pos) = st.inflight.iter().position(|w| matches!(w, Work::One(p) if p.id == id)) else {
            return false;
        };
        let io = st.io.clone();
        drop(st);
        Self::send(io.as_ref(), &ToWorkerRef::Cancel { id });
        if pos == 0 {
            escalate(pool, self.index, id, WHOLE, Signal::SIGTERM);
        }
        true
    }

    /// The element of the front batch the worker runs (or will run next), and since when
    /// (`CLOCK_MONOTONIC` ns, never earlier than its start); `None` if it runs none.
    fn running_elem(st: &State, id: u64, from: u32, to: u32) -> Option<(u32, u64)> {
        let (batch, k, since) = st.io.as_ref()?.ledger.progress();
        (batch == id && (from..to).contains(&k)).then_some((k, since))
    }

    /// Cancels the jobs this worker prefetched but has not started (shutdown, cancel_pending),
    /// with the elements of the running batch after the running one. The ledger tells which
    /// batch the worker is in: the jobs before it are finished (their replies on the way).
    pub(super) fn cancel_prefetched(&self, pool: &Shared) {
        let st = self.lock();
        let io = st.io.clone();
        let (current, running, _) = io.as_ref().map_or((0, 0, 0), |io| io.ledger.progress());
        let at = st.inflight.iter().position(|w| matches!(w, Work::Many(b) if b.id == current));
        let mut msgs = Vec::new();
        for (i, w) in st.inflight.iter().enumerate() {
            let from = match (w, at) {
                (_, Some(at)) if i < at => continue,
                (Work::Many(b), Some(at)) if i == at => running.saturating_add(1).max(b.from),
                // Not begun by the worker's ledger: the front one is (about to be) running.
                (Work::Many(b), None) if i == 0 => b.from + 1,
                (Work::One(_), None) if i == 0 => continue,
                (Work::Many(b), _) => b.from,
                (Work::One(p), _) => {
                    p.sink.settle(Err(ErrorKind::Cancelled), &pool.counts);
                    msgs.push((p.id, WHOLE, WHOLE));
                    continue;
                }
            };
            if let Work::Many(b) = w {
                if from < b.to {
                    b.settle_range(from, &ErrorKind::Cancelled, &pool.counts);
                    msgs.push((b.id, from, b.to));
                }
            }
        }
        drop(st);
        for (id, from, to) in msgs {
            if from == WHOLE {
                Self::send(io.as_ref(), &ToWorkerRef::Cancel { id });
            } else {
                Self::send(io.as_ref(), &ToWorkerRef::CancelRange { id, from, to });
            }
        }
    }

    /// Asks the worker to drop every element it holds of the map `out` (its iterator was
    /// dropped): the running one has its token set.
    pub(super) fn cancel_batches(&self, out: &Arc<dyn BatchSink>) {
        let st = self.lock();
        let target = Arc::as_ptr(out).cast::<()>();
        let ranges: Vec<(u64, u32, u32)> = st
            .inflight
            .iter()
            .filter_map(|w| match w {
                Work::Many(b) if Arc::as_ptr(&b.out).cast::<()>() == target => Some((b.id, b.from, b.to)),
                _ => None,
            })
            .collect();
        let io = st.io.clone();
        drop(st);
        for (id, from, to) in ranges {
            Self::send(io.as_ref(), &ToWorkerRef::CancelRange { id, from, to });
        }
    }

    /// The clock's alarm for the front job `id`: it (or, for a batch, the element running)
    /// may have run past the pool's timeout.
    fn time_out(&self, pool: &Shared, id: u64, after: Duration) {
        let mut st = self.lock();
        let (elem, stop) = match st.inflight.front() {
            Some(Work::One(p)) if p.id == id => {
                // Resolve now unless the policy retries timeouts (then the worker's end decides).
                if !pool.cfg.retry.should_retry(&ErrorKind::TimedOut(after), p.attempt) {
                    pool.counts.failed.fetch_add(1, Relaxed);
                    if !p.sink.time_out(after) {
                        pool.counts.failed.fetch_sub(1, Relaxed);
                    }
                }
                (WHOLE, ToWorkerRef::Cancel { id })
            }
            Some(Work::Many(b)) if b.id == id => {
                let Some((k, since)) = Self::running_elem(&st, id, b.from, b.to) else {
                    drop(st);
                    return arm_timeout(pool, self.index, id, Instant::now());
                };
                let ran = Duration::from_nanos(ledger::mono_ns().saturating_sub(since));
                if ran < after {
                    drop(st);
                    let from = Instant::now().checked_sub(ran).unwrap_or_else(Instant::now);
                    return arm_timeout(pool, self.index, id, from);
                }
                if !pool.cfg.retry.should_retry(&ErrorKind::TimedOut(after), b.attempt) {
                    b.piece(k).settle_all(&ErrorKind::TimedOut(after), &pool.counts);
                }
                (k, ToWorkerRef::CancelRange { id, from: k, to: k + 1 })
            }
            _ => return,
        };
        st.timed_out = Some((id, elem));
        let io = st.io.clone();
        drop(st);
        Self::send(io.as_ref(), &stop);
        escalate(pool, self.index, id, elem, Signal::SIGTERM);
    }
}

/// After the grace period, sends `sig` to the worker if job `id` (element `elem` of it, for
/// a batch) still runs there; after SIGTERM comes SIGKILL. Uses the slot's alarm, which the
/// next job re-arms; if the batch went on to its next element, its timeout is re-armed.
fn escalate(pool: &Shared, idx: usize, id: u64, elem: u32, sig: Signal) {
    let weak = pool.me.clone();
    let at = Instant::now() + pool.cfg.grace;
    pool.clock.arm_call(
        idx,
        at,
        Box::new(move || {
            let Some(pool) = weak.upgrade() else { return };
            let slot = &pool.slots[idx];
            if slot.running_is(id, elem) {
                slot.signal(sig);
                if sig == Signal::SIGTERM {
                    escalate(&pool, idx, id, elem, Signal::SIGKILL);
                }
            } else if elem != WHOLE && slot.running_is(id, WHOLE) {
                arm_timeout(&pool, idx, id, Instant::now());
            }
        }),
    );
}

/// Arms the pool's timeout for job `id`, running since `from`.
pub(super) fn arm_timeout(pool: &Shared, idx: usize, id: u64, from: Instant) {
    if let Some(t) = pool.cfg.timeout {
        let weak = pool.me.clone();
        pool.clock.arm_call(
            idx,
            from + t,
            Box::new(move || {
                if let Some(pool) = weak.upgrade() {
                    pool.slots[idx].time_out(&pool, id, t);
                }
            }),
        );
    }
}

/// Resident set size of `pid`, from `/proc/<pid>/statm`.
pub(super) fn rss_bytes(pid: u32) -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64;
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * page)
}
