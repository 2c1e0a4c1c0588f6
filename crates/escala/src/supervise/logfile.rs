//! [`LogFile`]: a service's output in a file, rotated by size (`web.log` → `web.log.1` → …).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A log file shared by a service's workers: each line is appended whole, and when the next
/// line would take the file past `max_bytes`, it is renamed to `PATH.1` (`PATH.1` to
/// `PATH.2`, … keeping `keep` old files) and a new one is started.
///
/// # Examples
///
/// ```
/// use escala::supervise::{LogFile, Output, Service};
/// let log = LogFile::new("/var/log/web.log").max_bytes(10 << 20).keep(3);
/// let web = Service::shell("web", "exec my-server").output(Output::File(log));
/// # let _ = web;
/// ```
#[derive(Clone)]
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Arc<Mutex<Option<(File, u64)>>>,
}

impl LogFile {
    /// A log at `path`, rotated at 10 MiB, keeping 3 old files.
    pub fn new(path: impl Into<PathBuf>) -> LogFile {
        LogFile { path: path.into(), max_bytes: 10 << 20, keep: 3, file: Arc::default() }
    }

    /// Rotates when the file would grow past `bytes` (at least one line per file).
    pub fn max_bytes(mut self, bytes: u64) -> LogFile {
        self.max_bytes = bytes;
        self
    }

    /// How many rotated files to keep (0: the old content is dropped).
    pub fn keep(mut self, files: usize) -> LogFile {
        self.keep = files;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (it ends with `\n`), rotating first if it would not fit.
    pub(crate) fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let (_, size) = guard.as_ref().expect("opened above");
        if *size > 0 && size + line.len() as u64 > self.max_bytes {
            *guard = None;
            self.rotate()?;
            *guard = Some(self.open()?);
        }
        let (file, size) = guard.as_mut().expect("opened above");
        file.write_all(line)?;
        *size += line.len() as u64;
        Ok(())
    }

    fn open(&self) -> std::io::Result<(File, u64)> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        let size = f.metadata()?.len();
        Ok((f, size))
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&self) -> std::io::Result<()> {
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }
}

impl PartialEq for LogFile {
    fn eq(&self, other: &LogFile) -> bool {
        (&self.path, self.max_bytes, self.keep) == (&other.path, other.max_bytes, other.keep)
    }
}

impl Eq for LogFile {}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.path)
            .field("max_bytes", &self.max_bytes)
            .field("keep", &self.keep)
            .finish()
    }
}
