//! The frame protocol between a parent and a child process unit.
//!
//! A frame is a 12-byte header — magic `ESCF`, protocol version (u8), kind (u8), two
//! reserved bytes, payload length (u32, little endian) — followed by the payload, a
//! `postcard`-encoded [`Request`] or [`crate::task::Reply`]. The reader checks the length
//! against its cap before allocating, so a corrupt or hostile header cannot make it
//! allocate more than the cap.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

const MAGIC: [u8; 4] = *b"ESCF";
/// Version of the frame protocol; a peer with another version is refused.
pub(crate) const VERSION: u8 = 1;
/// Size of a frame header.
pub(crate) const HEADER: usize = 12;

/// Default cap on one frame's payload: 64 MiB.
pub(crate) const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// What kind of payload a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FrameKind {
    Request = 1,
    Reply = 2,
    /// Pool messages from the parent to a worker.
    ToWorker = 3,
    /// Pool messages from a worker to the parent.
    FromWorker = 4,
}

/// The parent's request: run this task with these encoded arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) build: String,
    pub(crate) task: String,
    pub(crate) args: Vec<u8>,
    pub(crate) max_reply: u64,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("the stream ended in the middle of a frame")]
    Truncated,
    #[error("not an escala frame (bad magic)")]
    BadMagic,
    #[error("frame protocol version {0} is not {VERSION}")]
    BadVersion(u8),
    #[error("unexpected frame kind {0}")]
    BadKind(u8),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
}

/// Writes one frame and flushes.
pub(crate) fn write_frame(w: &mut impl Write, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
    write_frame_unflushed(w, kind, payload)?;
    w.flush()
}

/// Writes one frame into a buffered writer, leaving the flush to the caller.
pub(crate) fn write_frame_unflushed(w: &mut impl Write, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 4 GiB"))?;
    let mut header = [0u8; HEADER];
    fill_header(&mut header, kind, len);
    w.write_all(&header)?;
    w.write_all(payload)
}

/// Writes a header for a payload of `len` bytes into `header` (12 bytes).
pub(crate) fn fill_header(header: &mut [u8], kind: FrameKind, len: u32) {
    header[..4].copy_from_slice(&MAGIC);
    header[4] = VERSION;
    header[5] = kind as u8;
    header[6..8].fill(0);
    header[8..12].copy_from_slice(&len.to_le_bytes());
}

/// Whether `buf` starts with a whole frame (header and payload), so that reading it takes
/// nothing more from the stream. The header is not checked.
pub(crate) fn starts_whole(buf: &[u8]) -> bool {
    buf.len() >= HEADER
        && buf.len() - HEADER >= u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize
}

/// Reads one frame of `kind`. `Ok(None)` means the stream ended cleanly before a header.
pub(crate) fn read_frame(
    r: &mut impl Read,
    kind: FrameKind,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut payload = Vec::new();
    Ok(read_frame_into(r, kind, max, &mut payload)?.then_some(payload))
}

/// Reads one frame of `kind` into `payload` (replacing its contents, reusing its memory).
/// `Ok(false)` means the stream ended cleanly before a header.
pub(crate) fn read_frame_into(
    r: &mut impl Read,
    kind: FrameKind,
    max: usize,
    payload: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && got == 0 => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    if header[..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(FrameError::BadVersion(header[4]));
    }
    if header[5] != kind as u8 {
        return Err(FrameError::BadKind(header[5]));
    }
    let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len: len as u64, max });
    }
    payload.clear();
    payload.resize(len, 0);
    r.read_exact(payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_whole_needs_the_header_and_the_whole_payload() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Request, b"abc").unwrap();
        assert!(starts_whole(&buf));
        assert!(!starts_whole(&buf[..buf.len() - 1]));
        assert!(!starts_whole(&buf[..HEADER - 1]));
        assert!(!starts_whole(&[]));
        buf.extend_from_slice(&buf.clone()[..5]);
        assert!(starts_whole(&buf), "a partial frame after a whole one");
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Reply, b"hello").unwrap();
        let got = read_frame(&mut &buf[..], FrameKind::Reply, 16).unwrap();
        assert_eq!(got.as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn empty_stream_is_clean_eof() {
        assert!(read_frame(&mut &[][..], FrameKind::Reply, 16).unwrap().is_none());
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Reply, &[0u8; 32]).unwrap();
        let err = read_frame(&mut &buf[..], FrameKind::Reply, 16).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 32, max: 16 }));
    }

    #[test]
    fn corrupt_frames_are_errors() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Reply, b"abc").unwrap();
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(matches!(read_frame(&mut &bad[..], FrameKind::Reply, 16), Err(FrameError::BadMagic)));
        let mut bad = buf.clone();
        bad[4] = 9;
        assert!(matches!(read_frame(&mut &bad[..], FrameKind::Reply, 16), Err(FrameError::BadVersion(9))));
        assert!(matches!(read_frame(&mut &buf[..], FrameKind::Request, 16), Err(FrameError::BadKind(2))));
        assert!(matches!(read_frame(&mut &buf[..5], FrameKind::Reply, 16), Err(FrameError::Truncated)));
        assert!(matches!(read_frame(&mut &buf[..13], FrameKind::Reply, 16), Err(FrameError::Truncated)));
    }
}
