//! A storage layer that records every change, to replay the state a power cut would leave.
//!
//! [`PowerCutStorage`] wraps any storage and logs each successful `write` and `delete` with
//! the logical times at which it started and finished. [`PowerCutStorage::replay`] rebuilds,
//! into another (empty) storage, what survives a power cut at a chosen moment under the
//! [`Storage`] contract: a change that had finished (returned) is durable; a change still in
//! flight may or may not have happened (an atomic write leaves the whole object or nothing),
//! independently of the others in flight; nothing started later exists.
//!
//! Whether a backend keeps that contract is a property of the backend: [`crate::LocalStorage`]
//! writes a temporary file, fsyncs it, renames it into place and fsyncs the directory before
//! `write` returns, and fsyncs the directory after a delete. Tests replay every moment of a
//! recorded run to show that the repository format needs nothing more: every cut leaves a
//! repository that opens, checks and restores every snapshot whose write had finished.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{ObjectInfo, Properties, Result, Storage};

/// One recorded change.
#[derive(Debug, Clone)]
pub enum Change {
    Write { name: String, data: Arc<[u8]> },
    Delete { name: String },
}

impl Change {
    /// The object the change concerns.
    pub fn name(&self) -> &str {
        match self {
            Change::Write { name, .. } | Change::Delete { name } => name,
        }
    }
}

/// A change with the logical times it started and finished (finished > started).
#[derive(Debug, Clone)]
pub struct Event {
    pub change: Change,
    pub started: u64,
    pub finished: u64,
}

/// Records the changes made through it; see the module documentation.
pub struct PowerCutStorage<S> {
    inner: S,
    clock: AtomicU64,
    log: Mutex<Vec<Event>>,
}

impl<S: Storage> PowerCutStorage<S> {
    pub fn new(inner: S) -> Self {
        PowerCutStorage {
            inner,
            clock: AtomicU64::new(2),
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The current logical time: a cut at this moment keeps every finished change.
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// Every recorded change, in the order they finished.
    pub fn events(&self) -> Vec<Event> {
        let mut v = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        v.sort_by_key(|e| e.finished);
        v
    }

    /// The moments worth cutting at: before anything, and just after each change finished.
    pub fn cut_points(&self) -> Vec<u64> {
        let mut v: Vec<u64> = std::iter::once(0)
            .chain(self.events().iter().map(|e| e.finished))
            .collect();
        v.dedup();
        v
    }

    /// The changes in flight at `cut` (started before it, finished after it).
    pub fn in_flight(&self, cut: u64) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.started < cut && e.finished > cut)
            .collect()
    }

    /// Applies to `target` what survives a power cut at logical time `cut`: every change
    /// that finished by then, and each change in flight for which `survives` says true, in
    /// the order they finished. Returns how many changes were applied.
    pub fn replay(
        &self,
        cut: u64,
        target: &dyn Storage,
        survives: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<usize> {
        let mut n = 0;
        for e in self.events() {
            let applied = if e.finished <= cut {
                true
            } else if e.started < cut {
                survives(&e)
            } else {
                false
            };
            if !applied {
                continue;
            }
            n += 1;
            match &e.change {
                Change::Write { name, data } => target.write(name, data)?,
                Change::Delete { name } => match target.delete(name) {
                    Err(err) if err.is_not_found() => {}
                    other => other?,
                },
            }
        }
        Ok(n)
    }

    fn record<T>(&self, change: Change, op: impl FnOnce() -> Result<T>) -> Result<T> {
        // Steps of 2 leave a moment between start and finish of every change.
        let started = self.clock.fetch_add(2, Ordering::SeqCst);
        let r = op()?;
        let finished = self.clock.fetch_add(2, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Event {
                change,
                started,
                finished,
            });
        Ok(r)
    }
}

impl<S: Storage> Storage for PowerCutStorage<S> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.inner.read(name)
    }
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.read_range_into(name, offset, length, buf)
    }
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        let change = Change::Write {
            name: name.to_string(),
            data: Arc::from(data),
        };
        self.record(change, || self.inner.write(name, data))
    }
    fn delete(&self, name: &str) -> Result<()> {
        let change = Change::Delete {
            name: name.to_string(),
        };
        self.record(change, || self.inner.delete(name))
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        self.inner.stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStorage;

    #[test]
    fn replay_keeps_finished_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = PowerCutStorage::new(LocalStorage::new(dir.path().join("live")));
        s.create().unwrap();
        s.write("a", b"1").unwrap();
        let after_a = s.now();
        s.write("b", b"2").unwrap();
        s.delete("a").unwrap();
        assert_eq!(s.cut_points().len(), 4);

        let at_a = LocalStorage::new(dir.path().join("cut-a"));
        at_a.create().unwrap();
        assert_eq!(s.replay(after_a, &at_a, &mut |_| true).unwrap(), 1);
        assert_eq!(at_a.read("a").unwrap(), b"1");
        assert!(at_a.read("b").unwrap_err().is_not_found());

        let at_end = LocalStorage::new(dir.path().join("cut-end"));
        at_end.create().unwrap();
        assert_eq!(s.replay(s.now(), &at_end, &mut |_| false).unwrap(), 3);
        assert!(at_end.read("a").unwrap_err().is_not_found());
        assert_eq!(at_end.read("b").unwrap(), b"2");
    }

    #[test]
    fn changes_in_flight_survive_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = PowerCutStorage::new(LocalStorage::new(dir.path().join("live")));
        s.create().unwrap();
        s.write("a", b"1").unwrap();
        // Every event's own start is a moment at which it is in flight.
        let e = &s.events()[0];
        let mid = e.started + 1;
        assert_eq!(s.in_flight(mid).len(), 1);
        let t = LocalStorage::new(dir.path().join("t"));
        t.create().unwrap();
        assert_eq!(s.replay(mid, &t, &mut |_| false).unwrap(), 0);
        assert_eq!(s.replay(mid, &t, &mut |_| true).unwrap(), 1);
    }
}
