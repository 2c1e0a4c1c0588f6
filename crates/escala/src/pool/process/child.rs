//! The worker side of a process pool: what `escala::init()` does in a pool worker.
//!
//! A reader thread takes frames off the socket (jobs into a local queue; `Cancel` to the
//! running job's token or the set of dropped jobs). The main thread runs jobs in arrival
//! order and answers each with one `Done`, written before the next job starts. Jobs arrive
//! in batches (the parent writes as many as the worker may prefetch in one go). Before
//! starting a job the main thread waits until the reader has handled every byte already on
//! the socket, so a `Cancel` the parent sent before the job started always wins.
//!
//! A `Batch` (many calls of one task) runs element by element; each reply is staged in the
//! worker's ledger (shared memory, see `ledger.rs`) before the next element starts, and the
//! staged replies go out in one `Replies` frame at the end of the batch, when the ledger is
//! full, or when 5 ms have passed since the last one.

use std::collections::HashSet;
use std::io::{BufReader, BufWriter};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::ledger::{self, Ledger};
use super::wire::{FromWorker, PROTOCOL, RepliesHead, ToWorker, split_args};
use crate::handle::{CancelToken, TaskName, UnitKind, pair};
use crate::process::child::{cap_reply, fatal, finish_process};
use crate::process::frame::{self, FrameKind};
use crate::task::{self, Reply};

/// Cap for the small frames around jobs (ids, names) on top of the argument cap.
const ENVELOPE: usize = 64 << 10;

/// Longest time staged replies wait for the end of their batch.
const FLUSH_NS: u64 = 5_000_000;

/// The job the main thread is running, so `Cancel` can reach its token.
#[derive(Default)]
struct Running {
    id: u64,
    /// The batch element running (`u32::MAX` for a single job).
    elem: u32,
    token: Option<CancelToken>,
    /// Prefetched jobs cancelled before they started.
    dropped: HashSet<u64>,
    /// Batch elements cancelled: (batch, from, to).
    ranges: Vec<(u64, u32, u32)>,
}

/// A job as the reader hands it to the main thread.
enum Job {
    One { id: u64, task: String, args: Vec<u8> },
    Batch { id: u64, task: String, first: u32, args: Vec<u8> },
}

/// A fresh token for running tasks with.
fn new_token() -> CancelToken {
    let (_h, c) = pair::<()>(TaskName::Static(""), UnitKind::PoolTask);
    CancelToken::of(&c)
}

/// Replies to the parent. Each `Done` is flushed before the next job starts: a reply left in
/// a buffer would be lost if that next job crashed the worker, and the crash blamed on the
/// job that had in fact finished.
struct Out {
    w: BufWriter<UnixStream>,
}

impl Out {
    fn send(&mut self, msg: &FromWorker) {
        if let Ok(bytes) = task::encode(msg) {
            let _ = frame::write_frame(&mut self.w, FrameKind::FromWorker, &bytes);
        }
    }

