//! The `Supervisor` with real worker processes and real signals: restarts after a kill,
//! backoff and the crash-loop limit, stop with timeout and SIGKILL, no orphans, children
//! dying with a SIGKILLed supervisor, rolling replacement, readiness and `depends_on`.
//!
//! Synchronisation is by events: the supervisor's own event hook, lines workers write to a
//! FIFO, pidfds that become readable when a process exits. Every wait is bounded. The binary
//! doubles as a re-executed child (task workers) and as a scenario program
//! (`ESCALA_TEST_SCENARIO`) that the test SIGKILLs.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Receiver;
use escala::ExitReason;
use escala::supervise::{
    Backoff, CrashLoop, LogFile, Output, Ready, Restart, Service, ServiceState, Supervisor, SupervisorEvent,
};
use libtest_mimic::{Arguments, Failed, Trial};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

type TestResult = Result<(), Failed>;

const WAIT: Duration = Duration::from_secs(10);
const SCENARIO_ENV: &str = "ESCALA_TEST_SCENARIO";

// ---- registered tasks run by task workers -----------------------------------------------

/// Says READY=1 on `$NOTIFY_SOCKET` (when set), then runs until stopped.
#[escala::task]
fn notify_then_block(tag: String) {
    let _ = tag;
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty()) {
        let s = UnixDatagram::unbound().expect("a datagram socket");
        s.send_to(b"STATUS=up\nREADY=1", PathBuf::from(path)).expect("the notify socket answers");
    }
    loop {
        std::thread::park();
    }
}

fn main() {
    let exit = escala::init();
    if let Ok(name) = std::env::var(SCENARIO_ENV) {
        scenario(&name);
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("killed_worker_is_replaced_and_sees_its_env", killed_worker_is_replaced_and_sees_its_env),
        Trial::test("crash_loop_backs_off_then_fails", crash_loop_backs_off_then_fails),
        Trial::test("stop_kills_a_worker_that_ignores_term", stop_kills_a_worker_that_ignores_term),
        Trial::test("no_orphans_after_a_kill_or_a_stop", no_orphans_after_a_kill_or_a_stop),
        Trial::test("killed_supervisor_leaves_no_children", killed_supervisor_leaves_no_children),
        Trial::test("reload_replaces_one_at_a_time", reload_replaces_one_at_a_time),
        Trial::test("notify_readiness_gates_depends_on", notify_readiness_gates_depends_on),
        Trial::test("restart_policies", restart_policies),
        Trial::test("invalid_sets_are_refused", invalid_sets_are_refused),
        Trial::test("output_goes_to_a_log_file_rotated_by_size", output_goes_to_a_log_file_rotated_by_size),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    drop(exit);
    conclusion.exit();
}

// ---- helpers ------------------------------------------------------------------------------

/// Starts a supervisor whose every event is also sent to the returned receiver.
fn start(b: escala::supervise::SupervisorBuilder) -> Result<(Supervisor, Receiver<SupervisorEvent>), Failed> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let sup = b.on_event(move |e| drop(tx.send(e.clone()))).start()?;
    Ok((sup, rx))
}

/// Receives events until `f` picks one (bounded); the skipped ones are kept in `log`.
fn expect<T>(
    rx: &Receiver<SupervisorEvent>,
    log: &mut Vec<SupervisorEvent>,
    what: &str,
    mut f: impl FnMut(&SupervisorEvent) -> Option<T>,
) -> Result<T, Failed> {
    loop {
        let e =
            rx.recv_timeout(WAIT).map_err(|_| format!("no event `{what}` within {WAIT:?}; saw {log:#?}"))?;
        let hit = f(&e);
        log.push(e);
        if let Some(t) = hit {
            return Ok(t);
        }
    }
}

fn started(
    rx: &Receiver<SupervisorEvent>,
    log: &mut Vec<SupervisorEvent>,
    svc: &str,
    w: usize,
) -> Result<u32, Failed> {
    expect(rx, log, &format!("{svc}[{w}] started"), |e| match e {
        SupervisorEvent::WorkerStarted { service, worker, pid } if service == svc && *worker == w => {
            Some(*pid)
        }
        _ => None,
    })
}

/// A FIFO opened read-write (so writers coming and going never make it EOF), read by a
/// thread into a channel of lines.
struct Lines {
    path: PathBuf,
    rx: Receiver<String>,
}

