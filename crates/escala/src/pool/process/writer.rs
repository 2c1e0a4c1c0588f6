//! A worker's writer thread: takes jobs from the pool's queue while the worker has room,
//! and sends each batch in one write — the deeper the queue, the bigger the batch.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use super::Shared;
use super::batch::Work;
use super::slot::arm_timeout;
use super::wire::{Bytes, ToWorkerRef, push_frame};
use crate::events::{self, EventKind};
use crate::process::frame::FrameKind;

/// How long a writer waits for work before looking again (only matters when idle recycling
/// is off; the wait ends at once when work or shutdown comes).
const LONG_WAIT: Duration = Duration::from_secs(3600);

pub(super) fn writer_main(pool: &Arc<Shared>, idx: usize, sock: &Mutex<UnixStream>, stop: &Receiver<()>) {
    let slot = &pool.slots[idx];
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut batch: Vec<Work> = Vec::new();
    'work: loop {
        // Wait for room in flight: (jobs, tasks).
        let (jobs, tasks) = {
            let mut st = slot.lock();
            loop {
                if !st.alive || st.retiring {
                    break 'work;
                }
                let (jobs, mut tasks) = slot.room(&st);
                if let Some(max) = pool.cfg.max_tasks {
                    // Never send a worker more than it will run before it is recycled.
                    let left = max.saturating_sub(st.tasks + st.inflight_tasks as u64);
                    tasks = tasks.min(left as usize);
                }
                if jobs > 0 && tasks > 0 && slot.worth_sending(&st) {
                    break (jobs, tasks);
                }
                st.writer_waiting = true;
                st = slot.room.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let idle = pool.cfg.idle.unwrap_or(LONG_WAIT);
        let first = select! {
            recv(pool.rx) -> p => p.expect("the queue's sender lives in the pool"),
            recv(stop) -> _ => break 'work,
            recv(pool.close_rx) -> _ => {
                if pool.finished() {
                    break 'work;
                }
                // Closed, but work is still coming back (requeued jobs, retries).
                match pool.rx.recv_timeout(Duration::from_millis(10)) {
                    Ok(p) => p,
                    Err(_) => continue 'work,
                }
            }
            default(idle) => {
                let mut st = slot.lock();
                // Idle too long, after having worked: replaced by a fresh worker.
                if pool.cfg.idle.is_some() && st.inflight.is_empty() && st.tasks > 0 {
                    st.retiring = true;
                    break 'work;
                }
                continue 'work;
            }
        };
        // Near the end of the queue, each worker takes a share of what is left (half of an
        // even split, as in guided scheduling), so no worker holds a long prefetch while
        // another runs dry. W3's end: `w3_probe` in `benches`.
        let left = usize::try_from(pool.queued.load(SeqCst)).unwrap_or(0);
        let tasks = tasks.min((left / (2 * pool.slots.len())).max(1));
        let mut taken = 0;
        let mut next = Some(first);
        while let Some(mut w) = next.take() {
            if let (Work::Many(b), Some(_)) = (&mut w, pool.cfg.max_tasks) {
                // Strict recycling: only the elements this worker will run.
                let fit = tasks.saturating_sub(taken).max(1);
                if b.len() > fit {
                    let rest = b.split_off(b.from + fit as u32);
                    pool.queued.fetch_sub(rest.len() as i64, SeqCst);
                    pool.put_back(Work::Many(rest));
                }
            }
            taken += w.len();
            batch.push(w);
            if batch.len() < jobs && taken < tasks {
                next = pool.rx.try_recv().ok();
            }
        }
        buf.clear();
        let mut st = slot.lock();
        if !st.alive || st.retiring {
            drop(st);
            for w in batch.drain(..) {
                pool.queued.fetch_sub(w.len() as i64, SeqCst);
                pool.put_back(w);
            }
            break;
        }
        let now = Instant::now();
        for w in batch.drain(..) {
            pool.queued.fetch_sub(w.len() as i64, SeqCst);
            match &w {
                Work::One(p) => {
                    // Cancelled while queued: its handle is resolved and counted already.
                    if !p.sink.core().try_start() || p.sink.is_done() {
                        continue;
                    }
                    let job = ToWorkerRef::Job { id: p.id, task: p.task, args: Bytes(&p.args) };
                    push_frame(&mut buf, FrameKind::ToWorker, &job);
                    p.sink.core().set_pid(st.pid);
                    if st.inflight.is_empty() && events::enabled() {
                        events::emit(p.sink.core(), EventKind::Started);
                    }
                }
                Work::Many(b) => {
                    // Its map was dropped: nobody wants these.
                    if b.out.abandoned() {
                        b.settle_all(&crate::error::ErrorKind::Cancelled, &pool.counts);
                        continue;
                    }
                    let job = ToWorkerRef::Batch {
                        id: b.id,
                        task: b.task,
                        first: b.from,
                        args: Bytes(b.wire_args()),
                    };
                    push_frame(&mut buf, FrameKind::ToWorker, &job);
                }
            }
            if st.inflight.is_empty() {
                st.front_since = now;
                arm_timeout(pool, idx, w.id(), now);
            }
            st.inflight_tasks += w.len();
            st.inflight.push_back(w);
        }
        drop(st);
        if !buf.is_empty() && sock.lock().unwrap_or_else(|e| e.into_inner()).write_all(&buf).is_err() {
            break; // the worker is gone; its slot settles what it held
        }
    }
    // No more jobs for this worker: it finishes what it holds and exits on EOF.
    let _ = sock.lock().unwrap_or_else(|e| e.into_inner()).shutdown(std::net::Shutdown::Write);
}
