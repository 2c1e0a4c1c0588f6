//! The scheduler: starts each job as an escala command unit in its own process group, one per
//! free slot, and handles their ends, retries, `--delay` and the start gates; `stopping.rs`
//! stops jobs (timeouts, `--halt`, SIGINT/SIGTERM).
//!
//! The scheduler's thread is also the jobs' reaper ([`escala::process::Reaper`]): it blocks in
//! one `epoll_wait` on the jobs' pidfds, so a job's end wakes this one thread, which reaps
//! it and starts the next. Output readers and the signal thread send it a [`Msg`] and wake it.

mod stopping;

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use escala::Handle;
use escala::process::{Command, Reaper, Signaller, Waker};
use nix::sys::signal::Signal;

use super::exit_status::exit_status;
use super::gate::{self, Gate};
use super::output::{self, Capture, Done, FilePool};
use super::programs::Programs;
use super::template::{Rendered, Template, Vars};
use super::{Job, Report};
use crate::config::run::{HaltOn, Packing, RunConfig};

/// Time between SIGTERM and SIGKILL when escala stops a job.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// What wakes the scheduler, besides a job's end.
pub(crate) enum Msg {
    /// One part of a job ended: the unit, or one of its output readers.
    Part(usize),
    /// escala got SIGINT or SIGTERM.
    Signal,
}

/// Sends the scheduler a [`Msg`] and, from another thread, wakes it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Notify {
    tx: Sender<Msg>,
    waker: Waker,
    /// The scheduler's thread, which needs no wake-up: it reads the channel before it waits.
    home: std::thread::ThreadId,
}

impl Notify {
    /// Sends `msg`; false once the scheduler is gone.
    pub(crate) fn send(&self, msg: Msg) -> bool {
        let sent = self.tx.send(msg).is_ok();
        if std::thread::current().id() != self.home {
            self.waker.wake();
        }
        sent
    }
}

struct Running {
    job: usize,
    attempt: u32,
    handle: Handle<()>,
    signaller: Signaller,
    command: Rendered,
    start: Instant,
    start_unix: f64,
    capture: Capture,
    /// Parts still to end (the unit, plus line readers).
    parts: u8,
    deadline: Option<Instant>,
    /// Stopped by escala (timeout, halt, signal): its Exitval is -1.
    stopped: bool,
    kill_at: Option<Instant>,
}

/// Runs the jobs; `report` gets each job as it ends.
pub(crate) struct Engine<'a> {
    cfg: &'a RunConfig,
    template: &'a Template,
    jobs: &'a [Job],
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    /// Waits for the jobs; dropped after them, it kills and reaps any left (an early error).
    reaper: Reaper,
    slots: Vec<Option<Running>>,
    queue: VecDeque<(usize, u32, Option<Instant>)>,
    last_start: Option<Instant>,
    stopping: bool,
    pub(crate) signalled: bool,
    pub(crate) failed: usize,
    pub(crate) succeeded: usize,
    /// Set when `--halt` stopped the run: the exit code it asks for.
    pub(crate) halt_code: Option<u8>,
    programs: Programs,
    gate: Gate,
    /// Temporary files to reuse for captured output.
    files: FilePool,
}

/// A run that ends early (an error, a broken pipe) leaves no job behind: jobs do not die
/// with escala by themselves.
impl Drop for Engine<'_> {
    fn drop(&mut self) {
        for r in self.slots.iter().flatten() {
            r.signaller.signal(Signal::SIGKILL);
        }
    }
}

