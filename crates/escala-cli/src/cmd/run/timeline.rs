//! `--timeline FILE.svg`: one lane per job slot, one bar per job from its start to its end,
//! coloured by outcome (`ok`, `exited` with a non-zero code, `killed` by a signal), with the
//! job's command, sequence number and times in a tooltip. Drawn by [`crate::timeline`], like
//! every other escala timeline.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::timeline::{self, Timeline};

/// One finished job on the picture.
pub(crate) struct Bar {
    pub(crate) slot: usize,
    pub(crate) seq: usize,
    /// Seconds since the Unix epoch.
    pub(crate) start: f64,
    pub(crate) runtime: f64,
    pub(crate) exitval: i32,
    pub(crate) signal: i32,
    pub(crate) command: String,
}

/// Writes the timeline of `bars` to `path`.
pub(crate) fn write(path: &Path, bars: &[Bar]) -> anyhow::Result<()> {
    std::fs::write(path, timeline::render(&picture(bars)))
        .with_context(|| format!("cannot write the timeline {}", path.display()))
}

/// The jobs as a timeline: a slot is a worker with no pid (see `timeline::lanes`).
fn picture(bars: &[Bar]) -> Timeline {
    let t0 = bars.iter().map(|b| b.start).fold(f64::INFINITY, f64::min);
    let at = |secs: f64| Duration::from_secs_f64((secs - t0).max(0.0));
    let mut t = Timeline { title: "escala run".into(), ..Timeline::default() };
    for b in bars {
        let outcome = match (b.exitval, b.signal) {
            (0, 0) => "ok",
            (_, 0) if b.exitval > 0 => "exited",
            _ => "killed",
        };
        t.bars.push(timeline::Bar {
            task: b.seq as u64,
            name: b.command.clone(),
            unit: "command".into(),
            worker: (0, b.slot as i32),
            start: at(b.start),
            end: at(b.start + b.runtime),
            outcome: outcome.into(),
        });
    }
    t.bars.sort_by_key(|b| (b.start, b.task));
    t.span = t.bars.iter().map(|b| b.end).max().unwrap_or_default();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_job_in_its_slot_coloured_by_outcome() {
        let bar = |slot, seq, start, exitval, signal| Bar {
            slot,
            seq,
            start,
            runtime: 1.0,
            exitval,
            signal,
            command: "echo <a> & b".into(),
        };
        let t = picture(&[bar(1, 1, 100.0, 0, 0), bar(2, 2, 100.5, 3, 0), bar(1, 3, 101.0, -1, 15)]);
        let outcomes: Vec<_> = t.bars.iter().map(|b| b.outcome.as_str()).collect();
        assert_eq!(outcomes, ["ok", "exited", "killed"]);
        assert_eq!(t.span, Duration::from_secs(2));
        let svg = timeline::render(&t);
        assert_eq!(svg.matches("class=\"bar ").count(), 3);
        assert!(svg.contains("\nslot 1\n") && svg.contains("\nslot 2\n") && !svg.contains("slot 3"));
        assert!(svg.contains("echo &lt;a&gt; &amp; b"));
    }
}
