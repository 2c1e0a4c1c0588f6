//! Thread units: a closure on its own named OS thread, and daemon threads.
//!
//! A thread unit is joined at program exit (with [`crate::init`]); a daemon thread is not:
//! at exit it gets a stop request through its [`crate::CancelToken`] and a grace period.
//! A panic never aborts the process; it becomes the unit's outcome.

use std::fmt::Display;

use crate::error::ErrorKind;
use crate::events::{self, EventKind};
use crate::handle::{CancelToken, Completer, Handle, TaskName, UnitKind, pair};
use crate::runtime::{self, LiveUnit};
use crate::task::{Call, Task};
use crate::unwind::run_task;

/// Runs `f` on a new OS thread named `name`; joined at program exit.
///
/// # Examples
///
/// ```
/// let h = escala::thread::spawn("Hilo 1", || 40 + 2);
/// assert_eq!(h.join().unwrap(), 42);
/// ```
pub fn spawn<T, F>(name: impl Into<String>, f: F) -> Handle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    Builder::new(name).spawn(f)
}

/// Runs `f` on a new daemon thread: not waited for at exit, asked to stop instead.
///
/// # Examples
///
/// ```
/// let h = escala::thread::spawn_daemon("Demonio 1", || "done");
/// assert_eq!(h.join().unwrap(), "done");
/// ```
pub fn spawn_daemon<T, F>(name: impl Into<String>, f: F) -> Handle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    Builder::new(name).daemon(true).spawn(f)
}

/// Configures a thread unit before starting it.
///
/// # Examples
///
/// ```
/// let h = escala::thread::Builder::new("big-stack").stack_size(8 << 20).spawn(|| 1);
/// assert_eq!(h.join().unwrap(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    name: String,
    daemon: bool,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder for a thread named `name`.
    pub fn new(name: impl Into<String>) -> Builder {
        Builder { name: name.into(), daemon: false, stack_size: None }
    }

    /// Makes it a daemon thread (not joined at exit; asked to stop).
    pub fn daemon(mut self, daemon: bool) -> Builder {
        self.daemon = daemon;
        self
    }

    /// Sets the OS thread's stack size in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts the thread running `f`.
    pub fn spawn<T, F>(self, f: F) -> Handle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.start(move |c| match run_task(CancelToken::of(&c), f) {
            Ok(v) => {
                c.ok(v);
            }
            Err(k) => {
                c.fail(k);
            }
        })
    }

    /// Starts the thread running `f`; an `Err(e)` resolves as [`ErrorKind::Failed`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h = escala::thread::Builder::new("parse").spawn_fallible(|| "x".parse::<u8>());
    /// assert!(h.join().unwrap_err().is_failed());
    /// ```
    pub fn spawn_fallible<T, E, F>(self, f: F) -> Handle<T>
    where
        T: Send + 'static,
        E: Display,
        F: FnOnce() -> Result<T, E> + Send + 'static,
    {
        self.start(move |c| match run_task(CancelToken::of(&c), f) {
            Ok(Ok(v)) => {
                c.ok(v);
            }
            Ok(Err(e)) => {
                c.fail(ErrorKind::Failed(e.to_string()));
            }
            Err(k) => {
                c.fail(k);
            }
        })
    }

    /// Runs a registered task on this thread (no encoding: the arguments move in).
    ///
    /// # Examples
    ///
    /// ```
    /// #[escala::task]
    /// fn double(x: u32) -> u32 { x * 2 }
    ///
    /// let h = escala::thread::Builder::new("t").spawn_task(double::call(21));
    /// assert_eq!(h.join().unwrap(), 42);
    /// ```
    pub fn spawn_task<K: Task>(self, call: Call<K>) -> Handle<K::Output> {
        self.spawn_fallible(move || K::run(call.into_args()))
    }

    fn start<T: Send + 'static>(self, body: impl FnOnce(Completer<T>) + Send + 'static) -> Handle<T> {
        let kind = if self.daemon { UnitKind::DaemonThread } else { UnitKind::Thread };
        let (handle, completer) = pair::<T>(TaskName::from(self.name.clone()), kind);
        let token = CancelToken::of(&completer);
        let (ended_tx, ended_rx) = crossbeam_channel::bounded::<()>(0);
        let mut b = std::thread::Builder::new().name(self.name.clone());
        if let Some(s) = self.stack_size {
            b = b.stack_size(s);
        }
        let spawned = b.spawn(move || {
            let _ended = ended_tx;
            if completer.is_done() {
                return; // cancelled before it started
            }
            if events::enabled() {
                events::emit(completer.core(), EventKind::Started);
            }
            body(completer);
        });
        match spawned {
            Ok(_) => runtime::register(LiveUnit {
                id: handle.id(),
                name: self.name,
                kind,
                daemon: self.daemon,
                ended: ended_rx,
                stop: Box::new(move || token.cancel()),
                force: None,
                grace: None,
            }),
            Err(e) => {
                // The closure (and the completer in it) was dropped; say why instead.
                let (h2, c2) = pair::<T>(TaskName::from(self.name), kind);
                c2.fail(ErrorKind::Spawn(format!("could not start a thread: {e}")));
                return h2;
            }
        }
        handle
    }
}
