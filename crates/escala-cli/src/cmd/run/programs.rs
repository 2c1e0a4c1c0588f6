//! Finding programs in `PATH` once per name: a failed `execve` per `PATH` entry per job
//! would cost more than starting the job itself.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Where programs are in `PATH`, looked up once per name (a failed `execve` per `PATH`
/// entry per job costs more than the job's own start).
#[derive(Default)]
pub(crate) struct Programs(HashMap<String, PathBuf>);

impl Programs {
    /// The path to run for `name` (itself when it has a `/` or is not found).
    pub(crate) fn find(&mut self, name: &str) -> PathBuf {
        if name.contains('/') {
            return PathBuf::from(name);
        }
        self.0
            .entry(name.to_string())
            .or_insert_with(|| {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::split_paths(&path)
                    .map(|d| d.join(name))
                    .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
                    .unwrap_or_else(|| PathBuf::from(name))
            })
            .clone()
    }
}
