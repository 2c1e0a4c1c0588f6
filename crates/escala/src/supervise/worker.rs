//! Starting one worker: a command or a registered task, as a process unit that leads its own
//! process group, with its environment, prefixed output and readiness socket. Its death
//! comes back as a message from the unit's watcher thread, which blocks in `waitid`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Sender;

use super::control::{Mailbox, Msg};
use super::service::{Output, Program, Ready, Service};
use crate::error::ExitReason;
use crate::process::{ChildSlot, OwnChild};
use crate::task::{Call, Task};
use crate::{Handle, Outcome};

/// How a worker ended.
///
/// # Examples
///
/// ```
/// use escala::ExitReason;
/// use escala::supervise::WorkerExit;
/// let clean = WorkerExit { reason: ExitReason::Code(0), error: None };
/// assert!(clean.success());
/// assert_eq!(clean.to_string(), "exited with code 0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerExit {
    /// The exit code or the signal (a task that failed or panicked counts as code 1).
    pub reason: ExitReason,
    /// A task's error or panic message.
    pub error: Option<String>,
}

impl WorkerExit {
    /// Exit code 0 and no error.
    pub fn success(&self) -> bool {
        self.reason == ExitReason::Code(0) && self.error.is_none()
    }

    pub(crate) fn from_reason(reason: ExitReason) -> WorkerExit {
        WorkerExit { reason, error: None }
    }

    fn of<T>(out: &Outcome<T>) -> WorkerExit {
        match out {
            Ok(_) => WorkerExit { reason: ExitReason::Code(0), error: None },
            Err(e) => match e.exit_reason() {
                Some(reason) => WorkerExit { reason, error: None },
                None => WorkerExit { reason: ExitReason::Code(1), error: Some(e.kind().to_string()) },
            },
        }
    }
}

impl std::fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Some(e) => write!(f, "{} ({e})", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

/// Starts a registered task with its arguments; the type behind [`Program::Task`].
pub(crate) trait TaskLaunch: Send + Sync {
    fn launch(&self, name: String, svc: &Service, own: OwnChild) -> (Handle<()>, Arc<ChildSlot>);
}

pub(crate) struct Launch<K: Task>(pub(crate) K::Args);

impl<K: Task> TaskLaunch for Launch<K>
where
    K::Args: Clone + Sync,
{
    fn launch(&self, name: String, svc: &Service, own: OwnChild) -> (Handle<()>, Arc<ChildSlot>) {
        let builder = crate::process::Builder::new().name(name).daemon(true).stop_grace(svc.stop_timeout);
        let (h, slot) = builder.spawn_with(Call::<K>::new(self.0.clone()), Some(own));
        // Erase the output type: the supervisor only needs the exit.
        let (unit, done) = crate::handle::pair::<()>(h.name().to_string().into(), h.kind());
        done.core().set_pid(h.pid().unwrap_or(0));
        h.on_done(move |out| {
            let _ = match WorkerExit::of(out) {
                e if e.success() => done.ok(()),
                e => done.fail(crate::ErrorKind::Failed(e.to_string())),
            };
        });
        (unit, slot)
    }
}

/// A running worker as the control loop sees it.
pub(crate) struct Running {
    pub(crate) id: u64,
    pub(crate) pid: u32,
    pub(crate) slot: Arc<ChildSlot>,
    pub(crate) notify: Option<PathBuf>,
    /// A command's pidfd: the control thread sees its death itself, one wakeup sooner
    /// than the watcher's message. (A task's exit code does not tell its outcome.)
    pub(crate) pidfd: Option<OwnedFd>,
}

/// Starts worker `index` of `svc`; its exit (and readiness) arrive on `tx` under `id`.
/// `flushed` is held by the output threads until they have written their last line.
pub(crate) fn start(
    svc: &Service,
    index: usize,
    id: u64,
    (dir, flushed): (&Path, &Sender<()>),
    tx: &Mailbox,
) -> Result<Running, String> {
    let name = format!("{}[{index}]", svc.name);
    let name_for_output = name.clone();
    let mut own = OwnChild { env: svc.env.clone(), cwd: svc.cwd.clone(), ..OwnChild::default() };
    own.env.push(("ESCALA_SERVICE".into(), svc.name.clone().into()));
    own.env.push(("ESCALA_WORKER".into(), index.to_string().into()));
    let notify = match svc.ready {
        Ready::Started => None,
        Ready::Notify => {
            let path = dir.join(format!("{id}.sock"));
            listen_ready(&path, id, tx.clone())
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            own.env.push(("NOTIFY_SOCKET".into(), path.clone().into()));
            Some(path)
        }
    };
    let sinks = match &svc.output {
        Output::Inherit => None,
        Output::Prefixed => Some((Sink::Stdout, Sink::Stderr)),
        Output::File(log) => Some((Sink::File(log.clone()), Sink::File(log.clone()))),
    };
    // The pipes now, their reading threads once the worker runs (off its critical path).
    let mut readers = Vec::new();
    if let Some((out, err)) = sinks {
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("cannot create a pipe: {e}"))
        };
        let ((out_r, out_w), (err_r, err_w)) = (pipe()?, pipe()?);
        own.stdout = Some(out_w);
        own.stderr = Some(err_w);
        readers = vec![(out_r, out), (err_r, err)];
    }
    let (handle, slot) = match &svc.program {
        Program::Command(argv) => {
            let mut cmd = crate::process::Command::new(&argv[0])
                .args(&argv[1..])
                .name(name)
                .daemon(true)
                .stop_grace(svc.stop_timeout)
                .process_group(true)
                .env_remove("NOTIFY_SOCKET");
            for (k, v) in &own.env {
                cmd = cmd.env(k, v);
            }
            if let Some(dir) = &own.cwd {
                cmd = cmd.current_dir(dir);
            }
            if let Some(fd) = own.stdout.take() {
                cmd = cmd.stdout(fd);
            }
            if let Some(fd) = own.stderr.take() {
                cmd = cmd.stderr(fd);
            }
            cmd.spawn_in_slot(true)
        }
        Program::Task(_, _, launch) => {
            if svc.ready == Ready::Started {
                own.env_remove.push("NOTIFY_SOCKET".into());
            }
            launch.launch(name, svc, own)
        }
    };
    for (r, sink) in readers {
        if let Err(e) = prefixer(&name_for_output, r, sink, flushed.clone()) {
            tracing::error!("cannot start the output thread of {name_for_output}: {e}");
        }
    }
    let Some(pid) = handle.pid() else {
        if let Some(path) = &notify {
            wake(path);
        }
        let why = match handle.join() {
            Err(e) => e.kind().to_string(),
            Ok(()) => "it exited at once".into(),
        };
        return Err(why);
    };
    let tx = tx.clone();
    handle.on_done(move |out| {
        let _ = tx.send(Msg::Exited { id, exit: WorkerExit::of(out) });
    });
    let pidfd = match svc.program {
        Program::Command(_) => slot.pidfd(),
        Program::Task(..) => None,
    };
    Ok(Running { id, pid, slot, notify, pidfd })
}

