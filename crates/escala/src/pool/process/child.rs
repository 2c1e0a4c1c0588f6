//! The worker side of a process pool: what `escala::init()` does in a pool worker.
//!
//! A reader thread takes frames off the socket (jobs into a local queue; `Cancel` to the
//! running job's token or the set of dropped jobs). The main thread runs jobs in arrival
//! order. Jobs arrive many at a time (the parent writes as many as the worker may prefetch
//! in one go). Each reply is staged in the worker's ledger (`stage.rs`) before the next job
//! starts — from then on a crash cannot lose it — and what is staged goes out in one write
//! when no job is at hand, at the end of a batch, or from the flusher thread while a job runs
//! long.
//!
//! The parent counts every `Cancel` it sends in the ledger before writing it; the reader
//! counts those it handled. Before a job (or a batch's element) starts, the main thread
//! waits for the reader to catch up if the counts differ, so a `Cancel` the parent sent
//! before the job started always wins, at the price of an atomic load per job.

use std::collections::HashSet;
use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::ledger::{self, Ledger};
use super::stage::{Out, Stage};
use super::wire::{FromWorker, PROTOCOL, ToWorker, ToWorkerIn, split_args};
use crate::handle::{CancelToken, TaskName, UnitKind, pair};
use crate::process::child::{cap_reply, fatal, finish_process};
use crate::process::frame::{self, FrameKind};
use crate::task::{self, Reply};

/// How long a batch's staged replies wait for the end of the batch. The flusher does not
/// watch batches (it would cost a wake-up per batch): a long element delays the replies of
/// the elements before it in its batch.
const BATCH_WAIT_NS: u64 = 5_000_000;

/// Cap for the small frames around jobs (ids, names) on top of the argument cap.
const ENVELOPE: usize = 64 << 10;

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
    One { id: u64, task: Arc<str>, args: Vec<u8> },
    Batch { id: u64, task: Arc<str>, first: u32, args: Vec<u8> },
}

/// The task name of the last job, shared by the next ones of the same task.
fn intern(last: &mut Option<Arc<str>>, name: &str) -> Arc<str> {
    match last {
        Some(a) if **a == *name => a.clone(),
        _ => last.insert(Arc::from(name)).clone(),
    }
}

/// A fresh token for running tasks with.
fn new_token() -> CancelToken {
    let (_h, c) = pair::<()>(TaskName::Static(""), UnitKind::PoolTask);
    CancelToken::of(&c)
}

/// Lets the main thread know which `Cancel` frames the reader has handled: it handles frames
/// only while holding `lock`, counts cancels in `handled`, and signals `moved` after.
struct Intake {
    lock: Mutex<()>,
    moved: Condvar,
    handled: AtomicU64,
    /// The main thread waits on `moved` (the reader signals only then).
    waiting: AtomicBool,
    closed: AtomicBool,
}

