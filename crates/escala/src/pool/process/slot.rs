//! One worker slot: the thread that owns a worker process from spawn to reap, reads its
//! replies, settles its tasks, stops runaway tasks, and replaces the worker when it dies,
//! retires or crash-loops. The child's PDEATHSIG is tied to this thread, which outlives
//! every incarnation.

use std::collections::VecDeque;
use std::io::BufReader;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Shared;
use super::pending::Pending;
use super::wire::{Bytes, FromWorker, ToWorkerRef, push_frame};
use super::writer::writer_main;
use crate::error::{ErrorKind, ExitReason};
use crate::events::{self, EventKind};
use crate::pool::stats::{WorkerProcess, WorkerStats};
use crate::process::frame::{self, FrameKind};
use crate::process::{ChildMode, ChildSlot, StderrTail, reexec_command, sys, tail_lines};
use crate::task;

/// Room for ids and names around a reply's payload.
const ENVELOPE: usize = 64 << 10;

/// The live worker's socket (write side, shared with `Cancel`) and process.
#[derive(Clone)]
pub(super) struct Io {
    pub(super) sock: Arc<Mutex<UnixStream>>,
    child: Arc<ChildSlot>,
}

pub(super) struct State {
    /// Jobs sent to the worker, in the order it runs them; the front one is running.
    pub(super) inflight: VecDeque<Pending>,
    /// When the front job started (the previous reply, or its send to an idle worker).
    pub(super) front_since: Instant,
    pub(super) alive: bool,
    /// Takes no new jobs: finishing what it holds, then replaced.
    pub(super) retiring: bool,
    pub(super) io: Option<Io>,
    /// The front job the clock stopped, if any.
    timed_out: Option<u64>,
    pub(super) pid: u32,
    rss: u64,
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
    avg_ns: AtomicU64,
}

enum Ended {
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
                front_since: Instant::now(),
                alive: false,
                retiring: false,
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

    /// Jobs in flight, and the worker's pid, RSS (read now) and task count while it lives.
    pub(super) fn snapshot(&self) -> (usize, Option<WorkerProcess>) {
        let st = self.lock();
        let info =
            st.alive.then(|| WorkerProcess { pid: st.pid, rss_bytes: rss_bytes(st.pid), tasks: st.tasks });
        (st.inflight.len(), info)
    }

    /// How many jobs to keep in flight: enough to cover ~1 ms of work, at least one (one
    /// until a task time has been measured, so a long first task holds nothing back).
    pub(super) fn prefetch(&self) -> usize {
        match self.avg_ns.load(Relaxed) {
            0 => 1,
            ns => (1_000_000 / ns).clamp(1, 256) as usize,
        }
    }

    fn front_is(&self, id: u64) -> bool {
        self.lock().inflight.front().is_some_and(|p| p.id == id)
    }

    fn signal(&self, sig: Signal) {
        if let Some(io) = self.lock().io.clone() {
            io.child.signal(sig);
        }
    }

    fn send_cancel(io: Option<Io>, id: u64) {
        if let Some(io) = io {
            let mut buf = Vec::new();
            push_frame(&mut buf, FrameKind::ToWorker, &ToWorkerRef::Cancel { id });
            let mut sock = io.sock.lock().unwrap_or_else(|e| e.into_inner());
            let _ = std::io::Write::write_all(&mut *sock, &buf);
        }
    }

    /// Asks the worker holding job `id` to stop it; a running one also gets the grace
    /// period, then SIGTERM, then SIGKILL. Returns false if no job `id` is here.
    pub(super) fn cancel(&self, id: u64, pool: &Shared) -> bool {
        let st = self.lock();
        let Some(pos) = st.inflight.iter().position(|p| p.id == id) else { return false };
        let io = st.io.clone();
        drop(st);
        Self::send_cancel(io, id);
        if pos == 0 {
            escalate(pool, self.index, id, Signal::SIGTERM);
        }
        true
    }

