//! Lane assignment: bars never overlap on a lane, and a worker keeps its lane while it can.

use std::collections::HashMap;
use std::time::Duration;

use super::Bar;

/// One horizontal lane of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lane {
    /// `"pid 12"` (a process unit), `"pid 12 tid 34"` (a thread) or `"slot 3"` (pid 0: a
    /// job slot of `escala run`) when every bar on the lane ran on one worker, else
    /// `"slot N"`.
    pub(crate) label: String,
    /// Indices into the timeline's bars.
    pub(crate) bars: Vec<usize>,
    /// The workers whose bars are on this lane.
    pub(crate) workers: Vec<(u32, i32)>,
}

/// Puts each bar (sorted by start) on a lane: its worker's last lane if that lane is free
/// at the bar's start, else the first free lane, else a new one.
pub(crate) fn assign_lanes(bars: &[Bar]) -> Vec<Lane> {
    let mut lanes: Vec<Lane> = Vec::new();
    let mut free_at: Vec<Duration> = Vec::new();
    let mut lane_of: HashMap<(u32, i32), usize> = HashMap::new();
    for (i, bar) in bars.iter().enumerate() {
        let own = lane_of.get(&bar.worker).copied().filter(|&l| free_at[l] <= bar.start);
        let lane = own.or_else(|| free_at.iter().position(|&t| t <= bar.start)).unwrap_or_else(|| {
            lanes.push(Lane { label: String::new(), bars: Vec::new(), workers: Vec::new() });
            free_at.push(Duration::ZERO);
            lanes.len() - 1
        });
        free_at[lane] = bar.end.max(bar.start);
        lanes[lane].bars.push(i);
        if !lanes[lane].workers.contains(&bar.worker) {
            lanes[lane].workers.push(bar.worker);
        }
        lane_of.insert(bar.worker, lane);
    }
    // A worker names a lane only when all its bars are on that lane alone.
    let mut lanes_of: HashMap<(u32, i32), usize> = HashMap::new();
    for lane in &lanes {
        for w in &lane.workers {
            *lanes_of.entry(*w).or_default() += 1;
        }
    }
    for (n, lane) in lanes.iter_mut().enumerate() {
        let unit = bars[lane.bars[0]].unit.as_str();
        let own_process = matches!(unit, "process" | "daemon-process" | "command");
        lane.label = match lane.workers.as_slice() {
            // No pid: the worker is a job slot (`escala run`), numbered by its tid field.
            [(0, slot)] => format!("slot {slot}"),
            [w] if lanes_of[w] > 1 => format!("slot {}", n + 1),
            [(pid, _)] if own_process => format!("pid {pid}"),
            [(pid, tid)] => format!("pid {pid} tid {tid}"),
            _ => format!("slot {}", n + 1),
        };
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(task: u64, worker: i32, start: u64, end: u64) -> Bar {
        Bar {
            task,
            name: format!("t{task}"),
            unit: "pool-task".into(),
            worker: (1, worker),
            start: Duration::from_millis(start),
            end: Duration::from_millis(end),
            outcome: "ok".into(),
        }
    }

    fn layout(bars: &[Bar]) -> Vec<Vec<u64>> {
        assign_lanes(bars).iter().map(|l| l.bars.iter().map(|&i| bars[i].task).collect()).collect()
    }

    #[test]
    fn overlapping_bars_take_separate_lanes_and_reuse_free_ones() {
        // Three slots' worth of overlap, then a fourth bar that fits after the first.
        let bars = [bar(1, 10, 0, 10), bar(2, 20, 1, 5), bar(3, 30, 2, 20), bar(4, 40, 11, 12)];
        assert_eq!(layout(&bars), vec![vec![1, 4], vec![2], vec![3]]);
    }

    #[test]
    fn a_worker_keeps_its_lane_when_it_is_free() {
        // Worker 20 ends first, but worker 10's next task goes back to lane 1.
        let bars = [bar(1, 10, 0, 10), bar(2, 20, 0, 4), bar(3, 10, 10, 12)];
        assert_eq!(layout(&bars), vec![vec![1, 3], vec![2]]);
        let lanes = assign_lanes(&bars);
        assert_eq!(lanes[0].label, "pid 1 tid 10");
    }

    #[test]
    fn a_worker_spread_over_lanes_names_none_of_them() {
        let bars = [bar(1, 10, 0, 5), bar(2, 10, 1, 6)];
        let labels: Vec<_> = assign_lanes(&bars).into_iter().map(|l| l.label).collect();
        assert_eq!(labels, ["slot 1", "slot 2"]);
    }

    #[test]
    fn a_lane_shared_by_workers_is_a_slot() {
        let bars = [bar(1, 10, 0, 2), bar(2, 20, 3, 4)];
        assert_eq!(assign_lanes(&bars)[0].label, "slot 1");
    }
}
