//! The thread pool: submission flavours, lazy bounded `map`, shutdown and drop, bounded
//! queues, cancellation, timeouts, retries, initializers, names and stats.
//!
//! A pool's single worker is held busy by a task blocked on a channel (a "gate") whenever
//! a test needs tasks to stay queued; nothing waits on a sleep.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use escala::{ErrorKind, Executor, Handle, QueuePolicy, RetryPolicy, Shutdown, Stats, ThreadPool, UnitKind};

const SOON: Duration = Duration::from_secs(2);

#[escala::task]
fn square(x: u64) -> u64 {
    x * x
}

#[escala::task]
fn checked_div(a: i32, b: i32) -> Result<i32, String> {
    if b == 0 { Err("division by zero".into()) } else { Ok(a / b) }
}

static FLAKY_RUNS: AtomicU32 = AtomicU32::new(0);

/// Fails until it has run `succeed_on` times in this process. Only one test uses it.
#[escala::task]
fn flaky_task(succeed_on: u32) -> Result<u32, String> {
    let n = FLAKY_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    if n < succeed_on { Err(format!("attempt {n} failed")) } else { Ok(n) }
}

/// Occupies the pool's worker(s) until the returned sender is used (or dropped).
/// Returns once the blocker is running, so later submissions stay queued.
fn block_worker(pool: &ThreadPool) -> (Sender<()>, Handle<()>) {
    let (open, gate) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let h = pool.submit_named("blocker", move || {
        started_tx.send(()).unwrap();
        let _ = gate.recv();
    });
    started_rx.recv_timeout(SOON).expect("the blocker never started");
    (open, h)
}

/// Waits until every worker ended, so that the counters are final.
fn settle(pool: &ThreadPool) -> Stats {
    assert!(pool.shutdown(Shutdown::default()));
    pool.stats()
}

// ---------------------------------------------------------------------------------------
// Submitting
// ---------------------------------------------------------------------------------------

#[test]
fn submit_runs_on_a_worker_and_returns_the_value() {
    let pool = ThreadPool::new(2);
    assert_eq!(pool.size(), 2);
    let me = std::thread::current().id();
    let h = pool.submit(move || std::thread::current().id() != me);
    assert_eq!(h.kind(), UnitKind::PoolTask);
    assert!(h.join().unwrap(), "ran on the submitting thread");
}

#[test]
fn submit_named_names_the_task_and_its_token() {
    let pool = ThreadPool::new(1);
    let h = pool.submit_named("Concurrencia 0", || escala::current().task_name().map(str::to_owned));
    assert_eq!(h.name(), "Concurrencia 0");
    assert_eq!(h.join().unwrap().as_deref(), Some("Concurrencia 0"));
}

#[test]
fn submit_fallible_maps_err_to_failed() {
    let pool = ThreadPool::new(2);
    let ok = pool.submit_fallible(|| "7".parse::<u8>());
    let bad = pool.submit_fallible(|| "seven".parse::<u8>());
    assert_eq!(ok.join().unwrap(), 7);
    let e = bad.join().unwrap_err();
    assert!(e.is_failed(), "{e}");
    assert!(matches!(e.kind(), ErrorKind::Failed(m) if m.contains("invalid digit")));
}

#[test]
fn try_submit_accepts_and_gives_the_closure_back_when_refused() {
    let pool = ThreadPool::builder().size(1).queue(1, QueuePolicy::Reject).build();
    let h = pool.try_submit(|| 1).expect("empty pool accepts");
    assert_eq!(h.join().unwrap(), 1);

    let (open, blocker) = block_worker(&pool);
    let queued = pool.try_submit(|| 2).expect("one slot free");
    let refused = pool.try_submit(|| 40 + 2).expect_err("the queue is full");
    assert!(refused.reason().contains("full"), "{}", refused.reason());
    assert!(refused.to_string().contains("full"));
    let f = refused.into_inner();
    assert_eq!(f(), 42, "the closure comes back intact");
    open.send(()).unwrap();
    blocker.join().unwrap();
    assert_eq!(queued.join().unwrap(), 2);

    assert!(pool.shutdown(Shutdown::default()));
    let refused = pool.try_submit(|| 3).expect_err("shut down");
    assert!(refused.reason().contains("shut down"), "{}", refused.reason());
    assert!(pool.stats().rejected >= 2);
}

#[test]
fn submit_task_runs_registered_tasks() {
    let pool = ThreadPool::new(2);
    let h = pool.submit_task(square::call(12));
    assert!(h.name().ends_with("square"), "{}", h.name());
    assert_eq!(h.join().unwrap(), 144);
    let e = pool.submit_task(checked_div::call(1, 0)).join().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Failed("division by zero".into()));
    assert_eq!(pool.submit_task(checked_div::call(9, 3)).join().unwrap(), 3);
}

