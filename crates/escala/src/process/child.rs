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
    let (Some(mode @ ("1" | "2" | "3")), Some(ppid), Some(max)) = (parts.next(), parts.next(), parts.next())
    else {
        fatal(&format!("{CHILD_ENV}={marker:?} is not a marker this build understands"));
    };
    let (Ok(ppid), Ok(max)) = (ppid.parse::<i32>(), max.parse::<usize>()) else {
        fatal(&format!("{CHILD_ENV}={marker:?} is malformed"));
    };
    sys::die_with_parent(ppid);
    if mode == "3" {
        super::zygote::server::serve(max);
    }
    let sock = match sys::take_request_socket() {
        Ok(s) => s,
        Err(e) => fatal(&format!("{CHILD_ENV} is set but stdin is not an escala socket ({e})")),
    };
    crate::runtime::mark_initialized();
    if mode == "2" {
        crate::pool::process::serve_worker(sock, max);
    }
    serve_unit(sock, max);
}

/// Serves one process unit on `sock`: one request, one reply, then the process ends.
pub(crate) fn serve_unit(mut sock: std::os::unix::net::UnixStream, max: usize) -> ! {
    crate::runtime::mark_initialized();
    // The request also carries the build id and the task name: allow for them.
    let (reply, max_reply) = match frame::read_frame(&mut sock, FrameKind::Request, max + REQUEST_OVERHEAD) {
        Ok(Some(bytes)) => match task::decode::<Request>(&bytes) {
            Ok(req) => (serve(&req), req.max_reply),
            Err(e) => (Reply::Codec(format!("cannot decode the request: {e}")), max as u64),
        },
        Ok(None) => std::process::exit(0), // the parent went away before asking
        Err(e) => (Reply::Codec(format!("cannot read the request: {e}")), max as u64),
    };
    let bytes = task::encode(&cap_reply(reply, max_reply)).unwrap_or_default();
    let _ = frame::write_frame(&mut sock, FrameKind::Reply, &bytes);
    finish_process();
}

/// Ends a child: the units its tasks started are joined or stopped (so the parent sees the
/// process end when its work has, as `multiprocessing` joins do), output is flushed.
pub(crate) fn finish_process() -> ! {
    drop(crate::runtime::ExitGuard::new());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(0);
}

/// Room for the build id, the task name and the encoding around the arguments.
const REQUEST_OVERHEAD: usize = 64 << 10;

/// The reply, or — when what it carries is over the parent's limit — a short codec error
/// instead, so the parent never has to read (or the child to write) more than agreed.
pub(crate) fn cap_reply(reply: Reply, max: u64) -> Reply {
    let (what, len) = match &reply {
        Reply::Ok(result) => ("result", result.len()),
        Reply::Failed(m) => ("error message", m.len()),
        Reply::Panicked { message, location } => {
            ("panic message", message.len() + location.as_ref().map_or(0, String::len))
        }
        Reply::Codec(m) | Reply::Refused(m) => ("error report", m.len()),
        Reply::Cancelled => return reply,
    };
    if len as u64 <= max {
        reply
    } else {
        Reply::Codec(format!("the task's {what} is {len} bytes, over the limit of {max} bytes"))
    }
}

pub(crate) fn fatal(msg: &str) -> ! {
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
    task::run_by_name(&req.task, &req.args, &crate::CancelToken::never())
}
