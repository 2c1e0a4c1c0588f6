//! [`Status`]: what `escala status` shows — each queue's depth, pending, in-flight and
//! dead letters, and the live workers from their heartbeats.

use std::collections::HashMap;

use redis::{Connection, RedisResult, Value};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::keys::{GROUP, QUEUES, QueueKeys, WORKERS};

/// A worker counts as live while its last heartbeat is younger than this many heartbeats.
const LIVE_HEARTBEATS: u64 = 3;

/// One worker's heartbeat record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its consumer name (`host-pid-random`).
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// Queues it runs.
    pub queues: Vec<String>,
    /// Tasks it runs at once.
    pub concurrency: usize,
    /// Tasks running at its last heartbeat.
    pub running: u64,
    /// Tasks it has run.
    pub ran: u64,
    /// escala-redis version.
    pub version: String,
    /// When it started (Unix ms).
    pub started_ms: u64,
    /// Its last heartbeat (Unix ms).
    pub last_seen_ms: u64,
    /// Its heartbeat period (ms).
    pub heartbeat_ms: u64,
}

/// One queue's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// The queue's name.
    pub name: String,
    /// Tasks not yet delivered to any worker.
    pub depth: u64,
    /// Tasks delivered to a worker and not yet acknowledged (held, running or awaiting
    /// reclaim).
    pub pending: u64,
    /// Tasks running now, from the live workers' heartbeats.
    pub in_flight: u64,
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
    /// Results stored.
    pub completed: u64,
    /// Runs started that were not a task's first (after the worker running it died or hung).
    pub redelivered: u64,
    /// Results found already stored by an earlier attempt (duplicate executions).
    pub duplicate_results: u64,
}

/// A snapshot of every queue and live worker on one Redis server.
///
/// # Examples
///
/// ```no_run
/// let status = escala_redis::Status::fetch("redis://127.0.0.1:6379")?;
/// for q in &status.queues {
///     println!("{}: {} waiting, {} dead", q.name, q.depth, q.dead_letters);
/// }
/// # Ok::<(), escala_redis::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Every queue ever used on this server, by name.
    pub queues: Vec<QueueStatus>,
    /// Workers whose last heartbeat is recent.
    pub workers: Vec<WorkerInfo>,
}

impl Status {
    /// Reads the status from the Redis server at `url`.
    ///
    /// # Errors
    ///
    /// A bad URL, Redis not reachable, or an error answer.
    /// For `rediss://` with a CA file, use [`Server::status`](crate::Server::status).
    pub fn fetch(url: &str) -> Result<Status, Error> {
        crate::Server::new(url).status()
    }
}

pub(crate) fn read(c: &mut Connection) -> RedisResult<Status> {
    let now = now_ms();
    let records: HashMap<String, String> = redis::cmd("HGETALL").arg(WORKERS).query(c)?;
    let mut workers: Vec<WorkerInfo> = records
        .values()
        .filter_map(|j| serde_json::from_str::<WorkerInfo>(j).ok())
        .filter(|w| now.saturating_sub(w.last_seen_ms) <= LIVE_HEARTBEATS * w.heartbeat_ms.max(1000))
        .collect();
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    let mut names: Vec<String> = redis::cmd("SMEMBERS").arg(QUEUES).query(c)?;
    names.sort();
    let mut queues = Vec::new();
    for name in names {
        let k = QueueKeys::new(&name);
        let len: u64 = redis::cmd("XLEN").arg(&k.stream).query(c)?;
        let pending = match redis::cmd("XPENDING").arg(&k.stream).arg(GROUP).query::<Value>(c) {
            Ok(Value::Array(v)) => match v.first() {
                Some(Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        };
        let dead: u64 = redis::cmd("XLEN").arg(&k.dead).query(c)?;
        let stats: HashMap<String, u64> = redis::cmd("HGETALL").arg(&k.stats).query(c)?;
        let get = |f: &str| stats.get(f).copied().unwrap_or(0);
        queues.push(QueueStatus {
            in_flight: workers.iter().filter(|w| w.queues.contains(&name)).map(|w| w.running).sum(),
            depth: len.saturating_sub(pending),
            pending,
            dead_letters: dead,
            completed: get("completed"),
            redelivered: get("redelivered"),
            duplicate_results: get("duplicate_results"),
            name,
        });
    }
    Ok(Status { queues, workers })
}

/// Registers the queue and makes its consumer group (reading from the start).
pub(crate) fn ensure_queue(c: &mut Connection, k: &QueueKeys) -> RedisResult<()> {
    redis::cmd("SADD").arg(QUEUES).arg(&k.name).query::<()>(c)?;
    match redis::cmd("XGROUP").arg("CREATE").arg(&k.stream).arg(GROUP).arg("0").arg("MKSTREAM").query::<()>(c)
    {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// This machine's host name.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
