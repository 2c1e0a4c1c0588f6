//! Input sources: reading `:::` / `::::` / `-a` / stdin, combining several sources (cartesian
//! product, `--link`, `:::+`), `--colsep` columns, and packing inputs into jobs
//! (`-n`, `-N`, `-X`, `-m`).

use std::io::Read;

use anyhow::Context;

use crate::config::run::{Delimiter, Packing, RunConfig, SourceKind};

/// Longest command line that `-X` / `-m` build (bytes of arguments).
const MAX_LINE: usize = 128 * 1024;

/// Reads every source and returns the argument lists of all jobs, in order.
pub(crate) fn job_args(cfg: &RunConfig) -> anyhow::Result<Vec<Vec<String>>> {
    let mut stdin_used = false;
    let mut values = Vec::with_capacity(cfg.sources.len());
    for s in &cfg.sources {
        let v = match &s.kind {
            SourceKind::Args(a) => a.clone(),
            SourceKind::File(p) if p.as_os_str() == "-" => read_stdin(&cfg.delimiter, &mut stdin_used)?,
            SourceKind::Stdin => read_stdin(&cfg.delimiter, &mut stdin_used)?,
            SourceKind::File(p) => {
                let bytes = std::fs::read(p)
                    .with_context(|| format!("cannot read the input file {}", p.display()))?;
                split(&bytes, &cfg.delimiter)
            }
        };
        values.push(v);
    }
    let linked: Vec<bool> = cfg.sources.iter().map(|s| s.linked).collect();
    let mut records = combine(values, &linked, cfg.link);
    if let Some(re) = &cfg.colsep {
        let re = regex::Regex::new(re).context("bad --colsep")?;
        for r in &mut records {
            *r = r.iter().flat_map(|v| re.split(v).map(str::to_string).collect::<Vec<_>>()).collect();
        }
    }
    Ok(pack(records, cfg.packing, cfg.jobs))
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

/// Splits at the delimiter; a trailing delimiter ends the last record.
pub(crate) fn split(bytes: &[u8], delim: &Delimiter) -> Vec<String> {
    let d: &[u8] = match delim {
        Delimiter::Newline => b"\n",
        Delimiter::Bytes(b) => b,
    };
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = rest.windows(d.len()).position(|w| w == d);
        let (rec, tail) = match end {
            Some(i) => (&rest[..i], &rest[i + d.len()..]),
            None => (rest, &[][..]),
        };
        out.push(String::from_utf8_lossy(rec).into_owned());
        rest = tail;
    }
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
    fn split_and_pack() {
        assert_eq!(split(b"a\nb\n", &Delimiter::Newline), s(&["a", "b"]));
        assert_eq!(split(b"a\0b", &Delimiter::Bytes(vec![0])), s(&["a", "b"]));
        let recs: Vec<Vec<String>> = ["1", "2", "3", "4", "5"].iter().map(|x| s(&[x])).collect();
        assert_eq!(pack(recs.clone(), Packing::Context(None), 2), vec![s(&["1", "2", "3"]), s(&["4", "5"])]);
        assert_eq!(pack(recs, Packing::MaxArgs(2), 2).len(), 3);
    }
}
