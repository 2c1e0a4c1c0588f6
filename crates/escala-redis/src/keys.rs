//! The Redis key layout (see `README.md` beside this file). Every key starts with `escala:`.

/// The consumer group every worker of a queue joins.
pub(crate) const GROUP: &str = "escala-workers";
/// Set of queue names ever used (for `escala status`).
pub(crate) const QUEUES: &str = "escala:queues";
/// Hash: worker id → JSON heartbeat record.
pub(crate) const WORKERS: &str = "escala:workers";

/// The keys of one queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueKeys {
    pub(crate) name: String,
    /// Stream of task messages (consumer group [`GROUP`]).
    pub(crate) stream: String,
    /// Stream of dead letters: the original message and the reason.
    pub(crate) dead: String,
    /// Hash: stream entry id → runs started (counted when a run starts, not on delivery).
    pub(crate) attempts: String,
    /// Hash of counters: completed, duplicate_results, redelivered, dead_letters, cancelled.
    pub(crate) stats: String,
    /// Pub/sub channel: the id of each task a caller cancels (workers subscribe).
    pub(crate) cancels: String,
}

impl QueueKeys {
    pub(crate) fn new(name: &str) -> QueueKeys {
        QueueKeys {
            name: name.to_string(),
            stream: format!("escala:q:{name}"),
            dead: format!("escala:dead:{name}"),
            attempts: format!("escala:attempts:{name}"),
            stats: format!("escala:stats:{name}"),
            cancels: format!("escala:cancels:{name}"),
        }
    }
}

/// Hash holding a task's first result (`m`, `s`, `j`) for the result TTL (`HSETNX`: the first
/// result wins).
pub(crate) fn result(task: &str) -> String {
    format!("escala:result:{task}")
}

/// String key set (with the result TTL) when a caller cancels a task: a worker skips the task,
/// or stops it if it runs.
pub(crate) fn cancel(task: &str) -> String {
    format!("escala:cancel:{task}")
}

/// Stream a caller reads its results from.
pub(crate) fn reply(client: &str) -> String {
    format!("escala:reply:{client}")
}

/// Checks a queue or client name: 1..=128 of `[A-Za-z0-9_.-]`.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}
