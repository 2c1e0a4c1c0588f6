//! The services file: TOML read into [`Service`]s. Every error names the file, the line and
//! column, and the key (`services.web.workers`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use escala::supervise::{Backoff, CrashLoop, LogFile, Output, Ready, Restart, Service};
use serde::Deserialize;
use toml::Spanned;

/// What the file asks for.
#[derive(Debug)]
pub(crate) struct ServicesFile {
    pub(crate) services: Vec<Service>,
    /// Stop everything (and exit non-zero) when a service fails.
    pub(crate) exit_on_failure: bool,
}

/// A config error: `file:line:column: key: message`.
#[derive(Debug)]
pub(crate) struct FileError(String);

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FileError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    services: BTreeMap<String, Spanned<RawService>>,
    #[serde(default)]
    exit_on_failure: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    command: Spanned<toml::Value>,
    workers: Option<Spanned<i64>>,
    restart: Option<Spanned<String>>,
    stop_signal: Option<Spanned<String>>,
    stop_timeout: Option<Spanned<String>>,
    backoff: Option<RawBackoff>,
    crash_loop: Option<RawCrashLoop>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    ready: Option<Spanned<String>>,
    log: Option<RawLog>,
    depends_on: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    initial: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
    reset_after: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    file: PathBuf,
    max_size: Option<Spanned<toml::Value>>,
    keep: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrashLoop {
    max: Option<Spanned<i64>>,
    window: Option<Spanned<String>>,
}

/// Reads and checks the file.
pub(crate) fn load(path: &Path) -> Result<ServicesFile, FileError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| FileError(format!("{}: cannot read the services file: {e}", path.display())))?;
    parse(path, &src)
}

/// Parses `src` (read from `path`, which errors name).
pub(crate) fn parse(path: &Path, src: &str) -> Result<ServicesFile, FileError> {
    let at = Locator { path, src };
    let raw: RawFile = toml::from_str(src).map_err(|e| at.serde(&e))?;
    if raw.services.is_empty() {
        return Err(FileError(format!("{}: no services (add a `[services.NAME]` table)", path.display())));
    }
    // Paths in the file are relative to the file's directory.
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut services = Vec::new();
    for (name, raw) in &raw.services {
        services.push(service(&at, name, raw.get_ref(), &base)?);
    }
    check_dependencies(&at, &raw.services)?;
    Ok(ServicesFile { services, exit_on_failure: raw.exit_on_failure })
}

fn service(at: &Locator<'_>, name: &str, raw: &RawService, base: &Path) -> Result<Service, FileError> {
    let key = |k: &str| format!("services.{name}.{k}");
    let mut svc = match raw.command.get_ref() {
        toml::Value::String(line) if !line.trim().is_empty() => Service::shell(name, line),
        toml::Value::Array(items) if !items.is_empty() => {
            let argv: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
            let argv =
                argv.ok_or_else(|| at.error(&raw.command, &key("command"), "every item must be a string"))?;
            Service::command(name, argv)
        }
        _ => {
            return Err(at.error(
                &raw.command,
                &key("command"),
                "must be a non-empty string (run by the shell) or array (program and arguments)",
            ));
        }
    };
    if let Some(w) = &raw.workers {
        let n = usize::try_from(*w.get_ref())
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| at.error(w, &key("workers"), "must be between 1 and 1024"))?;
        svc = svc.workers(n);
    }
    if let Some(r) = &raw.restart {
        svc = svc.restart(Restart::from_str(r.get_ref()).map_err(|m| at.error(r, &key("restart"), &m))?);
    }
    if let Some(s) = &raw.stop_signal {
        let text = s.get_ref().to_ascii_uppercase();
        let full = if text.starts_with("SIG") { text } else { format!("SIG{text}") };
        let sig = nix::sys::signal::Signal::from_str(&full).map_err(|_| {
            at.error(s, &key("stop_signal"), &format!("`{}` is not a signal name", s.get_ref()))
        })?;
        svc = svc.stop_signal(sig);
    }
    if let Some(t) = &raw.stop_timeout {
        svc = svc.stop_timeout(at.duration(t, &key("stop_timeout"))?);
    }
    if let Some(b) = &raw.backoff {
        let mut backoff = Backoff::default();
        if let Some(t) = &b.initial {
            backoff.initial = at.duration(t, &key("backoff.initial"))?;
        }
        if let Some(t) = &b.max {
            backoff.max = at.duration(t, &key("backoff.max"))?;
        }
        if let Some(t) = &b.reset_after {
            backoff.reset_after = at.duration(t, &key("backoff.reset_after"))?;
        }
        svc = svc.backoff(backoff);
    }
    if let Some(c) = &raw.crash_loop {
        let mut limit = CrashLoop::default();
        if let Some(m) = &c.max {
            limit.max = u32::try_from(*m.get_ref())
                .map_err(|_| at.error(m, &key("crash_loop.max"), "must be 0 (no limit) or more"))?;
        }
        if let Some(t) = &c.window {
            limit.window = at.duration(t, &key("crash_loop.window"))?;
        }
        svc = svc.crash_loop(limit);
    }
    for (k, v) in &raw.env {
        svc = svc.env(k, v);
    }
    if let Some(dir) = &raw.cwd {
        svc = svc.cwd(base.join(dir));
    }
    if let Some(r) = &raw.ready {
        svc = svc.ready(match r.get_ref().as_str() {
            "started" => Ready::Started,
            "notify" => Ready::Notify,
            other => {
                return Err(at.error(r, &key("ready"), &format!("`{other}` is not `started` or `notify`")));
            }
        });
    }
    if let Some(log) = &raw.log {
        let mut file = LogFile::new(base.join(&log.file));
        if let Some(size) = &log.max_size {
            file = file.max_bytes(bytes(size).map_err(|m| at.error(size, &key("log.max_size"), &m))?);
        }
        if let Some(keep) = &log.keep {
            let n = usize::try_from(*keep.get_ref())
                .map_err(|_| at.error(keep, &key("log.keep"), "must be 0 or more"))?;
            file = file.keep(n);
        }
        svc = svc.output(Output::File(file));
    }
    Ok(svc.depends_on(raw.depends_on.iter().flat_map(|d| d.get_ref().iter().cloned())))
}

