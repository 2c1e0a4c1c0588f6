//! One module per subcommand; each takes its config and calls the library.

pub(crate) mod bench;
mod demo;
mod run;
mod serve;
mod timeline;

use std::process::ExitCode;

use crate::config::Config;

/// Runs the subcommand.
pub(crate) fn run(config: Config) -> anyhow::Result<ExitCode> {
    match config {
        Config::Demo(c) => demo::run(&c),
        Config::Run(c) => run::run(&c),
        Config::Serve(c) => serve::run(&c),
        Config::Timeline(c) => timeline::run(&c),
        Config::Bench(c) => bench::run(&c),
    }
}
