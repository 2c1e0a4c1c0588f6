//! Sending jobs to a worker: take jobs from the pool's queue while the worker has room and
//! send each batch in one write — the deeper the queue, the bigger the batch.
//!
//! Two threads send. The slot thread refills the worker right after reading its replies
//! (the replies freed the room), so in a stream no thread wakes up just to send. The
//! worker's writer thread is for when the queue is empty: it waits for work and sends it.
//! W3 (`w3_probe` in `benches`): a wake-up of a writer per reply batch cost the pool a few
//! percent of its speed-up, on two cores the workers fill.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use super::Shared;
use super::batch::Work;
use super::slot::{Slot, State, arm_timeout};
use super::wire::{Bytes, ToWorkerRef, push_frame};
use crate::events::{self, EventKind};
use crate::process::frame::FrameKind;

/// How long a writer waits for work before looking again (only matters when idle recycling
/// is off; the wait ends at once when work or shutdown comes).
const LONG_WAIT: Duration = Duration::from_secs(3600);

/// One sending thread's buffers, reused from send to send.
#[derive(Default)]
pub(super) struct Sender {
    buf: Vec<u8>,
    batch: Vec<Work>,
}

/// What a send may add in flight, as (jobs, tasks), if the worker takes jobs. `worth`: only
/// if enough room is free for a write to be worth it.
fn room(pool: &Shared, slot: &Slot, st: &State, worth: bool) -> Option<(usize, usize)> {
    if !st.alive || st.retiring {
        return None;
    }
    let (jobs, mut tasks) = slot.room(st);
    if let Some(max) = pool.cfg.max_tasks {
        // Never send a worker more than it will run before it is recycled.
        let left = max.saturating_sub(st.tasks + st.inflight_tasks as u64);
        tasks = tasks.min(left as usize);
    }
    (jobs > 0 && tasks > 0 && (!worth || slot.worth_sending(st))).then_some((jobs, tasks))
}

impl Sender {
    /// Sends `first` (if given) and as much more of the queue as the worker has room for, in
    /// one write, holding the socket: jobs reach the worker in the order they join its
    /// in-flight list, whichever thread sends them. Without `first`, sends only if the room
    /// is worth a write. False if the worker takes no more jobs (`first` went back to the
    /// queue) or is gone.
    fn send(
        &mut self,
        pool: &Shared,
        slot: &Slot,
        out: MutexGuard<'_, UnixStream>,
        first: Option<Work>,
        write: &mut dyn FnMut(&UnixStream, &[u8]) -> bool,
    ) -> bool {
        let (room, taking) = {
            let st = slot.lock();
            (room(pool, slot, &st, first.is_none()), st.alive && !st.retiring)
        };
        let Some((jobs, tasks)) = room else {
            if let Some(w) = first {
                pool.queued.fetch_sub(w.len() as i64, SeqCst);
                pool.put_back(w);
            }
            return taking;
        };
        let Some(first) = first.or_else(|| pool.rx.try_recv().ok()) else { return true };
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
            self.batch.push(w);
            if self.batch.len() < jobs && taken < tasks {
                next = pool.rx.try_recv().ok();
            }
        }
        self.buf.clear();
        let mut st = slot.lock();
        if !st.alive || st.retiring {
            drop(st);
            for w in self.batch.drain(..) {
                pool.queued.fetch_sub(w.len() as i64, SeqCst);
                pool.put_back(w);
            }
            return false;
        }
        let now = Instant::now();
        // Once for the batch: the submitting thread adds to this count at every submit, and
        // each write from another core takes the line away from it.
        pool.queued.fetch_sub(taken as i64, SeqCst);
        for w in self.batch.drain(..) {
            match &w {
                Work::One(p) => {
                    // Cancelled while queued: its handle is resolved and counted already.
                    if !p.sink.core().try_start() || p.sink.is_done() {
                        continue;
                    }
                    let job = ToWorkerRef::Job { id: p.id, task: p.task, args: Bytes(&p.args) };
                    push_frame(&mut self.buf, FrameKind::ToWorker, &job);
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
                    push_frame(&mut self.buf, FrameKind::ToWorker, &job);
                }
            }
            if st.inflight.is_empty() {
                st.front_since = now;
                arm_timeout(pool, slot.index, w.id(), now);
            }
            st.inflight_tasks += w.len();
            st.inflight.push_back(w);
        }
        drop(st);
        // The worker is gone if this fails; its slot settles what it held.
        self.buf.is_empty() || write(&out, &self.buf)
    }

    /// The slot thread's refill after a reply: sends what the queue holds if the worker has
    /// room worth a write, without waiting for work or for the socket (a send in progress
    /// is the writer's, which looks for room again after it). While the socket is full,
    /// `drain` reads and settles the worker's replies (false: the worker is gone). The
    /// writer is woken when there is something only it does: wait for work, or end the
    /// worker.
    pub(super) fn refill(
        &mut self,
        pool: &Shared,
        slot: &Slot,
        sock: &Mutex<UnixStream>,
        drain: &mut dyn FnMut() -> bool,
    ) {
        if let Ok(out) = sock.try_lock() {
            self.send(pool, slot, out, None, &mut |sock, buf| write_draining(sock, buf, drain));
        }
        slot.wake_writer(&mut slot.lock());
    }
}

