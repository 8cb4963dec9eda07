//! Storage of named objects for arca repositories.
//!
//! This crate owns the [`Storage`] trait: a small, synchronous interface over named objects
//! (`config`, `keys/ID`, `data/XX/ID`, ...), its local-disk implementation, and layers that
//! wrap any storage: retries with backoff ([`RetryStorage`]), bandwidth limits
//! ([`ThrottleStorage`]), a local cache of hot objects ([`CacheStorage`]), append-only mode
//! ([`AppendOnlyStorage`]) and request counting ([`CountingStorage`]). It knows nothing of
//! the repository format (the cache learns what to cache and how to verify it from a
//! [`CachePolicy`]).
//!
//! For tests, the `testing` feature adds an in-memory storage (`memory`), the conformance
//! suite every backend passes (`suite`), fault injection (`fault`) and power-cut replay
//! (`powercut`). Production builds leave them out; a crate whose tests use them enables the
//! feature in its `[dev-dependencies]`.
//!
//! The trait is synchronous on purpose: the engines above run their own thread pools and keep
//! many requests in flight by calling from several threads; object-store backends
//! ([`OpendalStorage`]) keep a private async runtime behind this interface.
//!
//! [`open_location`] turns a location string into a storage; see [`location`] for the syntax.

pub mod append_only;
pub mod cache;
pub mod counting;
#[cfg(any(test, feature = "testing"))]
pub mod fault;
pub mod local;
pub mod location;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod opendal;
#[cfg(any(test, feature = "testing"))]
pub mod powercut;
pub mod process;
pub mod retry;
#[cfg(any(test, feature = "testing"))]
pub mod suite;
pub mod throttle;

use std::fmt;

pub use crate::append_only::{AppendOnlyStorage, deletes_refused};
pub use crate::cache::{CachePolicy, CacheStorage};
pub use crate::counting::{CountingStorage, RequestCounts};
pub use crate::location::{
    Location, OpenOptions, open_location, open_location_with, parse_location,
};
pub use crate::opendal::OpendalStorage;
pub use crate::retry::{RetryBudget, RetryStorage};
pub use crate::throttle::{Bandwidth, ThrottleStorage};
pub use local::LocalStorage;

/// What went wrong with a storage operation, and whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object (or the storage root) does not exist.
    NotFound,
    /// The object already exists and the operation refuses to replace it.
    AlreadyExists,
    /// Credentials or permissions refuse the operation.
    PermissionDenied,
    /// The device or quota is full.
    NoSpace,
    /// A fault that may go away: timeout, connection reset, server busy.
    Transient,
    /// The storage refuses deletion or replacement (append-only).
    AppendOnly,
    /// Anything else; retrying will not help.
    Other,
}

/// An error from a storage operation, naming the object it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {message}")]
pub struct StorageError {
    pub kind: ErrorKind,
    pub op: &'static str,
    pub path: String,
    pub message: String,
}

impl StorageError {
    pub fn new(kind: ErrorKind, op: &'static str, path: &str, message: impl fmt::Display) -> Self {
        StorageError {
            kind,
            op,
            path: path.to_string(),
            message: message.to_string(),
        }
    }

    /// Converts an I/O error into a storage error for `op` on `path`.
    pub fn io(op: &'static str, path: &str, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::AlreadyExists => ErrorKind::AlreadyExists,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::StorageFull | K::QuotaExceeded => ErrorKind::NoSpace,
            K::TimedOut | K::Interrupted | K::ConnectionReset | K::ConnectionAborted => {
                ErrorKind::Transient
            }
            _ if err.raw_os_error() == Some(libc::ENOSPC) => ErrorKind::NoSpace,
            _ => ErrorKind::Other,
        };
        StorageError::new(kind, op, path, err)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// One object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full name relative to the storage root, e.g. `data/ab/abcd...`.
    pub name: String,
    pub size: u64,
}

/// Fixed properties of a storage.
#[derive(Debug, Clone)]
pub struct Properties {
    /// How many requests are worth keeping in flight at once.
    pub connections: usize,
    /// Human-readable location, for messages.
    pub location: String,
    /// Whether this is a local filesystem (fast random reads, cheap requests).
    pub local: bool,
    /// Whether deletion and replacement are refused ([`AppendOnlyStorage`]).
    pub append_only: bool,
}

/// A flat namespace of immutable objects under a root.
///
/// Names use `/` separators. `write` is atomic and durable when it returns: a reader sees
/// either nothing or the whole object, also after a crash. Objects are written once; the
/// repository format never rewrites an object under the same name except `config` at init.
pub trait Storage: Send + Sync {
    /// Properties of this storage.
    fn properties(&self) -> Properties;
    /// Creates the root (and whatever a backend needs) so that objects can be written.
    fn create(&self) -> Result<()>;
    /// Reads a whole object.
    fn read(&self, name: &str) -> Result<Vec<u8>>;
    /// Reads `length` bytes at `offset`; fails if the object is shorter.
    fn read_range(&self, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_range_into(name, offset, length, &mut buf)?;
        Ok(buf)
    }
    /// [`Storage::read_range`] into `buf`, whose content it replaces: a caller that reads
    /// many ranges reuses one buffer (no fresh pages to fault in for every range).
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()>;
    /// Writes a whole object atomically and durably.
    fn write(&self, name: &str, data: &[u8]) -> Result<()>;
    /// Removes an object. Removing a missing object is `NotFound`.
    fn delete(&self, name: &str) -> Result<()>;
    /// Size of an object.
    fn stat(&self, name: &str) -> Result<ObjectInfo>;
    /// Every object whose name starts with `prefix` (a directory such as `snapshots/`).
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
}

impl<S: Storage + ?Sized> Storage for std::sync::Arc<S> {
    fn properties(&self) -> Properties {
        (**self).properties()
    }
    fn create(&self) -> Result<()> {
        (**self).create()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        (**self).read(name)
    }
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        (**self).read_range_into(name, offset, length, buf)
    }
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        (**self).write(name, data)
    }
    fn delete(&self, name: &str) -> Result<()> {
        (**self).delete(name)
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        (**self).stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        (**self).list(prefix)
    }
}

/// Checks that `name` is a valid object name: relative, `/`-separated, no empty, `.` or `..`
/// components.
pub(crate) fn check_name(op: &'static str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.starts_with('/')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(StorageError::new(
            ErrorKind::Other,
            op,
            name,
            "invalid object name",
        ));
    }
    Ok(())
}