/// A size: a number of bytes, or a string such as `"512K"`, `"10MB"` or `"1GiB"`.
fn bytes(v: &Spanned<toml::Value>) -> Result<u64, String> {
    let bad = || "must be a number of bytes or a size such as \"10MB\"".to_string();
    let n = match v.get_ref() {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| bad())?,
        toml::Value::String(s) => {
            let s = s.trim();
            let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(at);
            let num: u64 = num.parse().map_err(|_| bad())?;
            let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
                "" | "B" => 1,
                "K" | "KB" | "KIB" => 1 << 10,
                "M" | "MB" | "MIB" => 1 << 20,
                "G" | "GB" | "GIB" => 1 << 30,
                _ => return Err(bad()),
            };
            num.checked_mul(mult).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    if n == 0 { Err("must be more than 0 bytes".into()) } else { Ok(n) }
}

/// Unknown services in `depends_on`, and dependency cycles.
fn check_dependencies(
    at: &Locator<'_>,
    services: &BTreeMap<String, Spanned<RawService>>,
) -> Result<(), FileError> {
    let deps_of =
        |n: &str| services[n].get_ref().depends_on.as_ref().map_or(&[][..], |d| d.get_ref().as_slice());
    for (name, raw) in services {
        let Some(deps) = &raw.get_ref().depends_on else { continue };
        if let Some(d) = deps.get_ref().iter().find(|d| !services.contains_key(*d)) {
            let key = format!("services.{name}.depends_on");
            return Err(at.error(deps, &key, &format!("`{d}` is not a service in this file")));
        }
    }
    let mut left: Vec<&String> = services.keys().collect();
    loop {
        let before = left.len();
        let still = left.clone();
        left.retain(|n| deps_of(n).iter().any(|d| still.contains(&d)));
        if left.is_empty() {
            return Ok(());
        }
        if left.len() == before {
            let names: Vec<&str> = left.iter().map(|s| s.as_str()).collect();
            let first = left[0];
            let key = format!("services.{first}.depends_on");
            let msg = format!("circular dependency among {}", names.join(", "));
            let deps =
                services[first].get_ref().depends_on.as_ref().expect("a service in a cycle has dependencies");
            return Err(at.error(deps, &key, &msg));
        }
    }
}

