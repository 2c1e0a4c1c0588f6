//! `escala worker`: runs a Redis queue's tasks until SIGTERM or Ctrl-C, then stops
//! gracefully (no more fetching; what it holds is finished and acknowledged).
//!
//! This binary registers no tasks of a user's program, so it runs commands — and only
//! with `--allow-commands`; a user's registered tasks run in the user's own binary with
//! `escala_redis::Worker`.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::WorkerConfig;

/// Runs the worker until a signal, then prints what it did.
pub(crate) fn run(c: &WorkerConfig) -> anyhow::Result<ExitCode> {
    let mut b = escala_redis::Worker::builder(&c.redis)
        .queue(&c.queue)
        .concurrency(c.concurrency)
        .lease(c.lease)
        .allow_commands(c.allow_commands);
    if let Some(path) = &c.key_file {
        b = b.key_file(path);
    }
    if let Some(path) = &c.tls_ca {
        b = b.tls_ca_file(path);
    }
    eprintln!(
        "escala worker: queue `{}`, concurrency {}, commands {}",
        c.queue,
        c.concurrency,
        if c.allow_commands { "allowed" } else { "refused" }
    );
    let report = b.run_until_signal().context("the worker could not start")?;
    eprintln!(
        "escala worker: stopped after {} tasks ({} ok, {} failed, {} cancelled, {} dead-lettered, {} redelivered)",
        report.ran, report.ok, report.failed, report.cancelled, report.dead_lettered, report.redelivered
    );
    Ok(ExitCode::SUCCESS)
}
