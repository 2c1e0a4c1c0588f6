//! Drawing a [`Timeline`] as an SVG picture: lanes, bars coloured by outcome, a time axis,
//! a legend, and a tooltip (`<title>`) on every bar.

use std::time::Duration;

use svg::Document;
use svg::node::element::{Group, Line, Rectangle, Text, Title};

use super::{Timeline, assign_lanes};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 64.0;
const LANE: f64 = 24.0;
const BAR: f64 = 16.0;
const AXIS: f64 = 44.0;
const HEADING: f64 = 24.0;

/// The colour of an outcome label.
pub(crate) fn colour(outcome: &str) -> &'static str {
    match outcome {
        "ok" => "#2e7d32",
        "failed" | "exited" => "#ef6c00",
        "panicked" => "#8e24aa",
        "timed-out" => "#f9a825",
        "cancelled" => "#9e9e9e",
        "worker-lost" | "killed" => "#c62828",
        "retried" => "#ffb74d",
        "running" => "#64b5f6",
        _ => "#5d4037",
    }
}

/// The SVG text of a timeline.
pub(crate) fn render(t: &Timeline) -> String {
    render_panels(&t.title, std::slice::from_ref(t))
}

/// The SVG text of several timelines stacked one under the other, each with its own lanes
/// and time axis (a panel's title is its timeline's title), under one legend.
pub(crate) fn render_panels(title: &str, panels: &[Timeline]) -> String {
    let mut y = TOP;
    let mut body = Group::new();
    for t in panels {
        let heading = if panels.len() == 1 { None } else { Some(t.title.as_str()) };
        let (g, height) = panel(t, heading, y);
        body = body.add(g);
        y += height;
    }
    let tasks: usize = panels.iter().map(|t| t.bars.len()).sum();
    let heading = match panels {
        [t] => format!("{title} — {tasks} tasks on {} lanes", assign_lanes(&t.bars).len()),
        _ => format!("{title} — {tasks} tasks"),
    };
    Document::new()
        .set("viewBox", (0, 0, WIDTH, y))
        .set("width", WIDTH)
        .set("height", y)
        .set("font-family", "sans-serif")
        .set("font-size", 12)
        .add(Rectangle::new().set("width", "100%").set("height", "100%").set("fill", "white"))
        .add(Text::new(heading).set("x", 10).set("y", 22).set("font-size", 16).set("font-weight", "bold"))
        .add(legend(panels))
        .add(body)
        .to_string()
}

/// One timeline's lanes and axis, from `top`; returns the group and its height.
fn panel(t: &Timeline, heading: Option<&str>, top: f64) -> (Group, f64) {
    let lanes = assign_lanes(&t.bars);
    let mut g = Group::new();
    let mut y0 = top;
    if let Some(h) = heading {
        let text = format!("{h} ({:.3} s)", t.span.as_secs_f64());
        g = g.add(Text::new(text).set("x", 10).set("y", y0 + 16.0).set("font-weight", "bold"));
        y0 += HEADING;
    }
    let span = t.span.max(Duration::from_millis(1)).as_secs_f64();
    let x = |d: Duration| LEFT + (WIDTH - LEFT - RIGHT) * d.as_secs_f64() / span;

    for (n, lane) in lanes.iter().enumerate() {
        let y = y0 + LANE * n as f64;
        g = g.add(
            Rectangle::new()
                .set("x", 0)
                .set("y", y)
                .set("width", WIDTH)
                .set("height", LANE)
                .set("fill", if n % 2 == 0 { "#f5f5f5" } else { "#ffffff" }),
        );
        g = g.add(Text::new(lane.label.clone()).set("x", 10).set("y", y + LANE / 2.0 + 4.0));
        for &i in &lane.bars {
            let b = &t.bars[i];
            let (x0, x1) = (x(b.start), x(b.end));
            let w = (x1 - x0).max(1.0);
            let tip = format!(
                "{} (#{}, {}) {}: {:.3}s → {:.3}s, pid {} tid {}",
                b.name,
                b.task,
                b.unit,
                b.outcome,
                b.start.as_secs_f64(),
                b.end.as_secs_f64(),
                b.worker.0,
                b.worker.1
            );
            let mut rect = Rectangle::new()
                .set("x", x0)
                .set("y", y + (LANE - BAR) / 2.0)
                .set("width", w)
                .set("height", BAR)
                .set("rx", 3)
                .set("fill", colour(&b.outcome))
                .set("class", format!("bar {}", b.outcome));
            rect = rect.add(Title::new(tip));
            g = g.add(rect);
            // A name fits at about 7 px per character.
            if w > 7.0 * b.name.chars().count() as f64 + 8.0 {
                g = g.add(
                    Text::new(b.name.clone())
                        .set("x", x0 + 4.0)
                        .set("y", y + LANE / 2.0 + 4.0)
                        .set("fill", "white")
                        .set("pointer-events", "none"),
                );
            }
        }
        for m in t.marks.iter().filter(|m| lane.workers.contains(&m.worker)) {
            let mx = x(m.at);
            g = g.add(
                Line::new()
                    .set("x1", mx)
                    .set("x2", mx)
                    .set("y1", y + 1.0)
                    .set("y2", y + LANE - 1.0)
                    .set("stroke", "#b71c1c")
                    .set("stroke-width", 3)
                    .add(Title::new(m.text.clone())),
            );
        }
    }
    let axis_y = y0 + LANE * lanes.len().max(1) as f64;
    g = g.add(axis(t.span, axis_y, x));
    (g, axis_y + AXIS - top)
}

