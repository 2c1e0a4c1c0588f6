//! `escala serve` end to end: the built binary, real worker processes, real signals, a real
//! control socket. Every wait is on a line the server prints, a process exit or a pidfd,
//! and bounded.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crossbeam_channel::Receiver;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(10);

/// A temporary directory with a services file in it.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("escala-cli-serve-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn socket(&self) -> String {
        self.0.join("control.sock").to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn escala(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_escala")).args(args).output().expect("the escala binary runs")
}

/// A running `escala serve` whose stdout and stderr lines arrive on channels.
struct Server {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    /// Every stderr line seen so far.
    log: Vec<String>,
}

fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

impl Server {
    fn start(file: &Path, socket: &str) -> Server {
        Server::start_with(file, socket, &[])
    }

    fn start_with(file: &Path, socket: &str, env: &[(&str, &Path)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_escala"))
            .args(["serve", file.to_str().unwrap(), "--socket", socket])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("escala serve starts");
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Server { child, out, err, log: Vec::new() }
    }

    /// Waits for a stderr line containing `needle`; returns it.
    fn stderr_until(&mut self, needle: &str) -> String {
        loop {
            match self.err.recv_timeout(WAIT) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no stderr line with {needle:?} within {WAIT:?}; saw {:#?}", self.log);
                }
            }
        }
    }

    /// The pid in a `… started (pid N)` line for `worker` (such as `web[0]`).
    fn started(&mut self, worker: &str) -> u32 {
        let l = self.stderr_until(&format!("{worker} started (pid "));
        l.rsplit("pid ").next().unwrap().trim_end_matches(')').parse().unwrap()
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits (bounded) for the server to exit; returns its exit code.
    fn exit_code(mut self) -> (Option<i32>, Vec<String>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("escala serve did not exit within {WAIT:?}")
        });
        let mut log = std::mem::take(&mut self.log);
        log.extend(self.err.iter());
        (status.unwrap().code(), log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pidfd(pid: u32) -> OwnedFd {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("the process exists")
}

/// Asserts (bounded) that the process behind `fd` exits.
fn assert_exits(fd: &OwnedFd, pid: u32) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let n = loop {
        match poll(&mut fds, Some(&Timespec::try_from(WAIT).unwrap())) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r.unwrap(),
        }
    };
    if n == 0 {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        panic!("worker {pid} outlived escala serve");
    }
}

