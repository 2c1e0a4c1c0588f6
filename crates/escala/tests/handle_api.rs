//! The one handle type: blocking, polling, cancelling, callbacks, `Future`, and waiting on
//! many handles of mixed unit kinds. Ordering is driven by channels, never by sleeps.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use escala::{ErrorKind, Handle, Shutdown, ThreadPool, UnitKind, WaitFor, as_completed, wait};

/// Upper bound for anything that should happen "soon"; only reached when a test fails.
const SOON: Duration = Duration::from_secs(2);

/// A timeout long enough that reaching it means the condition under test was ignored.
const LONG: Duration = Duration::from_secs(5);

/// A one-shot gate: the task blocks in `wait` until the test calls `open`.
fn gate() -> (Sender<()>, Receiver<()>) {
    mpsc::channel()
}

/// A thread unit that returns `value` once its gate opens.
fn gated_thread(name: &str, value: u32) -> (Sender<()>, Handle<u32>) {
    let (open, rx) = gate();
    let h = escala::thread::spawn(name, move || {
        let _ = rx.recv();
        value
    });
    (open, h)
}

/// A pool task that returns `value` once its gate opens.
fn gated_pool_task(pool: &ThreadPool, name: &str, value: u32) -> (Sender<()>, Handle<u32>) {
    let (open, rx) = gate();
    let h = pool.submit_named(name, move || {
        let _ = rx.recv();
        value
    });
    (open, h)
}

// ---------------------------------------------------------------------------------------
// join, join_timeout, wait_timeout, is_done
// ---------------------------------------------------------------------------------------

#[test]
fn join_returns_the_value_and_the_handle_describes_the_unit() {
    let h = escala::thread::spawn("adder", || 40 + 2);
    assert_eq!(h.name(), "adder");
    assert_eq!(h.kind(), UnitKind::Thread);
    assert_eq!(h.pid(), None, "thread units have no child pid");
    let id = h.id();
    assert!(format!("{h:?}").contains("adder"));
    assert_eq!(h.join().unwrap(), 42);

    let h2 = escala::thread::spawn("other", || ());
    assert_ne!(h2.id(), id, "task ids are unique");
    h2.join().unwrap();
}

#[test]
fn join_timeout_gives_the_handle_back_while_running() {
    let (open, h) = gated_thread("slow", 7);
    let h = match h.join_timeout(Duration::from_millis(20)) {
        Ok(out) => panic!("gate is closed, yet the task finished with {out:?}"),
        Err(h) => h,
    };
    assert!(!h.is_done());
    assert_eq!(h.name(), "slow");
    open.send(()).unwrap();
    let out = h.join_timeout(SOON).expect("the gate is open: must finish");
    assert_eq!(out.unwrap(), 7);
}

#[test]
fn wait_timeout_and_is_done_follow_completion() {
    let (open, h) = gated_thread("waiter", 1);
    assert!(!h.is_done());
    assert!(!h.wait_timeout(Duration::from_millis(20)));
    assert!(!h.is_done());
    open.send(()).unwrap();
    assert!(h.wait_timeout(SOON));
    assert!(h.is_done());
    // wait() on a done handle returns at once and does not take the outcome.
    h.wait();
    assert_eq!(h.join().unwrap(), 1);
}

#[test]
fn wait_timeout_zero_on_a_running_task_is_false() {
    let (open, h) = gated_thread("zero", 1);
    assert!(!h.wait_timeout(Duration::ZERO));
    open.send(()).unwrap();
    assert_eq!(h.join().unwrap(), 1);
}

// ---------------------------------------------------------------------------------------
// cancel
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_returns_true_once_then_false() {
    let (open, h) = gated_thread("to-cancel", 1);
    assert!(h.cancel(), "first cancel of a running unit resolves it");
    assert!(!h.cancel(), "second cancel: it already has an outcome");
    assert!(h.is_done());
    let err = h.join().unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(err.kind(), &ErrorKind::Cancelled);
    drop(open); // lets the thread return; its late value is dropped
}

#[test]
fn cancel_after_completion_is_false_and_keeps_the_value() {
    let h = escala::thread::spawn("quick", || 5);
    h.wait();
    assert!(!h.cancel());
    assert_eq!(h.join().unwrap(), 5);
}