#[test]
fn pool_survives_panicking_tasks() {
    let pool = ThreadPool::new(2);
    let bad: Vec<_> = (0..10).map(|i| pool.submit(move || -> u32 { panic!("task {i} panics") })).collect();
    let good: Vec<_> = (0..10u32).map(|i| pool.submit(move || i)).collect();
    for (i, h) in bad.into_iter().enumerate() {
        let e = h.join().unwrap_err();
        assert_eq!(e.panic_message(), Some(format!("task {i} panics").as_str()));
        let loc = match e.kind() {
            ErrorKind::Panicked { location, .. } => location.clone().unwrap_or_default(),
            _ => unreachable!(),
        };
        assert!(loc.contains("pool_thread.rs"), "{loc}");
    }
    let sum: u32 = good.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, 45);
    let s = settle(&pool);
    assert_eq!((s.failed, s.completed), (10, 10), "{s:?}");
    assert!(pool.shutdown(Shutdown::default()), "all workers still alive to end");
}

// ---------------------------------------------------------------------------------------
// map
// ---------------------------------------------------------------------------------------

#[test]
fn map_is_ordered_and_lazy_within_the_window() {
    let pool = ThreadPool::builder().size(3).map_window(4).build();
    let window = pool.map_window();
    assert_eq!(window, 4);
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let input = (0..50u64).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    });
    let results = pool.map(|x| x * 10, input);
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "map read input before being polled");
    let mut consumed = 0;
    let mut max_ahead = 0;
    for out in results {
        assert_eq!(out.unwrap(), consumed as u64 * 10, "out of order");
        consumed += 1;
        let ahead = pulled.load(Ordering::SeqCst) - consumed;
        max_ahead = max_ahead.max(ahead);
        assert!(ahead <= window, "pulled {ahead} items ahead of consumption");
    }
    assert_eq!(consumed, 50);
    assert_eq!(pulled.load(Ordering::SeqCst), 50);
    assert_eq!(max_ahead, window - 1, "map does not keep the window in flight");
}

#[test]
fn map_default_window_is_at_least_sixteen() {
    let pool = ThreadPool::new(1);
    assert!(pool.map_window() >= 16, "{}", pool.map_window());
    let pool = ThreadPool::new(8);
    assert_eq!(pool.map_window(), 32);
}

#[test]
fn map_keeps_order_when_later_items_finish_first() {
    let pool = ThreadPool::new(2);
    let latch = Arc::new((Mutex::new(false), Condvar::new()));
    let l = latch.clone();
    // Item 0 cannot finish before item 1 has: ordered map must still yield 0 first.
    let out: Vec<_> = pool
        .map(
            move |x: u32| {
                let (m, cv) = &*l;
                if x == 0 {
                    let g = m.lock().unwrap();
                    let (g, _) = cv.wait_timeout_while(g, SOON, |done| !*done).unwrap();
                    assert!(*g, "item 1 never finished");
                } else {
                    *m.lock().unwrap() = true;
                    cv.notify_all();
                }
                x
            },
            0..2,
        )
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, vec![0, 1]);
}

#[test]
fn map_unordered_yields_in_completion_order() {
    let pool = ThreadPool::new(2);
    // Item 0 cannot finish until the consumer has received a result, so item 1 must come
    // out first; then item 0 is released and comes out second.
    let (release, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let mut it = pool.map_unordered(
        move |x: u32| {
            if x == 0 {
                gate.lock().unwrap().recv_timeout(SOON).expect("item 0 was never released");
            }
            x
        },
        0..2,
    );
    assert_eq!(it.next().unwrap().unwrap(), 1);
    release.send(()).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert!(it.next().is_none());
}

#[test]
fn map_unordered_is_lazy_and_complete() {
    let pool = ThreadPool::builder().size(2).map_window(3).build();
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let input = (0..30u64).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    });
    let it = pool.map_unordered(|x| x + 1, input);
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
    let mut got = Vec::new();
    for out in it {
        got.push(out.unwrap());
        let ahead = pulled.load(Ordering::SeqCst) - got.len();
        assert!(ahead <= 3, "{ahead} ahead");
    }
    got.sort_unstable();
    assert_eq!(got, (1..=30).collect::<Vec<_>>());
}

#[test]
fn map_reports_errors_in_place() {
    let pool = ThreadPool::new(2);
    let out: Vec<_> = pool
        .map(
            |x: u32| {
                if x == 2 {
                    panic!("two is bad")
                }
                x
            },
            0..4,
        )
        .collect();
    assert_eq!(out.len(), 4);
    assert_eq!(out[1].as_ref().unwrap(), &1);
    assert_eq!(out[2].as_ref().unwrap_err().panic_message(), Some("two is bad"));
    assert_eq!(out[3].as_ref().unwrap(), &3);
}

#[test]
fn executor_map_tasks_runs_registered_tasks_in_order() {
    let pool = ThreadPool::builder().size(2).map_window(2).build();
    let out: Vec<u64> = pool.map_tasks((0..10).map(square::call)).map(Result::unwrap).collect();
    assert_eq!(out, (0..10u64).map(|x| x * x).collect::<Vec<_>>());

    let mut un: Vec<u64> = pool.map_tasks_unordered((0..10).map(square::call)).map(Result::unwrap).collect();
    un.sort_unstable();
    assert_eq!(un, out);

    let divs: Vec<_> = pool.map_tasks([checked_div::call(4, 2), checked_div::call(1, 0)]).collect();
    assert_eq!(divs[0].as_ref().unwrap(), &2);
    assert!(divs[1].as_ref().unwrap_err().is_failed());
}