fn legend(panels: &[Timeline]) -> Group {
    let mut seen: Vec<&str> = Vec::new();
    for b in panels.iter().flat_map(|t| &t.bars) {
        if !seen.contains(&b.outcome.as_str()) {
            seen.push(&b.outcome);
        }
    }
    let mut g = Group::new();
    let mut cx = 10.0;
    for outcome in seen {
        g = g
            .add(
                Rectangle::new()
                    .set("x", cx)
                    .set("y", 34)
                    .set("width", 14)
                    .set("height", 14)
                    .set("rx", 2)
                    .set("fill", colour(outcome)),
            )
            .add(Text::new(outcome).set("x", cx + 18.0).set("y", 46));
        cx += 30.0 + 7.0 * outcome.len() as f64;
    }
    g
}

/// A time axis with 1-2-5 steps, about 8 ticks over the span.
fn axis(span: Duration, y: f64, x: impl Fn(Duration) -> f64) -> Group {
    let secs = span.as_secs_f64().max(1e-3);
    let raw = secs / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(magnitude * 10.0);
    let mut g = Group::new().add(
        Line::new()
            .set("x1", LEFT)
            .set("x2", WIDTH - RIGHT)
            .set("y1", y + 4.0)
            .set("y2", y + 4.0)
            .set("stroke", "#424242"),
    );
    let mut k = 0.0;
    while k * step <= secs + step * 1e-9 {
        let at = x(Duration::from_secs_f64(k * step));
        let v = k * step;
        let label = match step {
            s if s >= 1.0 => format!("{v:.0}s"),
            s if s >= 0.1 => format!("{v:.1}s"),
            s if s >= 0.01 => format!("{v:.2}s"),
            s if s >= 0.001 => format!("{:.0}ms", v * 1e3),
            _ => format!("{:.0}µs", v * 1e6),
        };
        g = g
            .add(
                Line::new()
                    .set("x1", at)
                    .set("x2", at)
                    .set("y1", y + 4.0)
                    .set("y2", y + 10.0)
                    .set("stroke", "#424242"),
            )
            .add(Text::new(label).set("x", at).set("y", y + 24.0).set("text-anchor", "middle"));
        k += 1.0;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Bar;

    fn bar(task: u64, tid: i32, start: u64, end: u64, outcome: &str) -> Bar {
        Bar {
            task,
            name: format!("task <{task}>"),
            unit: "pool-task".into(),
            worker: (1, tid),
            start: Duration::from_millis(start),
            end: Duration::from_millis(end),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn draws_one_bar_per_attempt_coloured_by_outcome_and_escapes_text() {
        let t = Timeline {
            title: "demo & co".into(),
            bars: vec![bar(1, 1, 0, 500, "ok"), bar(2, 2, 100, 900, "worker-lost")],
            marks: vec![],
            span: Duration::from_millis(1000),
        };
        let s = render(&t);
        assert!(s.starts_with("<svg"), "{s}");
        assert_eq!(s.matches("class=\"bar ").count(), 2);
        assert!(s.contains(colour("ok")) && s.contains(colour("worker-lost")));
        assert!(s.contains("demo &amp; co"), "title escaped");
        assert!(s.contains("task &lt;1&gt;"), "names escaped");
        assert!(s.contains("\n0.0s\n") && s.contains("\n1.0s\n"), "axis from 0 to the span");
    }

    #[test]
    fn axis_steps_are_round() {
        let labels = |ms: u64| {
            let s = axis(Duration::from_millis(ms), 0.0, |_| 0.0).to_string();
            s.matches("</text>").count()
        };
        // 2 s in steps of 0.5 s: 0, 0.5, …, 2.0 → 5 labels; 7 s in steps of 1 s → 8.
        assert_eq!(labels(2000), 5);
        assert_eq!(labels(7000), 8);
    }
}