/// Ends the readiness listener at `path` (if it still runs) and removes the socket.
pub(crate) fn wake(path: &Path) {
    if let Ok(s) = UnixDatagram::unbound() {
        let _ = s.send_to(b"ESCALA_CLOSE=1", path);
    }
}

/// Binds the worker's notify socket and waits on a thread for `READY=1` (or our close).
fn listen_ready(path: &Path, id: u64, tx: Mailbox) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let sock = UnixDatagram::bind(path)?;
    let path = path.to_path_buf();
    std::thread::Builder::new().name(format!("escala-notify-{id}")).spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.lines().any(|l| l == "ESCALA_CLOSE=1") {
                break;
            }
            if text.lines().any(|l| l == "READY=1") {
                let _ = tx.send(Msg::Ready { id });
                break;
            }
        }
        let _ = std::fs::remove_file(&path);
    })?;
    Ok(())
}

/// Where an output thread writes.
enum Sink {
    Stdout,
    Stderr,
    File(super::LogFile),
}

/// Copies the lines of pipe `r`, prefixed with `name `, to `sink` on a thread that holds
/// `flushed` until it has written the last line.
fn prefixer(name: &str, r: OwnedFd, sink: Sink, flushed: Sender<()>) -> std::io::Result<()> {
    let prefix = name.to_string();
    std::thread::Builder::new().name(format!("escala-out-{name}")).spawn(move || {
        let _flushed = flushed;
        let mut line = Vec::new();
        let mut rd = BufReader::new(std::fs::File::from(r));
        while rd.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            let mut out = Vec::with_capacity(prefix.len() + 1 + line.len());
            out.extend_from_slice(prefix.as_bytes());
            out.push(b' ');
            out.extend_from_slice(&line);
            let ok = match &sink {
                Sink::Stdout => std::io::stdout().lock().write_all(&out),
                Sink::Stderr => std::io::stderr().write_all(&out),
                Sink::File(log) => log.write_line(&out),
            };
            if ok.is_err() {
                break;
            }
            line.clear();
        }
    })?;
    Ok(())
}
