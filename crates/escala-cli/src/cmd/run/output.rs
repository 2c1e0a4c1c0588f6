//! A job's output: captured in temporary files (`--group`, bounded memory) or whole lines
//! through pipes (`--line-buffer`) or passed through (`-u`); tags, `-k` order and
//! `--results DIR`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::Path;
use std::rc::Rc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use crate::config::run::OutputMode;

/// Where a running job's stdout and stderr go.
pub(crate) enum Capture {
    /// Temporary files, printed when the job ends.
    Files(File, File),
    /// Whole lines printed by reader threads as they come; they count the stdout bytes.
    Lines(Arc<AtomicU64>),
    /// Inherited.
    Through,
    /// Read back into memory: output held for `-k` behind many others, so that waiting
    /// jobs do not hold two file descriptors each.
    Memory(Vec<u8>, Vec<u8>),
}

/// A job's stdout and stderr: the files or pipe ends it writes to, or their read ends.
pub(crate) type Streams = [File; 2];

impl Capture {
    /// Makes the capture for one job, the child's stdout and stderr (`None`: escala's), and
    /// in line mode the read ends of its pipes.
    pub(crate) fn new(
        mode: OutputMode,
        pool: &FilePool,
    ) -> anyhow::Result<(Capture, Option<Streams>, Option<Streams>)> {
        match mode {
            OutputMode::Group => {
                let (out, err) = match pool.take() {
                    Some(pair) => pair,
                    None => {
                        let new = || {
                            tempfile::tempfile().context("cannot create a temporary file for a job's output")
                        };
                        (new()?, new()?)
                    }
                };
                let (o, e) = (out.try_clone()?, err.try_clone()?);
                Ok((Capture::Files(out, err), Some([o, e]), None))
            }
            OutputMode::LineBuffer => {
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                let count = Arc::new(AtomicU64::new(0));
                Ok((Capture::Lines(count), Some([out_w, err_w]), Some([out_r, err_r])))
            }
            OutputMode::Ungroup => Ok((Capture::Through, None, None)),
        }
    }

    /// Bytes the job wrote to stdout and to stderr (stderr is counted only in files;
    /// neither with `-u`).
    pub(crate) fn lens(&self) -> (u64, u64) {
        match self {
            // The job has ended: the end of each file is its length (an `lseek`, cheaper than
            // a `statx`); whoever reads the file rewinds it first.
            Capture::Files(out, err) => {
                let end = |mut f: &File| f.seek(std::io::SeekFrom::End(0)).unwrap_or(0);
                (end(out), end(err))
            }
            Capture::Lines(n) => (n.load(Ordering::Relaxed), 0),
            Capture::Through => (0, 0),
            Capture::Memory(out, err) => (out.len() as u64, err.len() as u64),
        }
    }

    /// Moves captured files into memory (other captures stay as they are).
    fn into_memory(self) -> anyhow::Result<Capture> {
        let Capture::Files(mut out, mut err) = self else { return Ok(self) };
        let (mut o, mut e) = (Vec::new(), Vec::new());
        out.rewind()?;
        out.read_to_end(&mut o)?;
        err.rewind()?;
        err.read_to_end(&mut e)?;
        Ok(Capture::Memory(o, e))
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> anyhow::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    Ok((File::from(r), File::from(w)))
}

/// A job's stdin for `--pipe`: a pipe that a thread fills with `data`, then closes.
pub(crate) fn feed(data: Arc<[u8]>) -> anyhow::Result<File> {
    let (r, mut w) = pipe()?;
    std::thread::Builder::new()
        .name("escala-feed".into())
        .spawn(move || {
            // A job that stops reading ends this write with EPIPE; that is its business.
            let _ = w.write_all(&data);
        })
        .context("cannot start a thread for a job's input")?;
    Ok(r)
}

/// Emptied temporary files, kept for the next jobs' output (shared by the scheduler, which
/// takes them, and the printer, which gives them back).
#[derive(Default, Clone)]
pub(crate) struct FilePool(Rc<RefCell<Vec<(File, File)>>>);

impl FilePool {
    fn take(&self) -> Option<(File, File)> {
        self.0.borrow_mut().pop()
    }

