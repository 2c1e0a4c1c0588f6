//! The start step: one script call, made by a run thread just before it runs a task, that
//! checks the entry is still this worker's, renews its lease, skips it if the caller
//! cancelled it, and counts the run as an attempt. Attempts are counted here, when a run
//! starts, and not on delivery: a task that was only prefetched by a worker that died did
//! not run, so its redelivery costs it no attempt.

use redis::{Connection, RedisResult};

use super::Shared;
use crate::keys::{self, GROUP};

/// KEYS: stream, attempts hash, stats hash, the task's cancel key.
/// ARGV: group, consumer, entry id, max attempts.
/// Returns -1 when another worker holds the entry now, 0 when the task was cancelled, else
/// the number of this run (1 for the first); a number above max attempts was not counted
/// as a redelivery and must not run.
pub(crate) const START: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p[1] or p[1][2] ~= ARGV[2] then return -1 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local n = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
if n > 1 and n <= tonumber(ARGV[4]) then redis.call('HINCRBY', KEYS[3], 'redelivered', 1) end
return n
"#;

/// What the start step decided for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Run it: this is run number `n` (1 for the first).
    Run(u32),
    /// Its caller cancelled it before it started: store `Cancelled`, do not run it.
    Cancelled,
    /// It has started `max_attempts` runs already (each ended with its worker gone).
    GiveUp(u32),
    /// Another worker took it over (this worker's lease lapsed): leave it to that one.
    Lost,
}

/// Runs the start script for `entry` (the stream entry id) of task `task`.
pub(crate) fn start(c: &mut Connection, shared: &Shared, entry: &str, task: &str) -> RedisResult<Start> {
    let cfg = &shared.cfg;
    let n: i64 = shared
        .start_script
        .key(&cfg.keys.stream)
        .key(&cfg.keys.attempts)
        .key(&cfg.keys.stats)
        .key(keys::cancel(task))
        .arg(GROUP)
        .arg(&cfg.consumer)
        .arg(entry)
        .arg(cfg.max_attempts)
        .invoke(c)?;
    let run = u32::try_from(n).unwrap_or(u32::MAX);
    Ok(match n {
        ..0 => Start::Lost,
        0 => Start::Cancelled,
        _ if run > cfg.max_attempts => Start::GiveUp(run - 1),
        _ => Start::Run(run),
    })
}
