//! The worker side of a process pool: what `escala::init()` does in a pool worker.
//!
//! The main thread reads jobs off the job socket (its stdin) itself and runs them in
//! arrival order; jobs arrive many at a time (the parent writes as many as the worker may
//! prefetch in one go), so it takes them from its read buffer with no thread in between.
//! Each reply is staged in the worker's ledger (`stage.rs`) before the next job starts —
//! from then on a crash cannot lose it — and what is staged goes out in one write when no
//! job is at hand, at the end of a batch, or from the flusher thread while a job runs long.
//!
//! `Cancel` and `CancelRange` come on a separate control socket (fd 4), read by the control
//! thread, which sets the running job's token or marks prefetched jobs dropped: a cancel
//! reaches a running task at once, and the stream of jobs wakes no second thread. The
//! parent counts every cancel it sends in the ledger before writing it; the control thread
//! counts those it handled. Before a job (or a batch's element) starts, the main thread
//! waits for the control thread to catch up if the counts differ, so a cancel the parent
//! sent before the job started always wins, at the price of an atomic load per job.

use std::collections::{HashSet, VecDeque};
use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::ledger::{self, Ledger};
use super::stage::{Out, Stage};
use super::wire::{FromWorker, PROTOCOL, ToWorker, ToWorkerIn, split_args};
use crate::handle::{CancelToken, TaskName, UnitKind, pair};
use crate::process::child::{cap_reply, fatal, finish_process};
use crate::process::frame::{self, FrameKind};
use crate::task::{self, Reply};
use crate::unwind::Current;

/// How long a batch's staged replies wait for the end of the batch. The flusher does not
/// watch batches (it would cost a wake-up per batch): a long element delays the replies of
/// the elements before it in its batch.
const BATCH_WAIT_NS: u64 = 5_000_000;

/// Cap for the small frames around jobs (ids, names) on top of the argument cap.
const ENVELOPE: usize = 64 << 10;

/// Where a worker finds its control socket (`Cancel` and `CancelRange` frames), placed by
/// the parent; the ledger is at fd 3 and jobs come on stdin.
pub(super) const CONTROL_FD: i32 = 4;

/// The job the main thread is running, so `Cancel` and `CancelRange` can reach its token.
#[derive(Default)]
struct Running {
    job: Mutex<Job>,
    /// The batch element running (`u32::MAX` for a single job). The main thread writes it
    /// without the lock as each element starts, then reads `ranged`; the control thread
    /// records a range and sets `ranged` under the lock, then reads `elem` (all `SeqCst`).
    /// So either the control thread sees the element running and sets its token, or the
    /// main thread sees the range and drops the element — with one store per element and
    /// no lock (W2's `map_tasks`: the locks were a fifth of a worker's time).
    elem: AtomicU32,
    /// `job.ranges` may hold ranges: the main thread looks at them only then.
    ranged: AtomicBool,
}

/// The running job's id and token, and the cancels that came before their jobs.
#[derive(Default)]
struct Job {
    id: u64,
    token: Option<CancelToken>,
    /// Prefetched jobs cancelled before they started.
    dropped: HashSet<u64>,
    /// Batch elements cancelled: (batch, from, to).
    ranges: Vec<(u64, u32, u32)>,
    /// The last batches this worker finished: a `CancelRange` for one of them came too late
    /// and is dropped, not kept (it would make every later element look at the ranges).
    /// A finished batch never comes back to this worker (ids are unique; a batch is only
    /// sent again when its worker died).
    finished: VecDeque<u64>,
}

/// How many finished batch ids a worker remembers for late `CancelRange`s.
const FINISHED_KEPT: usize = 256;

impl Running {
    fn lock(&self) -> MutexGuard<'_, Job> {
        self.job.lock().unwrap_or_else(|e| e.into_inner())
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
    let init_err = init.map(|(name, args)| task::run_by_name(&name, &args, &CancelToken::never()));
    let init_err = init_err.filter(|r| !matches!(r, Reply::Ok(_)));
    let failed = init_err.is_some();
    out.send(&FromWorker::Ready { pid: std::process::id(), init: init_err });
    if failed {
        finish_process();
    }

