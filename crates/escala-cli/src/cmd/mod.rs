//! One module per subcommand; each takes its config and calls the library.

pub(crate) mod bench;
mod demo;
mod run;
mod serve;
mod status;
mod timeline;
mod worker;

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
        Config::Worker(c) => worker::run(&c),
        Config::Status(c) => status::run(&c),
    }
}
