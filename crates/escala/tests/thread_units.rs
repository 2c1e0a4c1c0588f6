//! Thread units and daemon threads: names, kinds, panics as outcomes, fallible closures,
//! registered tasks, the current-task token and cooperative cancellation.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use escala::{ErrorKind, UnitKind};

const SOON: Duration = Duration::from_secs(2);

#[escala::task]
fn double(x: u32) -> u32 {
    x * 2
}

#[escala::task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[escala::task]
fn parse_port(text: String) -> Result<u16, std::num::ParseIntError> {
    text.parse()
}

#[escala::task]
fn explode(msg: String) -> u8 {
    panic!("{msg}")
}

#[escala::task]
fn my_task_name() -> Option<String> {
    escala::current().task_name().map(str::to_owned)
}

#[test]
fn thread_runs_under_the_unit_name() {
    let h = escala::thread::spawn("Hilo 1", || std::thread::current().name().map(str::to_owned));
    assert_eq!(h.name(), "Hilo 1");
    assert_eq!(h.join().unwrap().as_deref(), Some("Hilo 1"));

    let d = escala::thread::spawn_daemon("Demonio 1", || std::thread::current().name().map(str::to_owned));
    assert_eq!(d.join().unwrap().as_deref(), Some("Demonio 1"));
}

#[test]
fn each_unit_is_its_own_os_thread() {
    let me = std::thread::current().id();
    let hs: Vec<_> =
        (0..4).map(|i| escala::thread::spawn(format!("own-{i}"), || std::thread::current().id())).collect();
    let ids: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_ne!(*id, me);
        assert!(!ids[..i].contains(id), "two units shared a thread");
    }
}

#[test]
fn units_run_concurrently() {
    // Three units wait for each other at a barrier: only possible if all run at once.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
    let hs: Vec<_> = (0..3)
        .map(|i| {
            let b = barrier.clone();
            escala::thread::spawn(format!("bar-{i}"), move || b.wait().is_leader())
        })
        .collect();
    let leaders = hs
        .into_iter()
        .map(|h| h.join_timeout(SOON).expect("deadlock: units not concurrent"))
        .filter(|o| *o.as_ref().unwrap())
        .count();
    assert_eq!(leaders, 1);
}

#[test]
fn kinds_of_thread_units() {
    let t = escala::thread::spawn("k-thread", || ());
    let d = escala::thread::spawn_daemon("k-daemon", || ());
    let bd = escala::thread::Builder::new("k-built-daemon").daemon(true).spawn(|| ());
    let bt = escala::thread::Builder::new("k-built").daemon(false).spawn(|| ());
    assert_eq!(t.kind(), UnitKind::Thread);
    assert_eq!(d.kind(), UnitKind::DaemonThread);
    assert_eq!(bd.kind(), UnitKind::DaemonThread);
    assert_eq!(bt.kind(), UnitKind::Thread);
    assert_eq!(UnitKind::Thread.label(), "thread");
    assert_eq!(UnitKind::DaemonThread.to_string(), "daemon-thread");
    for h in [t, d, bd, bt] {
        h.join().unwrap();
    }
}

#[test]
fn builder_stack_size_is_applied() {
    // A 4 MiB local array needs a big stack; the default 2 MiB would overflow and abort.
    let h = escala::thread::Builder::new("big-stack").stack_size(16 << 20).spawn(|| {
        let buf = [1u8; 4 << 20];
        std::hint::black_box(&buf).iter().map(|&b| b as usize).sum::<usize>()
    });
    assert_eq!(h.join().unwrap(), 4 << 20);
}

