//! [`RedisExecutor`]: sends registered tasks and commands to a queue (a Redis stream) and
//! resolves each caller's [`Handle`] when the result comes back on the caller's own reply
//! stream.

mod builder;
mod io;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use builder::RedisExecutorBuilder;
use escala::{Call, ErrorKind, Executor, Handle, Shutdown, Stats, Task, remote};
use serde::de::DeserializeOwned;

use crate::keys::{self, QueueKeys};
use crate::wire::{self, CommandOutput, Envelope, Job, Signer};
use crate::{Error, conn};

/// Completes one caller's handle.
type Waiter = Box<dyn FnOnce(Result<Vec<u8>, ErrorKind>) + Send>;

/// An [`Executor`] whose workers are other processes, on any machine, reading a Redis
/// stream. Results come back into ordinary [`Handle`]s (`join()` or `.await`).
///
/// Delivery is at least once with one result per task: workers acknowledge a task only
/// after its result is stored, a dead worker's tasks are reclaimed after its lease expires,
/// and a duplicate result is dropped (and counted) by Redis itself. When Redis restarts or
/// the connection drops, the executor reconnects with backoff and the handles keep waiting.
///
/// Cancelling a handle ([`Handle::cancel`]) resolves it as cancelled at once and tells the
/// workers: a task not started yet is skipped, a running one is stopped (its cancel token
/// is set; a command's process group gets SIGTERM, then SIGKILL). Each task's result is kept
/// in Redis for the result TTL; [`task_id`](Self::task_id) and [`result`](Self::result)
/// fetch it by id.
///
/// Dropping the executor stops its threads; handles still waiting then resolve as
/// cancelled, and their tasks still run on the workers (submit and drop is fire and
/// forget). Call [`shutdown`](Executor::shutdown) first to wait for them, or to cancel
/// them on the workers too (`cancel_pending`).
///
/// # Examples
///
/// ```no_run
/// use escala::Executor;
/// use escala_redis::RedisExecutor;
///
/// #[escala::task]
/// fn square(x: u64) -> u64 { x * x }
///
/// let exec = RedisExecutor::builder("redis://127.0.0.1:6379").queue("math").build()?;
/// let h = exec.submit_task(square::call(12));
/// assert_eq!(h.join().unwrap(), 144); // once a worker runs the queue `math`
/// # Ok::<(), escala_redis::Error>(())
/// ```
pub struct RedisExecutor {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

pub(crate) struct Inner {
    pub(crate) client_id: String,
    pub(crate) keys: QueueKeys,
    pub(crate) reply_key: String,
    pub(crate) signer: Signer,
    pub(crate) max_bytes: usize,
    map_window: usize,
    url: String,
    tls_ca_file: Option<std::path::PathBuf>,
    client: redis::Client,
    pending: Mutex<HashMap<u64, Waiter>>,
    idle: Condvar,
    closed: AtomicBool,
    pub(crate) stop: AtomicBool,
    tx: crossbeam_channel::Sender<io::Outgoing>,
    submitted: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    pub(crate) bad_results: AtomicU64,
}

impl Inner {
    fn pending(&self) -> MutexGuard<'_, HashMap<u64, Waiter>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves task `seq` (if still waiting) with a result from a worker or the broker;
    /// returns whether it was still waiting.
    pub(crate) fn resolve(&self, seq: u64, outcome: Result<Vec<u8>, ErrorKind>) -> bool {
        let Some(w) = self.take(seq) else { return false };
        // Counted before the handle resolves, so a caller that saw it sees the count.
        let counter = if outcome.is_ok() { &self.completed } else { &self.failed };
        counter.fetch_add(1, Relaxed);
        w(outcome);
        true
    }

    /// Forgets task `seq` once its handle was resolved from outside (the caller cancelled
    /// it); returns whether it was still waiting. The waiter is dropped, not called: its
    /// handle has its outcome already, and this runs inside that handle's `on_done`
    /// callbacks, where completing it again would wait on the handle's own lock.
    fn forget(&self, seq: u64) -> bool {
        let Some(w) = self.take(seq) else { return false };
        self.failed.fetch_add(1, Relaxed);
        drop(w);
        true
    }

    /// Removes task `seq`'s waiter (if it is still waiting), waking a `shutdown` that waits
    /// for the last one.
    fn take(&self, seq: u64) -> Option<Waiter> {
        let mut p = self.pending();
        let w = p.remove(&seq);
        if p.is_empty() {
            self.idle.notify_all();
        }
        w
    }

    /// The id of task `seq` in Redis.
    fn task_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.client_id)
    }

    /// The sequence number of one of our task ids, `{client}-{seq}`.
    pub(crate) fn seq_of(&self, id: &str) -> Option<u64> {
        id.strip_prefix(&self.client_id)?.strip_prefix('-')?.parse().ok()
    }
}

impl RedisExecutor {
    /// Starts configuring an executor for the Redis server at `url`
    /// (`redis://[user:password@]host:port[/db]`, `rediss://…` with the `tls` feature).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = escala_redis::RedisExecutor::builder("redis://127.0.0.1:1").build().unwrap_err();
    /// assert!(err.is_unreachable());
    /// ```
    pub fn builder(url: &str) -> RedisExecutorBuilder {
        RedisExecutorBuilder::new(url)
    }

