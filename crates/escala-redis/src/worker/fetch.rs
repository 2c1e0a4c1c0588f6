//! The fetch thread: reads new tasks from the consumer group in batches (`XREADGROUP`),
//! counts each delivery's attempt, and hands the tasks to the run threads. Also the
//! dispatch step the lease thread uses for reclaimed tasks.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crossbeam_channel::Sender;
use redis::{Connection, RedisResult, Value};

use super::Shared;
use super::commit::Commit;
use super::exec::Delivery;
use crate::conn::{self, Conn, Entry};
use crate::keys::GROUP;

const BLOCK_MS: u64 = 250;

pub(super) fn run(
    shared: &Shared,
    client: redis::Client,
    run_tx: Sender<Delivery>,
    commit_tx: Sender<Commit>,
) {
    let mut conn = Conn::new(client, Some(Duration::from_millis(BLOCK_MS) + Duration::from_secs(5)));
    let cfg = &shared.cfg;
    loop {
        let free = shared.wait_space();
        if free == 0 {
            break;
        }
        let read = conn.run(&shared.stopping, |c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&cfg.consumer)
                .arg("COUNT")
                .arg(free)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&cfg.keys.stream)
                .arg(">")
                .query::<Value>(c)
        });
        let entries = match read {
            None => break,
            Some(Ok(v)) => conn::read_reply(&v),
            Some(Err(e)) => {
                // NOGROUP after Redis lost its data: make the group again.
                if e.code() == Some("NOGROUP") {
                    let _ = conn.run(&shared.stopping, |c| crate::status::ensure_queue(c, &cfg.keys));
                } else {
                    eprintln!("escala-redis worker: fetching failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        };
        if !entries.is_empty() {
            dispatch(shared, &mut conn, entries, &run_tx, &commit_tx);
        }
    }
}

/// Holds the entries, counts their attempts, and sends each one to run — or to the
/// dead-letter stream when it has had its attempts.
pub(super) fn dispatch(
    shared: &Shared,
    conn: &mut Conn,
    entries: Vec<Entry>,
    run_tx: &Sender<Delivery>,
    commit_tx: &Sender<Commit>,
) {
    let cfg = &shared.cfg;
    shared.held().extend(entries.iter().map(|e| e.id.clone()));
    let attempts = conn
        .run(&shared.never, |c| count_attempts(c, shared, &entries))
        .and_then(Result::ok)
        .unwrap_or_else(|| vec![1; entries.len()]);
    for (entry, attempt) in entries.into_iter().zip(attempts) {
        let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
        if attempt > 1 {
            shared.redelivered.fetch_add(1, Relaxed);
        }
        if attempt > cfg.max_attempts {
            let why = format!(
                "gave up after {} deliveries (max attempts {}); last error: the worker holding it stopped renewing its lease (it died or hung)",
                attempt - 1,
                cfg.max_attempts
            );
            let _ = commit_tx.send(super::exec::dead_letter(shared, &entry, attempt, why));
            continue;
        }
        if let Err(back) = run_tx.send(Delivery { entry, attempt }) {
            // The run threads are gone (stopping): leave it pending for another worker.
            shared.release([back.0.entry.id]);
        }
    }
}

fn count_attempts(c: &mut Connection, shared: &Shared, entries: &[Entry]) -> RedisResult<Vec<i64>> {
    let keys = &shared.cfg.keys;
    let mut pipe = redis::pipe();
    for e in entries {
        pipe.cmd("HINCRBY").arg(&keys.attempts).arg(&e.id).arg(1);
    }
    let counts: Vec<i64> = pipe.query(c)?;
    let again = counts.iter().filter(|&&n| n > 1).count();
    if again > 0 {
        redis::cmd("HINCRBY").arg(&keys.stats).arg("redelivered").arg(again).query::<()>(c)?;
    }
    Ok(counts)
}
