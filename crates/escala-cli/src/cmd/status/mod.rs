//! `escala status`: the queues and live workers of a Redis server, as a table or JSON; with
//! `--result ID`, the result kept for one task (`result.rs`).

mod result;

use std::io::Write;
use std::process::ExitCode;

use escala_redis::{Server, Status};

use crate::config::StatusConfig;

/// Prints the status, or one task's kept result.
pub(crate) fn run(c: &StatusConfig) -> anyhow::Result<ExitCode> {
    let mut server = Server::new(&c.redis);
    if let Some(path) = &c.tls_ca {
        server = server.tls_ca_file(path);
    }
    if let Some(id) = &c.result {
        if let Some(path) = &c.key_file {
            server = server.key_file(path);
        }
        return result::show(&server, id, c.json);
    }
    let status: Status = server.status()?;
    let mut out = std::io::stdout().lock();
    if c.json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &status, now_ms())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_table(out: &mut impl Write, s: &Status, now: u64) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<20} {:>8} {:>8} {:>9} {:>6} {:>10} {:>11} {:>10}",
        "queue", "depth", "pending", "in-flight", "dead", "completed", "redelivered", "duplicates"
    )?;
    for q in &s.queues {
        writeln!(
            out,
            "{:<20} {:>8} {:>8} {:>9} {:>6} {:>10} {:>11} {:>10}",
            q.name,
            q.depth,
            q.pending,
            q.in_flight,
            q.dead_letters,
            q.completed,
            q.redelivered,
            q.duplicate_results
        )?;
    }
    writeln!(out)?;
    writeln!(out, "{} live worker(s)", s.workers.len())?;
    for w in &s.workers {
        let ago = now.saturating_sub(w.last_seen_ms) as f64 / 1000.0;
        writeln!(
            out,
            "  {}  host {}  pid {}  queues {}  concurrency {}  running {}  ran {}  last seen {ago:.1}s ago",
            w.id,
            w.host,
            w.pid,
            w.queues.join(","),
            w.concurrency,
            w.running,
            w.ran
        )?;
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
