//! Rolling replacement, reload and restart: the parts of the control loop that swap a
//! service's workers one at a time (see `../README.md`).

use super::{Control, Slot, Svc};
use crate::supervise::SuperviseError;
use crate::supervise::event::{Reload, ServiceState, SupervisorEvent};
use crate::supervise::service::Service;

impl Control {
    /// Moves a rolling replacement on as far as it can go now.
    pub(super) fn advance(&mut self, si: usize) {
        loop {
            let svc = &mut self.services[si];
            let Some((next, None)) = svc.rollout else { return };
            if next >= svc.spec.workers {
                let extra: Vec<Slot> = svc.slots.drain(svc.spec.workers.min(svc.slots.len())..).collect();
                for mut slot in extra {
                    for mut w in slot.current.take().into_iter().chain(slot.incoming.take()) {
                        Self::stop_worker(&mut w, &svc.spec);
                        svc.retiring.push(w);
                    }
                }
                svc.rollout = None;
                let service = svc.spec.name.clone();
                self.emit(SupervisorEvent::Replaced { service });
                return;
            }
            if svc.slots.len() <= next {
                svc.slots.resize_with(next + 1, Slot::default);
            }
            let generation = svc.generation;
            let slot = &mut svc.slots[next];
            if slot.restart_at.is_some() {
                return; // a backoff is running for this slot
            }
            match (&slot.current, &slot.incoming) {
                (None, _) => {
                    slot.current = slot.incoming.take();
                    if slot.current.is_none() {
                        self.spawn(si, next, false);
                    }
                    self.services[si].rollout = Some((next + 1, None));
                }
                (Some(c), _) if c.generation == generation => {
                    self.services[si].rollout = Some((next + 1, None))
                }
                // Loops: a worker that is ready when started is swapped in at once; one
                // that failed to start has a backoff timer and the loop stops above.
                (Some(_), None) => self.spawn(si, next, true),
                (Some(_), Some(i)) if i.ready => {
                    let mut old = slot.current.take().expect("checked above");
                    slot.current = slot.incoming.take();
                    Self::stop_worker(&mut old, &svc.spec);
                    svc.rollout = Some((next, Some(old.run.id)));
                    svc.retiring.push(old);
                    return;
                }
                (Some(_), Some(_)) => return,
            }
        }
    }

    pub(super) fn begin_rollout(&mut self, si: usize) {
        let svc = &mut self.services[si];
        svc.generation += 1;
        svc.deaths.clear();
        if svc.state == ServiceState::Running {
            svc.rollout = Some((0, None));
            self.advance(si);
        } else if svc.state != ServiceState::Waiting {
            svc.state = ServiceState::Waiting;
            svc.slots.clear();
            self.start_ready_services();
        }
    }

    pub(super) fn reload(&mut self, specs: Vec<Service>) -> Reload {
        let mut r = Reload::default();
        if self.stopping {
            return r;
        }
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        for si in 0..self.services.len() {
            if !self.services[si].removed && !names.contains(&self.services[si].spec.name) {
                self.services[si].removed = true;
                self.services[si].state = ServiceState::Stopped;
                self.services[si].rollout = None;
                r.removed.push(self.services[si].spec.name.clone());
                self.retire_all(si);
            }
        }
        self.services.retain(|s| !(s.removed && s.live() == 0));
        for spec in specs {
            match self.services.iter().position(|s| s.spec.name == spec.name && !s.removed) {
                Some(si) if self.services[si].spec == spec => r.unchanged.push(spec.name),
                Some(si) => {
                    r.changed.push(spec.name.clone());
                    self.services[si].spec = spec;
                    self.begin_rollout(si);
                }
                None => {
                    r.added.push(spec.name.clone());
                    self.services.push(Svc::new(spec));
                }
            }
        }
        self.start_ready_services();
        self.emit(SupervisorEvent::Reloaded(r.clone()));
        r
    }

    pub(super) fn restart(&mut self, name: &str) -> Result<(), SuperviseError> {
        let Some(si) = self.services.iter().position(|s| s.spec.name == name && !s.removed) else {
            return Err(SuperviseError::UnknownService(name.into()));
        };
        if self.stopping {
            return Err(SuperviseError::Stopping);
        }
        self.begin_rollout(si);
        Ok(())
    }
}
