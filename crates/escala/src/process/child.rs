//! The child side of a process unit: what `escala::init()` does in a re-executed child.
//!
//! It reads one request frame from the socket passed as stdin, checks the build, runs the
//! named task (catching panics), writes one reply frame and exits 0. Everything that can go
//! wrong becomes a reply the parent can report; only a dead socket ends it silently.

use std::io::Write;

use super::frame::{self, FrameKind, Request};
use super::sys::{self, CHILD_ENV};
use crate::task::{self, Reply};

/// Runs the requested task and exits, if this process is a re-executed child.
pub(crate) fn run_if_child() {
    let Some(marker) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    sys::forget_child_marker();
    let marker = marker.to_string_lossy().into_owned();
    let mut parts = marker.split(':');
    let (Some("1"), Some(ppid), Some(max)) = (parts.next(), parts.next(), parts.next()) else {
        fatal(&format!("{CHILD_ENV}={marker:?} is not a marker this build understands"));
    };
    let (Ok(ppid), Ok(max)) = (ppid.parse::<i32>(), max.parse::<usize>()) else {
        fatal(&format!("{CHILD_ENV}={marker:?} is malformed"));
    };
    sys::die_with_parent(ppid);
    let mut sock = match sys::take_request_socket() {
        Ok(s) => s,
        Err(e) => fatal(&format!("{CHILD_ENV} is set but stdin is not an escala socket ({e})")),
    };
    // The request also carries the build id and the task name: allow for them.
    let (reply, max_reply) = match frame::read_frame(&mut sock, FrameKind::Request, max + REQUEST_OVERHEAD) {
        Ok(Some(bytes)) => match task::decode::<Request>(&bytes) {
            Ok(req) => (serve(&req), req.max_reply),
            Err(e) => (Reply::Codec(format!("cannot decode the request: {e}")), max as u64),
        },
        Ok(None) => std::process::exit(0), // the parent went away before asking
        Err(e) => (Reply::Codec(format!("cannot read the request: {e}")), max as u64),
    };
    // The process ends when its task does, and so do the units the task started: the
    // parent's handle resolves when this process has ended, as `multiprocessing` joins do.
    drop(crate::runtime::ExitGuard::new());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let _ = frame::write_frame(&mut sock, FrameKind::Reply, &encode_capped(&reply, max_reply));
    std::process::exit(0);
}

/// Bytes the reply enum adds around its payload (tag and length prefix), at most.
const REPLY_ENVELOPE: usize = 16;

/// Room for the build id, the task name and the encoding around the arguments.
const REQUEST_OVERHEAD: usize = 64 << 10;

/// Encodes the reply; one over the parent's limit becomes a short codec error instead, so
/// the parent never has to read (or the child to write) more than it agreed to.
fn encode_capped(reply: &Reply, max: u64) -> Vec<u8> {
    let bytes = task::encode(reply).unwrap_or_default();
    // The limit is on the result itself; the reply's envelope adds a few bytes.
    let payload = match reply {
        Reply::Ok(result) => result.len(),
        _ => bytes.len().saturating_sub(REPLY_ENVELOPE),
    };
    if payload as u64 <= max {
        return bytes;
    }
    let what = match reply {
        Reply::Ok(_) => "result",
        Reply::Failed(_) => "error message",
        Reply::Panicked { .. } => "panic message",
        Reply::Codec(_) | Reply::Refused(_) => "error report",
    };
    let short =
        Reply::Codec(format!("the task's {what} is {} bytes, over the limit of {max} bytes", bytes.len()));
    task::encode(&short).unwrap_or_default()
}

fn fatal(msg: &str) -> ! {
    eprintln!("escala: error: {msg}");
    std::process::exit(2);
}

/// Runs the request and turns every failure into a reply.
pub(crate) fn serve(req: &Request) -> Reply {
    let ours = super::build_id();
    if req.build != *ours {
        return Reply::Refused(format!(
            "the parent is build `{}` but this child is build `{ours}`",
            req.build
        ));
    }
    let Some(reg) = task::lookup(&req.task) else {
        let known = task::registered_tasks().join(", ");
        return Reply::Refused(format!("unknown task `{}`; this binary registers: [{known}]", req.task));
    };
    crate::runtime::mark_initialized();
    (reg.invoke)(&req.args)
}