#[test]
fn cancelled_thread_unit_sees_its_token_set() {
    let (saw_tx, saw_rx) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    let h = escala::thread::spawn("cooperative", move || {
        let me = escala::current();
        started_tx.send(()).unwrap();
        let deadline = Instant::now() + SOON;
        while !me.is_cancelled() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        saw_tx.send(me.is_cancelled()).unwrap();
    });
    started_rx.recv_timeout(SOON).unwrap();
    assert!(h.cancel());
    assert!(saw_rx.recv_timeout(SOON).unwrap(), "the token was never set");
    assert!(h.join().unwrap_err().is_cancelled());
}

// ---------------------------------------------------------------------------------------
// on_done
// ---------------------------------------------------------------------------------------

#[test]
fn on_done_registered_before_completion_runs_on_the_finishing_thread() {
    let (open, h) = gated_thread("cb-before", 9);
    let (tx, rx) = mpsc::channel();
    h.on_done(move |out| {
        let who = std::thread::current().name().map(str::to_owned);
        tx.send((out.as_ref().ok().copied(), who)).unwrap();
    });
    assert!(rx.try_recv().is_err(), "callback ran before completion");
    open.send(()).unwrap();
    let (value, who) = rx.recv_timeout(SOON).unwrap();
    assert_eq!(value, Some(9));
    assert_eq!(who.as_deref(), Some("cb-before"));
    // The callback only borrows the outcome: join still gets it.
    assert_eq!(h.join().unwrap(), 9);
}

#[test]
fn on_done_registered_after_completion_runs_at_once_on_the_caller() {
    let h = escala::thread::spawn("cb-after", || "v");
    h.wait();
    let me = std::thread::current().id();
    let (tx, rx) = mpsc::channel();
    h.on_done(move |out| tx.send((*out.as_ref().unwrap(), std::thread::current().id())).unwrap());
    let (v, who) = rx.try_recv().expect("must have run before on_done returned");
    assert_eq!(v, "v");
    assert_eq!(who, me);
    assert_eq!(h.join().unwrap(), "v");
}

#[test]
fn on_done_callbacks_all_run_in_registration_order_and_see_errors() {
    let (open, rx) = gate();
    let h = escala::thread::spawn("cb-err", move || -> u8 {
        let _ = rx.recv();
        panic!("cb failure")
    });
    let (tx, order) = mpsc::channel();
    for i in 0..3 {
        let tx = tx.clone();
        h.on_done(move |out| {
            let e = out.as_ref().unwrap_err();
            tx.send((i, e.is_panicked())).unwrap();
        });
    }
    open.send(()).unwrap();
    let got: Vec<_> = (0..3).map(|_| order.recv_timeout(SOON).unwrap()).collect();
    assert_eq!(got, vec![(0, true), (1, true), (2, true)]);
    assert!(h.join().unwrap_err().is_panicked());
}

#[test]
fn on_done_sees_a_cancellation() {
    let (open, h) = gated_thread("cb-cancel", 1);
    let (tx, rx) = mpsc::channel();
    h.on_done(move |out| tx.send(out.as_ref().unwrap_err().is_cancelled()).unwrap());
    assert!(h.cancel());
    assert!(rx.try_recv().unwrap(), "cancel runs the callbacks before it returns");
    drop(open);
}

/// A panicking done-callback must not keep other waiters from being woken: the outcome is
/// written, so an async waiter (and any joiner) must still see it, and later callbacks still
/// run (Python's `concurrent.futures` logs and ignores exceptions raised by callbacks).
#[test]
fn panicking_on_done_callback_does_not_strand_other_waiters() {
    let (open, mut h) = gated_thread("cb-panics", 3);
    h.on_done(|_| panic!("callback panics on purpose"));
    let (later_tx, later_rx) = mpsc::channel();
    h.on_done(move |_| later_tx.send(()).unwrap());

    let (woken_tx, woken_rx) = mpsc::channel();
    let waker = Waker::from(Arc::new(ChannelWaker(std::sync::Mutex::new(woken_tx))));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut h).poll(&mut cx).is_pending());

    open.send(()).unwrap();
    let woken = woken_rx.recv_timeout(SOON).is_ok();
    let later_ran = later_rx.recv_timeout(Duration::from_millis(200)).is_ok();
    assert!(woken, "the task finished but its waker was never woken");
    assert!(later_ran, "a callback registered after the panicking one never ran");
    assert_eq!(h.join().unwrap(), 3);
}

// ---------------------------------------------------------------------------------------
// Future
// ---------------------------------------------------------------------------------------

/// Sends on a channel when woken.
struct ChannelWaker(std::sync::Mutex<Sender<()>>);

impl Wake for ChannelWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

