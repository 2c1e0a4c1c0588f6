//! `escala timeline EVENTS.jsonl -o FILE.svg`: draws any event log.

use std::process::ExitCode;

use crate::config::TimelineConfig;
use crate::timeline;

pub(crate) fn run(c: &TimelineConfig) -> anyhow::Result<ExitCode> {
    let events = timeline::read_events(&c.events)?;
    timeline::write_svg(&c.output, &c.title, &events)?;
    println!("{} events drawn into {}", events.len(), c.output.display());
    Ok(ExitCode::SUCCESS)
}