impl Lines {
    fn new(tag: &str) -> Result<Lines, Failed> {
        use nix::sys::stat::Mode;
        let path = std::env::temp_dir().join(format!("escala-sup-{}-{tag}.fifo", std::process::id()));
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR)?;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Lines { path, rx })
    }

    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn next(&self) -> Result<String, Failed> {
        Ok(self
            .rx
            .recv_timeout(WAIT)
            .map_err(|_| format!("no line in {} within {WAIT:?}", self.path.display()))?)
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn pidfd(pid: u32) -> Result<OwnedFd, Failed> {
    let p = rustix::process::Pid::from_raw(pid as i32).ok_or("pid 0")?;
    Ok(rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())?)
}

/// Waits (bounded) until the process behind `fd` has exited.
fn exited(fd: &OwnedFd, pid: u32) -> TestResult {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec::try_from(WAIT)?;
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(1) => return Ok(()),
            Ok(_) => {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                return Err(format!("process {pid} was still alive after {WAIT:?}").into());
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("poll(pidfd): {e}").into()),
        }
    }
}

fn sigkill(pid: u32) -> TestResult {
    Ok(kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?)
}

fn quick_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
        reset_after: Duration::from_secs(60),
    }
}

fn is_stop_sent(e: &SupervisorEvent, svc: &str) -> bool {
    matches!(e, SupervisorEvent::WorkerExited { service, expected: true, .. } if service == svc)
}

// ---- tests --------------------------------------------------------------------------------

fn killed_worker_is_replaced_and_sees_its_env() -> TestResult {
    let lines = Lines::new("env")?;
    let svc =
        Service::shell("web", "echo \"$ESCALA_SERVICE $ESCALA_WORKER $$\" > \"$FIFO\"; exec sleep 1000")
            .env("FIFO", lines.path())
            .workers(2);
    let (sup, rx) = start(Supervisor::builder().service(svc))?;
    let mut seen = vec![lines.next()?, lines.next()?];
    seen.sort();
    let fields: Vec<Vec<String>> = seen.iter().map(|l| l.split(' ').map(String::from).collect()).collect();
    assert_eq!((fields[0][0].as_str(), fields[0][1].as_str()), ("web", "0"), "{seen:?}");
    assert_eq!((fields[1][0].as_str(), fields[1][1].as_str()), ("web", "1"), "{seen:?}");
    let old: u32 = fields[0][2].parse()?;
    sigkill(old)?;
    let mut log = Vec::new();
    let exit = expect(&rx, &mut log, "web[0] killed", |e| match e {
        SupervisorEvent::WorkerExited { service, worker: 0, pid, exit, expected }
            if service == "web" && *pid == old =>
        {
            Some((exit.clone(), *expected))
        }
        _ => None,
    })?;
    assert_eq!(exit.0.reason, ExitReason::Signal(Signal::SIGKILL));
    assert!(!exit.1, "a kill from outside is not an expected exit");
    let delay = expect(&rx, &mut log, "restarting", |e| match e {
        SupervisorEvent::Restarting { worker: 0, delay, .. } => Some(*delay),
        _ => None,
    })?;
    assert_eq!(delay, Duration::ZERO, "the first restart is immediate");
    let new = started(&rx, &mut log, "web", 0)?;
    assert_ne!(new, old);
    assert_eq!(lines.next()?, format!("web 0 {new}"));
    let status = sup.status();
    assert_eq!(status[0].state, ServiceState::Running);
    assert_eq!(status[0].workers[0].pid, Some(new));
    assert_eq!((status[0].workers[0].restarts, status[0].workers[1].restarts, status[0].restarts), (1, 0, 1));
    let fds = [pidfd(new)?, pidfd(status[0].workers[1].pid.ok_or("worker 1 runs")?)?];
    assert!(sup.stop().is_success());
    exited(&fds[0], new)?;
    exited(&fds[1], 0)?;
    Ok(())
}

