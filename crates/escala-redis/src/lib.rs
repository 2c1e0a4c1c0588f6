//! # escala-redis
//!
//! Run escala's registered tasks (and, when allowed, external commands) on workers on any
//! number of machines, through **Redis Streams consumer groups** on a Redis server you
//! already run. The caller gets ordinary [`escala::Handle`]s from a [`RedisExecutor`],
//! which implements [`escala::Executor`] like the thread and process pools.
//!
//! ## Caller and worker
//!
//! The same binary is both: it registers its tasks with `#[escala::task]`, sends them with
//! a [`RedisExecutor`], and runs them in another process with a [`Worker`] (a worker
//! refuses tasks from another build of the program with a clear error).
//!
//! ```no_run
//! use escala::Executor;
//!
//! #[escala::task]
//! fn resize(id: u32) -> String { format!("thumb-{id}.png") }
//!
//! fn main() -> Result<(), escala_redis::Error> {
//!     let _exit = escala::init();
//!     let url = "redis://127.0.0.1:6379";
//!     if std::env::args().any(|a| a == "--worker") {
//!         escala_redis::Worker::builder(url).queue("images").concurrency(8).run_until_signal()?;
//!         return Ok(());
//!     }
//!     let exec = escala_redis::RedisExecutor::builder(url).queue("images").build()?;
//!     for out in exec.map_tasks((0..100).map(resize::call)) {
//!         println!("{}", out.unwrap());
//!     }
//!     Ok(())
//! }
//! ```
//!
//! ## Delivery
//!
//! At least once, with one result per task seen by the caller:
//!
//! - a worker acknowledges a task only in the same atomic step that stores its result;
//! - each task a worker holds is under a lease the worker renews while it lives, so a long
//!   task is never handed to another worker for being long;
//! - when a worker dies, others reclaim its tasks once their lease expires (on a timer);
//!   runs are counted as they start (a task a dead worker had only prefetched costs no
//!   attempt, but for up to 3 per run thread started ahead when tasks take under 1 ms), and a task whose runs were cut short `max_attempts` times goes to a
//!   dead-letter stream with the reason (and the caller's handle resolves with that error);
//! - a second result for a task is detected (the first is kept) and counted;
//! - malformed, oversized, unsigned (when a key is set) or tampered entries are
//!   dead-lettered with the reason; they never crash a worker.
//!
//! ## Cancel, kept results, TLS
//!
//! Cancelling a handle reaches the workers: a task not started is skipped, a running one
//! is stopped (its cancel token set; a command's process group sent SIGTERM, then
//! SIGKILL). Each result is kept for the result TTL and read by task id
//! ([`RedisExecutor::task_id`], [`RedisExecutor::result`], [`Server::result`]).
//! `rediss://` URLs use TLS (the `tls` feature, on by default: rustls, no OpenSSL), with
//! the server's certificate checked against the system's roots or a CA file
//! (`tls_ca_file` on the builders and [`Server`]).
//!
//! The key layout and the task state machine are in `src/README.md`.

mod build;
mod conn;
mod error;
mod executor;
mod keys;
mod results;
mod server;
mod status;
mod wire;
mod worker;

pub use error::Error;
pub use executor::{RedisExecutor, RedisExecutorBuilder};
pub use results::StoredResult;
pub use server::Server;
pub use status::{QueueStatus, Status, WorkerInfo};
pub use wire::CommandOutput;
pub use worker::{RunningWorker, Worker, WorkerBuilder, WorkerReport};
