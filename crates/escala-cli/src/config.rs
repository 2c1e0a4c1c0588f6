//! Plain, validated configuration for each subcommand: what `cli.rs` produces and `cmd/`
//! consumes.

pub(crate) mod run;
mod values;

/// One subcommand and its settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Config {
    Demo(DemoConfig),
    Run(Box<run::RunConfig>),
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
