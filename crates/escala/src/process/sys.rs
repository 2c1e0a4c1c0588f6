//! The OS-level pieces of process units, and the only `unsafe` in the crate.

use std::os::unix::net::UnixStream;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// The environment variable that marks a re-executed child: `1:<parent pid>:<max frame>`.
pub(crate) const CHILD_ENV: &str = "ESCALA_CHILD";

/// Removes the child marker so that commands the child starts do not inherit it.
pub(crate) fn forget_child_marker() {
    // SAFETY: called from `escala::init()`, which runs first in `main` of a freshly exec'd
    // child: the process has a single thread, so no other thread reads the environment.
    unsafe { std::env::remove_var(CHILD_ENV) };
}

/// Makes this process die with its parent, and exits at once if the parent already died.
pub(crate) fn die_with_parent(parent: i32) {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // The parent may have died before the line above: then we were re-parented.
    if nix::unistd::getppid() != Pid::from_raw(parent) {
        eprintln!("escala: error: parent process {parent} is gone; not running the task");
        std::process::exit(2);
    }
}

/// Makes a command's process die with this one (PR_SET_PDEATHSIG, set between fork and exec).
pub(crate) fn kill_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec; it only makes two system
    // calls (prctl, getppid), which are async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the parent died before the command started"));
            }
            Ok(())
        });
    }
}

/// Takes the request socket the parent passed as stdin, and points stdin at /dev/null.
pub(crate) fn take_request_socket() -> std::io::Result<UnixStream> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let sock = UnixStream::from(fd);
    // Fails with ENOTSOCK when stdin is not a socket: the marker was set by hand.
    sock.peer_addr()?;
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    Ok(sock)
}

/// Sends `sig` to `pid`, ignoring a process that is already gone.
pub(crate) fn signal(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
}

/// Sends `sig` to the process group `pgid`, ignoring a group that is already gone.
pub(crate) fn signal_group(pgid: u32, sig: Signal) {
    let _ = nix::sys::signal::killpg(Pid::from_raw(pgid as i32), sig);
}

/// Blocks until the child exits, without reaping it (so it stays signal-safe to address
/// by pid until the caller reaps it under its lock).
pub(crate) fn wait_exit_no_reap(pid: u32) {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    loop {
        match waitid(Id::Pid(Pid::from_raw(pid as i32)), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// Reaps the child `pid` (waiting for it to exit) and returns its status; `None` if it is
/// not ours to reap.
pub(crate) fn reap(pid: u32) -> Option<std::process::ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    let pid = rustix::process::Pid::from_raw(pid as i32)?;
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, st))) => return Some(std::process::ExitStatus::from_raw(st.as_raw())),
            Err(rustix::io::Errno::INTR) => continue,
            _ => return None,
        }
    }
}

/// A connected pair of `SOCK_SEQPACKET` sockets (message boundaries kept), close-on-exec.
pub(crate) fn seqpacket_pair() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    Ok(socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?)
}

/// Sends one message with file descriptors attached.
pub(crate) fn send_with_fds(
    sock: std::os::fd::BorrowedFd<'_>,
    msg: &[u8],
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    use std::os::fd::AsRawFd;
    let iov = [std::io::IoSlice::new(msg)];
    let cmsgs: Vec<ControlMessage<'_>> =
        if fds.is_empty() { Vec::new() } else { vec![ControlMessage::ScmRights(fds)] };
    sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one message (at most `buf.len()` bytes) and the descriptors attached to it.
/// `Ok(0)` bytes means the peer closed.
pub(crate) fn recv_with_fds(
    sock: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<UnixAddr>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel installed these descriptors in this process for this
                // message (SCM_RIGHTS); nothing else knows them, so we are their only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((msg.bytes, fds))
}

/// Forks this process. Only for the fork server, which is single-threaded.
///
/// # Safety
///
/// The calling process must have exactly one thread: after `fork` only async-signal-safe
/// work is sound in the child of a multi-threaded process.
pub(crate) unsafe fn fork() -> std::io::Result<nix::unistd::ForkResult> {
    // SAFETY: the caller promises a single-threaded process (see above).
    Ok(unsafe { nix::unistd::fork() }?)
}

/// A pidfd for `pid` (the caller guarantees `pid` is an unreaped child of ours).
pub(crate) fn pidfd(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or(std::io::ErrorKind::InvalidInput)?;
    Ok(rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?)
}

/// How the process behind `pidfd` ended, without reaping it; `None` while it runs or once
/// someone else reaped it.
pub(crate) fn exit_of(pidfd: std::os::fd::BorrowedFd<'_>) -> Option<crate::ExitReason> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    let st = waitid(WaitId::PidFd(pidfd), opts).ok()??;
    Some(match (st.terminating_signal(), st.exit_status()) {
        (Some(sig), _) => match Signal::try_from(sig) {
            Ok(s) => crate::ExitReason::Signal(s),
            Err(_) => crate::ExitReason::SignalNumber(sig),
        },
        (None, Some(code)) => crate::ExitReason::Code(code),
        (None, None) => return None,
    })
}
