//! Append-only storage: a layer that may add objects but never remove or replace one.
//!
//! [`AppendOnlyStorage`] refuses `delete` and refuses `write` to a name that already exists
//! (an object of the same size is accepted without writing: repository objects are
//! content-addressed, so it is the same object written again after a lost answer). Refusals
//! are [`ErrorKind::AppendOnly`], which is never retried.
//!
//! This layer is the client's half of append-only mode: it makes a client that is meant to
//! only add data (a backup host) unable to remove any by mistake, and gives clear errors
//! instead of half-done deletions. Protection against a compromised client comes from the
//! server: a credential without the delete permission, or S3 Object Lock. When the server
//! refuses deletes, [`deletes_refused`] detects it before anything is removed.

use crate::{ErrorKind, ObjectInfo, Properties, Result, Storage, StorageError};

/// Why append-only storage refuses, for messages.
const REFUSED: &str =
    "the repository is append-only (objects may be added, never removed or replaced)";

/// Wraps a storage and refuses deletion and replacement.
pub struct AppendOnlyStorage<S> {
    inner: S,
    /// Why this storage is append-only (shown in errors), e.g. "--append-only".
    reason: String,
}

impl<S: Storage> AppendOnlyStorage<S> {
    /// Wraps `inner`; `reason` says where append-only mode comes from.
    pub fn new(inner: S, reason: impl Into<String>) -> Self {
        AppendOnlyStorage {
            inner,
            reason: reason.into(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn refuse(&self, op: &'static str, name: &str) -> StorageError {
        StorageError::new(
            ErrorKind::AppendOnly,
            op,
            name,
            format!("{REFUSED}; set by {}", self.reason),
        )
    }
}

impl<S: Storage> Storage for AppendOnlyStorage<S> {
    fn properties(&self) -> Properties {
        Properties {
            append_only: true,
            ..self.inner.properties()
        }
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
        match self.inner.stat(name) {
            Ok(existing) if existing.size == data.len() as u64 => Ok(()),
            Ok(_) => Err(self.refuse("write", name)),
            Err(e) if e.is_not_found() => self.inner.write(name, data),
            Err(e) => Err(e),
        }
    }
    fn delete(&self, name: &str) -> Result<()> {
        Err(self.refuse("delete", name))
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        self.inner.stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
}

/// Prefix of the objects [`deletes_refused`] writes and removes (under `locks/`, where names
/// that are not ids are not locks).
pub const DELETE_PROBE: &str = "locks/delete-probe";

/// Whether `storage` refuses deletes: writes a small probe object
/// (`locks/delete-probe-TAG-RANDOM`) and removes it. `Ok(true)` when the removal is refused
/// (append-only layer, or permission denied by the server; the probe then stays behind,
/// harmlessly), `Ok(false)` when deletes work. Other errors are returned as they are. `tag`
/// names the writer (host, process, time) so a probe left by a killed process can be told
/// stale and removed later (`arca unlock`).
pub fn deletes_refused(storage: &dyn Storage, tag: &str) -> Result<bool> {
    if storage.properties().append_only {
        return Ok(true);
    }
    let mut suffix = [0u8; 8];
    // A failing random source leaves zeros; the tag still separates concurrent probes.
    let _ = getrandom::fill(&mut suffix);
    let name = format!("{DELETE_PROBE}-{tag}-{:016x}", u64::from_le_bytes(suffix));
    storage.write(&name, b"arca checks that it may delete\n")?;
    match storage.delete(&name) {
        Ok(()) => Ok(false),
        Err(e) if matches!(e.kind, ErrorKind::PermissionDenied | ErrorKind::AppendOnly) => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStorage;

    #[test]
    fn adds_but_never_removes_or_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let s = AppendOnlyStorage::new(LocalStorage::new(dir.path()), "the test");
        s.create().unwrap();
        assert!(s.properties().append_only);
        s.write("snapshots/a", b"first").unwrap();
        assert_eq!(s.read("snapshots/a").unwrap(), b"first");
        // The same object again (a retried upload) is fine.
        s.write("snapshots/a", b"first").unwrap();
        let e = s.write("snapshots/a", b"other content").unwrap_err();
        assert_eq!(e.kind, ErrorKind::AppendOnly);
        assert!(e.message.contains("set by the test"), "{e}");
        let e = s.delete("snapshots/a").unwrap_err();
        assert_eq!(e.kind, ErrorKind::AppendOnly);
        assert!(e.to_string().starts_with("delete snapshots/a: "), "{e}");
        assert_eq!(s.read("snapshots/a").unwrap(), b"first");
        assert!(!e.is_transient());
    }

    /// A storage whose deletes the server refuses (a credential without delete permission).
    struct NoDeletes(LocalStorage);

    impl Storage for NoDeletes {
        fn properties(&self) -> Properties {
            self.0.properties()
        }
        fn create(&self) -> Result<()> {
            self.0.create()
        }
        fn read(&self, name: &str) -> Result<Vec<u8>> {
            self.0.read(name)
        }
        fn read_range_into(
            &self,
            name: &str,
            offset: u64,
            length: u64,
            buf: &mut Vec<u8>,
        ) -> Result<()> {
            self.0.read_range_into(name, offset, length, buf)
        }
        fn write(&self, name: &str, data: &[u8]) -> Result<()> {
            self.0.write(name, data)
        }
        fn delete(&self, name: &str) -> Result<()> {
            Err(StorageError::new(
                ErrorKind::PermissionDenied,
                "delete",
                name,
                "AccessDenied: HTTP 403",
            ))
        }
        fn stat(&self, name: &str) -> Result<ObjectInfo> {
            self.0.stat(name)
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
            self.0.list(prefix)
        }
    }

    #[test]
    fn probe_detects_a_server_that_refuses_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let s = NoDeletes(LocalStorage::new(dir.path()));
        assert!(!s.properties().append_only);
        assert!(deletes_refused(&s, "test").unwrap());
        // The probe stays behind, under a name that is not an id.
        let left = s.list("locks/").unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].name.starts_with(DELETE_PROBE), "{left:?}");
    }

    #[test]
    fn probe_tells_append_only_from_deletable() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStorage::new(dir.path());
        assert!(!deletes_refused(&local, "test").unwrap());
        assert!(local.list("locks/").unwrap().is_empty(), "probe removed");
        let s = AppendOnlyStorage::new(LocalStorage::new(dir.path()), "x");
        assert!(deletes_refused(&s, "test").unwrap());
    }
}
