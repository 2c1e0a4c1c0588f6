//! The supervisor's control loop: one thread owns every service's state and reacts to
//! messages — a worker exited (sent by the unit's watcher thread the moment `waitid`
//! returns), a worker is ready, stop, reload, restart, status — and to its own timers
//! (a delayed restart, a stop timeout), waiting on its channel until the nearest one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::sys::signal::Signal;

use super::event::{Reload, ServiceState, ServiceStatus, SupervisorEvent, WorkerStatus};
use super::policy::DeathLog;
use super::service::Service;
use super::worker::{self, Running, WorkerExit};
use super::{Shared, SuperviseError, notify};

pub(crate) enum Msg {
    Exited { id: u64, exit: WorkerExit },
    Ready { id: u64 },
    Stop,
    Reload(Vec<Service>, Sender<Reload>),
    Restart(String, Sender<Result<(), SuperviseError>>),
    Status(Sender<Vec<ServiceStatus>>),
}

struct Worker {
    run: Running,
    index: usize,
    generation: u64,
    started: Instant,
    ready: bool,
    kill_at: Option<Instant>,
}

#[derive(Default)]
struct Slot {
    current: Option<Worker>,
    incoming: Option<Worker>,
    failures: u32,
    restarts: u64,
    restart_at: Option<Instant>,
}

struct Svc {
    spec: Service,
    generation: u64,
    slots: Vec<Slot>,
    retiring: Vec<Worker>,
    state: ServiceState,
    deaths: DeathLog,
    /// Rolling replacement: the next slot, and the old worker being stopped for it.
    rollout: Option<(usize, Option<u64>)>,
    removed: bool,
}

pub(crate) struct Control {
    pub(crate) tx: Sender<Msg>,
    pub(crate) rx: Receiver<Msg>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) dir: PathBuf,
    pub(crate) exit_on_failure: bool,
    pub(crate) sd_notify: bool,
    /// Held by every output thread: all have written their last line when it disconnects.
    flushed: (Sender<()>, Receiver<()>),
    /// Events of the message being handled, emitted once it is.
    pending: Vec<SupervisorEvent>,
    next_id: u64,
    services: Vec<Svc>,
    stopping: bool,
    failed: Vec<String>,
    announced: bool,
}

impl Control {
    pub(crate) fn new(tx: Sender<Msg>, rx: Receiver<Msg>, shared: Arc<Shared>, dir: PathBuf) -> Control {
        Control {
            tx,
            rx,
            shared,
            dir,
            exit_on_failure: false,
            sd_notify: false,
            flushed: crossbeam_channel::bounded(0),
            pending: Vec::new(),
            next_id: 1,
            services: Vec::new(),
            stopping: false,
            failed: Vec::new(),
            announced: false,
        }
    }

    /// Runs until every worker is gone after a stop (or nothing is left to run); returns
    /// the services that failed.
    pub(crate) fn run(mut self, services: Vec<Service>) -> Vec<String> {
        for spec in services {
            self.services.push(Svc::new(spec));
        }
        self.start_ready_services();
        self.flush_events();
        loop {
            if self.finished() {
                break;
            }
            let msg = match self.next_deadline() {
                Some(at) => match self.rx.recv_deadline(at) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            };
            match msg {
                Some(m) => self.handle(m),
                None => self.fire_timers(Instant::now()),
            }
            self.flush_events();
        }
        self.flush_events();
        let _ = std::fs::remove_dir_all(&self.dir);
        // Every worker is gone; its output is written unless a process that escaped its
        // group still holds the pipe: wait for that a bounded time only.
        let (tx, rx) = self.flushed;
        drop(tx);
        let _ = rx.recv_timeout(Duration::from_secs(1));
        self.failed
    }

    fn finished(&self) -> bool {
        let idle =
            self.services.iter().all(|s| s.live() == 0 && s.slots.iter().all(|w| w.restart_at.is_none()));
        let waiting = self.services.iter().any(|s| s.state == ServiceState::Waiting);
        idle && (self.stopping || !waiting)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut see = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        for s in &self.services {
            for w in &s.slots {
                see(w.restart_at);
                see(w.current.as_ref().and_then(|x| x.kill_at));
                see(w.incoming.as_ref().and_then(|x| x.kill_at));
            }
            for r in &s.retiring {
                see(r.kill_at);
            }
        }
        at
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Exited { id, exit } => self.exited(id, exit),
            Msg::Ready { id } => self.ready(id),
            Msg::Stop => self.stop_all(),
            Msg::Reload(specs, reply) => {
                let r = self.reload(specs);
                let _ = reply.send(r);
            }
            Msg::Restart(name, reply) => {
                let r = self.restart(&name);
                let _ = reply.send(r);
            }
            Msg::Status(reply) => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        for si in 0..self.services.len() {
            let svc = &mut self.services[si];
            let kill = |w: &mut Worker| {
                if w.kill_at.is_some_and(|t| t <= now) {
                    // Only once: the worker is still counted as stopping (not restarted).
                    w.kill_at = Some(now + Duration::from_secs(3600));
                    w.run.slot.signal(Signal::SIGKILL);
                }
            };
            svc.retiring.iter_mut().for_each(kill);
            for slot in &mut svc.slots {
                slot.current.iter_mut().chain(slot.incoming.iter_mut()).for_each(kill);
            }
            for wi in 0..svc.slots.len() {
                let slot = &mut self.services[si].slots[wi];
                if slot.restart_at.is_some_and(|t| t <= now) {
                    slot.restart_at = None;
                    if slot.current.is_none() && !self.stopping {
                        self.spawn(si, wi, false);
                    }
                }
            }
            self.advance(si);
        }
    }

