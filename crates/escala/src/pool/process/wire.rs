//! The messages between a process pool and its workers (see `README.md` in this folder).

use serde::{Deserialize, Serialize};

use crate::task::Reply;

/// Version of the pool protocol (the messages below), checked by the worker in `Hello`.
/// 2 added `Batch`, `CancelRange` and `Replies`, and the ledger; 3 moved `Cancel` and
/// `CancelRange` to the control socket.
pub(crate) const PROTOCOL: u8 = 3;

/// Parent to worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// First message: who the parent is, and the initializer to run.
    Hello { protocol: u8, build: String, init: Option<(String, Vec<u8>)> },
    /// Run a registered task.
    Job { id: u64, task: String, args: Vec<u8> },
    /// Stop the job `id`: set its token if it runs, drop it if it waits.
    Cancel { id: u64 },
    /// Run a registered task on many arguments, in order: elements `first`, `first + 1`, …
    /// `args` holds each element's encoded arguments as a u32 LE length then the bytes.
    Batch { id: u64, task: String, first: u32, args: Vec<u8> },
    /// Stop the elements `from..to` of batch `id`: set the running one's token, drop the
    /// ones not started (answered `Cancelled`).
    CancelRange { id: u64, from: u32, to: u32 },
}

/// [`ToWorker`] decoded in place by the worker, borrowing from the frame. Same variants in
/// the same order.
#[derive(Debug, Deserialize)]
pub(crate) enum ToWorkerIn<'a> {
    /// Comes once, first: read by the owned [`ToWorker`]; refused here.
    #[allow(dead_code)]
    Hello {
        protocol: u8,
        build: &'a str,
        init: Option<(&'a str, &'a [u8])>,
    },
    Job {
        id: u64,
        task: &'a str,
        args: &'a [u8],
    },
    Cancel {
        id: u64,
    },
    Batch {
        id: u64,
        task: &'a str,
        first: u32,
        args: &'a [u8],
    },
    CancelRange {
        id: u64,
        from: u32,
        to: u32,
    },
}

/// Worker to parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// Ready for jobs; `init` is the initializer's reply when it did not succeed.
    Ready { pid: u32, init: Option<Reply> },
    /// The job `id` ended, after running `ns` nanoseconds in the worker.
    Done { id: u64, reply: Reply, ns: u64 },
    /// Elements `first..first + count` of batch `id` ended: `replies` holds their
    /// postcard-encoded [`Reply`]s, one after the other.
    Replies { id: u64, first: u32, count: u32, replies: Vec<u8> },
}

/// [`FromWorker`] decoded in place, borrowing the values from the frame. Same variants in
/// the same order.
#[derive(Debug, Deserialize)]
pub(crate) enum FromWorkerRef<'a> {
    /// Comes once, before any job: read by the owned [`FromWorker`]; refused here.
    #[allow(dead_code)]
    Ready {
        pid: u32,
        init: Option<Reply>,
    },
    Done {
        id: u64,
        #[serde(borrow)]
        reply: ReplyRef<'a>,
        ns: u64,
    },
    Replies {
        id: u64,
        first: u32,
        count: u32,
        replies: &'a [u8],
    },
}

/// The head of a [`FromWorker::Replies`] frame: the same encoding up to the replies' byte
/// length, so the replies themselves can follow from another buffer (the worker's ledger).
#[derive(Debug, Serialize)]
pub(crate) enum RepliesHead {
    _Ready,
    _Done,
    Replies { id: u64, first: u32, count: u32, len: u64 },
}

/// A [`Reply`] borrowing its value, decoded in place. Same variants in the same order.
#[derive(Debug, Deserialize)]
pub(crate) enum ReplyRef<'a> {
    Ok(&'a [u8]),
    Failed(String),
    Panicked { message: String, location: Option<String> },
    Codec(String),
    Refused(String),
    Cancelled,
}

impl<'a> ReplyRef<'a> {
    /// A view of an owned reply.
    pub(crate) fn of(r: &'a Reply) -> ReplyRef<'a> {
        match r {
            Reply::Ok(bytes) => ReplyRef::Ok(bytes),
            Reply::Failed(m) => ReplyRef::Failed(m.clone()),
            Reply::Panicked { message, location } => {
                ReplyRef::Panicked { message: message.clone(), location: location.clone() }
            }
            Reply::Codec(m) => ReplyRef::Codec(m.clone()),
            Reply::Refused(m) => ReplyRef::Refused(m.clone()),
            Reply::Cancelled => ReplyRef::Cancelled,
        }
    }

    /// An owned copy.
    pub(crate) fn into_reply(self) -> Reply {
        match self {
            ReplyRef::Ok(bytes) => Reply::Ok(bytes.to_vec()),
            ReplyRef::Failed(m) => Reply::Failed(m),
            ReplyRef::Panicked { message, location } => Reply::Panicked { message, location },
            ReplyRef::Codec(m) => Reply::Codec(m),
            ReplyRef::Refused(m) => Reply::Refused(m),
            ReplyRef::Cancelled => Reply::Cancelled,
        }
    }

    /// The encoded value, or the error the reply reports.
    pub(crate) fn into_result(self) -> Result<&'a [u8], crate::ErrorKind> {
        use crate::ErrorKind as K;
        match self {
            ReplyRef::Ok(bytes) => Ok(bytes),
            ReplyRef::Failed(m) => Err(K::Failed(m)),
            ReplyRef::Panicked { message, location } => Err(K::Panicked { message, location }),
            ReplyRef::Codec(m) => Err(K::Codec(m)),
            ReplyRef::Refused(m) => Err(K::Refused(m)),
            ReplyRef::Cancelled => Err(K::Cancelled),
        }
    }
}

