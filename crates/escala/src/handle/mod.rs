//! [`Handle`]: the one result type every unit returns, and its producer side.
//!
//! A handle is a one-shot slot shared between the unit that runs the work (through a
//! `Completer`) and the caller. The first outcome written wins: a value, an error, a
//! cancellation or a timeout; later writes are ignored, so a task ends in exactly one outcome.

mod wait;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

pub use wait::{AsCompleted, WaitFor, as_completed, wait};

use crate::error::{ErrorKind, Outcome, TaskError};
use crate::events::{self, EventKind};

/// A process-wide unique task id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TaskId(pub u64);

impl TaskId {
    pub(crate) fn next() -> TaskId {
        // Padded: its neighbours are read by every worker for every task.
        static NEXT: crossbeam_utils::CachePadded<AtomicU64> =
            crossbeam_utils::CachePadded::new(AtomicU64::new(1));
        TaskId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which kind of unit runs a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum UnitKind {
    /// A closure on its own OS thread, joined at exit.
    Thread,
    /// A closure on its own OS thread, asked to stop at exit.
    DaemonThread,
    /// A registered task in a re-executed child process, joined at exit.
    Process,
    /// A registered task in a child process, stopped (TERM, grace, KILL) at exit.
    DaemonProcess,
    /// An external command in a child process.
    Command,
    /// A task on a thread pool.
    PoolTask,
    /// A registered task sent to a remote worker (for example through Redis).
    Remote,
}

impl UnitKind {
    /// A short stable label (`"thread"`, `"daemon-thread"`, `"process"`, …).
    pub fn label(self) -> &'static str {
        match self {
            UnitKind::Thread => "thread",
            UnitKind::DaemonThread => "daemon-thread",
            UnitKind::Process => "process",
            UnitKind::DaemonProcess => "daemon-process",
            UnitKind::Command => "command",
            UnitKind::PoolTask => "pool-task",
            UnitKind::Remote => "remote",
        }
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A task name that is cheap to clone: static, or shared by every task of a pool.
#[derive(Clone, Debug)]
pub(crate) enum TaskName {
    Static(&'static str),
    Shared(Arc<str>),
}

impl std::ops::Deref for TaskName {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            TaskName::Static(s) => s,
            TaskName::Shared(s) => s,
        }
    }
}

impl From<String> for TaskName {
    fn from(s: String) -> TaskName {
        TaskName::Shared(s.into())
    }
}

/// Run once with the outcome — or with `None` when `.await` already took it.
type Callback<T> = Box<dyn FnOnce(Option<&Outcome<T>>) + Send>;

/// Told when a pool task is cancelled: `discarded` when it had not started (its queue frees
/// the slot at once), otherwise so the pool can stop it where it runs.
pub(crate) trait QueueHook: Send + Sync {
    fn cancelled(&self, core: &Core, discarded: bool);
}

enum Slot<T> {
    Pending,
    Done(Outcome<T>),
    Taken,
}

struct State<T> {
    slot: Slot<T>,
    /// Boxed, and only once someone listens: most handles are joined, never awaited nor
    /// given callbacks, and this keeps each task's shared state small (W10).
    listeners: Option<Box<Listeners<T>>>,
    sleepers: u32,
}

/// Who wants to hear of the outcome besides a joining thread.
struct Listeners<T> {
    waker: Option<Waker>,
    callbacks: Vec<Callback<T>>,
}

impl<T> State<T> {
    fn listeners(&mut self) -> &mut Listeners<T> {
        self.listeners.get_or_insert_with(|| Box::new(Listeners { waker: None, callbacks: Vec::new() }))
    }
}

/// What a completion owes the task's waiters: a thread asleep in `join` or `wait`, a future
/// being awaited. Handed back by [`Shared::complete_quiet`], so that a thread settling many
/// tasks at once can wake their waiters after the last of them (a waiter woken at the first
/// would find the next not settled yet and sleep again).
#[must_use = "the waiters sleep until it is passed to `wake`"]
pub(crate) struct Wakeup {
    sleepers: bool,
    waker: Option<Waker>,
}

impl Wakeup {
    /// Nobody to wake: nobody waited when the outcome was written.
    pub(crate) fn is_empty(&self) -> bool {
        !self.sleepers && self.waker.is_none()
    }
}

/// The part of a task every holder can see without knowing its value type.
pub(crate) struct Core {
    pub(crate) id: TaskId,
    pub(crate) name: TaskName,
    pub(crate) kind: UnitKind,
    done: AtomicBool,
    cancel_requested: AtomicBool,
    /// Pool tasks: 0 queued, 1 running, 2 discarded before it ran.
    phase: AtomicU8,
    pid: AtomicU32,
    /// Set when a timeout wrote the outcome.
    timed_out: AtomicBool,
    /// Extra work a cancel must do for this unit (kill a child).
    on_cancel: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The queue holding this task, for pool tasks.
    queue: Option<Arc<dyn QueueHook>>,
}

impl Core {
    pub(crate) fn is_cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Acquire)
    }
    pub(crate) fn request_cancel(&self) {
        self.cancel_requested.store(true, Ordering::Release);
    }
    pub(crate) fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
    }
    /// Moves a queued task to running; false if it was discarded (cancelled) first.
    pub(crate) fn try_start(&self) -> bool {
        self.phase.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
    /// Puts a running task back to queued (for a retry).
    pub(crate) fn requeue(&self) {
        let _ = self.phase.compare_exchange(1, 0, Ordering::AcqRel, Ordering::Acquire);
    }
    /// Marks a queued task as discarded; true if it had not started.
    pub(crate) fn try_discard(&self) -> bool {
        self.phase.compare_exchange(0, 2, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
    pub(crate) fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }
}

pub(crate) struct Shared<T> {
    pub(crate) core: Core,
    state: Mutex<State<T>>,
    cond: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock can only come from a user callback; the state
        // itself is always consistent, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the outcome if none was written yet. Returns whether this call won.
    pub(crate) fn complete(&self, outcome: Outcome<T>) -> bool {
        match self.complete_quiet(outcome) {
            Some(w) => {
                self.wake(w);
                true
            }
            None => false,
        }
    }

    /// Like [`complete`](Self::complete), but the threads waiting for the outcome are not
    /// woken yet: the [`Wakeup`] returned (when this call won) owes them that, through
    /// [`wake`](Self::wake). Callbacks run now. A thread that looks meanwhile sees the outcome.
    pub(crate) fn complete_quiet(&self, outcome: Outcome<T>) -> Option<Wakeup> {
        let mut st = self.lock();
        if !matches!(st.slot, Slot::Pending) {
            return None;
        }
        if events::enabled() {
            let err = outcome.as_ref().err();
            if err.is_some_and(TaskError::is_cancelled) {
                events::emit(&self.core, EventKind::Cancelled);
            }
            events::emit_finished(&self.core, err);
        }
        st.slot = Slot::Done(outcome);
        self.core.done.store(true, Ordering::Release);
        let (waker, callbacks) = match st.listeners.take() {
            Some(l) => (l.waker, l.callbacks),
            None => (None, Vec::new()),
        };
        if let Slot::Done(out) = &st.slot {
            for cb in callbacks {
                self.run_callback(cb, Some(out));
            }
        }
        let sleepers = st.sleepers > 0;
        drop(st);
        Some(Wakeup { sleepers, waker })
    }

    /// Wakes the waiters a [`complete_quiet`](Self::complete_quiet) of this task left asleep.
    pub(crate) fn wake(&self, w: Wakeup) {
        if w.sleepers {
            self.cond.notify_all();
        }
        if let Some(w) = w.waker {
            w.wake();
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.core.done.load(Ordering::Acquire)
    }

    pub(crate) fn err_kind(&self, kind: ErrorKind) -> TaskError {
        TaskError::new(self.core.id, &*self.core.name, kind)
    }

    /// Resolves with an error of this kind, if still pending.
    pub(crate) fn fail(&self, kind: ErrorKind) -> bool {
        self.complete(Err(self.err_kind(kind)))
    }

    /// Resolves as cancelled if still pending: what is left when the last writer of the
    /// outcome goes away without writing it.
    pub(crate) fn abandon(&self) {
        if !self.is_done() {
            self.fail(ErrorKind::Cancelled);
        }
    }

    /// Adds a callback run once with the outcome (at once if already done).
    fn add_callback(&self, cb: Callback<T>) {
        let mut st = self.lock();
        match &st.slot {
            Slot::Pending => st.listeners().callbacks.push(cb),
            Slot::Done(out) => self.run_callback(cb, Some(out)),
            Slot::Taken => self.run_callback(cb, None),
        }
    }

    /// Runs a callback; a panic in it is reported, never allowed to strand the task's
    /// other waiters or kill the thread finishing the task.
    fn run_callback(&self, cb: Callback<T>, out: Option<&Outcome<T>>) {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(out)));
        if let Err(payload) = run {
            let why = crate::error::panic_kind(&*payload, None);
            eprintln!("escala: an on_done callback of task `{}` ({}) {why}", &*self.core.name, self.core.id);
        }
    }

    fn peek_is_err(&self) -> bool {
        matches!(self.lock().slot, Slot::Done(Err(_)))
    }

    /// Blocks until done or the deadline passes; returns whether done.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.is_done() {
            return true;
        }
        let mut st = self.lock();
        while matches!(st.slot, Slot::Pending) {
            st.sleepers += 1;
            st = match deadline {
                None => self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        st.sleepers -= 1;
                        return false;
                    }
                    self.cond.wait_timeout(st, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
            st.sleepers -= 1;
        }
        true
    }

    fn take(&self) -> Outcome<T> {
        let mut st = self.lock();
        match std::mem::replace(&mut st.slot, Slot::Taken) {
            Slot::Done(out) => out,
            // A handle is not Clone and join consumes it, so the slot is taken only once.
            Slot::Taken => panic!("the outcome of task {} was already taken by `.await`", self.core.id),
            Slot::Pending => unreachable!("outcome read before it was written"),
        }
    }
}

