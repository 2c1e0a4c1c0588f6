//! The fork server process: re-executed once, single-threaded, it forks a child per process
//! unit. A forked child has run nothing but `escala::init()`, so it starts in microseconds
//! instead of paying `exec` and dynamic loading again; it serves its unit exactly like a
//! re-executed child (`child::serve_unit`). The server reaps its children (SIGCHLD through a
//! signalfd) and reports each exit; it signals only children it has not reaped.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::wire::{FromZygote, MAX_MSG, ToZygote};
use crate::process::child::{fatal, serve_unit};
use crate::process::sys;
use crate::task;

/// Runs the fork server on the control socket passed as stdin; never returns.
pub(crate) fn serve(max: usize) -> ! {
    let ctrl: OwnedFd = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => fatal(&format!("the fork server has no control socket ({e})")),
    };
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    if mask.thread_block().is_err() {
        fatal("the fork server cannot block SIGCHLD");
    }
    let Ok(sfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) else {
        fatal("the fork server cannot open a signalfd");
    };
    let me = nix::unistd::getpid();
    let mut children: HashMap<Pid, u64> = HashMap::new();
    let mut buf = vec![0u8; MAX_MSG];
    loop {
        let (ctrl_ready, child_ready) = {
            let mut fds =
                [PollFd::new(ctrl.as_fd(), PollFlags::POLLIN), PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => fatal("the fork server cannot poll"),
                Ok(_) => (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false)),
            }
        };
        if child_ready {
            while let Ok(Some(_)) = sfd.read_signal() {}
            reap(&ctrl, &mut children);
        }
        if !ctrl_ready {
            continue;
        }
        let (n, mut fds) = match sys::recv_with_fds(ctrl.as_fd(), &mut buf) {
            Ok((0, _)) | Err(_) => std::process::exit(0), // the parent is gone: so are we
            Ok(got) => got,
        };
        match task::decode::<ToZygote>(&buf[..n]) {
            Ok(ToZygote::Spawn { id, stderr }) => {
                let err_fd = if stderr && fds.len() > 1 { fds.pop() } else { None };
                let Some(sock) = fds.pop() else { continue };
                // SAFETY: this process is single-threaded: it is the fork server, which
                // starts no thread (escala::init() hands it control before `main` runs).
                match unsafe { sys::fork() } {
                    Ok(ForkResult::Child) => {
                        drop((sfd, ctrl));
                        let _ = mask.thread_unblock();
                        sys::die_with_parent(me.as_raw());
                        if let Some(fd) = err_fd {
                            let _ = nix::unistd::dup2_stderr(&fd);
                        }
                        serve_unit(UnixStream::from(sock), max);
                    }
                    Ok(ForkResult::Parent { child }) => {
                        children.insert(child, id);
                        send(&ctrl, &FromZygote::Forked { id, pid: child.as_raw() as u32 });
                    }
                    Err(e) => send(&ctrl, &FromZygote::Failed { id, error: format!("fork failed: {e}") }),
                }
            }
            Ok(ToZygote::Signal { pid, sig }) => {
                let pid = Pid::from_raw(pid as i32);
                if children.contains_key(&pid) {
                    if let Ok(sig) = Signal::try_from(sig) {
                        let _ = nix::sys::signal::kill(pid, sig);
                    }
                }
            }
            Err(_) => {} // not from our parent's build; ignore it
        }
    }
}

/// Reaps every child that ended and reports it.
fn reap(ctrl: &OwnedFd, children: &mut HashMap<Pid, u64>) {
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, (code & 0xff) << 8),
            Ok(WaitStatus::Signaled(pid, sig, core)) => (pid, sig as i32 | if core { 0x80 } else { 0 }),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        if let Some(id) = children.remove(&pid) {
            send(ctrl, &FromZygote::Exited { id, status });
        }
    }
}

fn send(ctrl: &OwnedFd, msg: &FromZygote) {
    if let Ok(bytes) = task::encode(msg) {
        let _ = nix::unistd::write(ctrl, &bytes);
    }
}
