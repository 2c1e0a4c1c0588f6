//! Command-line definitions (clap only) and their conversion into [`Config`].

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use std::path::PathBuf;

use crate::cmd::bench::Workload;
use crate::config::{BenchConfig, Config, DemoConfig, Lang, TimelineConfig};

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
    /// Draw an event log (`--events` file, one JSON event per line) as an SVG timeline.
    Timeline(TimelineArgs),
    /// Run the built-in workloads (cpu, io, tiny, crash) on every unit kind and say which
    /// unit fits which job.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Language of the start/finish lines (`es` prints the seed's own Spanish lines).
    #[arg(long, value_enum, default_value_t = LangArg::En)]
    lang: LangArg,
    /// Seconds each unit works (the seed uses 2).
    #[arg(long, default_value_t = 2.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Also draw the units' timeline into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<PathBuf>,
    /// Also write the units' lifecycle events into this file, one JSON object per line.
    #[arg(long, value_name = "FILE.jsonl")]
    events: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct TimelineArgs {
    /// The event log: one JSON event per line.
    #[arg(value_name = "EVENTS.jsonl")]
    events: PathBuf,
    /// Where to write the picture.
    #[arg(short, long, value_name = "FILE.svg")]
    output: PathBuf,
    /// The picture's title (default: the event file's name).
    #[arg(long)]
    title: Option<String>,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Workloads to run (default: all).
    #[arg(value_enum)]
    workloads: Vec<WorkloadArg>,
    /// Runs of each workload on each unit; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    repeat: u16,
    /// Workers in each pool (default: the available parallelism).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Also draw the results as a chart into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Also draw every job of the runs as a timeline into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WorkloadArg {
    /// fib(27), about 1 ms of CPU per job.
    Cpu,
    /// A 10 ms wait per job.
    Io,
    /// Jobs that return their input: the cost of a unit itself.
    Tiny,
    /// One job in 20 aborts its process.
    Crash,
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
            timeline: a.timeline,
            events: a.events,
        }),
        Command::Bench(a) => Config::Bench(BenchConfig {
            workloads: if a.workloads.is_empty() {
                Workload::ALL.to_vec()
            } else {
                let mut w: Vec<Workload> = a
                    .workloads
                    .iter()
                    .map(|w| match w {
                        WorkloadArg::Cpu => Workload::Cpu,
                        WorkloadArg::Io => Workload::Io,
                        WorkloadArg::Tiny => Workload::Tiny,
                        WorkloadArg::Crash => Workload::Crash,
                    })
                    .collect();
                w.sort();
                w.dedup();
                w
            },
            repeat: a.repeat.into(),
            workers: a
                .workers
                .map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from),
            json: a.json,
            chart: a.chart,
            timeline: a.timeline,
        }),
        Command::Timeline(a) => Config::Timeline(TimelineConfig {
            title: a.title.unwrap_or_else(|| a.events.display().to_string()),
            events: a.events,
            output: a.output,
        }),
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
