//! The scheduler: starts each job as an escala command unit in its own process group, one per
//! free slot, and handles their ends, retries, `--delay` and the start gates; `stopping.rs`
//! stops jobs (timeouts, `--halt`, SIGINT/SIGTERM).
//!
//! The scheduler's thread is also the jobs' reaper ([`escala::process::Reaper`]): it blocks in
//! one `epoll_wait` on the jobs' pidfds, so a job's end wakes this one thread, which reaps
//! it and starts the next. Output readers and the signal thread send it a [`Msg`] and wake it.

mod feed;
mod stopping;

pub(crate) use feed::Feed;

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use escala::Handle;
use escala::process::{Command, Environment, Reaper, Signaller, Waker};
use nix::sys::signal::Signal;

use super::exit_status::exit_status;
use super::gate::{self, Gate};
use super::output::{self, Capture, Done, FilePool};
use super::programs::Programs;
use super::template::{Rendered, Template, Vars};
use super::{Ended, Job, Report};
use crate::config::run::{HaltOn, Packing, RunConfig};
use feed::Next;

/// Time between SIGTERM and SIGKILL when escala stops a job.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// Job slots at most while the number of jobs is not known (`-j0` on streamed inputs), as
/// GNU parallel, which stops near this many for want of file descriptors.
const MAX_STREAMED_SLOTS: usize = 250;

