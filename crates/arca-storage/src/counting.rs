//! A storage layer that counts requests, to measure what a cache or a command costs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{ObjectInfo, Properties, Result, Storage};

/// How many requests of each kind reached the wrapped storage (failed ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub lists: u64,
    pub reads: u64,
    pub range_reads: u64,
    pub writes: u64,
    pub deletes: u64,
    pub stats: u64,
    pub creates: u64,
    /// Bytes returned by reads and range reads.
    pub bytes_read: u64,
    /// Bytes passed to writes.
    pub bytes_written: u64,
}

impl RequestCounts {
    /// Requests of every kind.
    pub fn total(&self) -> u64 {
        self.lists
            + self.reads
            + self.range_reads
            + self.writes
            + self.deletes
            + self.stats
            + self.creates
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests: {} list, {} read, {} range read, {} write, {} delete, {} stat, \
             {} create; {} bytes read, {} bytes written",
            self.total(),
            self.lists,
            self.reads,
            self.range_reads,
            self.writes,
            self.deletes,
            self.stats,
            self.creates,
            self.bytes_read,
            self.bytes_written
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    lists: AtomicU64,
    reads: AtomicU64,
    range_reads: AtomicU64,
    writes: AtomicU64,
    deletes: AtomicU64,
    stats: AtomicU64,
    creates: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// Wraps a storage and counts the requests it passes on.
pub struct CountingStorage<S> {
    inner: S,
    c: Counters,
}

impl<S: Storage> CountingStorage<S> {
    pub fn new(inner: S) -> Self {
        CountingStorage {
            inner,
            c: Counters::default(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The counts so far.
    pub fn counts(&self) -> RequestCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestCounts {
            lists: l(&self.c.lists),
            reads: l(&self.c.reads),
            range_reads: l(&self.c.range_reads),
            writes: l(&self.c.writes),
            deletes: l(&self.c.deletes),
            stats: l(&self.c.stats),
            creates: l(&self.c.creates),
            bytes_read: l(&self.c.bytes_read),
            bytes_written: l(&self.c.bytes_written),
        }
    }
}

fn bump(a: &AtomicU64, by: u64) {
    a.fetch_add(by, Ordering::Relaxed);
}

impl<S: Storage> Storage for CountingStorage<S> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }
    fn create(&self) -> Result<()> {
        bump(&self.c.creates, 1);
        self.inner.create()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        bump(&self.c.reads, 1);
        let d = self.inner.read(name)?;
        bump(&self.c.bytes_read, d.len() as u64);
        Ok(d)
    }
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        bump(&self.c.range_reads, 1);
        self.inner.read_range_into(name, offset, length, buf)?;
        bump(&self.c.bytes_read, buf.len() as u64);
        Ok(())
    }
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        bump(&self.c.writes, 1);
        bump(&self.c.bytes_written, data.len() as u64);
        self.inner.write(name, data)
    }
    fn delete(&self, name: &str) -> Result<()> {
        bump(&self.c.deletes, 1);
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        bump(&self.c.stats, 1);
        self.inner.stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        bump(&self.c.lists, 1);
        self.inner.list(prefix)
    }
}
