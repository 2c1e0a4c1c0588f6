//! Command-line definitions (clap only) and their conversion into [`Config`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cmd::bench::Workload;
use crate::config::run::{self as runcfg, RunConfig};
use crate::config::{
    BenchConfig, Config, DemoConfig, Lang, ServeAction, ServeConfig, StatusConfig, TimelineConfig,
    WorkerConfig,
};

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
    /// Run a command for every input, in parallel (GNU parallel's syntax):
    /// `escala run [OPTIONS] COMMAND {} ::: ARGS…`, `:::: FILE`, or inputs on stdin.
    Run(Box<RunArgs>),
    /// Keep the services of a TOML file running (restart, reload on SIGHUP, stop on TERM).
    Serve(ServeArgs),
    /// Draw an event log (`--events` file, one JSON event per line) as an SVG timeline.
    Timeline(TimelineArgs),
    /// Run the built-in workloads (cpu, io, tiny, crash) on every unit kind and say which
    /// unit fits which job.
    Bench(BenchArgs),
    /// Run tasks from a Redis queue until SIGTERM or Ctrl-C (commands only with --allow-commands).
    Worker(WorkerArgs),
    /// Show the queues (depth, pending, in-flight, dead letters) and live workers on a Redis server.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Job slots: N, N% of the cores, +N / -N cores, 0 = as many as there are jobs.
    #[arg(short = 'j', long = "jobs", allow_hyphen_values = true, default_value = "100%")]
    jobs: String,
    /// Print the output in the order of the inputs.
    #[arg(short = 'k', long = "keep-order")]
    keep_order: bool,
    /// Kill a job (its process group: TERM, then KILL) after SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = runcfg::parse_secs)]
    timeout: Option<std::time::Duration>,
    /// Run a failing job up to N times in total.
    #[arg(long, value_name = "N", default_value_t = 1)]
    retries: u32,
    /// Wait SECS before the first retry of a job, doubling for each further retry.
    #[arg(long, value_name = "SECS", value_parser = runcfg::parse_secs)]
    retry_delay: Option<std::time::Duration>,
    /// Stop on failures or successes: now|soon,fail|success=N|P%.
    #[arg(long, value_name = "POLICY", value_parser = runcfg::parse_halt)]
    halt: Option<runcfg::Halt>,
    /// Wait at least SECS between job starts.
    #[arg(long, value_name = "SECS", value_parser = runcfg::parse_secs)]
    delay: Option<std::time::Duration>,
    /// Print the commands instead of running them.
    #[arg(long)]
    dry_run: bool,
    /// Prefix each output line with the job's arguments and a tab.
    #[arg(long)]
    tag: bool,
    /// Prefix each output line with STR (replacement strings work) and a tab.
    #[arg(long, value_name = "STR")]
    tagstring: Option<String>,
    /// Print a job's output together when it ends (the default).
    #[arg(long, conflicts_with_all = ["line_buffer", "ungroup"])]
    group: bool,
    /// Print whole lines of output as they come.
    #[arg(long, conflicts_with = "ungroup")]
    line_buffer: bool,
    /// Pass the jobs' output straight through.
    #[arg(short = 'u', long)]
    ungroup: bool,
    /// Write one tab-separated line per job to FILE (GNU parallel's columns).
    #[arg(long, value_name = "FILE")]
    joblog: Option<std::path::PathBuf>,
    /// Skip the jobs already in the --joblog file.
    #[arg(long, requires = "joblog")]
    resume: bool,
    /// Skip the jobs the --joblog file has as succeeded; run the failed ones again.
    #[arg(long, requires = "joblog", conflicts_with = "resume")]
    resume_failed: bool,
    /// Save each job's stdout, stderr and seq under DIR/1/ARG1/2/ARG2/….
    #[arg(long, value_name = "DIR")]
    results: Option<std::path::PathBuf>,
    /// Send the jobs to `escala worker`s through this Redis server instead of running them
    /// here (redis://[user:password@]host:port[/db]).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// With --redis: the queue the workers take jobs from.
    #[arg(long, value_name = "Q", default_value = "default", requires = "redis")]
    queue: String,
    /// With a rediss:// --redis URL: the PEM file of the CA certificates the server's
    /// certificate must be signed by (default: the system's roots; unused without --redis).
    #[arg(long, value_name = "FILE", env = "ESCALA_REDIS_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Write the library's lifecycle events to FILE, one JSON object a line.
    #[arg(long, value_name = "FILE")]
    events: Option<std::path::PathBuf>,
    /// Draw the jobs to FILE (SVG): one lane per slot, bars coloured by outcome.
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<std::path::PathBuf>,
    /// Draw a progress bar on stderr (only when it is a terminal).
    #[arg(long)]
    bar: bool,
    /// The same progress bar (it shows the jobs done and the time left).
    #[arg(long)]
    progress: bool,
    /// The same progress bar (it shows the time left).
    #[arg(long)]
    eta: bool,
    /// Cut stdin into blocks at line ends and give each job one block on its stdin.
    #[arg(long)]
    pipe: bool,
    /// Block size for --pipe (default 1M).
    #[arg(long, value_name = "SIZE", value_parser = runcfg::parse_size, requires = "pipe")]
    block: Option<u64>,
    /// Start a job only while at least SIZE of memory is available (like 500M, 2G).
    #[arg(long, value_name = "SIZE", value_parser = runcfg::parse_size)]
    memfree: Option<u64>,
    /// Start a job only while the 1-minute load average is below MAX (or MAX% of the cores).
    #[arg(long, value_name = "MAX")]
    load: Option<String>,
    /// Read inputs from FILE (may be given several times: one source each).
    #[arg(short = 'a', long = "arg-file", value_name = "FILE")]
    arg_file: Vec<std::path::PathBuf>,
    /// Inputs are separated by NUL bytes.
    #[arg(short = '0', long = "null", conflicts_with = "delimiter")]
    null: bool,
    /// Inputs are separated by DELIM (`\n`, `\t`, `\0` understood).
    #[arg(short = 'd', long = "delimiter", value_name = "DELIM", value_parser = runcfg::parse_delimiter_arg)]
    delimiter: Option<runcfg::DelimiterBytes>,
    /// Split each input into columns at REGEX; `{1}`, `{2}`… name the columns.
    #[arg(long, value_name = "REGEX")]
    colsep: Option<String>,
    /// Pair the input sources instead of combining them (shorter ones wrap around).
    #[arg(long)]
    link: bool,
    /// Up to N inputs per command line.
    #[arg(short = 'n', long = "max-args", value_name = "N", conflicts_with = "max_replace_args")]
    max_args: Option<usize>,
    /// N inputs per command line, named `{1}`…`{N}`.
    #[arg(short = 'N', long = "max-replace-args", value_name = "N")]
    max_replace_args: Option<usize>,
    /// Many inputs per command line; the word around `{}` is repeated for each.
    #[arg(short = 'X', conflicts_with_all = ["m", "max_replace_args"])]
    x: bool,
    /// Many inputs per command line, separated by spaces.
    #[arg(short = 'm', conflicts_with = "max_replace_args")]
    m: bool,
    /// The command, then `:::` ARGS, `::::` FILES, `:::+` / `::::+` (linked sources).
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<String>,
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
struct WorkerArgs {
    /// Redis URL: redis://[user:password@]host:port[/db], or rediss://… for TLS.
    #[arg(long, value_name = "URL")]
    redis: String,
    /// With a rediss:// URL: the PEM file of the CA certificates the server's certificate
    /// must be signed by (default: the system's roots).
    #[arg(long, value_name = "FILE", env = "ESCALA_REDIS_TLS_CA")]
    tls_ca: Option<PathBuf>,
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
    /// Redis URL: redis://[user:password@]host:port[/db], or rediss://… for TLS.
    #[arg(long, value_name = "URL")]
    redis: String,
    /// With a rediss:// URL: the PEM file of the CA certificates the server's certificate
    /// must be signed by (default: the system's roots).
    #[arg(long, value_name = "FILE", env = "ESCALA_REDIS_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Show the result kept for this task id (what ran, its attempt, its outcome; a
    /// command's exit code and output) instead of the queues.
    #[arg(long, value_name = "ID")]
    result: Option<String>,
    /// With --result: accept only a result signed with the key in this file.
    #[arg(long, value_name = "PATH", requires = "result")]
    key_file: Option<PathBuf>,
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
            let run = subcommand_is_run(std::env::args_os().skip(1));
            let help = if run { "escala run --help" } else { "escala --help" };
            eprintln!("escala: {} (see `{help}`)", first.trim());
            // `escala run` exits 255 on a usage error, as GNU parallel does; the other
            // subcommands keep the usual 2.
            return Err(ExitCode::from(if run { 255 } else { 2 }));
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
        Command::Run(a) => match run_config(*a) {
            Ok(c) => Config::Run(Box::new(c)),
            Err(m) => {
                eprintln!("escala: error: {m}");
                return Err(ExitCode::from(255));
            }
        },
        Command::Serve(a) => Config::Serve(serve_config(a)),
        Command::Worker(a) => Config::Worker(WorkerConfig {
            redis: a.redis,
            queue: a.queue,
            concurrency: a.concurrency as usize,
            allow_commands: a.allow_commands,
            key_file: a.key_file,
            tls_ca: a.tls_ca,
            lease: std::time::Duration::from_secs_f64(a.lease.max(0.03)),
        }),
        Command::Status(a) => Config::Status(StatusConfig {
            redis: a.redis,
            tls_ca: a.tls_ca,
            result: a.result,
            key_file: a.key_file,
            json: a.json,
        }),
    })
}

