//! Progress reporting from engines to whoever shows it (progress bars, JSON lines, metrics).

use std::path::Path;

/// Events of a backup, restore or check. Every method has a no-op default; implementations
/// must be cheap and thread-safe (they are called from worker threads).
pub trait Progress: Send + Sync {
    /// Totals, when known (a backup learns them from a scan running beside it).
    fn set_total(&self, _files: u64, _bytes: u64) {}
    /// A file is being read or written.
    fn file_started(&self, _path: &Path) {}
    /// `n` more bytes were processed.
    fn add_bytes(&self, _n: u64) {}
    /// One more file (or other entry) is done.
    fn add_files(&self, _n: u64) {}
    /// An entry could not be processed; the run goes on.
    fn warning(&self, _path: &Path, _message: &str) {}
    /// Whether the run should stop (Ctrl-C or a closing window).
    fn should_stop(&self) -> bool {
        false
    }
}

/// Progress that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
