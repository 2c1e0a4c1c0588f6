//! Input sources: reading `:::` / `::::` / `-a` / stdin, combining several sources (cartesian
//! product, `--link`, `:::+`), `--colsep` columns, and packing inputs into jobs
//! (`-n`, `-N`, `-X`, `-m`).
//!
//! Where GNU parallel reads lazily, so does escala: when the first source (the one that
//! varies slowest) is stdin or a file, [`stream`] reads it on a thread while the jobs run,
//! so the first job starts before end of file and an endless input (`yes |`, `tail -f`)
//! works with bounded memory. The other sources are read whole first. Everything that needs
//! the number of jobs up front (`{##}`, `-X`/`-m`, `--link`, `--halt …=P%`, `--bar`) reads
//! every input first ([`job_args`]).

use std::io::Read;

use anyhow::Context;

use crate::config::run::{Delimiter, HaltWhen, Limit, Packing, RunConfig, SourceKind};

/// Longest command line that `-X` / `-m` build (bytes of arguments).
const MAX_LINE: usize = 128 * 1024;

/// Bytes read from a streamed source at once; one read's records travel together.
const READ_CHUNK: usize = 16 * 1024;

/// Batches of jobs a streamed source may hold ready before its reader waits.
const STREAM_BATCHES: usize = 4;

/// Reads every source and returns the argument lists of all jobs, in order.
pub(crate) fn job_args(cfg: &RunConfig) -> anyhow::Result<Vec<Vec<String>>> {
    let mut stdin_used = false;
    let mut values = Vec::with_capacity(cfg.sources.len());
    for s in &cfg.sources {
        values.push(read_source(&s.kind, &cfg.delimiter, &mut stdin_used)?);
    }
    let linked: Vec<bool> = cfg.sources.iter().map(|s| s.linked).collect();
    let mut records = combine(values, &linked, cfg.link);
    if let Some(re) = colsep(cfg)? {
        for r in &mut records {
            *r = split_columns(&re, r);
        }
    }
    Ok(pack(records, cfg.packing, cfg.jobs))
}

fn read_source(kind: &SourceKind, delim: &Delimiter, stdin_used: &mut bool) -> anyhow::Result<Vec<String>> {
    Ok(match kind {
        SourceKind::Args(a) => a.clone(),
        SourceKind::File(p) if p.as_os_str() == "-" => read_stdin(delim, stdin_used)?,
        SourceKind::Stdin => read_stdin(delim, stdin_used)?,
        SourceKind::File(p) => {
            let bytes =
                std::fs::read(p).with_context(|| format!("cannot read the input file {}", p.display()))?;
            split(&bytes, delim)
        }
    })
}

fn colsep(cfg: &RunConfig) -> anyhow::Result<Option<regex::Regex>> {
    cfg.colsep.as_deref().map(|re| regex::Regex::new(re).context("bad --colsep")).transpose()
}

fn split_columns(re: &regex::Regex, record: &[String]) -> Vec<String> {
    record.iter().flat_map(|v| re.split(v).map(str::to_string).collect::<Vec<_>>()).collect()
}

/// Whether the inputs can be streamed: the first source is stdin or a file, and nothing needs
/// the number of jobs before the first starts (`uses_total`: the template asks for `{##}`).
pub(crate) fn can_stream(cfg: &RunConfig, uses_total: bool) -> bool {
    let first_is_read = matches!(cfg.sources.first(), Some(s) if !matches!(s.kind, SourceKind::Args(_)));
    let linked_to_first = cfg.link || cfg.sources.get(1).is_some_and(|s| s.linked);
    let percent = cfg.halt.when != HaltWhen::Never && matches!(cfg.halt.limit, Limit::Percent(_));
    let packing = matches!(cfg.packing, Packing::One | Packing::MaxArgs(_) | Packing::ExactArgs(_));
    first_is_read
        && !linked_to_first
        && !percent
        && packing
        && !uses_total
        && !cfg.bar
        && !cfg.dry_run
        && cfg.redis.is_none()
        && cfg.pipe_block.is_none()
}

