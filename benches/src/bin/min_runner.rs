//! W5's limit: the least a parallel command runner can do. Runs `COUNT` copies of a command
//! with at most `SLOTS` at a time: `std::process::Command::spawn` (the program looked up in
//! `PATH` once, as `escala run` does), then `waitpid(-1)` for whichever ends first. No
//! output handling, no process groups, no logging.
//!
//! Usage: `min_runner COUNT SLOTS PROGRAM [ARGS…]`

use std::collections::HashMap;
use std::process::{Child, Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(count), Some(slots), Some(program)) = (
        args.first().and_then(|a| a.parse::<usize>().ok()),
        args.get(1).and_then(|a| a.parse::<usize>().ok()),
        args.get(2),
    ) else {
        eprintln!("usage: min_runner COUNT SLOTS PROGRAM [ARGS…]");
        return ExitCode::from(2);
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let program = std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| program.into());
    let program = &program;
    let mut running: HashMap<i32, Child> = HashMap::new();
    let (mut started, mut failed) = (0, 0);
    while started < count || !running.is_empty() {
        while started < count && running.len() < slots.max(1) {
            match Command::new(program).args(&args[3..]).spawn() {
                Ok(c) => {
                    running.insert(c.id() as i32, c);
                }
                Err(e) => {
                    eprintln!("min_runner: cannot run {}: {e}", program.display());
                    return ExitCode::from(2);
                }
            }
            started += 1;
        }
        match nix::sys::wait::wait() {
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    running.remove(&pid.as_raw());
                }
                if !matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)) {
                    failed += 1;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                eprintln!("min_runner: wait: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::from(failed.min(101) as u8)
}