#[test]
fn check_accepts_a_good_file_and_names_file_line_and_key_of_a_bad_one() {
    let d = Dir::new("check");
    let good = d.write("good.toml", "[services.web]\ncommand = \"exec sleep 1\"\nworkers = 2\n");
    let o = escala(&["serve", "--check", good.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok (1 services: web)"));

    let bad =
        d.write("bad.toml", "[services.web]\ncommand = \"exec sleep 1\"\nstop_timeout = \"ten seconds\"\n");
    let o = escala(&["serve", "--check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with(&format!(
            "escala: error: {}:3:16: services.web.stop_timeout: `ten seconds`",
            bad.display()
        )),
        "{err}"
    );

    let o = escala(&["serve", "--check", d.0.join("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.toml: cannot read the services file"));
}

#[test]
fn output_is_prefixed_and_sigterm_stops_everything_with_exit_0() {
    let d = Dir::new("term");
    let f = d.write(
        "s.toml",
        "[services.web]\ncommand = \"echo hello $ESCALA_SERVICE $ESCALA_WORKER; sleep 1000 & wait\"\nworkers = 2\n",
    );
    let mut s = Server::start(&f, &d.socket());
    let pids = [s.started("web[0]"), s.started("web[1]")];
    let mut seen: Vec<String> = (0..2).map(|_| s.out.recv_timeout(WAIT).expect("worker output")).collect();
    seen.sort();
    assert_eq!(seen, ["web[0] hello web 0", "web[1] hello web 1"]);
    let fds = pids.map(pidfd);
    s.signal(Signal::SIGTERM);
    let (code, log) = s.exit_code();
    assert_eq!(code, Some(0), "{log:#?}");
    for (fd, pid) in fds.iter().zip(pids) {
        assert_exits(fd, pid);
    }
    assert!(!Path::new(&d.socket()).exists(), "the control socket is removed");
}

#[test]
fn status_and_restart_over_an_owner_only_control_socket() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new("control");
    let f = d.write("s.toml", "[services.web]\ncommand = \"exec sleep 1000\"\n");
    let mut s = Server::start(&f, &d.socket());
    let old = s.started("web[0]");
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let o = escala(&["serve", "status", "--json", "--socket", &d.socket()]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["services"][0]["name"], "web");
    assert_eq!(v["services"][0]["state"], "running");
    assert_eq!(v["services"][0]["workers"][0]["pid"], old);
    let o = escala(&["serve", "status", "--socket", &d.socket()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("web[0] pid {old} ready")));

    let o = escala(&["serve", "restart", "web", "--socket", &d.socket()]);
    assert!(o.status.success(), "{o:?}");
    let new = s.started("web[0]");
    assert_ne!(new, old);
    s.stderr_until("web[0] stopped (killed by SIGTERM)");
    let o = escala(&["serve", "restart", "nope", "--socket", &d.socket()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "escala: error: no service is named `nope`");

    s.signal(Signal::SIGINT);
    assert_eq!(s.exit_code().0, Some(0));
}

#[test]
fn sighup_reloads_only_changed_services_one_worker_at_a_time() {
    let d = Dir::new("hup");
    let conf = |v: &str| {
        format!(
            "[services.web]\ncommand = \"exec sleep 1000\"\nworkers = 2\nenv = {{ V = \"{v}\" }}\n\n\
             [services.db]\ncommand = \"exec sleep 1000\"\n"
        )
    };
    let f = d.write("s.toml", &conf("1"));
    let mut s = Server::start(&f, &d.socket());
    for _ in 0..3 {
        s.stderr_until(" started (pid ");
    }
    d.write("s.toml", &conf("2"));
    s.signal(Signal::SIGHUP);
    s.stderr_until("reloaded");
    s.stderr_until("web[1] stopped");
    let events: Vec<&str> = s
        .log
        .iter()
        .filter_map(|l| {
            let l = l.strip_prefix("escala: ")?;
            (l.starts_with("web[") || l.starts_with("db[")).then_some(l.split(" (").next()?)
        })
        .collect();
    assert_eq!(
        events[3..],
        ["web[0] started", "web[0] stopped", "web[1] started", "web[1] stopped"],
        "new before old, one at a time, db untouched: {events:#?}"
    );
    // A broken file is refused and nothing changes.
    d.write("s.toml", "[services.web]\nworkers = 2\n");
    s.signal(Signal::SIGHUP);
    let l = s.stderr_until("reload refused");
    assert!(l.contains("services.web.command: missing field `command`"), "{l}");
    s.signal(Signal::SIGTERM);
    let (code, log) = s.exit_code();
    assert_eq!(code, Some(0));
    assert_eq!(log.iter().filter(|l| l.contains(" stopped (")).count(), 5, "{log:#?}");
}

#[test]
fn a_failed_service_with_exit_on_failure_exits_1() {
    let d = Dir::new("fail");
    let f = d.write(
        "s.toml",
        "exit_on_failure = true\n\n[services.bad]\ncommand = \"exit 4\"\n\
         backoff = { initial = \"5ms\", max = \"10ms\" }\ncrash_loop = { max = 3, window = \"1m\" }\n",
    );
    let mut s = Server::start(&f, &d.socket());
    s.stderr_until("bad failed: 3 deaths");
    let (code, log) = s.exit_code();
    assert_eq!(code, Some(1), "{log:#?}");
    assert!(log.iter().any(|l| l == "escala: error: failed: bad"), "{log:#?}");
}

#[test]
fn a_sigkilled_server_leaves_no_workers() {
    let d = Dir::new("kill");
    let f = d.write("s.toml", "[services.web]\ncommand = \"exec sleep 1000\"\nworkers = 2\n");
    let mut s = Server::start(&f, &d.socket());
    let pids = [s.started("web[0]"), s.started("web[1]")];
    let fds = pids.map(pidfd);
    s.signal(Signal::SIGKILL);
    let _ = s.exit_code();
    for (fd, pid) in fds.iter().zip(pids) {
        assert_exits(fd, pid);
    }
}

#[test]
fn sd_notify_ready_and_stopping_reach_the_manager_but_not_the_workers() {
    use std::os::unix::net::UnixDatagram;
    let d = Dir::new("notify");
    let manager_path = d.0.join("manager.sock");
    let manager = UnixDatagram::bind(&manager_path).unwrap();
    manager.set_read_timeout(Some(WAIT)).unwrap();
    let f = d
        .write("s.toml", "[services.web]\ncommand = \"echo \\\"ns=[$NOTIFY_SOCKET]\\\"; exec sleep 1000\"\n");
    let s = Server::start_with(&f, &d.socket(), &[("NOTIFY_SOCKET", &manager_path)]);
    let mut buf = [0u8; 256];
    let n = manager.recv(&mut buf).expect("READY=1 within the wait");
    assert_eq!(&buf[..n], b"READY=1");
    assert_eq!(
        s.out.recv_timeout(WAIT).unwrap(),
        "web[0] ns=[]",
        "the worker does not see escala's NOTIFY_SOCKET"
    );
    s.signal(Signal::SIGTERM);
    let n = manager.recv(&mut buf).expect("STOPPING=1 within the wait");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(s.exit_code().0, Some(0));
}

#[test]
fn output_goes_to_a_rotated_log_file_and_nothing_left_to_run_exits_0() {
    let d = Dir::new("log");
    let f = d.write(
        "s.toml",
        "[services.w]\ncommand = \"for i in $(seq 10 59); do echo line-$i; done\"\nrestart = \"never\"\n\
         log = { file = \"logs/w.log\", max_size = 300, keep = 1 }\n",
    );
    let s = Server::start(&f, &d.socket());
    let (code, log) = s.exit_code();
    assert_eq!(code, Some(0), "{log:#?}");
    let (old, new) = (
        std::fs::read_to_string(d.0.join("logs/w.log.1")).unwrap(),
        std::fs::read_to_string(d.0.join("logs/w.log")).unwrap(),
    );
    assert!(old.len() <= 300 && new.len() <= 300, "rotated at 300 bytes");
    assert!(!d.0.join("logs/w.log.2").exists(), "keep = 1");
    let lines: Vec<&str> = old.lines().chain(new.lines()).collect();
    assert_eq!(lines.last(), Some(&"w[0] line-59"));
    assert!(lines.iter().all(|l| l.starts_with("w[0] line-")), "{lines:?}");
}
