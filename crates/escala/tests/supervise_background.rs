//! In-process background work: `Periodic` (no overlap, failures counted, stop waits for the
//! run in flight) and `DaemonThread` (restart policy, crash-loop limit, stop and abandon).
//! Real threads; waits are on channels and bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use escala::supervise::{Backoff, CrashLoop, DaemonThread, Periodic, Restart};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn periodic_runs_never_overlap_by_default() {
    let (running, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (tx, rx) = crossbeam_channel::unbounded();
    let (r, m) = (running.clone(), max.clone());
    let every = Periodic::every("slow", Duration::from_millis(1)).spawn(move || {
        let (r, m, tx) = (r.clone(), m.clone(), tx.clone());
        escala::thread::spawn("run", move || {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(3)); // work, longer than the interval
            r.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(());
        })
    });
    for _ in 0..5 {
        rx.recv_timeout(WAIT).expect("a run ends");
    }
    let report = every.stop();
    assert!(report.runs >= 5, "{report:?}");
    assert_eq!(max.load(Ordering::SeqCst), 1, "two runs overlapped");
    assert_eq!(running.load(Ordering::SeqCst), 0, "stop waited for the run in flight");
}

#[test]
fn periodic_counts_failed_runs() {
    let n = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = n.clone();
    let every = Periodic::every("flaky", Duration::from_millis(1)).jitter(Duration::from_millis(1)).spawn(
        move || {
            let i = c.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            escala::thread::spawn("run", move || {
                let _ = tx.send(());
                assert!(i % 2 == 0, "odd runs panic");
            })
        },
    );
    for _ in 0..4 {
        rx.recv_timeout(WAIT).expect("a run starts");
    }
    let report = every.stop();
    assert_eq!(report.failures, report.runs / 2, "{report:?}");
}

#[test]
fn daemon_thread_is_given_up_on_at_its_crash_loop_limit() {
    let d = DaemonThread::new("boom")
        .restart(Restart::Always)
        .backoff(Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
            ..Backoff::default()
        })
        .crash_loop(CrashLoop { max: 3, window: Duration::from_secs(60) })
        .spawn(|| Err("boom".into()));
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || tx.send(d.wait()));
    let report = rx.recv_timeout(WAIT).expect("the daemon is given up on");
    assert_eq!((report.runs, report.failed, report.last_error.as_deref()), (3, true, Some("boom")));
}

#[test]
fn daemon_thread_panic_is_a_failure_and_never_is_not_restarted() {
    let d = DaemonThread::new("once").restart(Restart::Never).spawn(|| panic!("kaput"));
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || tx.send(d.wait()));
    let report = rx.recv_timeout(WAIT).expect("the daemon ends");
    assert_eq!((report.runs, report.failed), (1, false));
    assert!(report.last_error.as_deref().is_some_and(|e| e.contains("kaput")), "{report:?}");
}

#[test]
fn daemon_thread_that_ignores_its_token_is_abandoned_after_the_stop_timeout() {
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let d = DaemonThread::new("stubborn").stop_timeout(Duration::from_millis(20)).spawn(move || {
        let _ = started_tx.send(());
        let _ = released.recv(); // never looks at its token
        Ok(())
    });
    started.recv_timeout(WAIT).expect("the daemon runs");
    let report = d.stop();
    assert!(report.abandoned && !report.failed, "{report:?}");
    release.send(()).unwrap();
}
