//! [`Reaper`]: one thread waits for the ends of many command units at once, instead of one
//! watcher thread per unit.
//!
//! Each child is watched through a pidfd (never by `waitpid(-1)`: the library reaps only the
//! children it started) registered in an epoll set; an eventfd lets other threads wake the
//! waiter. The thread that calls [`Reaper::wait`] reaps the children that ended and resolves
//! their handles itself, so a child's end costs that thread one wake-up and no other thread
//! any.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use rustix::event::{EventfdFlags, Timespec, epoll, eventfd};

use super::ChildSlot;

/// The epoll token of the eventfd; children get tokens from 1.
const WAKE: u64 = 0;

/// Waits for the command units started with [`Command::reaper`](super::Command::reaper) and
/// resolves their handles — on the thread that calls [`wait`](Reaper::wait), and only then.
/// A program that runs many short commands and has a loop of its own (a scheduler) saves a
/// thread hand-off per command this way.
///
/// Dropping the reaper kills (SIGKILL) the commands it still waits for, reaps them and
/// resolves their handles, so no handle waits forever and no child is left behind.
///
/// # Examples
///
/// ```
/// use escala::process::{Command, Reaper};
/// let reaper = Reaper::new().unwrap();
/// let h = Command::new("true").die_with_parent(false).reaper(&reaper).spawn();
/// while !h.is_done() {
///     reaper.wait(None).unwrap(); // resolves `h` here once `true` has exited
/// }
/// assert!(h.join().is_ok());
/// ```
pub struct Reaper {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    epoll: OwnedFd,
    wake: OwnedFd,
    next: AtomicU64,
    children: Mutex<HashMap<u64, Watched>>,
}

/// One child: its pidfd (closing it leaves the epoll set), its slot (to kill it when the
/// reaper is dropped), and what reaps it and resolves its handle.
struct Watched {
    pidfd: OwnedFd,
    slot: Arc<ChildSlot>,
    end: End,
}

/// Reaps one child and resolves its handle.
pub(crate) type End = Box<dyn FnOnce() + Send>;

impl Reaper {
    /// A reaper with no children yet.
    ///
    /// # Errors
    ///
    /// When the epoll set or the eventfd cannot be created (out of file descriptors).
    pub fn new() -> std::io::Result<Reaper> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &wake, epoll::EventData::new_u64(WAKE), epoll::EventFlags::IN)?;
        let inner = Inner { epoll, wake, next: AtomicU64::new(WAKE + 1), children: Mutex::default() };
        Ok(Reaper { inner: Arc::new(inner) })
    }

    pub(crate) fn inner(&self) -> Arc<Inner> {
        self.inner.clone()
    }

    /// Blocks until at least one of its commands has ended, [`Waker::wake`] was called, or
    /// `timeout` passed (`None`: no limit); reaps the commands that ended and resolves their
    /// handles (their [`on_done`](crate::Handle::on_done) callbacks run here). Returns how
    /// many it resolved. An interrupted wait (EINTR) returns `Ok(0)`.
    ///
    /// # Errors
    ///
    /// Only if `epoll_wait` fails for a reason other than a signal.
    pub fn wait(&self, timeout: Option<Duration>) -> std::io::Result<usize> {
        let timeout =
            timeout.map(|t| Timespec::try_from(t).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 }));
        let mut buf = [MaybeUninit::<epoll::Event>::uninit(); 64];
        let (ready, _) = match epoll::wait(&self.inner.epoll, &mut buf, timeout.as_ref()) {
            Ok(r) => r,
            Err(rustix::io::Errno::INTR) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut ends = Vec::with_capacity(ready.len());
        {
            let mut children = self.inner.lock();
            for ev in ready.iter() {
                match ev.data.u64() {
                    WAKE => {
                        let mut n = [0u8; 8];
                        let _ = rustix::io::read(&self.inner.wake, &mut n);
                    }
                    token => ends.extend(children.remove(&token)),
                }
            }
        }
        let n = ends.len();
        // Outside the lock: a callback may start the next command on this reaper.
        for w in ends {
            let Watched { pidfd, end, .. } = w;
            drop(pidfd);
            end();
        }
        Ok(n)
    }

    /// A handle that wakes [`wait`](Reaper::wait) from another thread.
    pub fn waker(&self) -> Waker {
        Waker { inner: self.inner.clone() }
    }

    /// How many commands it waits for.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether it waits for no command.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Watched>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches the child behind `pidfd`: once it has exited, a `wait` runs `end`. Gives
    /// `end` back when the pidfd cannot join the epoll set.
    pub(crate) fn watch(&self, pidfd: OwnedFd, slot: Arc<ChildSlot>, end: End) -> Result<(), End> {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let data = epoll::EventData::new_u64(token);
        let mut children = self.lock();
        // Level-triggered: a child that exited before this line is reported all the same.
        if epoll::add(&self.epoll, &pidfd, data, epoll::EventFlags::IN).is_err() {
            return Err(end);
        }
        children.insert(token, Watched { pidfd, slot, end });
        Ok(())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let left: Vec<Watched> = self.inner.lock().drain().map(|(_, w)| w).collect();
        for w in &left {
            w.slot.signal(Signal::SIGKILL);
        }
        // Each `end` reaps its child (dead or dying of SIGKILL) and resolves its handle.
        for w in left {
            (w.end)();
        }
    }
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").field("children", &self.len()).finish()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reaper")
    }
}

/// Wakes a [`Reaper::wait`] from another thread (its `wait` then returns, maybe with 0).
/// Cheap to clone.
///
/// # Examples
///
/// ```
/// let reaper = escala::process::Reaper::new().unwrap();
/// let waker = reaper.waker();
/// std::thread::spawn(move || waker.wake());
/// assert_eq!(reaper.wait(None).unwrap(), 0); // woken, nothing reaped
/// ```
#[derive(Clone)]
pub struct Waker {
    inner: Arc<Inner>,
}

impl Waker {
    /// Makes the reaper's current or next `wait` return.
    pub fn wake(&self) {
        let _ = rustix::io::write(&self.inner.wake, &1u64.to_ne_bytes());
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}
