//! Catching panics at the unit boundary, and the "current task" context.
//!
//! Every unit runs user code through [`run_task`], which sets the task's [`CancelToken`] as
//! the thread's current one and turns a panic into [`ErrorKind::Panicked`] with its message
//! and source location (recorded by a panic hook installed once, which then calls the
//! previous hook so the usual panic message is still printed).

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use crate::error::{ErrorKind, panic_kind};
use crate::handle::CancelToken;

thread_local! {
    static CURRENT: RefCell<Option<CancelToken>> = const { RefCell::new(None) };
    static PANIC_LOCATION: Cell<Option<String>> = const { Cell::new(None) };
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let loc = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|c| c.set(loc));
            previous(info);
        }));
    });
}

/// The cancellation token of the task running on this thread.
///
/// Outside any escala task it returns a token that is never cancelled.
///
/// # Examples
///
/// ```
/// let h = escala::thread::spawn("me", || escala::current().task_name().map(str::to_owned));
/// assert_eq!(h.join().unwrap().as_deref(), Some("me"));
/// assert!(!escala::current().is_cancelled());
/// ```
pub fn current() -> CancelToken {
    CURRENT.with(|c| c.borrow().clone()).unwrap_or_else(CancelToken::never)
}

/// Runs `f` as the current task with `token`, catching a panic.
pub(crate) fn run_task<R>(token: CancelToken, f: impl FnOnce() -> R) -> Result<R, ErrorKind> {
    let prev = CURRENT.with(|c| c.replace(Some(token)));
    let result = run_caught(f);
    CURRENT.with(|c| *c.borrow_mut() = prev);
    result
}

/// [`run_task`] with a borrowed token: when `token` is the current one already (a batch of
/// a process pool's `map_tasks` makes its token current once for all its elements, see
/// [`Current`]), the thread's context is left as it is — no token is cloned or dropped.
pub(crate) fn run_task_ref<R>(token: &CancelToken, f: impl FnOnce() -> R) -> Result<R, ErrorKind> {
    if CURRENT.with(|c| c.borrow().as_ref().is_some_and(|t| t.same(token))) {
        run_caught(f)
    } else {
        run_task(token.clone(), f)
    }
}

fn run_caught<R>(f: impl FnOnce() -> R) -> Result<R, ErrorKind> {
    install_hook();
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|payload| panic_kind(&*payload, PANIC_LOCATION.with(|c| c.take())))
}

/// Keeps a token current on this thread until dropped, when the one before comes back.
pub(crate) struct Current {
    prev: Option<CancelToken>,
}

impl Current {
    pub(crate) fn new(token: CancelToken) -> Current {
        Current { prev: CURRENT.with(|c| c.replace(Some(token))) }
    }

    /// Makes `token` current instead (the one before `new` still comes back on drop).
    pub(crate) fn replace(&self, token: CancelToken) {
        CURRENT.with(|c| *c.borrow_mut() = Some(token));
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::{TaskName, UnitKind, pair};

    fn token() -> CancelToken {
        let (_h, c) = pair::<()>(TaskName::Static("t"), UnitKind::PoolTask);
        CancelToken::of(&c)
    }

    #[test]
    fn a_current_token_serves_many_tasks_and_the_one_before_comes_back() {
        let (a, b) = (token(), token());
        assert!(current().task_id().is_none(), "no task outside one");
        {
            let cur = Current::new(a.clone());
            // The current token is left as it is, and seen inside the task.
            let seen = run_task_ref(&a, || current().task_id()).unwrap();
            assert_eq!(seen, a.task_id());
            assert_eq!(current().task_id(), a.task_id());
            // Another token is set for the task only.
            let seen = run_task_ref(&b, || current().task_id()).unwrap();
            assert_eq!(seen, b.task_id());
            assert_eq!(current().task_id(), a.task_id());
            cur.replace(b.clone());
            assert_eq!(current().task_id(), b.task_id());
            // A panic is caught and the context kept.
            assert!(run_task_ref(&b, || panic!("boom")).is_err());
            assert_eq!(current().task_id(), b.task_id());
        }
        assert!(current().task_id().is_none(), "the token before the guard came back");
    }
}
