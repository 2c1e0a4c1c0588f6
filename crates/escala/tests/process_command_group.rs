//! Command units in their own process group (`Command::process_group`), stopped through a
//! `Signaller` or a cancel: the whole group gets the signal, and the handle reports how the
//! command really ended. Real children, real signals; waits are bounded (pidfd + poll).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use escala::process::Command;
use escala::{ErrorKind, ExitReason};
use nix::sys::signal::Signal;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

/// True if `pid` ends (exits or becomes a zombie) within `secs` seconds.
fn ends_within(pid: i32, secs: u64) -> bool {
    let Some(pid) = Pid::from_raw(pid) else { return true };
    let fd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return true,
        Err(e) => panic!("pidfd_open: {e}"),
    };
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let t = Timespec::try_from(Duration::from_secs(secs)).unwrap();
    matches!(poll(&mut fds, Some(&t)), Ok(n) if n > 0)
}

/// Starts `sh` that prints its pid and a grandchild's pid, then waits for the grandchild.
fn shell_with_grandchild(group: bool) -> (escala::Handle<()>, escala::process::Signaller, i32, i32) {
    let (r, w) = nix::unistd::pipe().unwrap();
    let (r, w) = (std::fs::File::from(r), std::fs::File::from(w));
    let (h, sig) = Command::new("sh")
        .args(["-c", "echo $$; sleep 600 & echo $!; wait"])
        .process_group(group)
        .stdout(Stdio::from(w))
        .spawn_with_signaller();
    let mut lines = BufReader::new(r).lines();
    let mut next = || lines.next().unwrap().unwrap().trim().parse::<i32>().unwrap();
    let (shell, grandchild) = (next(), next());
    (h, sig, shell, grandchild)
}

/// The process group of `pid`, from /proc/PID/stat (field 5).
fn pgid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(2).unwrap().parse().unwrap()
}

#[test]
fn a_group_command_leads_its_own_process_group() {
    let (h, sig, shell, grandchild) = shell_with_grandchild(true);
    assert_eq!(h.pid(), Some(shell as u32));
    assert_eq!(pgid(shell), shell);
    assert_eq!(pgid(grandchild), shell);
    assert_ne!(pgid(shell), nix::unistd::getpgrp().as_raw());
    sig.signal(Signal::SIGKILL);
    assert!(h.join().is_err());
    assert!(ends_within(grandchild, 10));
}

#[test]
fn a_signaller_reaches_the_whole_group_and_the_handle_keeps_the_real_end() {
    let (h, sig, _, grandchild) = shell_with_grandchild(true);
    sig.signal(Signal::SIGTERM);
    let err = h.join().unwrap_err();
    assert_eq!(err.exit_reason(), Some(ExitReason::Signal(Signal::SIGTERM)));
    assert!(ends_within(grandchild, 10), "the grandchild outlived its group's SIGTERM");
}

#[test]
fn without_a_group_only_the_command_itself_is_signalled() {
    let (h, sig, _, grandchild) = shell_with_grandchild(false);
    sig.signal(Signal::SIGTERM);
    assert!(h.join().is_err());
    assert!(!ends_within(grandchild, 0), "the grandchild should still run");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(grandchild), Signal::SIGKILL).unwrap();
    assert!(ends_within(grandchild, 10));
}

#[test]
fn cancelling_a_group_command_stops_its_grandchildren() {
    let (h, _, _, grandchild) = shell_with_grandchild(true);
    assert!(h.cancel());
    assert!(matches!(h.join().unwrap_err().kind(), ErrorKind::Cancelled));
    assert!(ends_within(grandchild, 10), "the grandchild outlived the cancel");
}

#[test]
fn a_signaller_after_the_end_sends_nothing_and_exit_codes_still_count() {
    let (h, sig) = Command::new("sh").args(["-c", "exit 4"]).die_with_parent(false).spawn_with_signaller();
    assert_eq!(h.join().unwrap_err().exit_reason(), Some(ExitReason::Code(4)));
    sig.signal(Signal::SIGKILL);
}
