//! The text `escala bench` prints: the table and the verdicts.

use std::io::Write;

use super::workload::{Unit, Workload};
use super::{Row, Verdict};
use crate::config::BenchConfig;

/// `12.3 µs` or `1.05 ms`.
pub(crate) fn duration_us(us: f64) -> String {
    match us {
        us if us < 1.0 => format!("{:.0} ns", us * 1000.0),
        us if us < 1000.0 => format!("{us:.1} µs"),
        us => format!("{:.2} ms", us / 1000.0),
    }
}

/// The machine's 1-minute load, which says how much to trust the figures.
pub(crate) fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// The fastest unit that ran `w` correctly, and a sentence saying why it fits.
pub(crate) fn verdict(w: Workload, rows: &[Row]) -> Verdict {
    let of = |u: Unit| rows.iter().find(|r| r.workload == w && r.unit == u && r.skipped.is_none());
    let best = rows
        .iter()
        .filter(|r| r.workload == w && r.unit != Unit::Serial && r.skipped.is_none() && r.correct)
        .min_by(|a, b| a.per_job_us[0].total_cmp(&b.per_job_us[0]));
    let Some(best) = best else {
        return Verdict { workload: w, unit: None, why: "no unit ran every job as it must".into() };
    };
    let speedup = best.speedup.map_or(String::new(), |s| format!("{s:.2}× serial"));
    let why = match w {
        Workload::Cpu => format!(
            "{speedup}; work that keeps a core busy wants one unit per core, started once — a unit per job pays its start on every job"
        ),
        Workload::Io => {
            format!("{speedup}; waiting jobs want as many units as jobs in flight, not as many as cores")
        }
        Workload::Tiny => match of(Unit::Serial) {
            Some(serial) if serial.per_job_us[0] < best.per_job_us[0] => format!(
                "a job this small costs {} inline and {} handed to a unit: run it inline, or batch many per task",
                duration_us(serial.per_job_us[0]),
                duration_us(best.per_job_us[0])
            ),
            _ => format!("{speedup}; the cheapest hand-off per job"),
        },
        Workload::Crash => format!(
            "{} crashes came back as WorkerLost and the other {} jobs finished; in a thread, one abort ends the whole process",
            best.tally.lost, best.tally.ok
        ),
    };
    Verdict { workload: w, unit: Some(best.unit), why }
}

pub(crate) fn table(
    out: &mut impl Write,
    c: &BenchConfig,
    rows: &[Row],
    verdicts: &[Verdict],
) -> std::io::Result<()> {
    let load = loadavg().map_or("unknown".into(), |l| format!("{l:.2}"));
    writeln!(
        out,
        "escala bench: {} workers, median of {} runs [min–max], 1-minute load {load}",
        c.workers, c.repeat
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<8} {:<16} {:>6}  {:<30} {:>9}  outcomes",
        "workload", "unit", "jobs", "per job", "× serial"
    )?;
    for r in rows {
        if let Some(why) = r.skipped {
            writeln!(
                out,
                "{:<8} {:<16} {:>6}  {:<30} {:>9}  not run: {why}",
                r.workload.label(),
                r.unit.label(),
                "-",
                "-",
                "-"
            )?;
            continue;
        }
        let [median, min, max] = r.per_job_us;
        let per_job = format!("{} [{}–{}]", duration_us(median), duration_us(min), duration_us(max));
        let speedup = r.speedup.map_or("-".into(), |s| format!("{s:.2}×"));
        let mut outcome = format!("{} ok", r.tally.ok);
        if r.tally.lost > 0 {
            outcome += &format!(", {} worker lost", r.tally.lost);
        }
        if r.tally.failed > 0 {
            outcome += &format!(", {} failed", r.tally.failed);
        }
        if !r.correct {
            outcome += "  (NOT as expected)";
        }
        writeln!(
            out,
            "{:<8} {:<16} {:>6}  {:<30} {:>9}  {outcome}",
            r.workload.label(),
            r.unit.label(),
            r.jobs,
            per_job,
            speedup
        )?;
    }
    writeln!(out)?;
    writeln!(out, "Which unit for which job:")?;
    for v in verdicts {
        let unit = v.unit.map_or("none", Unit::label);
        writeln!(out, "  {:<6} -> {unit}: {}", v.workload.label(), v.why)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::bench::workload::Tally;

    fn row(w: Workload, unit: Unit, us: f64, correct: bool) -> Row {
        Row {
            workload: w,
            unit,
            jobs: 10,
            skipped: None,
            per_job_us: [us, us, us],
            tally: Tally { ok: 10, lost: 0, failed: 0 },
            correct,
            speedup: Some(100.0 / us),
        }
    }

    #[test]
    fn the_verdict_is_the_fastest_correct_parallel_unit() {
        let rows = [
            row(Workload::Cpu, Unit::Serial, 100.0, true),
            row(Workload::Cpu, Unit::Thread, 40.0, false),
            row(Workload::Cpu, Unit::ThreadPool, 55.0, true),
            row(Workload::Cpu, Unit::ProcessPool, 60.0, true),
        ];
        let v = verdict(Workload::Cpu, &rows);
        assert_eq!(v.unit, Some(Unit::ThreadPool));
        assert!(v.why.starts_with("1.82× serial"), "{}", v.why);
    }

    #[test]
    fn tiny_jobs_faster_inline_say_so() {
        let rows =
            [row(Workload::Tiny, Unit::Serial, 0.01, true), row(Workload::Tiny, Unit::ThreadPool, 1.0, true)];
        assert!(verdict(Workload::Tiny, &rows).why.contains("run it inline"));
    }

    #[test]
    fn no_correct_unit_is_said_plainly() {
        let rows = [row(Workload::Crash, Unit::ProcessPool, 1.0, false)];
        assert_eq!(verdict(Workload::Crash, &rows).unit, None);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_us(0.0123), "12 ns");
        assert_eq!(duration_us(12.34), "12.3 µs");
        assert_eq!(duration_us(1050.0), "1.05 ms");
    }
}