    /// Sends the `count` replies staged in `staged` (elements `first..`) as one frame.
    fn send_replies(&mut self, id: u64, first: u32, count: u32, staged: &[u8]) {
        use std::io::{IoSlice, Write};
        let head = RepliesHead::Replies { id, first, count, len: staged.len() as u64 };
        let mut buf = [0u8; frame::HEADER + 48];
        let Ok(body) = postcard::to_slice(&head, &mut buf[frame::HEADER..]) else { return };
        let n = body.len();
        let Ok(len) = u32::try_from(n + staged.len()) else { return };
        frame::fill_header(&mut buf[..frame::HEADER], FrameKind::FromWorker, len);
        let mut parts = [IoSlice::new(&buf[..frame::HEADER + n]), IoSlice::new(staged)];
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

/// Lets the main thread know every frame already on the socket has been handled: the
/// reader takes bytes off the socket and handles them only while holding `lock`, and
/// releases it only with its buffer empty.
struct Intake {
    lock: Mutex<()>,
    moved: Condvar,
    closed: AtomicBool,
}

pub(crate) fn serve_worker(sock: UnixStream, max: usize) -> ! {
    let Ok(read_half) = sock.try_clone() else { fatal("cannot clone the pool socket") };
    let Ok(probe) = sock.try_clone() else { fatal("cannot clone the pool socket") };
    let mut reader = BufReader::with_capacity(64 << 10, read_half);
    let mut out = Out { w: BufWriter::with_capacity(4 << 10, sock) };
    let mut ledger = open_ledger();
    let init = match read(&mut reader, max) {
        Some(ToWorker::Hello { protocol: PROTOCOL, build, init }) if build == *crate::process::build_id() => {
            init
        }
        Some(ToWorker::Hello { protocol, build, .. }) => {
            let why = format!(
                "the pool is build `{build}`, pool protocol {protocol}, but this worker is `{}`, protocol {PROTOCOL}",
                crate::process::build_id()
            );
            out.send(&FromWorker::Ready { pid: std::process::id(), init: Some(Reply::Refused(why)) });
            finish_process();
        }
        _ => finish_process(), // the pool went away, or spoke out of turn
    };
    let init_err = init.map(|(name, args)| task::run_by_name(&name, &args, CancelToken::never()));
    let init_err = init_err.filter(|r| !matches!(r, Reply::Ok(_)));
    let failed = init_err.is_some();
    out.send(&FromWorker::Ready { pid: std::process::id(), init: init_err });
    if failed {
        finish_process();
    }

    let running = Arc::new(Mutex::new(Running::default()));
    let intake =
        Arc::new(Intake { lock: Mutex::new(()), moved: Condvar::new(), closed: AtomicBool::new(false) });
    let (jobs_tx, jobs) = crossbeam_channel::unbounded::<Job>();
    let (r, i) = (running.clone(), intake.clone());
    let reader_thread = std::thread::Builder::new().name("escala-worker-reader".into()).spawn(move || {
        'read: loop {
            // Wait for bytes without taking them, then take and handle them under the lock.
            if !wait_readable(reader.get_ref()) {
                break;
            }
            let held = i.lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let Some(msg) = read(&mut reader, max) else { break 'read };
                match msg {
                    ToWorker::Job { id, task, args } => {
                        if jobs_tx.send(Job::One { id, task, args }).is_err() {
                            break 'read;
                        }
                    }
                    ToWorker::Batch { id, task, first, args } => {
                        if jobs_tx.send(Job::Batch { id, task, first, args }).is_err() {
                            break 'read;
                        }
                    }
                    ToWorker::CancelRange { id, from, to } => {
                        let mut run = r.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(token) =
                            run.token.as_ref().filter(|_| run.id == id && (from..to).contains(&run.elem))
                        {
                            token.cancel();
                        }
                        run.ranges.push((id, from, to));
                    }
                    ToWorker::Cancel { id } => {
                        let mut run = r.lock().unwrap_or_else(|e| e.into_inner());
                        match &run.token {
                            Some(token) if run.id == id && run.elem == u32::MAX => token.cancel(),
                            _ => {
                                run.dropped.insert(id);
                            }
                        }
                    }
                    ToWorker::Hello { .. } => break 'read,
                }
                if reader.buffer().is_empty() {
                    break;
                }
            }
            drop(held);
            i.moved.notify_all();
        }
        i.closed.store(true, Ordering::Release);
        i.moved.notify_all();
    });
    if reader_thread.is_err() {
        fatal("cannot start the worker's reader thread");
    }
    while let Ok(job) = jobs.recv() {
        let (id, name, args) = match job {
            Job::One { id, task, args } => (id, task, args),
            Job::Batch { id, task, first, args } => {
                run_batch(&mut out, &mut ledger, &running, id, &task, first, &args, max);
                continue;
            }
        };
        catch_up(&intake, &probe);
        let (_h, c) = pair::<()>(TaskName::Static(""), UnitKind::PoolTask);
        let token = CancelToken::of(&c);
        {
            let mut run = running.lock().unwrap_or_else(|e| e.into_inner());
            if run.dropped.remove(&id) {
                drop(run);
                out.send(&FromWorker::Done { id, reply: Reply::Cancelled });
                continue;
            }
            run.id = id;
            run.elem = u32::MAX;
            run.token = Some(token.clone());
        }
        let reply = task::run_by_name(&name, &args, token);
        running.lock().unwrap_or_else(|e| e.into_inner()).token = None;
        out.send(&FromWorker::Done { id, reply: cap_reply(reply, max as u64) });
    }
    finish_process();
}

/// The ledger the parent mapped for this worker at fd 3.
fn open_ledger() -> Ledger {
    use std::os::fd::FromRawFd;
    let fd = ledger::WORKER_FD;
    // SAFETY: F_GETFD only reads the fd's flags; it touches no memory of ours.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        fatal("a pool worker needs its ledger at fd 3");
    }
    // SAFETY: fd 3 is open (checked just above) and was placed there by the parent for this
    // worker alone; nothing else in this process took ownership of it.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    if !nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_size > 0) {
        fatal("fd 3 of a pool worker is not its ledger");
    }
    match Ledger::map(&fd) {
        Ok(l) => l,
        Err(e) => fatal(&format!("cannot map the pool worker's ledger: {e}")),
    }
}