impl<'a> Engine<'a> {
    pub(crate) fn new(
        cfg: &'a RunConfig,
        template: &'a Template,
        jobs: &'a [Job],
        todo: Vec<usize>,
        files: FilePool,
    ) -> anyhow::Result<Engine<'a>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let reaper = Reaper::new().context("cannot create the jobs' reaper")?;
        let n = cfg.jobs.min(todo.len()).max(1);
        Ok(Engine {
            cfg,
            template,
            jobs,
            tx,
            rx,
            reaper,
            slots: (0..n).map(|_| None).collect(),
            queue: todo.into_iter().map(|j| (j, 1, None)).collect(),
            last_start: None,
            stopping: false,
            signalled: false,
            failed: 0,
            succeeded: 0,
            halt_code: None,
            programs: Programs::default(),
            gate: Gate { memfree: cfg.memfree, load: cfg.load },
            files,
        })
    }

    /// A sender for SIGINT/SIGTERM notices.
    pub(crate) fn sender(&self) -> Notify {
        Notify { tx: self.tx.clone(), waker: self.reaper.waker(), home: std::thread::current().id() }
    }

    /// Runs until every job ended (or the run was stopped and the running jobs ended).
    pub(crate) fn run(
        &mut self,
        report: &mut dyn FnMut(Report<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        loop {
            let wake = self.start_ready()?;
            // Ends and notices that came in meanwhile (a job that could not start ends at once).
            let mut handled = false;
            while let Ok(msg) = self.rx.try_recv() {
                handled = true;
                match msg {
                    Msg::Part(slot) => self.part_ended(slot, report)?,
                    Msg::Signal => {
                        self.signalled = true;
                        self.stop_all();
                    }
                }
            }
            if handled {
                continue;
            }
            if self.slots.iter().all(Option::is_none) && (self.queue.is_empty() || self.stopping) {
                return Ok(());
            }
            let next =
                self.slots.iter().flatten().flat_map(|r| [r.deadline, r.kill_at]).flatten().chain(wake).min();
            let now = Instant::now();
            if next.is_some_and(|t| t <= now) {
                self.check_timers();
                continue;
            }
            // Jobs that end are reaped here; their handles' callbacks send `Msg::Part`.
            self.reaper.wait(next.map(|t| t - now)).context("cannot wait for the jobs")?;
        }
    }

    /// Starts queued jobs on free slots; returns when to look again (a `--delay` or a retry
    /// that is not due yet).
    fn start_ready(&mut self) -> anyhow::Result<Option<Instant>> {
        while !self.stopping {
            let Some(slot) = self.slots.iter().position(Option::is_none) else { return Ok(None) };
            let now = Instant::now();
            let Some(pos) = self.queue.iter().position(|(_, _, due)| due.is_none_or(|d| d <= now)) else {
                return Ok(self.queue.iter().filter_map(|q| q.2).min());
            };
            if !self.gate.open() {
                return Ok(Some(now + gate::RECHECK));
            }
            if let (Some(d), Some(last)) = (self.cfg.delay, self.last_start) {
                if last + d > now {
                    return Ok(Some(last + d));
                }
            }
            let (job, attempt, _) = self.queue.remove(pos).unwrap_or_default();
            self.start(slot, job, attempt)?;
        }
        Ok(None)
    }

    fn start(&mut self, slot: usize, job: usize, attempt: u32) -> anyhow::Result<()> {
        let j = &self.jobs[job];
        let vars = Vars { args: &j.args, seq: j.seq, slot: slot + 1, total: self.jobs.len() };
        let command = self.template.render(&vars, matches!(self.cfg.packing, Packing::Context(_)));
        let tag = self.cfg.tag.as_deref().map(|t| Template::render_text(t, &vars));
        let (capture, out, err, pipes) = Capture::new(self.cfg.output, &self.files)?;
        let cmd = match &command {
            Rendered::Direct(argv) => Command::new(self.programs.find(&argv[0])).args(&argv[1..]),
            Rendered::Shell(line) => Command::new(self.programs.find(&self.cfg.shell)).arg("-c").arg(line),
        };
        let name = if escala::events::enabled() {
            format!("{} {}", j.seq, command.display())
        } else {
            j.seq.to_string()
        };
        let cmd = cmd
            .name(name)
            .process_group(true)
            // Stopped by this loop (signals, halt, timeouts), so it may start by vfork.
            .die_with_parent(false)
            .reaper(&self.reaper)
            .stdin(match &j.input {
                Some(data) => output::feed(data.clone())?,
                None => std::process::Stdio::null(),
            })
            .stdout(out)
            .stderr(err)
            .env("PARALLEL_SEQ", j.seq.to_string())
            .env("PARALLEL_JOBSLOT", (slot + 1).to_string());
        let now = Instant::now();
        self.last_start = Some(now);
        let start_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let (handle, signaller) = cmd.spawn_with_signaller();
        let mut parts = 1;
        if let (Some([out_r, err_r]), Capture::Lines(count)) = (pipes, &capture) {
            for (src, to_stderr) in [(out_r, false), (err_r, true)] {
                let notify = self.sender();
                let count = (!to_stderr).then(|| count.clone());
                output::line_reader(src, to_stderr, tag.clone(), count, move || {
                    notify.send(Msg::Part(slot));
                })?;
                parts += 1;
            }
        }
        // Runs in `reaper.wait` on this thread (on a watcher thread should the reaper refuse
        // the job, and at once if the job could not start).
        let notify = self.sender();
        handle.on_done(move |_| {
            notify.send(Msg::Part(slot));
        });
        self.slots[slot] = Some(Running {
            job,
            attempt,
            handle,
            signaller,
            command,
            start: now,
            start_unix,
            capture,
            parts,
            deadline: self.cfg.timeout.map(|t| now + t),
            stopped: false,
            kill_at: None,
        });
        if self.stopping {
            self.stop(slot);
        }
        Ok(())
    }

    fn part_ended(
        &mut self,
        slot: usize,
        report: &mut dyn FnMut(Report<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let Some(r) = self.slots[slot].as_mut() else { return Ok(()) };
        r.parts -= 1;
        if r.parts > 0 {
            return Ok(());
        }
        let Some(r) = self.slots[slot].take() else { return Ok(()) };
        let runtime = r.start.elapsed().as_secs_f64();
        // A stopped job counts as failed (Exitval -1) whatever its outcome.
        let ok = !r.stopped && !r.handle.has_failed();
        let retry = !ok && r.attempt < self.cfg.retries && !self.stopping;
        let delay = self.cfg.retry_delay.map(|d| d * 2u32.saturating_pow(r.attempt - 1));
        if retry {
            escala::events::emit_retried(&r.handle, r.attempt + 1, delay.unwrap_or_default());
        }
        let (mut exitval, signal) = exit_status(r.handle.join(), &r.command);
        if r.stopped {
            exitval = -1;
        }
        if retry {
            self.queue.push_front((r.job, r.attempt + 1, delay.map(|d| Instant::now() + d)));
            return Ok(());
        }
        if ok {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        let job = &self.jobs[r.job];
        if let Some(dir) = &self.cfg.results {
            output::save_results(dir, &job.args, job.seq, &r.capture)?;
        }
        let lens = r.capture.lens();
        let tag = self.cfg.tag.as_deref().map(|t| {
            Template::render_text(
                t,
                &Vars { args: &job.args, seq: job.seq, slot: slot + 1, total: self.jobs.len() },
            )
        });
        let display = r.command.display();
        report(Report {
            index: r.job,
            seq: job.seq,
            slot: slot + 1,
            start: r.start_unix,
            runtime,
            receive: lens.0,
            exitval,
            signal,
            command: &display,
            done: Done { capture: r.capture, tag, lens },
        })?;
        if !ok {
            self.check_halt(HaltOn::Fail, exitval, signal, &display);
        } else {
            self.check_halt(HaltOn::Success, 0, 0, &display);
        }
        Ok(())
    }
}
