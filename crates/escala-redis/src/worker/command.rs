//! An external command run by a worker: a command unit of escala's core library, in its own
//! process group, with its output captured (up to a limit) and a way to stop it — SIGTERM
//! to the group, then SIGKILL after a grace period — when its caller cancels it.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use escala::{ErrorKind, ExitReason, process::Command};

use super::cancel::Stop;
use crate::wire::CommandOutput;

/// Time between SIGTERM and SIGKILL when a running command is cancelled.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);

enum Event {
    Ended,
    Cancel,
}

/// Runs `program` with no input, capturing at most `cap` bytes of each output. `on_start`
/// gets the [`Stop`] that cancels it. Returns the encoded [`CommandOutput`], or
/// `Cancelled` when it was stopped that way.
pub(crate) fn run(
    program: &str,
    args: &[String],
    cap: usize,
    on_start: impl FnOnce(Stop),
) -> Result<Vec<u8>, ErrorKind> {
    let pipes = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| ErrorKind::Spawn(format!("cannot run `{program}`: no pipe for its output: {e}")))
    };
    let ((out_r, out_w), (err_r, err_w)) = (pipes()?, pipes()?);
    // Cancelling the handle stops the group the way every escala command unit is stopped:
    // SIGTERM, then SIGKILL after the grace period.
    let handle = Command::new(program)
        .args(args)
        .name(program)
        .process_group(true)
        .stop_grace(STOP_GRACE)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .spawn();
    // Both readers see EOF once the command (and everything left in its group) is gone.
    let stdout = reader(out_r, cap);
    let stderr = reader(err_r, cap);
    let (tx, rx) = crossbeam_channel::bounded::<Event>(2);
    let ended = tx.clone();
    handle.on_done(move |_| drop(ended.send(Event::Ended)));
    on_start(Box::new(move || drop(tx.send(Event::Cancel))));
    // False when the command ended first: its own outcome is reported then.
    let cancelled = matches!(rx.recv(), Ok(Event::Cancel)) && handle.cancel();
    let outcome = handle.join();
    let collect =
        |t: Option<std::thread::JoinHandle<Vec<u8>>>| t.and_then(|t| t.join().ok()).unwrap_or_default();
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    if cancelled {
        return Err(ErrorKind::Cancelled);
    }
    let (code, signal) = match outcome {
        Ok(()) => (Some(0), None),
        Err(e) => match e.into_kind() {
            ErrorKind::Exited(code) => (Some(code), None),
            ErrorKind::WorkerLost { reason: ExitReason::Code(code), .. } => (Some(code), None),
            ErrorKind::WorkerLost { reason: ExitReason::Signal(s), .. } => (None, Some(s as i32)),
            ErrorKind::WorkerLost { reason: ExitReason::SignalNumber(n), .. } => (None, Some(n)),
            other => return Err(other),
        },
    };
    escala::remote::encode(&CommandOutput { code, signal, stdout, stderr }).map_err(ErrorKind::Codec)
}

/// Reads one output to its end on a thread, keeping the first `cap` bytes (none without a
/// thread: the output is then dropped unread).
fn reader(fd: OwnedFd, cap: usize) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    let read = move || {
        let mut src = std::fs::File::from(fd);
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        kept
    };
    std::thread::Builder::new().name("escala-redis-output".into()).spawn(read).ok()
}
