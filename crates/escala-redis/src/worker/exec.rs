//! The run threads: check one delivered entry (size, signature, format, build, task name),
//! start it (the start step, through the starter thread: skipped if cancelled, the attempt
//! counted), run it, and turn the outcome into a [`Commit`]. Nothing here panics on bad
//! input: a malformed entry becomes a dead letter with the reason.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use crossbeam_channel::{Receiver, Sender};
use escala::{ErrorKind, remote};

use super::Shared;
use super::commit::{Commit, Reply};
use super::start::{self, Start};
use crate::conn::Entry;
use crate::keys;
use crate::wire::{self, Envelope, Job, ResultMsg, WireError};

/// One stream entry this worker holds (fetched or reclaimed), not yet started.
pub(crate) struct Delivery {
    pub(crate) entry: Entry,
}

pub(super) fn run(
    shared: &Shared,
    starter: Sender<start::Request>,
    rx: Receiver<Delivery>,
    commit_tx: Sender<Commit>,
) {
    // This thread's answers from the starter thread, in the order it asked (up to `AHEAD`
    // asked ahead of the one it waits for).
    let (reply, answers) = crossbeam_channel::bounded(AHEAD + 1);
    let mut conn = Starter { tx: starter, reply, answers, avg_ns: 0 };
    let mut next: VecDeque<Carried> = VecDeque::new();
    loop {
        let carried = match next.pop_front() {
            Some(c) => c,
            None => match rx.recv() {
                Ok(d) => prepare(shared, &mut conn, d),
                Err(_) => break,
            },
        };
        let (d, commit) = match carried {
            Carried::Done(d, commit) => (d, commit),
            Carried::Starting(d, env) => {
                let commit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    take_next(shared, &mut conn, &rx, &mut next);
                    run_checked(shared, &mut conn, &d, &env)
                }))
                .unwrap_or_else(|_| Some(internal_error(shared, &d)));
                (d, commit)
            }
        };
        let Some(commit) = commit else {
            // Another worker holds it now.
            shared.release([d.entry.id]);
            continue;
        };
        if commit_tx.send(commit).is_err() {
            break;
        }
    }
}

/// A delivery a run thread has checked: the next one, or one taken ahead of it.
enum Carried {
    /// Registered, and its start request sent.
    Starting(Delivery, Box<Envelope>),
    /// Handled without a run: its commit (refused here, a dead letter), or `None` to leave
    /// it to another worker.
    Done(Delivery, Option<Commit>),
}

/// Checks a delivery and, if it is to run here, registers it and sends its start request.
fn prepare(shared: &Shared, conn: &mut Starter, d: Delivery) -> Carried {
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| checked(shared, &d)))
        .unwrap_or_else(|_| Ok(Some(internal_error(shared, &d))));
    match checked {
        Ok(commit) => Carried::Done(d, commit),
        Err(env) => {
            shared.runs.register(&env.id);
            if conn.send(&d.entry.id, &env.id) {
                Carried::Starting(d, env)
            } else {
                // No starter (the worker is going away): leave it for another worker.
                shared.runs.finish(&env.id);
                Carried::Done(d, None)
            }
        }
    }
}

/// The dead letter of an entry whose handling panicked (a bug, never bad input).
fn internal_error(shared: &Shared, d: &Delivery) -> Commit {
    dead_letter(shared, &d.entry, 1, "internal error while handling the entry".into())
}

/// Tasks that ran shorter than this on average have the starts of the next [`AHEAD`] sent
/// with their own (see [`take_next`]).
const SHORT_NS: u64 = 1_000_000;
/// How many starts a run thread sends ahead of the task it runs, for short tasks.
const AHEAD: usize = 3;

/// A run thread's way to the starter thread.
struct Starter {
    tx: Sender<start::Request>,
    reply: Sender<Start>,
    answers: Receiver<Start>,
    /// Moving average of this thread's run times (0 before the first).
    avg_ns: u64,
}

impl Starter {
    /// Asks the starter thread to start `entry` of task `task`; false if it is gone.
    fn send(&mut self, entry: &str, task: &str) -> bool {
        let req =
            start::Request { entry: entry.to_string(), task: task.to_string(), reply: self.reply.clone() };
        self.tx.send(req).is_ok()
    }