/// Turns byte offsets into `file:line:column`.
struct Locator<'a> {
    path: &'a Path,
    src: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.src[..offset.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
        (line, col)
    }

    fn error<T>(&self, at: &Spanned<T>, key: &str, msg: &str) -> FileError {
        let (line, col) = self.line_col(at.span().start);
        FileError(format!("{}:{line}:{col}: {key}: {msg}", self.path.display()))
    }

    fn duration(&self, s: &Spanned<String>, key: &str) -> Result<Duration, FileError> {
        humantime::parse_duration(s.get_ref()).map_err(|e| {
            self.error(s, key, &format!("`{}` is not a duration such as \"10s\" ({e})", s.get_ref()))
        })
    }

    /// A TOML or type error: the key comes from the text at the error's position.
    fn serde(&self, e: &toml::de::Error) -> FileError {
        let msg = e.message().trim();
        let Some(span) = e.span() else {
            return FileError(format!("{}: {msg}", self.path.display()));
        };
        let (line, col) = self.line_col(span.start);
        let mut key = self.key_at(span.start);
        let named = msg.strip_prefix("missing field `").or_else(|| msg.strip_prefix("unknown field `"));
        if let Some(field) = named.and_then(|m| m.split('`').next()) {
            key = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
        }
        let key = if key.is_empty() { String::new() } else { format!("{key}: ") };
        FileError(format!("{}:{line}:{col}: {key}{msg}", self.path.display()))
    }

    /// The dotted key at `offset`: the last `[table]` header above it, then the `key =`
    /// before it on its own line.
    fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.src.len());
        let start = self.src[..offset].rfind('\n').map_or(0, |i| i + 1);
        let header = self.src[..start]
            .lines()
            .chain(std::iter::once(self.src[start..].lines().next().unwrap_or("")))
            .filter_map(|l| l.trim().strip_prefix('[').and_then(|h| h.split(']').next()))
            .next_back()
            .map(|h| h.trim().trim_matches('[').to_string())
            .unwrap_or_default();
        let here = &self.src[start..offset];
        let mut parts: Vec<String> = Vec::new();
        if !header.is_empty() {
            parts.push(header);
        }
        // `a = { b = <here>` gives `a.b`; `a = <here>` gives `a`.
        for piece in here.split('=').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            let k = piece.rsplit(['{', ',', ' ', '\t']).find(|s| !s.is_empty()).unwrap_or("");
            if !k.is_empty() && !k.starts_with('[') {
                parts.push(k.trim_matches('"').to_string());
            }
        }
        parts.join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        parse(Path::new("s.toml"), src).unwrap_err().to_string()
    }

    #[test]
    fn the_product_example_parses() {
        let src = r#"
[services.web]
command = "python3 -m http.server 8000"
workers = 2
restart = "always"
stop_signal = "TERM"
stop_timeout = "10s"
backoff = { initial = "100ms", max = "15s", reset_after = "30s" }
crash_loop = { max = 5, window = "10s" }
env = { PORT = "8000" }
cwd = "."
ready = "started"
depends_on = []
log = { file = "web.log", max_size = "1MB", keep = 2 }
"#;
        let f = parse(Path::new("s.toml"), src).unwrap();
        assert_eq!(f.services[0].name(), "web");
        assert_eq!(f.services[0].worker_count(), 2);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        assert_eq!(
            err("[services.web]\ncommand = \"x\"\nworkers = \"two\"\n"),
            "s.toml:3:11: services.web.workers: invalid type: string \"two\", expected i64"
        );
        assert_eq!(
            err("[services.web]\ncommand = \"x\"\nbackoff = { initial = \"soon\" }\n"),
            "s.toml:3:23: services.web.backoff.initial: `soon` is not a duration such as \"10s\" (expected number at 0)"
        );
        assert_eq!(
            err("[services.web]\nworkers = 2\n"),
            "s.toml:1:1: services.web.command: missing field `command`"
        );
        assert!(
            err("[services.web]\ncommand = \"x\"\nwrkers = 2\n")
                .starts_with("s.toml:3:1: services.web.wrkers: unknown field `wrkers`")
        );
        assert_eq!(
            err("[services.web]\ncommand = \"x\"\nrestart = \"sometimes\"\n"),
            "s.toml:3:11: services.web.restart: `sometimes` is not a restart policy (always, on-failure, never)"
        );
        assert_eq!(
            err("[services.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n"),
            "s.toml:3:14: services.a.depends_on: `b` is not a service in this file"
        );
        assert_eq!(
            err(
                "[services.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n[services.b]\ncommand = \"x\"\ndepends_on = [\"a\"]\n"
            ),
            "s.toml:3:14: services.a.depends_on: circular dependency among a, b"
        );
        assert_eq!(
            err("[services.a]\ncommand = \"x\"\nstop_signal = \"NOPE\"\n"),
            "s.toml:3:15: services.a.stop_signal: `NOPE` is not a signal name"
        );
        assert!(err("[services.a\ncommand = 1\n").starts_with("s.toml:1:"));
        assert_eq!(
            err("[services.a]\ncommand = \"x\"\nlog = { file = \"a.log\", max_size = \"big\" }\n"),
            "s.toml:3:36: services.a.log.max_size: must be a number of bytes or a size such as \"10MB\""
        );
    }
}
