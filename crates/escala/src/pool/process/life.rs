//! A worker slot's life: the thread that keeps one worker process alive — spawns it (with
//! its ledger), reads its replies, replaces it when it dies, retires or crash-loops, and
//! backs off in a crash loop. The child's PDEATHSIG is tied to this thread, which outlives
//! every incarnation.

use std::collections::VecDeque;
use std::io::BufReader;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Shared;
use super::child::CONTROL_FD;
use super::ledger::{self, Ledger};
use super::sched::{self, Policy};
use super::settle::{Wakes, finish, on_done, on_replies};
use super::slot::{Ended, Io, Slot};
use super::wire::{Bytes, FromWorker, FromWorkerRef, PROTOCOL, ToWorkerRef, push_frame};
use super::writer::{Sender, writer_main};
use crate::error::ErrorKind;
use crate::events::{self, EventKind};
use crate::process::frame::{self, FrameKind};
use crate::process::{ChildMode, ChildSlot, StderrTail, reexec_command};
use crate::task;

/// Room for ids and names around a reply's payload.
const ENVELOPE: usize = 64 << 10;

/// The slot thread: keeps one worker alive until the pool has no work left.
pub(super) fn slot_main(pool: Arc<Shared>, idx: usize) {
    let slot = &pool.slots[idx];
    // Replies and refills wait for a busy CPU's slice to end rather than preempt a worker.
    let policy = sched::to_batch();
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
        let ended = incarnation(&pool, slot, policy);
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
                pool.queued.fetch_sub(p.len() as i64, SeqCst);
                p.settle_err(ErrorKind::Spawn(why.clone()), &pool.counts);
            }
        }
    }
    pool.slot_ended();
}