#[test]
fn panics_become_outcomes_and_never_abort() {
    let hs: Vec<_> = (0..8)
        .map(|i| {
            escala::thread::spawn(format!("panicky-{i}"), move || -> u32 {
                if i % 2 == 0 { panic!("static str payload") } else { panic!("formatted payload {i}") }
            })
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        let name = h.name().to_owned();
        let err = h.join().unwrap_err();
        assert!(err.is_panicked(), "{err}");
        assert_eq!(err.name(), name);
        let expected =
            if i % 2 == 0 { "static str payload".to_owned() } else { format!("formatted payload {i}") };
        assert_eq!(err.panic_message(), Some(expected.as_str()));
        match err.kind() {
            ErrorKind::Panicked { location, .. } => {
                let loc = location.as_deref().expect("a location");
                assert!(loc.contains("thread_units.rs:"), "{loc}");
            }
            other => panic!("{other:?}"),
        }
    }
    // The process is alive and units still work.
    assert_eq!(escala::thread::spawn("after", || 1).join().unwrap(), 1);
}

#[test]
fn non_string_panic_payload_is_still_an_outcome() {
    let h = escala::thread::spawn("any-payload", || -> u8 { std::panic::panic_any(42u64) });
    let err = h.join().unwrap_err();
    assert!(err.is_panicked());
    assert!(err.panic_message().is_some());
}

#[test]
fn daemon_thread_panics_are_outcomes_too() {
    let d = escala::thread::spawn_daemon("daemon-panics", || -> () { panic!("daemon down") });
    let err = d.join().unwrap_err();
    assert_eq!(err.panic_message(), Some("daemon down"));
    assert_eq!(err.name(), "daemon-panics");
}

#[test]
fn spawn_fallible_maps_err_to_failed_and_ok_to_value() {
    let bad = escala::thread::Builder::new("parse-bad").spawn_fallible(|| "x".parse::<u8>());
    let good = escala::thread::Builder::new("parse-good").spawn_fallible(|| "42".parse::<u8>());
    let custom = escala::thread::Builder::new("custom")
        .spawn_fallible(|| -> Result<(), String> { Err("disk is full".into()) });
    let panics = escala::thread::Builder::new("fallible-panics")
        .spawn_fallible(|| -> Result<u8, String> { panic!("in fallible") });

    assert_eq!(good.join().unwrap(), 42);
    let e = bad.join().unwrap_err();
    assert!(e.is_failed() && !e.is_panicked(), "{e}");
    assert!(matches!(e.kind(), ErrorKind::Failed(m) if m.contains("invalid digit")));
    let e = custom.join().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Failed("disk is full".into()));
    assert!(e.to_string().contains("disk is full"), "{e}");
    assert!(e.to_string().contains("`custom`"), "{e}");
    let e = panics.join().unwrap_err();
    assert_eq!(e.panic_message(), Some("in fallible"));
}

#[test]
fn spawn_task_runs_a_registered_task_on_the_thread() {
    let h = escala::thread::Builder::new("doubler").spawn_task(double::call(21));
    assert_eq!(h.name(), "doubler");
    assert_eq!(h.kind(), UnitKind::Thread);
    assert_eq!(h.join().unwrap(), 42);

    let h = escala::thread::Builder::new("adder").daemon(true).spawn_task(add::call(-2, 5));
    assert_eq!(h.kind(), UnitKind::DaemonThread);
    assert_eq!(h.join().unwrap(), 3);

    let call = double::call(1);
    assert!(call.task_name().ends_with("double"), "{}", call.task_name());
    assert!(escala::registered_tasks().contains(&call.task_name()));
}

#[test]
fn spawn_task_maps_task_errors_and_panics() {
    let ok = escala::thread::Builder::new("port-ok").spawn_task(parse_port::call("8080".into()));
    let bad = escala::thread::Builder::new("port-bad").spawn_task(parse_port::call("http".into()));
    let boom = escala::thread::Builder::new("explode").spawn_task(explode::call("bang".into()));
    assert_eq!(ok.join().unwrap(), 8080);
    let e = bad.join().unwrap_err();
    assert!(e.is_failed(), "{e}");
    assert!(matches!(e.kind(), ErrorKind::Failed(m) if m.contains("invalid digit")));
    let e = boom.join().unwrap_err();
    assert_eq!(e.panic_message(), Some("bang"));
}

#[test]
fn spawn_task_sees_its_own_token() {
    let h = escala::thread::Builder::new("who-am-i").spawn_task(my_task_name::call());
    assert_eq!(h.join().unwrap().as_deref(), Some("who-am-i"));
}

#[test]
fn current_token_inside_a_unit_names_the_unit() {
    let (tx, rx) = mpsc::channel();
    let h = escala::thread::spawn("tokened", move || {
        let me = escala::current();
        tx.send((me.task_id(), me.task_name().map(str::to_owned), me.is_cancelled())).unwrap();
    });
    let id = h.id();
    h.join().unwrap();
    let (tid, tname, cancelled) = rx.recv().unwrap();
    assert_eq!(tid, Some(id));
    assert_eq!(tname.as_deref(), Some("tokened"));
    assert!(!cancelled);
}