    let stage = match Stage::new(out, ledger) {
        Ok(s) => Arc::new(s),
        Err(e) => fatal(&format!("cannot create the worker's flush timer: {e}")),
    };
    let flusher = stage.clone();
    if std::thread::Builder::new()
        .name("escala-worker-flusher".into())
        .spawn(move || flusher.flusher())
        .is_err()
    {
        fatal("cannot start the worker's flusher thread");
    }
    let running = Arc::new(Running::default());
    let intake = Arc::new(Intake {
        lock: Mutex::new(()),
        moved: Condvar::new(),
        handled: AtomicU64::new(0),
        waiting: AtomicBool::new(false),
        closed: AtomicBool::new(false),
    });
    let control = BufReader::with_capacity(4 << 10, open_control());
    let (r, i) = (running.clone(), intake.clone());
    let control_thread = std::thread::Builder::new()
        .name("escala-worker-control".into())
        .spawn(move || read_control(control, &r, &i, max));
    if control_thread.is_err() {
        fatal("cannot start the worker's control thread");
    }
    let mut token = new_token();
    // The last task's registration: found once, not by name for every job.
    let mut known: Option<(Box<str>, Option<&'static task::Registration>)> = None;
    let mut last_end = None;
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        if reader.buffer().is_empty() && !readable_now(reader.get_ref()) {
            // Nothing more at hand: send what is staged before waiting for jobs.
            stage.lock().flush();
            last_end = None;
        }
        let Ok(true) = frame::read_frame_into(&mut reader, FrameKind::ToWorker, max + ENVELOPE, &mut buf)
        else {
            break;
        };
        let (id, name, args) = match postcard::from_bytes::<ToWorkerIn<'_>>(&buf) {
            Ok(ToWorkerIn::Job { id, task, args }) => (id, task, args),
            Ok(ToWorkerIn::Batch { id, task, first, args }) => {
                run_batch(&stage, &intake, &running, id, task, first, args, max);
                last_end = None;
                continue;
            }
            // Out of protocol (cancels come on the control socket): stop here.
            _ => break,
        };
        let cancels = stage.lock().cancels();
        catch_up(&intake, cancels);
        let dropped = {
            let mut run = running.lock();
            if token.is_cancelled() {
                token = new_token();
            }
            run.id = id;
            running.elem.store(u32::MAX, Ordering::SeqCst);
            run.token = Some(token.clone());
            run.dropped.remove(&id)
        };
        let reg = match &known {
            Some((n, reg)) if **n == *name => *reg,
            _ => known.insert((name.into(), task::lookup(name))).1,
        };
        // Back to back, a job starts when the one before it ended: one clock read per job.
        let started = last_end.take().unwrap_or_else(std::time::Instant::now);
        let reply = match (dropped, reg) {
            (true, _) => Reply::Cancelled,
            (false, Some(reg)) => (reg.invoke)(args, &token),
            (false, None) => task::run_by_name(name, args, &token),
        };
        let ended = std::time::Instant::now();
        let ns = ended.duration_since(started).as_nanos().min(u128::from(u64::MAX)) as u64;
        running.lock().token = None;
        let mut st = stage.lock();
        st.stage_done(id, cap_reply(reply, max as u64), ns, ended);
        if st.due(ended) {
            st.flush(); // the oldest waited long enough: send now
        } else {
            stage.staged(&st);
            last_end = Some(ended);
        }
    }
    stage.close();
    finish_process();
}

/// The control thread: takes `Cancel` and `CancelRange` frames off the control socket, to
/// the running job's token or the sets of dropped jobs and elements, and counts them.
fn read_control(mut control: BufReader<UnixStream>, r: &Running, i: &Intake, max: usize) {
    let mut buf = Vec::with_capacity(256);
    'read: loop {
        // Wait for bytes without taking them, then take and handle them under the lock.
        if !wait_readable(control.get_ref()) {
            break;
        }
        let held = i.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let Ok(true) =
                frame::read_frame_into(&mut control, FrameKind::ToWorker, max + ENVELOPE, &mut buf)
            else {
                break 'read;
            };
            match postcard::from_bytes::<ToWorkerIn<'_>>(&buf) {
                Ok(ToWorkerIn::CancelRange { id, from, to }) => {
                    let mut run = r.lock();
                    // A range for a batch already over came too late: nothing to keep.
                    if !run.finished.contains(&id) {
                        run.ranges.push((id, from, to));
                        r.ranged.store(true, Ordering::SeqCst);
                        let elem = r.elem.load(Ordering::SeqCst);
                        let running =
                            run.token.as_ref().filter(|_| run.id == id && (from..to).contains(&elem));
                        if let Some(token) = running {
                            token.cancel();
                        }
                    }
                }
                Ok(ToWorkerIn::Cancel { id }) => {
                    let mut run = r.lock();
                    match &run.token {
                        Some(token) if run.id == id && r.elem.load(Ordering::SeqCst) == u32::MAX => {
                            token.cancel()
                        }
                        _ => {
                            run.dropped.insert(id);
                        }
                    }
                }
                _ => break 'read, // jobs come on the job socket
            }
            i.handled.fetch_add(1, Ordering::SeqCst);
            if control.buffer().is_empty() {
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
}