    /// Empties a job's files (holding `lens` bytes) and keeps them (a few at most).
    pub(crate) fn put(&self, capture: Capture, lens: (u64, u64)) {
        let mut files = self.0.borrow_mut();
        let Capture::Files(mut out, mut err) = capture else { return };
        let empty =
            |f: &mut File, len: u64| if len == 0 { Ok(()) } else { f.set_len(0).and_then(|_| f.rewind()) };
        let emptied = empty(&mut out, lens.0).and_then(|_| empty(&mut err, lens.1));
        if files.len() < 64 && emptied.is_ok() {
            files.push((out, err));
        }
    }
}

/// Copies `src` to `dst`, each line prefixed with `tag` and a tab when there is a tag.
fn copy_tagged(mut src: impl Read, dst: &mut impl Write, tag: Option<&str>) -> std::io::Result<()> {
    let Some(tag) = tag else {
        std::io::copy(&mut src, dst)?;
        return Ok(());
    };
    let mut r = BufReader::new(src);
    let mut line = Vec::new();
    while r.read_until(b'\n', &mut line)? > 0 {
        dst.write_all(tag.as_bytes())?;
        dst.write_all(b"\t")?;
        dst.write_all(&line)?;
        line.clear();
    }
    Ok(())
}

/// Starts a thread that prints whole lines from a job's pipe as they come, counting the
/// bytes in `count` (when given); `done` runs at end of file.
pub(crate) fn line_reader(
    src: File,
    to_stderr: bool,
    tag: Option<String>,
    count: Option<Arc<AtomicU64>>,
    done: impl FnOnce() + Send + 'static,
) -> anyhow::Result<()> {
    let spawned = std::thread::Builder::new().name("escala-lines".into()).spawn(move || {
        let mut r = BufReader::new(src);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if let Some(c) = &count {
                c.fetch_add(line.len() as u64, Ordering::Relaxed);
            }
            let mut buf = Vec::with_capacity(line.len() + 16);
            if let Some(t) = &tag {
                buf.extend_from_slice(t.as_bytes());
                buf.push(b'\t');
            }
            buf.extend_from_slice(&line);
            let _ = if to_stderr {
                std::io::stderr().lock().write_all(&buf)
            } else {
                std::io::stdout().lock().write_all(&buf)
            };
            line.clear();
        }
        done();
    });
    spawned.map(drop).context("cannot start a thread for the output")
}

/// A finished job's output waiting to be printed.
pub(crate) struct Done {
    pub(crate) capture: Capture,
    pub(crate) tag: Option<String>,
    /// Bytes in the captured stdout and stderr.
    pub(crate) lens: (u64, u64),
}

/// Outputs held for `-k` in files before further ones are held in memory.
const HELD_IN_FILES: usize = 64;

/// Prints finished jobs' output: at once, or in input order with `-k`.
pub(crate) struct Printer {
    keep_order: bool,
    next: usize,
    waiting: BTreeMap<usize, Option<Done>>,
}

impl Printer {
    pub(crate) fn new(keep_order: bool) -> Printer {
        Printer { keep_order, next: 0, waiting: BTreeMap::new() }
    }

    /// Job `index` (0-based, in input order) ended; `None` for a job with nothing to print.
    /// Printed captures go back to `pool`.
    pub(crate) fn finished(
        &mut self,
        index: usize,
        done: Option<Done>,
        pool: &FilePool,
    ) -> anyhow::Result<()> {
        if !self.keep_order {
            if let Some(d) = done {
                let lens = d.lens;
                pool.put(print(d)?, lens);
            }
            return Ok(());
        }
        let done = match done {
            Some(mut d) if index != self.next && self.waiting.len() >= HELD_IN_FILES => {
                d.capture = d.capture.into_memory()?;
                Some(d)
            }
            other => other,
        };
        self.waiting.insert(index, done);
        while let Some(d) = self.waiting.remove(&self.next) {
            self.next += 1;
            if let Some(d) = d {
                let lens = d.lens;
                pool.put(print(d)?, lens);
            }
        }
        Ok(())
    }
}

fn print(d: Done) -> anyhow::Result<Capture> {
    if let Capture::Memory(out, err) = &d.capture {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        copy_tagged(&out[..], &mut lock, d.tag.as_deref())?;
        lock.flush()?;
        copy_tagged(&err[..], &mut std::io::stderr().lock(), d.tag.as_deref())?;
    }
    if let Capture::Files(out, err) = &d.capture {
        let (mut out, mut err) = (out, err);
        if d.lens.0 > 0 {
            out.rewind()?;
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            copy_tagged(&mut out, &mut lock, d.tag.as_deref())?;
            lock.flush()?;
        }
        if d.lens.1 > 0 {
            err.rewind()?;
            copy_tagged(&mut err, &mut std::io::stderr().lock(), d.tag.as_deref())?;
        }
    }
    Ok(d.capture)
}

/// Saves a job's output under `dir/1/ARG1/2/ARG2/…` as `stdout`, `stderr` and `seq`.
pub(crate) fn save_results(dir: &Path, args: &[String], seq: usize, capture: &Capture) -> anyhow::Result<()> {
    let mut path = dir.to_path_buf();
    for (i, a) in args.iter().enumerate() {
        path.push((i + 1).to_string());
        path.push(a.replace('\\', "\\\\").replace('/', "\\_"));
    }
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::write(path.join("seq"), format!("{seq}\n"))?;
    if let Capture::Files(out, err) = capture {
        for (f, name) in [(out, "stdout"), (err, "stderr")] {
            let mut f = f.try_clone()?;
            f.rewind()?;
            let mut dst = File::create(path.join(name))?;
            std::io::copy(&mut f, &mut dst).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}
