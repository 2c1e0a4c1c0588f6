//! The control socket of a running `escala serve`: a Unix socket only its owner can use
//! (0600 in a 0700 directory). One request line per connection — `status` or
//! `restart NAME` — answered with one JSON document.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use escala::supervise::{ServiceStatus, Supervisor};

use crate::config::ServeConfig;

/// The socket: `--socket`, or one per services file under the runtime directory.
pub(crate) fn socket_path(c: &ServeConfig) -> anyhow::Result<PathBuf> {
    if let Some(s) = &c.socket {
        return Ok(s.clone());
    }
    let file = std::fs::canonicalize(&c.file)
        .with_context(|| format!("{}: cannot find the services file", c.file.display()))?;
    // FNV-1a: stable across builds, so the server and a client agree.
    let hash = file
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3));
    let base = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let uid = rustix::process::getuid().as_raw();
    Ok(base.join(format!("escala-serve-{uid}")).join(format!("{hash:016x}.sock")))
}

/// Binds the control socket at `path` (owner-only from the start: bound under umask 077,
/// before any worker runs), refusing one that a live server still answers on.
pub(crate) fn bind(path: &Path) -> anyhow::Result<Server> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    if UnixStream::connect(path).is_ok() {
        bail!("{}: another `escala serve` already answers on this control socket", path.display());
    }
    let _ = std::fs::remove_file(path);
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(Server { path: path.to_path_buf(), listener })
}

impl Server {
    /// Answers requests about `sup` on a thread.
    pub(crate) fn answer(&self, sup: Arc<Supervisor>) -> anyhow::Result<()> {
        let l = self.listener.try_clone()?;
        std::thread::Builder::new().name("escala-control".into()).spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { break };
                let _ = answer(conn, &sup);
            }
        })?;
        Ok(())
    }
}

/// The running control socket.
pub(crate) struct Server {
    path: PathBuf,
    listener: UnixListener,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn answer(conn: UnixStream, sup: &Supervisor) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(conn.try_clone()?).take(4096).read_line(&mut line)?;
    let reply = match line.trim().split_once(' ').unwrap_or((line.trim(), "")) {
        ("status", _) => serde_json::json!({ "services": sup.status() }),
        ("restart", name) => match sup.restart(name) {
            Ok(()) => serde_json::json!({ "restarting": name }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        },
        (other, _) => serde_json::json!({ "error": format!("unknown request `{other}`") }),
    };
    let mut conn = conn;
    writeln!(conn, "{reply}")
}

fn ask(path: &Path, request: &str) -> anyhow::Result<serde_json::Value> {
    let mut conn = UnixStream::connect(path)
        .with_context(|| format!("no `escala serve` answers on {}", path.display()))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    writeln!(conn, "{request}")?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    let v: serde_json::Value = serde_json::from_str(&reply).context("a malformed reply from the server")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("{e}");
    }
    Ok(v)
}

/// `escala serve status [--json]`.
pub(crate) fn status(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let v = ask(path, "status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let services: Vec<ServiceStatusView> = serde_json::from_value(v["services"].clone())?;
    println!("{:<20} {:<8} {:>7} {:>8}", "service", "state", "workers", "restarts");
    for s in services {
        let up = s.workers.iter().filter(|w| w.pid.is_some()).count();
        println!(
            "{:<20} {:<8} {:>7} {:>8}",
            s.name,
            s.state,
            format!("{up}/{}", s.workers.len()),
            s.restarts
        );
        for w in s.workers {
            let pid = w.pid.map_or("-".to_string(), |p| p.to_string());
            let ready = if w.ready { "ready" } else { "not ready" };
            println!(
                "  {}[{}] pid {pid} {ready}, up {:.1}s, {} restarts",
                s.name, w.index, w.uptime, w.restarts
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `escala serve restart NAME`.
pub(crate) fn restart(path: &Path, name: &str) -> anyhow::Result<ExitCode> {
    ask(path, &format!("restart {name}"))?;
    println!("restarting {name}");
    Ok(ExitCode::SUCCESS)
}

// The JSON shape of [`ServiceStatus`], read back by the client.
const _: fn(&ServiceStatus) = |_| {};

#[derive(serde::Deserialize)]
struct ServiceStatusView {
    name: String,
    state: String,
    restarts: u64,
    workers: Vec<WorkerView>,
}

#[derive(serde::Deserialize)]
struct WorkerView {
    index: usize,
    pid: Option<u32>,
    ready: bool,
    uptime: f64,
    restarts: u64,
}
