//! Command-line definitions (clap only) and their conversion into [`Config`].

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, DemoConfig, Lang, StatusConfig, WorkerConfig};

/// Threads, processes, daemons and pools behind one API — and the same work spread over
/// many machines.
#[derive(Debug, Parser)]
#[command(name = "escala", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay the seed program: a thread, a process, a daemon thread and a pool of three.
    Demo(DemoArgs),
    /// Run tasks from a Redis queue until SIGTERM or Ctrl-C (commands only with --allow-commands).
    Worker(WorkerArgs),
    /// Show the queues (depth, pending, in-flight, dead letters) and live workers on a Redis server.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// Redis URL: redis://[user:password@]host:port[/db] (rediss:// with the `tls` feature).
    #[arg(long, value_name = "URL")]
    redis: String,
    /// The queue to run.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Tasks run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Run external commands sent to the queue (refused without this flag).
    #[arg(long)]
    allow_commands: bool,
    /// A file holding the shared signing key: unsigned or tampered tasks are refused.
    #[arg(long, value_name = "PATH")]
    key_file: Option<std::path::PathBuf>,
    /// Seconds of each task's lease (renewed while it runs; a dead worker's tasks are
    /// reclaimed after it).
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    lease: f64,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Redis URL: redis://[user:password@]host:port[/db].
    #[arg(long, value_name = "URL")]
    redis: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Language of the start/finish lines (`es` prints the seed's own Spanish lines).
    #[arg(long, value_enum, default_value_t = LangArg::En)]
    lang: LangArg,
    /// Seconds each unit works (the seed uses 2).
    #[arg(long, default_value_t = 2.0, value_parser = parse_seconds)]
    seconds: f64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LangArg {
    En,
    Es,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && (0.0..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is outside 0..=3600 seconds"))
    }
}

/// Parses the process arguments. On `--help`, `--version` or a usage error, clap has printed
/// what it had to and the exit code is returned instead.
pub(crate) fn parse() -> Result<Config, ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line, not clap's usage block: `escala: error: invalid value …`.
            let text = e.render().to_string();
            let first = match e.kind() {
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    "error: a subcommand is required"
                }
                _ => text.lines().next().unwrap_or("error: invalid arguments"),
            };
            eprintln!("escala: {} (see `escala --help`)", first.trim());
            return Err(ExitCode::from(2));
        }
        Err(e) => {
            let _ = e.print();
            return Err(ExitCode::SUCCESS);
        }
    };
    Ok(match cli.command {
        Command::Demo(a) => Config::Demo(DemoConfig {
            lang: match a.lang {
                LangArg::En => Lang::En,
                LangArg::Es => Lang::Es,
            },
            seconds: a.seconds,
        }),
        Command::Worker(a) => Config::Worker(WorkerConfig {
            redis: a.redis,
            queue: a.queue,
            concurrency: a.concurrency as usize,
            allow_commands: a.allow_commands,
            key_file: a.key_file,
            lease: std::time::Duration::from_secs_f64(a.lease.max(0.03)),
        }),
        Command::Status(a) => Config::Status(StatusConfig { redis: a.redis, json: a.json }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_are_validated() {
        assert!(parse_seconds("2").is_ok());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("nan").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
