//! One module per subcommand; each takes its config and calls the library.

mod demo;
mod status;
mod worker;

use std::process::ExitCode;

use crate::config::Config;

/// Runs the subcommand.
pub(crate) fn run(config: Config) -> anyhow::Result<ExitCode> {
    match config {
        Config::Demo(c) => demo::run(&c),
        Config::Worker(c) => worker::run(&c),
        Config::Status(c) => status::run(&c),
    }
}