fn crash_loop_backs_off_then_fails() -> TestResult {
    let crashy = || {
        Service::shell("crashy", "exit 3")
            .backoff(quick_backoff())
            .crash_loop(CrashLoop { max: 4, window: Duration::from_secs(60) })
    };
    let (sup, rx) = start(Supervisor::builder().service(crashy()))?;
    let mut log = Vec::new();
    let deaths = expect(&rx, &mut log, "crashy failed", |e| match e {
        SupervisorEvent::ServiceFailed { deaths, .. } => Some(*deaths),
        _ => None,
    })?;
    assert_eq!(deaths, 4);
    let delays: Vec<u128> = log
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::Restarting { delay, .. } => Some(delay.as_millis()),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [0, 10, 20], "immediate, then doubling from `initial`");
    for e in &log {
        if let SupervisorEvent::WorkerExited { exit, .. } = e {
            assert_eq!(exit.reason, ExitReason::Code(3));
        }
    }
    // Nothing else runs: the supervisor ends by itself, naming the failed service.
    let ended = sup.wait_timeout(WAIT).ok_or("the supervisor did not end")?;
    assert_eq!(ended.failed, ["crashy"]);

    // With exit_on_failure, a healthy service is stopped too.
    let steady = Service::shell("steady", "exec sleep 1000");
    let (sup, rx) = start(Supervisor::builder().service(steady).service(crashy()).exit_on_failure(true))?;
    let ended = sup.wait_timeout(WAIT).ok_or("the supervisor did not end")?;
    assert_eq!(ended.failed, ["crashy"]);
    assert!(rx.try_iter().any(|e| is_stop_sent(&e, "steady")), "steady was stopped");
    Ok(())
}

fn stop_kills_a_worker_that_ignores_term() -> TestResult {
    let lines = Lines::new("stop")?;
    // An ignored signal stays ignored across exec: `sleep` ignores TERM too.
    let stubborn = Service::shell("stubborn", "trap '' TERM; echo up > \"$FIFO\"; exec sleep 1000")
        .env("FIFO", lines.path())
        .stop_timeout(Duration::from_millis(200));
    let polite = Service::shell("polite", "echo up > \"$FIFO\"; exec sleep 1000").env("FIFO", lines.path());
    let (sup, rx) = start(Supervisor::builder().service(stubborn).service(polite))?;
    lines.next()?;
    lines.next()?;
    let pids: Vec<u32> = sup.status().iter().map(|s| s.workers[0].pid.unwrap_or(0)).collect();
    let fds = [pidfd(pids[0])?, pidfd(pids[1])?];
    assert!(sup.stop().is_success());
    let exits: Vec<(String, ExitReason, bool)> = rx
        .try_iter()
        .filter_map(|e| match e {
            SupervisorEvent::WorkerExited { service, exit, expected, .. } => {
                Some((service, exit.reason, expected))
            }
            _ => None,
        })
        .collect();
    assert!(exits.contains(&("stubborn".into(), ExitReason::Signal(Signal::SIGKILL), true)), "{exits:?}");
    assert!(exits.contains(&("polite".into(), ExitReason::Signal(Signal::SIGTERM), true)), "{exits:?}");
    exited(&fds[0], pids[0])?;
    exited(&fds[1], pids[1])?;
    Ok(())
}

fn no_orphans_after_a_kill_or_a_stop() -> TestResult {
    let lines = Lines::new("orphans")?;
    let svc =
        Service::shell("parent", "sleep 1000 & echo \"$$ $!\" > \"$FIFO\"; wait").env("FIFO", lines.path());
    let (sup, _rx) = start(Supervisor::builder().service(svc))?;
    let pair = |l: String| -> Result<(u32, u32), Failed> {
        let mut it = l.split(' ').map(str::parse::<u32>);
        Ok((it.next().ok_or("leader")??, it.next().ok_or("child")??))
    };
    let (leader, child) = pair(lines.next()?)?;
    let child_fd = pidfd(child)?;
    sigkill(leader)?;
    // The leader's death takes the rest of its process group with it.
    exited(&child_fd, child)?;
    let (leader, child) = pair(lines.next()?)?;
    let fds = [pidfd(leader)?, pidfd(child)?];
    assert!(sup.stop().is_success());
    exited(&fds[0], leader)?;
    exited(&fds[1], child)?;
    Ok(())
}

fn scenario(name: &str) {
    assert_eq!(name, "supervisor", "unknown scenario");
    let sup = Supervisor::builder()
        .service(Service::shell("cmd", "exec sleep 1000").workers(2))
        .service(Service::task("task", notify_then_block::call("t".into())))
        .on_event(|e| {
            if let SupervisorEvent::WorkerStarted { pid, .. } = e {
                println!("started {pid}");
            }
        })
        .start()
        .expect("the supervisor starts");
    std::mem::forget(sup);
    loop {
        std::thread::park();
    }
}

