//! Compile-time table of auto traits of the public types (like tokio's
//! `tests/async_send_sync.rs`). A change that makes a type lose `Send`, `Sync` or `Unpin`
//! breaks the build of this file; so does one that makes `Handle<Rc<_>>` become `Send`.

#![allow(dead_code, clippy::type_complexity)]

use std::rc::Rc;

use escala::events::{Event, EventKind, Subscription};
use escala::pool::{Map, MapUnordered, Rejected};
use escala::{
    AsCompleted, Call, CancelToken, ErrorKind, ExitGuard, ExitReason, ExitReport, Handle, Outcome,
    Percentiles, QueuePolicy, RetryPolicy, Shutdown, Stats, TaskError, TaskId, ThreadPool, ThreadPoolBuilder,
    UnitKind, WaitFor,
};

#[escala::task]
fn probe(x: u32) -> u32 {
    x
}

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_unpin<T: Unpin>() {}
fn assert_static<T: 'static>() {}
fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}

/// Fails to compile (ambiguous impl) when `T: Send`, so it asserts `T: !Send`.
trait AmbiguousIfSend<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
struct InvalidSend;
impl<T: ?Sized + Send> AmbiguousIfSend<InvalidSend> for T {}

/// Fails to compile (ambiguous impl) when `T: Sync`, so it asserts `T: !Sync`.
trait AmbiguousIfSync<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
struct InvalidSync;
impl<T: ?Sized + Sync> AmbiguousIfSync<InvalidSync> for T {}

macro_rules! assert_all {
    ($($ty:ty),* $(,)?) => {
        $(
            assert_send::<$ty>();
            assert_sync::<$ty>();
            assert_unpin::<$ty>();
        )*
    };
}

/// Must expand at a concrete type: in a generic function the ambiguity would not arise.
macro_rules! assert_not_send {
    ($ty:ty) => {
        let _ = <$ty as AmbiguousIfSend<_>>::some_item;
    };
}

macro_rules! assert_not_sync {
    ($ty:ty) => {
        let _ = <$ty as AmbiguousIfSync<_>>::some_item;
    };
}

/// Values whose types cannot be named (the closure types inside `Map`) are checked here.
fn require_send_sync_unpin<T: Send + Sync + Unpin>(_: &T) {}

#[test]
fn public_types_are_send_sync_unpin() {
    assert_all!(
        Handle<u32>,
        Handle<String>,
        Handle<()>,
        Handle<Vec<u8>>,
        Outcome<u32>,
        TaskError,
        ErrorKind,
        ExitReason,
        TaskId,
        UnitKind,
        CancelToken,
        ThreadPool,
        ThreadPoolBuilder,
        Stats,
        Percentiles,
        Shutdown,
        QueuePolicy,
        RetryPolicy,
        WaitFor,
        AsCompleted<u32>,
        Call<probe>,
        Event,
        EventKind,
        Subscription,
        ExitGuard,
        ExitReport,
        Rejected<fn() -> u32>,
        escala::thread::Builder,
        escala::process::Builder,
        escala::process::Command,
    );
    assert_static::<Handle<u32>>();
    assert_error::<TaskError>();
    assert_error::<ErrorKind>();
    assert_error::<Rejected<fn() -> u32>>();
}

#[test]
fn handle_needs_only_send_values_to_be_send_and_sync() {
    // `Cell` is `Send` but not `Sync`: a handle of it is still both (one owner reads it).
    assert_send::<Handle<std::cell::Cell<u8>>>();
    assert_sync::<Handle<std::cell::Cell<u8>>>();
    assert_send::<Outcome<std::cell::Cell<u8>>>();
}

/// A `Handle<Rc<_>>` cannot come from any unit (values must be `Send`), but the type exists;
/// it must not be `Send` or `Sync`.
#[test]
fn handle_of_a_non_send_value_is_neither_send_nor_sync() {
    assert_not_send!(Handle<Rc<u8>>);
    assert_not_sync!(Handle<Rc<u8>>);
    assert_not_send!(AsCompleted<Rc<u8>>);
    assert_not_send!(Outcome<Rc<u8>>);
}

#[test]
fn handle_is_a_send_future() {
    fn require_send_future<F: std::future::Future + Send + 'static>(_: &F) {}
    let h = escala::thread::spawn("send-future", || 1u8);
    require_send_future(&h);
    // An async block that awaits a handle stays `Send`, so it can be spawned on tokio.
    let fut = async move { h.await.map(|v| v + 1) };
    require_send_future(&fut);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(rt.block_on(fut).unwrap(), 2);
}

#[test]
fn map_iterators_are_send_sync_unpin() {
    use escala::Executor;
    let pool = ThreadPool::new(1);
    let m = pool.map(|x: u32| x, 0..3u32);
    require_send_sync_unpin(&m);
    let mu = pool.map_unordered(|x: u32| x, 0..3u32);
    require_send_sync_unpin(&mu);
    let mt = pool.map_tasks((0..3).map(probe::call));
    require_send_sync_unpin(&mt);
    let _: Map<_, _, u32> = m;
    let _: MapUnordered<_, _, u32> = mu;
    assert_eq!(mt.map(Result::unwrap).sum::<u32>(), 3);
}

#[test]
fn receiver_from_subscription_can_move_to_a_thread() {
    let sub = escala::events::subscribe();
    let t = std::thread::spawn(move || {
        let _ = sub.try_iter().count();
    });
    t.join().unwrap();
}