    fn start(b: RedisExecutorBuilder) -> Result<RedisExecutor, Error> {
        if !keys::valid_name(&b.queue) {
            return Err(Error::config(format!(
                "bad queue name `{}`: use 1 to 128 of A-Z a-z 0-9 _ . -",
                b.queue
            )));
        }
        let key = wire::resolve_key(b.key.clone(), b.key_file.as_deref())?;
        let (client, _, keys) = conn::open_queue(&b.url, b.tls_ca_file.as_deref(), &b.queue)?;
        let client_id = format!("{:016x}", fastrand::u64(..));
        let (tx, rx) = crossbeam_channel::unbounded();
        let inner = Arc::new(Inner {
            reply_key: keys::reply(&client_id),
            client_id,
            keys,
            signer: Signer::new(key),
            max_bytes: b.max_bytes,
            map_window: b.map_window,
            url: b.url.clone(),
            tls_ca_file: b.tls_ca_file.clone(),
            client: client.clone(),
            pending: Mutex::new(HashMap::new()),
            idle: Condvar::new(),
            closed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            tx,
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            bad_results: AtomicU64::new(0),
        });
        let threads =
            io::spawn(&inner, client, rx, b.result_ttl).map_err(|e| Error::config(e.to_string()))?;
        Ok(RedisExecutor { inner, threads: Mutex::new(threads) })
    }