#[test]
fn map_tasks_is_lazy() {
    let pool = ThreadPool::builder().size(1).map_window(2).build();
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let calls = (0..10u64).map(move |x| {
        p.fetch_add(1, Ordering::SeqCst);
        square::call(x)
    });
    let mut it = pool.map_tasks(calls);
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert!(pulled.load(Ordering::SeqCst) <= 1 + 2);
    assert_eq!(it.count(), 9);
}

// ---------------------------------------------------------------------------------------
// Shutdown and drop
// ---------------------------------------------------------------------------------------

#[test]
fn shutdown_waits_for_queued_work_and_is_idempotent() {
    let pool = ThreadPool::new(1);
    let (open, blocker) = block_worker(&pool);
    let ran = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..5)
        .map(|_| {
            let r = ran.clone();
            pool.submit(move || r.fetch_add(1, Ordering::SeqCst))
        })
        .collect();
    let opener = std::thread::spawn(move || open.send(()).unwrap());
    assert!(pool.shutdown(Shutdown::default()), "all workers ended");
    assert_eq!(ran.load(Ordering::SeqCst), 5, "queued work ran before shutdown returned");
    assert!(hs.iter().all(Handle::is_done));
    blocker.join().unwrap();
    opener.join().unwrap();
    assert!(pool.shutdown(Shutdown::default()), "second shutdown");
    assert!(pool.shutdown(Shutdown::now(Duration::ZERO)), "third shutdown");
}

#[test]
fn submit_after_shutdown_is_rejected() {
    let pool = ThreadPool::new(1);
    assert!(pool.shutdown(Shutdown::default()));
    let e = pool.submit(|| 1).join().unwrap_err();
    assert!(e.is_rejected(), "{e}");
    assert!(matches!(e.kind(), ErrorKind::Rejected(why) if why.contains("shut down")));
    assert!(pool.submit_named("n", || 1).join().unwrap_err().is_rejected());
    assert!(pool.submit_fallible(|| Ok::<_, String>(1)).join().unwrap_err().is_rejected());
    assert!(pool.submit_task(square::call(2)).join().unwrap_err().is_rejected());
    let s = pool.stats();
    assert_eq!((s.rejected, s.submitted), (4, 0), "{s:?}");
}

#[test]
fn shutdown_cancel_pending_resolves_queued_tasks_as_cancelled() {
    let pool = ThreadPool::new(1);
    let (open, blocker) = block_worker(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let r = ran.clone();
            pool.submit(move || r.store(true, Ordering::SeqCst))
        })
        .collect();
    let ended = pool.shutdown(Shutdown { wait: false, cancel_pending: true, timeout: None });
    assert!(!ended, "the blocker still runs");
    for h in &queued {
        assert!(h.is_done(), "queued tasks resolve at once");
    }
    for h in queued {
        assert!(h.join().unwrap_err().is_cancelled());
    }
    assert!(!blocker.is_done());
    open.send(()).unwrap();
    blocker.join().unwrap();
    assert!(pool.shutdown(Shutdown::default()));
    assert!(!ran.load(Ordering::SeqCst), "a cancelled queued task ran");
}

/// After `shutdown(cancel_pending)` the counters must still add up: the task that ran to
/// completion counts as completed, the drained ones as cancelled.
#[test]
fn stats_after_cancel_pending_shutdown_add_up() {
    let pool = ThreadPool::new(1);
    let (open, blocker) = block_worker(&pool);
    let queued: Vec<_> = (0..2).map(|_| pool.submit(|| ())).collect();
    assert!(!pool.shutdown(Shutdown { wait: false, cancel_pending: true, timeout: None }));
    open.send(()).unwrap();
    blocker.join().unwrap();
    for h in queued {
        assert!(h.join().unwrap_err().is_cancelled());
    }
    let s = settle(&pool);
    assert_eq!(s.cancelled, 2, "{s:?}");
    assert_eq!(s.completed, 1, "the blocker completed: {s:?}");
    assert_eq!(
        s.submitted,
        s.completed + s.failed + s.cancelled + s.running + s.queued,
        "counters do not add up: {s:?}"
    );
}

#[test]
fn shutdown_timeout_gives_up_waiting_and_can_be_repeated() {
    let pool = ThreadPool::new(1);
    let (open, blocker) = block_worker(&pool);
    let t0 = Instant::now();
    let ended = pool.shutdown(Shutdown {
        wait: true,
        cancel_pending: false,
        timeout: Some(Duration::from_millis(50)),
    });
    assert!(!ended, "the blocker still runs");
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert!(!pool.shutdown(Shutdown { wait: false, ..Shutdown::default() }));
    open.send(()).unwrap();
    blocker.join().unwrap();
    assert!(pool.shutdown(Shutdown::default()));
}

#[test]
fn shutdown_now_cancels_queued_and_waits_for_running() {
    let pool = ThreadPool::new(1);
    let (open, blocker) = block_worker(&pool);
    let queued = pool.submit(|| 1);
    // The running task is let go only once shutdown has resolved the queued one, so
    // shutdown must both cancel the queue and wait for the running task.
    let open = Mutex::new(open);
    queued.on_done(move |_| open.lock().unwrap().send(()).unwrap());
    assert!(pool.shutdown(Shutdown::now(SOON)));
    assert!(blocker.is_done(), "shutdown returned before the running task ended");
    assert!(queued.join().unwrap_err().is_cancelled());
    blocker.join().unwrap();
}

