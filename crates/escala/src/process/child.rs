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
    let reply = match frame::read_frame(&mut sock, FrameKind::Request, max) {
        Ok(Some(bytes)) => match task::decode::<Request>(&bytes) {
            Ok(req) => serve(&req),
            Err(e) => Reply::Codec(format!("cannot decode the request: {e}")),
        },
        Ok(None) => std::process::exit(0), // the parent went away before asking
        Err(e) => Reply::Codec(format!("cannot read the request: {e}")),
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let bytes = task::encode(&reply).unwrap_or_default();
    let _ = frame::write_frame(&mut sock, FrameKind::Reply, &bytes);
    std::process::exit(0);
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
    match (reg.invoke)(&req.args) {
        Reply::Ok(bytes) if bytes.len() as u64 > req.max_reply => Reply::Codec(format!(
            "the result of `{}` is {} bytes, over the limit of {} bytes",
            req.task,
            bytes.len(),
            req.max_reply
        )),
        reply => reply,
    }
}
