//! Timelines: an event log (`escala::events`) turned into bars on lanes, then drawn as SVG.
//!
//! A bar is one attempt of one task, from its `started` event to the event that ended it
//! (`finished`, `retried`, or a cancellation), coloured by outcome. Bars go on lanes: a
//! task stays on the lane of its worker (same pid and thread) when that lane is free, and
//! otherwise takes the first free lane, so a run with N slots draws N lanes, a pool draws
//! one lane per worker, and a demo one lane per unit.

mod lanes;
mod svg;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use escala::events::{Event, EventKind};

pub(crate) use lanes::assign_lanes;
pub(crate) use svg::{render, render_panels};

/// One attempt of one task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub(crate) task: u64,
    pub(crate) name: String,
    pub(crate) unit: String,
    /// Where it ran: `(pid, tid)` of its `started` event.
    pub(crate) worker: (u32, i32),
    pub(crate) start: Duration,
    pub(crate) end: Duration,
    /// `"ok"`, an error label such as `"worker-lost"`, `"retried"`, or `"running"` when the
    /// log ends before the task did.
    pub(crate) outcome: String,
}

/// Marks drawn on top of the bars: worker deaths and crash-loop pauses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mark {
    pub(crate) at: Duration,
    pub(crate) worker: (u32, i32),
    pub(crate) text: String,
}

/// Everything a picture needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Timeline {
    pub(crate) title: String,
    pub(crate) bars: Vec<Bar>,
    pub(crate) marks: Vec<Mark>,
    /// From the first to the last event.
    pub(crate) span: Duration,
}

impl Timeline {
    /// Builds bars from an event log in any order (sorted here by time).
    pub(crate) fn from_events(title: &str, events: &[Event]) -> Timeline {
        let mut events: Vec<&Event> = events.iter().collect();
        events.sort_by_key(|e| e.at);
        let origin = events.first().map_or(Duration::ZERO, |e| e.at);
        let last = events.last().map_or(Duration::ZERO, |e| e.at);
        let mut open: HashMap<u64, Bar> = HashMap::new();
        let mut t = Timeline { title: title.to_string(), span: last - origin, ..Timeline::default() };
        for e in events {
            let at = e.at - origin;
            let close = |open: &mut HashMap<u64, Bar>, outcome: &str| {
                open.remove(&e.task.0).map(|mut b| {
                    b.end = at;
                    b.outcome = outcome.to_string();
                    b
                })
            };
            match &e.kind {
                EventKind::Started => {
                    let bar = Bar {
                        task: e.task.0,
                        name: e.name.clone(),
                        unit: e.unit.to_string(),
                        worker: (e.pid, e.tid),
                        start: at,
                        end: at,
                        outcome: "running".into(),
                    };
                    if let Some(mut stale) = open.insert(e.task.0, bar) {
                        stale.end = at;
                        stale.outcome = "retried".into();
                        t.bars.push(stale);
                    }
                }
                EventKind::Finished { outcome, .. } => t.bars.extend(close(&mut open, outcome)),
                EventKind::Retried { .. } => t.bars.extend(close(&mut open, "retried")),
                EventKind::Cancelled => t.bars.extend(close(&mut open, "cancelled")),
                EventKind::WorkerLost { reason } => {
                    t.marks.push(Mark { at, worker: (e.pid, e.tid), text: format!("worker lost: {reason}") })
                }
                EventKind::CrashLoop { worker, deaths, backoff_ms } => t.marks.push(Mark {
                    at,
                    worker: (e.pid, e.tid),
                    text: format!("crash loop: worker {worker}, {deaths} deaths, waits {backoff_ms} ms"),
                }),
                _ => {}
            }
        }
        let mut running: Vec<Bar> = open.into_values().collect();
        running.iter_mut().for_each(|b| b.end = t.span);
        t.bars.extend(running);
        t.bars.sort_by_key(|b| (b.start, b.task));
        t
    }
}

/// Reads an `--events` file: one JSON event per line; blank lines are skipped.
///
/// # Errors
///
/// A line that is not an event is an error naming the file and the line.
pub(crate) fn read_events(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut events = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not an escala event", path.display(), i + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// Writes an event log as `read_events` reads it: one JSON event per line.
pub(crate) fn write_events(path: &Path, events: &[Event]) -> anyhow::Result<()> {
    let mut text = String::new();
    for e in events {
        text.push_str(&serde_json::to_string(e)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Draws `events` into an SVG file.
pub(crate) fn write_svg(path: &Path, title: &str, events: &[Event]) -> anyhow::Result<()> {
    let timeline = Timeline::from_events(title, events);
    std::fs::write(path, render(&timeline)).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use escala::{TaskId, UnitKind};

    pub(crate) fn ev(ms: u64, task: u64, tid: i32, kind: EventKind) -> Event {
        Event {
            at: Duration::from_millis(ms),
            unix_us: 0,
            task: TaskId(task),
            name: format!("t{task}"),
            unit: UnitKind::PoolTask,
            pid: 7,
            tid,
            kind,
        }
    }

    fn fin(outcome: &str) -> EventKind {
        EventKind::Finished { outcome: outcome.into(), error: None }
    }

    #[test]
    fn bars_span_started_to_finished_with_the_outcome() {
        let t = Timeline::from_events(
            "x",
            &[
                ev(100, 1, 1, EventKind::Queued),
                ev(110, 1, 1, EventKind::Started),
                ev(150, 1, 1, fin("panicked")),
            ],
        );
        assert_eq!(t.span, Duration::from_millis(50));
        assert_eq!(t.bars.len(), 1);
        let b = &t.bars[0];
        assert_eq!((b.start, b.end), (Duration::from_millis(10), Duration::from_millis(50)));
        assert_eq!(b.outcome, "panicked");
    }

    #[test]
    fn a_retry_ends_one_bar_and_the_next_start_opens_another() {
        let t = Timeline::from_events(
            "x",
            &[
                ev(0, 1, 1, EventKind::Started),
                ev(5, 1, 1, EventKind::Retried { attempt: 2, delay_ms: 1 }),
                ev(7, 1, 2, EventKind::Started),
                ev(9, 1, 2, fin("ok")),
            ],
        );
        let outcomes: Vec<_> = t.bars.iter().map(|b| b.outcome.as_str()).collect();
        assert_eq!(outcomes, ["retried", "ok"]);
        assert_eq!(t.bars[1].worker, (7, 2));
    }

    #[test]
    fn a_task_still_running_at_the_end_reaches_the_end() {
        let t = Timeline::from_events(
            "x",
            &[ev(0, 1, 1, EventKind::Started), ev(30, 2, 2, EventKind::Started), ev(40, 2, 2, fin("ok"))],
        );
        let running = t.bars.iter().find(|b| b.task == 1).unwrap();
        assert_eq!((running.end, running.outcome.as_str()), (Duration::from_millis(40), "running"));
    }

    #[test]
    fn events_files_round_trip_and_bad_lines_name_their_place() {
        let dir = std::env::temp_dir().join(format!("escala-tl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.jsonl");
        let events = [ev(0, 1, 1, EventKind::Started), ev(3, 1, 1, fin("ok"))];
        write_events(&good, &events).unwrap();
        assert_eq!(read_events(&good).unwrap(), events);
        let bad = dir.join("bad.jsonl");
        std::fs::write(&bad, format!("{}\n{{\"nope\":1}}\n", serde_json::to_string(&events[0]).unwrap()))
            .unwrap();
        let err = format!("{:#}", read_events(&bad).unwrap_err());
        assert!(err.contains("bad.jsonl:2: not an escala event"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
