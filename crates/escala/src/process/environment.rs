//! [`Environment`]: an environment captured once, for commands started many times.

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// An environment captured once (`KEY=VALUE` strings ready for `exec`), for a program that
/// starts many commands: given to [`Command::environment`](super::Command::environment), it
/// spares each start from copying this process's whole environment, which `std` does for a
/// command whose environment is changed. Cheap to clone.
///
/// # Examples
///
/// ```
/// use escala::process::{Command, Environment};
/// let env = Environment::current();
/// assert!(env.get("PATH").is_some());
/// let h = Command::new("sh").args(["-c", "test \"$GREETING\" = hi"]).environment(&env).env("GREETING", "hi").spawn();
/// assert!(h.join().is_ok());
/// ```
#[derive(Clone, Default)]
pub struct Environment {
    vars: Arc<[CString]>,
}

impl Environment {
    /// This process's environment, now. Variables that cannot be passed on (a NUL inside)
    /// are left out.
    pub fn current() -> Environment {
        Environment::from_vars(std::env::vars_os())
    }

    /// An environment holding exactly `vars`.
    pub fn from_vars<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Environment {
        let vars = vars.into_iter().filter_map(|(k, v)| entry(k.as_ref(), v.as_ref())).collect();
        Environment { vars }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: impl AsRef<OsStr>) -> Option<&OsStr> {
        let key = key.as_ref().as_bytes();
        self.vars.iter().find_map(|kv| value_of(kv.to_bytes(), key)).map(OsStr::from_bytes)
    }

    /// The `KEY=VALUE` strings for `exec`, with `changes` applied in order (`None` removes
    /// the key; of several changes to one key, the last counts).
    pub(crate) fn envp<'a>(&'a self, changes: &'a [(CString, Option<CString>)]) -> Vec<&'a CStr> {
        let changed =
            |kv: &CStr| changes.iter().any(|(k, _)| value_of(kv.to_bytes(), k.to_bytes()).is_some());
        let mut envp: Vec<&CStr> =
            self.vars.iter().map(CString::as_c_str).filter(|kv| !changed(kv)).collect();
        let last = |i: usize| changes[i + 1..].iter().all(|(k, _)| *k != changes[i].0);
        envp.extend((0..changes.len()).filter(|&i| last(i)).filter_map(|i| changes[i].1.as_deref()));
        envp
    }

    /// Its variables as key-value pairs.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars.iter().map(|kv| {
            let kv = kv.to_bytes();
            let eq = kv.iter().position(|&b| b == b'=').unwrap_or(kv.len());
            (OsStr::from_bytes(&kv[..eq]), OsStr::from_bytes(kv.get(eq + 1..).unwrap_or_default()))
        })
    }
}

/// One change to an environment: the key, and `KEY=VALUE` (`None`: remove the key).
/// `None` altogether when either holds a NUL.
pub(crate) fn change(key: &OsStr, value: Option<&OsStr>) -> Option<(CString, Option<CString>)> {
    let k = CString::new(key.as_bytes()).ok()?;
    match value {
        Some(v) => Some((k, Some(entry(key, v)?))),
        None => Some((k, None)),
    }
}

/// `KEY=VALUE`; `None` when either holds a NUL.
fn entry(key: &OsStr, value: &OsStr) -> Option<CString> {
    let mut kv: Vec<u8> = key.as_bytes().to_vec();
    kv.push(b'=');
    kv.extend_from_slice(value.as_bytes());
    CString::new(kv).ok()
}

/// The value in `KEY=VALUE` when its key is `key`.
fn value_of<'a>(kv: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    kv.strip_prefix(key)?.strip_prefix(b"=")
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment").field("vars", &self.vars.len()).finish()
    }
}
