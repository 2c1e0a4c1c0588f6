//! [`StoredResult`]: a task's result as Redis keeps it for the result TTL (the hash
//! `escala:result:{task}`: `m` the result message, `s` its signature, `j` what ran), and
//! reading it by task id.

use std::collections::HashMap;

use escala::ErrorKind;
use serde::de::DeserializeOwned;

use crate::wire::{self, CommandOutput, ResultMsg, Signer};
use crate::{Error, conn, keys};

/// One task's kept result.
///
/// # Examples
///
/// ```no_run
/// let r = escala_redis::Server::new("redis://127.0.0.1:6379").result("1f2e3d4c5b6a7988-7")?;
/// match r {
///     None => println!("no result (yet)"),
///     Some(r) if r.is_command() => println!("{:?}", r.command_output()),
///     Some(r) => println!("{}: {:?}", r.job, r.value::<u64>()),
/// }
/// # Ok::<(), escala_redis::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResult {
    /// The task id (`{client_id}-{n}`).
    pub task: String,
    /// What ran: `task NAME` or `command PROGRAM ARGS…` (cut at 200 bytes).
    pub job: String,
    /// The run that produced it (1 for the first).
    pub attempt: u32,
    /// The encoded value (the task's return value, or a [`CommandOutput`]), or why there is
    /// none.
    pub outcome: Result<Vec<u8>, ErrorKind>,
}

impl StoredResult {
    /// The value decoded as `T` (the task's output type), or the task's error.
    ///
    /// # Errors
    ///
    /// The task's own error, or `Codec` when the value is not a `T`.
    pub fn value<T: DeserializeOwned>(&self) -> Result<T, ErrorKind> {
        match &self.outcome {
            Ok(bytes) => escala::remote::decode(bytes)
                .map_err(|e| ErrorKind::Codec(format!("cannot decode the result: {e}"))),
            Err(kind) => Err(kind.clone()),
        }
    }

    /// True when an external command (not a registered task) ran.
    pub fn is_command(&self) -> bool {
        self.job.starts_with("command ")
    }

    /// What the command produced, for a command's result (`None` for a task's).
    ///
    /// # Errors
    ///
    /// Why the command produced nothing (refused, cancelled, could not start, …).
    pub fn command_output(&self) -> Option<Result<CommandOutput, ErrorKind>> {
        self.is_command().then(|| self.value::<CommandOutput>())
    }
}

/// Reads the result of `task` with `client`, checking its signature with `signer`.
pub(crate) fn fetch(
    client: &redis::Client,
    url: &str,
    task: &str,
    signer: &Signer,
    max_bytes: usize,
) -> Result<Option<StoredResult>, Error> {
    if !keys::valid_name(task) {
        return Err(Error::config(format!(
            "bad task id `{task}`: a task id is the caller's client id, `-` and a number"
        )));
    }
    let mut c = conn::connect_once(client, url)?;
    let fields: HashMap<String, Vec<u8>> =
        redis::cmd("HGETALL").arg(keys::result(task)).query(&mut c).map_err(|e| Error::command(url, e))?;
    let Some(msg) = fields.get(wire::MSG) else { return Ok(None) };
    let bad = |why: String| Error::stored(format!("the result kept for task {task} is refused: {why}"));
    signer.verify(msg, fields.get(wire::SIG).map(Vec::as_slice)).map_err(bad)?;
    let r: ResultMsg = wire::decode(msg, max_bytes + 4096).map_err(bad)?;
    let job = fields.get("j").map(|j| String::from_utf8_lossy(j).into_owned()).unwrap_or_default();
    Ok(Some(StoredResult {
        task: r.id,
        job,
        attempt: r.attempt,
        outcome: r.outcome.map_err(wire::WireError::into_kind),
    }))
}
