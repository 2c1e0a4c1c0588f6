//! Parsers for `escala run`'s option values (`-j`, `--halt`, seconds, sizes, `-d`) and the
//! split of its trailing words at `:::` / `::::`.

use std::path::PathBuf;
use std::time::Duration;

use super::run::{Halt, HaltOn, HaltWhen, Limit, Source, SourceKind};

/// Parses `--halt`: `never`, `0`, `1` (soon,fail=1), `2` (now,fail=1), or
/// `now|soon,fail|success=N|P%`.
pub(crate) fn parse_halt(s: &str) -> Result<Halt, String> {
    let bad = || format!("`{s}` is not a halt policy (try `now,fail=1` or `soon,fail=20%`)");
    match s {
        "never" | "0" => return Ok(Halt::default()),
        "1" => return Ok(Halt { when: HaltWhen::Soon, ..Halt::default() }),
        "2" => return Ok(Halt { when: HaltWhen::Now, ..Halt::default() }),
        _ => {}
    }
    let (when, rest) = s.split_once(',').ok_or_else(bad)?;
    let when = match when {
        "now" => HaltWhen::Now,
        "soon" => HaltWhen::Soon,
        _ => return Err(bad()),
    };
    let (on, n) = rest.split_once('=').ok_or_else(bad)?;
    let on = match on {
        "fail" => HaltOn::Fail,
        "success" => HaltOn::Success,
        _ => return Err(bad()),
    };
    let limit = match n.strip_suffix('%') {
        Some(p) => match p.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Limit::Percent(p),
            _ => return Err(bad()),
        },
        None => match n.parse::<usize>() {
            Ok(c) if c > 0 => Limit::Count(c),
            _ => return Err(bad()),
        },
    };
    Ok(Halt { when, on, limit })
}

/// Parses `-j`: `N`, `N%` of the cores, `+N` / `-N` relative to the cores, `0` (no limit).
pub(crate) fn parse_jobs(s: &str, cores: usize) -> Result<usize, String> {
    let bad = || format!("`{s}` is not a number of job slots (N, N%, +N, -N or 0)");
    let num = |t: &str| t.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(bad);
    let n = if let Some(p) = s.strip_suffix('%') {
        (cores as f64 * num(p)? / 100.0).floor()
    } else if let Some(p) = s.strip_prefix('+') {
        cores as f64 + num(p)?
    } else if let Some(p) = s.strip_prefix('-') {
        cores as f64 - num(p)?
    } else if num(s)? == 0.0 {
        return Ok(usize::MAX);
    } else {
        num(s)?.floor()
    };
    Ok((n as usize).max(1))
}

/// Parses a size: a number with an optional suffix, `k` `m` `g` `t` (powers of 1000) or
/// `K` `M` `G` `T` (powers of 1024), as GNU parallel's `--memfree`.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a size (like 500M or 2G)");
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let exp = match c.to_ascii_lowercase() {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                't' => 4,
                _ => return Err(bad()),
            };
            let base: f64 = if c.is_ascii_uppercase() { 1024.0 } else { 1000.0 };
            (&s[..i], base.powi(exp))
        }
        _ => (s, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok((v * mult) as u64),
        _ => Err(bad()),
    }
}

/// Parses `--load`: a load average, or `N%` of the cores.
pub(crate) fn parse_load(s: &str, cores: usize) -> Result<f64, String> {
    let bad = || format!("`{s}` is not a load (a number, or N% of the cores)");
    let (num, pct) = match s.strip_suffix('%') {
        Some(p) => (p, true),
        None => (s, false),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(if pct { v * cores as f64 / 100.0 } else { v }),
        _ => Err(bad()),
    }
}

/// Parses a number of seconds (`0.5`, `3`).
pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1e9).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("`{s}` is not a number of seconds")),
    }
}

/// The bytes of a `-d` delimiter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DelimiterBytes(pub(crate) Vec<u8>);

/// Parses `-d` for clap.
pub(crate) fn parse_delimiter_arg(s: &str) -> Result<DelimiterBytes, String> {
    parse_delimiter(s).map(DelimiterBytes)
}