/// Whether the arguments (after the program name) name the `run` subcommand: its first
/// word that is not an option is `run`.
fn subcommand_is_run(mut args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.find(|a| !a.to_string_lossy().starts_with('-')).is_some_and(|a| a == "run")
}

/// Converts the run options into a [`RunConfig`]: splits the words at `:::` / `::::`.
fn run_config(a: RunArgs) -> Result<RunConfig, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = runcfg::parse_jobs(&a.jobs, cores)?;
    let (command, mut sources) = runcfg::split_sources(a.command)?;
    let files =
        a.arg_file.into_iter().map(|f| runcfg::Source { kind: runcfg::SourceKind::File(f), linked: false });
    sources.splice(0..0, files);
    if sources.is_empty() {
        sources.push(runcfg::Source { kind: runcfg::SourceKind::Stdin, linked: false });
    }
    let packing = match (a.x, a.m, a.max_args, a.max_replace_args) {
        (_, _, Some(0), _) => return Err("-n needs a number above 0".into()),
        (true, _, n, _) => runcfg::Packing::Context(n),
        (_, true, n, _) => runcfg::Packing::Multi(n),
        (_, _, Some(n), _) => runcfg::Packing::MaxArgs(n),
        (_, _, _, Some(n)) => runcfg::Packing::ExactArgs(n),
        _ => runcfg::Packing::One,
    };
    let delimiter = match (a.null, a.delimiter) {
        (true, _) => runcfg::Delimiter::Bytes(vec![0]),
        (_, Some(d)) => runcfg::Delimiter::Bytes(d.0),
        _ => runcfg::Delimiter::Newline,
    };
    if let Some(re) = &a.colsep {
        if regex::Regex::new(re).is_err() {
            return Err(format!("--colsep `{re}` is not a regular expression"));
        }
    }
    let output = match (a.line_buffer, a.ungroup) {
        // -k needs whole jobs held back: lines can only be printed as they come out of order.
        (true, _) if a.keep_order => runcfg::OutputMode::Group,
        (true, _) => runcfg::OutputMode::LineBuffer,
        (_, true) => runcfg::OutputMode::Ungroup,
        _ => runcfg::OutputMode::Group,
    };
    let resume = match (a.resume, a.resume_failed) {
        (true, _) => runcfg::Resume::Done,
        (_, true) => runcfg::Resume::Failed,
        _ => runcfg::Resume::No,
    };
    let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
    Ok(RunConfig {
        command,
        sources,
        link: a.link,
        delimiter,
        colsep: a.colsep,
        packing,
        jobs,
        keep_order: a.keep_order,
        timeout: a.timeout,
        retries: a.retries.max(1),
        retry_delay: a.retry_delay,
        halt: a.halt.unwrap_or_default(),
        delay: a.delay,
        dry_run: a.dry_run,
        tag: a.tagstring.or(a.tag.then(|| "{}".to_string())),
        output,
        joblog: a.joblog,
        resume,
        results: a.results,
        events: a.events,
        timeline: a.timeline,
        bar: a.bar || a.progress || a.eta,
        shell,
        memfree: a.memfree,
        pipe_block: a.pipe.then(|| a.block.unwrap_or(1 << 20).max(1)),
        redis: a.redis.map(|url| runcfg::Remote { url, queue: a.queue, tls_ca: a.tls_ca }),
        load: a.load.as_deref().map(|l| runcfg::parse_load(l, cores)).transpose()?,
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
    fn usage_errors_of_run_are_told_apart() {
        let words = |w: &[&str]| w.iter().map(std::ffi::OsString::from).collect::<Vec<_>>().into_iter();
        assert!(subcommand_is_run(words(&["run", "--bogus"])));
        assert!(subcommand_is_run(words(&["--verbose", "run"])));
        assert!(!subcommand_is_run(words(&["demo", "run"])));
        assert!(!subcommand_is_run(words(&[])));
    }

    #[test]
    fn seconds_are_validated() {
        assert!(parse_seconds("2").is_ok());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("nan").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
