//! `escala bench --chart FILE.svg`: per workload, one bar per unit, its speed relative to
//! the fastest unit of that workload (jobs per second, on a common scale within a workload).

use svg::Document;
use svg::node::element::{Group, Rectangle, Text, Title};

use super::Row;
use super::report::duration_us;
use super::workload::Unit;

const WIDTH: f64 = 900.0;
const LEFT: f64 = 170.0;
const BAR: f64 = 18.0;
const GAP: f64 = 4.0;
const HEAD: f64 = 26.0;

fn colour(u: Unit) -> &'static str {
    match u {
        Unit::Serial => "#757575",
        Unit::Thread => "#1e88e5",
        Unit::Process => "#8e24aa",
        Unit::ThreadPool => "#43a047",
        Unit::ProcessPool => "#f4511e",
    }
}

/// The SVG text of the chart.
pub(crate) fn render(rows: &[Row], workers: usize) -> String {
    let mut workloads: Vec<_> = rows.iter().map(|r| r.workload).collect();
    workloads.dedup();
    let mut y = 50.0;
    let mut body = Group::new();
    for w in workloads {
        let group: Vec<&Row> = rows.iter().filter(|r| r.workload == w).collect();
        let fastest = group
            .iter()
            .filter(|r| r.skipped.is_none())
            .map(|r| r.per_job_us[0])
            .fold(f64::INFINITY, f64::min);
        body = body.add(
            Text::new(format!("{} — bar length: speed relative to the fastest unit", w.label()))
                .set("x", 10)
                .set("y", y + 16.0)
                .set("font-weight", "bold"),
        );
        y += HEAD;
        for r in group {
            body = body.add(Text::new(r.unit.label()).set("x", 10).set("y", y + BAR - 4.0));
            let text = match r.skipped {
                Some(why) => format!("not run: {why}"),
                None => {
                    let width = (WIDTH - LEFT - 200.0) * fastest / r.per_job_us[0];
                    body = body.add(
                        Rectangle::new()
                            .set("x", LEFT)
                            .set("y", y)
                            .set("width", width.max(1.0))
                            .set("height", BAR)
                            .set("fill", colour(r.unit))
                            .set("class", "bar")
                            .add(Title::new(format!(
                                "{} jobs, {} ok, {} lost",
                                r.jobs, r.tally.ok, r.tally.lost
                            ))),
                    );
                    format!("{} per job", duration_us(r.per_job_us[0]))
                }
            };
            let x = if r.skipped.is_some() {
                LEFT
            } else {
                LEFT + (WIDTH - LEFT - 200.0) * fastest / r.per_job_us[0] + 6.0
            };
            body = body.add(Text::new(text).set("x", x).set("y", y + BAR - 4.0).set("fill", "#424242"));
            y += BAR + GAP;
        }
        y += 10.0;
    }
    Document::new()
        .set("viewBox", (0, 0, WIDTH, y + 10.0))
        .set("width", WIDTH)
        .set("height", y + 10.0)
        .set("font-family", "sans-serif")
        .set("font-size", 12)
        .add(Rectangle::new().set("width", "100%").set("height", "100%").set("fill", "white"))
        .add(
            Text::new(format!("escala bench: which unit for which job ({workers} workers)"))
                .set("x", 10)
                .set("y", 24)
                .set("font-size", 16)
                .set("font-weight", "bold"),
        )
        .add(body)
        .to_string()
}
