//! `escala status --result ID`: the result a worker stored for one task, kept in Redis for
//! the result TTL — what ran, which attempt, and its outcome (a command's exit code and
//! output; a registered task's value as the bytes of its encoding, since only the caller's
//! program knows its type).

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use escala::ErrorKind;
use escala_redis::{CommandOutput, Server, StoredResult};
use serde::Serialize;

/// The JSON form of a kept result.
#[derive(Serialize)]
struct Shown<'a> {
    task: &'a str,
    job: &'a str,
    attempt: u32,
    ok: bool,
    /// Why there is no value: its kind's label and its message.
    error: Option<Failure>,
    /// A command's exit code and output.
    command: Option<Command>,
    /// A registered task's encoded value, in hex.
    value_hex: Option<String>,
}

#[derive(Serialize)]
struct Failure {
    kind: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Command {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Prints the result kept for task `id`; an error when there is none.
pub(crate) fn show(server: &Server, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some(r) = server.result(id)? else {
        bail!("no result is kept for task {id} (not finished yet, an unknown id, or expired)");
    };
    let shown = shown(&r);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &shown)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &shown)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn shown(r: &StoredResult) -> Shown<'_> {
    let failure = |kind: &ErrorKind| Failure { kind: kind.label(), message: kind.to_string() };
    let (mut error, mut command, mut value_hex) = (None, None, None);
    match (&r.outcome, r.command_output()) {
        (Err(kind), _) => error = Some(failure(kind)),
        (Ok(_), Some(Ok(CommandOutput { code, signal, stdout, stderr }))) => {
            command = Some(Command {
                code,
                signal,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            });
        }
        (Ok(_), Some(Err(kind))) => error = Some(failure(&kind)),
        (Ok(bytes), None) => value_hex = Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
    }
    Shown { task: &r.task, job: &r.job, attempt: r.attempt, ok: error.is_none(), error, command, value_hex }
}

fn write_text(out: &mut impl Write, s: &Shown<'_>) -> std::io::Result<()> {
    writeln!(out, "task     {}", s.task)?;
    writeln!(out, "job      {}", s.job)?;
    writeln!(out, "attempt  {}", s.attempt)?;
    if let Some(e) = &s.error {
        writeln!(out, "outcome  {} ({})", e.message, e.kind)?;
    }
    if let Some(c) = &s.command {
        match (c.code, c.signal) {
            (Some(code), _) => writeln!(out, "outcome  exited with code {code}")?,
            (None, Some(sig)) => writeln!(out, "outcome  killed by signal {sig}")?,
            (None, None) => writeln!(out, "outcome  ended")?,
        }
        for (name, text) in [("stdout", &c.stdout), ("stderr", &c.stderr)] {
            writeln!(out, "{name}")?;
            for line in text.lines() {
                writeln!(out, "  {line}")?;
            }
        }
    }
    if let Some(hex) = &s.value_hex {
        writeln!(out, "outcome  ok: a value of {} encoded bytes", hex.len() / 2)?;
        writeln!(out, "value    {hex}")?;
    }
    Ok(())
}
