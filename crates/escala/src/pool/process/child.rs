//! The worker side of a process pool: what `escala::init()` does in a pool worker.
//!
//! A reader thread takes frames off the socket into a local queue (and handles `Cancel`);
//! the main thread runs jobs in arrival order and writes one `Done` each, flushing its
//! buffered replies whenever it has no job at hand — so tiny jobs travel in batches.

use std::collections::HashSet;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use crossbeam_channel::TryRecvError;

use super::wire::{FromWorker, ToWorker};
use crate::handle::{CancelToken, TaskName, UnitKind, pair};
use crate::process::child::{cap_reply, fatal, finish_process};
use crate::process::frame::{self, FrameKind};
use crate::task::{self, Reply};

/// Cap for the small frames around jobs (ids, names) on top of the argument cap.
const ENVELOPE: usize = 64 << 10;

/// The job the main thread is running, so `Cancel` can reach its token.
#[derive(Default)]
struct Running {
    id: u64,
    token: Option<CancelToken>,
    /// Prefetched jobs cancelled before they started.
    dropped: HashSet<u64>,
}

pub(crate) fn serve_worker(sock: UnixStream, max: usize) -> ! {
    let Ok(read_half) = sock.try_clone() else { fatal("cannot clone the pool socket") };
    let mut reader = BufReader::with_capacity(64 << 10, read_half);
    let mut out = BufWriter::with_capacity(64 << 10, sock);
    let init = match read(&mut reader, max) {
        Some(ToWorker::Hello { build, init }) if build == *crate::process::build_id() => init,
        Some(ToWorker::Hello { build, .. }) => {
            let why =
                format!("the pool is build `{build}` but this worker is `{}`", crate::process::build_id());
            send(
                &mut out,
                &FromWorker::Ready { pid: std::process::id(), init: Some(Reply::Refused(why)) },
                max,
            );
            finish_process();
        }
        _ => finish_process(), // the pool went away, or spoke out of turn
    };
    let init_err = init.map(|(name, args)| task::run_by_name(&name, &args, CancelToken::never()));
    let init_err = init_err.filter(|r| !matches!(r, Reply::Ok(_)));
    let failed = init_err.is_some();
    send(&mut out, &FromWorker::Ready { pid: std::process::id(), init: init_err }, max);
    let _ = out.flush();
    if failed {
        finish_process();
    }

    let running = Arc::new(Mutex::new(Running::default()));
    let (jobs_tx, jobs) = crossbeam_channel::unbounded::<(u64, String, Vec<u8>)>();
    let r = running.clone();
    let spawned = std::thread::Builder::new().name("escala-worker-reader".into()).spawn(move || {
        while let Some(msg) = read(&mut reader, max) {
            match msg {
                ToWorker::Job { id, task, args } => {
                    if jobs_tx.send((id, task, args)).is_err() {
                        break;
                    }
                }
                ToWorker::Cancel { id } => {
                    let mut run = r.lock().unwrap_or_else(|e| e.into_inner());
                    match &run.token {
                        Some(token) if run.id == id => token.cancel(),
                        _ => {
                            run.dropped.insert(id);
                        }
                    }
                }
                ToWorker::Hello { .. } => break,
            }
        }
    });
    if spawned.is_err() {
        fatal("cannot start the worker's reader thread");
    }
    loop {
        let (id, name, args) = match jobs.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Empty) => {
                let _ = out.flush();
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let (_h, c) = pair::<()>(TaskName::Static(""), UnitKind::PoolTask);
        let token = CancelToken::of(&c);
        {
            let mut run = running.lock().unwrap_or_else(|e| e.into_inner());
            if run.dropped.remove(&id) {
                drop(run);
                send(&mut out, &FromWorker::Done { id, reply: Reply::Cancelled }, max);
                continue;
            }
            *run = Running { id, token: Some(token.clone()), dropped: std::mem::take(&mut run.dropped) };
        }
        let reply = task::run_by_name(&name, &args, token);
        running.lock().unwrap_or_else(|e| e.into_inner()).token = None;
        send(&mut out, &FromWorker::Done { id, reply: cap_reply(reply, max as u64) }, max);
    }
    let _ = out.flush();
    finish_process();
}

fn read(r: &mut BufReader<UnixStream>, max: usize) -> Option<ToWorker> {
    match frame::read_frame(r, FrameKind::ToWorker, max + ENVELOPE) {
        Ok(Some(bytes)) => task::decode(&bytes).ok(),
        _ => None,
    }
}

fn send(out: &mut BufWriter<UnixStream>, msg: &FromWorker, _max: usize) {
    // Replies were capped by `cap_reply`; the parent allows an envelope on top.
    if let Ok(bytes) = task::encode(msg) {
        let _ = frame::write_frame_unflushed(out, FrameKind::FromWorker, &bytes);
    }
}
