//! The worker side of a process pool: what `escala::init()` does in a pool worker.
//!
//! A reader thread takes frames off the socket (jobs into a local queue; `Cancel` to the
//! running job's token or the set of dropped jobs). The main thread runs jobs in arrival
//! order and answers each with one `Done`, written before the next job starts. Jobs arrive
//! in batches (the parent writes as many as the worker may prefetch in one go). Before
//! starting a job the main thread waits until the reader has handled every byte already on
//! the socket, so a `Cancel` the parent sent before the job started always wins.

use std::collections::HashSet;
use std::io::{BufReader, BufWriter};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::wire::{FromWorker, ToWorker};
use crate::handle::{CancelToken, TaskName, UnitKind, pair};
use crate::process::child::{cap_reply, fatal, finish_process};
use crate::process::frame::{self, FrameKind};
use crate::task::{self, Reply};

/// Cap for the small frames around jobs (ids, names) on top of the argument cap.
const ENVELOPE: usize = 64 << 10;

/// The job the main thread is running, so `Cancel` can reach its token.
#[derive(Default)]
struct Running {
    id: u64,
    token: Option<CancelToken>,
    /// Prefetched jobs cancelled before they started.
    dropped: HashSet<u64>,
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
    let init = match read(&mut reader, max) {
        Some(ToWorker::Hello { build, init }) if build == *crate::process::build_id() => init,
        Some(ToWorker::Hello { build, .. }) => {
            let why =
                format!("the pool is build `{build}` but this worker is `{}`", crate::process::build_id());
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
    let (jobs_tx, jobs) = crossbeam_channel::unbounded::<(u64, String, Vec<u8>)>();
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
                        if jobs_tx.send((id, task, args)).is_err() {
                            break 'read;
                        }
                    }
                    ToWorker::Cancel { id } => {
                        let mut run = r.lock().unwrap_or_else(|e| e.into_inner());
                        match &run.token {
                            Some(token) if run.id == id => token.cancel(),
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
    while let Ok((id, name, args)) = jobs.recv() {
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
            run.token = Some(token.clone());
        }
        let reply = task::run_by_name(&name, &args, token);
        running.lock().unwrap_or_else(|e| e.into_inner()).token = None;
        out.send(&FromWorker::Done { id, reply: cap_reply(reply, max as u64) });
    }
    finish_process();
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