    /// Waits for the answer to the request sent.
    fn answer(&mut self) -> Start {
        self.answers.recv().unwrap_or(Start::Lost)
    }

    fn ran(&mut self, ns: u64) {
        self.avg_ns = super::moving_avg(self.avg_ns, ns);
    }

    /// Whether this thread's tasks are short enough to start the next one early.
    fn short(&self) -> bool {
        self.avg_ns != 0 && self.avg_ns < SHORT_NS
    }
}

/// A commit that moves `entry` to the dead-letter stream, without a result.
pub(crate) fn dead_letter(shared: &Shared, entry: &Entry, attempt: u32, why: String) -> Commit {
    shared.dead.fetch_add(1, Relaxed);
    let raw = entry.field(wire::MSG).unwrap_or_default();
    // Keep what can be inspected, not a huge payload.
    let raw = raw[..raw.len().min(shared.cfg.max_bytes)].to_vec();
    // A dead letter the caller can be told about gets an error result too.
    let reply = wire::decode::<Envelope>(&raw, shared.cfg.max_bytes)
        .ok()
        .filter(|env| keys::valid_name(&env.client) && keys::valid_name(&env.id))
        .map(|env| result(shared, &env, attempt, Err(WireError::Remote(format!("dead-lettered: {why}")))));
    Commit { entry: entry.id.clone(), reply, dead: Some((why, raw)) }
}

fn result(shared: &Shared, env: &Envelope, attempt: u32, outcome: Result<Vec<u8>, WireError>) -> Reply {
    let msg = wire::encode(&ResultMsg { id: env.id.clone(), attempt, outcome });
    let sig = shared.cfg.signer.sign(&msg);
    Reply { task: env.id.clone(), client: env.client.clone(), job: env.job.label(), msg, sig }
}

/// For short tasks, takes up to [`AHEAD`] more deliveries and sends their start requests
/// with the current one's, so that they go in the same script call and a run thread runs
/// several tasks per round trip to Redis instead of one (W6: the wait halved the
/// throughput of tiny tasks). The price: if this worker dies meanwhile, those tasks were
/// counted as attempts without having run — at most [`AHEAD`] per run thread, and only
/// when its tasks are short.
fn take_next(shared: &Shared, conn: &mut Starter, rx: &Receiver<Delivery>, next: &mut VecDeque<Carried>) {
    while next.len() < AHEAD && conn.short() {
        let Ok(d) = rx.try_recv() else { return };
        next.push_back(prepare(shared, conn, d));
    }
}

/// Checks one entry: `Ok` with the commit of an entry refused here, `Err` with the task to run.
fn checked(shared: &Shared, d: &Delivery) -> Result<Option<Commit>, Box<Envelope>> {
    let cfg = &shared.cfg;
    let e = &d.entry;
    let attempt = 1;
    let Some(msg) = e.field(wire::MSG) else {
        return Ok(Some(dead_letter(
            shared,
            e,
            attempt,
            format!("malformed entry: no `{}` field", wire::MSG),
        )));
    };
    if msg.len() > cfg.max_bytes {
        let why =
            format!("oversized message: {} bytes, over the limit of {} bytes", msg.len(), cfg.max_bytes);
        return Ok(Some(
            Commit { entry: e.id.clone(), reply: None, dead: Some((why, Vec::new())) }.counted(shared),
        ));
    }
    if let Err(why) = cfg.signer.verify(msg, e.field(wire::SIG)) {
        shared.failed.fetch_add(1, Relaxed);
        return Ok(Some(dead_letter(shared, e, attempt, why)));
    }
    let env: Envelope = match wire::decode(msg, cfg.max_bytes) {
        Ok(env) => env,
        Err(why) => return Ok(Some(dead_letter(shared, e, attempt, why))),
    };
    if env.version != wire::VERSION || !keys::valid_name(&env.client) || !keys::valid_name(&env.id) {
        let why = format!(
            "unsupported message (version {}, client `{}`, id `{}`)",
            env.version, env.client, env.id
        );
        return Ok(Some(dead_letter(shared, e, attempt, why)));
    }
    let refused = match &env.job {
        Job::Task { name, build, .. } if build != crate::build::build_id() => Some(format!(
            "task `{name}` comes from build `{build}`, but this worker is build `{}`; run workers from an identical copy of the caller's binary",
            crate::build::build_id()
        )),
        Job::Task { name, .. } if !remote::is_registered(name) => {
            let known = escala::registered_tasks().join(", ");
            Some(format!("unknown task `{name}`; this worker registers: [{known}]"))
        }
        Job::Command { program, .. } if !cfg.allow_commands => Some(format!(
            "command `{program}` refused: this worker does not allow commands (start it with --allow-commands)"
        )),
        _ => None,
    };
    match refused {
        Some(why) => Ok(Some(refuse(shared, e, &env, attempt, why))),
        None => Err(Box::new(env)),
    }
}