/// Creates a new pending task: the caller's [`Handle`] and the unit's [`Completer`].
pub(crate) fn pair<T>(name: TaskName, kind: UnitKind) -> (Handle<T>, Completer<T>) {
    pair_queued(name, kind, None)
}

/// Like [`pair`], for a task waiting in `queue`.
pub(crate) fn pair_queued<T>(
    name: TaskName,
    kind: UnitKind,
    queue: Option<Arc<dyn QueueHook>>,
) -> (Handle<T>, Completer<T>) {
    let shared = Arc::new(Shared {
        core: Core {
            id: TaskId::next(),
            name,
            kind,
            done: AtomicBool::new(false),
            cancel_requested: AtomicBool::new(false),
            phase: AtomicU8::new(0),
            pid: AtomicU32::new(0),
            timed_out: AtomicBool::new(false),
            on_cancel: Mutex::new(None),
            queue,
        },
        state: Mutex::new(State { slot: Slot::Pending, listeners: None, sleepers: 0 }),
        cond: Condvar::new(),
    });
    (Handle { shared: shared.clone() }, Completer { shared })
}

/// The producer side of a handle: the unit writes its one outcome through it.
///
/// Dropping a completer that never wrote resolves the handle as [`ErrorKind::Cancelled`],
/// so no caller can wait forever on work that will never run.
pub(crate) struct Completer<T> {
    pub(crate) shared: Arc<Shared<T>>,
}