/// An fd the parent placed for this worker (`what` names it in the error), now owned here.
fn inherited_fd(fd: i32, what: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only reads the fd's flags; it touches no memory of ours.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        fatal(&format!("a pool worker needs its {what} at fd {fd}"));
    }
    // SAFETY: `fd` is open (checked just above) and was placed there by the parent for this
    // worker alone; nothing else in this process took ownership of it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// The control socket the parent placed at [`CONTROL_FD`].
fn open_control() -> UnixStream {
    let fd = inherited_fd(CONTROL_FD, "control socket");
    let is_socket = nix::sys::stat::fstat(&fd).is_ok_and(|st| {
        nix::sys::stat::SFlag::from_bits_truncate(st.st_mode).contains(nix::sys::stat::SFlag::S_IFSOCK)
    });
    if !is_socket {
        fatal("fd 4 of a pool worker is not its control socket");
    }
    // Placed by `dup2`, it came without close-on-exec: the commands a task starts must not
    // inherit it.
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    if fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_err() {
        fatal("cannot set close-on-exec on the control socket");
    }
    UnixStream::from(fd)
}

/// The ledger the parent mapped for this worker at fd 3.
fn open_ledger() -> Ledger {
    let fd = inherited_fd(ledger::WORKER_FD, "ledger");
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
    running: &Running,
    id: u64,
    name: &str,
    first: u32,
    args: &[u8],
    max: usize,
) {
    let reg = task::lookup(name);
    let mut token = new_token();
    // One current token for the batch's elements, not one set and cleared per element.
    let current = Current::new(token.clone());
    // The batch holds the stage to its end: the flusher sends no batch's replies, so it has
    // nothing to take it for meanwhile, and an element costs no lock.
    let mut st = stage.lock();
    st.begin(Some((id, first)));
    {
        let mut run = running.lock();
        run.id = id;
        run.token = Some(token.clone());
    }
    for (k, arg) in (first..).zip(split_args(args)) {
        catch_up(intake, st.cancels());
        running.elem.store(k, Ordering::SeqCst);
        let dropped = (running.ranged.load(Ordering::SeqCst) || token.is_cancelled()) && {
            let mut run = running.lock();
            if token.is_cancelled() {
                // The previous element was stopped: a fresh token for the next ones.
                token = new_token();
                run.token = Some(token.clone());
                current.replace(token.clone());
            }
            run.ranges.iter().any(|&(b, from, to)| b == id && (from..to).contains(&k))
        };
        let reply = match (dropped, reg) {
            (true, _) => Reply::Cancelled,
            (false, Some(reg)) => cap_reply((reg.invoke)(arg, &token), max as u64),
            (false, None) => task::run_by_name(name, arg, &token),
        };
        st.stage_reply(k, &reply, BATCH_WAIT_NS);
        task::recycle(reply);
    }
    st.flush();
    drop((st, current));
    let mut run = running.lock();
    run.token = None;
    running.elem.store(u32::MAX, Ordering::SeqCst);
    run.ranges.retain(|r| r.0 != id);
    running.ranged.store(!run.ranges.is_empty(), Ordering::SeqCst);
    if run.finished.len() == FINISHED_KEPT {
        run.finished.pop_front();
    }
    run.finished.push_back(id);
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

/// Peeks at one byte of the socket (`MSG_PEEK` and `flags`), retrying on `EINTR`: the
/// number of bytes seen (0 when the peer closed it).
fn peek(sock: &UnixStream, flags: nix::sys::socket::MsgFlags) -> nix::Result<usize> {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    loop {
        match recv(sock.as_raw_fd(), &mut byte, MsgFlags::MSG_PEEK | flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Whether the socket has bytes (or is closed) now, without waiting or taking any.
fn readable_now(sock: &UnixStream) -> bool {
    !matches!(peek(sock, nix::sys::socket::MsgFlags::MSG_DONTWAIT), Err(nix::errno::Errno::EAGAIN))
}

/// Blocks until the socket has bytes (or is closed), without taking any. False on close.
fn wait_readable(sock: &UnixStream) -> bool {
    matches!(peek(sock, nix::sys::socket::MsgFlags::empty()), Ok(n) if n > 0)
}

fn read(r: &mut BufReader<UnixStream>, max: usize) -> Option<ToWorker> {
    match frame::read_frame(r, FrameKind::ToWorker, max + ENVELOPE) {
        Ok(Some(bytes)) => task::decode(&bytes).ok(),
        _ => None,
    }
}