pub(crate) fn serve_worker(sock: UnixStream, max: usize) -> ! {
    let Ok(read_half) = sock.try_clone() else { fatal("cannot clone the pool socket") };
    let mut reader = BufReader::with_capacity(64 << 10, read_half);
    let mut out = Out { w: BufWriter::with_capacity(4 << 10, sock) };
    let ledger = open_ledger();
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

    let stage = Arc::new(Stage::new(out, ledger));
    let flusher = stage.clone();
    if std::thread::Builder::new()
        .name("escala-worker-flusher".into())
        .spawn(move || flusher.flusher())
        .is_err()
    {
        fatal("cannot start the worker's flusher thread");
    }
    let running = Arc::new(Mutex::new(Running::default()));
    let intake = Arc::new(Intake {
        lock: Mutex::new(()),
        moved: Condvar::new(),
        handled: AtomicU64::new(0),
        waiting: AtomicBool::new(false),
        closed: AtomicBool::new(false),
    });
    let (jobs_tx, jobs) = crossbeam_channel::unbounded::<Job>();
    let (r, i) = (running.clone(), intake.clone());
    let reader_thread = std::thread::Builder::new().name("escala-worker-reader".into()).spawn(move || {
        let mut buf = Vec::with_capacity(64 << 10);
        let mut last = None;
        'read: loop {
            // Wait for bytes without taking them, then take and handle them under the lock.
            if !wait_readable(reader.get_ref()) {
                break;
            }
            let held = i.lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let Ok(true) =
                    frame::read_frame_into(&mut reader, FrameKind::ToWorker, max + ENVELOPE, &mut buf)
                else {
                    break 'read;
                };
                let Ok(msg) = postcard::from_bytes::<ToWorkerIn<'_>>(&buf) else { break 'read };
                match msg {
                    ToWorkerIn::Job { id, task, args } => {
                        let job = Job::One { id, task: intern(&mut last, task), args: args.to_vec() };
                        if jobs_tx.send(job).is_err() {
                            break 'read;
                        }
                    }
                    ToWorkerIn::Batch { id, task, first, args } => {
                        let job =
                            Job::Batch { id, task: intern(&mut last, task), first, args: args.to_vec() };
                        if jobs_tx.send(job).is_err() {
                            break 'read;
                        }
                    }
                    ToWorkerIn::CancelRange { id, from, to } => {
                        let mut run = r.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(token) =
                            run.token.as_ref().filter(|_| run.id == id && (from..to).contains(&run.elem))
                        {
                            token.cancel();
                        }
                        run.ranges.push((id, from, to));
                        i.handled.fetch_add(1, Ordering::SeqCst);
                    }
                    ToWorkerIn::Cancel { id } => {
                        let mut run = r.lock().unwrap_or_else(|e| e.into_inner());
                        match &run.token {
                            Some(token) if run.id == id && run.elem == u32::MAX => token.cancel(),
                            _ => {
                                run.dropped.insert(id);
                            }
                        }
                        i.handled.fetch_add(1, Ordering::SeqCst);
                    }
                    ToWorkerIn::Hello { .. } => break 'read,
                }
                if reader.buffer().is_empty() {
                    break;
                }
            }
            drop(held);
            if i.waiting.load(Ordering::SeqCst) {
                i.moved.notify_all();
            }
        }
        i.closed.store(true, Ordering::Release);
        i.moved.notify_all();
    });
    if reader_thread.is_err() {
        fatal("cannot start the worker's reader thread");
    }
    let mut token = new_token();
    // The last task's registration: found once, not by name for every job.
    let mut known: Option<(Arc<str>, Option<&'static task::Registration>)> = None;
    let mut last_end = None;
    while let Ok(job) = jobs.recv() {
        let (id, name, args) = match job {
            Job::One { id, task, args } => (id, task, args),
            Job::Batch { id, task, first, args } => {
                run_batch(&stage, &intake, &running, id, &task, first, &args, max);
                last_end = None;
                continue;
            }
        };
        let cancels = stage.lock().cancels();
        catch_up(&intake, cancels);
        let dropped = {
            let mut run = running.lock().unwrap_or_else(|e| e.into_inner());
            if token.is_cancelled() {
                token = new_token();
            }
            run.id = id;
            run.elem = u32::MAX;
            run.token = Some(token.clone());
            run.dropped.remove(&id)
        };
        let reg = match &known {
            Some((n, reg)) if Arc::ptr_eq(n, &name) => *reg,
            _ => known.insert((name.clone(), task::lookup(&name))).1,
        };
        // Back to back, a job starts when the one before it ended: one clock read per job.
        let started = last_end.take().unwrap_or_else(std::time::Instant::now);
        let reply = match (dropped, reg) {
            (true, _) => Reply::Cancelled,
            (false, Some(reg)) => (reg.invoke)(&args, token.clone()),
            (false, None) => task::run_by_name(&name, &args, token.clone()),
        };
        let ended = std::time::Instant::now();
        let ns = ended.duration_since(started).as_nanos().min(u128::from(u64::MAX)) as u64;
        running.lock().unwrap_or_else(|e| e.into_inner()).token = None;
        let mut st = stage.lock();
        st.stage_done(id, cap_reply(reply, max as u64), ns, ended);
        if jobs.is_empty() || st.due(ended) {
            st.flush(); // nothing more at hand, or the oldest waited long enough: send now
        } else {
            stage.staged(&st);
            last_end = Some(ended);
        }
    }
    stage.close();
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

/// Runs the elements of batch `id` in order, staging each reply before the next starts.
#[allow(clippy::too_many_arguments)]
fn run_batch(
    stage: &Stage,
    intake: &Intake,
    running: &Mutex<Running>,
    id: u64,
    name: &str,
    first: u32,
    args: &[u8],
    max: usize,
) {
    let reg = task::lookup(name);
    let mut token = new_token();
    let mut cancels = {
        let mut st = stage.lock();
        st.begin(Some((id, first)));
        st.cancels()
    };
    {
        let mut run = running.lock().unwrap_or_else(|e| e.into_inner());
        run.id = id;
        run.elem = first;
        run.token = Some(token.clone());
    }
    for (k, arg) in (first..).zip(split_args(args)) {
        catch_up(intake, cancels);
        let dropped = {
            let mut run = running.lock().unwrap_or_else(|e| e.into_inner());
            if token.is_cancelled() {
                // The previous element was stopped: a fresh token for the next ones.
                token = new_token();
                run.token = Some(token.clone());
            }
            run.elem = k;
            !run.ranges.is_empty()
                && run.ranges.iter().any(|&(b, from, to)| b == id && (from..to).contains(&k))
        };
        let reply = match (dropped, reg) {
            (true, _) => Reply::Cancelled,
            (false, Some(reg)) => cap_reply((reg.invoke)(arg, token.clone()), max as u64),
            (false, None) => task::run_by_name(name, arg, token.clone()),
        };
        let mut st = stage.lock();
        st.stage_reply(k, &reply, BATCH_WAIT_NS);
        cancels = st.cancels();
    }
    stage.lock().flush();
    let mut run = running.lock().unwrap_or_else(|e| e.into_inner());
    run.token = None;
    run.elem = u32::MAX;
    run.ranges.retain(|r| r.0 != id);
}

/// Waits until the reader has handled the first `cancels` `Cancel` frames the parent sent
/// (at once when it has: the usual case).
fn catch_up(intake: &Intake, cancels: u64) {
    if intake.handled.load(Ordering::SeqCst) >= cancels {
        return;
    }
    let mut held = intake.lock.lock().unwrap_or_else(|e| e.into_inner());
    intake.waiting.store(true, Ordering::SeqCst);
    while intake.handled.load(Ordering::SeqCst) < cancels && !intake.closed.load(Ordering::Acquire) {
        // The reader is handling them; the timeout only bounds a missed wake-up.
        held = intake.moved.wait_timeout(held, Duration::from_millis(5)).unwrap_or_else(|e| e.into_inner()).0;
    }
    intake.waiting.store(false, Ordering::SeqCst);
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
