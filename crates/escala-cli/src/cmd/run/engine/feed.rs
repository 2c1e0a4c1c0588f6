//! The jobs to start, in input order: a list read before the run, or batches streamed by the
//! inputs' reader thread (`inputs::stream`) while the jobs run.

use std::collections::VecDeque;

use crossbeam_channel::{Receiver, TryRecvError};

use super::super::Job;
use super::super::inputs::Batch;

/// Where the next job comes from.
pub(crate) struct Feed {
    source: Source,
    /// The next job's sequence number (from 1).
    next_seq: usize,
    /// The number of jobs, once known (at once for a list; at end of input for a stream).
    total: Option<usize>,
}

enum Source {
    List(std::vec::IntoIter<Job>),
    Stream { rx: Receiver<Batch>, ready: VecDeque<Vec<String>> },
}

/// What [`Feed::next`] found.
pub(crate) enum Next {
    Job(Job),
    /// Nothing yet: the reader wakes the scheduler when more arrives.
    Later,
    /// No more jobs.
    End,
}

impl Feed {
    /// Jobs known up front.
    pub(crate) fn list(jobs: Vec<Job>) -> Feed {
        let total = Some(jobs.len());
        Feed { source: Source::List(jobs.into_iter()), next_seq: 1, total }
    }

    /// Jobs' arguments streamed by a reader thread.
    pub(crate) fn stream(rx: Receiver<Batch>) -> Feed {
        Feed { source: Source::Stream { rx, ready: VecDeque::new() }, next_seq: 1, total: None }
    }

    /// The number of jobs, when known.
    pub(crate) fn total(&self) -> Option<usize> {
        self.total
    }

    /// Whether no job is left to take (the end of a stream is seen by [`next`](Self::next)).
    pub(crate) fn is_done(&self) -> bool {
        match &self.source {
            Source::List(it) => it.len() == 0,
            Source::Stream { ready, .. } => ready.is_empty() && self.total.is_some(),
        }
    }

    /// The next job, without blocking.
    pub(crate) fn next(&mut self) -> anyhow::Result<Next> {
        match &mut self.source {
            Source::List(it) => Ok(it.next().map_or(Next::End, Next::Job)),
            Source::Stream { rx, ready } => {
                while ready.is_empty() && self.total.is_none() {
                    match rx.try_recv() {
                        Ok(batch) => ready.extend(batch?),
                        Err(TryRecvError::Empty) => return Ok(Next::Later),
                        Err(TryRecvError::Disconnected) => self.total = Some(self.next_seq - 1),
                    }
                }
                let Some(args) = ready.pop_front() else {
                    return Ok(if self.total.is_some() { Next::End } else { Next::Later });
                };
                let seq = self.next_seq;
                self.next_seq += 1;
                Ok(Next::Job(Job { seq, args, input: None }))
            }
        }
    }
}