/// Splits `count` encoded replies off `blob`; a malformed one ends the list.
pub(crate) fn split_replies(mut blob: &[u8], count: u32) -> Vec<ReplyRef<'_>> {
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        match postcard::take_from_bytes::<ReplyRef<'_>>(blob) {
            Ok((r, rest)) => {
                out.push(r);
                blob = rest;
            }
            Err(_) => break,
        }
    }
    out
}

/// Splits a batch's argument blob into each element's encoded arguments.
pub(crate) fn split_args(mut blob: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        let arg = blob.get(4..4 + len)?;
        blob = &blob[4 + len..];
        Some(arg)
    })
}

/// [`ToWorker`] borrowing its data, for sending without copying the arguments. Same
/// variants in the same order, so the bytes decode as a `ToWorker`.
#[derive(Debug, Serialize)]
pub(crate) enum ToWorkerRef<'a> {
    Hello { protocol: u8, build: &'a str, init: Option<(&'a str, Bytes<'a>)> },
    Job { id: u64, task: &'a str, args: Bytes<'a> },
    Cancel { id: u64 },
    Batch { id: u64, task: &'a str, first: u32, args: Bytes<'a> },
    CancelRange { id: u64, from: u32, to: u32 },
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
    // The pool's own messages always encode (no maps of unknown length, no failing types).
    crate::task::encode_into(msg, &mut *buf).unwrap_or_else(|e| unreachable!("a pool message: {e}"));
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
        let hello = ToWorkerRef::Hello { protocol: 2, build: "b", init: Some(("i", Bytes(&[9]))) };
        let got: ToWorker = postcard::from_bytes(&postcard::to_stdvec(&hello).unwrap()).unwrap();
        let want = ToWorker::Hello { protocol: 2, build: "b".into(), init: Some(("i".into(), vec![9])) };
        assert_eq!(got, want);
        let batch = ToWorkerRef::Batch { id: 3, task: "t", first: 2, args: Bytes(&[4, 0, 0, 0, 1, 2, 3, 4]) };
        let got: ToWorker = postcard::from_bytes(&postcard::to_stdvec(&batch).unwrap()).unwrap();
        let args = vec![4, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(split_args(&args).collect::<Vec<_>>(), vec![&[1u8, 2, 3, 4][..]]);
        assert_eq!(got, ToWorker::Batch { id: 3, task: "t".into(), first: 2, args });
        let job = postcard::to_stdvec(&ToWorkerRef::Job { id: 5, task: "k", args: Bytes(&[8, 9]) }).unwrap();
        let got: ToWorkerIn<'_> = postcard::from_bytes(&job).unwrap();
        assert!(matches!(got, ToWorkerIn::Job { id: 5, task: "k", args: &[8, 9] }));
        let c = postcard::to_stdvec(&ToWorkerRef::CancelRange { id: 1, from: 2, to: 3 }).unwrap();
        assert!(matches!(
            postcard::from_bytes(&c).unwrap(),
            ToWorkerIn::CancelRange { id: 1, from: 2, to: 3 }
        ));
    }

    #[test]
    fn a_replies_head_and_its_replies_decode_as_one_message() {
        let replies = [Reply::Ok(vec![7, 8]), Reply::Failed("no".into()), Reply::Cancelled];
        let mut blob = Vec::new();
        for r in &replies {
            blob.extend(postcard::to_stdvec(r).unwrap());
        }
        let head = RepliesHead::Replies { id: 300, first: 5, count: 3, len: blob.len() as u64 };
        let mut bytes = postcard::to_stdvec(&head).unwrap();
        bytes.extend(&blob);
        let got: FromWorker = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(got, FromWorker::Replies { id: 300, first: 5, count: 3, replies: blob.clone() });
        let back = split_replies(&blob, 3);
        assert_eq!(back.len(), 3);
        assert!(matches!(back[0], ReplyRef::Ok(&[7, 8])));
        assert!(matches!(&back[1], ReplyRef::Failed(m) if m == "no"));
        assert!(matches!(back[2], ReplyRef::Cancelled));
    }
}