    /// Cancels the jobs this worker prefetched but has not started (shutdown, cancel_pending).
    pub(super) fn cancel_prefetched(&self, pool: &Shared) {
        let st = self.lock();
        let io = st.io.clone();
        let ids: Vec<u64> = st.inflight.iter().skip(1).map(|p| p.id).collect();
        for p in st.inflight.iter().skip(1) {
            p.sink.settle(Err(ErrorKind::Cancelled), &pool.counts);
        }
        drop(st);
        for id in ids {
            Self::send_cancel(io.clone(), id);
        }
    }

    /// The clock's alarm for the front job `id`: it ran past the pool's timeout.
    fn time_out(&self, pool: &Shared, id: u64, after: Duration) {
        let mut st = self.lock();
        let Some(front) = st.inflight.front().filter(|p| p.id == id) else { return };
        // Resolve now unless the policy retries timeouts (then the worker's end decides).
        if !pool.cfg.retry.should_retry(&ErrorKind::TimedOut(after), front.attempt) {
            pool.counts.failed.fetch_add(1, Relaxed);
            if !front.sink.time_out(after) {
                pool.counts.failed.fetch_sub(1, Relaxed);
            }
        }
        st.timed_out = Some(id);
        let io = st.io.clone();
        drop(st);
        Self::send_cancel(io, id);
        escalate(pool, self.index, id, Signal::SIGTERM);
    }
}

