//! Settings of `escala run` (the parsers of its option values are in `values.rs`).

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use super::values::*;

/// Settings of `escala run`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RunConfig {
    /// The command template's words (empty: each input is a command line).
    pub(crate) command: Vec<String>,
    /// Input sources in order (`:::`, `::::`, `-a`); none means stdin.
    pub(crate) sources: Vec<Source>,
    /// `--link`: zip all sources, the shorter ones wrapping around.
    pub(crate) link: bool,
    /// What separates input records.
    pub(crate) delimiter: Delimiter,
    /// `--colsep REGEX`: split each record into columns.
    pub(crate) colsep: Option<String>,
    /// Argument packing.
    pub(crate) packing: Packing,
    /// Job slots.
    pub(crate) jobs: usize,
    pub(crate) keep_order: bool,
    pub(crate) timeout: Option<Duration>,
    /// Runs in total for a failing job (GNU meaning); at least 1.
    pub(crate) retries: u32,
    /// First wait before a retry; doubled for each further retry.
    pub(crate) retry_delay: Option<Duration>,
    pub(crate) halt: Halt,
    pub(crate) delay: Option<Duration>,
    pub(crate) dry_run: bool,
    pub(crate) tag: Option<String>,
    pub(crate) output: OutputMode,
    pub(crate) joblog: Option<PathBuf>,
    pub(crate) resume: Resume,
    pub(crate) results: Option<PathBuf>,
    pub(crate) events: Option<PathBuf>,
    /// `--timeline FILE.svg`: a picture of the jobs per slot.
    pub(crate) timeline: Option<PathBuf>,
    pub(crate) bar: bool,
    /// The shell for command lines with shell syntax.
    pub(crate) shell: String,
    /// `--memfree`: bytes of memory that must be available to start a job.
    pub(crate) memfree: Option<u64>,
    /// `--load`: the 1-minute load average must be below this to start a job.
    pub(crate) load: Option<f64>,
    /// `--pipe`: stdin is cut into blocks of about this many bytes, one per job's stdin.
    pub(crate) pipe_block: Option<u64>,
    /// `--redis URL --queue Q`: the jobs run on `escala worker`s, not here.
    pub(crate) redis: Option<Remote>,
}

/// Where `--redis` sends the jobs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Remote {
    pub(crate) url: String,
    pub(crate) queue: String,
    /// `--tls-ca`: the CA file a rediss:// server's certificate is checked against.
    pub(crate) tls_ca: Option<std::path::PathBuf>,
}

/// One input source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Source {
    pub(crate) kind: SourceKind,
    /// `:::+` / `::::+`: linked to the previous source (the shortest decides the length).
    pub(crate) linked: bool,
}

/// Where a source's values come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SourceKind {
    /// `::: a b c`
    Args(Vec<String>),
    /// `:::: FILE`, `-a FILE`; `-` is stdin.
    File(PathBuf),
    /// No source given: stdin.
    Stdin,
}

/// What separates records in a file or stdin.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Delimiter {
    #[default]
    Newline,
    /// `-0` or `-d DELIM`.
    Bytes(Vec<u8>),
}

impl Delimiter {
    /// The bytes that end a record.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Delimiter::Newline => b"\n",
            Delimiter::Bytes(b) => b,
        }
    }
}

/// How many inputs go into one command line.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) enum Packing {
    /// One input record per job.
    #[default]
    One,
    /// `-n N`: up to N records per job.
    MaxArgs(usize),
    /// `-N N`: N records per job, `{1}`…`{N}` name them.
    ExactArgs(usize),
    /// `-X`: as many as fit (spread over the slots), the word around `{}` repeated.
    Context(Option<usize>),
    /// `-m`: as many as fit (spread over the slots), joined by spaces.
    Multi(Option<usize>),
}

/// Output handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum OutputMode {
    /// `--group`: a job's output is printed together when it ends.
    #[default]
    Group,
    /// `--line-buffer`: whole lines as they come.
    LineBuffer,
    /// `-u`: straight through.
    Ungroup,
}

/// `--resume` / `--resume-failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Resume {
    #[default]
    No,
    /// Skip jobs the joblog has.
    Done,
    /// Skip jobs the joblog has as succeeded; rerun the failed ones.
    Failed,
}

/// `--halt when,why=N|P%`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Halt {
    pub(crate) when: HaltWhen,
    pub(crate) on: HaltOn,
    pub(crate) limit: Limit,
}

/// Kill running jobs (`now`) or let them finish (`soon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum HaltWhen {
    #[default]
    Never,
    Soon,
    Now,
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum HaltOn {
    #[default]
    Fail,
    Success,
}

/// A count or a percentage of all jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Limit {
    Count(usize),
    Percent(f64),
}

impl Default for Limit {
    fn default() -> Self {
        Limit::Count(1)
    }
}
