//! [`Service`]: what to run, how many, and how to restart, stop and watch it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::policy::{Backoff, CrashLoop, Restart};
use super::worker::{Launch, TaskLaunch};
use crate::task::{Call, Task};

/// When a new worker counts as ready (for rolling replacement and `depends_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ready {
    /// As soon as it started.
    #[default]
    Started,
    /// When it sends `READY=1` (sd_notify style) on the datagram socket named by the
    /// `NOTIFY_SOCKET` variable escala sets for it.
    Notify,
}

/// Where a worker's stdout and stderr go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Output {
    /// To this process's stdout and stderr, each line prefixed with `service[i] `.
    #[default]
    Prefixed,
    /// Shared with this process, untouched.
    Inherit,
    /// Appended to a log file rotated by size, each line prefixed with `service[i] `.
    File(super::LogFile),
}

#[derive(Clone)]
pub(crate) enum Program {
    /// argv: a program and its arguments.
    Command(Vec<OsString>),
    /// A registered task re-executed in a child; the bytes are its encoded arguments.
    Task(&'static str, Vec<u8>, Arc<dyn TaskLaunch>),
}

impl PartialEq for Program {
    fn eq(&self, other: &Program) -> bool {
        match (self, other) {
            (Program::Command(a), Program::Command(b)) => a == b,
            (Program::Task(a, x, _), Program::Task(b, y, _)) => a == b && x == y,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Program::Command(argv) => f.debug_tuple("Command").field(argv).finish(),
            Program::Task(name, ..) => f.debug_tuple("Task").field(name).finish(),
        }
    }
}

/// One supervised service: `workers` copies of a command or a registered task.
///
/// Every worker runs in its own process group, dies with the supervisor, and sees
/// `ESCALA_SERVICE` (the service's name) and `ESCALA_WORKER` (its 0-based index).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use escala::supervise::{Restart, Service};
/// let web = Service::command("web", ["python3", "-m", "http.server", "8000"])
///     .workers(2)
///     .restart(Restart::OnFailure)
///     .stop_timeout(Duration::from_secs(5))
///     .env("PORT", "8000");
/// assert_eq!(web.name(), "web");
/// assert_eq!(web.worker_count(), 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub(crate) name: String,
    pub(crate) program: Program,
    pub(crate) workers: usize,
    pub(crate) restart: Restart,
    pub(crate) backoff: Backoff,
    pub(crate) crash_loop: CrashLoop,
    pub(crate) stop_signal: Signal,
    pub(crate) stop_timeout: Duration,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) ready: Ready,
    pub(crate) depends_on: Vec<String>,
    pub(crate) output: Output,
}

impl Service {
    fn with(name: String, program: Program) -> Service {
        Service {
            name,
            program,
            workers: 1,
            restart: Restart::Always,
            backoff: Backoff::default(),
            crash_loop: CrashLoop::default(),
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            env: Vec::new(),
            cwd: None,
            ready: Ready::Started,
            depends_on: Vec::new(),
            output: Output::Prefixed,
        }
    }

    /// A service running a program with arguments (the first item is looked up in `PATH`).
    pub fn command<I, S>(name: impl Into<String>, argv: I) -> Service
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Service::with(name.into(), Program::Command(argv.into_iter().map(Into::into).collect()))
    }

    /// A service running a command line through `sh -c`.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = escala::supervise::Service::shell("tick", "while true; do date; sleep 1; done");
    /// assert_eq!(s.name(), "tick");
    /// ```
    pub fn shell(name: impl Into<String>, line: impl Into<OsString>) -> Service {
        Service::command(name, [OsString::from("sh"), OsString::from("-c"), line.into()])
    }

    /// A service whose workers run a registered task, each in a re-executed child (the
    /// binary calls [`crate::init`] first in `main`). The task is expected to run until
    /// stopped; its return counts as a clean exit, an error or a panic as a failure.
    ///
    /// # Examples
    ///
    /// ```
    /// #[escala::task]
    /// fn serve(port: u16) { let _ = port; }
    ///
    /// let s = escala::supervise::Service::task("api", serve::call(8080)).workers(4);
    /// assert_eq!(s.worker_count(), 4);
    /// ```
    pub fn task<K: Task>(name: impl Into<String>, call: Call<K>) -> Service
    where
        K::Args: Clone + Sync,
    {
        let key = crate::task::encode(call.args()).unwrap_or_default();
        let launch: Arc<dyn TaskLaunch> = Arc::new(Launch::<K>(call.into_args()));
        Service::with(name.into(), Program::Task(K::NAME, key, launch))
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many workers it runs.
    pub fn worker_count(&self) -> usize {
        self.workers
    }

    /// Runs `n` workers (default 1).
    pub fn workers(mut self, n: usize) -> Service {
        self.workers = n;
        self
    }

    /// Which deaths are followed by a restart (default [`Restart::Always`]).
    pub fn restart(mut self, policy: Restart) -> Service {
        self.restart = policy;
        self
    }

    /// The backoff between restarts (default [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Service {
        self.backoff = backoff;
        self
    }

    /// The crash-loop limit (default 5 deaths in 10 s).
    pub fn crash_loop(mut self, limit: CrashLoop) -> Service {
        self.crash_loop = limit;
        self
    }

    /// The signal that asks a worker's process group to stop (default SIGTERM).
    pub fn stop_signal(mut self, sig: Signal) -> Service {
        self.stop_signal = sig;
        self
    }

    /// How long a stopping worker gets before its group is killed (default 10 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Service {
        self.stop_timeout = timeout;
        self
    }

    /// Sets an environment variable for every worker.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Service {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The workers' working directory (default: this process's).
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Service {
        self.cwd = Some(dir.into());
        self
    }

    /// When a worker counts as ready (default [`Ready::Started`]).
    pub fn ready(mut self, ready: Ready) -> Service {
        self.ready = ready;
        self
    }

    /// Starts this service only after every worker of these services is ready.
    pub fn depends_on<I, S>(mut self, names: I) -> Service
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on = names.into_iter().map(Into::into).collect();
        self
    }

    /// Where the workers' output goes (default [`Output::Prefixed`]).
    pub fn output(mut self, output: Output) -> Service {
        self.output = output;
        self
    }
}