#[test]
fn shutdown_from_inside_a_task_does_not_deadlock() {
    let pool = Arc::new(ThreadPool::new(1));
    let p = pool.clone();
    let h = pool.submit(move || p.shutdown(Shutdown::default()));
    let out = h.join_timeout(SOON).expect("shutdown from a worker hung");
    assert!(!out.unwrap(), "the calling worker is still running");
    assert!(pool.submit(|| ()).join().unwrap_err().is_rejected());
    assert!(pool.shutdown(Shutdown::default()));
}

#[test]
fn drop_finishes_queued_work() {
    let pool = ThreadPool::new(1);
    let (open, blocker) = block_worker(&pool);
    let ran = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..5)
        .map(|_| {
            let r = ran.clone();
            pool.submit(move || r.fetch_add(1, Ordering::SeqCst))
        })
        .collect();
    open.send(()).unwrap();
    drop(pool);
    assert_eq!(ran.load(Ordering::SeqCst), 5, "drop discarded queued work");
    blocker.join().unwrap();
    for h in hs {
        h.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Bounded queue
// ---------------------------------------------------------------------------------------

#[test]
fn bounded_queue_reject_policy() {
    let pool = ThreadPool::builder().size(1).queue(2, QueuePolicy::Reject).build();
    let (open, blocker) = block_worker(&pool);
    let a = pool.submit(|| 1);
    let b = pool.submit(|| 2);
    let c = pool.submit(|| 3);
    assert!(c.is_done(), "rejection is immediate");
    let e = c.join().unwrap_err();
    assert!(e.is_rejected(), "{e}");
    assert!(e.to_string().contains("full"), "{e}");
    assert_eq!(pool.stats().rejected, 1);
    open.send(()).unwrap();
    blocker.join().unwrap();
    assert_eq!((a.join().unwrap(), b.join().unwrap()), (1, 2));
    // Room again.
    assert_eq!(pool.submit(|| 4).join().unwrap(), 4);
}

#[test]
fn bounded_queue_block_policy_waits_for_room() {
    let pool = Arc::new(ThreadPool::builder().size(1).queue(1, QueuePolicy::Block).build());
    let (open, blocker) = block_worker(&pool);
    let queued = pool.submit(|| 1);
    let (submitted_tx, submitted_rx) = mpsc::channel();
    let p = pool.clone();
    let submitter = std::thread::spawn(move || {
        let h = p.submit(|| 2);
        submitted_tx.send(()).unwrap();
        h.join()
    });
    assert!(
        submitted_rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "submit returned although the queue was full"
    );
    open.send(()).unwrap();
    submitted_rx.recv_timeout(SOON).expect("room appeared but submit stayed blocked");
    assert_eq!(submitter.join().unwrap().unwrap(), 2);
    assert_eq!(queued.join().unwrap(), 1);
    blocker.join().unwrap();
    assert_eq!(pool.stats().rejected, 0);
}

#[test]
fn bounded_queue_block_policy_unblocks_on_shutdown() {
    let pool = Arc::new(ThreadPool::builder().size(1).queue(1, QueuePolicy::Block).build());
    let (open, blocker) = block_worker(&pool);
    let queued = pool.submit(|| 1);
    let p = pool.clone();
    let (submitted_tx, submitted_rx) = mpsc::channel();
    let submitter = std::thread::spawn(move || {
        let h = p.submit(|| 2);
        submitted_tx.send(()).unwrap();
        h.join()
    });
    // The outcome below must not depend on it, but give the submitter time to block.
    assert!(submitted_rx.recv_timeout(Duration::from_millis(100)).is_err(), "did not block");
    assert!(!pool.shutdown(Shutdown { wait: false, cancel_pending: false, timeout: None }));
    let late = submitter.join().unwrap();
    // Refused because the pool shut down: the outcome says so, as the stats do.
    assert!(late.as_ref().is_err_and(|e| e.is_rejected()), "{late:?}");
    assert_eq!((pool.stats().rejected, pool.stats().submitted), (1, 2), "{:?}", pool.stats());
    open.send(()).unwrap();
    blocker.join().unwrap();
    assert_eq!(queued.join().unwrap(), 1);
}

#[test]
fn bounded_queue_caller_runs_on_the_submitting_thread() {
    let pool = ThreadPool::builder().size(1).name("cr").queue(1, QueuePolicy::CallerRuns).build();
    let (open, blocker) = block_worker(&pool);
    let queued = pool.submit(|| std::thread::current().name().map(str::to_owned));
    let me = std::thread::current();
    let here = pool.submit(|| {
        let t = std::thread::current();
        (t.id(), t.name().map(str::to_owned))
    });
    assert!(here.is_done(), "caller-runs finishes before submit returns");
    let (id, name) = here.join().unwrap();
    assert_eq!(id, me.id());
    assert_eq!(name.as_deref(), me.name());
    open.send(()).unwrap();
    blocker.join().unwrap();
    assert_eq!(queued.join().unwrap().as_deref(), Some("cr-0"));
}

/// A caller-runs task must not disturb the timeout of the task a worker is running.
#[test]
fn caller_runs_does_not_disarm_a_workers_timeout() {
    let pool = ThreadPool::builder()
        .size(1)
        .queue(1, QueuePolicy::CallerRuns)
        .timeout(Duration::from_millis(100))
        .build();
    let (open, gate) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let slow = pool.submit(move || {
        started_tx.send(()).unwrap();
        let _ = gate.recv_timeout(Duration::from_secs(3));
    });
    started_rx.recv_timeout(SOON).unwrap();
    let queued = pool.submit(|| ());
    // Queue full: this one runs here, quickly, under the same pool timeout.
    pool.submit(|| ()).join().unwrap();
    let timed_out = slow.wait_timeout(Duration::from_secs(1));
    open.send(()).unwrap();
    assert!(timed_out, "the worker's task never timed out");
    assert!(slow.join().unwrap_err().is_timed_out());
    queued.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_running_task_is_cooperative() {
    let pool = ThreadPool::new(1);
    let (started_tx, started_rx) = mpsc::channel();
    let (saw_tx, saw_rx) = mpsc::channel();
    let h = pool.submit(move || {
        started_tx.send(()).unwrap();
        let deadline = Instant::now() + SOON;
        while !escala::current().is_cancelled() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        saw_tx.send(escala::current().is_cancelled()).unwrap();
        "late value"
    });
    started_rx.recv_timeout(SOON).unwrap();
    assert!(h.cancel());
    assert!(!h.cancel());
    assert!(saw_rx.recv_timeout(SOON).unwrap(), "the task never saw the cancel");
    assert!(h.join().unwrap_err().is_cancelled());
    // The worker is free again.
    assert_eq!(pool.submit(|| 5).join().unwrap(), 5);
    let s = settle(&pool);
    assert_eq!((s.cancelled, s.completed), (1, 1), "{s:?}");
}

#[test]
fn cancel_queued_task_never_runs_it() {
    let pool = ThreadPool::new(1);
    let (open, blocker) = block_worker(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let victim = pool.submit(move || r.store(true, Ordering::SeqCst));
    let after = pool.submit(|| 7);
    assert!(victim.cancel());
    assert!(victim.is_done(), "a queued task is removed at once");
    assert!(!victim.cancel());
    open.send(()).unwrap();
    blocker.join().unwrap();
    // The single worker reaches `after` only after it has passed the victim.
    assert_eq!(after.join().unwrap(), 7);
    assert!(!ran.load(Ordering::SeqCst), "the cancelled task ran");
    assert!(victim.join().unwrap_err().is_cancelled());
    let s = settle(&pool);
    assert_eq!((s.cancelled, s.completed, s.failed), (1, 2, 0), "{s:?}");
}

/// `cancel()` documents that a queued pool task "is removed at once": the slot it held in
/// a bounded queue must be free for the next submission.
#[test]
fn cancelled_queued_task_frees_its_queue_slot() {
    let pool = ThreadPool::builder().size(1).queue(1, QueuePolicy::Reject).build();
    let (open, blocker) = block_worker(&pool);
    let victim = pool.submit(|| 1);
    assert!(victim.cancel());
    let next = pool.submit(|| 2);
    let s = pool.stats();
    open.send(()).unwrap();
    blocker.join().unwrap();
    assert_eq!(next.join().map_err(|e| e.to_string()), Ok(2));
    assert_eq!((s.queued, s.cancelled), (1, 1), "stats right after the cancel: {s:?}");
}

/// A done-callback that panics must not take a pool worker down with it.
#[test]
fn panicking_on_done_callback_does_not_kill_the_worker() {
    let pool = ThreadPool::new(1);
    let (open, gate) = mpsc::channel::<()>();
    let h = pool.submit(move || {
        let _ = gate.recv();
        1
    });
    h.on_done(|_| panic!("callback panics on purpose"));
    open.send(()).unwrap();
    let next = pool.submit(|| 2).join_timeout(SOON);
    let ended = pool.shutdown(Shutdown { timeout: Some(SOON), ..Shutdown::default() });
    if !ended {
        // The worker is gone: dropping the pool would wait for it forever.
        std::mem::forget(pool);
    }
    assert!(next.is_ok(), "the only worker died: later tasks never run");
    assert!(ended, "shutdown could not account for the dead worker");
    assert_eq!(h.join().unwrap(), 1);
}

// ---------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------

#[test]
fn timeout_resolves_while_the_task_is_still_blocked_and_sets_its_token() {
    let pool = ThreadPool::builder().size(1).timeout(Duration::from_millis(50)).build();
    let (open, gate) = mpsc::channel::<()>();
    let (token_tx, token_rx) = mpsc::channel();
    let h = pool.submit(move || {
        let _ = gate.recv_timeout(Duration::from_secs(3));
        token_tx.send(escala::current().is_cancelled()).unwrap();
    });
    let out = h.join_timeout(SOON).expect("never timed out");
    // The gate is still closed: the task is blocked, yet the handle already resolved.
    assert!(token_rx.try_recv().is_err());
    let e = out.unwrap_err();
    assert!(e.is_timed_out(), "{e}");
    assert_eq!(e.kind(), &ErrorKind::TimedOut(Duration::from_millis(50)));
    open.send(()).unwrap();
    assert!(token_rx.recv_timeout(SOON).unwrap(), "token not set by the timeout");
    // The worker goes on with the next task, which finishes in time.
    assert_eq!(pool.submit(|| 1).join().unwrap(), 1);
}

/// A timed-out task counts as failed, whether or not its handle was joined before the
/// task returned.
#[test]
fn timed_out_tasks_count_as_failed_in_stats() {
    let pool = ThreadPool::builder().size(1).timeout(Duration::from_millis(30)).build();
    let (open_a, gate_a) = mpsc::channel::<()>();
    let (open_b, gate_b) = mpsc::channel::<()>();
    let joined = pool.submit(move || {
        let _ = gate_a.recv_timeout(Duration::from_secs(3));
    });
    let kept = pool.submit(move || {
        let _ = gate_b.recv_timeout(Duration::from_secs(3));
    });
    // `joined`: outcome taken while the task still runs.
    assert!(joined.join().unwrap_err().is_timed_out());
    open_a.send(()).unwrap();
    // `kept`: outcome left in the handle until after the task returned.
    assert!(kept.wait_timeout(SOON));
    open_b.send(()).unwrap();
    let s = settle(&pool);
    assert!(kept.join().unwrap_err().is_timed_out());
    assert_eq!((s.failed, s.cancelled, s.completed), (2, 0, 0), "{s:?}");
}

/// Shutdown waits for running tasks; a running task's timeout must still fire meanwhile
/// (the task here stops only when its token is set).
#[test]
fn timeouts_still_fire_while_shutdown_waits() {
    let pool = ThreadPool::builder().size(1).timeout(Duration::from_millis(100)).build();
    let (started_tx, started_rx) = mpsc::channel();
    let h = pool.submit(move || {
        started_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !escala::current().is_cancelled() && Instant::now() < deadline {
            std::thread::yield_now();
        }
    });
    started_rx.recv_timeout(SOON).unwrap();
    let ended = pool.shutdown(Shutdown { timeout: Some(Duration::from_secs(1)), ..Shutdown::default() });
    let out = h.join_timeout(SOON).expect("never resolved");
    assert!(ended, "shutdown gave up: the running task never timed out");
    assert!(out.unwrap_err().is_timed_out());
}

#[test]
fn fast_tasks_do_not_time_out() {
    let pool = ThreadPool::builder().size(2).timeout(Duration::from_secs(5)).build();
    let out: Vec<_> = pool.map(|x: u32| x + 1, 0..20).map(Result::unwrap).collect();
    assert_eq!(out, (1..=20).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------

fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::attempts(attempts).backoff(Duration::from_millis(1), Duration::from_millis(4))
}

#[test]
fn retry_until_success_counts_attempts() {
    let pool = ThreadPool::builder().size(1).retry(quick_retry(3)).build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let h = pool.submit_fallible(move || {
        let n = t.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 { Err(format!("try {n}")) } else { Ok(n) }
    });
    assert_eq!(h.join().unwrap(), 3);
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    let s = settle(&pool);
    assert_eq!((s.submitted, s.completed, s.failed, s.retried), (1, 1, 0, 2), "{s:?}");
}

#[test]
fn retry_gives_up_after_the_last_attempt_with_the_last_error() {
    let pool = ThreadPool::builder().size(1).retry(quick_retry(4)).build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let h = pool.submit_fallible(move || -> Result<(), String> {
        Err(format!("try {}", t.fetch_add(1, Ordering::SeqCst) + 1))
    });
    let e = h.join().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Failed("try 4".into()));
    assert_eq!(tries.load(Ordering::SeqCst), 4);
    let s = settle(&pool);
    assert_eq!((s.submitted, s.failed, s.retried), (1, 1, 3), "{s:?}");
}

#[test]
fn retry_retries_panics_by_default() {
    let pool = ThreadPool::builder().size(1).retry(quick_retry(2)).build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let h = pool.submit_fallible(move || -> Result<u8, String> {
        if t.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("first try panics")
        }
        Ok(1)
    });
    assert_eq!(h.join().unwrap(), 1);
    assert_eq!(tries.load(Ordering::SeqCst), 2);
}

#[test]
fn retry_on_selects_the_error_kinds() {
    // Panics not retried.
    let pool = ThreadPool::builder().size(1).retry(quick_retry(3).retry_on(false, true, false)).build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let h = pool.submit_fallible(move || -> Result<u8, String> {
        t.fetch_add(1, Ordering::SeqCst);
        panic!("not retried")
    });
    assert!(h.join().unwrap_err().is_panicked());
    assert_eq!(tries.load(Ordering::SeqCst), 1);

    // Failures not retried.
    let pool = ThreadPool::builder().size(1).retry(quick_retry(3).retry_on(true, false, false)).build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let h = pool.submit_fallible(move || -> Result<u8, String> {
        t.fetch_add(1, Ordering::SeqCst);
        Err("not retried".into())
    });
    assert!(h.join().unwrap_err().is_failed());
    assert_eq!(tries.load(Ordering::SeqCst), 1);
    assert_eq!(settle(&pool).retried, 0);
}

#[test]
fn timeouts_are_final_on_a_thread_pool() {
    let pool = ThreadPool::builder()
        .size(1)
        .timeout(Duration::from_millis(30))
        .retry(quick_retry(3).retry_on(true, true, true))
        .build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let (open, gate) = mpsc::channel::<()>();
    let h = pool.submit_fallible(move || -> Result<(), String> {
        t.fetch_add(1, Ordering::SeqCst);
        let _ = gate.recv_timeout(Duration::from_secs(3));
        Err("after the timeout".into())
    });
    assert!(h.join().unwrap_err().is_timed_out());
    open.send(()).unwrap();
    let s = settle(&pool);
    assert_eq!(tries.load(Ordering::SeqCst), 1);
    assert_eq!(s.retried, 0, "{s:?}");
}

#[test]
fn plain_submit_is_never_retried() {
    let pool = ThreadPool::builder().size(1).retry(quick_retry(3)).build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let h = pool.submit(move || -> u8 {
        t.fetch_add(1, Ordering::SeqCst);
        panic!("once")
    });
    assert!(h.join().unwrap_err().is_panicked());
    assert_eq!(tries.load(Ordering::SeqCst), 1);
}

#[test]
fn registered_tasks_are_retried() {
    let pool = ThreadPool::builder().size(1).retry(quick_retry(3)).build();
    let h = pool.submit_task(flaky_task::call(3));
    assert_eq!(h.join().unwrap(), 3);
    assert_eq!(FLAKY_RUNS.load(Ordering::SeqCst), 3);
    assert_eq!(settle(&pool).retried, 2);
}

#[test]
fn cancel_during_backoff_stops_the_retries() {
    let pool = ThreadPool::builder()
        .size(1)
        .retry(
            RetryPolicy::attempts(5).backoff(Duration::from_secs(30), Duration::from_secs(30)).jitter(false),
        )
        .build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let (failed_tx, failed_rx) = mpsc::channel();
    let h = pool.submit_fallible(move || -> Result<(), String> {
        t.fetch_add(1, Ordering::SeqCst);
        failed_tx.send(()).unwrap();
        Err("fails".into())
    });
    failed_rx.recv_timeout(SOON).unwrap();
    // Now in (or about to enter) a 30 s backoff: a cancel resolves it at once.
    assert!(h.cancel());
    assert!(h.join().unwrap_err().is_cancelled());
    // Shutdown fires pending retries at once; the cancelled task must not run again.
    assert!(pool.shutdown(Shutdown::default()));
    assert_eq!(tries.load(Ordering::SeqCst), 1);
}

/// With `cancel_pending: false`, shutdown runs queued work, and a task waiting for its
/// retry is queued work: pending retries are due at once on shutdown (whether the failure
/// came before or after it), they run, and the retry is not dropped as cancelled.
#[test]
fn default_shutdown_runs_a_pending_retry() {
    let pool = ThreadPool::builder()
        .size(1)
        .retry(
            RetryPolicy::attempts(3).backoff(Duration::from_secs(30), Duration::from_secs(30)).jitter(false),
        )
        .build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let (failed_tx, failed_rx) = mpsc::channel();
    let h = pool.submit_fallible(move || {
        let n = t.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            failed_tx.send(()).unwrap();
            Err("first try fails")
        } else {
            Ok(n)
        }
    });
    failed_rx.recv_timeout(SOON).unwrap();
    assert!(pool.shutdown(Shutdown::default()));
    let out = h.join_timeout(SOON).expect("never resolved");
    assert_eq!(out.map_err(|e| e.to_string()), Ok(2));
}

/// Whether a thread of this process is named `name` (Linux: `/proc/self/task/*/comm`).
fn thread_named(name: &str) -> bool {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name))
}

