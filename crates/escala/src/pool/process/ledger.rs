//! A worker's ledger: one shared memory region per worker incarnation where the worker
//! stages the replies of a batch's finished elements before they go out in one
//! `Replies` frame. It is the crash-safe record of finished work: memory the worker wrote
//! outlives the worker, so when it dies mid-batch the parent reads back which elements
//! finished, with their replies, and knows which one was running.
//!
//! Layout: a 64-byte header of atomics — the batch id, `first << 32 | count` (the staged
//! replies are elements `first..first + count`), when the element after them started
//! (`CLOCK_MONOTONIC`, ns), and how many `Cancel` frames the parent sent — then the staged
//! replies, postcard-encoded one after another. Batch id 0 stages single jobs instead: whole
//! `Done` frames, `count` of them.
//! The worker writes a reply's bytes, then the start time of the next element, then bumps
//! `count` (the commit point); after a flush it moves `first` past them with `count` 0 in
//! one store.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst,
};

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use super::wire::{FromWorker, ReplyRef, split_replies};
use crate::process::frame::HEADER as HEADER_LEN;
use crate::task::Reply;

/// Bytes mapped per worker (only the pages touched take memory).
const SIZE: usize = 1 << 20;
/// Bytes before the staged replies.
const HEAD: usize = 64;
/// The fd a worker finds its ledger on.
pub(crate) const WORKER_FD: i32 = 3;

#[repr(C)]
struct Header {
    batch: AtomicU64,
    pos: AtomicU64,
    since: AtomicU64,
    /// `Cancel` and `CancelRange` frames the parent sent (counted before each is written).
    cancels: AtomicU64,
    /// 1 if the pool has a timeout: the worker then reads the precise clock per element.
    timed: AtomicU64,
}

/// One mapping of a ledger (the parent's or the worker's).
pub(crate) struct Ledger {
    ptr: NonNull<u8>,
}

// SAFETY: the mapping is plain memory shared by design: the header is only accessed through
// atomics, the staged bytes are written by the worker's main thread alone and read by the
// parent only once that worker is dead.
unsafe impl Send for Ledger {}
// SAFETY: as for `Send`.
unsafe impl Sync for Ledger {}

/// What a dead worker's ledger holds: a batch's replies, or (batch 0) single jobs' `Done`.
pub(crate) struct Staged {
    pub(crate) batch: u64,
    pub(crate) first: u32,
    pub(crate) replies: Vec<Reply>,
    /// Single jobs' replies, in order: (job id, reply).
    pub(crate) done: Vec<(u64, Reply)>,
}

impl Ledger {
    /// A new ledger for a worker, and the fd to hand it (close-on-exec).
    pub(crate) fn create() -> io::Result<(Ledger, OwnedFd)> {
        let fd = memfd_create(c"escala-pool-ledger", MFdFlags::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, SIZE as i64)?;
        Ok((Ledger::map(&fd)?, fd))
    }