/// What a streamed source sends: the argument lists of the next jobs, or why it stopped.
pub(crate) type Batch = anyhow::Result<Vec<Vec<String>>>;

/// Reads the first source on a thread, while the jobs run, and sends the jobs' argument
/// lists in batches (at most [`STREAM_BATCHES`] waiting); the other sources are read here
/// first. `wake` runs when a batch arrives in an empty channel and when the input ends.
/// The channel disconnects after the last batch.
pub(crate) fn stream(
    cfg: &RunConfig,
    wake: impl Fn() + Send + 'static,
) -> anyhow::Result<crossbeam_channel::Receiver<Batch>> {
    let first = cfg.sources.first().map(|s| s.kind.clone()).unwrap_or(SourceKind::Stdin);
    let mut stdin_used =
        matches!(&first, SourceKind::Stdin) || matches!(&first, SourceKind::File(p) if p.as_os_str() == "-");
    let src: Box<dyn Read + Send> = match &first {
        SourceKind::File(p) if p.as_os_str() != "-" => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot read the input file {}", p.display()))?,
        ),
        _ => Box::new(std::io::stdin()),
    };
    let mut others = Vec::new();
    for s in cfg.sources.iter().skip(1) {
        others.push(read_source(&s.kind, &cfg.delimiter, &mut stdin_used)?);
    }
    let linked: Vec<bool> = cfg.sources.iter().skip(1).map(|s| s.linked).collect();
    // Every combination of the other sources, for each record of the first.
    let rest = combine(others, &linked, false);
    let colsep = colsep(cfg)?;
    let per_job = match cfg.packing {
        Packing::MaxArgs(n) | Packing::ExactArgs(n) => n,
        _ => 1,
    };
    let no_args = cfg.packing == Packing::ExactArgs(0);
    let delim = cfg.delimiter.bytes().to_vec();
    let (tx, rx) = crossbeam_channel::bounded::<Batch>(STREAM_BATCHES);
    std::thread::Builder::new()
        .name("escala-inputs".into())
        .spawn(move || {
            let send = |b: Batch| {
                let sent = tx.send(b).is_ok();
                // Wake only a scheduler that may have found the channel empty.
                if sent && tx.len() <= 1 {
                    wake();
                }
                sent
            };
            let mut packed: Vec<String> = Vec::new();
            let mut in_job = 0;
            let read = read_records(src, &delim, |values| {
                let mut jobs = Vec::new();
                for v in values {
                    for r in &rest {
                        let mut rec = Vec::with_capacity(1 + r.len());
                        rec.push(v.clone());
                        rec.extend(r.iter().cloned());
                        let rec = match &colsep {
                            Some(re) => split_columns(re, &rec),
                            None => rec,
                        };
                        if !no_args {
                            packed.extend(rec);
                        }
                        in_job += 1;
                        if in_job == per_job.max(1) {
                            jobs.push(std::mem::take(&mut packed));
                            in_job = 0;
                        }
                    }
                }
                jobs.is_empty() || send(Ok(jobs))
            });
            let last = match read {
                Ok(()) if in_job > 0 => send(Ok(vec![packed])),
                Ok(()) => true,
                Err(e) => send(Err(anyhow::Error::from(e).context("cannot read the inputs"))),
            };
            drop(tx);
            if last {
                wake();
            }
        })
        .context("cannot start the thread that reads the inputs")?;
    Ok(rx)
}

