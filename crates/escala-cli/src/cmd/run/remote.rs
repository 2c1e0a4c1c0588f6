//! `escala run --redis URL --queue Q`: the same jobs, run by `escala worker --allow-commands`
//! processes on any machine that reaches the Redis server, through the library's
//! `RedisExecutor`. Each rendered command line is one remote command task; its exit code and
//! output come back with the result, are printed grouped (in input order with `-k`) and
//! logged to `--joblog` as GNU parallel would, with the host column `redis`.
//!
//! At most `-j` jobs are in flight at once from this run; how many run at the same time is up
//! to the workers' `--concurrency`. Options that need a local process (timeouts, retries,
//! `--halt`, `--pipe`, live output, `--results`, …) are refused with `--redis`.
//!
//! Ctrl-C or SIGTERM stops the run as it stops local jobs: nothing more is sent, every job in
//! flight is cancelled on the workers (skipped if not started; its process group gets
//! SIGTERM, then SIGKILL, where it runs), its joblog line records SIGTERM, and escala exits
//! 255.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use crossbeam_channel::select;
use escala::{Handle, Outcome, TaskId};
use escala_redis::{CommandOutput, RedisExecutor};

use super::Job;
use super::joblog::{Entry, Joblog};
use super::template::{Rendered, Template, Vars};
use crate::config::run::{OutputMode, Packing, Remote, Resume, RunConfig};

/// Refuses the options that only make sense for jobs run here.
fn check(cfg: &RunConfig) -> anyhow::Result<()> {
    let refused = [
        (cfg.timeout.is_some(), "--timeout"),
        (cfg.retries > 1, "--retries"),
        (cfg.retry_delay.is_some(), "--retry-delay"),
        (cfg.halt != Default::default(), "--halt"),
        (cfg.pipe_block.is_some(), "--pipe"),
        (cfg.output != OutputMode::Group, "--line-buffer / --ungroup"),
        (cfg.results.is_some(), "--results"),
        (cfg.resume != Resume::No, "--resume"),
        (cfg.tag.is_some(), "--tag / --tagstring"),
        (cfg.timeline.is_some() || cfg.events.is_some(), "--timeline / --events"),
        (cfg.memfree.is_some() || cfg.load.is_some(), "--memfree / --load"),
        (cfg.delay.is_some(), "--delay"),
    ];
    match refused.iter().find(|(set, _)| *set) {
        Some((_, name)) => bail!("{name} is not supported with --redis (the job runs on a worker)"),
        None => Ok(()),
    }
}