/// Runs a checked task whose start request was sent (and which is registered in `runs`).
fn run_checked(shared: &Shared, conn: &mut Starter, d: &Delivery, env: &Envelope) -> Option<Commit> {
    let cfg = &shared.cfg;
    let e = &d.entry;
    let started = conn.answer();
    let attempt = match started {
        Start::Run(n) => n,
        Start::Lost => {
            shared.runs.finish(&env.id);
            return None;
        }
        Start::Cancelled => {
            shared.runs.finish(&env.id);
            shared.cancelled.fetch_add(1, Relaxed);
            let reply = result(shared, env, 1, Err(WireError::Cancelled));
            return Some(Commit { entry: e.id.clone(), reply: Some(reply), dead: None });
        }
        Start::GiveUp(runs) => {
            shared.runs.finish(&env.id);
            let why = format!(
                "gave up after {runs} started run(s) (max attempts {}); last error: the worker running it stopped renewing its lease (it died or hung)",
                cfg.max_attempts
            );
            return Some(dead_letter(shared, e, runs + 1, why));
        }
    };
    if attempt > 1 {
        shared.redelivered.fetch_add(1, Relaxed);
    }
    shared.running.fetch_add(1, Relaxed);
    let began = std::time::Instant::now();
    let outcome = match &env.job {
        Job::Task { name, args, .. } => {
            let (h, c) = remote::pair::<()>(name);
            let token = c.token();
            shared.runs.on_cancel(
                &env.id,
                Box::new(move || {
                    h.cancel();
                }),
            );
            let out = remote::run_registered_with(name, args, token);
            c.complete(Ok(()));
            out
        }
        Job::Command { program, args } => {
            super::command::run(program, args, cfg.max_bytes / 2, |stop| shared.runs.on_cancel(&env.id, stop))
        }
    };
    let ns = began.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
    conn.ran(ns);
    shared.ran_for(ns);
    let cancelled = shared.runs.finish(&env.id);
    shared.running.fetch_sub(1, Relaxed);
    shared.ran.fetch_add(1, Relaxed);
    let outcome = match outcome {
        _ if cancelled => Err(ErrorKind::Cancelled),
        Ok(bytes) if bytes.len() > cfg.max_bytes => Err(ErrorKind::Codec(format!(
            "the result is {} bytes, over the limit of {} bytes",
            bytes.len(),
            cfg.max_bytes
        ))),
        other => other,
    };
    let counter = match &outcome {
        Ok(_) => &shared.ok,
        Err(ErrorKind::Cancelled) => &shared.cancelled,
        Err(_) => &shared.failed,
    };
    counter.fetch_add(1, Relaxed);
    let reply = result(shared, env, attempt, outcome.map_err(WireError::from_kind));
    Some(Commit { entry: e.id.clone(), reply: Some(reply), dead: None })
}

/// The task is valid but not for this worker: the caller gets `Refused`, and the entry is
/// dead-lettered so that an operator sees it.
fn refuse(shared: &Shared, e: &Entry, env: &Envelope, attempt: u32, why: String) -> Commit {
    shared.failed.fetch_add(1, Relaxed);
    shared.dead.fetch_add(1, Relaxed);
    let reply = result(shared, env, attempt, Err(WireError::Refused(why.clone())));
    let raw = e.field(wire::MSG).unwrap_or_default().to_vec();
    Commit { entry: e.id.clone(), reply: Some(reply), dead: Some((why, raw)) }
}

impl Commit {
    fn counted(self, shared: &Shared) -> Commit {
        shared.dead.fetch_add(1, Relaxed);
        self
    }
}
