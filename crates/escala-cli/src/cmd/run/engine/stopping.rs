//! Stopping jobs: `--halt` decisions, SIGTERM then SIGKILL to a job's process group, and
//! `--timeout`.

use std::time::Instant;

use nix::sys::signal::Signal;

use super::{Engine, KILL_GRACE};
use crate::config::run::{HaltOn, HaltWhen, Limit};

impl Engine<'_> {
    /// The exit code for the failures so far: their number (at most 101), or with
    /// `--halt …=P%` their percentage of all jobs, as GNU parallel.
    pub(crate) fn failed_code(&self) -> u8 {
        let h = self.cfg.halt;
        match (h.when, h.limit) {
            (HaltWhen::Never, _) | (_, Limit::Count(_)) => self.failed.min(101) as u8,
            (_, Limit::Percent(_)) => (self.failed * 100 / self.total_or_started().max(1)).min(100) as u8,
        }
    }

    pub(super) fn check_halt(&mut self, on: HaltOn, exitval: i32, signal: i32, display: &str) {
        let h = self.cfg.halt;
        if h.when == HaltWhen::Never || h.on != on || self.halt_code.is_some() {
            return;
        }
        let count = if on == HaltOn::Fail { self.failed } else { self.succeeded };
        let hit = match h.limit {
            Limit::Count(n) => count >= n,
            Limit::Percent(p) => count as f64 * 100.0 >= p * self.total_or_started() as f64,
        };
        if !hit {
            return;
        }
        self.halt_code = Some(match (on, h.limit) {
            (HaltOn::Success, _) => 0,
            (HaltOn::Fail, Limit::Count(1)) if exitval > 0 => exitval.min(255) as u8,
            (HaltOn::Fail, Limit::Count(1)) if signal > 0 => (128 + signal).min(255) as u8,
            (HaltOn::Fail, _) => self.failed_code(),
        });
        if on == HaltOn::Fail {
            eprintln!("escala: this job failed: {display}");
        }
        self.stopping = true;
        if h.when == HaltWhen::Now {
            self.stop_all();
        }
    }

    /// The number of jobs (known up front whenever `--halt` counts a percentage), or those
    /// ended so far.
    fn total_or_started(&self) -> usize {
        self.total().unwrap_or(self.failed + self.succeeded)
    }

    /// Stops every running job and starts no more.
    pub(super) fn stop_all(&mut self) {
        self.stopping = true;
        for slot in 0..self.slots.len() {
            self.stop(slot);
        }
    }

    /// Sends SIGTERM to the job's process group; SIGKILL follows after a grace period.
    pub(super) fn stop(&mut self, slot: usize) {
        let Some(r) = self.slots[slot].as_mut() else { return };
        if !r.stopped {
            r.stopped = true;
            r.deadline = None;
            r.signaller.signal(Signal::SIGTERM);
            r.kill_at = Some(Instant::now() + KILL_GRACE);
        }
    }

    pub(super) fn check_timers(&mut self) {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            let Some(r) = self.slots[slot].as_mut() else { continue };
            if r.kill_at.is_some_and(|t| t <= now) {
                r.kill_at = None;
                r.signaller.signal(Signal::SIGKILL);
            }
            if r.deadline.is_some_and(|t| t <= now) {
                eprintln!(
                    "escala: warning: this job was killed because it timed out: {}",
                    r.command.display()
                );
                self.stop(slot);
            }
        }
    }
}