/// Spins (yielding) until `cond` holds; false if it did not within `SOON`.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SOON;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// A task whose attempt fails after the pool's clock thread has stopped (shutdown without
/// waiting, while the attempt runs) must still resolve: its retry cannot be parked on a
/// clock that is gone.
#[test]
fn retry_scheduled_after_shutdown_still_resolves() {
    let pool = ThreadPool::builder()
        .size(1)
        .name("rsched")
        // The timeout starts the clock thread (`rsched-clock`) when the task starts; it must
        // keep running while that timeout is armed, even after shutdown.
        .timeout(Duration::from_secs(10))
        .retry(quick_retry(3))
        .build();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (open, gate) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let a = attempts.clone();
    let h = pool.submit_fallible(move || -> Result<(), String> {
        if a.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = started_tx.send(());
            let _ = gate.recv_timeout(Duration::from_secs(3));
        }
        Err("fails after shutdown".into())
    });
    started_rx.recv_timeout(SOON).unwrap();
    assert!(eventually(|| thread_named("rsched-clock")), "no clock thread");
    assert!(!pool.shutdown(Shutdown { wait: false, ..Shutdown::default() }));
    open.send(()).unwrap();
    // The failure comes after shutdown: its retries still run, and the handle resolves.
    let out = h.join_timeout(SOON).expect("the handle never resolved");
    assert!(out.unwrap_err().is_failed());
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert!(pool.shutdown(Shutdown::default()));
    assert!(eventually(|| !thread_named("rsched-clock")), "the clock thread did not stop");
}

