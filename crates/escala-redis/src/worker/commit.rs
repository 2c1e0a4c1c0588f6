//! The commit thread: stores results and acknowledges tasks in pipelined batches.
//!
//! One Lua script per batch makes "store the result, notify the caller, acknowledge" one
//! atomic step, so a task is never acknowledged without its result, and a second result
//! for the same task (after a redelivery) is detected and counted instead of replacing the
//! first.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crossbeam_channel::Receiver;
use redis::{Connection, RedisResult};

use super::Shared;
use crate::conn::Conn;
use crate::keys::{self, GROUP};
use crate::wire;

const BATCH: usize = 256;

/// Commits a batch of results in one call.
/// KEYS: stream, stats hash, attempts hash, then per task its result hash and reply stream.
/// ARGV: group, ttl seconds, then per task its entry id, result message, signature and job
/// label.
/// Returns, per task, 1 when its result was stored, 0 when one already was (a duplicate,
/// whose first result is sent again instead).
const FINISH: &str = r#"
local n = (#KEYS - 3) / 2
local firsts, entries, expired = {}, {}, {}
local stored, dups = 0, 0
for i = 1, n do
  local rk, pk = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local e, m, s, j = ARGV[4 * i - 1], ARGV[4 * i], ARGV[4 * i + 1], ARGV[4 * i + 2]
  local first = redis.call('HSETNX', rk, 'm', m)
  if first == 1 then
    redis.call('HSET', rk, 's', s, 'j', j)
    redis.call('EXPIRE', rk, ARGV[2])
    stored = stored + 1
  else
    m = redis.call('HGET', rk, 'm')
    s = redis.call('HGET', rk, 's') or ''
    dups = dups + 1
  end
  redis.call('XADD', pk, 'MAXLEN', '~', 1000000, '*', 'm', m, 's', s)
  if not expired[pk] then
    redis.call('EXPIRE', pk, ARGV[2])
    expired[pk] = true
  end
  firsts[i] = first
  entries[i] = e
end
if n > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(entries))
  redis.call('XDEL', KEYS[1], unpack(entries))
  redis.call('HDEL', KEYS[3], unpack(entries))
end
if stored > 0 then redis.call('HINCRBY', KEYS[2], 'completed', stored) end
if dups > 0 then redis.call('HINCRBY', KEYS[2], 'duplicate_results', dups) end
return firsts
"#;

/// What to do with one held entry once it is handled.
pub(crate) struct Commit {
    pub(crate) entry: String,
    /// The result to store and send back, when there is a caller to tell.
    pub(crate) reply: Option<Reply>,
    /// Move the entry to the dead-letter stream: the reason and the raw message.
    pub(crate) dead: Option<(String, Vec<u8>)>,
}

/// A result for the caller.
pub(crate) struct Reply {
    pub(crate) task: String,
    pub(crate) client: String,
    /// What ran (`Job::label`), kept beside the result for `escala status --result`.
    pub(crate) job: String,
    pub(crate) msg: Vec<u8>,
    pub(crate) sig: Vec<u8>,
}

/// The worker's Lua scripts, loaded by hash (and again after Redis restarts).
pub(crate) struct Scripts {
    pub(crate) finish: redis::Script,
}

impl Scripts {
    pub(crate) fn load(c: &mut Connection) -> RedisResult<Scripts> {
        let s = Scripts { finish: redis::Script::new(FINISH) };
        s.reload(c)?;
        Ok(s)
    }

    pub(crate) fn reload(&self, c: &mut Connection) -> RedisResult<()> {
        for src in [FINISH, super::lease::RENEW, super::start::START] {
            redis::cmd("SCRIPT").arg("LOAD").arg(src).query::<String>(c)?;
        }
        Ok(())
    }
}

pub(super) fn run(shared: &Shared, client: redis::Client, scripts: Scripts, rx: Receiver<Commit>) {
    let mut conn = Conn::new(client, Some(Duration::from_secs(10)));
    while let Ok(first) = rx.recv() {
        let batch = super::take_batch(&rx, first, BATCH);
        loop {
            match conn.run(&shared.never, |c| commit(c, shared, &scripts, &batch)) {
                Some(Ok(stored)) => {
                    let dups = stored.iter().filter(|&&s| s == 0).count() as u64;
                    shared.duplicates.fetch_add(dups, Relaxed);
                    break;
                }
                Some(Err(e)) if e.code() == Some("NOSCRIPT") => {
                    let _ = conn.run(&shared.never, |c| scripts.reload(c));
                }
                Some(Err(e)) => {
                    // Not transient (for example out of memory): report and try again, the
                    // task must not be acknowledged without its result.
                    eprintln!("escala-redis worker: storing results failed: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                None => unreachable!("commits are never stopped"),
            }
        }
        shared.release(batch.into_iter().map(|c| c.entry));
    }
}

/// Commits one batch in one round trip; returns, per result, 1 if it was the first.
fn commit(c: &mut Connection, shared: &Shared, scripts: &Scripts, batch: &[Commit]) -> RedisResult<Vec<i64>> {
    let cfg = &shared.cfg;
    let k = &cfg.keys;
    let mut pipe = redis::pipe();
    for cm in batch {
        if let Some((why, raw)) = &cm.dead {
            pipe.cmd("XADD")
                .arg(&k.dead)
                .arg("MAXLEN")
                .arg("~")
                .arg(100_000)
                .arg("*")
                .arg("entry")
                .arg(&cm.entry)
                .arg("reason")
                .arg(why)
                .arg("worker")
                .arg(&cfg.consumer)
                .arg(wire::MSG)
                .arg(raw)
                .ignore();
            pipe.cmd("HINCRBY").arg(&k.stats).arg("dead_letters").arg(1).ignore();
        }
        if cm.reply.is_none() {
            pipe.cmd("XACK").arg(&k.stream).arg(GROUP).arg(&cm.entry).ignore();
            pipe.cmd("XDEL").arg(&k.stream).arg(&cm.entry).ignore();
            pipe.cmd("HDEL").arg(&k.attempts).arg(&cm.entry).ignore();
        }
    }
    let replies: Vec<(&String, &Reply)> =
        batch.iter().filter_map(|cm| Some((&cm.entry, cm.reply.as_ref()?))).collect();
    if replies.is_empty() {
        pipe.query::<()>(c)?;
        return Ok(Vec::new());
    }
    let finish = pipe.cmd("EVALSHA").arg(scripts.finish.get_hash()).arg(3 + 2 * replies.len());
    finish.arg(&k.stream).arg(&k.stats).arg(&k.attempts);
    for (_, r) in &replies {
        finish.arg(keys::result(&r.task)).arg(keys::reply(&r.client));
    }
    finish.arg(GROUP).arg(cfg.ttl_secs);
    for (entry, r) in &replies {
        finish.arg(*entry).arg(&r.msg).arg(&r.sig).arg(&r.job);
    }
    let (firsts,): (Vec<i64>,) = pipe.query(c)?;
    Ok(firsts)
}