/// Writes `buf` without blocking on a full socket: while it is full, reads what the worker
/// sent (`drain`), since a worker blocked on writing its replies reads no jobs. False when
/// the worker is gone.
fn write_draining(sock: &UnixStream, buf: &[u8], drain: &mut dyn FnMut() -> bool) -> bool {
    use nix::errno::Errno;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::{AsFd, AsRawFd};
    let mut off = 0;
    while off < buf.len() {
        match send(sock.as_raw_fd(), &buf[off..], MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => off += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN | PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {
                        let ready = fds[0].revents().unwrap_or(PollFlags::empty());
                        if ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                            && !drain()
                        {
                            return false;
                        }
                    }
                    Err(Errno::EINTR) => {}
                    Err(_) => return false,
                }
            }
            Err(_) => return false,
        }
    }
    true
}

pub(super) fn writer_main(pool: &Arc<Shared>, idx: usize, sock: &Mutex<UnixStream>, stop: &Receiver<()>) {
    let slot = &pool.slots[idx];
    let mut sender = Sender::default();
    'work: loop {
        // Wait for room in flight.
        {
            let mut st = slot.lock();
            loop {
                if !st.alive || st.retiring {
                    break 'work;
                }
                if room(pool, slot, &st, true).is_some() {
                    break;
                }
                st.writer_waiting = true;
                st = slot.room.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
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
        let out = sock.lock().unwrap_or_else(|e| e.into_inner());
        if !sender.send(pool, slot, out, Some(first), &mut |mut sock: &UnixStream, buf: &[u8]| {
            sock.write_all(buf).is_ok()
        }) {
            break;
        }
    }
    // No more jobs for this worker: it finishes what it holds and exits on EOF.
    let _ = sock.lock().unwrap_or_else(|e| e.into_inner()).shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::write_draining;

    /// The peer writes 4 MiB before it reads anything: a plain blocking write of 4 MiB to
    /// it would wait for ever (each side waits for the other to read). Draining its bytes
    /// meanwhile lets both writes finish.
    #[test]
    fn a_full_socket_is_written_while_its_peer_is_read() {
        const SIZE: usize = 4 << 20;
        let (ours, theirs) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            let mut theirs = theirs;
            theirs.write_all(&vec![1u8; SIZE]).unwrap();
            let mut got = vec![0u8; SIZE];
            theirs.read_exact(&mut got).unwrap();
            got.iter().all(|&b| b == 2)
        });
        let (done_tx, done) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut reader = ours.try_clone().unwrap();
            let mut drained = 0;
            let mut chunk = vec![0u8; 64 << 10];
            let mut drain = || match reader.read(&mut chunk) {
                Ok(n) if n > 0 => {
                    drained += n;
                    true
                }
                _ => false,
            };
            let wrote = write_draining(&ours, &vec![2u8; SIZE], &mut drain);
            let _ = done_tx.send((wrote, drained));
        });
        let (wrote, drained) = done.recv_timeout(Duration::from_secs(20)).expect("the write did not finish");
        assert!(wrote, "the write failed");
        assert!(drained > 0, "nothing was drained: the test did not fill both directions");
        assert!(peer.join().unwrap(), "the peer read other bytes than were written");
    }
}
