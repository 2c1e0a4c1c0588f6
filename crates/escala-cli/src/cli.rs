//! Command-line definitions (clap only) and their conversion into [`Config`].

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use std::path::PathBuf;

use crate::config::{Config, DemoConfig, Lang, ServeAction, ServeConfig};

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
    /// Keep the services of a TOML file running (restart, reload on SIGHUP, stop on TERM).
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ServeArgs {
    #[command(subcommand)]
    action: Option<ServeCommand>,
    /// The services file (see `escala serve --help`).
    file: Option<PathBuf>,
    /// Only check the file and exit.
    #[arg(long)]
    check: bool,
    /// The control socket (default: derived from the file's path).
    #[arg(long)]
    socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ServeCommand {
    /// Show the services of a running `escala serve`.
    Status {
        /// Print JSON: services, workers, pids, restarts, uptime, state.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: ServeTarget,
    },
    /// Replace the workers of one service, one at a time.
    Restart {
        /// The service.
        name: String,
        #[command(flatten)]
        target: ServeTarget,
    },
}

#[derive(Debug, clap::Args)]
struct ServeTarget {
    /// The services file the server runs (default: services.toml).
    file: Option<PathBuf>,
    /// The control socket (default: derived from the file's path).
    #[arg(long)]
    socket: Option<PathBuf>,
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
        Command::Serve(a) => Config::Serve(serve_config(a)),
    })
}

fn serve_config(a: ServeArgs) -> ServeConfig {
    let default = || PathBuf::from("services.toml");
    match a.action {
        None => ServeConfig {
            file: a.file.unwrap_or_else(default),
            socket: a.socket,
            action: if a.check { ServeAction::Check } else { ServeAction::Run },
        },
        Some(ServeCommand::Status { json, target }) => ServeConfig {
            file: target.file.unwrap_or_else(default),
            socket: target.socket,
            action: ServeAction::Status { json },
        },
        Some(ServeCommand::Restart { name, target }) => ServeConfig {
            file: target.file.unwrap_or_else(default),
            socket: target.socket,
            action: ServeAction::Restart { name },
        },
    }
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
