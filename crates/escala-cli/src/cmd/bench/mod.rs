//! `escala bench`: runs the built-in workloads on every unit kind and says which unit fits
//! which job — a table (or `--json`), a one-line verdict per workload, and optionally a
//! chart and a timeline.

mod chart;
mod report;
mod workload;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use escala::events;

use crate::config::BenchConfig;
pub(crate) use workload::Workload;
use workload::{Pools, Tally, Unit};

/// One workload on one unit kind, over the repetitions.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Row {
    pub(crate) workload: Workload,
    pub(crate) unit: Unit,
    pub(crate) jobs: u64,
    /// Why the unit cannot run this workload; then nothing was measured.
    pub(crate) skipped: Option<&'static str>,
    /// Per-job wall time, microseconds: median, min, max over the repetitions.
    pub(crate) per_job_us: [f64; 3],
    /// The last repetition's outcomes.
    pub(crate) tally: Tally,
    /// Every repetition ended as it must (see `workload::correct`).
    pub(crate) correct: bool,
    /// Serial per-job time ÷ this unit's (the median), when serial ran.
    pub(crate) speedup: Option<f64>,
}

/// The fastest correct unit for one workload, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Verdict {
    pub(crate) workload: Workload,
    pub(crate) unit: Option<Unit>,
    pub(crate) why: String,
}

pub(crate) fn run(c: &BenchConfig) -> anyhow::Result<ExitCode> {
    let pools = Pools::new(c.workers);
    let progress = std::io::stderr().is_terminal();
    let mut panels = Vec::new();
    let mut rows = Vec::new();
    for &w in &c.workloads {
        for unit in Unit::ALL {
            if progress {
                eprint!("\rescala bench: {} on {}…{:20}", w.label(), unit.label(), "");
            }
            // Serial runs have no units to draw, and tiny runs are tens of thousands of
            // bars: the timeline leaves them out.
            let record = c.timeline.is_some()
                && w != Workload::Tiny
                && unit != Unit::Serial
                && unit.cannot_run(w).is_none();
            let (row, events) = measure(w, unit, c.repeat, &pools, record);
            if record {
                let title = format!("{} on {}", w.label(), unit.label());
                panels.push(crate::timeline::Timeline::from_events(&title, &events));
            }
            rows.push(row);
        }
        add_speedups(&mut rows, w);
    }
    if progress {
        eprint!("\r{:60}\r", "");
    }
    drop(pools);
    let verdicts: Vec<Verdict> = c.workloads.iter().map(|&w| report::verdict(w, &rows)).collect();
    let mut out = std::io::stdout().lock();
    if c.json {
        let doc = serde_json::json!({
            "workers": c.workers,
            "repeat": c.repeat,
            "loadavg": report::loadavg(),
            "rows": rows,
            "verdicts": verdicts,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        report::table(&mut out, c, &rows, &verdicts)?;
    }
    if let Some(path) = &c.chart {
        std::fs::write(path, chart::render(&rows, c.workers))?;
        if !c.json {
            writeln!(out, "Chart: {}", path.display())?;
        }
    }
    if let Some(path) = &c.timeline {
        let svg = crate::timeline::render_panels(
            "escala bench: the last run of each workload on each unit",
            &panels,
        );
        std::fs::write(path, svg)?;
        if !c.json {
            writeln!(out, "Timeline: {}", path.display())?;
        }
    }
    let all_correct = rows.iter().all(|r| r.skipped.is_some() || r.correct);
    Ok(if all_correct { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs `w` on `unit` `repeat` times; with `record`, also returns the last run's events.
fn measure(w: Workload, unit: Unit, repeat: usize, pools: &Pools, record: bool) -> (Row, Vec<events::Event>) {
    let jobs = w.jobs(unit);
    let mut row = Row {
        workload: w,
        unit,
        jobs,
        skipped: unit.cannot_run(w),
        per_job_us: [0.0; 3],
        tally: Tally::default(),
        correct: false,
        speedup: None,
    };
    let mut events = Vec::new();
    if row.skipped.is_some() {
        return (row, events);
    }
    let mut times: Vec<Duration> = Vec::with_capacity(repeat);
    row.correct = true;
    for n in 0..repeat.max(1) {
        let log = (record && n + 1 == repeat.max(1)).then(events::subscribe);
        let (wall, tally) = workload::run(w, unit, pools);
        if let Some(log) = log {
            events.extend(log.try_iter());
        }
        row.correct &= workload::correct(w, unit, tally);
        row.tally = tally;
        times.push(wall);
    }
    times.sort();
    let per_job = |d: Duration| d.as_secs_f64() * 1e6 / jobs as f64;
    row.per_job_us = [per_job(times[times.len() / 2]), per_job(times[0]), per_job(times[times.len() - 1])];
    (row, events)
}

fn add_speedups(rows: &mut [Row], w: Workload) {
    let serial = rows.iter().find(|r| r.workload == w && r.unit == Unit::Serial && r.skipped.is_none());
    let Some(serial) = serial.map(|r| r.per_job_us[0]) else { return };
    for r in rows.iter_mut().filter(|r| r.workload == w && r.skipped.is_none()) {
        r.speedup = Some(serial / r.per_job_us[0]);
    }
}
