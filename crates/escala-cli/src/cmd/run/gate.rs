//! `--memfree` and `--load`: conditions that must hold before another job starts, read from
//! `/proc/meminfo` and `/proc/loadavg`.

/// When a closed gate is looked at again.
pub(crate) const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// The start conditions of a run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gate {
    /// Bytes of memory that must be available.
    pub(crate) memfree: Option<u64>,
    /// The 1-minute load average must be below this.
    pub(crate) load: Option<f64>,
}

impl Gate {
    /// True if another job may start now.
    pub(crate) fn open(&self) -> bool {
        let mem_ok = self.memfree.is_none_or(|need| {
            std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|t| mem_available(&t))
                .is_none_or(|a| a >= need)
        });
        let load_ok = self.load.is_none_or(|max| {
            std::fs::read_to_string("/proc/loadavg").ok().and_then(|t| load1(&t)).is_none_or(|l| l < max)
        });
        mem_ok && load_ok
    }
}

/// `MemAvailable` in bytes, from the text of `/proc/meminfo`.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The 1-minute load average, from the text of `/proc/loadavg`.
fn load1(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_texts() {
        let meminfo = "MemTotal:       8000000 kB\nMemFree:  100 kB\nMemAvailable:    2000 kB\n";
        assert_eq!(mem_available(meminfo), Some(2_048_000));
        assert_eq!(load1("0.52 0.58 0.59 2/1234 5678\n"), Some(0.52));
        assert_eq!(mem_available("nothing"), None);
    }

    #[test]
    fn an_unreachable_memory_floor_closes_the_gate_and_none_opens_it() {
        assert!(Gate::default().open());
        assert!(!Gate { memfree: Some(u64::MAX), load: None }.open());
        assert!(!Gate { memfree: None, load: Some(0.0) }.open());
        assert!(Gate { memfree: Some(1), load: Some(f64::INFINITY) }.open());
    }
}
