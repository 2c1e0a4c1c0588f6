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
