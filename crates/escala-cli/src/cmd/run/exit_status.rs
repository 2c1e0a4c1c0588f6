//! A command unit's outcome as GNU parallel's `Exitval` and `Signal` columns.

use escala::{ErrorKind, ExitReason, Outcome};

use super::template::Rendered;

/// `(exitval, signal)`: the exit code, or 0 and the signal's number; a command that could not
/// start is 127, like the shell's "command not found" (and says why on stderr).
pub(crate) fn exit_status(outcome: Outcome<()>, command: &Rendered) -> (i32, i32) {
    match outcome {
        Ok(()) => (0, 0),
        Err(e) => match e.kind() {
            ErrorKind::Exited(c) => (*c, 0),
            ErrorKind::WorkerLost { reason: ExitReason::Signal(s), .. } => (0, *s as i32),
            ErrorKind::WorkerLost { reason: ExitReason::SignalNumber(n), .. } => (0, *n),
            ErrorKind::WorkerLost { reason: ExitReason::Code(c), .. } => (*c, 0),
            ErrorKind::Spawn(m) => {
                eprintln!("escala: {m}");
                (127, 0)
            }
            other => {
                eprintln!("escala: {}: {other}", command.display());
                (-1, 0)
            }
        },
    }
}
