//! `escala serve`: runs the services of a TOML file under a [`Supervisor`] until SIGTERM or
//! SIGINT (graceful stop, exit 0); SIGHUP re-reads the file and applies what changed. A
//! control socket answers `escala serve status` and `escala serve restart NAME`.

mod control;
mod file;

use std::process::ExitCode;

use anyhow::Context;
use escala::supervise::{Supervisor, SupervisorEvent};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::{ServeAction, ServeConfig};

/// Runs `escala serve` in the mode the config asks for.
pub(crate) fn run(c: &ServeConfig) -> anyhow::Result<ExitCode> {
    let socket = || control::socket_path(c);
    match &c.action {
        ServeAction::Check => {
            let f = file::load(&c.file)?;
            let names: Vec<&str> = f.services.iter().map(|s| s.name()).collect();
            println!("{}: ok ({} services: {})", c.file.display(), names.len(), names.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        ServeAction::Status { json } => control::status(&socket()?, *json),
        ServeAction::Restart { name } => control::restart(&socket()?, name),
        ServeAction::Run => serve(c, &socket()?),
    }
}

fn serve(c: &ServeConfig, socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    let f = file::load(&c.file)?;
    // Before anything starts, so no signal is missed.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot install the signal handlers")?;
    let server = control::bind(socket)?;
    let sup = Supervisor::builder()
        .services(f.services)
        .exit_on_failure(f.exit_on_failure)
        .sd_notify(true)
        .on_event(report)
        .start()?;
    let sup = std::sync::Arc::new(sup);
    server.answer(sup.clone())?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let handle = signals.handle();
    let sig_tx = tx.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let _ = sig_tx.send(Some(sig));
        }
    });
    let waiter = sup.clone();
    std::thread::spawn(move || {
        waiter.wait();
        let _ = tx.send(None);
    });
    let mut by_signal = false;
    while let Ok(Some(sig)) = rx.recv() {
        match sig {
            SIGHUP => match file::load(&c.file) {
                Ok(f) => match sup.reload(f.services) {
                    Ok(r) => eprintln!(
                        "escala: reloaded {}: changed [{}], added [{}], removed [{}]",
                        c.file.display(),
                        r.changed.join(", "),
                        r.added.join(", "),
                        r.removed.join(", ")
                    ),
                    Err(e) => eprintln!("escala: error: reload refused: {e}"),
                },
                Err(e) => eprintln!("escala: error: reload refused, the running services are unchanged: {e}"),
            },
            _ => {
                if !by_signal {
                    eprintln!("escala: stopping (signal {sig})");
                }
                by_signal = true;
                sup.request_stop();
            }
        }
    }
    handle.close();
    drop(server);
    let ended = sup.wait();
    if ended.is_success() || by_signal {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("escala: error: failed: {}", ended.failed.join(", "));
        Ok(ExitCode::from(1))
    }
}

/// One line on stderr per lifecycle event, written with one `write` (stderr is unbuffered).
fn report(e: &SupervisorEvent) {
    use std::io::Write;
    let line = match e {
        SupervisorEvent::WorkerStarted { service, worker, pid } => {
            format!("{service}[{worker}] started (pid {pid})")
        }
        SupervisorEvent::WorkerExited { service, worker, pid, exit, expected: false } => {
            format!("{service}[{worker}] (pid {pid}) {exit}")
        }
        SupervisorEvent::WorkerExited { service, worker, exit, expected: true, .. } => {
            format!("{service}[{worker}] stopped ({exit})")
        }
        SupervisorEvent::Restarting { service, worker, delay } if !delay.is_zero() => {
            format!("{service}[{worker}] restarts in {}", humantime::format_duration(*delay))
        }
        SupervisorEvent::SpawnFailed { service, worker, error } => {
            format!("error: {service}[{worker}] cannot start: {error}")
        }
        SupervisorEvent::ServiceFailed { service, deaths } => {
            format!("error: {service} failed: {deaths} deaths within its crash-loop window")
        }
        _ => return,
    };
    let _ = std::io::stderr().write_all(format!("escala: {line}\n").as_bytes());
}