/// Reads `src` a chunk at a time and hands `emit` the records of each chunk that end in
/// `delim` (so a record never waits for more input than itself); the rest of the input ends
/// the last record. Stops early when `emit` returns false.
fn read_records(
    mut src: impl Read,
    delim: &[u8],
    mut emit: impl FnMut(Vec<String>) -> bool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    // Bytes of a record not ended yet, and how far they have been searched for `delim`.
    let mut partial: Vec<u8> = Vec::new();
    let mut searched = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        partial.extend_from_slice(&buf[..n]);
        let mut records = Vec::new();
        let mut start = 0;
        let mut from = searched;
        while let Some(i) = partial[from..].windows(delim.len()).position(|w| w == delim) {
            let end = from + i;
            records.push(String::from_utf8_lossy(&partial[start..end]).into_owned());
            start = end + delim.len();
            from = start;
        }
        partial.drain(..start);
        // A delimiter may straddle two reads: search its first bytes again next time.
        searched = partial.len().saturating_sub(delim.len() - 1);
        if !records.is_empty() && !emit(records) {
            return Ok(());
        }
    }
    if !partial.is_empty() {
        emit(vec![String::from_utf8_lossy(&partial).into_owned()]);
    }
    Ok(())
}

/// `--pipe`: stdin cut into blocks of at most `block` bytes at line ends (a longer line is a
/// block of its own), as GNU parallel does.
pub(crate) fn pipe_blocks(block: u64) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes).context("cannot read stdin")?;
    Ok(cut_blocks(&bytes, block as usize))
}

fn cut_blocks(bytes: &[u8], block: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let limit = start.saturating_add(block);
        let end = if limit >= bytes.len() {
            bytes.len()
        } else {
            match bytes[start..limit].iter().rposition(|&b| b == b'\n') {
                Some(i) => start + i + 1,
                None => {
                    bytes[limit..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| limit + i + 1)
                }
            }
        };
        out.push(bytes[start..end].to_vec());
        start = end;
    }
    out
}

fn read_stdin(delim: &Delimiter, used: &mut bool) -> anyhow::Result<Vec<String>> {
    if std::mem::replace(used, true) {
        return Ok(Vec::new());
    }
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes).context("cannot read the inputs from stdin")?;
    Ok(split(&bytes, delim))
}

/// Splits at the delimiter; a trailing delimiter ends the last record (as a streamed
/// source does: one splitter, [`read_records`], serves both).
pub(crate) fn split(bytes: &[u8], delim: &Delimiter) -> Vec<String> {
    let mut out = Vec::new();
    // Reading from memory cannot fail.
    let _ = read_records(bytes, delim.bytes(), |records| {
        out.extend(records);
        true
    });
    out
}

/// Combines sources into records. With `link` all are zipped and shorter ones wrap; a
/// `linked` source is zipped with the one before (the shortest decides); the groups form a
/// cartesian product, the last varying fastest.
pub(crate) fn combine(values: Vec<Vec<String>>, linked: &[bool], link: bool) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<Vec<String>>> = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 && (link || linked[i]) {
            if let Some(g) = groups.last_mut() {
                g.push(v);
                continue;
            }
        }
        groups.push(vec![v]);
    }
    // Each group becomes a list of partial records.
    let zipped: Vec<Vec<Vec<String>>> = groups
        .into_iter()
        .map(|g| {
            let len = if link {
                g.iter().map(Vec::len).max().unwrap_or(0)
            } else {
                g.iter().map(Vec::len).min().unwrap_or(0)
            };
            let all_present = g.iter().all(|v| !v.is_empty());
            (0..if all_present { len } else { 0 })
                .map(|k| g.iter().map(|v| v[k % v.len()].clone()).collect())
                .collect()
        })
        .collect();
    let mut records: Vec<Vec<String>> = vec![Vec::new()];
    for g in zipped {
        let mut next = Vec::with_capacity(records.len() * g.len());
        for r in &records {
            for part in &g {
                let mut rec = r.clone();
                rec.extend(part.iter().cloned());
                next.push(rec);
            }
        }
        records = next;
    }
    records
}

