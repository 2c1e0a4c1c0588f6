//! Settling what a worker answers, or leaves behind when it dies: `Done` frames (one task),
//! `Replies` frames (elements of a batch), and at its death what it held — the replies staged
//! in its ledger kept, the running task lost (or timed out, or retried), the rest requeued.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::Shared;
use super::batch::{Batch, Work};
use super::ledger::Ledger;
use super::pending::SinkRef;
use super::slot::{Ended, Slot, State, WHOLE, arm_timeout, rss_bytes};
use super::wire::{ReplyRef, split_replies};
use crate::error::{ErrorKind, ExitReason};
use crate::events::{self, EventKind};
use crate::handle::Wakeup;
use crate::process::{ChildSlot, StderrTail, sys, tail_lines};

/// The wake-ups owed to callers whose handles a burst of replies settled, given after the
/// burst's last reply is settled ([`flush`](Self::flush), and at the latest when dropped). A
/// caller joining its handles in order is then woken once per burst: woken at the first
/// reply, it would often find the next handle not settled yet and sleep again, a wake-up
/// (and a preempted slot thread) per reply.
#[derive(Default)]
pub(super) struct Wakes(Vec<(SinkRef, Wakeup)>);

impl Wakes {
    pub(super) fn flush(&mut self) {
        for (sink, w) in self.0.drain(..) {
            sink.wake(w);
        }
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Reaps the worker and settles what it held: the replies its ledger staged are kept, the
/// running task (or element) is lost (or timed out) and retried by policy, and the rest goes
/// back to the queue.
pub(super) fn finish(
    pool: &Arc<Shared>,
    slot: &Slot,
    child: &ChildSlot,
    ledger: &Ledger,
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
        st.inflight_tasks = 0;
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
    let staged = ledger.recover();
    let mut inflight = inflight;
    // Single jobs whose `Done` was staged but never sent: they did finish.
    for (id, reply) in staged.done.iter().map(|(id, r)| (*id, ReplyRef::of(r))) {
        if !matches!(inflight.front(), Some(Work::One(p)) if p.id == id) {
            continue; // already received
        }
        let Some(Work::One(p)) = inflight.pop_front() else { break };
        match (reply, timed_out == Some((id, WHOLE))) {
            (_, true) => {
                let t = pool.cfg.timeout.unwrap_or_default();
                pool.fail_or_retry(Work::One(p), ErrorKind::TimedOut(t));
            }
            (ReplyRef::Cancelled, _) if p.reclaim => pool.put_back(Work::One(p)),
            (reply, false) => match reply.into_result() {
                Ok(bytes) => {
                    p.sink.settle(Ok(bytes), &pool.counts);
                }
                Err(kind) => pool.fail_or_retry(Work::One(p), kind),
            },
        }
    }
    let mut jobs = inflight.into_iter();
    let lost = |id: u64, elem: u32| match (timed_out == Some((id, elem)), pool.cfg.timeout) {
        (true, Some(t)) => ErrorKind::TimedOut(t),
        _ => ErrorKind::WorkerLost { reason, stderr: stderr.clone() },
    };
    match jobs.next() {
        Some(Work::One(front)) => {
            if events::enabled() {
                events::emit(front.sink.core(), EventKind::WorkerLost { reason: reason.to_string() });
            }
            let kind = lost(front.id, WHOLE);
            pool.fail_or_retry(Work::One(front), kind);
        }
        Some(Work::Many(mut b)) => {
            // Replies staged in the ledger but never sent: those elements did finish.
            if staged.batch == b.id && staged.first <= b.from {
                let skip = (b.from - staged.first) as usize;
                let replies: Vec<ReplyRef<'_>> =
                    staged.replies.iter().skip(skip).take(b.len()).map(ReplyRef::of).collect();
                let n = replies.len() as u32;
                if n > 0 {
                    let timed = timed_out.filter(|&(i, k)| i == b.id && (b.from..b.from + n).contains(&k));
                    settle_elems(pool, &b, b.from, replies, timed.map(|(_, k)| k));
                    b.from += n;
                }
            }
            if b.from < b.to {
                // The element running when the worker died; the ones after it never started.
                let k = b.from;
                pool.fail_or_retry(Work::Many(b.piece(k)), lost(b.id, k));
                if k + 1 < b.to {
                    pool.put_back(Work::Many(b.split_off(k + 1)));
                }
            }
        }
        None => {}
    }
    for w in jobs {
        pool.put_back(w);
    }
    if held || reason != ExitReason::Code(0) { Ended::Died } else { Ended::Clean }
}

/// Settles the front job with its reply; false if the reply does not match it.
///
/// The task's run time comes from the worker (`ns`): replies arrive many at a time, so the
/// gap between two of them says little about one task.
/// A value's caller is woken through `wakes`; errors, retries and timeouts wake theirs at once.
pub(super) fn on_done(
    pool: &Arc<Shared>,
    slot: &Slot,
    (id, reply, ns): (u64, ReplyRef<'_>, u64),
    wakes: &mut Wakes,
) -> bool {
    let mut st = slot.lock();
    if !matches!(st.inflight.front(), Some(Work::One(p)) if p.id == id) {
        return false;
    }
    let Some(Work::One(front)) = st.inflight.pop_front() else { return false };
    st.inflight_tasks -= 1;
    // When the next job started: for its timeout, or to time a batch. Otherwise not worth
    // a clock read per reply (it is not cheap on every machine).
    let now = if pool.cfg.timeout.is_some() || matches!(st.inflight.front(), Some(Work::Many(_))) {
        Instant::now()
    } else {
        st.front_since
    };
    st.front_since = now;
    let took = Duration::from_nanos(ns);
    // A job the clock stopped ended as a timeout, whatever it answered when interrupted.
    let timed_out = st.timed_out == Some((id, WHOLE));
    if timed_out {
        st.timed_out = None;
    }
    after_tasks(pool, slot, &mut st, 1, now, true);
    drop(st);
    slot.stats.record(took);
    measure(slot, took, 1);
    match (reply, timed_out) {
        (ReplyRef::Cancelled, _) if front.reclaim => pool.put_back(Work::One(front)),
        (_, true) => {
            let t = pool.cfg.timeout.unwrap_or_default();
            pool.fail_or_retry(Work::One(front), ErrorKind::TimedOut(t));
        }
        (reply, false) => match reply.into_result() {
            Ok(bytes) => {
                let owed = front.sink.settle_quiet(Ok(bytes), &pool.counts);
                if let Some(w) = owed.filter(|w| !w.is_empty()) {
                    wakes.0.push((front.sink, w));
                }
            }
            Err(kind) => pool.fail_or_retry(Work::One(front), kind),
        },
    }
    true
}

/// Settles elements `first..first + count` of the front batch; false if they do not match.
pub(super) fn on_replies(
    pool: &Arc<Shared>,
    slot: &Slot,
    id: u64,
    first: u32,
    count: u32,
    blob: &[u8],
) -> bool {
    let now = Instant::now();
    let replies = split_replies(blob, count);
    if count == 0 || replies.len() != count as usize {
        return false;
    }
    let mut st = slot.lock();
    let Some(Work::Many(b)) = st.inflight.front_mut() else { return false };
    if b.id != id || first != b.from || first.checked_add(count).is_none_or(|end| end > b.to) {
        return false;
    }
    let view = Batch { to: first + count, ..b.piece(first) };
    let view = Batch { id, ..view };
    b.from += count;
    let done = b.from == b.to;
    if done {
        st.inflight.pop_front();
    }
    st.inflight_tasks -= count as usize;
    let took = now.saturating_duration_since(st.front_since);
    st.front_since = now;
    let timed = match st.timed_out {
        Some((i, k)) if i == id && (first..first + count).contains(&k) => {
            st.timed_out = None;
            Some(k)
        }
        _ => None,
    };
    after_tasks(pool, slot, &mut st, u64::from(count), now, done);
    drop(st);
    slot.stats.record_n(took / count, u64::from(count));
    measure(slot, took, count);
    settle_elems(pool, &view, first, replies, timed);
    true
}

/// Settles elements `first..` of `b` with their replies: values and errors go to the map, an
/// element the clock stopped (`timed`) ends as timed out, errors the policy retries are
/// retried alone.
fn settle_elems(pool: &Arc<Shared>, b: &Batch, first: u32, replies: Vec<ReplyRef<'_>>, timed: Option<u32>) {
    let mut later: Vec<(u32, ErrorKind)> = Vec::new();
    let retry = &pool.cfg.retry;
    {
        let mut items = replies.into_iter().zip(first..).filter_map(|(r, k)| {
            let at = b.base + u64::from(k);
            if timed == Some(k) {
                later.push((k, ErrorKind::TimedOut(pool.cfg.timeout.unwrap_or_default())));
                return None;
            }
            match r.into_result() {
                Err(kind) if retry.should_retry(&kind, b.attempt) => {
                    later.push((k, kind));
                    None
                }
                r => Some((at, r)),
            }
        });
        b.out.settle(&mut items, &pool.counts);
    }
    for (k, kind) in later {
        pool.fail_or_retry(Work::Many(b.piece(k)), kind);
    }
}

/// Bookkeeping after `n` tasks of the front job ended at `now` (`popped`: the whole job):
/// the task count, the next job's timeout, recycling.
fn after_tasks(pool: &Shared, slot: &Slot, st: &mut State, n: u64, now: Instant, popped: bool) {
    st.tasks += n;
    match st.inflight.front() {
        // A stopped element's escalation keeps the alarm until it is over.
        Some(next) if st.timed_out.is_some_and(|(i, _)| i == next.id()) => {}
        Some(next) => {
            if let (true, true, Work::One(p)) = (popped, events::enabled(), next) {
                events::emit(p.sink.core(), EventKind::Started);
            }
            arm_timeout(pool, slot.index, next.id(), now);
        }
        None if pool.cfg.timeout.is_some() => pool.clock.disarm(slot.index),
        None => {}
    }
    if let Some(max) = pool.cfg.max_rss {
        // Sampled every 64 tasks (and after the first).
        if st.tasks == n || (st.tasks - n) / 64 != st.tasks / 64 {
            st.rss = rss_bytes(st.pid);
        }
        if st.rss > max {
            st.retiring = true;
        }
    }
    if pool.cfg.max_tasks.is_some_and(|m| st.tasks >= m) {
        st.retiring = true;
    }
}

/// Folds a reply's timing into the slot's moving average of one task's run time.
fn measure(slot: &Slot, took: Duration, n: u32) {
    let ns = (took.as_nanos() / u128::from(n.max(1))).min(u128::from(u64::MAX)) as u64;
    let avg = slot.avg_ns.load(Relaxed);
    slot.avg_ns.store(if avg == 0 { ns.max(1) } else { (avg * 7 + ns) / 8 + 1 }, Relaxed);
}