    /// Queues an event; hooks and subscribers get it once the current message is handled,
    /// so a restart never waits for a hook.
    fn emit(&mut self, ev: SupervisorEvent) {
        self.pending.push(ev);
    }

    fn flush_events(&mut self) {
        for ev in std::mem::take(&mut self.pending) {
            self.shared.emit(ev);
        }
    }

    /// Starts worker `wi` of service `si` as its current worker (or as the incoming one).
    fn spawn(&mut self, si: usize, wi: usize, incoming: bool) {
        if self.stopping {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let svc = &mut self.services[si];
        match worker::start(&svc.spec, wi, id, (&self.dir, &self.flushed.0), &self.tx) {
            Ok(run) => {
                let pid = run.pid;
                let ready = svc.spec.ready == super::Ready::Started;
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

    fn start_ready_services(&mut self) {
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

    fn deps_ready(&self, si: usize) -> bool {
        self.services[si].spec.depends_on.iter().all(|d| {
            self.services.iter().find(|s| s.spec.name == *d && !s.removed).is_some_and(Svc::all_ready)
        })
    }

    fn after_ready(&mut self) {
        self.start_ready_services();
    }

    fn find(&self, id: u64) -> Option<(usize, usize, Which)> {
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

    fn ready(&mut self, id: u64) {
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

    fn exited(&mut self, id: u64, exit: WorkerExit) {
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
    fn died(&mut self, si: usize, wi: usize, started: Option<Instant>, now: Instant) {
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
    fn stop_worker(w: &mut Worker, spec: &Service) {
        if w.kill_at.is_none() {
            w.run.slot.signal(spec.stop_signal);
            w.kill_at = Some(Instant::now() + spec.stop_timeout);
        }
    }

    fn retire_all(&mut self, si: usize) {
        let svc = &mut self.services[si];
        for slot in &mut svc.slots {
            slot.restart_at = None;
            for mut w in slot.current.take().into_iter().chain(slot.incoming.take()) {
                Self::stop_worker(&mut w, &svc.spec);
                svc.retiring.push(w);
            }
        }
    }

    fn stop_all(&mut self) {
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

    /// Moves a rolling replacement on as far as it can go now.
    fn advance(&mut self, si: usize) {
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

    fn begin_rollout(&mut self, si: usize) {
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

    fn reload(&mut self, specs: Vec<Service>) -> Reload {
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

    fn restart(&mut self, name: &str) -> Result<(), SuperviseError> {
        let Some(si) = self.services.iter().position(|s| s.spec.name == name && !s.removed) else {
            return Err(SuperviseError::UnknownService(name.into()));
        };
        if self.stopping {
            return Err(SuperviseError::Stopping);
        }
        self.begin_rollout(si);
        Ok(())
    }

    fn status(&self) -> Vec<ServiceStatus> {
        let now = Instant::now();
        self.services
            .iter()
            .map(|s| ServiceStatus {
                name: s.spec.name.clone(),
                state: s.state,
                restarts: s.slots.iter().map(|w| w.restarts).sum(),
                workers: s
                    .slots
                    .iter()
                    .enumerate()
                    .map(|(i, w)| WorkerStatus {
                        index: i,
                        pid: w.current.as_ref().map(|x| x.run.pid),
                        ready: w.current.as_ref().is_some_and(|x| x.ready),
                        uptime: w.current.as_ref().map_or(Duration::ZERO, |x| now.duration_since(x.started)),
                        restarts: w.restarts,
                    })
                    .collect(),
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Current,
    Incoming,
    Retiring,
}

impl Svc {
    fn new(spec: Service) -> Svc {
        Svc {
            spec,
            generation: 0,
            slots: Vec::new(),
            retiring: Vec::new(),
            state: ServiceState::Waiting,
            deaths: DeathLog::default(),
            rollout: None,
            removed: false,
        }
    }

    fn live(&self) -> usize {
        let n: usize =
            self.slots.iter().map(|w| w.current.is_some() as usize + w.incoming.is_some() as usize).sum();
        n + self.retiring.len()
    }

    fn all_ready(&self) -> bool {
        self.state == ServiceState::Running
            && self.slots.len() == self.spec.workers
            && self.slots.iter().all(|w| w.current.as_ref().is_some_and(|x| x.ready))
    }
}