    /// Sends an external command to the queue; only workers started with commands allowed
    /// run it (others refuse it, and the handle resolves as refused).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let exec = escala_redis::RedisExecutor::builder("redis://127.0.0.1:6379").build()?;
    /// let out = exec.submit_command("echo", ["hi"]).join().unwrap();
    /// assert_eq!(out.stdout_lossy(), "hi\n");
    /// # Ok::<(), escala_redis::Error>(())
    /// ```
    pub fn submit_command<I, S>(&self, program: &str, args: I) -> Handle<CommandOutput>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let job =
            Job::Command { program: program.to_string(), args: args.into_iter().map(Into::into).collect() };
        self.submit_job(program, job)
    }

    /// This executor's client id: its tasks' ids are `{client_id}-{n}`.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The queue this executor sends to, with its depth, dead letters and live workers,
    /// read from Redis now.
    ///
    /// # Errors
    ///
    /// Redis is not reachable or answered with an error.
    pub fn queue_status(&self) -> Result<crate::QueueStatus, Error> {
        let status = self.server().status()?;
        Ok(status.queues.into_iter().find(|q| q.name == self.inner.keys.name).unwrap_or_default())
    }

    /// The id in Redis of a task this executor sent: `{client_id}-{n}`, where `n` is the
    /// handle's [`id`](Handle::id). With it, [`result`](Self::result) fetches the task's
    /// kept result, from this or any other process, until the result TTL passes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let exec = escala_redis::RedisExecutor::builder("redis://127.0.0.1:6379").build()?;
    /// let h = exec.submit_command("date", None::<String>);
    /// let id = exec.task_id(&h);
    /// assert!(id.starts_with(exec.client_id()));
    /// # Ok::<(), escala_redis::Error>(())
    /// ```
    pub fn task_id<T>(&self, handle: &Handle<T>) -> String {
        self.inner.task_id(handle.id().0)
    }

    /// The result a worker stored for task `task_id` (see [`task_id`](Self::task_id)),
    /// decoded as `T`: `None` while it has none (not run yet, unknown, or expired after the
    /// result TTL). With a signing key, a result not signed with it is an error.
    ///
    /// # Errors
    ///
    /// Redis is not reachable, the id is malformed, or the stored result is not valid.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use escala::Executor;
    ///
    /// #[escala::task]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let exec = escala_redis::RedisExecutor::builder("redis://127.0.0.1:6379").queue("math").build()?;
    /// let h = exec.submit_task(square::call(12));
    /// let id = exec.task_id(&h);
    /// h.join().unwrap();
    /// assert_eq!(exec.result::<u64>(&id)?, Some(Ok(144)));
    /// # Ok::<(), escala_redis::Error>(())
    /// ```
    pub fn result<T: DeserializeOwned>(&self, task_id: &str) -> Result<Option<Result<T, ErrorKind>>, Error> {
        Ok(self.stored_result(task_id)?.map(|r| r.value::<T>()))
    }

    /// Like [`result`](Self::result), undecoded: the stored result with its attempt and
    /// what ran.
    ///
    /// # Errors
    ///
    /// As [`result`](Self::result).
    pub fn stored_result(&self, task_id: &str) -> Result<Option<crate::StoredResult>, Error> {
        let i = &self.inner;
        crate::results::fetch(&i.client, &i.url, task_id, &i.signer, i.max_bytes)
    }

    /// The server this executor uses, to read its status and kept results.
    fn server(&self) -> crate::Server {
        let mut s = crate::Server::new(&self.inner.url);
        if let Some(ca) = &self.inner.tls_ca_file {
            s = s.tls_ca_file(ca);
        }
        s
    }

    fn submit_job<T: DeserializeOwned + Send + 'static>(&self, name: &str, job: Job) -> Handle<T> {
        let inner = &self.inner;
        let (h, c) = remote::pair::<T>(name);
        if inner.closed.load(Relaxed) {
            inner.rejected.fetch_add(1, Relaxed);
            c.fail(ErrorKind::Rejected("the executor is shut down".into()));
            return h;
        }
        // Handle ids are unique in this process: the task id needs no counter of its own.
        let seq = h.id().0;
        let env =
            Envelope { version: wire::VERSION, id: inner.task_id(seq), client: inner.client_id.clone(), job };
        let msg = wire::encode(&env);
        if msg.len() > inner.max_bytes {
            inner.rejected.fetch_add(1, Relaxed);
            c.fail(ErrorKind::Codec(format!(
                "the task message is {} bytes, over the limit of {} bytes",
                msg.len(),
                inner.max_bytes
            )));
            return h;
        }
        let sig = inner.signer.sign(&msg);
        inner.pending().insert(
            seq,
            Box::new(move |out: Result<Vec<u8>, ErrorKind>| {
                c.complete_encoded(out);
            }),
        );
        // A caller's cancel frees the slot at once (the worker's late result is dropped) and
        // is sent on to the workers: the task is skipped, or stopped where it runs.
        let weak = Arc::downgrade(inner);
        h.on_done(move |out| {
            let Some(inner) = weak.upgrade() else { return };
            if inner.forget(seq) && out.as_ref().is_err_and(|e| e.is_cancelled()) {
                let _ = inner.tx.send(io::Outgoing::Cancel { task: inner.task_id(seq) });
            }
        });
        inner.submitted.fetch_add(1, Relaxed);
        if inner.tx.send(io::Outgoing::Task { seq, msg, sig }).is_err() {
            inner.resolve(seq, Err(ErrorKind::Rejected("the executor is shut down".into())));
        }
        h
    }

    fn stop_threads(&self) {
        self.inner.stop.store(true, Relaxed);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Executor for RedisExecutor {
    fn submit_task<K: Task>(&self, call: Call<K>) -> Handle<K::Output> {
        match remote::encode(call.args()) {
            Ok(args) => {
                let job = Job::Task {
                    name: K::NAME.to_string(),
                    build: crate::build::build_id().to_string(),
                    args,
                };
                self.submit_job(K::NAME, job)
            }
            Err(e) => {
                let (h, c) = remote::pair(K::NAME);
                c.fail(ErrorKind::Codec(format!("cannot encode the arguments of `{}`: {e}", K::NAME)));
                h
            }
        }
    }

    /// Stops accepting tasks; with `wait`, blocks until every submitted task has its result
    /// (or `timeout` passes), then stops the executor's threads. `cancel_pending` resolves
    /// every waiting handle as cancelled instead and cancels its task on the workers, as
    /// [`Handle::cancel`] does: the executor cannot tell a queued task from a running one, so
    /// a task not started yet is skipped and a running one is stopped.
    fn shutdown(&self, how: Shutdown) -> bool {
        let inner = &self.inner;
        inner.closed.store(true, Relaxed);
        if how.cancel_pending {
            let waiting: Vec<u64> = inner.pending().keys().copied().collect();
            for seq in waiting {
                // Only a task this call resolved: one whose result won the race needs no cancel.
                if inner.resolve(seq, Err(ErrorKind::Cancelled)) {
                    // Sent before the threads stop: the sender drains its queue first.
                    let _ = inner.tx.send(io::Outgoing::Cancel { task: inner.task_id(seq) });
                }
            }
        }
        let mut p = inner.pending();
        if how.wait {
            let deadline = how.timeout.map(|t| Instant::now() + t);
            while !p.is_empty() {
                let left = match deadline {
                    None => Duration::from_secs(3600),
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) => left,
                        None => break,
                    },
                };
                p = inner.idle.wait_timeout(p, left).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        let done = p.is_empty();
        drop(p);
        if done {
            self.stop_threads();
        }
        done
    }

    fn stats(&self) -> Stats {
        let i = &self.inner;
        Stats {
            submitted: i.submitted.load(Relaxed),
            queued: i.pending().len() as u64,
            completed: i.completed.load(Relaxed),
            failed: i.failed.load(Relaxed),
            rejected: i.rejected.load(Relaxed),
            ..Stats::default()
        }
    }

    fn map_window(&self) -> usize {
        self.inner.map_window
    }
}

impl Drop for RedisExecutor {
    fn drop(&mut self) {
        self.inner.closed.store(true, Relaxed);
        self.stop_threads();
        // Completers dropped unwritten resolve their handles as cancelled.
        let waiting = std::mem::take(&mut *self.inner.pending());
        drop(waiting);
    }
}

impl std::fmt::Debug for RedisExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisExecutor")
            .field("queue", &self.inner.keys.name)
            .field("client_id", &self.inner.client_id)
            .finish_non_exhaustive()
    }
}
