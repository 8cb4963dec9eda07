//! An in-memory storage for tests: the engines above run on it without a disk.
//!
//! [`MemoryStorage`] keeps a map of object names to shared byte buffers behind a lock and
//! keeps the [`Storage`] contract as [`crate::LocalStorage`] does: nothing exists before
//! [`Storage::create`] (every request is then `NotFound`), names are checked the same
//! way, listing is by directory prefix (`keys` and `keys/` alike) in name order, a range
//! past the end fails, an object cannot stand where another object's directory is (nor
//! the other way round), and `write` replaces a whole object at once. It passes the
//! conformance suite ([`crate::suite`]). Faults compose from outside:
//! wrap it in [`crate::fault::FaultStorage`] or [`crate::powercut::PowerCutStorage`].
//!
//! Cloning a `MemoryStorage` shares its objects; [`MemoryStorage::fork`] copies them
//! (cheaply: the buffers are shared until replaced), so a test can build a repository
//! once and break a fresh copy of it in every case.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{ErrorKind, ObjectInfo, Properties, Result, Storage, StorageError};

/// The objects, or `None` before the storage is created.
type Objects = Option<BTreeMap<String, Arc<[u8]>>>;

/// A storage whose objects live in memory; see the module documentation.
#[derive(Debug, Clone)]
pub struct MemoryStorage {
    objects: Arc<RwLock<Objects>>,
    location: String,
    connections: usize,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage::new("memory")
    }
}

impl MemoryStorage {
    /// An empty storage, not yet created, that calls itself `location` in messages.
    pub fn new(location: impl Into<String>) -> Self {
        MemoryStorage {
            objects: Arc::new(RwLock::new(None)),
            location: location.into(),
            connections: 1,
        }
    }

    /// Says that `n` requests are worth keeping in flight (default 1, as a local disk),
    /// so engines run that many uploaders or fetchers against it.
    pub fn with_connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// An independent copy of the current objects (and of whether the storage exists),
    /// named `location`.
    pub fn fork(&self, location: impl Into<String>) -> MemoryStorage {
        let copy = self.read_lock().clone();
        MemoryStorage {
            objects: Arc::new(RwLock::new(copy)),
            location: location.into(),
            connections: self.connections,
        }
    }

    /// Every object name, in order (empty before the storage is created).
    pub fn names(&self) -> Vec<String> {
        self.read_lock()
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The total size of every object, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.read_lock()
            .as_ref()
            .map_or(0, |m| m.values().map(|v| v.len() as u64).sum())
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Objects> {
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Objects> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }

    fn missing_root(&self, op: &'static str, name: &str) -> StorageError {
        StorageError::new(
            ErrorKind::NotFound,
            op,
            name,
            format!("storage {} does not exist", self.location),
        )
    }

    /// The object `name`, failing as a missing object or storage does.
    fn get(&self, op: &'static str, name: &str) -> Result<Arc<[u8]>> {
        crate::check_name("resolve", name)?;
        let guard = self.read_lock();
        let map = guard.as_ref().ok_or_else(|| self.missing_root(op, name))?;
        map.get(name)
            .cloned()
            .ok_or_else(|| StorageError::new(ErrorKind::NotFound, op, name, "no such object"))
    }
}

/// Whether some object's name continues `name` with `/` (`name` is then a directory).
fn is_directory(map: &BTreeMap<String, Arc<[u8]>>, name: &str) -> bool {
    let dir = format!("{name}/");
    map.range(dir.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&dir))
}

/// The first object that stands where a directory of `name` would be (`a` for `a/b`).
fn object_on_path<'a>(map: &BTreeMap<String, Arc<[u8]>>, name: &'a str) -> Option<&'a str> {
    name.match_indices('/')
        .map(|(i, _)| &name[..i])
        .find(|dir| map.contains_key(*dir))
}

impl Storage for MemoryStorage {
    fn properties(&self) -> Properties {
        Properties {
            connections: self.connections,
            location: self.location.clone(),
            local: true,
            append_only: false,
        }
    }