/// Unparks the blocked thread when woken.
struct ThreadWaker {
    thread: std::thread::Thread,
    wakes: AtomicUsize,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// A minimal executor: polls, parks until woken, fails the test if never woken.
fn block_on<F: Future>(fut: F) -> (F::Output, usize) {
    let mut fut = std::pin::pin!(fut);
    let tw = Arc::new(ThreadWaker { thread: std::thread::current(), wakes: AtomicUsize::new(0) });
    let waker = Waker::from(tw.clone());
    let mut cx = Context::from_waker(&waker);
    let deadline = Instant::now() + SOON;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return (v, tw.wakes.load(Ordering::SeqCst));
        }
        let now = Instant::now();
        assert!(now < deadline, "block_on: future never became ready");
        std::thread::park_timeout(deadline - now);
    }
}

/// Polls `h` once, returning whether it was pending.
async fn poll_once<T>(h: &mut Handle<T>) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *h).poll(cx).is_pending())).await
}

#[test]
fn handle_is_a_future_on_a_hand_rolled_executor() {
    let (open, mut h) = gated_thread("hand-rolled", 11);
    let (first_pending, _) = block_on(poll_once(&mut h));
    assert!(first_pending);
    open.send(()).unwrap();
    let (out, wakes) = block_on(h);
    assert_eq!(out.unwrap(), 11);
    assert!(wakes <= 1, "woken {wakes} times");
}

#[test]
fn handle_wakes_the_registered_waker_on_completion() {
    let (open, mut h) = gated_thread("waker", 1);
    let (tx, rx) = mpsc::channel();
    let waker = Waker::from(Arc::new(ChannelWaker(std::sync::Mutex::new(tx))));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut h).poll(&mut cx).is_pending());
    assert!(rx.try_recv().is_err(), "woken before completion");
    open.send(()).unwrap();
    rx.recv_timeout(SOON).expect("completion must wake the waker");
    match Pin::new(&mut h).poll(&mut cx) {
        Poll::Ready(out) => assert_eq!(out.unwrap(), 1),
        Poll::Pending => panic!("woken but still pending"),
    }
}

#[test]
fn handle_futures_use_the_latest_waker() {
    let (open, mut h) = gated_thread("rewake", 2);
    let (tx1, rx1) = mpsc::channel();
    let (tx2, rx2) = mpsc::channel();
    let w1 = Waker::from(Arc::new(ChannelWaker(std::sync::Mutex::new(tx1))));
    let w2 = Waker::from(Arc::new(ChannelWaker(std::sync::Mutex::new(tx2))));
    assert!(Pin::new(&mut h).poll(&mut Context::from_waker(&w1)).is_pending());
    assert!(Pin::new(&mut h).poll(&mut Context::from_waker(&w2)).is_pending());
    open.send(()).unwrap();
    rx2.recv_timeout(SOON).expect("the latest waker must be woken");
    assert!(rx1.try_recv().is_err(), "a stale waker was woken");
    assert_eq!(h.join().unwrap(), 2);
}

#[test]
fn handle_awaits_on_tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let pool = ThreadPool::new(1);
    let (open_t, mut t) = gated_thread("tokio-ct-thread", 1);
    let (open_p, mut p) = gated_pool_task(&pool, "tokio-ct-pool", 2);
    let (a, b) = rt.block_on(async move {
        assert!(poll_once(&mut t).await, "gate closed: must be pending");
        assert!(poll_once(&mut p).await, "gate closed: must be pending");
        open_t.send(()).unwrap();
        open_p.send(()).unwrap();
        tokio::time::timeout(SOON, async { (t.await, p.await) })
            .await
            .expect("handles never woke the current-thread runtime")
    });
    assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
}

#[test]
fn handle_awaits_on_tokio_multi_thread_and_can_be_spawned() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let pool = ThreadPool::new(2);
    let mut opens = Vec::new();
    let mut joins = Vec::new();
    for i in 0..4u32 {
        let (open, h) = if i % 2 == 0 {
            gated_thread(&format!("mt-{i}"), i)
        } else {
            gated_pool_task(&pool, &format!("mt-{i}"), i)
        };
        opens.push(open);
        // A Handle is Send + 'static: it can be spawned as a task by itself.
        joins.push(rt.spawn(h));
    }
    for o in opens {
        o.send(()).unwrap();
    }
    let out = rt.block_on(async move {
        let mut v = Vec::new();
        for j in joins {
            let r = tokio::time::timeout(SOON, j).await.expect("never woke");
            v.push(r.unwrap().unwrap());
        }
        v
    });
    assert_eq!(out, vec![0, 1, 2, 3]);
}

