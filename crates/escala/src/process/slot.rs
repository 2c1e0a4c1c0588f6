//! [`ChildSlot`]: one child process shared by its watcher, its cancel hook and the exit
//! policy. The child is reaped only under the slot's lock, so a signal sent through the slot
//! never reaches a recycled pid.
//!
//! A slot made with [`ChildSlot::group`] owns a child that leads its own process group:
//! signals go to the whole group, and when the leader has exited (still a zombie, so its
//! group id cannot be reused) the rest of the group is killed before the leader is reaped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use nix::sys::signal::Signal;

use super::sys;
use super::zygote::Zygote;
use crate::handle::Handle;

pub(crate) struct ChildSlot {
    child: Mutex<Slot>,
    /// The child leads its own process group: signal the group, sweep it at reap.
    group: bool,
}

struct Slot {
    child: Option<std::process::Child>,
    /// A child started by `posix_spawn` (`spawn.rs`): reaped here, by pid.
    spawned: Option<u32>,
    /// A child forked by the zygote: signalled through it, reaped by it.
    remote: Option<(u32, Arc<Zygote>)>,
    status: Option<std::process::ExitStatus>,
    /// A stop signal asked for before the child existed, sent as soon as it does.
    early: Option<Signal>,
}

impl Slot {
    /// The pid of a child this process reaps itself (started by `std` or `posix_spawn`).
    fn own_pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id).or(self.spawned)
    }
}

impl ChildSlot {
    pub(crate) fn new() -> ChildSlot {
        ChildSlot {
            child: Mutex::new(Slot { child: None, spawned: None, remote: None, status: None, early: None }),
            group: false,
        }
    }

    /// A slot for a child that leads its own process group (see the module docs).
    pub(crate) fn group() -> ChildSlot {
        ChildSlot { group: true, ..ChildSlot::new() }
    }

    fn send(&self, pid: u32, sig: Signal) {
        if self.group { sys::signal_group(pid, sig) } else { sys::signal(pid, sig) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the spawned child to the slot (and delivers a stop asked for meanwhile).
    pub(crate) fn put(&self, child: std::process::Child) {
        let mut s = self.lock();
        if let Some(sig) = s.early.take() {
            self.send(child.id(), sig);
        }
        s.child = Some(child);
    }

    /// Hands a child started by `posix_spawn` to the slot.
    pub(crate) fn put_spawned(&self, pid: u32) {
        let mut s = self.lock();
        if let Some(sig) = s.early.take() {
            self.send(pid, sig);
        }
        s.spawned = Some(pid);
    }

    /// Hands a child forked by the zygote to the slot.
    pub(crate) fn put_remote(&self, pid: u32, zygote: Arc<Zygote>) {
        let mut s = self.lock();
        if let Some(sig) = s.early.take() {
            zygote.signal(pid, sig);
        }
        s.remote = Some((pid, zygote));
    }

    /// Records the status the zygote reaped (or `None`: lost with the zygote).
    pub(crate) fn set_reaped(&self, status: Option<std::process::ExitStatus>) {
        let mut s = self.lock();
        s.remote = None;
        s.status = status.or(Some(std::os::unix::process::ExitStatusExt::from_raw(Signal::SIGKILL as i32)));
    }

    /// Sends `sig` to the child if it has not been reaped.
    pub(crate) fn signal(&self, sig: Signal) {
        let mut s = self.lock();
        if s.status.is_some() {
            return;
        }
        if let Some(pid) = s.spawned {
            // Not reaped (reaping takes this lock): the pid is still this child's.
            return self.send(pid, sig);
        }
        match s.child.as_mut() {
            // Never reaped here: an unreaped leader keeps the group id from being reused.
            Some(ch) if self.group => self.send(ch.id(), sig),
            Some(ch) => match ch.try_wait() {
                Ok(None) => sys::signal(ch.id(), sig),
                Ok(Some(st)) => s.status = Some(st),
                Err(_) => {}
            },
            None => match &s.remote {
                Some((pid, z)) => z.signal(*pid, sig),
                None => s.early = Some(sig),
            },
        }
    }

    /// A pidfd for the child, opened under the lock while it is not reaped (so it is the
    /// child, never a recycled pid).
    pub(crate) fn pidfd(&self) -> Option<std::os::fd::OwnedFd> {
        let s = self.lock();
        match (s.own_pid(), s.status) {
            (Some(pid), None) => sys::pidfd(pid).ok(),
            _ => None,
        }
    }

    /// Reaps the child (it has exited) and returns its status.
    pub(crate) fn reap(&self) -> Option<std::process::ExitStatus> {
        let mut s = self.lock();
        if let Some(st) = s.status {
            return Some(st);
        }
        if let Some(pid) = s.own_pid().filter(|_| self.group) {
            // The leader has exited but is not reaped: its group id is still ours to kill.
            sys::signal_group(pid, Signal::SIGKILL);
        }
        let spawned = s.spawned;
        let st = match (s.child.as_mut(), spawned) {
            (Some(ch), _) => ch.wait().ok(),
            (None, Some(pid)) => sys::reap(pid),
            (None, None) => None,
        };
        s.status = st;
        st
    }

    /// Makes `handle.cancel()` stop the child: SIGTERM, then SIGKILL after `grace`.
    pub(crate) fn install_cancel<T>(
        self: &std::sync::Arc<Self>,
        handle: &Handle<T>,
        ended: Receiver<()>,
        grace: Duration,
    ) {
        let slot = self.clone();
        handle.set_cancel_hook(move || {
            slot.signal(Signal::SIGTERM);
            let _ = std::thread::Builder::new().name("escala-stop".into()).spawn(move || {
                if ended.recv_timeout(grace).is_err_and(|e| e.is_timeout()) {
                    slot.signal(Signal::SIGKILL);
                }
            });
        });
    }
}
