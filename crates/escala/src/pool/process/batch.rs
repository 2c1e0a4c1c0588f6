//! [`Batch`]: many calls of one registered task travelling as one queue item, one `Batch`
//! frame and a few `Replies` frames — what `map_tasks` sends instead of a [`Pending`] with
//! a handle per call. [`Work`] is either.

use std::sync::Arc;

use super::pending::{Counts, Pending};
use crate::error::ErrorKind;

/// Where a batch's outcomes go (a `map_tasks` iterator), by element index in the map.
pub(super) trait BatchSink: Send + Sync {
    /// Settles elements not settled yet; each is counted in `counts` before it shows.
    fn settle(&self, items: &mut dyn Iterator<Item = (u64, Result<&[u8], ErrorKind>)>, counts: &Counts);
    /// Nobody wants these outcomes any more (the iterator was dropped).
    fn abandoned(&self) -> bool;
}

/// The encoded arguments of a batch's elements: each a u32 LE length, then the bytes.
pub(super) struct Args {
    pub(super) bytes: Vec<u8>,
    /// Where each element starts in `bytes`, plus the end.
    pub(super) offs: Vec<u32>,
}

/// Elements `from..to` of a batch, still to be run (or replied to).
pub(super) struct Batch {
    /// The job id on the wire, unique among task ids.
    pub(super) id: u64,
    pub(super) task: &'static str,
    pub(super) args: Arc<Args>,
    /// The map index of element 0.
    pub(super) base: u64,
    pub(super) from: u32,
    pub(super) to: u32,
    /// 1 for the first run (a retried element travels alone).
    pub(super) attempt: u32,
    pub(super) out: Arc<dyn BatchSink>,
}

impl Batch {
    pub(super) fn len(&self) -> usize {
        (self.to - self.from) as usize
    }

    /// The arguments of elements `from..to`, as sent.
    pub(super) fn wire_args(&self) -> &[u8] {
        let o = &self.args.offs;
        &self.args.bytes[o[self.from as usize] as usize..o[self.to as usize] as usize]
    }

    /// Elements `at..to` as a batch of their own (a new id); `self` keeps `from..at`.
    pub(super) fn split_off(&mut self, at: u32) -> Batch {
        let rest = Batch {
            id: crate::handle::TaskId::next().0,
            task: self.task,
            args: self.args.clone(),
            base: self.base,
            from: at,
            to: self.to,
            attempt: self.attempt,
            out: self.out.clone(),
        };
        self.to = at;
        rest
    }

    /// Element `k` alone (same arguments, a new id).
    pub(super) fn piece(&self, k: u32) -> Batch {
        Batch {
            id: crate::handle::TaskId::next().0,
            task: self.task,
            args: self.args.clone(),
            base: self.base,
            from: k,
            to: k + 1,
            attempt: self.attempt,
            out: self.out.clone(),
        }
    }

    /// Ends elements `from..to` with `kind`.
    pub(super) fn settle_all(&self, kind: &ErrorKind, counts: &Counts) {
        self.settle_range(self.from, kind, counts);
    }

    /// Ends elements `from..self.to` with `kind`.
    pub(super) fn settle_range(&self, from: u32, kind: &ErrorKind, counts: &Counts) {
        let mut items = (from..self.to).map(|k| (self.base + u64::from(k), Err(kind.clone())));
        self.out.settle(&mut items, counts);
    }
}

/// A queue item: one task with its handle, or a batch of a map.
pub(super) enum Work {
    One(Pending),
    Many(Batch),
}

impl Work {
    /// The job id on the wire.
    pub(super) fn id(&self) -> u64 {
        match self {
            Work::One(p) => p.id,
            Work::Many(b) => b.id,
        }
    }

    /// Tasks it holds.
    pub(super) fn len(&self) -> usize {
        match self {
            Work::One(_) => 1,
            Work::Many(b) => b.len(),
        }
    }

    pub(super) fn attempt(&self) -> u32 {
        match self {
            Work::One(p) => p.attempt,
            Work::Many(b) => b.attempt,
        }
    }

    /// Already resolved (or unwanted): nothing is left to run it for.
    pub(super) fn is_settled(&self) -> bool {
        match self {
            Work::One(p) => p.sink.is_done(),
            Work::Many(b) => b.out.abandoned(),
        }
    }

    /// Ends it with `kind`.
    pub(super) fn settle_err(&self, kind: ErrorKind, counts: &Counts) {
        match self {
            Work::One(p) => {
                p.sink.settle(Err(kind), counts);
            }
            Work::Many(b) => b.settle_all(&kind, counts),
        }
    }
}