    /// Maps the ledger behind `fd` (the worker's side; the fd can be closed afterwards).
    pub(crate) fn map(fd: &OwnedFd) -> io::Result<Ledger> {
        let len = NonZeroUsize::new(SIZE).expect("non-zero");
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        // SAFETY: a new shared mapping chosen by the kernel, of a file at least `SIZE`
        // long; nothing else in this process refers to that address range.
        let ptr = unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, fd, 0) }?;
        Ok(Ledger { ptr: ptr.cast() })
    }

    fn head(&self) -> &Header {
        // SAFETY: the mapping is page-aligned, longer than `Header`, zero-filled at creation
        // (a valid `AtomicU64` pattern) and lives as long as `self`; atomics are the only
        // way anyone touches these bytes.
        unsafe { &*self.ptr.as_ptr().cast::<Header>() }
    }

    /// Room for staged replies.
    pub(crate) fn capacity(&self) -> usize {
        SIZE - HEAD
    }

    /// Worker: batch `id` starts at element `first` now.
    pub(crate) fn begin(&self, id: u64, first: u32, now: u64) {
        let h = self.head();
        h.batch.store(id, Release);
        h.since.store(now, Release);
        h.pos.store(u64::from(first) << 32, Release);
    }

    /// Worker: the staging area from byte `off` on, to encode a reply (or frame) into.
    pub(crate) fn area(&mut self, off: usize) -> &mut [u8] {
        let off = off.min(self.capacity());
        // SAFETY: in bounds of the mapping; only the worker's main thread (the one holding
        // `&mut self`) writes here, and the parent reads these bytes only after its death.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(HEAD + off), SIZE - HEAD - off) }
    }

    /// Worker: the first `len` staged bytes, to send.
    pub(crate) fn staged(&self, len: usize) -> &[u8] {
        let len = len.min(self.capacity());
        // SAFETY: in bounds; written only by this worker's main thread, which is the caller.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(HEAD), len) }
    }

    /// Worker: one more reply is staged, and the next element starts now.
    pub(crate) fn commit(&self, now: u64) {
        let h = self.head();
        h.since.store(now, Release);
        // The worker alone writes `pos`: a load and a store, no read-modify-write.
        h.pos.store(h.pos.load(Relaxed) + 1, Release);
    }

    /// Worker: the staged replies were sent; the next staged one is element `next`.
    pub(crate) fn sent(&self, next: u32) {
        self.head().pos.store(u64::from(next) << 32, Release);
    }

    /// Parent, before the worker starts: the pool times its tasks (elements need precise
    /// start times).
    pub(crate) fn set_timed(&self) {
        self.head().timed.store(1, SeqCst);
    }

    /// Worker: whether the pool times its tasks.
    pub(crate) fn timed(&self) -> bool {
        self.head().timed.load(SeqCst) == 1
    }

    /// Parent: one more `Cancel` is about to be written.
    pub(crate) fn count_cancel(&self) {
        self.head().cancels.fetch_add(1, SeqCst);
    }

    /// Worker: the `Cancel` frames the parent has written (or is writing).
    pub(crate) fn cancels(&self) -> u64 {
        self.head().cancels.load(SeqCst)
    }

    /// Parent, while the worker lives: the batch it works on, the element running (or next
    /// to run) and since when (`CLOCK_MONOTONIC` ns). The time is never earlier than that
    /// element's start.
    pub(crate) fn progress(&self) -> (u64, u32, u64) {
        let h = self.head();
        loop {
            let (batch, pos) = (h.batch.load(Acquire), h.pos.load(Acquire));
            let since = h.since.load(Acquire);
            if h.pos.load(Acquire) == pos && h.batch.load(Acquire) == batch {
                let running = (pos >> 32) as u32 + (pos & 0xffff_ffff) as u32;
                return (batch, running, since);
            }
        }
    }

    /// Parent, once the worker is dead and reaped: the replies it staged but never sent.
    pub(crate) fn recover(&self) -> Staged {
        let h = self.head();
        let (batch, pos) = (h.batch.load(Acquire), h.pos.load(Acquire));
        let (first, count) = ((pos >> 32) as u32, (pos & 0xffff_ffff) as u32);
        // SAFETY: in bounds; the only writer is dead (reaped), so the bytes no longer change.
        let blob = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(HEAD), SIZE - HEAD) };
        if batch == 0 {
            // Whole `Done` frames.
            let mut done = Vec::new();
            let mut rest = blob;
            for _ in 0..count {
                let Some(len) =
                    rest.get(8..12).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                else {
                    break;
                };
                let Some(body) = rest.get(HEADER_LEN..HEADER_LEN + len) else { break };
                match postcard::from_bytes::<FromWorker>(body) {
                    Ok(FromWorker::Done { id, reply, .. }) => done.push((id, reply)),
                    _ => break,
                }
                rest = &rest[HEADER_LEN + len..];
            }
            return Staged { batch, first, replies: Vec::new(), done };
        }
        let replies = split_replies(blob, count).into_iter().map(ReplyRef::into_reply).collect();
        Staged { batch, first, replies, done: Vec::new() }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `SIZE` bytes; no reference into it outlives `self`.
        let _ = unsafe { munmap(self.ptr.cast(), SIZE) };
    }
}

/// `CLOCK_MONOTONIC` now, in ns: the same clock in the parent and its workers.
pub(crate) fn mono_ns() -> u64 {
    clock_ns(nix::time::ClockId::CLOCK_MONOTONIC)
}

/// `CLOCK_MONOTONIC_COARSE` now, in ns: a few ms behind at most, and much cheaper to read
/// (on some virtual machines the precise clock costs ~100 ns): enough for "has it been
/// 5 ms", never used for timeouts.
pub(crate) fn coarse_ns() -> u64 {
    clock_ns(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
}

fn clock_ns(id: nix::time::ClockId) -> u64 {
    nix::time::clock_gettime(id).map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_replies_survive_in_another_mapping() {
        let (parent, fd) = Ledger::create().unwrap();
        let mut worker = Ledger::map(&fd).unwrap();
        drop(fd);
        worker.begin(9, 4, 1);
        let mut off = 0;
        for r in [Reply::Ok(vec![1]), Reply::Failed("x".into())] {
            off += postcard::to_slice(&r, worker.area(off)).unwrap().len();
            worker.commit(2);
        }
        assert_eq!(parent.progress(), (9, 6, 2));
        let s = parent.recover();
        assert_eq!((s.batch, s.first), (9, 4));
        assert_eq!(s.replies, vec![Reply::Ok(vec![1]), Reply::Failed("x".into())]);
        worker.sent(6);
        assert!(parent.recover().replies.is_empty());
        assert_eq!(parent.progress().1, 6);
        parent.count_cancel();
        assert_eq!(worker.cancels(), 1);
        // Single jobs: whole `Done` frames.
        worker.begin(0, 0, 3);
        let mut frame = vec![0u8; crate::process::frame::HEADER];
        let body = postcard::to_stdvec(&FromWorker::Done { id: 77, reply: Reply::Cancelled, ns: 5 }).unwrap();
        crate::process::frame::fill_header(
            &mut frame,
            crate::process::frame::FrameKind::FromWorker,
            body.len() as u32,
        );
        frame.extend(body);
        worker.area(0)[..frame.len()].copy_from_slice(&frame);
        worker.commit(4);
        assert_eq!(parent.recover().done, vec![(77, Reply::Cancelled)]);
    }
}
