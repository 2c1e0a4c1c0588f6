//! The run threads: check one delivered entry (size, signature, format, build, task name),
//! run it, and turn the outcome into a [`Commit`]. Nothing here panics on bad input: a
//! malformed entry becomes a dead letter with the reason.

use std::sync::atomic::Ordering::Relaxed;

use crossbeam_channel::{Receiver, Sender};
use escala::{ErrorKind, remote};

use super::Shared;
use super::commit::{Commit, Reply};
use crate::conn::Entry;
use crate::keys;
use crate::wire::{self, CommandOutput, Envelope, Job, ResultMsg, WireError};

/// One stream entry this worker holds, with its attempt number (1 = first delivery).
pub(crate) struct Delivery {
    pub(crate) entry: Entry,
    pub(crate) attempt: u32,
}

pub(super) fn run(shared: &Shared, rx: Receiver<Delivery>, commit_tx: Sender<Commit>) {
    for d in rx {
        shared.running.fetch_add(1, Relaxed);
        let commit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(shared, &d)))
            .unwrap_or_else(|_| {
                dead_letter(shared, &d.entry, d.attempt, "internal error while handling the entry".into())
            });
        shared.running.fetch_sub(1, Relaxed);
        if commit_tx.send(commit).is_err() {
            break;
        }
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
        .filter(|env| keys::valid_name(&env.client))
        .map(|env| result(shared, &env, attempt, Err(WireError::Remote(format!("dead-lettered: {why}")))));
    Commit { entry: entry.id.clone(), reply, dead: Some((why, raw)) }
}

fn result(shared: &Shared, env: &Envelope, attempt: u32, outcome: Result<Vec<u8>, WireError>) -> Reply {
    let msg = wire::encode(&ResultMsg { id: env.id.clone(), attempt, outcome });
    let sig = shared.cfg.signer.sign(&msg);
    Reply { task: env.id.clone(), client: env.client.clone(), msg, sig }
}

fn process(shared: &Shared, d: &Delivery) -> Commit {
    let cfg = &shared.cfg;
    let e = &d.entry;
    let Some(msg) = e.field(wire::MSG) else {
        return dead_letter(shared, e, d.attempt, format!("malformed entry: no `{}` field", wire::MSG));
    };
    if msg.len() > cfg.max_bytes {
        let why =
            format!("oversized message: {} bytes, over the limit of {} bytes", msg.len(), cfg.max_bytes);
        return Commit { entry: e.id.clone(), reply: None, dead: Some((why, Vec::new())) }.counted(shared);
    }
    if let Err(why) = cfg.signer.verify(msg, e.field(wire::SIG)) {
        shared.failed.fetch_add(1, Relaxed);
        return dead_letter(shared, e, d.attempt, why);
    }
    let env: Envelope = match wire::decode(msg, cfg.max_bytes) {
        Ok(env) => env,
        Err(why) => return dead_letter(shared, e, d.attempt, why),
    };
    if env.version != wire::VERSION || !keys::valid_name(&env.client) {
        let why = format!("unsupported message (version {}, client `{}`)", env.version, env.client);
        return dead_letter(shared, e, d.attempt, why);
    }
    let outcome = match &env.job {
        Job::Task { name, build, args } => {
            if build != crate::build::build_id() {
                let why = format!(
                    "task `{name}` comes from build `{build}`, but this worker is build `{}`; run workers from an identical copy of the caller's binary",
                    crate::build::build_id()
                );
                return refuse(shared, e, &env, d.attempt, why);
            }
            if !remote::is_registered(name) {
                let known = escala::registered_tasks().join(", ");
                let why = format!("unknown task `{name}`; this worker registers: [{known}]");
                return refuse(shared, e, &env, d.attempt, why);
            }
            remote::run_registered(name, args)
        }
        Job::Command { program, args } => {
            if !cfg.allow_commands {
                let why = format!(
                    "command `{program}` refused: this worker does not allow commands (start it with --allow-commands)"
                );
                return refuse(shared, e, &env, d.attempt, why);
            }
            run_command(program, args, cfg.max_bytes / 2)
        }
    };
    shared.ran.fetch_add(1, Relaxed);
    let outcome = match outcome {
        Ok(bytes) if bytes.len() > cfg.max_bytes => Err(ErrorKind::Codec(format!(
            "the result is {} bytes, over the limit of {} bytes",
            bytes.len(),
            cfg.max_bytes
        ))),
        other => other,
    };
    let counter = if outcome.is_ok() { &shared.ok } else { &shared.failed };
    counter.fetch_add(1, Relaxed);
    let reply = result(shared, &env, d.attempt, outcome.map_err(WireError::from_kind));
    Commit { entry: e.id.clone(), reply: Some(reply), dead: None }
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

/// Runs an external command with no input, capturing at most `cap` bytes of each output.
fn run_command(program: &str, args: &[String], cap: usize) -> Result<Vec<u8>, ErrorKind> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ErrorKind::Spawn(format!("cannot run `{program}`: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    let cut = |mut v: Vec<u8>| {
        v.truncate(cap);
        v
    };
    let result = CommandOutput {
        code: out.status.code(),
        signal: out.status.signal(),
        stdout: cut(out.stdout),
        stderr: cut(out.stderr),
    };
    remote::encode(&result).map_err(ErrorKind::Codec)
}