#[test]
fn awaiting_an_error_outcome_yields_the_error() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let h = escala::thread::spawn("async-boom", || -> u8 { panic!("async boom") });
    let err = rt.block_on(h).unwrap_err();
    assert_eq!(err.panic_message(), Some("async boom"));
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[test]
fn panic_message_and_location_are_captured() {
    let line = line!() + 1;
    let h = escala::thread::spawn("boom", || -> u32 { panic!("kaboom {}", 7) });
    let id = h.id();
    let err = h.join().unwrap_err();
    assert!(err.is_panicked());
    assert_eq!(err.panic_message(), Some("kaboom 7"));
    assert_eq!(err.name(), "boom");
    assert_eq!(err.id(), id);
    match err.kind() {
        ErrorKind::Panicked { message, location: Some(loc) } => {
            assert_eq!(message, "kaboom 7");
            assert!(
                loc.contains(&format!("handle_api.rs:{line}:")),
                "location {loc:?} should point at line {line} of this file"
            );
        }
        other => panic!("expected a panic with a location, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("boom"), "{text}");
    assert!(text.contains(&id.to_string()), "{text} should name {id}");
    assert!(text.contains("kaboom 7"), "{text}");
    assert!(text.contains("handle_api.rs"), "{text}");
}

#[test]
fn error_display_names_task_and_id_for_every_kind() {
    let pool = ThreadPool::builder().size(1).timeout(Duration::from_millis(30)).build();
    let failed = escala::thread::Builder::new("fails").spawn_fallible(|| "x".parse::<u8>());
    let (open, rx) = gate();
    let timed = pool.submit_named("times-out", move || {
        let _ = rx.recv_timeout(SOON);
    });
    let (open2, cancelled) = gated_thread("cancelled", 0);
    assert!(cancelled.cancel());

    let ids = [failed.id(), timed.id(), cancelled.id()];
    let errs = [failed.join().unwrap_err(), timed.join().unwrap_err(), cancelled.join().unwrap_err()];
    open.send(()).unwrap();
    drop(open2);
    assert!(pool.shutdown(Shutdown::default()));
    let rejected = pool.submit_named("late", || ());
    let rejected_id = rejected.id();
    let rejected = rejected.join().unwrap_err();

    let names = ["fails", "times-out", "cancelled", "late"];
    let all_ids = [ids[0], ids[1], ids[2], rejected_id];
    let all: Vec<_> = errs.into_iter().chain([rejected]).collect();
    for ((e, name), id) in all.iter().zip(names).zip(all_ids) {
        let text = e.to_string();
        assert!(text.contains(&format!("`{name}`")), "{text}");
        assert!(text.contains(&id.to_string()), "{text}");
        assert_eq!(e.name(), name);
        assert_eq!(e.id(), id);
    }

    // Exactly one predicate holds for each kind.
    let preds = |e: &escala::TaskError| {
        [
            e.is_panicked(),
            e.is_failed(),
            e.is_timed_out(),
            e.is_cancelled(),
            e.is_worker_lost(),
            e.is_rejected(),
            e.is_codec(),
        ]
    };
    assert_eq!(preds(&all[0]), [false, true, false, false, false, false, false]);
    assert_eq!(preds(&all[1]), [false, false, true, false, false, false, false]);
    assert_eq!(preds(&all[2]), [false, false, false, true, false, false, false]);
    assert_eq!(preds(&all[3]), [false, false, false, false, false, true, false]);
    let labels: Vec<_> = all.iter().map(|e| e.label()).collect();
    assert_eq!(labels, ["failed", "timed-out", "cancelled", "rejected"]);
    assert!(matches!(all[0].kind(), ErrorKind::Failed(m) if m.contains("invalid digit")));
    assert_eq!(all[1].kind(), &ErrorKind::TimedOut(Duration::from_millis(30)));
    assert!(all[1].to_string().contains("timed out"));
    assert!(all[3].to_string().contains("shut down"), "{}", all[3]);
    assert_eq!(all[0].panic_message(), None);
    assert_eq!(all[0].exit_reason(), None);
    assert_eq!(all[2].clone().into_kind(), ErrorKind::Cancelled);
}

// ---------------------------------------------------------------------------------------
// as_completed
// ---------------------------------------------------------------------------------------

#[test]
fn as_completed_follows_completion_order_across_unit_kinds() {
    let pool = ThreadPool::new(2);
    let (open_a, a) = gated_thread("ac-thread-a", 10);
    let (open_b, b) = gated_pool_task(&pool, "ac-pool-b", 20);
    let (open_c, c) = gated_thread("ac-thread-c", 30);
    let (ida, idb, idc) = (a.id(), b.id(), c.id());
    let mut it = as_completed(vec![a, b, c]).timeout(LONG);

    for (open, id, value) in [(open_b, idb, 20), (open_c, idc, 30), (open_a, ida, 10)] {
        open.send(()).unwrap();
        let h = it.next().expect("one more handle");
        assert_eq!(h.id(), id);
        assert!(h.is_done(), "as_completed yields only finished handles");
        assert_eq!(h.join().unwrap(), value);
    }
    assert!(it.next().is_none());
    assert!(!it.timed_out());
}

#[test]
fn as_completed_yields_already_finished_handles_and_errors() {
    let ok = escala::thread::spawn("ac-ok", || 1u8);
    let bad = escala::thread::spawn("ac-bad", || -> u8 { panic!("ac") });
    ok.wait();
    bad.wait();
    let outs: Vec<_> = as_completed(vec![ok, bad]).map(Handle::join).collect();
    assert_eq!(outs.len(), 2);
    assert_eq!(outs.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(outs.iter().any(|o| o.as_ref().is_err_and(|e| e.is_panicked())));
}

#[test]
fn as_completed_of_nothing_is_empty() {
    let mut it = as_completed(Vec::<Handle<()>>::new());
    assert!(it.next().is_none());
    assert!(!it.timed_out());
    assert!(it.into_pending().is_empty());
}

#[test]
fn as_completed_timeout_stops_and_gives_back_the_pending() {
    let pool = ThreadPool::new(1);
    let done = escala::thread::spawn("ac-done", || 1u32);
    done.wait();
    let (open_t, slow_t) = gated_thread("ac-slow-thread", 2);
    let (open_p, slow_p) = gated_pool_task(&pool, "ac-slow-pool", 3);
    let (id_t, id_p) = (slow_t.id(), slow_p.id());

    let t0 = Instant::now();
    let mut it = as_completed(vec![slow_t, done, slow_p]).timeout(Duration::from_millis(50));
    let first = it.next().expect("the finished handle comes first");
    assert_eq!(first.join().unwrap(), 1);
    assert!(it.next().is_none(), "others are gated");
    assert!(it.timed_out());
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert!(it.next().is_none(), "stays stopped after the timeout");

    let pending = it.into_pending();
    let ids: Vec<_> = pending.iter().map(Handle::id).collect();
    assert_eq!(ids, vec![id_t, id_p], "pending keeps input order");
    open_t.send(()).unwrap();
    open_p.send(()).unwrap();
    let vals: Vec<_> = pending.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(vals, vec![2, 3]);
}

#[test]
fn as_completed_with_timeout_that_is_not_reached() {
    let hs: Vec<_> = (0..3u32).map(|i| escala::thread::spawn(format!("ac-fast-{i}"), move || i)).collect();
    let mut it = as_completed(hs).timeout(SOON);
    let mut sum = 0;
    for h in it.by_ref() {
        sum += h.join().unwrap();
    }
    assert_eq!(sum, 3);
    assert!(!it.timed_out());
    assert!(it.into_pending().is_empty());
}

// ---------------------------------------------------------------------------------------
// wait
// ---------------------------------------------------------------------------------------

#[test]
fn wait_first_completed_returns_as_soon_as_one_is_done() {
    let pool = ThreadPool::new(1);
    let (open_a, a) = gated_thread("w-a", 1);
    let (open_b, b) = gated_pool_task(&pool, "w-b", 2);
    let (ida, idb) = (a.id(), b.id());
    open_b.send(()).unwrap();
    let t0 = Instant::now();
    let (done, pending) = wait(vec![a, b], WaitFor::FirstCompleted, Some(LONG));
    assert!(t0.elapsed() < LONG / 2, "returned by timeout, not by completion");
    assert_eq!(done.iter().map(Handle::id).collect::<Vec<_>>(), vec![idb]);
    assert_eq!(pending.iter().map(Handle::id).collect::<Vec<_>>(), vec![ida]);
    open_a.send(()).unwrap();
    let sum: u32 = done.into_iter().chain(pending).map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, 3);
}

#[test]
fn wait_first_error_returns_on_the_first_error() {
    let pool = ThreadPool::new(2);
    let ok = escala::thread::spawn("fe-ok", || 1u32);
    ok.wait(); // a success before the error does not end the wait
    let (open_bad, rx) = gate();
    let bad = pool.submit_named("fe-bad", move || -> u32 {
        let _ = rx.recv();
        panic!("first error")
    });
    let (open_slow, slow) = gated_thread("fe-slow", 3);
    let (id_ok, id_bad, id_slow) = (ok.id(), bad.id(), slow.id());

    let t0 = Instant::now();
    let waiter = std::thread::spawn(move || wait(vec![ok, bad, slow], WaitFor::FirstError, Some(LONG)));
    open_bad.send(()).unwrap();
    let (done, pending) = waiter.join().unwrap();
    assert!(t0.elapsed() < LONG / 2, "returned by timeout, not on the error");
    assert_eq!(done.iter().map(Handle::id).collect::<Vec<_>>(), vec![id_ok, id_bad]);
    assert_eq!(pending.iter().map(Handle::id).collect::<Vec<_>>(), vec![id_slow]);
    open_slow.send(()).unwrap();
    let outs: Vec<_> = done.into_iter().chain(pending).map(Handle::join).collect();
    assert_eq!(outs[0].as_ref().unwrap(), &1);
    assert_eq!(outs[1].as_ref().unwrap_err().panic_message(), Some("first error"));
    assert_eq!(outs[2].as_ref().unwrap(), &3);
}

#[test]
fn wait_first_error_without_errors_waits_for_all() {
    let pool = ThreadPool::new(1);
    let (open_a, a) = gated_thread("fe2-a", 1);
    let (open_b, b) = gated_pool_task(&pool, "fe2-b", 2);
    let waiter = std::thread::spawn(move || wait(vec![a, b], WaitFor::FirstError, Some(SOON)));
    open_a.send(()).unwrap();
    open_b.send(()).unwrap();
    let (done, pending) = waiter.join().unwrap();
    assert_eq!((done.len(), pending.len()), (2, 0));
}

#[test]
fn wait_all_completed_with_a_mix_of_units() {
    let pool = ThreadPool::new(2);
    let mut hs = vec![
        escala::thread::spawn("all-t", || 1u32),
        escala::thread::spawn_daemon("all-d", || 2u32),
        pool.submit_named("all-p", || 3u32),
        escala::thread::spawn("all-bad", || -> u32 { panic!("bad") }),
    ];
    let (open, gated) = gated_pool_task(&pool, "all-gated", 4);
    hs.push(gated);
    let kinds: Vec<_> = hs.iter().map(Handle::kind).collect();
    let waiter = std::thread::spawn(move || wait(hs, WaitFor::AllCompleted, None));
    open.send(()).unwrap();
    let (done, pending) = waiter.join().unwrap();
    assert!(pending.is_empty());
    assert_eq!(done.iter().map(Handle::kind).collect::<Vec<_>>(), kinds);
    let outs: Vec<_> = done.into_iter().map(Handle::join).collect();
    assert_eq!(outs.iter().filter(|o| o.is_ok()).count(), 4);
    assert!(outs[3].as_ref().unwrap_err().is_panicked());
}

#[test]
fn wait_with_timeout_returns_the_pending_handles() {
    let pool = ThreadPool::new(1);
    let quick = pool.submit_named("wt-quick", || 1u32);
    quick.wait();
    let (open, slow) = gated_thread("wt-slow", 2);
    let slow_id = slow.id();
    let t0 = Instant::now();
    let (done, pending) = wait(vec![quick, slow], WaitFor::AllCompleted, Some(Duration::from_millis(50)));
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert_eq!(done.len(), 1);
    assert_eq!(pending.iter().map(Handle::id).collect::<Vec<_>>(), vec![slow_id]);
    open.send(()).unwrap();
    assert_eq!(pending.into_iter().next().unwrap().join().unwrap(), 2);
}

#[test]
fn wait_on_nothing_returns_at_once() {
    for until in [WaitFor::FirstCompleted, WaitFor::FirstError, WaitFor::AllCompleted] {
        let (done, pending) = wait(Vec::<Handle<()>>::new(), until, None);
        assert!(done.is_empty() && pending.is_empty());
    }
}

#[test]
fn handles_can_be_sent_and_joined_on_another_thread() {
    let (open, h) = gated_thread("moved", 8);
    let joiner = std::thread::spawn(move || h.join());
    open.send(()).unwrap();
    assert_eq!(joiner.join().unwrap().unwrap(), 8);
}
