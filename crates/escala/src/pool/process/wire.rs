//! The messages between a process pool and its workers (see `README.md` in this folder).

use serde::{Deserialize, Serialize};

use crate::task::Reply;

/// Parent to worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// First message: who the parent is, and the initializer to run.
    Hello { build: String, init: Option<(String, Vec<u8>)> },
    /// Run a registered task.
    Job { id: u64, task: String, args: Vec<u8> },
    /// Stop the job `id`: set its token if it runs, drop it if it waits.
    Cancel { id: u64 },
}

/// Worker to parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// Ready for jobs; `init` is the initializer's reply when it did not succeed.
    Ready { pid: u32, init: Option<Reply> },
    /// The job `id` ended.
    Done { id: u64, reply: Reply },
}

/// [`ToWorker`] borrowing its data, for sending without copying the arguments. Same
/// variants in the same order, so the bytes decode as a `ToWorker`.
#[derive(Debug, Serialize)]
pub(crate) enum ToWorkerRef<'a> {
    Hello { build: &'a str, init: Option<(&'a str, Bytes<'a>)> },
    Job { id: u64, task: &'a str, args: Bytes<'a> },
    Cancel { id: u64 },
}

/// A byte slice serialized as bytes (one copy), which postcard encodes like a `Vec<u8>`.
#[derive(Debug)]
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Appends one frame carrying `msg` to `buf`.
pub(crate) fn push_frame(buf: &mut Vec<u8>, kind: crate::process::frame::FrameKind, msg: &impl Serialize) {
    let start = buf.len();
    buf.extend_from_slice(&[0; crate::process::frame::HEADER]);
    let body = postcard::to_extend(msg, std::mem::take(buf))
        .unwrap_or_else(|_| unreachable!("Vec writes cannot fail"));
    *buf = body;
    let len = (buf.len() - start - crate::process::frame::HEADER) as u32;
    crate::process::frame::fill_header(&mut buf[start..start + crate::process::frame::HEADER], kind, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_and_owned_messages_share_a_wire_format() {
        let sent = ToWorkerRef::Job { id: 7, task: "t", args: Bytes(&[1, 2, 3]) };
        let bytes = postcard::to_stdvec(&sent).unwrap();
        let got: ToWorker = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(got, ToWorker::Job { id: 7, task: "t".into(), args: vec![1, 2, 3] });
        let hello = ToWorkerRef::Hello { build: "b", init: Some(("i", Bytes(&[9]))) };
        let got: ToWorker = postcard::from_bytes(&postcard::to_stdvec(&hello).unwrap()).unwrap();
        assert_eq!(got, ToWorker::Hello { build: "b".into(), init: Some(("i".into(), vec![9])) });
    }
}
