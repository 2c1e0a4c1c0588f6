//! The pool's own threads in the parent — slot threads and the writer and stderr threads
//! they start, which inherit it — run under `SCHED_BATCH`: a reply or a refill then never
//! preempts a worker computing on a busy CPU. On an idle CPU such a thread runs at once, as
//! before; on a busy one, at the end of the running thread's slice or when a worker blocks
//! (a worker that ran out of jobs frees its CPU for the refill). The workers get back the
//! policy the slot thread had.
//!
//! Measured with W3 (2 workers computing on 2 cores, `w3_probe` in `benches`), 6 runs each:
//! per 16,000 tasks back to back, context switches 12.1–16.7 k → 6.1–7.5 k and the parent's
//! CPU per task 4.5–5.7 → 2.6–3.9 µs (`perf stat -e context-switches -- w3_probe 40 procs`);
//! the speed-up itself moved within the machine's noise (1.73–1.83 → 1.81–1.99 back to
//! back; interleaved with serial rounds, medians 1.80–1.83 → 1.81–1.85). W2's throughput
//! did not move.

use nix::libc;

/// A thread's scheduling policy and priority, to give back to the workers it starts.
#[derive(Clone, Copy, Debug)]
pub(super) struct Policy {
    policy: libc::c_int,
    priority: libc::c_int,
}

/// Moves the calling thread to `SCHED_BATCH` if it runs under the normal policy (a thread
/// the user made real-time or idle keeps its policy). Returns the policy it had, for the
/// workers it starts; `None` if it was left alone.
pub(super) fn to_batch() -> Option<Policy> {
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system calls on the calling thread (pid 0); `param` is a valid, live
    // `sched_param` for the duration of each call.
    unsafe {
        let policy = libc::sched_getscheduler(0);
        if policy != libc::SCHED_OTHER || libc::sched_getparam(0, &mut param) != 0 {
            return None;
        }
        let batch = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_BATCH, &batch) != 0 {
            return None;
        }
        Some(Policy { policy, priority: param.sched_priority })
    }
}

impl Policy {
    /// Gives the calling thread this policy back: one system call, async-signal-safe, for a
    /// `pre_exec` hook (a forked child starts with the policy of the thread that forked it).
    pub(super) fn restore(self) -> std::io::Result<()> {
        let param = libc::sched_param { sched_priority: self.priority };
        // SAFETY: a system call on the calling thread; `param` lives across the call.
        if unsafe { libc::sched_setscheduler(0, self.policy, &param) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_thread_goes_batch_and_its_policy_comes_back() {
        std::thread::spawn(|| {
            // SAFETY: reads the calling thread's policy.
            let now = || unsafe { libc::sched_getscheduler(0) };
            assert_eq!(now(), libc::SCHED_OTHER);
            let had = to_batch().expect("a normal thread moves to SCHED_BATCH");
            assert_eq!(now(), libc::SCHED_BATCH);
            // Only a normal thread moves: this one is batch already.
            assert!(to_batch().is_none());
            had.restore().expect("restore");
            assert_eq!(now(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }
}
