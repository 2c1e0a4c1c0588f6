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
    /// Written as bytes, in one copy (postcard lays a byte sequence and bytes out alike:
    /// a length, then the bytes; serde's `Vec<u8>` would write them one at a time).
    Ok(#[serde(serialize_with = "as_bytes")] Vec<u8>),
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

fn as_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
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

/// A byte buffer postcard can append to with `push` and `extend_from_slice` (its own
/// `to_extend` goes through `Extend`, a call per byte).
pub(crate) trait Buf {
    fn push(&mut self, b: u8);
    fn extend_from_slice(&mut self, s: &[u8]);
}

impl Buf for Vec<u8> {
    fn push(&mut self, b: u8) {
        Vec::push(self, b);
    }
    fn extend_from_slice(&mut self, s: &[u8]) {
        Vec::extend_from_slice(self, s);
    }
}

impl<A: smallvec::Array<Item = u8>> Buf for smallvec::SmallVec<A> {
    fn push(&mut self, b: u8) {
        smallvec::SmallVec::push(self, b);
    }
    fn extend_from_slice(&mut self, s: &[u8]) {
        smallvec::SmallVec::extend_from_slice(self, s);
    }
}

/// Appending through a borrow leaves the buffer with its caller when encoding fails.
impl<B: Buf> Buf for &mut B {
    fn push(&mut self, b: u8) {
        (**self).push(b);
    }
    fn extend_from_slice(&mut self, s: &[u8]) {
        (**self).extend_from_slice(s);
    }
}

/// postcard's output appended to a [`Buf`].
struct Append<B>(B);

impl<B: Buf> postcard::ser_flavors::Flavor for Append<B> {
    type Output = B;

    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.0.push(b);
        Ok(())
    }

    fn try_extend(&mut self, s: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(s);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<B> {
        Ok(self.0)
    }
}

/// Encodes `value` at the end of `buf` (a reused or inline buffer) and hands it back.
pub(crate) fn encode_into<T: Serialize, B: Buf>(value: &T, buf: B) -> Result<B, String> {
    postcard::serialize_with_flavor(value, Append(buf)).map_err(|e| e.to_string())
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    encode_into(value, Vec::new())
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

thread_local! {
    /// A value buffer given back by [`recycle`], for this thread's next result.
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Gives a reply's value buffer back once its bytes are copied out (a pool worker's batch
/// stages each element's reply in its ledger), so that the next result encoded on this
/// thread needs no allocation. A buffer over 4 KiB is freed instead.
pub(crate) fn recycle(reply: Reply) {
    if let Reply::Ok(mut bytes) = reply
        && bytes.capacity() <= 4096
    {
        bytes.clear();
        SPARE.set(bytes);
    }
}

fn invoke<K: Task>(args: &[u8], token: &crate::CancelToken) -> Reply {
    let args: K::Args = match decode(args) {
        Ok(a) => a,
        Err(e) => {
            return Reply::Codec(format!("cannot decode the arguments of `{}`: {e}", K::NAME));
        }
    };
    match crate::unwind::run_task_ref(token, || K::run(args)) {
        Ok(Ok(out)) => match encode_into(&out, SPARE.take()) {
            Ok(bytes) => Reply::Ok(bytes),
            Err(e) => Reply::Codec(format!("cannot encode the result of `{}`: {e}", K::NAME)),
        },
        Ok(Err(msg)) => Reply::Failed(msg),
        Err(crate::ErrorKind::Panicked { message, location }) => Reply::Panicked { message, location },
        Err(other) => Reply::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Reply::Ok` writes its bytes in one piece, and the frames stay what they were: the
    /// same bytes as serde's element-by-element `Vec<u8>`, decoded back the same.
    #[test]
    fn a_replys_value_bytes_encode_as_a_byte_sequence_did() {
        #[derive(serde::Serialize)]
        enum AsSequence {
            Ok(Vec<u8>),
        }
        for len in [0usize, 1, 127, 128, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let now = encode(&Reply::Ok(bytes.clone())).unwrap();
            assert_eq!(now, encode(&AsSequence::Ok(bytes.clone())).unwrap(), "{len} bytes");
            assert_eq!(decode::<Reply>(&now).unwrap(), Reply::Ok(bytes));
        }
    }
}
