//! A storage layer that injects faults, for tests of retries, crashes and full disks.
//!
//! [`FaultStorage`] wraps any storage. It can fail a share of requests with transient
//! errors (deterministically, from a seed), refuse every write after a budget of writes
//! (a crash or a full disk at a chosen point), fail one chosen write and let the others
//! through (a lost upload), or be switched off entirely (server down). The write faults
//! count every write, or only writes of one kind of object ([`FaultStorage::counting_only`],
//! e.g. `data/` for packs); [`FaultStorage::writes`] says how many were counted, so a test
//! can first run an operation to learn its writes and then fail each of them in turn.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{ErrorKind, ObjectInfo, Properties, Result, Storage, StorageError};

/// Which fault a failing write reports once its budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    NoSpace,
    Transient,
}

pub struct FaultStorage<S> {
    inner: S,
    /// Share of requests (0..=1000 per mille) that fail with a transient error.
    fail_per_mille: u32,
    rng: Mutex<u64>,
    writes_left: AtomicU64,
    write_fault: WriteFault,
    /// The counted write (1-based) that fails alone, if any.
    failing_write: Option<u64>,
    /// Only writes of names with this prefix are counted (and fail); empty: every write.
    counted_prefix: String,
    writes: AtomicU64,
    down: AtomicBool,
    injected: AtomicU64,
}

impl<S: Storage> FaultStorage<S> {
    pub fn new(inner: S) -> Self {
        FaultStorage {
            inner,
            fail_per_mille: 0,
            rng: Mutex::new(0x9e37_79b9_7f4a_7c15),
            writes_left: AtomicU64::new(u64::MAX),
            write_fault: WriteFault::NoSpace,
            failing_write: None,
            counted_prefix: String::new(),
            writes: AtomicU64::new(0),
            down: AtomicBool::new(false),
            injected: AtomicU64::new(0),
        }
    }

    /// Fails `per_mille`/1000 of all requests with a transient error, from `seed`.
    pub fn with_failure_rate(mut self, per_mille: u32, seed: u64) -> Self {
        self.fail_per_mille = per_mille.min(1000);
        self.rng = Mutex::new(seed | 1);
        self
    }

    /// Allows `n` more successful writes, then fails each write with `fault`.
    pub fn with_write_budget(self, n: u64, fault: WriteFault) -> Self {
        self.writes_left.store(n, Ordering::SeqCst);
        FaultStorage {
            write_fault: fault,
            ..self
        }
    }

    /// Fails the `n`th counted write (1-based) with `fault` and lets every other write
    /// through: one upload lost among many that succeed.
    pub fn with_failing_write(self, n: u64, fault: WriteFault) -> Self {
        FaultStorage {
            failing_write: Some(n),
            write_fault: fault,
            ..self
        }
    }

    /// Counts (for the budget, the failing write and [`FaultStorage::writes`]) only writes
    /// of names starting with `prefix`, e.g. `data/` (packs), `index/`, `snapshots/`;
    /// other writes pass untouched.
    pub fn counting_only(self, prefix: &str) -> Self {
        FaultStorage {
            counted_prefix: prefix.to_string(),
            ..self
        }
    }

    /// How many writes were counted so far, failed ones included.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Makes every request fail (true) or succeed again (false).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn check(&self, op: &'static str, name: &str) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(StorageError::new(
                ErrorKind::Transient,
                op,
                name,
                "injected fault: storage is down",
            ));
        }
        if self.fail_per_mille > 0 {
            let roll = {
                let mut x = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                // xorshift64
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                (*x % 1000) as u32
            };
            if roll < self.fail_per_mille {
                self.injected.fetch_add(1, Ordering::SeqCst);
                return Err(StorageError::new(
                    ErrorKind::Transient,
                    op,
                    name,
                    "injected fault: 503 slow down",
                ));
            }
        }
        Ok(())
    }
}

impl<S: Storage> Storage for FaultStorage<S> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }
    fn create(&self) -> Result<()> {
        self.check("create", "")?;
        self.inner.create()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.check("read", name)?;
        self.inner.read(name)
    }
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.check("read", name)?;
        self.inner.read_range_into(name, offset, length, buf)
    }
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        self.check("write", name)?;
        if !name.starts_with(&self.counted_prefix) {
            return self.inner.write(name, data);
        }
        let nth = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let spent = self
            .writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err();
        if spent || self.failing_write == Some(nth) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            let (kind, msg) = match self.write_fault {
                WriteFault::NoSpace => (ErrorKind::NoSpace, "injected fault: no space left"),
                WriteFault::Transient => (ErrorKind::Transient, "injected fault: write failed"),
            };
            return Err(StorageError::new(kind, "write", name, msg));
        }
        self.inner.write(name, data)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.check("delete", name)?;
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        self.check("stat", name)?;
        self.inner.stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.check("list", prefix)?;
        self.inner.list(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStorage;

    #[test]
    fn write_budget_then_no_space() {
        let dir = tempfile::tempdir().unwrap();
        let s = FaultStorage::new(LocalStorage::new(dir.path()))
            .with_write_budget(2, WriteFault::NoSpace);
        s.write("a", b"1").unwrap();
        s.write("b", b"1").unwrap();
        assert_eq!(s.write("c", b"1").unwrap_err().kind, ErrorKind::NoSpace);
        assert!(s.read("c").is_err());
        assert_eq!(s.injected(), 1);
    }

    #[test]
    fn one_failing_write_of_one_kind() {
        let s = FaultStorage::new(crate::memory::MemoryStorage::default())
            .counting_only("data/")
            .with_failing_write(2, WriteFault::Transient);
        s.create().unwrap();
        s.write("data/a", b"1").unwrap();
        s.write("index/a", b"1").unwrap();
        assert!(s.write("data/b", b"1").unwrap_err().is_transient());
        s.write("data/c", b"1").unwrap();
        s.write("index/b", b"1").unwrap();
        assert_eq!(s.writes(), 3, "only data/ is counted");
        assert_eq!(s.injected(), 1);
        assert!(s.read("data/b").unwrap_err().is_not_found());
        assert_eq!(
            s.inner().names(),
            ["data/a", "data/c", "index/a", "index/b"]
        );
    }

    #[test]
    fn failure_rate_is_roughly_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = FaultStorage::new(LocalStorage::new(dir.path())).with_failure_rate(200, 42);
        s.inner().write("x", b"1").unwrap();
        let fails = (0..2000).filter(|_| s.read("x").is_err()).count();
        assert!((300..500).contains(&fails), "{fails}");
    }

    #[test]
    fn down_fails_everything() {
        let dir = tempfile::tempdir().unwrap();
        let s = FaultStorage::new(LocalStorage::new(dir.path()));
        s.set_down(true);
        assert!(s.list("").unwrap_err().is_transient());
        s.set_down(false);
        assert!(s.list("").is_ok());
    }
}
