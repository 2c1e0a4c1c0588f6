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
