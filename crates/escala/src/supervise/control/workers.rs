//! Starting, readying, losing and stopping workers: the parts of the control loop that act
//! on one worker (see `../README.md`).

use std::time::{Duration, Instant};

use super::{Control, Slot, Svc, Which, Worker};
use crate::supervise::event::{ServiceState, SupervisorEvent};
use crate::supervise::notify;
use crate::supervise::service::Service;
use crate::supervise::worker::{self, WorkerExit};

impl Control {
    /// Starts worker `wi` of service `si` as its current worker (or as the incoming one).
    pub(super) fn spawn(&mut self, si: usize, wi: usize, incoming: bool) {
        if self.stopping {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let svc = &mut self.services[si];
        match worker::start(&svc.spec, wi, id, (&self.dir, &self.flushed.0), &self.tx) {
            Ok(run) => {
                let pid = run.pid;
                let ready = svc.spec.ready == crate::supervise::Ready::Started;
                let w = Worker {
                    run,
                    index: wi,
                    generation: svc.generation,
                    started: Instant::now(),
                    ready,
                    kill_at: None,
                };
                let slot = &mut svc.slots[wi];
                if incoming {
                    slot.incoming = Some(w)
                } else {
                    slot.current = Some(w)
                }
                let service = svc.spec.name.clone();
                self.emit(SupervisorEvent::WorkerStarted { service: service.clone(), worker: wi, pid });
                if ready {
                    self.emit(SupervisorEvent::WorkerReady { service, worker: wi, pid });
                    self.after_ready();
                }
            }
            Err(error) => {
                let service = svc.spec.name.clone();
                self.emit(SupervisorEvent::SpawnFailed { service, worker: wi, error });
                self.died(si, wi, None, Instant::now());
            }
        }
    }

    pub(super) fn start_ready_services(&mut self) {
        if self.stopping {
            return;
        }
        for si in 0..self.services.len() {
            if self.services[si].state != ServiceState::Waiting || !self.deps_ready(si) {
                continue;
            }
            self.services[si].state = ServiceState::Running;
            let n = self.services[si].spec.workers;
            self.services[si].slots.resize_with(n, Slot::default);
            for wi in 0..n {
                self.spawn(si, wi, false);
            }
        }
        if self.sd_notify && !self.announced && self.services.iter().all(|s| s.all_ready()) {
            self.announced = true;
            notify::sd_notify("READY=1");
        }
    }

    pub(super) fn deps_ready(&self, si: usize) -> bool {
        self.services[si].spec.depends_on.iter().all(|d| {
            self.services.iter().find(|s| s.spec.name == *d && !s.removed).is_some_and(Svc::all_ready)
        })
    }

    pub(super) fn after_ready(&mut self) {
        self.start_ready_services();
    }

    pub(super) fn find(&self, id: u64) -> Option<(usize, usize, Which)> {
        for (si, s) in self.services.iter().enumerate() {
            for (wi, w) in s.slots.iter().enumerate() {
                if w.current.as_ref().is_some_and(|x| x.run.id == id) {
                    return Some((si, wi, Which::Current));
                }
                if w.incoming.as_ref().is_some_and(|x| x.run.id == id) {
                    return Some((si, wi, Which::Incoming));
                }
            }
            if let Some(ri) = s.retiring.iter().position(|x| x.run.id == id) {
                return Some((si, ri, Which::Retiring));
            }
        }
        None
    }

    pub(super) fn ready(&mut self, id: u64) {
        let Some((si, wi, which)) = self.find(id) else { return };
        let svc = &mut self.services[si];
        let w = match which {
            Which::Current => svc.slots[wi].current.as_mut(),
            Which::Incoming => svc.slots[wi].incoming.as_mut(),
            Which::Retiring => None,
        };
        if let Some(w) = w {
            w.ready = true;
            let (service, pid) = (svc.spec.name.clone(), w.run.pid);
            self.emit(SupervisorEvent::WorkerReady { service, worker: wi, pid });
            self.advance(si);
            self.after_ready();
        }
    }

    pub(super) fn exited(&mut self, id: u64, exit: WorkerExit) {
        let Some((si, wi, which)) = self.find(id) else { return };
        let now = Instant::now();
        let svc = &mut self.services[si];
        let w = match which {
            Which::Current => svc.slots[wi].current.take(),
            Which::Incoming => svc.slots[wi].incoming.take(),
            Which::Retiring => Some(svc.retiring.remove(wi)),
        };
        let Some(w) = w else { return };
        if let Some(path) = &w.run.notify {
            worker::wake(path);
        }
        let service = svc.spec.name.clone();
        let expected = which == Which::Retiring || w.kill_at.is_some() || self.stopping;
        // A replacement that died before it was ready is always retried (with backoff):
        // the old worker still runs and the rollout waits for it.
        let restart = !expected
            && svc.state == ServiceState::Running
            && (which == Which::Incoming || svc.spec.restart.restarts(exit.success()));
        if which == Which::Retiring {
            if let Some((next, Some(old))) = svc.rollout {
                if old == id {
                    svc.rollout = Some((next + 1, None));
                }
            }
        }
        self.emit(SupervisorEvent::WorkerExited { service, worker: w.index, pid: w.run.pid, exit, expected });
        if restart {
            self.died(si, wi, Some(w.started), now);
        }
        self.advance(si);
        let svc = &mut self.services[si];
        if svc.removed && svc.live() == 0 {
            self.services.remove(si);
        } else if svc.state == ServiceState::Running
            && svc.live() == 0
            && svc.slots.iter().all(|s| s.restart_at.is_none())
            && svc.rollout.is_none()
        {
            svc.state = ServiceState::Exited;
        }
    }

    /// An unexpected death: crash-loop check, then a restart now or after the backoff.
    /// `started` is `None` when the worker could not even be started: never retried at once.
    pub(super) fn died(&mut self, si: usize, wi: usize, started: Option<Instant>, now: Instant) {
        let svc = &mut self.services[si];
        let (deaths, looping) = svc.deaths.record(&svc.spec.crash_loop, now);
        if looping {
            svc.state = ServiceState::Failed;
            svc.rollout = None;
            let name = svc.spec.name.clone();
            self.retire_all(si);
            self.emit(SupervisorEvent::ServiceFailed { service: name.clone(), deaths });
            self.failed.push(name);
            if self.exit_on_failure {
                self.stop_all();
            }
            return;
        }
        let slot = &mut svc.slots[wi];
        if started.is_some_and(|t| now.duration_since(t) >= svc.spec.backoff.reset_after) {
            slot.failures = 0;
        }
        slot.failures += 1;
        slot.restarts += 1;
        let mut delay = svc.spec.backoff.delay(slot.failures);
        if started.is_none() {
            delay = delay.max(svc.spec.backoff.initial).max(Duration::from_millis(100));
        }
        let service = svc.spec.name.clone();
        self.emit(SupervisorEvent::Restarting { service, worker: wi, delay });
        if delay.is_zero() {
            let incoming = self.services[si].slots[wi].current.is_some();
            self.spawn(si, wi, incoming);
        } else {
            self.services[si].slots[wi].restart_at = Some(now + delay);
        }
    }

    /// Asks a worker to stop: the stop signal to its group now, SIGKILL at the timeout.
    pub(super) fn stop_worker(w: &mut Worker, spec: &Service) {
        if w.kill_at.is_none() {
            w.run.slot.signal(spec.stop_signal);
            w.kill_at = Some(Instant::now() + spec.stop_timeout);
        }
    }

    pub(super) fn retire_all(&mut self, si: usize) {
        let svc = &mut self.services[si];
        for slot in &mut svc.slots {
            slot.restart_at = None;
            for mut w in slot.current.take().into_iter().chain(slot.incoming.take()) {
                Self::stop_worker(&mut w, &svc.spec);
                svc.retiring.push(w);
            }
        }
    }

    pub(super) fn stop_all(&mut self) {
        if !self.stopping && self.sd_notify {
            notify::sd_notify("STOPPING=1");
        }
        self.stopping = true;
        for si in 0..self.services.len() {
            self.services[si].rollout = None;
            if self.services[si].state != ServiceState::Failed {
                self.services[si].state = ServiceState::Stopped;
            }
            self.retire_all(si);
        }
    }
}
