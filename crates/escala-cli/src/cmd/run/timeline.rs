//! `--timeline FILE.svg`: one lane per job slot, one bar per job from its start to its end,
//! coloured by outcome (green: succeeded, red: failed, orange: killed by a signal), with the
//! job's command, exit value and runtime in a tooltip.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

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

/// Colours by outcome.
pub(crate) const OK: &str = "#43a047";
pub(crate) const FAILED: &str = "#e53935";
pub(crate) const KILLED: &str = "#fb8c00";

const WIDTH: f64 = 1000.0;
const LANE: f64 = 22.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 30.0;

/// Writes the timeline of `bars` to `path`.
pub(crate) fn write(path: &Path, bars: &[Bar]) -> anyhow::Result<()> {
    std::fs::write(path, render(bars))
        .with_context(|| format!("cannot write the timeline {}", path.display()))
}

fn render(bars: &[Bar]) -> String {
    let t0 = bars.iter().map(|b| b.start).fold(f64::INFINITY, f64::min);
    let t1 = bars.iter().map(|b| b.start + b.runtime).fold(f64::NEG_INFINITY, f64::max);
    let (t0, span) = if bars.is_empty() { (0.0, 1.0) } else { (t0, (t1 - t0).max(1e-3)) };
    let lanes = bars.iter().map(|b| b.slot).max().unwrap_or(0);
    let height = TOP + LANE * lanes as f64 + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#,
        w = LEFT + WIDTH + 20.0
    );
    let failed = bars.iter().filter(|b| b.exitval != 0 || b.signal != 0).count();
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="18">escala run: {} jobs on {lanes} slots in {span:.3} s, {failed} failed</text>"#,
        bars.len()
    );
    for lane in 1..=lanes {
        let y = TOP + LANE * (lane - 1) as f64;
        let _ = writeln!(s, r#"<text x="4" y="{:.1}">slot {lane}</text>"#, y + 15.0);
    }
    for b in bars {
        let x = LEFT + (b.start - t0) / span * WIDTH;
        let w = (b.runtime / span * WIDTH).max(1.0);
        let y = TOP + LANE * (b.slot - 1) as f64;
        let colour = match (b.exitval, b.signal) {
            (0, 0) => OK,
            (_, 0) if b.exitval > 0 => FAILED,
            _ => KILLED,
        };
        let _ = writeln!(
            s,
            r#"<rect x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{:.1}" fill="{colour}"><title>#{} {} (exit {}, signal {}, {:.3} s)</title></rect>"#,
            LANE - 4.0,
            b.seq,
            escape(&b.command),
            b.exitval,
            b.signal,
            b.runtime
        );
    }
    let y = TOP + LANE * lanes as f64 + 16.0;
    let _ = writeln!(s, r#"<text x="{LEFT}" y="{y:.1}">0 s</text>"#);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{y:.1}" text-anchor="end">{span:.3} s</text>"#, LEFT + WIDTH);
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_job_in_its_lane_coloured_by_outcome() {
        let bar = |slot, seq, start, exitval, signal| Bar {
            slot,
            seq,
            start,
            runtime: 1.0,
            exitval,
            signal,
            command: "echo <a> & b".into(),
        };
        let svg = render(&[bar(1, 1, 100.0, 0, 0), bar(2, 2, 100.5, 3, 0), bar(1, 3, 101.0, -1, 15)]);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert_eq!(svg.matches(OK).count(), 1);
        assert_eq!(svg.matches(FAILED).count(), 1);
        assert_eq!(svg.matches(KILLED).count(), 1);
        assert!(svg.contains("slot 2") && !svg.contains("slot 3"));
        assert!(svg.contains("echo &lt;a&gt; &amp; b"));
        assert!(render(&[]).starts_with("<svg"));
    }
}
