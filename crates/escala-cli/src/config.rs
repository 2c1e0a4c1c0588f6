//! Plain, validated configuration for each subcommand: what `cli.rs` produces and `cmd/`
//! consumes.

pub(crate) mod run;
mod values;

use std::path::PathBuf;

use crate::cmd::bench::Workload;

/// One subcommand and its settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Config {
    Demo(DemoConfig),
    Run(Box<run::RunConfig>),
    Serve(ServeConfig),
    Timeline(TimelineConfig),
    Bench(BenchConfig),
    Worker(WorkerConfig),
    Status(StatusConfig),
}

/// Settings of `escala serve`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServeConfig {
    /// The services file.
    pub(crate) file: std::path::PathBuf,
    /// The control socket, when not derived from the file.
    pub(crate) socket: Option<std::path::PathBuf>,
    pub(crate) action: ServeAction,
}

/// What `escala serve` does with the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServeAction {
    /// Run the services until SIGTERM or SIGINT.
    Run,
    /// Check the file and exit.
    Check,
    /// Ask the running server for its status.
    Status { json: bool },
    /// Ask the running server to restart one service.
    Restart { name: String },
}

/// Settings of `escala bench`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BenchConfig {
    /// In the order they run; no duplicates.
    pub(crate) workloads: Vec<Workload>,
    pub(crate) repeat: usize,
    pub(crate) workers: usize,
    pub(crate) json: bool,
    pub(crate) chart: Option<PathBuf>,
    pub(crate) timeline: Option<PathBuf>,
}

/// Settings of `escala worker`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerConfig {
    pub(crate) redis: String,
    pub(crate) queue: String,
    pub(crate) concurrency: usize,
    pub(crate) allow_commands: bool,
    pub(crate) key_file: Option<std::path::PathBuf>,
    /// `--tls-ca`: the CA file a rediss:// server's certificate is checked against.
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) lease: std::time::Duration,
}

/// Settings of `escala status`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusConfig {
    pub(crate) redis: String,
    /// `--tls-ca`: the CA file a rediss:// server's certificate is checked against.
    pub(crate) tls_ca: Option<PathBuf>,
    /// `--result ID`: show this task's kept result instead of the queues.
    pub(crate) result: Option<String>,
    /// `--key-file`: the key the result must be signed with.
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) json: bool,
}

/// Settings of `escala demo`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DemoConfig {
    pub(crate) lang: Lang,
    /// How long each unit works.
    pub(crate) seconds: f64,
    /// Where to draw the units' timeline, if anywhere.
    pub(crate) timeline: Option<PathBuf>,
    /// Where to write the event log, if anywhere.
    pub(crate) events: Option<PathBuf>,
}

/// Settings of `escala timeline`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimelineConfig {
    pub(crate) events: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) title: String,
}

/// Language of the demo's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Es,
}
