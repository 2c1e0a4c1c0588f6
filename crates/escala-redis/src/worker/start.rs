//! The start step: just before a run thread runs a task, one script call checks the entry
//! is still this worker's, skips it if the caller cancelled it, and counts the run as an
//! attempt. Attempts are counted here, when a run starts, and not on delivery: a task that
//! was only prefetched by a worker that died did not run, so its redelivery costs it no
//! attempt. (A run thread with short tasks sends a few starts ahead: see `exec.rs`.)
//!
//! The run threads do not call Redis themselves: they hand their start requests to one
//! starter thread, which runs the script once for all the requests waiting (one round trip
//! and one script call for a batch, as the commit thread does for results).

use crossbeam_channel::{Receiver, Sender};
use redis::{Connection, RedisResult};

use super::Shared;
use crate::conn::Conn;
use crate::keys::{self, GROUP};

/// Largest number of starts in one script call.
const BATCH: usize = 256;

/// KEYS: stream, attempts hash, stats hash, then each task's cancel key.
/// ARGV: group, consumer, max attempts, then each task's entry id (in the same order).
/// Returns per task -1 when another worker holds the entry now, 0 when the task was
/// cancelled, else the number of this run (1 for the first); a number above max attempts
/// was not counted as a redelivery and must not run.
pub(crate) const START: &str = r#"
local out, again = {}, 0
for i = 4, #ARGV do
  local e = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e, e, 1)
  if not p[1] or p[1][2] ~= ARGV[2] then
    out[i - 3] = -1
  elseif redis.call('EXISTS', KEYS[i]) == 1 then
    out[i - 3] = 0
  else
    local n = redis.call('HINCRBY', KEYS[2], e, 1)
    if n > 1 and n <= tonumber(ARGV[3]) then again = again + 1 end
    out[i - 3] = n
  end
end
if again > 0 then redis.call('HINCRBY', KEYS[3], 'redelivered', again) end
return out
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

/// One run thread's request: start `entry` (the stream entry id) of task `task`.
pub(crate) struct Request {
    pub(crate) entry: String,
    pub(crate) task: String,
    pub(crate) reply: Sender<Start>,
}

/// The starter thread: until every run thread is gone, takes the requests waiting, starts
/// them in one script call, and answers each.
pub(super) fn run(shared: &Shared, client: redis::Client, rx: Receiver<Request>) {
    let mut conn = Conn::new(client, Some(std::time::Duration::from_secs(10)));
    while let Ok(first) = rx.recv() {
        let batch = super::take_batch(&rx, first, BATCH);
        let starts = match conn.run(&shared.never, |c| start(c, shared, &batch)) {
            Some(Ok(starts)) if starts.len() == batch.len() => starts,
            Some(Ok(_)) => vec![Start::Run(1); batch.len()],
            Some(Err(e)) => {
                // Redis refused the step (out of memory, say): run uncounted rather than never.
                eprintln!("escala-redis worker: starting tasks could not count their attempts: {e}");
                vec![Start::Run(1); batch.len()]
            }
            None => unreachable!("starts are never stopped"),
        };
        for (req, s) in batch.into_iter().zip(starts) {
            let _ = req.reply.send(s);
        }
    }
}

/// Runs the start script for a batch of requests.
fn start(c: &mut Connection, shared: &Shared, batch: &[Request]) -> RedisResult<Vec<Start>> {
    let cfg = &shared.cfg;
    let mut inv = shared.start_script.key(&cfg.keys.stream);
    inv.key(&cfg.keys.attempts).key(&cfg.keys.stats);
    for r in batch {
        inv.key(keys::cancel(&r.task));
    }
    inv.arg(GROUP).arg(&cfg.consumer).arg(cfg.max_attempts);
    for r in batch {
        inv.arg(&r.entry);
    }
    let ns: Vec<i64> = inv.invoke(c)?;
    Ok(ns
        .into_iter()
        .map(|n| {
            let run = u32::try_from(n).unwrap_or(u32::MAX);
            match n {
                ..0 => Start::Lost,
                0 => Start::Cancelled,
                _ if run > cfg.max_attempts => Start::GiveUp(run - 1),
                _ => Start::Run(run),
            }
        })
        .collect())
}
