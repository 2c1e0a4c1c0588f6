//! Lazy, bounded `map` over any executor: ordered ([`Map`]) and as-completed ([`MapUnordered`]).
//!
//! Both read the input only to keep at most `window` tasks in flight, so an endless
//! iterator is fine and memory stays bounded.

use std::collections::VecDeque;

use crossbeam_channel::{Receiver, Sender};

use crate::error::Outcome;
use crate::handle::Handle;

/// Results of a `map`, in input order. Created by `ThreadPool::map` and `Executor::map_tasks`.
pub struct Map<I, S, T> {
    input: I,
    submit: S,
    window: usize,
    inflight: VecDeque<Handle<T>>,
}

impl<I, S, T> Map<I, S, T> {
    pub(crate) fn new(input: I, submit: S, window: usize) -> Self {
        Map { input, submit, window: window.max(1), inflight: VecDeque::new() }
    }
}

impl<I: Iterator, S: FnMut(I::Item) -> Handle<T>, T> Iterator for Map<I, S, T> {
    type Item = Outcome<T>;

    fn next(&mut self) -> Option<Outcome<T>> {
        while self.inflight.len() < self.window {
            match self.input.next() {
                Some(x) => self.inflight.push_back((self.submit)(x)),
                None => break,
            }
        }
        self.inflight.pop_front().map(Handle::join)
    }
}

/// Results of a `map`, in the order tasks finish. Created by `ThreadPool::map_unordered`.
pub struct MapUnordered<I, S, T> {
    input: I,
    submit: S,
    window: usize,
    slots: Vec<Option<Handle<T>>>,
    free: Vec<usize>,
    tx: Sender<usize>,
    rx: Receiver<usize>,
    inflight: usize,
}

impl<I, S, T> MapUnordered<I, S, T> {
    pub(crate) fn new(input: I, submit: S, window: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        MapUnordered {
            input,
            submit,
            window: window.max(1),
            slots: Vec::new(),
            free: Vec::new(),
            tx,
            rx,
            inflight: 0,
        }
    }
}

impl<I: Iterator, S: FnMut(I::Item) -> Handle<T>, T> Iterator for MapUnordered<I, S, T> {
    type Item = Outcome<T>;

    fn next(&mut self) -> Option<Outcome<T>> {
        while self.inflight < self.window {
            let Some(x) = self.input.next() else { break };
            let h = (self.submit)(x);
            let idx = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            let tx = self.tx.clone();
            h.notify_when_done(move || {
                let _ = tx.send(idx);
            });
            self.slots[idx] = Some(h);
            self.inflight += 1;
        }
        if self.inflight == 0 {
            return None;
        }
        let idx = self.rx.recv().expect("the sender lives in self");
        self.inflight -= 1;
        self.free.push(idx);
        self.slots[idx].take().map(Handle::join)
    }
}
