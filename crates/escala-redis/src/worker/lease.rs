//! The lease thread: every third of a lease it renews the leases of the tasks this worker
//! holds, reclaims tasks whose lease expired (`XAUTOCLAIM`: their worker died), and
//! refreshes the worker's heartbeat record for `escala status`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use redis::{Connection, RedisResult, Value};

use super::Shared;
use super::exec::Delivery;
use crate::conn::{self, Conn};
use crate::keys::{GROUP, WORKERS};
use crate::status::{WorkerInfo, now_ms};

/// Renews leases by resetting the idle time of the entries this consumer still owns
/// (`XCLAIM … JUSTID` does not count a delivery); an entry another worker took is left.
/// KEYS: stream. ARGV: group, consumer, entry ids…
pub(crate) const RENEW: &str = r#"
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
"#;

pub(super) fn run(shared: &Shared, client: redis::Client, started: u64, run_tx: Sender<Delivery>) {
    let cfg = &shared.cfg;
    let tick = heartbeat(cfg.lease);
    let mut conn = Conn::new(client, Some(Duration::from_secs(10)));
    let mut run_tx = Some(run_tx);
    let mut cursor = "0-0".to_string();
    let mut next = Instant::now();
    while !shared.done.load(Relaxed) {
        if shared.stopping.load(Relaxed) {
            // The run threads must see their channel close once the fetcher is gone.
            run_tx = None;
        }
        if Instant::now() >= next {
            next = Instant::now() + tick;
            let held: Vec<String> = shared.held().iter().cloned().collect();
            if !held.is_empty() {
                let _ = conn.run(&shared.done, |c| renew(c, shared, &held));
            }
            let json = record(shared, started);
            let _ = conn.run(&shared.done, |c| {
                redis::cmd("HSET").arg(WORKERS).arg(&cfg.consumer).arg(&json).query::<()>(c)
            });
            if let Some(run_tx) = &run_tx {
                reclaim(shared, &mut conn, &mut cursor, run_tx);
            }
        }
        // A short wait so that stopping is noticed quickly; the tick is the timer.
        std::thread::sleep(Duration::from_millis(10).min(tick));
    }
    let _ = conn.run(&shared.never, |c| redis::cmd("HDEL").arg(WORKERS).arg(&cfg.consumer).query::<()>(c));
}

/// This worker's heartbeat record, as JSON.
pub(super) fn record(shared: &Shared, started_ms: u64) -> String {
    let cfg = &shared.cfg;
    let info = WorkerInfo {
        id: cfg.consumer.clone(),
        host: crate::status::hostname(),
        pid: std::process::id(),
        queues: vec![cfg.keys.name.clone()],
        concurrency: cfg.concurrency,
        running: shared.running.load(Relaxed),
        ran: shared.ran.load(Relaxed),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_ms,
        last_seen_ms: now_ms(),
        heartbeat_ms: heartbeat(cfg.lease).as_millis() as u64,
    };
    serde_json::to_string(&info).unwrap_or_default()
}

/// How often leases are renewed and the heartbeat record refreshed.
fn heartbeat(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

fn renew(c: &mut Connection, shared: &Shared, held: &[String]) -> RedisResult<()> {
    let cfg = &shared.cfg;
    // Loaded by the commit thread's `Scripts`; `invoke` reloads it after a Redis restart.
    let script = redis::Script::new(RENEW);
    for chunk in held.chunks(500) {
        let mut inv = script.key(&cfg.keys.stream);
        inv.arg(GROUP).arg(&cfg.consumer);
        for id in chunk {
            inv.arg(id);
        }
        inv.invoke::<i64>(c)?;
    }
    Ok(())
}

/// Takes over tasks whose lease expired, as many as fit.
fn reclaim(shared: &Shared, conn: &mut Conn, cursor: &mut String, run_tx: &Sender<Delivery>) {
    let cfg = &shared.cfg;
    let free = {
        let held = shared.held().len();
        shared.capacity().saturating_sub(held)
    };
    if free == 0 {
        return;
    }
    let lease_ms = cfg.lease.as_millis() as u64;
    let got = conn.run(&shared.stopping, |c| {
        redis::cmd("XAUTOCLAIM")
            .arg(&cfg.keys.stream)
            .arg(GROUP)
            .arg(&cfg.consumer)
            .arg(lease_ms)
            .arg(&*cursor)
            .arg("COUNT")
            .arg(free)
            .query::<Value>(c)
    });
    let Some(Ok(Value::Array(parts))) = got else { return };
    *cursor = parts.first().and_then(conn::string).unwrap_or_else(|| "0-0".into());
    let entries = parts.get(1).map(conn::entries).unwrap_or_default();
    if !entries.is_empty() {
        super::fetch::dispatch(shared, entries, run_tx);
    }
}