/// After the grace period, sends `sig` to the worker if job `id` still runs there; after
/// SIGTERM comes SIGKILL. Uses the slot's alarm, which the next job re-arms.
fn escalate(pool: &Shared, idx: usize, id: u64, sig: Signal) {
    let weak = pool.me.clone();
    let at = Instant::now() + pool.cfg.grace;
    pool.clock.arm_call(
        idx,
        at,
        Box::new(move || {
            let Some(pool) = weak.upgrade() else { return };
            let slot = &pool.slots[idx];
            if slot.front_is(id) {
                slot.signal(sig);
                if sig == Signal::SIGTERM {
                    escalate(&pool, idx, id, Signal::SIGKILL);
                }
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

/// The slot thread: keeps one worker alive until the pool has no work left.
pub(super) fn slot_main(pool: Arc<Shared>, idx: usize) {
    let slot = &pool.slots[idx];
    let mut deaths: VecDeque<Instant> = VecDeque::new();
    let mut backoff = Duration::ZERO;
    let mut first = true;
    while !pool.finished() {
        if !first {
            pool.restarts.fetch_add(1, Relaxed);
        }
        first = false;
        if !backoff.is_zero() {
            let g = pool.nap.0.lock().unwrap_or_else(|e| e.into_inner());
            let _ = pool.nap.1.wait_timeout_while(g, backoff, |_| !pool.is_closed());
        }
        let ended = incarnation(&pool, slot);
        if matches!(ended, Ended::Clean) {
            backoff = Duration::ZERO;
            continue;
        }
        let now = Instant::now();
        deaths.push_back(now);
        while deaths.front().is_some_and(|t| now.duration_since(*t) > pool.cfg.crash_window) {
            deaths.pop_front();
        }
        let looping = deaths.len() > pool.cfg.crash_max;
        if looping {
            if backoff.is_zero() {
                pool.crash_loops.fetch_add(1, Relaxed);
                tracing::warn!(
                    "pool `{}` worker {idx}: {} deaths in {:?}; backing off",
                    pool.name,
                    deaths.len(),
                    pool.cfg.crash_window
                );
            }
            backoff = (backoff * 2).clamp(pool.cfg.backoff_initial, pool.cfg.backoff_max);
            if events::enabled() {
                let kind = EventKind::CrashLoop {
                    worker: idx,
                    deaths: deaths.len(),
                    backoff_ms: backoff.as_millis() as u64,
                };
                events::emit_pool(&pool.name, kind);
            }
        } else {
            backoff = Duration::ZERO;
        }
        if let Ended::NoStart(why) = ended {
            // No worker, no progress: tell the waiting callers instead of keeping them.
            let take = if looping { usize::MAX } else { 1 };
            for p in pool.rx.try_iter().take(take) {
                pool.queued.fetch_sub(1, SeqCst);
                p.sink.settle(Err(ErrorKind::Spawn(why.clone())), &pool.counts);
            }
        }
    }
    pool.slot_ended();
}

/// Runs one worker process from spawn to reap.
fn incarnation(pool: &Arc<Shared>, slot: &Slot) -> Ended {
    let max = pool.cfg.max_frame;
    let (ours, theirs) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => return Ended::NoStart(format!("cannot create a socket pair: {e}")),
    };
    let mut cmd = reexec_command(ChildMode::PoolWorker, max);
    cmd.stdin(Stdio::from(OwnedFd::from(theirs)));
    if pool.cfg.stderr_tail > 0 {
        cmd.stderr(Stdio::piped());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ended::NoStart(format!("cannot re-execute this binary: {e}")),
    };
    drop(cmd);
    let pid = child.id();
    let tail: Option<StderrTail> =
        child.stderr.take().map(|s| crate::process::tee_stderr(s, pool.cfg.stderr_tail));
    let child_slot = Arc::new(ChildSlot::new());
    child_slot.put(child);
    let Ok(read_half) = ours.try_clone() else {
        child_slot.signal(Signal::SIGKILL);
        return finish(pool, slot, &child_slot, pid, tail, Some("cannot clone the worker socket".into()));
    };
    let mut reader = BufReader::with_capacity(64 << 10, read_half);
    let mut hello = Vec::new();
    let init = pool.cfg.init.as_ref().map(|(name, args)| (name.as_str(), Bytes(args)));
    push_frame(
        &mut hello,
        FrameKind::ToWorker,
        &ToWorkerRef::Hello { build: crate::process::build_id(), init },
    );
    let mut sock = ours;
    let ready = std::io::Write::write_all(&mut sock, &hello).ok().and_then(|_| read_msg(&mut reader, max));
    match ready {
        Some(FromWorker::Ready { init: None, .. }) => {}
        Some(FromWorker::Ready { init: Some(reply), .. }) => {
            let why = reply.into_result().err().map_or("unknown".into(), |k| k.to_string());
            return finish(pool, slot, &child_slot, pid, tail, Some(format!("the pool's initializer {why}")));
        }
        _ => return finish(pool, slot, &child_slot, pid, tail, None),
    }
    let io = Io { sock: Arc::new(Mutex::new(sock)), child: child_slot.clone() };
    {
        let mut st = slot.lock();
        st.alive = true;
        st.retiring = false;
        st.io = Some(io.clone());
        st.pid = pid;
        st.rss = 0;
        st.tasks = 0;
        st.timed_out = None;
    }
    if events::enabled() {
        events::emit_pool(&pool.name, EventKind::WorkerStarted);
    }
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let writer = {
        let (pool, sock) = (pool.clone(), io.sock.clone());
        let idx = slot.index;
        std::thread::Builder::new()
            .name(format!("{}-{idx}-writer", pool.name))
            .spawn(move || writer_main(&pool, idx, &sock, &stop_rx))
    };
    if writer.is_err() {
        child_slot.signal(Signal::SIGKILL);
    }
    while let Some(msg) = read_msg(&mut reader, max) {
        let FromWorker::Done { id, reply } = msg else { break };
        if !on_done(pool, slot, id, reply) {
            child_slot.signal(Signal::SIGKILL); // out of protocol: this worker cannot be trusted
            break;
        }
    }
    slot.lock().alive = false;
    slot.room.notify_all();
    drop(stop_tx);
    if let Ok(w) = writer {
        let _ = w.join();
    }
    finish(pool, slot, &child_slot, pid, tail, None)
}

fn read_msg(r: &mut BufReader<UnixStream>, max: usize) -> Option<FromWorker> {
    match frame::read_frame(r, FrameKind::FromWorker, max + ENVELOPE) {
        Ok(Some(bytes)) => task::decode(&bytes).ok(),
        _ => None,
    }
}

/// Reaps the worker and settles what it held: the running job is lost (or timed out) and
/// retried by policy; prefetched jobs go back to the queue.
fn finish(
    pool: &Arc<Shared>,
    slot: &Slot,
    child: &ChildSlot,
    pid: u32,
    tail: Option<StderrTail>,
    no_start: Option<String>,
) -> Ended {
    sys::wait_exit_no_reap(pid);
    let status = child.reap().map(ExitReason::from_status);
    let stderr = tail_lines(tail);
    let (inflight, timed_out) = {
        let mut st = slot.lock();
        st.alive = false;
        st.io = None;
        (std::mem::take(&mut st.inflight), st.timed_out.take())
    };
    if pool.cfg.timeout.is_some() {
        pool.clock.disarm(slot.index);
    }
    if let Some(why) = no_start {
        return Ended::NoStart(why);
    }
    let reason = status.unwrap_or(ExitReason::Code(-1));
    let held = !inflight.is_empty();
    let mut jobs = inflight.into_iter();
    if let Some(front) = jobs.next() {
        let kind = match (timed_out == Some(front.id), pool.cfg.timeout) {
            (true, Some(t)) => ErrorKind::TimedOut(t),
            _ => ErrorKind::WorkerLost { reason, stderr },
        };
        if events::enabled() {
            events::emit(front.sink.core(), EventKind::WorkerLost { reason: reason.to_string() });
        }
        pool.fail_or_retry(front, kind);
    }
    for p in jobs {
        pool.put_back(p);
    }
    if held || reason != ExitReason::Code(0) { Ended::Died } else { Ended::Clean }
}

/// Settles the front job with its reply; false if the reply does not match it.
fn on_done(pool: &Arc<Shared>, slot: &Slot, id: u64, reply: task::Reply) -> bool {
    let now = Instant::now();
    let mut st = slot.lock();
    let Some(front) = st.inflight.pop_front() else { return false };
    if front.id != id {
        st.inflight.push_front(front);
        return false;
    }
    let took = now.saturating_duration_since(st.front_since);
    st.front_since = now;
    // A job the clock stopped ended as a timeout, whatever it answered when interrupted.
    let timed_out = st.timed_out == Some(id);
    if timed_out {
        st.timed_out = None;
    }
    st.tasks += 1;
    if let Some(next) = st.inflight.front() {
        if events::enabled() {
            events::emit(next.sink.core(), EventKind::Started);
        }
        arm_timeout(pool, slot.index, next.id, now);
    } else if pool.cfg.timeout.is_some() {
        pool.clock.disarm(slot.index);
    }
    if st.tasks % 64 == 1 {
        st.rss = rss_bytes(st.pid);
    }
    let recycle =
        pool.cfg.max_tasks.is_some_and(|m| st.tasks >= m) || pool.cfg.max_rss.is_some_and(|m| st.rss > m);
    if recycle {
        st.retiring = true;
    }
    drop(st);
    slot.room.notify_all();
    slot.stats.record(took);
    let ns = took.as_nanos().min(u64::MAX as u128) as u64;
    let avg = slot.avg_ns.load(Relaxed);
    slot.avg_ns.store(if avg == 0 { ns.max(1) } else { (avg * 7 + ns) / 8 + 1 }, Relaxed);
    match (reply, timed_out) {
        (task::Reply::Cancelled, _) if front.reclaim => pool.put_back(front),
        (_, true) => {
            let t = pool.cfg.timeout.unwrap_or_default();
            pool.fail_or_retry(front, ErrorKind::TimedOut(t));
        }
        (reply, false) => match reply.into_result() {
            Ok(bytes) => {
                front.sink.settle(Ok(bytes), &pool.counts);
            }
            Err(kind) => pool.fail_or_retry(front, kind),
        },
    }
    true
}

/// Resident set size of `pid`, from `/proc/<pid>/statm`.
fn rss_bytes(pid: u32) -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64;
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * page)
}