impl<T> Completer<T> {
    pub(crate) fn core(&self) -> &Core {
        &self.shared.core
    }

    pub(crate) fn complete(&self, outcome: Outcome<T>) -> bool {
        self.shared.complete(outcome)
    }

    pub(crate) fn ok(&self, value: T) -> bool {
        self.shared.complete(Ok(value))
    }

    pub(crate) fn fail(&self, kind: ErrorKind) -> bool {
        self.shared.fail(kind)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.shared.is_done()
    }

    /// An error of this kind naming this task.
    pub(crate) fn error(&self, kind: ErrorKind) -> TaskError {
        self.shared.err_kind(kind)
    }

    /// True when a timeout wrote the outcome.
    pub(crate) fn was_timed_out(&self) -> bool {
        self.shared.core.timed_out.load(Ordering::Acquire)
    }

    /// The shared state, without this completer's drop (which resolves an unresolved
    /// handle as cancelled): the new owner takes that duty on.
    pub(crate) fn into_shared(self) -> Arc<Shared<T>> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped nor used again, so the `Arc` is moved out exactly
        // once and its count stays right.
        unsafe { std::ptr::read(&this.shared) }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        self.shared.abandon();
    }
}

/// A cooperative stop request that a running task can check.
///
/// Each task has one; inside a task, [`crate::current`] gives it. Cancelling the task's
/// handle, a timeout, or program exit (for daemon units) sets it.
///
/// # Examples
///
/// ```
/// let h = escala::thread::spawn("worker", || {
///     let me = escala::current();
///     while !me.is_cancelled() {
///         std::thread::yield_now();
///     }
///     "stopped"
/// });
/// assert!(h.cancel());
/// assert!(h.join().unwrap_err().is_cancelled());
/// ```
#[derive(Clone)]
pub struct CancelToken {
    src: Option<Arc<dyn TokenSource>>,
}