/// Runs one worker process from spawn to reap.
fn incarnation(pool: &Arc<Shared>, slot: &Slot, policy: Option<Policy>) -> Ended {
    let max = pool.cfg.max_frame;
    let (ours, theirs) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => return Ended::NoStart(format!("cannot create a socket pair: {e}")),
    };
    let (ctl, ctl_theirs) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => return Ended::NoStart(format!("cannot create a socket pair: {e}")),
    };
    let (ledger, ledger_fd) = match Ledger::create() {
        Ok(l) => l,
        Err(e) => return Ended::NoStart(format!("cannot create the worker's ledger: {e}")),
    };
    if pool.cfg.timeout.is_some() {
        ledger.set_timed();
    }
    let ledger = Arc::new(ledger);
    let mut cmd = reexec_command(ChildMode::PoolWorker, max);
    cmd.stdin(Stdio::from(OwnedFd::from(theirs)));
    if pool.cfg.stderr_tail > 0 {
        cmd.stderr(Stdio::piped());
    }
    let (raw_ledger, raw_ctl) = (ledger_fd.as_raw_fd(), ctl_theirs.as_raw_fd());
    // SAFETY: the hook runs in the forked child before exec and only calls `fcntl`, `dup2`
    // and `sched_setscheduler`, which are async-signal-safe, on fds this process owns (kept
    // open by `ledger_fd` and `ctl_theirs` until `spawn` returns).
    unsafe {
        cmd.pre_exec(move || {
            use nix::libc;
            // The worker runs under the policy the slot thread had, not its SCHED_BATCH.
            if let Some(p) = policy {
                p.restore()?;
            }
            // Close-on-exec copies out of the way first (at 10 and up), so neither fd can
            // land on the other's place; `dup2` then clears close-on-exec on the placed ones.
            let ledger = libc::fcntl(raw_ledger, libc::F_DUPFD_CLOEXEC, 10);
            let ctl = libc::fcntl(raw_ctl, libc::F_DUPFD_CLOEXEC, 10);
            if ledger < 0
                || ctl < 0
                || libc::dup2(ledger, ledger::WORKER_FD) < 0
                || libc::dup2(ctl, CONTROL_FD) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    drop(cmd);
    drop(ledger_fd);
    drop(ctl_theirs);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Ended::NoStart(format!("cannot re-execute this binary: {e}")),
    };
    let pid = child.id();
    let tail: Option<StderrTail> =
        child.stderr.take().map(|s| crate::process::tee_stderr(s, pool.cfg.stderr_tail));
    let child_slot = Arc::new(ChildSlot::new());
    child_slot.put(child);
    let Ok(read_half) = ours.try_clone() else {
        child_slot.signal(Signal::SIGKILL);
        let why = Some("cannot clone the worker socket".into());
        return finish(pool, slot, &child_slot, &ledger, pid, tail, why);
    };
    let mut reader = BufReader::with_capacity(64 << 10, read_half);
    let mut hello = Vec::new();
    let init = pool.cfg.init.as_ref().map(|(name, args)| (name.as_str(), Bytes(args)));
    push_frame(
        &mut hello,
        FrameKind::ToWorker,
        &ToWorkerRef::Hello { protocol: PROTOCOL, build: crate::process::build_id(), init },
    );
    let mut sock = ours;
    let ready = std::io::Write::write_all(&mut sock, &hello).ok().and_then(|_| read_msg(&mut reader, max));
    match ready {
        Some(FromWorker::Ready { init: None, .. }) => {}
        Some(FromWorker::Ready { init: Some(reply), .. }) => {
            let why = reply.into_result().err().map_or("unknown".into(), |k| k.to_string());
            let why = Some(format!("the pool's initializer {why}"));
            return finish(pool, slot, &child_slot, &ledger, pid, tail, why);
        }
        _ => return finish(pool, slot, &child_slot, &ledger, pid, tail, None),
    }
    let io = Io {
        sock: Arc::new(Mutex::new(sock)),
        ctl: Arc::new(Mutex::new(ctl)),
        child: child_slot.clone(),
        ledger: ledger.clone(),
    };
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
    let mut sender = Sender::default();
    // Replies are decoded in place, from one reused buffer.
    let mut buf = Vec::with_capacity(64 << 10);
    // Callers are woken once the replies at hand are settled (see `read_reply`).
    let mut wakes = Wakes::default();
    loop {
        match read_reply(&mut reader, max, &mut buf, (pool, slot), &mut wakes) {
            Some(true) => {}
            Some(false) => {
                child_slot.signal(Signal::SIGKILL); // out of protocol: this worker cannot be trusted
                break;
            }
            None => break,
        }
        if reader.buffer().is_empty() {
            // The replies at hand are settled: refill the room they freed. While the worker's
            // socket is full, its replies are read (and settled) meanwhile: it may be blocked
            // on writing them, not reading. Every frame the read brought into the buffer is
            // settled before the socket is polled again: a poll does not see them, and the
            // worker may send nothing more for as long as its next task runs.
            let mut drain = || {
                drain_buffered(&mut reader, |r| {
                    match read_reply(r, max, &mut buf, (pool, slot), &mut wakes) {
                        Some(false) => {
                            child_slot.signal(Signal::SIGKILL);
                            None
                        }
                        other => other,
                    }
                })
            };
            sender.refill(pool, slot, &io.sock, &mut drain);
        }
    }
    wakes.flush();
    slot.lock().alive = false;
    slot.room.notify_all();
    drop(stop_tx);
    if let Ok(w) = writer {
        let _ = w.join();
    }
    finish(pool, slot, &child_slot, &ledger, pid, tail, None)
}

/// Reads replies with `one` until the buffer is empty: what a read brought in is handled
/// before the socket is polled again (a poll sees only the socket). True while the worker
/// is there; false at the end of its stream or when `one` says so (`None` or `Some(false)`).
fn drain_buffered<R: std::io::Read>(
    reader: &mut BufReader<R>,
    mut one: impl FnMut(&mut BufReader<R>) -> Option<bool>,
) -> bool {
    loop {
        match one(reader) {
            Some(true) if reader.buffer().is_empty() => return true,
            Some(true) => {}
            _ => return false,
        }
    }
}

/// Reads one reply frame and settles it: `None` at the end of the stream (or a broken frame),
/// `Some(false)` for a frame out of protocol. The callers it settled are woken once no whole
/// frame is left in the buffer: before the next read can wait on the socket, and after the
/// last reply of a burst, not at each.
fn read_reply(
    reader: &mut BufReader<UnixStream>,
    max: usize,
    buf: &mut Vec<u8>,
    (pool, slot): (&Arc<Shared>, &Slot),
    wakes: &mut Wakes,
) -> Option<bool> {
    let Ok(true) = frame::read_frame_into(reader, FrameKind::FromWorker, max + ENVELOPE, buf) else {
        return None;
    };
    let handled = match postcard::from_bytes::<FromWorkerRef<'_>>(buf) {
        Ok(FromWorkerRef::Done { id, reply, ns }) => on_done(pool, slot, (id, reply, ns), wakes),
        Ok(FromWorkerRef::Replies { id, first, count, replies }) => {
            on_replies(pool, slot, id, first, count, replies)
        }
        Ok(FromWorkerRef::Ready { .. }) | Err(_) => false,
    };
    if !frame::starts_whole(reader.buffer()) {
        wakes.flush();
    }
    Some(handled)
}

fn read_msg(r: &mut BufReader<UnixStream>, max: usize) -> Option<FromWorker> {
    match frame::read_frame(r, FrameKind::FromWorker, max + ENVELOPE) {
        Ok(Some(bytes)) => task::decode(&bytes).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read, Write};
    use std::os::unix::net::UnixStream;

    use super::drain_buffered;

    /// Two 8-byte "frames" arrive in one write, then the peer sends nothing more (its next
    /// task runs): one drain handles both, though only one read reached the socket.
    #[test]
    fn a_drain_handles_every_frame_its_read_buffered() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"frame-1.frame-2.").unwrap();
        let mut reader = BufReader::with_capacity(64, ours);
        let mut got = vec![];
        let mut one = |r: &mut BufReader<UnixStream>| {
            let mut frame = [0u8; 8];
            r.read_exact(&mut frame).ok()?;
            got.push(frame);
            Some(true)
        };
        assert!(drain_buffered(&mut reader, &mut one));
        assert_eq!(got, [*b"frame-1.", *b"frame-2."]);
        drop(theirs);
    }
}
