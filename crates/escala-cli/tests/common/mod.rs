//! Helpers shared by the CLI tests.

use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

/// True if process `pid` has ended (exited, or a zombie) within `secs` seconds. Waits on a
/// pidfd, which becomes readable when the process ends; a pid that is already gone counts.
pub(crate) fn ends_within(pid: i32, secs: u64) -> bool {
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

/// Makes a FIFO at `path` and reads it on a thread of its own: the jobs under test write
/// the pids of the processes they start to it, one per line, and the test receives them as
/// they come.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub(crate) fn pid_fifo(path: &std::path::Path) -> std::sync::mpsc::Receiver<i32> {
    use std::io::BufRead;
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // Read-write, so that opening does not block and the reader never sees end of file.
    let reader = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<i32>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().parse().unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

/// For runs of 3 jobs that each report 2 pids on `pids` (see [`pid_fifo`]) and then wait:
/// once all 6 came, sends `sig` to escala (`child`) and checks that it exits 255 within a
/// bound, that every reported process ends, and that the joblog at `log` has one line per
/// job, each recording SIGTERM (the signal the jobs are stopped with).
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub(crate) fn stop_and_check(
    child: &mut std::process::Child,
    pids: &std::sync::mpsc::Receiver<i32>,
    log: &std::path::Path,
    sig: nix::sys::signal::Signal,
) {
    let pids: Vec<i32> =
        (0..6).map(|_| pids.recv_timeout(Duration::from_secs(30)).expect("a job did not start")).collect();
    let pid = child.id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    assert!(ends_within(pid, 30), "escala did not stop on {sig}");
    assert_eq!(child.wait().unwrap().code(), Some(255), "{sig}");
    for pid in &pids {
        assert!(ends_within(*pid, 20), "process {pid} was left behind after {sig}");
    }
    let text = std::fs::read_to_string(log).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 3, "{text}");
    for r in rows {
        assert_eq!((r[6], r[7]), ("-1", "15"), "{text}");
    }
}
