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
    install_hook();
    let prev = CURRENT.with(|c| c.replace(Some(token)));
    let result = catch_unwind(AssertUnwindSafe(f));
    CURRENT.with(|c| *c.borrow_mut() = prev);
    result.map_err(|payload| panic_kind(&*payload, PANIC_LOCATION.with(|c| c.take())))
}