/// Runs the elements of batch `id` in order, staging each reply in the ledger before the
/// next starts, and sends the staged replies in `Replies` frames.
#[allow(clippy::too_many_arguments)]
fn run_batch(
    out: &mut Out,
    ledger: &mut Ledger,
    running: &Mutex<Running>,
    id: u64,
    name: &str,
    first: u32,
    args: &[u8],
    max: usize,
) {
    let reg = task::lookup(name);
    let mut token = new_token();
    let mut now = ledger::mono_ns();
    ledger.begin(id, first, now);
    let (mut sent, mut staged, mut off, mut flushed) = (first, 0u32, 0usize, now);
    for (k, arg) in (first..).zip(split_args(args)) {
        let dropped = {
            let mut run = running.lock().unwrap_or_else(|e| e.into_inner());
            if token.is_cancelled() {
                token = new_token();
            }
            run.id = id;
            run.elem = k;
            run.token = Some(token.clone());
            run.ranges.iter().any(|&(b, from, to)| b == id && (from..to).contains(&k))
        };
        let reply = match (dropped, reg) {
            (true, _) => Reply::Cancelled,
            (false, Some(reg)) => cap_reply((reg.invoke)(arg, token.clone()), max as u64),
            (false, None) => task::run_by_name(name, arg, token.clone()),
        };
        loop {
            match postcard::to_slice(&reply, ledger.area(off)) {
                Ok(bytes) => {
                    off += bytes.len();
                    staged += 1;
                    now = ledger::mono_ns();
                    ledger.commit(now);
                    break;
                }
                Err(_) if staged > 0 => {
                    out.send_replies(id, sent, staged, ledger.staged(off));
                    (sent, staged, off) = (sent + staged, 0, 0);
                    ledger.sent(sent);
                }
                Err(_) => {
                    // Bigger than the whole ledger: it goes out alone, before the next starts.
                    let bytes = task::encode(&reply).unwrap_or_default();
                    out.send(&FromWorker::Replies { id, first: k, count: 1, replies: bytes });
                    sent = k + 1;
                    now = ledger::mono_ns();
                    ledger.sent(sent);
                    break;
                }
            }
        }
        if staged > 0 && now.saturating_sub(flushed) > FLUSH_NS {
            out.send_replies(id, sent, staged, ledger.staged(off));
            (sent, staged, off, flushed) = (sent + staged, 0, 0, now);
            ledger.sent(sent);
        }
    }
    if staged > 0 {
        out.send_replies(id, sent, staged, ledger.staged(off));
        ledger.sent(sent + staged);
    }
    let mut run = running.lock().unwrap_or_else(|e| e.into_inner());
    run.token = None;
    run.elem = u32::MAX;
    run.ranges.retain(|r| r.0 != id);
}

/// Waits until the reader has handled every byte already on the socket, so frames the
/// parent sent before this moment (a `Cancel` above all) are known before a job starts.
fn catch_up(intake: &Intake, sock: &UnixStream) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut held = intake.lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        let pending = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0);
        if !pending || intake.closed.load(Ordering::Acquire) {
            return;
        }
        // The reader is about to take them; the timeout only bounds a missed wake-up.
        held = intake.moved.wait_timeout(held, Duration::from_millis(5)).unwrap_or_else(|e| e.into_inner()).0;
    }
}

/// Blocks until the socket has bytes (or is closed), without taking any. False on close.
fn wait_readable(sock: &UnixStream) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    loop {
        match recv(sock.as_raw_fd(), &mut byte, MsgFlags::MSG_PEEK) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

fn read(r: &mut BufReader<UnixStream>, max: usize) -> Option<ToWorker> {
    match frame::read_frame(r, FrameKind::ToWorker, max + ENVELOPE) {
        Ok(Some(bytes)) => task::decode(&bytes).ok(),
        _ => None,
    }
}