// ---------------------------------------------------------------------------------------
// Initializer, names
// ---------------------------------------------------------------------------------------

#[test]
fn initializer_runs_once_per_worker_with_its_index() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let pool = ThreadPool::builder()
        .size(3)
        .name("init")
        .initializer(move |i| {
            let name = std::thread::current().name().map(str::to_owned);
            s.lock().unwrap().push((i, name));
        })
        .build();
    assert_eq!(pool.submit(|| 1).join().unwrap(), 1);
    assert!(pool.shutdown(Shutdown::default()));
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, (0..3).map(|i| (i, Some(format!("init-{i}")))).collect::<Vec<_>>());
}

#[test]
fn initializer_runs_before_the_worker_takes_tasks() {
    let ready = Arc::new(AtomicBool::new(false));
    let r = ready.clone();
    let pool = ThreadPool::builder().size(1).initializer(move |_| r.store(true, Ordering::SeqCst)).build();
    let r = ready.clone();
    assert!(pool.submit(move || r.load(Ordering::SeqCst)).join().unwrap());
}

#[test]
fn panicking_initializer_does_not_kill_the_worker() {
    let pool = ThreadPool::builder().size(1).initializer(|_| panic!("init fails")).build();
    assert_eq!(pool.submit(|| 3).join_timeout(SOON).expect("worker died").unwrap(), 3);
}