pub(crate) trait TokenSource: Send + Sync {
    fn core(&self) -> &Core;
    fn time_out(&self, after: Duration) -> bool;
    /// Sets the stop request and wakes threads waiting on it.
    fn cancel_and_wake(&self);
    /// Blocks until a stop is requested or the deadline passes; returns whether it was.
    fn wait_cancel(&self, deadline: Option<Instant>) -> bool;
}

impl<T: Send> TokenSource for Shared<T> {
    fn core(&self) -> &Core {
        &self.core
    }
    fn time_out(&self, after: Duration) -> bool {
        self.core.request_cancel();
        // Marked before writing, so whoever sees the outcome also sees why it was written.
        self.core.timed_out.store(true, Ordering::Release);
        let won = self.fail(ErrorKind::TimedOut(after));
        if !won {
            self.core.timed_out.store(false, Ordering::Release);
        }
        won
    }

    fn cancel_and_wake(&self) {
        self.core.request_cancel();
        // Taking the lock orders this wake-up after a waiter's check of the flag.
        if self.lock().sleepers > 0 {
            self.cond.notify_all();
        }
    }

    fn wait_cancel(&self, deadline: Option<Instant>) -> bool {
        let mut st = self.lock();
        while !self.core.is_cancel_requested() {
            st.sleepers += 1;
            let next = match deadline {
                None => Ok(self.cond.wait(st).unwrap_or_else(|e| e.into_inner())),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    None => Err(st),
                    Some(left) => Ok(self.cond.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0),
                },
            };
            st = match next {
                Ok(g) => g,
                Err(g) => g,
            };
            st.sleepers -= 1;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        self.core.is_cancel_requested()
    }
}

impl CancelToken {
    /// A token that is never cancelled (what code outside any task sees).
    pub fn never() -> CancelToken {
        CancelToken { src: None }
    }

    pub(crate) fn of<T: Send + 'static>(c: &Completer<T>) -> CancelToken {
        CancelToken { src: Some(c.shared.clone() as Arc<dyn TokenSource>) }
    }

    /// Whether both are the same task's token.
    pub(crate) fn same(&self, other: &CancelToken) -> bool {
        match (&self.src, &other.src) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        }
    }

    /// True once a stop was requested.
    pub fn is_cancelled(&self) -> bool {
        self.src.as_ref().is_some_and(|s| s.core().is_cancel_requested())
    }

    /// The task this token belongs to, if any.
    pub fn task_id(&self) -> Option<TaskId> {
        self.src.as_ref().map(|s| s.core().id)
    }

    /// The name of the task this token belongs to, if any.
    pub fn task_name(&self) -> Option<&str> {
        self.src.as_ref().map(|s| &*s.core().name)
    }

    /// Blocks until a stop is requested or `timeout` passes; returns whether one was.
    /// Outside any task (a [`never`](Self::never) token) it just sleeps for `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let h = escala::thread::spawn_daemon("ticker", || {
    ///     let me = escala::current();
    ///     let mut ticks = 0;
    ///     while !me.wait_timeout(Duration::from_millis(5)) {
    ///         ticks += 1;
    ///     }
    ///     ticks
    /// });
    /// h.cancel();
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match &self.src {
            Some(s) => s.wait_cancel(Some(Instant::now() + timeout)),
            None => {
                std::thread::sleep(timeout);
                false
            }
        }
    }

    /// Blocks until a stop is requested. Outside any task it never returns.
    pub fn wait(&self) {
        match &self.src {
            Some(s) => {
                s.wait_cancel(None);
            }
            None => loop {
                std::thread::park();
            },
        }
    }

    pub(crate) fn cancel(&self) {
        if let Some(s) = &self.src {
            s.cancel_and_wake();
        }
    }

    /// Resolves the task as timed out (if still pending) and sets the token.
    pub(crate) fn time_out(&self, after: Duration) -> bool {
        self.src.as_ref().is_some_and(|s| s.time_out(after))
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken").field("cancelled", &self.is_cancelled()).finish()
    }
}

