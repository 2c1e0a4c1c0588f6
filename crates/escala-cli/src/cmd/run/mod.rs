//! `escala run`: GNU parallel's syntax on escala's command units. Each job is an
//! [`escala::process::Command`] in its own process group; SIGINT/SIGTERM stop them all.
//!
//! `inputs.rs` reads and combines the inputs (streamed while the jobs run where GNU parallel
//! does so), `template.rs` renders command lines, `engine/` schedules the units,
//! `output.rs` prints their output, `joblog.rs` logs them.

mod engine;
mod exit_status;
mod gate;
mod inputs;
mod joblog;
mod output;
mod programs;
mod remote;
mod template;
mod timeline;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::run::{Resume, RunConfig};
use engine::{Engine, Feed, Msg};
use joblog::{Entry, Joblog};
use output::{Done, Printer};
use template::{Template, Vars};

/// One job: its sequence number (from 1), its arguments, and with `--pipe` its stdin.
pub(crate) struct Job {
    pub(crate) seq: usize,
    pub(crate) args: Vec<String>,
    pub(crate) input: Option<std::sync::Arc<[u8]>>,
}

/// What the scheduler hands back, in the order it happens.
pub(crate) enum Ended<'a> {
    /// A job `--resume` skips: its position in input order (from 0).
    Skipped(usize),
    /// A job that ran.
    Ran(Report<'a>),
}

/// A job that ended for good (after its retries).
pub(crate) struct Report<'a> {
    /// Position in input order (from 0).
    pub(crate) index: usize,
    pub(crate) seq: usize,
    /// The job slot it ran in (from 1).
    pub(crate) slot: usize,
    pub(crate) start: f64,
    pub(crate) runtime: f64,
    pub(crate) receive: u64,
    pub(crate) exitval: i32,
    pub(crate) signal: i32,
    pub(crate) command: &'a str,
    pub(crate) done: Done,
}

/// Runs `escala run`; the exit code is the number of failed jobs (at most 101), 255 after
/// SIGINT/SIGTERM or an error (said in one `escala: error: …` line), or what `--halt` asks for.
pub(crate) fn run(cfg: &RunConfig) -> anyhow::Result<ExitCode> {
    match run_jobs(cfg) {
        Err(e) if !is_broken_pipe(&e) => {
            eprintln!("escala: error: {}", format!("{e:#}").replace('\n', " "));
            Ok(ExitCode::from(255))
        }
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run_jobs(cfg: &RunConfig) -> anyhow::Result<ExitCode> {
    let template = Template::parse(&cfg.command);
    let streamed = inputs::can_stream(cfg, template.uses_total(cfg.tag.as_deref()));
    let jobs: Vec<Job> = match cfg.pipe_block {
        _ if streamed => Vec::new(),
        Some(block) => inputs::pipe_blocks(block)?
            .into_iter()
            .enumerate()
            .map(|(i, b)| Job { seq: i + 1, args: Vec::new(), input: Some(b.into()) })
            .collect(),
        None => inputs::job_args(cfg)?
            .into_iter()
            .enumerate()
            .map(|(i, args)| Job { seq: i + 1, args, input: None })
            .collect(),
    };
    if cfg.dry_run {
        let mut out = std::io::stdout().lock();
        let context = matches!(cfg.packing, crate::config::run::Packing::Context(_));
        for j in &jobs {
            let vars = Vars { args: &j.args, seq: j.seq, slot: 1, total: jobs.len() };
            writeln!(out, "{}", template.render(&vars, context).display())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(r) = &cfg.redis {
        return remote::run(cfg, r, &template, &jobs);
    }
    let skip = match (&cfg.joblog, cfg.resume) {
        (Some(p), r) if r != Resume::No => joblog::skip_set(p, r)?,
        _ => Default::default(),
    };
    let mut log = cfg.joblog.as_deref().map(|p| Joblog::open(p, cfg.resume)).transpose()?;
    let mut events = match &cfg.events {
        Some(p) => {
            let f = std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            Some((escala::events::subscribe(), std::io::BufWriter::new(f)))
        }
        None => None,
    };
    let mut printer = Printer::new(cfg.keep_order);
    let files = output::FilePool::default();
    // `--bar` reads every input first (`inputs::can_stream`), so the number is known.
    let todo = jobs.iter().filter(|j| !skip.contains(&j.seq)).count();
    let bar = if cfg.bar && std::io::stderr().is_terminal() {
        let b = ProgressBar::with_draw_target(Some(todo as u64), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} jobs, {elapsed} elapsed, eta {eta}")
        {
            b.set_style(style);
        }
        b
    } else {
        ProgressBar::hidden()
    };
    let feed = |notify: engine::Notify| -> anyhow::Result<Feed> {
        Ok(if streamed {
            Feed::stream(inputs::stream(cfg, move || {
                notify.send(Msg::Input);
            })?)
        } else {
            Feed::list(jobs)
        })
    };
    let mut engine = Engine::new(cfg, &template, feed, skip, files.clone())?;
    let mut signals =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
            .context("cannot install the signal handlers")?;
    let sig_handle = signals.handle();
    let tx = engine.sender();
    std::thread::Builder::new()
        .name("escala-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if !tx.send(Msg::Signal) {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;
    let mut bars = Vec::new();
    let result = engine.run(&mut |ended: Ended<'_>| {
        let r = match ended {
            Ended::Skipped(index) => return printer.finished(index, None, &files),
            Ended::Ran(r) => r,
        };
        if let Some(log) = log.as_mut() {
            log.write(&Entry {
                seq: r.seq,
                host: ":",
                start: r.start,
                runtime: r.runtime,
                receive: r.receive,
                exitval: r.exitval,
                signal: r.signal,
                command: r.command,
            })?;
        }
        if cfg.timeline.is_some() {
            bars.push(timeline::Bar {
                slot: r.slot,
                seq: r.seq,
                start: r.start,
                runtime: r.runtime,
                exitval: r.exitval,
                signal: r.signal,
                command: r.command.to_string(),
            });
        }
        bar.suspend(|| printer.finished(r.index, Some(r.done), &files))?;
        bar.inc(1);
        if let Some((sub, w)) = events.as_mut() {
            write_events(sub, w)?;
        }
        Ok(())
    });
    sig_handle.close();
    bar.finish_and_clear();
    if let Some((sub, mut w)) = events {
        write_events(&sub, &mut w)?;
        w.flush().context("cannot write the events file")?;
    }
    result?;
    if let Some(path) = &cfg.timeline {
        timeline::write(path, &bars)?;
    }
    std::io::stdout().flush()?;
    Ok(ExitCode::from(if engine.signalled {
        255
    } else {
        engine.halt_code.unwrap_or_else(|| engine.failed_code())
    }))
}

fn write_events(sub: &escala::events::Subscription, w: &mut impl Write) -> anyhow::Result<()> {
    for e in sub.try_iter() {
        serde_json::to_writer(&mut *w, &e).context("cannot write the events file")?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