#[test]
fn name_prefix_names_workers_and_default_task_name() {
    let pool = ThreadPool::builder().size(2).name("fetch").build();
    let h = pool.submit(|| std::thread::current().name().map(str::to_owned));
    assert_eq!(h.name(), "fetch");
    let worker = h.join().unwrap().unwrap();
    assert!(worker == "fetch-0" || worker == "fetch-1", "worker thread named {worker:?}");
    assert_eq!(pool.submit_named("custom", || ()).name(), "custom");
    assert!(format!("{pool:?}").contains("fetch"));
}

#[test]
fn default_size_is_the_available_parallelism() {
    let pool = ThreadPool::builder().build();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(pool.size(), cpus);
    assert_eq!(ThreadPool::builder().size(0).build().size(), 1);
}

// ---------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------

#[test]
fn stats_count_every_outcome() {
    let pool = ThreadPool::builder().size(1).queue(3, QueuePolicy::Reject).build();
    assert_eq!(pool.stats(), Stats { workers: 1, ..Stats::default() });

    let (open, blocker) = block_worker(&pool);
    let ok = pool.submit(|| std::thread::sleep(Duration::from_millis(1)));
    let bad = pool.submit(|| -> () { panic!("counted") });
    let victim = pool.submit(|| ());
    let rejected = pool.submit(|| ());
    assert!(rejected.join().unwrap_err().is_rejected());

    let s = pool.stats();
    assert_eq!((s.workers, s.submitted, s.running, s.queued, s.rejected), (1, 4, 1, 3, 1), "{s:?}");
    assert_eq!((s.completed, s.failed, s.cancelled), (0, 0, 0), "{s:?}");

    assert!(victim.cancel());
    open.send(()).unwrap();
    blocker.join().unwrap();
    ok.join().unwrap();
    assert!(bad.join().unwrap_err().is_panicked());
    let failing = pool.submit_fallible(|| Err::<(), _>("counted too"));
    assert!(failing.join().unwrap_err().is_failed());

    let s = settle(&pool);
    assert_eq!((s.submitted, s.completed, s.failed, s.cancelled, s.rejected), (5, 2, 2, 1, 1), "{s:?}");
    assert_eq!((s.running, s.queued, s.retried), (0, 0, 0), "{s:?}");
    assert!(s.busy >= Duration::from_millis(1), "{s:?}");
    let l = s.latency;
    assert!(l.p50 > Duration::ZERO, "{l:?}");
    assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, "{l:?}");
    assert!(l.max >= Duration::from_micros(500), "the 1 ms task is in the histogram: {l:?}");
}

#[test]
fn stats_running_counts_busy_workers() {
    let pool = ThreadPool::new(3);
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let (open, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let hs: Vec<_> = (0..3)
        .map(|_| {
            let b = barrier.clone();
            let g = gate.clone();
            pool.submit(move || {
                b.wait();
                let _ = g.lock().unwrap().recv();
            })
        })
        .collect();
    barrier.wait();
    let s = pool.stats();
    assert_eq!((s.running, s.queued, s.submitted), (3, 0, 3), "{s:?}");
    drop(open);
    for h in hs {
        h.join().unwrap();
    }
    let s = settle(&pool);
    assert_eq!((s.running, s.completed), (0, 3), "{s:?}");
}

#[test]
fn stats_percentiles_after_many_tasks() {
    let pool = ThreadPool::new(4);
    let n = pool.map(|x: u64| (0..x * 100).sum::<u64>(), 0..200).count();
    assert_eq!(n, 200);
    let s = settle(&pool);
    assert_eq!((s.submitted, s.completed), (200, 200), "{s:?}");
    assert!(s.latency.p50 > Duration::ZERO, "{s:?}");
    assert!(s.latency.p99 >= s.latency.p50);
}