/// Packs records into jobs' argument lists.
pub(crate) fn pack(records: Vec<Vec<String>>, packing: Packing, jobs: usize) -> Vec<Vec<String>> {
    let chunk = |n: usize| -> Vec<Vec<String>> { records.chunks(n).map(|c| c.concat()).collect() };
    match packing {
        Packing::One => records,
        // -N0: one input per job, none of it on the command line.
        Packing::ExactArgs(0) => records.iter().map(|_| Vec::new()).collect(),
        Packing::MaxArgs(n) | Packing::ExactArgs(n) => chunk(n),
        Packing::Context(max) | Packing::Multi(max) => {
            // Spread over the slots like GNU parallel, within the line limit and -n.
            let per_slot = records.len().div_ceil(jobs.clamp(1, records.len().max(1)));
            let n = max.unwrap_or(usize::MAX).min(per_slot).max(1);
            let mut out: Vec<Vec<String>> = Vec::new();
            let mut len = 0;
            for r in records {
                let size: usize = r.iter().map(|a| a.len() + 1).sum();
                match out.last_mut() {
                    Some(last) if last.len() < n && len + size <= MAX_LINE => last.extend(r),
                    _ => {
                        len = 0;
                        out.push(r);
                    }
                }
                len += size;
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn product_link_and_linked_sources() {
        let p = combine(vec![s(&["a", "b"]), s(&["1", "2"])], &[false, false], false);
        assert_eq!(p, vec![s(&["a", "1"]), s(&["a", "2"]), s(&["b", "1"]), s(&["b", "2"])]);
        let l = combine(vec![s(&["a", "b", "c"]), s(&["1", "2"])], &[false, false], true);
        assert_eq!(l, vec![s(&["a", "1"]), s(&["b", "2"]), s(&["c", "1"])]);
        let plus = combine(vec![s(&["a", "b", "c"]), s(&["1", "2"])], &[false, true], false);
        assert_eq!(plus, vec![s(&["a", "1"]), s(&["b", "2"])]);
    }

    #[test]
    fn blocks_end_at_line_ends_like_gnu_parallels() {
        let seq: Vec<u8> = (1..=10).map(|i| format!("{i}\n")).collect::<String>().into_bytes();
        let lines: Vec<usize> =
            cut_blocks(&seq, 10).iter().map(|b| b.iter().filter(|&&c| c == b'\n').count()).collect();
        assert_eq!(lines, [5, 4, 1]);
        assert_eq!(cut_blocks(b"long line\nx\n", 3), [b"long line\n".to_vec(), b"x\n".to_vec()]);
    }

    #[test]
    fn streamed_records_match_split_whatever_the_read_sizes() {
        /// Gives out its bytes `step` at a time.
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(self.0.len()).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let cases: [(&[u8], &[u8], &[&str]); 5] = [
            (b"a\n\nbc\nd", b"\n", &["a", "", "bc", "d"]),
            (b"a\n", b"\n", &["a"]),
            (b"", b"\n", &[]),
            (b"x--y----z--", b"--", &["x", "y", "", "z"]),
            (b"one\0two\0", b"\0", &["one", "two"]),
        ];
        for (input, delim, expected) in cases {
            let expected = s(expected);
            assert_eq!(split(input, &Delimiter::Bytes(delim.to_vec())), expected, "{input:?} whole");
            for step in 1..=4 {
                let mut got = Vec::new();
                read_records(Trickle(input, step), delim, |r| {
                    got.extend(r);
                    true
                })
                .unwrap();
                assert_eq!(got, expected, "{input:?} by {step}");
            }
        }
    }

    #[test]
    fn split_and_pack() {
        assert_eq!(split(b"a\nb\n", &Delimiter::Newline), s(&["a", "b"]));
        assert_eq!(split(b"a\0b", &Delimiter::Bytes(vec![0])), s(&["a", "b"]));
        let recs: Vec<Vec<String>> = ["1", "2", "3", "4", "5"].iter().map(|x| s(&[x])).collect();
        assert_eq!(pack(recs.clone(), Packing::Context(None), 2), vec![s(&["1", "2", "3"]), s(&["4", "5"])]);
        assert_eq!(pack(recs, Packing::MaxArgs(2), 2).len(), 3);
    }
}