fn killed_supervisor_leaves_no_children() -> TestResult {
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .env(SCENARIO_ENV, "supervisor")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().ok_or("stdout")?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut workers = Vec::new();
    for _ in 0..3 {
        let line = rx.recv_timeout(WAIT).map_err(|_| "the scenario did not report 3 workers")?;
        let pid: u32 = line.strip_prefix("started ").ok_or(format!("unexpected line {line:?}"))?.parse()?;
        workers.push((pid, pidfd(pid)?));
    }
    child.kill()?;
    child.wait()?;
    for (pid, fd) in &workers {
        exited(fd, *pid)?;
    }
    Ok(())
}

/// Live workers of `svc` after each of its start and exit events, from the log.
fn live_counts(log: &[SupervisorEvent], svc: &str) -> Vec<i32> {
    let mut live = 0;
    let mut out = Vec::new();
    for e in log {
        match e {
            SupervisorEvent::WorkerStarted { service, .. } if service == svc => live += 1,
            SupervisorEvent::WorkerExited { service, .. } if service == svc => live -= 1,
            _ => continue,
        }
        out.push(live);
    }
    out
}

/// The kinds of `svc`'s start (`S`) and exit (`X`) events, in order.
fn pattern(log: &[SupervisorEvent], svc: &str) -> String {
    log.iter()
        .filter_map(|e| match e {
            SupervisorEvent::WorkerStarted { service, .. } if service == svc => Some('S'),
            SupervisorEvent::WorkerExited { service, .. } if service == svc => Some('X'),
            _ => None,
        })
        .collect()
}

fn reload_replaces_one_at_a_time() -> TestResult {
    let web = |v: &str| Service::shell("web", "exec sleep 1000").workers(2).env("V", v);
    let db = || Service::shell("db", "exec sleep 1000");
    let (sup, rx) = start(Supervisor::builder().service(web("1")).service(db()))?;
    let mut log = Vec::new();
    let old = [started(&rx, &mut log, "web", 0)?, started(&rx, &mut log, "web", 1)?];
    let db_pid = sup.status()[1].workers[0].pid.ok_or("db runs")?;
    let old_fds = [pidfd(old[0])?, pidfd(old[1])?];

    let r = sup.reload(vec![web("2"), db()])?;
    assert_eq!(
        (r.changed, r.unchanged, r.added, r.removed),
        (vec!["web".to_string()], vec!["db".to_string()], vec![], vec![])
    );
    expect(&rx, &mut log, "web replaced", |e| matches!(e, SupervisorEvent::Replaced { .. }).then_some(()))?;
    assert_eq!(pattern(&log, "web"), "SSSXSX", "start new, stop old, one at a time: {log:#?}");
    assert!(live_counts(&log, "web")[2..].iter().all(|n| *n >= 2), "never below 2 workers: {log:#?}");
    assert!(
        log.iter().all(|e| !matches!(e, SupervisorEvent::WorkerExited { service, .. } if service == "db"))
    );
    exited(&old_fds[0], old[0])?;
    exited(&old_fds[1], old[1])?;
    assert_eq!(sup.status()[1].workers[0].pid, Some(db_pid), "db untouched");

    // A rolling restart of one service, then a reload that removes `db`.
    log.clear();
    sup.restart("web")?;
    expect(&rx, &mut log, "web restarted", |e| matches!(e, SupervisorEvent::Replaced { .. }).then_some(()))?;
    assert_eq!(pattern(&log, "web"), "SXSX");
    assert!(sup.restart("nope").is_err_and(|e| e.to_string() == "no service is named `nope`"));
    let r = sup.reload(vec![web("2")])?;
    assert_eq!(r.removed, ["db"]);
    expect(&rx, &mut log, "db stopped", |e| is_stop_sent(e, "db").then_some(()))?;
    let names: Vec<String> = sup.status().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["web"]);
    assert!(sup.stop().is_success());
    Ok(())
}

