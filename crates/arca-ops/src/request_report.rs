//! `ARCA_DEBUG_REQUESTS_FILE`: the requests a session made, counted and appended to that
//! file as one JSON line when its storage is dropped (for tests and diagnostics). Every
//! session counts, whichever front end opened it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use arca_storage::{CountingStorage, ObjectInfo, Properties, Result, Storage};

/// Wraps `storage` in a counter when `ARCA_DEBUG_REQUESTS_FILE` is set.
pub(crate) fn wrap(storage: Arc<dyn Storage>) -> Arc<dyn Storage> {
    match std::env::var_os("ARCA_DEBUG_REQUESTS_FILE").filter(|f| !f.is_empty()) {
        Some(file) => Arc::new(RequestReport {
            counting: Arc::new(CountingStorage::new(storage)),
            file: file.into(),
        }),
        None => storage,
    }
}

struct RequestReport {
    counting: Arc<CountingStorage<Arc<dyn Storage>>>,
    file: PathBuf,
}

impl Drop for RequestReport {
    fn drop(&mut self) {
        let c = self.counting.counts();
        let line = serde_json::json!({
            "total": c.total(),
            "lists": c.lists,
            "reads": c.reads,
            "range_reads": c.range_reads,
            "writes": c.writes,
            "deletes": c.deletes,
            "stats": c.stats,
            "creates": c.creates,
            "bytes_read": c.bytes_read,
            "bytes_written": c.bytes_written,
        });
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .and_then(|mut f| writeln!(f, "{line}"));
        // A diagnostic aid: it must not fail the run, and there is no log at this level.
        let _ = written;
    }
}

impl Storage for RequestReport {
    fn properties(&self) -> Properties {
        self.counting.properties()
    }
    fn create(&self) -> Result<()> {
        self.counting.create()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.counting.read(name)
    }
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.counting.read_range_into(name, offset, length, buf)
    }
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        self.counting.write(name, data)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.counting.delete(name)
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        self.counting.stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.counting.list(prefix)
    }
}
