//! `--joblog FILE` in GNU parallel's tab-separated format, and `--resume` / `--resume-failed`
//! from an existing one.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::config::run::Resume;

/// GNU parallel's header line.
pub(crate) const HEADER: &str = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

/// One finished job's line.
pub(crate) struct Entry<'a> {
    pub(crate) seq: usize,
    /// Where it ran: `:` for this machine (GNU parallel's word for it), `redis` for a job
    /// run by a worker.
    pub(crate) host: &'a str,
    /// Seconds since the Unix epoch.
    pub(crate) start: f64,
    pub(crate) runtime: f64,
    /// Bytes of output.
    pub(crate) receive: u64,
    pub(crate) exitval: i32,
    pub(crate) signal: i32,
    pub(crate) command: &'a str,
}

/// An open joblog: each line is written (one `write`) as soon as its job ends.
pub(crate) struct Joblog {
    file: File,
}

impl Joblog {
    /// Opens the joblog: appended to when resuming, truncated otherwise; the header is
    /// written to an empty file.
    pub(crate) fn open(path: &Path, resume: Resume) -> anyhow::Result<Joblog> {
        let mut opts = OpenOptions::new();
        opts.create(true);
        if resume == Resume::No {
            opts.write(true).truncate(true);
        } else {
            opts.append(true);
        }
        let mut file =
            opts.open(path).with_context(|| format!("cannot open the joblog {}", path.display()))?;
        if file.metadata().map(|m| m.len() == 0).unwrap_or(true) {
            file.write_all(HEADER.as_bytes()).context("cannot write the joblog")?;
        }
        Ok(Joblog { file })
    }

    /// Writes one job's line.
    pub(crate) fn write(&mut self, e: &Entry<'_>) -> anyhow::Result<()> {
        let line = format!(
            "{}\t{}\t{:.3}\t{:10.3}\t0\t{}\t{}\t{}\t{}\n",
            e.seq,
            e.host,
            e.start,
            e.runtime,
            e.receive,
            e.exitval,
            e.signal,
            e.command.replace('\n', " ")
        );
        self.file.write_all(line.as_bytes()).context("cannot write the joblog")
    }
}

/// The sequence numbers a previous run finished (`Resume::Done`) or finished well
/// (`Resume::Failed`): those jobs are skipped.
pub(crate) fn skip_set(path: &Path, resume: Resume) -> anyhow::Result<HashSet<usize>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read the joblog {}", path.display())),
    };
    let mut skip = HashSet::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(seq), Some(exit), Some(sig)) = (cols.first(), cols.get(6), cols.get(7)) else { continue };
        let Ok(seq) = seq.parse::<usize>() else { continue };
        let ok = exit.trim() == "0" && sig.trim() == "0";
        if resume == Resume::Done || ok {
            skip.insert(seq);
        }
    }
    Ok(skip)
}