    fn create(&self) -> Result<()> {
        self.write_lock().get_or_insert_with(BTreeMap::new);
        Ok(())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        Ok(self.get("read", name)?.to_vec())
    }

    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let data = self.get("read", name)?;
        let size = data.len() as u64;
        let range = offset
            .checked_add(length)
            .filter(|&end| end <= size)
            .and_then(|end| Some(usize::try_from(offset).ok()?..usize::try_from(end).ok()?));
        let Some(range) = range else {
            return Err(StorageError::new(
                ErrorKind::Other,
                "read",
                name,
                format!("range {offset}+{length} is past the end of the object ({size} bytes)"),
            ));
        };
        buf.clear();
        buf.extend_from_slice(&data[range]);
        Ok(())
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        crate::check_name("resolve", name)?;
        let mut guard = self.write_lock();
        let Some(map) = guard.as_mut() else {
            return Err(self.missing_root("write", name));
        };
        if let Some(object) = object_on_path(map, name) {
            return Err(StorageError::new(
                ErrorKind::Other,
                "write",
                name,
                format!("{object} is an object, not a directory"),
            ));
        }
        if is_directory(map, name) {
            return Err(StorageError::new(
                ErrorKind::Other,
                "write",
                name,
                "is a directory of other objects",
            ));
        }
        map.insert(name.to_string(), Arc::from(data));
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<()> {
        crate::check_name("resolve", name)?;
        let mut guard = self.write_lock();
        let Some(map) = guard.as_mut() else {
            return Err(self.missing_root("delete", name));
        };
        match map.remove(name) {
            Some(_) => Ok(()),
            None => Err(StorageError::new(
                ErrorKind::NotFound,
                "delete",
                name,
                "no such object",
            )),
        }
    }

    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        let data = self.get("stat", name)?;
        Ok(ObjectInfo {
            name: name.to_string(),
            size: data.len() as u64,
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            crate::check_name("resolve", prefix)?;
        }
        let guard = self.read_lock();
        let Some(map) = guard.as_ref() else {
            return Err(self.missing_root("list", prefix));
        };
        if map.contains_key(prefix) {
            return Err(StorageError::new(
                ErrorKind::Other,
                "list",
                prefix,
                "is an object, not a directory",
            ));
        }
        let dir = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Ok(map
            .range(dir.clone()..)
            .take_while(|(k, _)| k.starts_with(&dir))
            .map(|(k, v)| ObjectInfo {
                name: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        crate::suite::run_all(&MemoryStorage::default());
    }

    #[test]
    fn conformance_through_an_arc_from_several_threads() {
        let s = Arc::new(MemoryStorage::default().with_connections(8));
        s.create().unwrap();
        std::thread::scope(|scope| {
            for t in 0..8 {
                let s = s.clone();
                scope.spawn(move || {
                    for i in 0..200 {
                        let name = format!("data/{t:02}/{i}");
                        s.write(&name, name.as_bytes()).unwrap();
                        assert_eq!(s.read(&name).unwrap(), name.as_bytes());
                    }
                });
            }
        });
        assert_eq!(s.list("data/").unwrap().len(), 1600);
        assert_eq!(s.properties().connections, 8);
    }

    #[test]
    fn nothing_exists_before_create() {
        let s = MemoryStorage::new("memory:test");
        for r in [
            s.read("config").map(|_| ()),
            s.write("config", b"1"),
            s.list("").map(|_| ()),
            s.stat("config").map(|_| ()),
            s.delete("config"),
        ] {
            let err = r.unwrap_err();
            assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
        }
        assert!(s.names().is_empty());
    }

    #[test]
    fn names_are_checked_and_objects_and_directories_do_not_mix() {
        let s = MemoryStorage::default();
        s.create().unwrap();
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(s.write(bad, b"1").is_err(), "{bad}");
        }
        s.write("data/ab/x", b"1").unwrap();
        assert!(s.write("data/ab", b"1").is_err(), "a directory");
        assert!(s.write("data/ab/x/y", b"1").is_err(), "below an object");
        assert!(s.list("data/ab/x").is_err(), "an object is not a directory");
        // A name that only starts like the directory is not in it.
        s.write("data/abc", b"22").unwrap();
        let names: Vec<String> = s
            .list("data/ab")
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["data/ab/x"]);
        assert_eq!(s.list("").unwrap().len(), 2);
        assert_eq!(s.total_bytes(), 3);
    }

    #[test]
    fn clones_share_and_forks_copy() {
        let s = MemoryStorage::default();
        s.create().unwrap();
        s.write("a", b"1").unwrap();
        let shared = s.clone();
        let fork = s.fork("memory:fork");
        s.write("b", b"2").unwrap();
        fork.delete("a").unwrap();
        assert_eq!(shared.names(), ["a", "b"]);
        assert!(fork.names().is_empty());
        assert_eq!(fork.properties().location, "memory:fork");
    }
}
