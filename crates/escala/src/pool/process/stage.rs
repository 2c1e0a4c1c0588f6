//! A pool worker's outgoing replies: staged in its ledger (see `ledger.rs`) — crash-safe
//! from the moment they are committed — and written to the socket many at a time.
//!
//! The main thread stages each reply before it starts the next job, and sends what is
//! staged when it has no more work at hand, at the end of a batch, or when the oldest staged
//! reply has waited [`FLUSH_WAIT`]. While it runs a long job, a flusher thread sends what is
//! staged a little later, so a finished task never waits for the next one to end.
//!
//! Each send wakes the parent (and so takes a core from a worker on a small machine): in a
//! stream of short tasks, replies go out about once per [`FLUSH_WAIT`], not once per task.
//! The flusher sleeps on a timer (a `timerfd`) that the main thread sets when it stages the
//! first reply after a send; each such staging moves it on, so in a stream of short jobs,
//! which send their own replies, it never rings and the flusher never wakes (W3: it woke
//! about once per send when it slept on a condition variable with a deadline).

use std::io::{BufWriter, IoSlice, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::ledger::{self, Ledger};
use super::wire::{FromWorker, RepliesHead};
use crate::process::frame::{self, FrameKind};
use crate::task::{self, Reply};

/// How long staged replies of single jobs wait for more: the main thread sends them at the
/// end of the first job that ends this long after the oldest was staged. Measured on W3
/// (400 × 140 µs tasks, 2 workers, 2 cores, `w3_probe` in `benches`): 200 µs cost a
/// sixth of the speed-up in wake-ups; 1 ms brings the pool level with two plain threads.
pub(super) const FLUSH_WAIT: Duration = Duration::from_millis(1);

/// The flusher sends staged replies this much after [`FLUSH_WAIT`] (the main thread, which
/// sends them without a thread switch, goes first when its jobs are short).
const FLUSHER_SLACK: Duration = Duration::from_micros(500);

/// The socket to the parent.
pub(super) struct Out {
    pub(super) w: BufWriter<UnixStream>,
}

impl Out {
    /// Writes one message as a frame, at once.
    pub(super) fn send(&mut self, msg: &FromWorker) {
        if let Ok(bytes) = task::encode(msg) {
            let _ = frame::write_frame(&mut self.w, FrameKind::FromWorker, &bytes);
        }
    }

    /// Writes `head` then `body` with one `writev` (as many as it takes).
    fn write_parts(&mut self, head: &[u8], body: &[u8]) {
        let mut parts = [IoSlice::new(head), IoSlice::new(body)];
        let mut parts = &mut parts[..];
        let sock = self.w.get_mut();
        while !parts.is_empty() {
            match sock.write_vectored(parts) {
                Ok(0) | Err(_) => return, // the parent is gone
                Ok(k) => IoSlice::advance_slices(&mut parts, k),
            }
        }
    }
}

/// What is staged, under the [`Stage`] lock.
pub(super) struct Staging {
    pub(super) out: Out,
    ledger: Ledger,
    off: usize,
    count: u32,
    /// A batch's replies, `(id, first element)`; `None`: whole `Done` frames.
    batch: Option<(u64, u32)>,
    /// When the oldest staged reply was staged (ns, see `now`; batches).
    oldest: u64,
    /// When the oldest staged `Done` was staged (single jobs).
    oldest_at: Instant,
    /// The pool times its tasks: element start times must be precise.
    timed: bool,
    closed: bool,
}

/// The staging area, shared by the main thread and the flusher.
pub(super) struct Stage {
    st: Mutex<Staging>,
    /// The flusher's alarm: rings when the oldest staged `Done` has waited the flush wait
    /// and a bit.
    alarm: TimerFd,
}

impl Stage {
    pub(super) fn new(out: Out, ledger: Ledger) -> nix::Result<Stage> {
        let timed = ledger.timed();
        let st = Staging {
            out,
            ledger,
            off: 0,
            count: 0,
            batch: None,
            oldest: 0,
            oldest_at: Instant::now(),
            timed,
            closed: false,
        };
        let alarm = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)?;
        Ok(Stage { st: Mutex::new(st), alarm })
    }

    /// Sets the alarm to ring in `after`.
    fn arm(&self, after: Duration) {
        let at = Expiration::OneShot(TimeSpec::from_duration(after));
        // Cannot fail with a valid timer and time; if it did, the main thread still sends
        // its replies, only later.
        let _ = self.alarm.set(at, TimerSetTimeFlags::empty());
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Staging> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the flusher's alarm when the first `Done` since the last send was staged
    /// (setting it again moves it on: a stream of short jobs never lets it ring).
    pub(super) fn staged(&self, st: &Staging) {
        if st.count == 1 && st.batch.is_none() {
            self.arm(FLUSH_WAIT + FLUSHER_SLACK);
        }
    }

    /// The flusher thread: sends single jobs' replies staged longer than the flush wait and
    /// a bit (a long job runs; a stream of short ones sends its own). Batches send their own.
    pub(super) fn flusher(&self) {
        loop {
            if self.alarm.wait().is_err() {
                return;
            }
            let mut st = self.lock();
            if st.closed {
                return;
            }
            if st.count == 0 || st.batch.is_some() {
                continue; // sent meanwhile: the next staging sets the alarm
            }
            let due = st.oldest_at + FLUSH_WAIT + FLUSHER_SLACK;
            let now = Instant::now();
            if now >= due {
                st.flush();
            } else {
                self.arm(due - now);
            }
        }
    }

    /// Sends what is staged and stops the flusher (the worker is about to exit).
    pub(super) fn close(&self) {
        let mut st = self.lock();
        st.flush();
        st.closed = true;
        self.arm(Duration::from_nanos(1));
    }
}

impl Staging {
    /// `Cancel` frames the parent has sent so far (it counts them in the ledger first).
    pub(super) fn cancels(&self) -> u64 {
        self.ledger.cancels()
    }

    /// Sends what is staged.
    pub(super) fn flush(&mut self) {
        if self.count == 0 {
            return;
        }
        let staged = self.ledger.staged(self.off);
        match self.batch {
            Some((id, first)) => {
                let head = RepliesHead::Replies { id, first, count: self.count, len: staged.len() as u64 };
                let mut buf = [0u8; frame::HEADER + 48];
                if let Ok(body) = postcard::to_slice(&head, &mut buf[frame::HEADER..]) {
                    let n = body.len();
                    if let Ok(len) = u32::try_from(n + staged.len()) {
                        frame::fill_header(&mut buf[..frame::HEADER], FrameKind::FromWorker, len);
                        let staged = self.ledger.staged(self.off);
                        self.out.write_parts(&buf[..frame::HEADER + n], staged);
                    }
                }
                let next = first + self.count;
                self.batch = Some((id, next));
                self.ledger.sent(next);
            }
            None => {
                self.out.write_parts(&[], staged);
                self.ledger.sent(0);
            }
        }
        (self.off, self.count) = (0, 0);
    }

    /// Starts staging for batch `id` from element `first` (`None`: single jobs' `Done`).
    pub(super) fn begin(&mut self, batch: Option<(u64, u32)>) {
        self.flush();
        self.batch = batch;
        let (id, first) = batch.unwrap_or((0, 0));
        let now = if self.timed { ledger::mono_ns() } else { ledger::coarse_ns() };
        self.ledger.begin(id, first, now);
    }

    /// Stages the reply of element `k` of the current batch; the next starts now. Without
    /// the flusher (a batch's elements are short): what waits longer than `wait_ns` is sent.
    pub(super) fn stage_reply(&mut self, k: u32, reply: &Reply, wait_ns: u64) {
        let Some((id, _)) = self.batch else { return };
        loop {
            match postcard::to_slice(reply, self.ledger.area(self.off)) {
                Ok(bytes) => {
                    self.off += bytes.len();
                    self.count += 1;
                    // The next element's start time: precise only when timeouts read it.
                    let now = if self.timed { ledger::mono_ns() } else { ledger::coarse_ns() };
                    self.ledger.commit(now);
                    if self.count == 1 {
                        self.oldest = now;
                    } else if now.saturating_sub(self.oldest) > wait_ns {
                        self.flush();
                    }
                    return;
                }
                Err(_) if self.count > 0 => self.flush(),
                Err(_) => {
                    // Bigger than the whole ledger: it goes out alone, before the next starts.
                    let bytes = task::encode(reply).unwrap_or_default();
                    self.out.send(&FromWorker::Replies { id, first: k, count: 1, replies: bytes });
                    self.batch = Some((id, k + 1));
                    self.ledger.sent(k + 1);
                    return;
                }
            }
        }
    }

    /// Whether the oldest staged reply has waited the flush wait at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.count > 0 && now.saturating_duration_since(self.oldest_at) >= FLUSH_WAIT
    }

    /// Stages a single job's `Done` frame (it ran `ns` nanoseconds and ended at `now`).
    pub(super) fn stage_done(&mut self, id: u64, reply: Reply, ns: u64, now: Instant) {
        if self.batch.is_some() {
            self.begin(None);
        }
        let msg = FromWorker::Done { id, reply, ns };
        loop {
            let area = self.ledger.area(self.off);
            if area.len() > frame::HEADER {
                let (head, body) = area.split_at_mut(frame::HEADER);
                if let Ok(n) = postcard::to_slice(&msg, body).map(|b| b.len()) {
                    frame::fill_header(head, FrameKind::FromWorker, n as u32);
                    self.off += frame::HEADER + n;
                    self.count += 1;
                    if self.count == 1 {
                        self.oldest_at = now;
                    }
                    // No start time: the parent times single jobs itself.
                    self.ledger.commit(0);
                    return;
                }
            }
            if self.count == 0 {
                self.out.send(&msg); // bigger than the whole ledger: alone, at once
                return;
            }
            self.flush();
        }
    }
}