fn notify_readiness_gates_depends_on() -> TestResult {
    let db = |tag: &str| Service::task("db", notify_then_block::call(tag.into())).ready(Ready::Notify);
    let app = || Service::shell("app", "exec sleep 1000").depends_on(["db"]);
    let (sup, rx) = start(Supervisor::builder().service(app()).service(db("a")))?;
    let mut log = Vec::new();
    started(&rx, &mut log, "app", 0)?;
    let order: Vec<&str> = log
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::WorkerStarted { service, .. } if service == "db" => Some("db started"),
            SupervisorEvent::WorkerReady { service, .. } if service == "db" => Some("db ready"),
            SupervisorEvent::WorkerStarted { service, .. } if service == "app" => Some("app started"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["db started", "db ready", "app started"]);

    log.clear();
    let r = sup.reload(vec![app(), db("b")])?;
    assert_eq!(r.changed, ["db"]);
    expect(&rx, &mut log, "db replaced", |e| matches!(e, SupervisorEvent::Replaced { .. }).then_some(()))?;
    let kinds: Vec<&str> = log
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::WorkerStarted { service, .. } if service == "db" => Some("started"),
            SupervisorEvent::WorkerReady { service, .. } if service == "db" => Some("ready"),
            SupervisorEvent::WorkerExited { service, .. } if service == "db" => Some("exited"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["started", "ready", "exited"], "the old db stops only once the new one is ready");
    assert!(sup.stop().is_success());
    Ok(())
}

fn restart_policies() -> TestResult {
    let never = Service::shell("never", "exit 1").restart(Restart::Never);
    let clean = Service::shell("clean", "exit 0").restart(Restart::OnFailure);
    let (sup, rx) = start(Supervisor::builder().service(never).service(clean))?;
    let ended = sup.wait_timeout(WAIT).ok_or("nothing is left to run: the supervisor ends")?;
    assert!(ended.is_success());
    let log: Vec<SupervisorEvent> = rx.try_iter().collect();
    assert!(!log.iter().any(|e| matches!(e, SupervisorEvent::Restarting { .. })), "{log:#?}");
    assert_eq!(log.iter().filter(|e| matches!(e, SupervisorEvent::WorkerExited { .. })).count(), 2);
    Ok(())
}

fn invalid_sets_are_refused() -> TestResult {
    let refused = |b: escala::supervise::SupervisorBuilder| b.start().err().map(|e| e.to_string());
    let s = |n: &str| Service::shell(n, "true");
    assert_eq!(
        refused(Supervisor::builder().service(s("a")).service(s("a"))).as_deref(),
        Some("two services are named `a`")
    );
    assert_eq!(
        refused(Supervisor::builder().service(s("a").depends_on(["b"]))).as_deref(),
        Some("service `a` depends on `b`, which is not a service")
    );
    assert_eq!(
        refused(Supervisor::builder().service(s("a").depends_on(["b"])).service(s("b").depends_on(["a"])))
            .as_deref(),
        Some("circular depends_on among: a, b")
    );
    let empty: [&str; 0] = [];
    assert_eq!(
        refused(Supervisor::builder().service(Service::command("e", empty))).as_deref(),
        Some("service `e`: the command is empty")
    );
    Ok(())
}

fn output_goes_to_a_log_file_rotated_by_size() -> TestResult {
    let dir = std::env::temp_dir().join(format!("escala-sup-{}-log", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = LogFile::new(dir.join("w.log")).max_bytes(200).keep(2);
    let svc = Service::shell("w", "echo oops >&2; for i in $(seq 10 99); do echo line-$i; done")
        .restart(Restart::Never)
        .output(Output::File(log));
    let (sup, _rx) = start(Supervisor::builder().service(svc))?;
    // Ends by itself once the worker exited and its output is written.
    assert!(sup.wait_timeout(WAIT).ok_or("the supervisor did not end")?.is_success());
    let mut all = String::new();
    for name in ["w.log.2", "w.log.1", "w.log"] {
        let text = std::fs::read_to_string(dir.join(name))?;
        assert!(text.len() <= 200, "{name} is {} bytes", text.len());
        all.push_str(&text);
    }
    assert!(!dir.join("w.log.3").exists(), "only `keep` old files are kept");
    // stderr has its own pipe: its line may land anywhere, or be rotated away.
    let rest: Vec<&str> = all.lines().filter(|l| *l != "w[0] oops").collect();
    let first: u32 = rest[0].strip_prefix("w[0] line-").ok_or("a prefixed line")?.parse()?;
    let expected: Vec<String> = (first..100).map(|i| format!("w[0] line-{i}")).collect();
    assert_eq!(rest, expected, "whole lines, in order, the oldest rotated away");
    assert!(first > 10, "some lines were rotated out");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
