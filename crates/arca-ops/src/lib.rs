//! arca-ops: the application layer, once. A [`session::Session`] opens a repository from
//! one description ([`session::RepositorySpec`]: location, password source, connections,
//! bandwidth limits, cache, append-only, lock waiting), and the operations run on it, each
//! with the lock it needs and a typed report. The CLI, the daemon's job runs and the
//! dashboard call these same functions, so `arca backup` and a scheduled job behave alike.
//!
//! Nothing here prints: reports are data, and the front ends render them.

pub mod backup;
pub mod cache;
pub mod check;
pub mod command;
pub mod copy;
pub mod drill;
pub mod forget;
pub mod password;
pub mod prune;
mod request_report;
pub mod restore;
pub mod session;

pub use cache::CacheSetting;
pub use password::{PasswordError, PasswordSource};
pub use session::{Access, CacheHandle, OpenError, RepositorySpec, Session};

/// The engine's error inside `cause` when it is one of the operations' errors that wrap
/// it transparently (a transparent error hands its source's source to `Error::source`,
/// so the engine's error itself is not in an error chain): front ends classify it with
/// [`arca_core::Error::kind`] (interrupted, locked, wrong password, ...).
pub fn engine_error<'a>(
    cause: &'a (dyn std::error::Error + 'static),
) -> Option<&'a arca_core::Error> {
    if let Some(e) = cause.downcast_ref::<arca_core::Error>() {
        return Some(e);
    }
    if let Some(prune::MaintenanceError::Repository(e)) = cause.downcast_ref() {
        return Some(e);
    }
    if let Some(copy::CopyError::Repository(e)) = cause.downcast_ref() {
        return Some(e);
    }
    if let Some(e) = cause.downcast_ref::<backup::BackupError>() {
        return e.core();
    }
    cause
        .downcast_ref::<restore::RestoreError>()
        .map(restore::RestoreError::core)
}
