//! The supervisor's control loop: one thread owns every service's state and reacts to
//! messages — a worker exited (sent by the unit's watcher thread the moment `waitid`
//! returns), a worker is ready, stop, reload, restart, status — and to its own timers
//! (a delayed restart, a stop timeout), waiting on its channel until the nearest one.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::signal::Signal;

use super::event::{Reload, ServiceState, ServiceStatus, SupervisorEvent, WorkerStatus};
use super::policy::DeathLog;
use super::service::Service;
use super::worker::{Running, WorkerExit};
use super::{Shared, SuperviseError};

mod rollout;
mod workers;

/// The control thread's inbox: a channel, and an eventfd that wakes its `poll`.
#[derive(Clone)]
pub(crate) struct Mailbox {
    tx: Sender<Msg>,
    wake: Arc<OwnedFd>,
}

impl Mailbox {
    pub(crate) fn new() -> std::io::Result<(Mailbox, Receiver<Msg>)> {
        use rustix::event::{EventfdFlags, eventfd};
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((Mailbox { tx, wake: Arc::new(wake) }, rx))
    }

    pub(crate) fn send(&self, msg: Msg) -> Result<(), crossbeam_channel::SendError<Msg>> {
        self.tx.send(msg)?;
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        Ok(())
    }
}

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
    pub(crate) tx: Mailbox,
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
    pub(crate) fn new(tx: Mailbox, rx: Receiver<Msg>, shared: Arc<Shared>, dir: PathBuf) -> Control {
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
            while let Ok(m) = self.rx.try_recv() {
                self.handle(m);
            }
            self.flush_events();
            if self.finished() {
                break;
            }
            self.wait_for_something();
            self.fire_timers(Instant::now());
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

    /// Sleeps in `poll` until a message, a command worker's death (its pidfd) or the
    /// nearest timer; handles the deaths it sees.
    fn wait_for_something(&mut self) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let timeout = self.next_deadline().map(|at| at.saturating_duration_since(Instant::now()));
        let timeout = timeout.and_then(|d| Timespec::try_from(d).ok());
        let mut ids = Vec::new();
        let dead: Vec<u64> = {
            let mut fds = vec![PollFd::new(&*self.tx.wake, PollFlags::IN)];
            for w in self.workers() {
                if let Some(fd) = &w.run.pidfd {
                    fds.push(PollFd::new(fd, PollFlags::IN));
                    ids.push(w.run.id);
                }
            }
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return,
                Err(e) => {
                    tracing::error!("supervisor poll failed: {e}");
                    return;
                }
            }
            if !fds[0].revents().is_empty() {
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(&*self.tx.wake, &mut buf);
            }
            fds[1..].iter().zip(&ids).filter(|(fd, _)| !fd.revents().is_empty()).map(|(_, id)| *id).collect()
        };
        for id in dead {
            self.died_by_pidfd(id);
        }
    }

    /// A command worker's pidfd is readable: it has exited. Handles the death now, from
    /// its status read without reaping; the watcher's later message finds no worker. If the
    /// watcher reaped first, that message is the one to wait for.
    fn died_by_pidfd(&mut self, id: u64) {
        let Some((si, wi, which)) = self.find(id) else { return };
        let w = match which {
            Which::Current => self.services[si].slots[wi].current.as_mut(),
            Which::Incoming => self.services[si].slots[wi].incoming.as_mut(),
            Which::Retiring => self.services[si].retiring.get_mut(wi),
        };
        let Some(fd) = w.and_then(|w| w.run.pidfd.take()) else { return };
        if let Some(reason) = crate::process::sys::exit_of(fd.as_fd()) {
            self.exited(id, WorkerExit::from_reason(reason));
        }
    }

    fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.services.iter().flat_map(|s| {
            s.slots.iter().flat_map(|w| w.current.iter().chain(w.incoming.iter())).chain(s.retiring.iter())
        })
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