#[test]
fn current_token_outside_any_unit_is_never_cancelled() {
    let me = escala::current();
    assert_eq!(me.task_id(), None);
    assert_eq!(me.task_name(), None);
    assert!(!me.is_cancelled());
    let never = escala::CancelToken::never();
    assert!(!never.is_cancelled());
    assert_eq!(never.task_id(), None);
    // A plain std thread is outside any unit too.
    let plain = std::thread::spawn(|| escala::current().task_id()).join().unwrap();
    assert_eq!(plain, None);
}

#[test]
fn nested_units_have_their_own_tokens_and_restore_the_outer_one() {
    let h = escala::thread::spawn("outer", || {
        let inner = escala::thread::spawn("inner", || escala::current().task_name().map(str::to_owned));
        let inner_name = inner.join().unwrap();
        let outer_name = escala::current().task_name().map(str::to_owned);
        (inner_name, outer_name)
    });
    let (inner, outer) = h.join().unwrap();
    assert_eq!(inner.as_deref(), Some("inner"));
    assert_eq!(outer.as_deref(), Some("outer"));
}

#[test]
fn token_is_cloneable_and_moves_to_helpers() {
    let (started_tx, started_rx) = mpsc::channel();
    let (saw_tx, saw_rx) = mpsc::channel();
    let h = escala::thread::spawn("owner", move || {
        let token = escala::current();
        // A plain helper thread watches the unit's token.
        let helper = std::thread::spawn(move || {
            let deadline = Instant::now() + SOON;
            while !token.is_cancelled() && Instant::now() < deadline {
                std::thread::yield_now();
            }
            token.is_cancelled()
        });
        started_tx.send(()).unwrap();
        saw_tx.send(helper.join().unwrap()).unwrap();
    });
    started_rx.recv_timeout(SOON).unwrap();
    assert!(h.cancel());
    assert!(saw_rx.recv_timeout(SOON).unwrap(), "helper never saw the cancel");
}

#[test]
fn cancelling_a_running_thread_unit_sets_its_token() {
    let (started_tx, started_rx) = mpsc::channel();
    let (saw_tx, saw_rx) = mpsc::channel();
    let h = escala::thread::spawn("loops", move || {
        started_tx.send(()).unwrap();
        let deadline = Instant::now() + SOON;
        let mut spins = 0u64;
        while !escala::current().is_cancelled() {
            if Instant::now() > deadline {
                saw_tx.send(None).unwrap();
                return spins;
            }
            spins += 1;
            std::thread::yield_now();
        }
        saw_tx.send(Some(spins)).unwrap();
        spins
    });
    started_rx.recv_timeout(SOON).unwrap();
    assert!(!h.is_done());
    assert!(h.cancel());
    let saw = saw_rx.recv_timeout(SOON).unwrap();
    assert!(saw.is_some(), "the unit never saw its token set");
    // The late value is dropped: the outcome is the cancellation.
    assert!(h.join().unwrap_err().is_cancelled());
}

#[test]
fn cancelling_a_daemon_thread_sets_its_token() {
    let (started_tx, started_rx) = mpsc::channel();
    let (saw_tx, saw_rx) = mpsc::channel();
    let d = escala::thread::spawn_daemon("daemon-loop", move || {
        started_tx.send(()).unwrap();
        let deadline = Instant::now() + SOON;
        while !escala::current().is_cancelled() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        saw_tx.send(escala::current().is_cancelled()).unwrap();
    });
    started_rx.recv_timeout(SOON).unwrap();
    assert!(d.cancel());
    assert!(saw_rx.recv_timeout(SOON).unwrap());
    assert!(d.join().unwrap_err().is_cancelled());
}

#[test]
fn dropping_a_handle_does_not_stop_the_unit() {
    let (tx, rx) = mpsc::channel();
    let (open, gate) = mpsc::channel::<()>();
    let h = escala::thread::spawn("detached", move || {
        let _ = gate.recv();
        tx.send(escala::current().is_cancelled()).unwrap();
    });
    drop(h);
    open.send(()).unwrap();
    assert!(!rx.recv_timeout(SOON).unwrap(), "ran, not cancelled");
}

#[test]
fn many_units_all_resolve() {
    let hs: Vec<_> = (0..64u64).map(|i| escala::thread::spawn(format!("many-{i}"), move || i * i)).collect();
    let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, (0..64u64).map(|i| i * i).sum());
}