/// The handle to one unit of work, whatever ran it: thread, daemon thread, child process,
/// command or pool task.
///
/// Block on it ([`join`](Handle::join), [`join_timeout`](Handle::join_timeout)), `.await` it
/// (it is a [`Future`] usable on any executor), poll it ([`is_done`](Handle::is_done)), cancel
/// it ([`cancel`](Handle::cancel)) or attach a callback ([`on_done`](Handle::on_done)).
/// Dropping a handle does not stop the work (like `std::thread::JoinHandle`).
///
/// # Examples
///
/// ```
/// let h = escala::thread::spawn("adder", || 2 + 2);
/// assert_eq!(h.name(), "adder");
/// assert_eq!(h.join().unwrap(), 4);
/// ```
#[must_use = "a handle is the only way to see the task's outcome"]
pub struct Handle<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Handle<T> {
    pub(crate) fn core(&self) -> &Core {
        &self.shared.core
    }

    /// The task's process-wide id.
    pub fn id(&self) -> TaskId {
        self.shared.core.id
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.shared.core.name
    }

    /// Which kind of unit runs the task.
    pub fn kind(&self) -> UnitKind {
        self.shared.core.kind
    }

    /// The child's pid, for process and command units once started.
    pub fn pid(&self) -> Option<u32> {
        match self.shared.core.pid.load(Ordering::Relaxed) {
            0 => None,
            p => Some(p),
        }
    }

    /// True once the task has an outcome. Never blocks.
    pub fn is_done(&self) -> bool {
        self.shared.is_done()
    }

    /// True once the task has ended with an error (false while it runs and after a
    /// success). Never blocks, and leaves the outcome for [`join`](Handle::join).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = escala::process::Command::new("false").spawn();
    /// h.wait();
    /// assert!(h.has_failed());
    /// assert!(h.join().is_err());
    /// ```
    pub fn has_failed(&self) -> bool {
        self.shared.peek_is_err()
    }

    /// Blocks until the task has an outcome, and returns it.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = escala::thread::spawn("x", || "hello".to_string());
    /// assert_eq!(h.join().unwrap(), "hello");
    /// ```
    pub fn join(self) -> Outcome<T> {
        self.shared.wait_until(None);
        self.shared.take()
    }

    /// Blocks for at most `timeout`. Gives back the outcome, or the handle itself when
    /// the task is still running, so the caller can wait again or cancel.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let h = escala::thread::spawn("waits", move || rx.recv().is_ok());
    /// let h = h.join_timeout(Duration::from_millis(10)).unwrap_err(); // still running
    /// tx.send(()).unwrap();
    /// assert!(h.join().unwrap());
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<Outcome<T>, Handle<T>> {
        if self.shared.wait_until(Some(Instant::now() + timeout)) {
            Ok(self.shared.take())
        } else {
            Err(self)
        }
    }

