//! The fetch thread: reads new tasks from the consumer group in batches (`XREADGROUP`)
//! and hands them to the run threads. Also the dispatch step the lease thread uses for
//! reclaimed tasks. Attempts are not counted here but when a run starts (`start.rs`).

use std::time::Duration;

use crossbeam_channel::Sender;
use redis::Value;

use super::Shared;
use super::exec::Delivery;
use crate::conn::{self, Conn, Entry};
use crate::keys::GROUP;

const BLOCK_MS: u64 = 250;

pub(super) fn run(shared: &Shared, client: redis::Client, run_tx: Sender<Delivery>) {
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
            dispatch(shared, entries, &run_tx);
        }
    }
}

/// Holds the entries and queues them for the run threads.
pub(super) fn dispatch(shared: &Shared, entries: Vec<Entry>, run_tx: &Sender<Delivery>) {
    shared.held().extend(entries.iter().map(|e| e.id.clone()));
    for entry in entries {
        if let Err(back) = run_tx.send(Delivery { entry }) {
            // The run threads are gone (stopping): leave it pending for another worker.
            shared.release([back.0.entry.id]);
        }
    }
}
