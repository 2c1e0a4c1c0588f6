//! Policies a pool applies to its tasks: what a full queue does, and how failed tasks retry.

use std::time::Duration;

use crate::error::ErrorKind;

/// What `submit` does when the pool's bounded queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Wait until there is room.
    Block,
    /// Resolve the task at once as [`ErrorKind::Rejected`] (and count it).
    Reject,
    /// Run the task on the submitting thread, before `submit` returns.
    CallerRuns,
}

/// How many times a task runs and how long to wait between runs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use escala::RetryPolicy;
/// let p = RetryPolicy::attempts(3).backoff(Duration::from_millis(10), Duration::from_secs(1));
/// assert_eq!(p.max_attempts(), 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    attempts: u32,
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: bool,
    on_panic: bool,
    on_failure: bool,
    on_timeout: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::never()
    }
}

impl RetryPolicy {
    /// Run once; never retry.
    pub fn never() -> RetryPolicy {
        RetryPolicy::attempts(1)
    }

    /// Run at most `n` times in total (`n` ≥ 1), retrying failures and panics, with a
    /// 100 ms → 10 s exponential backoff with jitter.
    pub fn attempts(n: u32) -> RetryPolicy {
        RetryPolicy {
            attempts: n.max(1),
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: true,
            on_panic: true,
            on_failure: true,
            on_timeout: false,
        }
    }

    /// Sets the first delay and the cap of the exponential backoff.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> RetryPolicy {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// Sets the growth factor between delays (default 2).
    pub fn multiplier(mut self, m: f64) -> RetryPolicy {
        self.multiplier = m.max(1.0);
        self
    }

    /// Turns "full jitter" (a random delay up to the computed one) on or off (default on).
    pub fn jitter(mut self, on: bool) -> RetryPolicy {
        self.jitter = on;
        self
    }

    /// Chooses which errors are retried: panics, the task's own errors, timeouts.
    pub fn retry_on(mut self, panics: bool, failures: bool, timeouts: bool) -> RetryPolicy {
        self.on_panic = panics;
        self.on_failure = failures;
        self.on_timeout = timeouts;
        self
    }

    /// Total runs allowed.
    pub fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// True if an error of this kind, after run number `attempt`, is retried.
    pub fn should_retry(&self, kind: &ErrorKind, attempt: u32) -> bool {
        attempt < self.attempts
            && match kind {
                ErrorKind::Panicked { .. } => self.on_panic,
                ErrorKind::Failed(_) | ErrorKind::Exited(_) | ErrorKind::WorkerLost { .. } => self.on_failure,
                ErrorKind::TimedOut(_) => self.on_timeout,
                _ => false,
            }
    }

    /// The delay before run number `attempt + 1`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
        let d = self.initial.mul_f64(exp.min(1e9)).min(self.max);
        if self.jitter { d.mul_f64(fastrand::f64()) } else { d }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy::attempts(10)
            .backoff(Duration::from_millis(10), Duration::from_millis(50))
            .jitter(false);
        let d: Vec<_> = (1..6).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(d, vec![10, 20, 40, 50, 50]);
    }

    #[test]
    fn jitter_stays_below_the_computed_delay() {
        let p = RetryPolicy::attempts(10).backoff(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..100 {
            assert!(p.delay(2) <= Duration::from_millis(200));
        }
    }

    #[test]
    fn kinds_and_counts() {
        let p = RetryPolicy::attempts(2);
        assert!(p.should_retry(&ErrorKind::Failed("x".into()), 1));
        assert!(!p.should_retry(&ErrorKind::Failed("x".into()), 2));
        assert!(!p.should_retry(&ErrorKind::Cancelled, 1));
        assert!(!p.should_retry(&ErrorKind::TimedOut(Duration::ZERO), 1));
        assert!(p.clone().retry_on(false, false, true).should_retry(&ErrorKind::TimedOut(Duration::ZERO), 1));
    }
}