    /// Blocks for at most `timeout`; returns whether the task is done.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.shared.wait_until(Some(Instant::now() + timeout))
    }

    /// Blocks until the task is done, without taking its outcome.
    pub fn wait(&self) {
        self.shared.wait_until(None);
    }

    /// Requests cancellation. Returns `true` if the handle resolved as
    /// [`ErrorKind::Cancelled`] because of this call, `false` if it already had an outcome.
    ///
    /// A queued pool task is removed at once. A running thread task sees its
    /// [`CancelToken`] set and should return soon; its late value is dropped. A process unit
    /// is stopped: its child gets SIGTERM, then SIGKILL after a grace period.
    pub fn cancel(&self) -> bool {
        if self.is_done() {
            return false;
        }
        let core = &self.shared.core;
        core.request_cancel();
        let discarded = core.try_discard();
        let won = self.shared.fail(ErrorKind::Cancelled);
        if let Some(q) = core.queue.as_ref().filter(|_| won || discarded) {
            q.cancelled(core, discarded);
        }
        if won {
            let hook = self.shared.core.on_cancel.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(hook) = hook {
                hook();
            }
        }
        won
    }

    /// Runs `f` with the outcome once the task is done (at once, on this thread, if it
    /// already is; otherwise on the thread that finishes the task).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let h = escala::thread::spawn("cb", || 7);
    /// h.on_done(move |out| tx.send(*out.as_ref().unwrap()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 7);
    /// ```
    ///
    /// A panic in `f` is reported on stderr and goes no further. After `.await` took the
    /// outcome, `f` is not run.
    pub fn on_done(&self, f: impl FnOnce(&Outcome<T>) + Send + 'static) {
        self.shared.add_callback(Box::new(move |out| {
            if let Some(out) = out {
                f(out)
            }
        }));
    }

    pub(crate) fn notify_when_done(&self, f: impl FnOnce() + Send + 'static) {
        self.shared.add_callback(Box::new(move |_| f()));
    }

    pub(crate) fn peek_is_err(&self) -> bool {
        self.shared.peek_is_err()
    }

    pub(crate) fn set_cancel_hook(&self, hook: impl FnOnce() + Send + 'static) {
        *self.shared.core.on_cancel.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
    }
}

impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("kind", &self.kind())
            .field("done", &self.is_done())
            .finish()
    }
}

impl<T> Future for Handle<T> {
    type Output = Outcome<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        let mut st = self.shared.lock();
        match std::mem::replace(&mut st.slot, Slot::Taken) {
            Slot::Done(out) => Poll::Ready(out),
            Slot::Pending => {
                st.slot = Slot::Pending;
                let l = st.listeners();
                match &l.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => l.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Taken => panic!("`Handle` polled after it returned `Poll::Ready`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Most of what a pending task costs before its closure: its shared state, allocated
    /// once per task (W10 counts it per pending task; W2 and W9 allocate one per task). It
    /// was 248 bytes before errors and listeners were boxed.
    #[test]
    fn a_handles_shared_state_stays_small() {
        let size = std::mem::size_of::<Shared<u64>>();
        assert!(size <= 144, "Shared<u64> is {size} bytes");
    }

    /// A quiet completion shows the outcome at once and owes the sleeping joiner its
    /// wake-up, which `wake` gives; with nobody waiting it owes nothing; a second completion
    /// loses.
    #[test]
    fn a_quiet_completion_owes_the_sleeping_joiner_its_wake_up() {
        let (h, c) = pair::<u64>(TaskName::from("quiet".to_string()), UnitKind::Thread);
        let shared = c.into_shared();
        let joiner = std::thread::spawn(move || h.join());
        // The joiner is asleep once it counts as a sleeper (it sets that under the lock it
        // then waits on).
        while shared.lock().sleepers == 0 {
            std::thread::yield_now();
        }
        let owed = shared.complete_quiet(Ok(5)).expect("the first completion wins");
        assert!(shared.is_done());
        assert!(!owed.is_empty(), "a joiner slept: it is owed a wake-up");
        shared.wake(owed);
        assert_eq!(joiner.join().unwrap().unwrap(), 5);
        assert!(shared.complete_quiet(Ok(6)).is_none());

        let (h, c) = pair::<u64>(TaskName::from("quiet".to_string()), UnitKind::Thread);
        let shared = c.into_shared();
        assert!(shared.complete_quiet(Ok(7)).expect("wins").is_empty(), "nobody waited");
        assert_eq!(h.join().unwrap(), 7);
    }
}
