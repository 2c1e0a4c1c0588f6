//! The minimal process pool over pipes: the "limit" peer of W2.
//!
//! Each worker is this very binary re-executed (`/proc/self/exe`, like escala's workers),
//! with a request pipe as its stdin and a reply pipe as its stdout. A request is one
//! little-endian `u64` `x`; the reply is `x + 1`, in order. Nothing else: no task names, no
//! framing, no per-task handle, no crash handling. Tasks go to the workers round-robin, and
//! one reader thread per worker takes the replies and checks every one of them.
//!
//! Three ways of moving the tasks ([`Mode`]):
//! - [`Mode::OneByOne`]: every task is its own message, written with its own `write(2)` in
//!   both directions (reads take whatever is in the pipe, up to 64 KiB);
//! - [`Mode::Unbuffered`]: the same, and every message is also read with its own `read(2)`
//!   on both sides (a diagnostic: 4 system calls per task);
//! - [`Mode::Chunked`]: `n` tasks per `write(2)` from the parent; the worker answers each
//!   read with one `write(2)`.
//!
//! A binary that uses the pool calls [`serve_if_worker`] first thing in `main`: in a worker
//! it serves requests until its stdin closes, then exits.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Set in a worker's environment; the value is the [`Mode`] (`1` one by one, or the chunk
/// size).
const WORKER_ENV: &str = "ESCALA_BENCH_PIPE_WORKER";

/// Size of one request or reply.
const MSG: usize = 8;

/// How tasks travel between the parent and the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One `write(2)` per task, in both directions.
    OneByOne,
    /// One `write(2)` and one `read(2)` per task, on both sides.
    Unbuffered,
    /// This many tasks per `write(2)` from the parent; one reply `write(2)` per worker read.
    Chunked(usize),
}

impl Mode {
    fn env_value(self) -> String {
        match self {
            Mode::OneByOne => "1".into(),
            Mode::Unbuffered => "u".into(),
            Mode::Chunked(n) => n.max(1).to_string(),
        }
    }
}

/// In a pipe-pool worker, serves requests until stdin closes, then exits the process.
/// Elsewhere, returns at once. Call it first thing in `main`.
pub fn serve_if_worker() {
    let Some(mode) = std::env::var_os(WORKER_ENV) else { return };
    let one_by_one = mode == "1";
    // Raw stdin and stdout: std's `Stdout` is line-buffered and takes a lock per call.
    let stdin = std::io::stdin().as_fd().try_clone_to_owned().expect("stdin");
    let stdout = std::io::stdout().as_fd().try_clone_to_owned().expect("stdout");
    let mut input = File::from(stdin);
    let mut output = File::from(stdout);
    if mode == "u" {
        let mut msg = [0u8; MSG];
        while input.read_exact(&mut msg).is_ok() {
            let x = u64::from_le_bytes(msg);
            if output.write_all(&(x + 1).to_le_bytes()).is_err() {
                break;
            }
        }
        std::process::exit(0);
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut replies: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut have = 0;
    loop {
        let n = match input.read(&mut buf[have..]) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(n) => n,
        };
        have += n;
        let whole = have - have % MSG;
        replies.clear();
        for req in buf[..whole].chunks_exact(MSG) {
            let x = u64::from_le_bytes(req.try_into().expect("8 bytes"));
            let reply = (x + 1).to_le_bytes();
            if one_by_one {
                if output.write_all(&reply).is_err() {
                    std::process::exit(0);
                }
            } else {
                replies.extend_from_slice(&reply);
            }
        }
        if !one_by_one && output.write_all(&replies).is_err() {
            std::process::exit(0);
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
}

struct Worker {
    child: Child,
    requests: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
}

/// A pool of worker processes answering `x + 1` over pipes.
pub struct PipePool {
    mode: Mode,
    workers: Vec<Worker>,
}

impl PipePool {
    /// Starts `n` workers (re-executions of this binary, which must call
    /// [`serve_if_worker`] first thing in `main`).
    ///
    /// # Panics
    ///
    /// If a worker cannot be started.
    pub fn new(n: usize, mode: Mode) -> PipePool {
        let workers = (0..n.max(1))
            .map(|_| {
                let mut child = Command::new("/proc/self/exe")
                    .env(WORKER_ENV, mode.env_value())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("cannot re-execute this binary");
                let requests = child.stdin.take();
                let replies = BufReader::with_capacity(64 << 10, child.stdout.take().expect("piped stdout"));
                Worker { child, requests, replies }
            })
            .collect();
        let mut pool = PipePool { mode, workers };
        // One round trip per worker, so a pool is ready when `new` returns.
        pool.run(n.max(1) as u64);
        pool
    }

    /// Runs the tasks `0..n` (task `i` on worker `i % size`) and checks that every reply
    /// is `i + 1`. Returns the sum of the replies.
    ///
    /// # Panics
    ///
    /// If a worker is gone or a reply is wrong.
    pub fn run(&mut self, n: u64) -> u64 {
        let size = self.workers.len() as u64;
        let mode = self.mode;
        std::thread::scope(|s| {
            let mut pipes: Vec<&ChildStdin> = Vec::with_capacity(self.workers.len());
            let mut readers = Vec::with_capacity(self.workers.len());
            for (w, Worker { requests, replies, .. }) in self.workers.iter_mut().enumerate() {
                pipes.push(requests.as_ref().expect("running"));
                let first = w as u64;
                readers.push(s.spawn(move || {
                    let mut sum = 0u64;
                    let mut msg = [0u8; MSG];
                    let mut i = first;
                    while i < n {
                        if mode == Mode::Unbuffered {
                            replies.get_mut().read_exact(&mut msg).expect("worker gone");
                        } else {
                            replies.read_exact(&mut msg).expect("worker gone");
                        }
                        let v = u64::from_le_bytes(msg);
                        assert_eq!(v, i + 1, "pipe pool: wrong reply");
                        sum += v;
                        i += size;
                    }
                    sum
                }));
            }
            match mode {
                Mode::OneByOne | Mode::Unbuffered => {
                    for i in 0..n {
                        pipes[(i % size) as usize].write_all(&i.to_le_bytes()).expect("worker gone");
                    }
                }
                Mode::Chunked(chunk) => {
                    // Worker `w` gets the tasks `w, w + size, ...`, `chunk` of them per write.
                    let chunk = chunk.max(1);
                    let mut bufs: Vec<Vec<u8>> = (0..size).map(|_| Vec::with_capacity(chunk * MSG)).collect();
                    for i in 0..n {
                        let w = (i % size) as usize;
                        bufs[w].extend_from_slice(&i.to_le_bytes());
                        if bufs[w].len() == chunk * MSG {
                            pipes[w].write_all(&bufs[w]).expect("worker gone");
                            bufs[w].clear();
                        }
                    }
                    for (pipe, buf) in pipes.iter_mut().zip(&bufs) {
                        if !buf.is_empty() {
                            pipe.write_all(buf).expect("worker gone");
                        }
                    }
                }
            }
            readers.into_iter().map(|r| r.join().expect("reader")).sum()
        })
    }
}

impl Drop for PipePool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            drop(w.requests.take()); // EOF: the worker exits
        }
        for w in &mut self.workers {
            let _ = w.child.wait();
        }
    }
}
