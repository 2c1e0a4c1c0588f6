//! Registered tasks: `#[escala::task]` functions, callable on any unit by a stable name.
//!
//! The attribute keeps the function as it is and adds, in the type namespace under the same
//! name, a descriptor that implements [`Task`]: `fib::call(30)` builds a [`Call`] that any
//! unit accepts. The descriptor is also registered (with `inventory`) so that a re-executed
//! child process can find the function by name. Arguments and results cross process
//! boundaries as `postcard`-encoded serde values: only the declared types are ever decoded.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A function registered with `#[escala::task]`.
///
/// Implemented by the attribute; you do not implement it by hand.
pub trait Task: 'static {
    /// The stable name the task is registered under (`module::path::fn_name` by default).
    const NAME: &'static str;
    /// The arguments: the single argument's type, or a tuple of them.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The value the task returns (the `T` of a `Result<T, E>` return type).
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Runs the function; an `Err` is the function's own error, as text.
    fn run(args: Self::Args) -> Result<Self::Output, String>;
}

/// One call of a registered task with its arguments; nothing runs until a unit gets it.
///
/// # Examples
///
/// ```
/// #[escala::task]
/// fn add(a: i32, b: i32) -> i32 { a + b }
///
/// let call = add::call(2, 3);
/// assert!(call.task_name().ends_with("add"));
/// assert_eq!(call.args(), &(2, 3));
/// ```
pub struct Call<K: Task> {
    args: K::Args,
}

impl<K: Task> Call<K> {
    /// A call of `K` with these arguments.
    pub fn new(args: K::Args) -> Call<K> {
        Call { args }
    }

    /// The registered name of the task.
    pub fn task_name(&self) -> &'static str {
        K::NAME
    }

    /// The arguments.
    pub fn args(&self) -> &K::Args {
        &self.args
    }

    /// Takes the arguments out.
    pub fn into_args(self) -> K::Args {
        self.args
    }
}

impl<K: Task> std::fmt::Debug for Call<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("task", &K::NAME).finish_non_exhaustive()
    }
}

/// What a registered task's entry point answers, before framing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Reply {
    Ok(Vec<u8>),
    Failed(String),
    Panicked {
        message: String,
        location: Option<String>,
    },
    Codec(String),
    Refused(String),
    /// A pool worker dropped a prefetched job that was cancelled before it started.
    Cancelled,
}

impl Reply {
    /// The encoded value, or the error the reply reports.
    pub(crate) fn into_result(self) -> Result<Vec<u8>, crate::ErrorKind> {
        use crate::ErrorKind as K;
        match self {
            Reply::Ok(bytes) => Ok(bytes),
            Reply::Failed(m) => Err(K::Failed(m)),
            Reply::Panicked { message, location } => Err(K::Panicked { message, location }),
            Reply::Codec(m) => Err(K::Codec(m)),
            Reply::Refused(m) => Err(K::Refused(m)),
            Reply::Cancelled => Err(K::Cancelled),
        }
    }
}

/// One entry of the task registry.
#[doc(hidden)]
pub struct Registration {
    pub(crate) name: &'static str,
    pub(crate) invoke: fn(&[u8], &crate::CancelToken) -> Reply,
}

impl Registration {
    #[doc(hidden)]
    pub const fn new<K: Task>() -> Registration {
        Registration { name: K::NAME, invoke: invoke::<K> }
    }
}

inventory::collect!(Registration);

/// Finds a registered task by name.
pub(crate) fn lookup(name: &str) -> Option<&'static Registration> {
    inventory::iter::<Registration>.into_iter().find(|r| r.name == name)
}

/// Runs the task registered as `name` on encoded arguments, in this process.
pub(crate) fn run_by_name(name: &str, args: &[u8], token: &crate::CancelToken) -> Reply {
    match lookup(name) {
        Some(reg) => (reg.invoke)(args, token),
        None => {
            let known = registered_tasks().join(", ");
            Reply::Refused(format!("unknown task `{name}`; this binary registers: [{known}]"))
        }
    }
}

/// The names of every task registered in this binary, sorted.
///
/// # Examples
///
/// ```
/// #[escala::task]
/// fn ping() -> String { "pong".into() }
///
/// assert!(escala::registered_tasks().iter().any(|n| n.ends_with("ping")));
/// ```
pub fn registered_tasks() -> Vec<&'static str> {
    let mut v: Vec<_> = inventory::iter::<Registration>.into_iter().map(|r| r.name).collect();
    v.sort_unstable();
    v
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(value).map_err(|e| e.to_string())
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

fn invoke<K: Task>(args: &[u8], token: &crate::CancelToken) -> Reply {
    let args: K::Args = match decode(args) {
        Ok(a) => a,
        Err(e) => {
            return Reply::Codec(format!("cannot decode the arguments of `{}`: {e}", K::NAME));
        }
    };
    match crate::unwind::run_task_ref(token, || K::run(args)) {
        Ok(Ok(out)) => match encode(&out) {
            Ok(bytes) => Reply::Ok(bytes),
            Err(e) => Reply::Codec(format!("cannot encode the result of `{}`: {e}", K::NAME)),
        },
        Ok(Err(msg)) => Reply::Failed(msg),
        Err(crate::ErrorKind::Panicked { message, location }) => Reply::Panicked { message, location },
        Err(other) => Reply::Failed(other.to_string()),
    }
}