/// What wakes the scheduler, besides a job's end.
pub(crate) enum Msg {
    /// One part of a job ended: the unit, or one of its output readers.
    Part(usize),
    /// escala got SIGINT or SIGTERM.
    Signal,
    /// More streamed inputs, or their end.
    Input,
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
    job: Job,
    attempt: u32,
    handle: Handle<()>,
    signaller: Signaller,
    command: Rendered,
    /// `--tagstring` rendered for this run (line readers and the grouped output use it).
    tag: Option<String>,
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
    feed: Feed,
    /// Sequence numbers that `--resume` skips.
    skip: HashSet<usize>,
    /// The next input job, taken from the feed but not started yet.
    pending: Option<Job>,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    /// Waits for the jobs; dropped after them, it kills and reaps any left (an early error).
    reaper: Reaper,
    slots: Vec<Option<Running>>,
    /// Jobs to run again (`--retries`): the job, its next attempt, when it is due.
    retries: VecDeque<(Job, u32, Option<Instant>)>,
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
    /// `/dev/null`, opened once: each job's stdin is a copy (cheaper than opening it again).
    null: std::fs::File,
    /// Escala's environment, captured once for all the jobs (each adds `PARALLEL_SEQ` and
    /// `PARALLEL_JOBSLOT`).
    environment: Environment,
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
        feed: impl FnOnce(Notify) -> anyhow::Result<Feed>,
        skip: HashSet<usize>,
        files: FilePool,
    ) -> anyhow::Result<Engine<'a>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let reaper = Reaper::new().context("cannot create the jobs' reaper")?;
        let home = std::thread::current().id();
        let feed = feed(Notify { tx: tx.clone(), waker: reaper.waker(), home })?;
        let todo = feed
            .total()
            .map_or(MAX_STREAMED_SLOTS, |t| t - skip.iter().filter(|&&s| (1..=t).contains(&s)).count());
        let n = cfg.jobs.min(todo).max(1);
        Ok(Engine {
            cfg,
            template,
            feed,
            skip,
            pending: None,
            tx,
            rx,
            reaper,
            slots: (0..n).map(|_| None).collect(),
            retries: VecDeque::new(),
            last_start: None,
            stopping: false,
            signalled: false,
            failed: 0,
            succeeded: 0,
            halt_code: None,
            programs: Programs::default(),
            gate: Gate { memfree: cfg.memfree, load: cfg.load },
            files,
            null: std::fs::File::open("/dev/null").context("cannot open /dev/null")?,
            environment: Environment::current(),
        })
    }

    /// A sender for SIGINT/SIGTERM notices.
    pub(crate) fn sender(&self) -> Notify {
        Notify { tx: self.tx.clone(), waker: self.reaper.waker(), home: std::thread::current().id() }
    }

    /// The number of jobs, when known (inputs streamed: at their end).
    pub(crate) fn total(&self) -> Option<usize> {
        self.feed.total()
    }

    /// Runs until every job ended (or the run was stopped and the running jobs ended).
    pub(crate) fn run(
        &mut self,
        report: &mut dyn FnMut(Ended<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        loop {
            let wake = self.start_ready(report)?;
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
                    Msg::Input => {}
                }
            }
            if handled {
                continue;
            }
            let no_more = self.retries.is_empty() && self.pending.is_none() && self.feed.is_done();
            if self.slots.iter().all(Option::is_none) && (no_more || self.stopping) {
                return Ok(());
            }
            let next =
                self.slots.iter().flatten().flat_map(|r| [r.deadline, r.kill_at]).flatten().chain(wake).min();
            let now = Instant::now();
            if next.is_some_and(|t| t <= now) {
                self.check_timers();
                continue;
            }
            // Jobs that end are reaped here (their handles' callbacks send `Msg::Part`); the
            // inputs' reader, output readers and the signal thread wake it too.
            self.reaper.wait(next.map(|t| t - now)).context("cannot wait for the jobs")?;
        }
    }

    /// Starts due retries, then input jobs, on free slots; returns when to look again (a
    /// `--delay`, a start gate or a retry that is not due yet). Jobs that `--resume` skips
    /// go to `report` as they come.
    fn start_ready(
        &mut self,
        report: &mut dyn FnMut(Ended<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Option<Instant>> {
        while !self.stopping {
            let Some(slot) = self.slots.iter().position(Option::is_none) else { return Ok(None) };
            let now = Instant::now();
            let retry = self.retries.iter().position(|(_, _, due)| due.is_none_or(|d| d <= now));
            if retry.is_none() && !self.fill_pending(report)? {
                return Ok(self.retries.iter().filter_map(|q| q.2).min());
            }
            if !self.gate.open() {
                return Ok(Some(now + gate::RECHECK));
            }
            if let (Some(d), Some(last)) = (self.cfg.delay, self.last_start) {
                if last + d > now {
                    return Ok(Some(last + d));
                }
            }
            let next = match retry {
                Some(pos) => self.retries.remove(pos).map(|(job, attempt, _)| (job, attempt)),
                None => self.pending.take().map(|job| (job, 1)),
            };
            if let Some((job, attempt)) = next {
                self.start(slot, job, attempt)?;
            }
        }
        Ok(None)
    }

    /// Takes the next input job that is not skipped into `pending`; false when there is
    /// none yet (or no more).
    fn fill_pending(
        &mut self,
        report: &mut dyn FnMut(Ended<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<bool> {
        while self.pending.is_none() {
            match self.feed.next()? {
                Next::Job(job) if self.skip.contains(&job.seq) => report(Ended::Skipped(job.seq - 1))?,
                Next::Job(job) => self.pending = Some(job),
                Next::Later | Next::End => return Ok(false),
            }
        }
        Ok(true)
    }

    fn start(&mut self, slot: usize, j: Job, attempt: u32) -> anyhow::Result<()> {
        let total = self.feed.total().unwrap_or(0);
        let vars = Vars { args: &j.args, seq: j.seq, slot: slot + 1, total };
        let command = self.template.render(&vars, matches!(self.cfg.packing, Packing::Context(_)));
        let tag = self.cfg.tag.as_deref().map(|t| Template::render_text(t, &vars));
        let (capture, streams, pipes) = Capture::new(self.cfg.output, &self.files)?;
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
            .environment(&self.environment)
            .stdin_fd(match &j.input {
                Some(data) => output::feed(data.clone())?,
                None => self.null.try_clone().context("cannot copy the /dev/null descriptor")?,
            });
        let cmd = match streams {
            Some([out, err]) => cmd.stdout_fd(out).stderr_fd(err),
            None => cmd,
        };
        let cmd = cmd.env("PARALLEL_SEQ", j.seq.to_string()).env("PARALLEL_JOBSLOT", (slot + 1).to_string());
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
            job: j,
            attempt,
            handle,
            signaller,
            command,
            tag,
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
        report: &mut dyn FnMut(Ended<'_>) -> anyhow::Result<()>,
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
            self.retries.push_back((r.job, r.attempt + 1, delay.map(|d| Instant::now() + d)));
            return Ok(());
        }
        if ok {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        let job = &r.job;
        if let Some(dir) = &self.cfg.results {
            output::save_results(dir, &job.args, job.seq, &r.capture)?;
        }
        let lens = r.capture.lens();
        let display = r.command.display();
        report(Ended::Ran(Report {
            index: job.seq - 1,
            seq: job.seq,
            slot: slot + 1,
            start: r.start_unix,
            runtime,
            receive: lens.0,
            exitval,
            signal,
            command: &display,
            done: Done { capture: r.capture, tag: r.tag, lens },
        }))?;
        if !ok {
            self.check_halt(HaltOn::Fail, exitval, signal, &display);
        } else {
            self.check_halt(HaltOn::Success, 0, 0, &display);
        }
        Ok(())
    }
}