/// Parses `-d`: a delimiter with C escapes (`\n`, `\t`, `\0`, `\\`).
pub(crate) fn parse_delimiter(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut b = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        out.push(match chars.next() {
            Some('n') => b'\n',
            Some('t') => b'\t',
            Some('r') => b'\r',
            Some('0') => 0,
            Some('\\') | None => b'\\',
            Some(o) => return Err(format!("unknown escape `\\{o}` in the delimiter")),
        });
    }
    if out.is_empty() {
        return Err("the delimiter is empty".into());
    }
    Ok(out)
}

/// Splits the trailing words into the command template and the `:::` / `::::` sources.
pub(crate) fn split_sources(words: Vec<String>) -> Result<(Vec<String>, Vec<Source>), String> {
    let mut command = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    // (is a file list, linked) of the source being filled.
    let mut current: Option<(bool, bool)> = None;
    let mut need_file = false;
    for w in words {
        let sep = match w.as_str() {
            ":::" => Some((false, false)),
            ":::+" => Some((false, true)),
            "::::" => Some((true, false)),
            "::::+" => Some((true, true)),
            _ => None,
        };
        match (sep, current) {
            (Some((files, linked)), _) => {
                if linked && sources.is_empty() && current.is_none() {
                    return Err(format!("`{w}` links to a previous input source, and there is none"));
                }
                current = Some((files, linked));
                need_file = files;
                if !files {
                    sources.push(Source { kind: SourceKind::Args(Vec::new()), linked });
                }
            }
            (None, None) => command.push(w),
            (None, Some((true, linked))) => {
                sources.push(Source { kind: SourceKind::File(PathBuf::from(w)), linked });
                need_file = false;
                // Further files after `::::` are sources of their own.
                current = Some((true, false));
            }
            (None, Some((false, _))) => {
                if let Some(Source { kind: SourceKind::Args(v), .. }) = sources.last_mut() {
                    v.push(w);
                }
            }
        }
    }
    if need_file {
        return Err("`::::` needs a file name after it".into());
    }
    Ok((command, sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_forms() {
        assert_eq!(parse_jobs("3", 2), Ok(3));
        assert_eq!(parse_jobs("50%", 4), Ok(2));
        assert_eq!(parse_jobs("+2", 2), Ok(4));
        assert_eq!(parse_jobs("-5", 2), Ok(1));
        assert_eq!(parse_jobs("0", 2), Ok(usize::MAX));
        assert!(parse_jobs("x", 2).is_err());
    }

    #[test]
    fn halt_forms() {
        let h = parse_halt("now,fail=1").unwrap();
        assert_eq!((h.when, h.on, h.limit), (HaltWhen::Now, HaltOn::Fail, Limit::Count(1)));
        let h = parse_halt("soon,success=50%").unwrap();
        assert_eq!((h.when, h.on, h.limit), (HaltWhen::Soon, HaltOn::Success, Limit::Percent(50.0)));
        assert!(parse_halt("later,fail=1").is_err());
        assert!(parse_halt("now,fail=0").is_err());
    }

    #[test]
    fn sources_split_at_the_separators() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (cmd, src) =
            split_sources(w(&["echo", "{}", ":::", "a", "b", "::::", "f", "g", ":::+", "1"])).unwrap();
        assert_eq!(cmd, w(&["echo", "{}"]));
        let kinds: Vec<_> = src.iter().map(|s| (s.kind.clone(), s.linked)).collect();
        assert_eq!(
            kinds,
            vec![
                (SourceKind::Args(w(&["a", "b"])), false),
                (SourceKind::File("f".into()), false),
                (SourceKind::File("g".into()), false),
                (SourceKind::Args(w(&["1"])), true),
            ]
        );
        assert!(split_sources(w(&["echo", "::::"])).is_err());
        assert!(split_sources(w(&["echo", ":::+", "a"])).is_err());
    }

    #[test]
    fn sizes_and_loads() {
        assert_eq!(parse_size("1k"), Ok(1000));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("12q").is_err());
        assert_eq!(parse_load("150%", 2), Ok(3.0));
        assert_eq!(parse_load("1.5", 2), Ok(1.5));
        assert!(parse_load("high", 2).is_err());
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter("\\n"), Ok(b"\n".to_vec()));
        assert_eq!(parse_delimiter(","), Ok(b",".to_vec()));
        assert!(parse_delimiter("").is_err());
    }
}
