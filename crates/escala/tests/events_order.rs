//! Lifecycle order asserted from the event log, not from timing.
//!
//! Events are process-wide and the tests of this file run in parallel, so each test
//! subscribes, runs its units, and keeps only the events of its own task ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use escala::events::{self, Event, EventKind, Subscription};
use escala::{RetryPolicy, Shutdown, TaskId, ThreadPool, UnitKind};

const SOON: Duration = Duration::from_secs(2);

#[escala::task]
fn cube(x: u64) -> u64 {
    x * x * x
}

/// Every event received so far for `task`, in arrival order.
fn events_of(sub: &Subscription, log: &mut Vec<Event>, task: TaskId) -> Vec<Event> {
    log.extend(sub.try_iter());
    log.iter().filter(|e| e.task == task).cloned().collect()
}

/// A compact form of the event kinds: `queued`, `started`, `finished:ok`, `retried:2`, …
fn labels(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .map(|e| match &e.kind {
            EventKind::Queued => "queued".to_owned(),
            EventKind::Started => "started".to_owned(),
            EventKind::Finished { outcome, .. } => format!("finished:{outcome}"),
            EventKind::Retried { attempt, .. } => format!("retried:{attempt}"),
            EventKind::Cancelled => "cancelled".to_owned(),
            EventKind::WorkerStarted => "worker-started".to_owned(),
            EventKind::WorkerLost { .. } => "worker-lost".to_owned(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Common checks: one task, one unit kind, this process, monotonic clock.
fn check_common(evs: &[Event], unit: UnitKind, name: &str) {
    assert!(!evs.is_empty());
    for e in evs {
        assert_eq!(e.unit, unit, "{e:?}");
        assert_eq!(e.name, name, "{e:?}");
        assert_eq!(e.pid, std::process::id(), "{e:?}");
        assert!(e.tid > 0, "{e:?}");
        assert!(e.unix_us > 0, "{e:?}");
    }
    for pair in evs.windows(2) {
        assert!(pair[0].at <= pair[1].at, "event clock went back: {pair:?}");
    }
}

#[test]
fn thread_unit_started_then_finished() {
    let sub = events::subscribe();
    assert!(events::enabled());
    let mut log = Vec::new();
    let h = escala::thread::spawn("ev-thread", || 1);
    let id = h.id();
    h.join().unwrap();
    let evs = events_of(&sub, &mut log, id);
    assert_eq!(labels(&evs), ["started", "finished:ok"]);
    check_common(&evs, UnitKind::Thread, "ev-thread");
    assert_eq!(evs[1].kind, EventKind::Finished { outcome: "ok".into(), error: None });
}

#[test]
fn daemon_thread_events_carry_the_daemon_kind() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let h = escala::thread::spawn_daemon("ev-daemon", || ());
    let id = h.id();
    h.join().unwrap();
    let evs = events_of(&sub, &mut log, id);
    assert_eq!(labels(&evs), ["started", "finished:ok"]);
    check_common(&evs, UnitKind::DaemonThread, "ev-daemon");
}

#[test]
fn panicking_thread_finishes_with_the_panic() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let h = escala::thread::spawn("ev-panics", || -> u8 { panic!("logged panic") });
    let id = h.id();
    assert!(h.join().unwrap_err().is_panicked());
    let evs = events_of(&sub, &mut log, id);
    assert_eq!(labels(&evs), ["started", "finished:panicked"]);
    match &evs[1].kind {
        EventKind::Finished { error: Some(text), .. } => {
            assert!(text.contains("logged panic"), "{text}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pool_task_queued_started_finished() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::builder().size(2).name("ev-pool").build();
    let hs: Vec<_> = (0..4).map(|i| pool.submit_named(format!("ev-p{i}"), move || i)).collect();
    let ids: Vec<_> = hs.iter().map(|h| h.id()).collect();
    for h in hs {
        h.join().unwrap();
    }
    for (i, id) in ids.into_iter().enumerate() {
        let evs = events_of(&sub, &mut log, id);
        assert_eq!(labels(&evs), ["queued", "started", "finished:ok"], "task {i}");
        check_common(&evs, UnitKind::PoolTask, &format!("ev-p{i}"));
    }
}

#[test]
fn pool_tasks_start_in_queue_order_on_one_worker() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::new(1);
    let hs: Vec<_> = (0..5).map(|i| pool.submit_named(format!("fifo-{i}"), move || i)).collect();
    let ids: Vec<_> = hs.iter().map(|h| h.id()).collect();
    for h in hs {
        h.join().unwrap();
    }
    log.extend(sub.try_iter());
    let starts: Vec<_> = log
        .iter()
        .filter(|e| ids.contains(&e.task) && e.kind == EventKind::Started)
        .map(|e| e.task)
        .collect();
    assert_eq!(starts, ids, "a single worker runs tasks in submission order");
    // One worker: each task finishes before the next one starts.
    let mine: Vec<_> = log.iter().filter(|e| ids.contains(&e.task) && e.kind != EventKind::Queued).collect();
    for (i, pair) in mine.chunks(2).enumerate() {
        assert_eq!(pair[0].task, ids[i]);
        assert_eq!(pair[0].kind, EventKind::Started);
        assert_eq!(pair[1].task, ids[i]);
        assert!(matches!(pair[1].kind, EventKind::Finished { .. }));
    }
}

#[test]
fn registered_task_on_a_pool_is_named_after_the_task() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::new(1);
    let h = pool.submit_task(cube::call(3));
    let id = h.id();
    assert_eq!(h.join().unwrap(), 27);
    let evs = events_of(&sub, &mut log, id);
    assert_eq!(labels(&evs), ["queued", "started", "finished:ok"]);
    assert!(evs[0].name.ends_with("cube"), "{}", evs[0].name);
}

#[test]
fn cancelled_queued_pool_task_never_starts() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::new(1);
    let (open, gate) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let blocker = pool.submit_named("ev-blocker", move || {
        started_tx.send(()).unwrap();
        let _ = gate.recv();
    });
    started_rx.recv_timeout(SOON).unwrap();
    let victim = pool.submit_named("ev-victim", || ());
    let after = pool.submit_named("ev-after", || ());
    assert!(victim.cancel());
    open.send(()).unwrap();
    blocker.join().unwrap();
    after.join().unwrap(); // the worker has passed the victim by now
    let evs = events_of(&sub, &mut log, victim.id());
    let l = labels(&evs);
    assert_eq!(l[0], "queued");
    assert!(l.contains(&"cancelled".to_owned()), "{l:?}");
    assert!(l.contains(&"finished:cancelled".to_owned()), "{l:?}");
    assert!(!l.contains(&"started".to_owned()), "a cancelled queued task started: {l:?}");
    assert_eq!(l.len(), 3, "{l:?}");
    check_common(&evs, UnitKind::PoolTask, "ev-victim");
}

#[test]
fn cancelled_running_thread_started_then_cancelled() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let (started_tx, started_rx) = mpsc::channel();
    let (saw_tx, saw_rx) = mpsc::channel();
    let h = escala::thread::spawn("ev-cancel-thread", move || {
        started_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + SOON;
        while !escala::current().is_cancelled() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        saw_tx.send(()).unwrap();
    });
    started_rx.recv_timeout(SOON).unwrap();
    assert!(h.cancel());
    saw_rx.recv_timeout(SOON).unwrap();
    let id = h.id();
    assert!(h.join().unwrap_err().is_cancelled());
    let evs = events_of(&sub, &mut log, id);
    let l = labels(&evs);
    assert_eq!(l[0], "started");
    assert!(l.contains(&"cancelled".to_owned()), "{l:?}");
    assert!(l.contains(&"finished:cancelled".to_owned()), "{l:?}");
    assert_eq!(l.len(), 3, "exactly one finish, even though the thread returned later: {l:?}");
}

/// `Finished` is a task's last event: a timeline closes the bar there. A cancel must be
/// reported before the `Finished { outcome: "cancelled" }` it causes, not after it.
#[test]
fn finished_is_the_last_event_of_a_cancelled_task() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let (open, gate) = mpsc::channel::<()>();
    let h = escala::thread::spawn("ev-cancel-order", move || {
        let _ = gate.recv();
    });
    let id = h.id();
    assert!(h.cancel());
    drop(open);
    assert!(h.join().unwrap_err().is_cancelled());
    let l = labels(&events_of(&sub, &mut log, id));
    assert_eq!(l.last().map(String::as_str), Some("finished:cancelled"), "{l:?}");
    let c = l.iter().position(|x| x == "cancelled").expect("a cancelled event");
    let f = l.iter().position(|x| x == "finished:cancelled").unwrap();
    assert!(c < f, "cancelled after finished: {l:?}");
}

