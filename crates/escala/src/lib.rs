//! # escala
//!
//! Run work on every kind of execution unit — threads, daemon threads, child processes
//! running Rust functions, commands, thread pools — with **one handle type** and one set of
//! outcomes. It is Python's `threading`, `multiprocessing` and `concurrent.futures` done in
//! Rust, with fault tolerance: a panic, a crash or a kill of a child becomes the task's
//! outcome, never a hang.
//!
//! ## A thread, a daemon thread and a pool
//!
//! ```
//! use escala::{ThreadPool, as_completed};
//!
//! let t = escala::thread::spawn("Hilo 1", || "hilo");
//! let d = escala::thread::spawn_daemon("Demonio 1", || "demonio");
//! let pool = ThreadPool::new(3);
//! let futures: Vec<_> = (0..3).map(|i| pool.submit_named(format!("Concurrencia {i}"), move || i)).collect();
//! let mut sum = 0;
//! for done in as_completed(futures) {
//!     sum += done.join().unwrap();
//! }
//! assert_eq!((t.join().unwrap(), d.join().unwrap(), sum), ("hilo", "demonio", 3));
//! ```
//!
//! ## A registered task in a child process
//!
//! `#[escala::task]` registers a function by a stable name; `fib::call(n)` is a call that
//! any unit runs — a thread, a pool, or a re-executed child process. A binary that starts
//! process units begins `main` with [`init`] (or uses `#[escala::main]`).
//!
//! ```
//! #[escala::task]
//! fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
//!
//! fn main() {
//!     let _exit = escala::init();
//!     let child = escala::process::spawn(fib::call(20));
//!     let thread = escala::thread::Builder::new("t").spawn_task(fib::call(20));
//!     assert_eq!(child.join().unwrap(), thread.join().unwrap());
//! }
//! ```
//!
//! ## Outcomes
//!
//! Every handle resolves to an [`Outcome`]: `Ok(value)` or a [`TaskError`] whose
//! [`ErrorKind`] says why — panicked (with message and location), failed, timed out,
//! cancelled, worker lost (with the signal's name or the exit code), rejected, codec.
//!
//! ```
//! fn main() {
//!     let _exit = escala::init();
//!     let h = escala::process::Command::new("sh").args(["-c", "kill -9 $$"]).spawn();
//!     let err = h.join().unwrap_err();
//!     assert_eq!(err.exit_reason().unwrap().signal_name(), Some("SIGKILL"));
//! }
//! ```

// Examples keep `fn main` on purpose: process units need `escala::init()` first in main.
#![allow(clippy::needless_doctest_main)]

mod error;
pub mod events;
mod handle;
pub mod pool;
pub mod process;
pub mod remote;
mod runtime;
pub mod supervise;
mod task;
pub mod thread;
mod unwind;

pub use error::{ErrorKind, ExitReason, Outcome, TaskError};
pub use escala_macros::{main, task};
pub use handle::{AsCompleted, CancelToken, Handle, TaskId, UnitKind, WaitFor, as_completed, wait};
pub use pool::{
    Executor, Percentiles, ProcessPool, ProcessPoolBuilder, QueuePolicy, RetryPolicy, Shutdown, Stats,
    ThreadPool, ThreadPoolBuilder, WorkerProcess,
};
pub use runtime::{ExitGuard, ExitReport, init};
pub use task::{Call, Task, registered_tasks};
pub use unwind::current;

/// Items used by the code the macros generate. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::task::Registration;
    pub use inventory;
}

/// The README's examples, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
