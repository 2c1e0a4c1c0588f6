//! When a dead worker comes back: the restart policy, the backoff between restarts and the
//! crash-loop limit after which a service is given up on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which deaths of a worker are followed by a restart.
///
/// # Examples
///
/// ```
/// use escala::supervise::Restart;
/// assert_eq!("on-failure".parse::<Restart>(), Ok(Restart::OnFailure));
/// assert!(Restart::OnFailure.restarts(false) && !Restart::OnFailure.restarts(true));
/// assert!(Restart::Always.restarts(true) && !Restart::Never.restarts(false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Every death, even a clean exit.
    #[default]
    Always,
    /// Deaths by a signal or with a non-zero exit code.
    OnFailure,
    /// None: a dead worker stays dead.
    Never,
}

impl Restart {
    /// Whether a worker that ended this way (`success`: exit code 0) is restarted.
    pub fn restarts(self, success: bool) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => !success,
            Restart::Never => false,
        }
    }
}

impl std::str::FromStr for Restart {
    type Err = String;
    fn from_str(s: &str) -> Result<Restart, String> {
        match s {
            "always" => Ok(Restart::Always),
            "on-failure" => Ok(Restart::OnFailure),
            "never" => Ok(Restart::Never),
            _ => Err(format!("`{s}` is not a restart policy (always, on-failure, never)")),
        }
    }
}

/// Capped exponential backoff between the restarts of one worker.
///
/// The first restart after a death is immediate; each further death of a worker that ran
/// less than `reset_after` waits twice as long as the last (from `initial`, at most `max`).
/// A worker that ran for `reset_after` or longer starts the count again.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use escala::supervise::Backoff;
/// let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(250), ..Backoff::default() };
/// let delays: Vec<_> = (1..=4).map(|n| b.delay(n).as_millis()).collect();
/// assert_eq!(delays, [0, 100, 200, 250]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the second restart in a row (default 100 ms).
    pub initial: Duration,
    /// The longest wait (default 15 s).
    pub max: Duration,
    /// A worker that ran this long resets the count (default 30 s).
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(15),
            reset_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before restarting after the `failures`-th quick death in a row (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 2).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// The crash-loop limit: `max` deaths within `window` and the service is marked failed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use escala::supervise::CrashLoop;
/// let c = CrashLoop { max: 5, window: Duration::from_secs(10) };
/// assert_eq!(c, CrashLoop::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoop {
    /// Deaths that make a crash loop (default 5; 0 turns the limit off).
    pub max: u32,
    /// The window they are counted in (default 10 s).
    pub window: Duration,
}

impl Default for CrashLoop {
    fn default() -> CrashLoop {
        CrashLoop { max: 5, window: Duration::from_secs(10) }
    }
}

/// The deaths of one service within its crash-loop window.
#[derive(Debug, Default)]
pub(crate) struct DeathLog {
    at: VecDeque<Instant>,
}

impl DeathLog {
    /// Records a death now; returns how many fell in the window and whether that is a loop.
    pub(crate) fn record(&mut self, limit: &CrashLoop, now: Instant) -> (u32, bool) {
        self.at.push_back(now);
        while self.at.front().is_some_and(|t| now.duration_since(*t) > limit.window) {
            self.at.pop_front();
        }
        let n = self.at.len() as u32;
        (n, limit.max > 0 && n >= limit.max)
    }

    pub(crate) fn clear(&mut self) {
        self.at.clear();
    }
}