#[test]
fn retried_events_count_attempts() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::builder()
        .size(1)
        .retry(
            RetryPolicy::attempts(3)
                .backoff(Duration::from_millis(1), Duration::from_millis(2))
                .jitter(false),
        )
        .build();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let h = pool.submit_fallible(move || {
        let n = t.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 { Err(format!("try {n}")) } else { Ok(n) }
    });
    let id = h.id();
    assert_eq!(h.join().unwrap(), 3);
    let evs = events_of(&sub, &mut log, id);
    assert_eq!(
        labels(&evs),
        ["queued", "started", "retried:2", "started", "retried:3", "started", "finished:ok"]
    );
    let delays: Vec<_> = evs
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Retried { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![1, 2], "exponential backoff without jitter");
    check_common(&evs, UnitKind::PoolTask, "escala-pool");
}

#[test]
fn exhausted_retries_finish_failed() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::builder()
        .size(1)
        .retry(RetryPolicy::attempts(2).backoff(Duration::from_millis(1), Duration::from_millis(1)))
        .build();
    let h = pool.submit_fallible(|| Err::<(), _>("always"));
    let id = h.id();
    assert!(h.join().unwrap_err().is_failed());
    let evs = events_of(&sub, &mut log, id);
    assert_eq!(labels(&evs), ["queued", "started", "retried:2", "started", "finished:failed"]);
    match &evs[4].kind {
        EventKind::Finished { error: Some(text), .. } => assert!(text.contains("always"), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn timed_out_pool_task_finishes_timed_out() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::builder().size(1).timeout(Duration::from_millis(30)).build();
    let (open, gate) = mpsc::channel::<()>();
    let h = pool.submit_named("ev-timeout", move || {
        let _ = gate.recv_timeout(Duration::from_secs(3));
    });
    let id = h.id();
    assert!(h.join().unwrap_err().is_timed_out());
    open.send(()).unwrap();
    assert!(pool.shutdown(Shutdown::default()));
    let evs = events_of(&sub, &mut log, id);
    assert_eq!(labels(&evs), ["queued", "started", "finished:timed-out"]);
}

#[test]
fn rejected_task_is_never_queued() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::new(1);
    assert!(pool.shutdown(Shutdown::default()));
    let h = pool.submit_named("ev-rejected", || ());
    let id = h.id();
    assert!(h.join().unwrap_err().is_rejected());
    let evs = events_of(&sub, &mut log, id);
    assert_eq!(labels(&evs), ["finished:rejected"]);
}

