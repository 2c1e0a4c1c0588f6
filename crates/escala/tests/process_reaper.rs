//! `process::Reaper`: command units whose ends one thread waits for. Their handles resolve in
//! `Reaper::wait` on that thread (callbacks included), a `Waker` interrupts the wait, and
//! dropping the reaper kills and reaps what is left. Real children; every wait is bounded.

use std::time::{Duration, Instant};

use escala::process::{Command, Reaper};
use escala::{ErrorKind, ExitReason};
use nix::sys::signal::Signal;

/// How long any one wait may take.
const LIMIT: Duration = Duration::from_secs(20);

fn reaped(program: &str, args: &[&str], reaper: &Reaper) -> escala::Handle<()> {
    Command::new(program).args(args).die_with_parent(false).reaper(reaper).spawn()
}

/// Calls `wait` until `done` holds, within [`LIMIT`].
fn wait_until(reaper: &Reaper, done: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < LIMIT, "the reaper did not resolve the handles in time");
        reaper.wait(Some(Duration::from_millis(500))).unwrap();
    }
}

#[test]
fn handles_resolve_in_wait_with_each_commands_outcome_and_callbacks_run_there() {
    let reaper = Reaper::new().unwrap();
    let here = std::thread::current().id();
    let (tx, rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..8)
        .map(|code| {
            let h = reaped("sh", &["-c", &format!("exit {code}")], &reaper);
            let tx = tx.clone();
            h.on_done(move |_| tx.send(std::thread::current().id()).unwrap());
            h
        })
        .collect();
    assert_eq!(reaper.len(), 8);
    wait_until(&reaper, || handles.iter().all(|h| h.is_done()));
    assert!(reaper.is_empty());
    assert!(rx.try_iter().take(8).all(|id| id == here), "callbacks ran on the waiting thread");
    for (code, h) in handles.into_iter().enumerate() {
        match (code, h.join()) {
            (0, out) => assert!(out.is_ok()),
            (c, out) => assert_eq!(out.unwrap_err().exit_reason(), Some(ExitReason::Code(c as i32))),
        }
    }
}

#[test]
fn nothing_resolves_until_someone_waits() {
    let reaper = Reaper::new().unwrap();
    let h = reaped("true", &[], &reaper);
    let pid = h.pid().unwrap() as i32;
    // The child exits, but stays unreaped (a zombie) until `wait`.
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
    let t = rustix::event::Timespec::try_from(LIMIT).unwrap();
    assert_eq!(rustix::event::poll(&mut fds, Some(&t)).unwrap(), 1, "`true` exited");
    assert!(!h.is_done());
    assert_eq!(reaper.wait(Some(LIMIT)).unwrap(), 1);
    assert!(h.join().is_ok());
}

#[test]
fn a_waker_ends_a_wait_from_another_thread() {
    let reaper = Reaper::new().unwrap();
    let waker = reaper.waker();
    let t0 = Instant::now();
    let t = std::thread::spawn(move || waker.wake());
    // Woken (or interrupted) long before the limit, with nothing reaped.
    assert_eq!(reaper.wait(Some(LIMIT)).unwrap(), 0);
    assert!(t0.elapsed() < LIMIT / 2, "{:?}", t0.elapsed());
    t.join().unwrap();
}

#[test]
fn dropping_the_reaper_kills_and_reaps_its_commands() {
    let reaper = Reaper::new().unwrap();
    let h =
        Command::new("sleep").arg("60").process_group(true).die_with_parent(false).reaper(&reaper).spawn();
    assert!(!h.is_done());
    let t0 = Instant::now();
    drop(reaper);
    assert!(t0.elapsed() < LIMIT);
    let err = h.join_timeout(Duration::ZERO).unwrap_or_else(|_| panic!("resolved by the drop")).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WorkerLost { reason: ExitReason::Signal(Signal::SIGKILL), .. }),
        "{err}"
    );
}

#[test]
fn a_command_that_cannot_start_resolves_at_once() {
    let reaper = Reaper::new().unwrap();
    let h = reaped("/no/such/program", &[], &reaper);
    assert!(h.is_done());
    assert!(reaper.is_empty());
    assert!(matches!(h.join().unwrap_err().kind(), ErrorKind::Spawn(_)));
}