/// The program and arguments a worker runs for a rendered command line.
fn argv(r: &Rendered) -> (String, Vec<String>) {
    match r {
        Rendered::Direct(argv) => (argv[0].clone(), argv[1..].to_vec()),
        // The worker's machine has its own shell: a POSIX one is the common ground.
        Rendered::Shell(line) => ("/bin/sh".into(), vec!["-c".into(), line.clone()]),
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A job sent and not yet back.
struct Sent {
    handle: Handle<CommandOutput>,
    index: usize,
    seq: usize,
    line: String,
    start: f64,
}

/// Runs `jobs` on remote workers; the exit code is the number of failed jobs (at most 101).
pub(crate) fn run(
    cfg: &RunConfig,
    remote: &Remote,
    template: &Template,
    jobs: &[Job],
) -> anyhow::Result<ExitCode> {
    check(cfg)?;
    let mut builder = RedisExecutor::builder(&remote.url).queue(&remote.queue);
    if let Some(path) = &remote.tls_ca {
        builder = builder.tls_ca_file(path);
    }
    let exec = builder
        .build()
        // The library's error names the server (its password hidden).
        .with_context(|| format!("cannot use the queue {}", remote.queue))?;
    let mut log = cfg.joblog.as_deref().map(|p| Joblog::open(p, Resume::No)).transpose()?;
    let context = matches!(cfg.packing, Packing::Context(_));
    let window = cfg.jobs.max(1);
    let mut out = std::io::stdout().lock();
    let (mut failed, mut next_print) = (0usize, 0usize);
    let mut held: BTreeMap<usize, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut sent: HashMap<TaskId, Sent> = HashMap::new();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<TaskId>();
    let (signals, signalled) = watch_signals()?;
    let mut stopped_by: Option<i32> = None;
    let mut todo = jobs.iter().enumerate();
    loop {
        while stopped_by.is_none() && sent.len() < window {
            let Some((index, j)) = todo.next() else { break };
            let vars = Vars { args: &j.args, seq: j.seq, slot: sent.len() + 1, total: jobs.len() };
            let rendered = template.render(&vars, context);
            let (program, args) = argv(&rendered);
            let handle = exec.submit_command(&program, args);
            let tx = done_tx.clone();
            let id = handle.id();
            handle.on_done(move |_| {
                let _ = tx.send(id);
            });
            sent.insert(id, Sent { handle, index, seq: j.seq, line: rendered.display(), start: now() });
        }
        if sent.is_empty() {
            break;
        }
        let id = select! {
            recv(done_rx) -> id => id.expect("the sender lives in this function"),
            recv(signalled) -> sig => {
                let sig = sig.unwrap_or(signal_hook::consts::SIGTERM);
                if stopped_by.is_none() {
                    stopped_by = Some(sig);
                    // Each cancel resolves its handle at once and is sent on to the workers.
                    for s in sent.values() {
                        s.handle.cancel();
                    }
                }
                continue;
            }
        };
        let Some(s) = sent.remove(&id) else { continue };
        let runtime = now() - s.start;
        let (exitval, signal, stdout, stderr) = match (s.handle.join(), stopped_by) {
            // The workers stop it with SIGTERM, as a local job is stopped.
            (Err(e), Some(_)) if e.is_cancelled() => {
                (-1, signal_hook::consts::SIGTERM, Vec::new(), Vec::new())
            }
            (o, _) => outcome(s.seq, o),
        };
        if (exitval, signal) != (0, 0) {
            failed += 1;
        }
        if let Some(log) = log.as_mut() {
            let receive = (stdout.len() + stderr.len()) as u64;
            log.write(&Entry {
                seq: s.seq,
                host: "redis",
                start: s.start,
                runtime,
                receive,
                exitval,
                signal,
                command: &s.line,
            })?;
        }
        held.insert(s.index, (stdout, stderr));
        // Without -k, print in completion order: every finished job is "next".
        if !cfg.keep_order {
            next_print = s.index;
        }
        while let Some((o, e)) = held.remove(&next_print) {
            out.write_all(&o)?;
            out.flush()?;
            std::io::stderr().write_all(&e)?;
            if cfg.keep_order {
                next_print += 1;
            }
        }
    }
    signals.close();
    // Dropping the executor sends what it still holds (the cancels) before its threads end.
    drop(exec);
    if stopped_by.is_some() {
        return Ok(ExitCode::from(255));
    }
    // GNU parallel: the number of failed jobs, at most 101.
    Ok(ExitCode::from(failed.min(101) as u8))
}

/// SIGINT and SIGTERM, delivered on a channel by a thread of their own.
fn watch_signals() -> anyhow::Result<(signal_hook::iterator::Handle, crossbeam_channel::Receiver<i32>)> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the signal handlers")?;
    let handle = signals.handle();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("escala-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok((handle, rx))
}

/// GNU parallel's Exitval and Signal for one job, and its output; an error that is not the
/// command's own (refused, broker) is reported on stderr and counts as Exitval -1.
fn outcome(seq: usize, o: Outcome<CommandOutput>) -> (i32, i32, Vec<u8>, Vec<u8>) {
    match o {
        Ok(c) => (c.code.unwrap_or(-1), c.signal.unwrap_or(0), c.stdout, c.stderr),
        Err(e) => (-1, 0, Vec::new(), format!("escala: job {seq}: {e}\n").into_bytes()),
    }
}
