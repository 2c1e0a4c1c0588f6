//! A worker's writer thread: takes jobs from the pool's queue while the worker has room,
//! and sends each batch in one write — the deeper the queue, the bigger the batch.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use super::Shared;
use super::pending::Pending;
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
    let mut batch: Vec<Pending> = Vec::new();
    'work: loop {
        // Wait for room in flight.
        let room = {
            let mut st = slot.lock();
            loop {
                if !st.alive || st.retiring {
                    break 'work;
                }
                let mut room = slot.prefetch().saturating_sub(st.inflight.len());
                if let Some(max) = pool.cfg.max_tasks {
                    // Never send a worker more than it will run before it is recycled.
                    room = room.min(max.saturating_sub(st.tasks + st.inflight.len() as u64) as usize);
                }
                if room > 0 {
                    break room;
                }
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
        batch.push(first);
        while batch.len() < room {
            match pool.rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        buf.clear();
        let mut st = slot.lock();
        if !st.alive || st.retiring {
            drop(st);
            for p in batch.drain(..) {
                pool.queued.fetch_sub(1, SeqCst);
                pool.put_back(p);
            }
            break;
        }
        let now = Instant::now();
        for p in batch.drain(..) {
            pool.queued.fetch_sub(1, SeqCst);
            // Cancelled while queued: its handle is resolved and counted already.
            if !p.sink.core().try_start() || p.sink.is_done() {
                continue;
            }
            push_frame(
                &mut buf,
                FrameKind::ToWorker,
                &ToWorkerRef::Job { id: p.id, task: p.task, args: Bytes(&p.args) },
            );
            p.sink.core().set_pid(st.pid);
            if st.inflight.is_empty() {
                st.front_since = now;
                if events::enabled() {
                    events::emit(p.sink.core(), EventKind::Started);
                }
                arm_timeout(pool, idx, p.id, now);
            }
            st.inflight.push_back(p);
        }
        drop(st);
        if !buf.is_empty() && sock.lock().unwrap_or_else(|e| e.into_inner()).write_all(&buf).is_err() {
            break; // the worker is gone; its slot settles what it held
        }
    }
    // No more jobs for this worker: it finishes what it holds and exits on EOF.
    let _ = sock.lock().unwrap_or_else(|e| e.into_inner()).shutdown(std::net::Shutdown::Write);
}
