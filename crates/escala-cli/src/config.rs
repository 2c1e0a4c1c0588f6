//! Plain, validated configuration for each subcommand: what `cli.rs` produces and `cmd/`
//! consumes.

/// One subcommand and its settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Config {
    Demo(DemoConfig),
    Worker(WorkerConfig),
    Status(StatusConfig),
}

/// Settings of `escala worker`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerConfig {
    pub(crate) redis: String,
    pub(crate) queue: String,
    pub(crate) concurrency: usize,
    pub(crate) allow_commands: bool,
    pub(crate) key_file: Option<std::path::PathBuf>,
    pub(crate) lease: std::time::Duration,
}

/// Settings of `escala status`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusConfig {
    pub(crate) redis: String,
    pub(crate) json: bool,
}

/// Settings of `escala demo`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DemoConfig {
    pub(crate) lang: Lang,
    /// How long each unit works.
    pub(crate) seconds: f64,
}

/// Language of the demo's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Es,
}