#[test]
fn shutdown_cancel_pending_finishes_queued_tasks_as_cancelled() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::new(1);
    let (open, gate) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let blocker = pool.submit(move || {
        started_tx.send(()).unwrap();
        let _ = gate.recv();
    });
    started_rx.recv_timeout(SOON).unwrap();
    let queued = pool.submit_named("ev-drained", || ());
    let id = queued.id();
    assert!(!pool.shutdown(Shutdown { wait: false, cancel_pending: true, timeout: None }));
    assert!(queued.join().unwrap_err().is_cancelled());
    open.send(()).unwrap();
    blocker.join().unwrap();
    let evs = events_of(&sub, &mut log, id);
    // Every cancellation, by a caller or by shutdown, is reported before the final event.
    assert_eq!(labels(&evs), ["queued", "cancelled", "finished:cancelled"]);
}

#[test]
fn every_subscriber_sees_every_event() {
    let a = events::subscribe();
    let b = events::subscribe();
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    let h = escala::thread::spawn("ev-two-subs", || ());
    let id = h.id();
    h.join().unwrap();
    let ea = events_of(&a, &mut la, id);
    let eb = events_of(&b, &mut lb, id);
    assert_eq!(ea, eb);
    assert_eq!(ea.len(), 2);
    drop(b);
    // A subscription taken after the fact sees nothing of it.
    let late = events::subscribe();
    let mut ll = Vec::new();
    assert!(events_of(&late, &mut ll, id).is_empty());
    assert!(events::epoch() <= std::time::Instant::now());
}

#[test]
fn events_serialize_to_json_lines() {
    let sub = events::subscribe();
    let mut log = Vec::new();
    let pool = ThreadPool::new(1);
    let h = pool.submit_named("ev-json", || -> u8 { panic!("json panic") });
    let id = h.id();
    assert!(h.join().unwrap_err().is_panicked());
    let evs = events_of(&sub, &mut log, id);
    assert_eq!(evs.len(), 3);
    let lines: Vec<serde_json::Value> = evs.iter().map(|e| serde_json::to_value(e).unwrap()).collect();
    assert_eq!(lines[0]["kind"]["event"], "queued");
    assert_eq!(lines[1]["kind"]["event"], "started");
    assert_eq!(lines[2]["kind"]["event"], "finished");
    assert_eq!(lines[2]["kind"]["outcome"], "panicked");
    assert_eq!(lines[0]["unit"], "pool-task");
    assert_eq!(lines[0]["name"], "ev-json");
    assert_eq!(lines[0]["task"], id.0);
    assert_eq!(lines[0]["pid"], std::process::id());
    assert!(lines[0]["at"].is_u64(), "`at` is microseconds: {}", lines[0]);
    for (e, v) in evs.iter().zip(&lines) {
        let back: Event = serde_json::from_value(v.clone()).unwrap();
        assert_eq!((back.task, &back.name, back.unit, &back.kind), (e.task, &e.name, e.unit, &e.kind));
        assert_eq!(back.at.as_micros(), e.at.as_micros());
    }
}
