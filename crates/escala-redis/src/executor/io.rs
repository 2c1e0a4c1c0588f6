//! The executor's two threads: the sender batches task messages into pipelined `XADD`s
//! (and cancel requests into `SET` + `PUBLISH`); the reader blocks on the caller's reply
//! stream and resolves handles.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use escala::ErrorKind;
use redis::Value;

use super::Inner;
use crate::conn::{self, Conn, Entry};
use crate::keys;
use crate::wire::{self, ResultMsg};

/// Largest number of tasks sent in one pipeline.
const BATCH: usize = 512;
/// How long one blocking read of the reply stream waits.
const BLOCK_MS: u64 = 250;
const POLL: Duration = Duration::from_millis(100);

/// What the sender thread sends.
pub(super) enum Outgoing {
    /// One encoded task.
    Task { seq: u64, msg: Vec<u8>, sig: Vec<u8> },
    /// A cancel request for a task the caller cancelled: the key workers check before they
    /// start a task, then the message that stops it where it runs.
    Cancel { task: String },
}

pub(super) fn spawn(
    inner: &Arc<Inner>,
    client: redis::Client,
    rx: Receiver<Outgoing>,
    result_ttl: Duration,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let ttl = result_ttl.as_secs().max(1);
    let send = {
        let inner = inner.clone();
        let client = client.clone();
        std::thread::Builder::new()
            .name("escala-redis-send".into())
            .spawn(move || sender(&inner, client, rx, ttl))?
    };
    let read = {
        let inner = inner.clone();
        std::thread::Builder::new().name("escala-redis-read".into()).spawn(move || reader(&inner, client))?
    };
    Ok(vec![send, read])
}

fn sender(inner: &Inner, client: redis::Client, rx: Receiver<Outgoing>, ttl: u64) {
    let mut conn = Conn::new(client, Some(Duration::from_secs(10)));
    loop {
        let first = match rx.recv_timeout(POLL) {
            Ok(o) => o,
            Err(RecvTimeoutError::Timeout) if inner.stop.load(Relaxed) => break,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        for o in &batch {
            match o {
                Outgoing::Task { msg, sig, .. } => {
                    let cmd = pipe.cmd("XADD").arg(&inner.keys.stream).arg("*").arg(wire::MSG).arg(msg);
                    if !sig.is_empty() {
                        cmd.arg(wire::SIG).arg(sig);
                    }
                    cmd.ignore();
                }
                Outgoing::Cancel { task } => {
                    pipe.cmd("SET").arg(keys::cancel(task)).arg(1).arg("EX").arg(ttl).ignore();
                    pipe.cmd("PUBLISH").arg(&inner.keys.cancels).arg(task).ignore();
                }
            }
        }
        // The reply stream lives as long as results do, in case this caller goes away.
        pipe.cmd("EXPIRE").arg(&inner.reply_key).arg(ttl).ignore();
        let why = match conn.run(&inner.stop, |c| pipe.query::<()>(c)) {
            Some(Ok(())) => continue,
            Some(Err(e)) => format!("cannot send the task: {e}"),
            None => "the executor stopped before the task could be sent".to_string(),
        };
        for o in batch {
            match o {
                Outgoing::Task { seq, .. } => {
                    inner.resolve(seq, Err(ErrorKind::Broker(why.clone())));
                }
                // Its handle is resolved already; the task may still run.
                Outgoing::Cancel { task } => eprintln!("escala-redis: cancelling task {task}: {why}"),
            }
        }
    }
}

fn reader(inner: &Inner, client: redis::Client) {
    let mut conn = Conn::new(client, Some(Duration::from_millis(BLOCK_MS) + Duration::from_secs(5)));
    let mut last = "0-0".to_string();
    while !inner.stop.load(Relaxed) {
        // Entries read are not needed again: the next read first trims the stream below
        // the last one read, in the same round trip. Approximate trimming (`~`) drops whole
        // stream nodes only: one command per read, far less work for Redis than an `XDEL`
        // of each entry (W6: `XDEL` had cost Redis about 5 µs per task).
        let read = conn.run(&inner.stop, |c| {
            let mut pipe = redis::pipe();
            if last != "0-0" {
                pipe.cmd("XTRIM").arg(&inner.reply_key).arg("MINID").arg("~").arg(&last).ignore();
            }
            pipe.cmd("XREAD")
                .arg("COUNT")
                .arg(1000)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&inner.reply_key)
                .arg(&last);
            pipe.query::<(Value,)>(c).map(|(v,)| v)
        });
        let entries = match read {
            None => break,
            Some(Ok(v)) => conn::read_reply(&v),
            Some(Err(e)) => {
                eprintln!("escala-redis: reading results failed: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if entries.is_empty() {
            continue;
        }
        for e in &entries {
            last = e.id.clone();
            accept(inner, e);
        }
    }
}

/// Checks one result message and resolves its handle.
fn accept(inner: &Inner, e: &Entry) {
    let msg = e.field(wire::MSG).unwrap_or_default();
    let checked = inner
        .signer
        .verify(msg, e.field(wire::SIG))
        .and_then(|()| wire::decode::<ResultMsg>(msg, inner.max_bytes + 4096));
    let r = match checked {
        Ok(r) => r,
        Err(why) => {
            inner.bad_results.fetch_add(1, Relaxed);
            eprintln!("escala-redis: result entry {} refused: {why}", e.id);
            return;
        }
    };
    let Some(seq) = inner.seq_of(&r.id) else {
        inner.bad_results.fetch_add(1, Relaxed);
        return;
    };
    inner.resolve(seq, r.outcome.map_err(wire::WireError::into_kind));
}
