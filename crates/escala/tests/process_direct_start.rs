//! Command units started by `posix_spawn` (a reaper, an `Environment`, descriptors for the
//! streams, no PR_SET_PDEATHSIG): the child gets exactly the environment asked for, its
//! streams, its own process group, default signal handling, and the same outcomes as a
//! command started by `std`. Real children; every wait is bounded.

use std::io::Read;
use std::time::{Duration, Instant};

use escala::process::{Command, Environment, Reaper};
use escala::{ErrorKind, ExitReason};
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(20);

fn direct(program: &str, args: &[&str], env: &Environment, reaper: &Reaper) -> Command {
    Command::new(program).args(args).die_with_parent(false).reaper(reaper).environment(env)
}

fn wait_for(reaper: &Reaper, h: &escala::Handle<()>) {
    let t0 = Instant::now();
    while !h.is_done() {
        assert!(t0.elapsed() < LIMIT, "the reaper did not resolve the handle in time");
        reaper.wait(Some(Duration::from_millis(500))).unwrap();
    }
}

/// Runs `cmd` with its stdout on a pipe; returns what it printed and its outcome.
fn output(cmd: Command, reaper: &Reaper) -> (String, escala::Outcome<()>) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let h = cmd.stdout_fd(w).spawn();
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    wait_for(reaper, &h);
    (out, h.join())
}

#[test]
fn the_child_gets_the_captured_environment_with_the_changes_applied_in_order() {
    let reaper = Reaper::new().unwrap();
    let path = std::env::var("PATH").unwrap();
    let env =
        Environment::from_vars([("PATH", path.as_str()), ("KEEP", "yes"), ("DROP", "x"), ("SET", "old")]);
    let cmd = direct("env", &[], &env, &reaper)
        .env("SET", "newer")
        .env("SET", "new")
        .env_remove("DROP")
        .env("ADDED", "0")
        .env_remove("ADDED")
        .env("ADDED", "1")
        .env("KEEP", "no")
        .env_remove("KEEP")
        .env("KEEP", "yes");
    let (out, outcome) = output(cmd, &reaper);
    assert!(outcome.is_ok());
    let mut vars: Vec<&str> = out.lines().filter(|l| !l.starts_with("PATH=")).collect();
    vars.sort();
    assert_eq!(vars, ["ADDED=1", "KEEP=yes", "SET=new"]);
}

#[test]
fn stdin_and_stdout_are_the_descriptors_given() {
    let reaper = Reaper::new().unwrap();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    nix::unistd::write(&w, b"through the pipe\n").unwrap();
    drop(w);
    let (out, outcome) = output(direct("cat", &[], &Environment::current(), &reaper).stdin_fd(r), &reaper);
    assert!(outcome.is_ok());
    assert_eq!(out, "through the pipe\n");
}

#[test]
fn signals_start_at_their_defaults_and_unblocked() {
    let reaper = Reaper::new().unwrap();
    let cmd = direct("grep", &["-E", "^Sig(Ign|Blk)", "/proc/self/status"], &Environment::current(), &reaper);
    let (out, outcome) = output(cmd, &reaper);
    assert!(outcome.is_ok());
    for line in out.lines() {
        let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        // Rust ignores SIGPIPE in this process; the child must not inherit that.
        assert_eq!(mask & (1 << (Signal::SIGPIPE as u32 - 1)), 0, "{line}");
        if line.starts_with("SigBlk") {
            assert_eq!(mask, 0, "{line}");
        }
    }
}

#[test]
fn exit_codes_and_signals_are_reported_as_for_any_command() {
    let reaper = Reaper::new().unwrap();
    let env = Environment::current();
    let code = direct("sh", &["-c", "exit 7"], &env, &reaper).spawn();
    let killed = direct("sh", &["-c", "kill -KILL $$"], &env, &reaper).spawn();
    wait_for(&reaper, &code);
    wait_for(&reaper, &killed);
    assert_eq!(code.join().unwrap_err().exit_reason(), Some(ExitReason::Code(7)));
    assert_eq!(killed.join().unwrap_err().exit_reason(), Some(ExitReason::Signal(Signal::SIGKILL)));
}

#[test]
fn a_cancelled_group_leader_takes_its_group_with_it() {
    let reaper = Reaper::new().unwrap();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // The background `sleep` holds the pipe's write end: EOF on it means the group is gone.
    let h = direct("sh", &["-c", "sleep 60 & echo started; wait"], &Environment::current(), &reaper)
        .process_group(true)
        .stdout_fd(w)
        .spawn();
    let pgid = h.pid().unwrap() as i32;
    let mut r = std::fs::File::from(r);
    let mut first = [0u8; 8];
    r.read_exact(&mut first).unwrap();
    assert_eq!(nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pgid))).unwrap().as_raw(), pgid);
    let t0 = Instant::now();
    h.cancel();
    wait_for(&reaper, &h);
    assert!(h.join().unwrap_err().is_cancelled());
    // EOF: the background `sleep`, which held the write end, has died too (otherwise
    // `read_to_end` returns only when its 60 s are up).
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(t0.elapsed() < LIMIT, "the group outlived its leader: {:?}", t0.elapsed());
}

#[test]
fn a_program_that_cannot_start_fails_at_once_with_the_reason() {
    let reaper = Reaper::new().unwrap();
    let h = direct("/no/such/program", &[], &Environment::current(), &reaper).spawn();
    assert!(h.is_done());
    assert!(reaper.is_empty());
    let err = h.join().unwrap_err();
    match err.kind() {
        ErrorKind::Spawn(msg) => {
            assert!(msg.contains("cannot run `/no/such/program`") && msg.contains("No such file"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}
