//! The parent's side of the fork server (the "zygote"): started on the first process unit,
//! it forks one child per unit, so a unit costs a fork of a small single-threaded process
//! instead of an `exec` of this binary.
//!
//! The zygote is a re-executed copy of this binary that stopped inside `escala::init()`;
//! it never runs `main` and never starts a thread, so forking it is sound. One thread here
//! starts it (its PDEATHSIG is tied to that thread, which lives as long as the zygote) and
//! then reads its reports — forked, failed, exited — and routes them to the units waiting.
//! Units' children die with the zygote (PDEATHSIG), which dies with this process.
//!
//! A unit is forked from the zygote only while this process has the environment and working
//! directory the zygote started with; otherwise the unit falls back to a fresh re-execution,
//! so a unit always sees the current ones.

pub(crate) mod server;
mod wire;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::sys;
use crate::task;
pub(crate) use wire::MAX_MSG;
use wire::{FromZygote, ToZygote};

/// What a unit hears about its child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    Forked(u32),
    Failed(String),
    /// Reaped, with the raw wait status.
    Exited(i32),
    /// The zygote died; its children were killed with it.
    Lost,
}

pub(crate) struct Zygote {
    ctrl: OwnedFd,
    waiters: Mutex<HashMap<u64, Sender<Report>>>,
    alive: AtomicBool,
    fingerprint: u64,
}

static CURRENT: Mutex<Option<Arc<Zygote>>> = Mutex::new(None);

/// A hash of what a child inherits that can change: the environment and the working directory.
fn fingerprint() -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (k, v) in std::env::vars_os() {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    std::env::current_dir().ok().hash(&mut h);
    h.finish()
}

/// The running zygote, started if needed; `None` when units must be re-executed instead
/// (it cannot start, or the environment or directory changed since it started).
pub(crate) fn get(max: usize) -> Option<Arc<Zygote>> {
    let fp = fingerprint();
    let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(z) = cur.as_ref().filter(|z| z.alive.load(Ordering::Acquire)) {
        return (z.fingerprint == fp).then(|| z.clone());
    }
    let z = start(fp, max)?;
    *cur = Some(z.clone());
    Some(z)
}

fn start(fingerprint: u64, max: usize) -> Option<Arc<Zygote>> {
    let (ours, theirs) = sys::seqpacket_pair().ok()?;
    let (tx, rx) = crossbeam_channel::bounded::<Option<Arc<Zygote>>>(1);
    let spawned = std::thread::Builder::new().name("escala-zygote".into()).spawn(move || {
        let mut cmd = super::reexec_command(super::ChildMode::ForkServer, max);
        cmd.stdin(Stdio::from(theirs));
        let Ok(mut child) = cmd.spawn() else {
            let _ = tx.send(None);
            return;
        };
        drop(cmd);
        let z = Arc::new(Zygote {
            ctrl: ours,
            waiters: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            fingerprint,
        });
        let _ = tx.send(Some(z.clone()));
        z.read_reports();
        let _ = child.kill();
        let _ = child.wait();
    });
    spawned.ok()?;
    rx.recv().ok().flatten()
}

impl Zygote {
    /// Routes reports until the zygote goes away, then tells everyone still waiting.
    fn read_reports(&self) {
        let mut buf = vec![0u8; MAX_MSG];
        loop {
            let n = match nix::unistd::read(self.ctrl.as_fd(), &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Ok(msg) = task::decode::<FromZygote>(&buf[..n]) else { continue };
            let (id, report) = match msg {
                FromZygote::Forked { id, pid } => (id, Report::Forked(pid)),
                FromZygote::Failed { id, error } => (id, Report::Failed(error)),
                FromZygote::Exited { id, status } => (id, Report::Exited(status)),
            };
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            let last = !matches!(report, Report::Forked(_));
            if let Some(tx) = if last { waiters.remove(&id) } else { waiters.get(&id).cloned() } {
                let _ = tx.send(report);
            }
        }
        self.alive.store(false, Ordering::Release);
        for (_, tx) in self.waiters.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = tx.send(Report::Lost);
        }
    }

    /// Asks for a child for unit `id` serving `sock` (and writing its stderr to `stderr`).
    /// Reports arrive on the returned channel: `Forked` (or `Failed`), then `Exited` (or `Lost`).
    pub(crate) fn spawn(&self, id: u64, sock: OwnedFd, stderr: Option<OwnedFd>) -> Receiver<Report> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx.clone());
        let msg = task::encode(&ToZygote::Spawn { id, stderr: stderr.is_some() }).unwrap_or_default();
        let mut fds = vec![sock.as_raw_fd()];
        fds.extend(stderr.as_ref().map(|f| f.as_raw_fd()));
        if sys::send_with_fds(self.ctrl.as_fd(), &msg, &fds).is_err() {
            self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            let _ = tx.send(Report::Lost);
        }
        // Our copies of the descriptors close here; the zygote has its own.
        rx
    }

    /// Sends `sig` to `pid` through the zygote, which signals only children not yet reaped.
    pub(crate) fn signal(&self, pid: u32, sig: nix::sys::signal::Signal) {
        if let Ok(msg) = task::encode(&ToZygote::Signal { pid, sig: sig as i32 }) {
            let _ = sys::send_with_fds(self.ctrl.as_fd(), &msg, &[]);
        }
    }
}
