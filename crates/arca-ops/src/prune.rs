//! The prune operation: refuse it where deletes are not allowed (client-side append-only,
//! a config that says so, or a storage that refuses a probe delete), take the exclusive
//! lock, remove the temporary files that interrupted writes left in a local repository,
//! then plan and (unless it is a dry run) carry out the plan.
//!
//! Lock: exclusive (no backup, copy or other prune runs meanwhile).

use arca_core::Repository;
use arca_core::prune::{PruneOptions, PrunePlan};
use arca_storage::{LocalStorage, Location};
use serde::Serialize;

use crate::session::Session;

/// Why a forget or prune did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(
        "the repository {location} is append-only ({why}): {operation} is refused; run it \
         with a credential that may delete"
    )]
    AppendOnly {
        location: String,
        operation: &'static str,
        why: &'static str,
    },
    #[error("removing temporary files of interrupted writes in {location}: {source}")]
    TempFiles {
        location: String,
        source: arca_storage::StorageError,
    },
    #[error("removing snapshot {id}: {source}")]
    RemoveSnapshot {
        id: String,
        source: arca_storage::StorageError,
    },
    #[error(
        "no retention policy given (e.g. --keep-daily 7 --keep-weekly 4 --keep-monthly 12 \
         --keep-yearly 7): refusing to remove every snapshot"
    )]
    EmptyPolicy,
    #[error("bad group-by field {0:?}: use host, paths and/or tags")]
    GroupBy(String),
    #[error(transparent)]
    Repository(#[from] arca_core::Error),
}

/// Refuses an operation that deletes on an append-only repository: one whose config says
/// so, opened append-only, or whose storage refuses deletes (checked by deleting a probe
/// object, before anything else is removed).
pub fn ensure_may_delete(
    repo: &Repository,
    operation: &'static str,
) -> Result<(), MaintenanceError> {
    let why = if repo.config().append_only {
        "its config says so (created with arca init --append-only)"
    } else if repo.storage().properties().append_only {
        "the client is set to append-only (--append-only, ARCA_APPEND_ONLY or append_only = true)"
    } else if arca_core::lock::deletes_refused(repo)? {
        "the storage refuses deletes (a credential without delete permission, or a bucket \
         policy)"
    } else {
        return Ok(());
    };
    Err(MaintenanceError::AppendOnly {
        location: repo.location().to_string(),
        operation,
        why,
    })
}

/// What a prune found and did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    #[serde(flatten)]
    pub plan: PrunePlan,
    pub dry_run: bool,
    /// Temporary files of interrupted writes that were removed (local repositories).
    pub temporary_files_removed: usize,
    /// Whether the plan was carried out (false for a dry run or when nothing was to do).
    pub executed: bool,
}

/// Removes the temporary files that interrupted writes left in a local repository (object
/// stores have none: their writes are atomic).
pub fn remove_abandoned_temp_files(location: &str) -> Result<usize, MaintenanceError> {
    let err = |source| MaintenanceError::TempFiles {
        location: location.to_string(),
        source,
    };
    match arca_storage::parse_location(location).map_err(err)? {
        Location::Local(root) => LocalStorage::new(root)
            .remove_abandoned_temp_files()
            .map_err(err),
        _ => Ok(0),
    }
}

/// Prunes the repository of `session` (see the module documentation).
pub fn prune(
    session: &Session,
    options: &PruneOptions,
    dry_run: bool,
    stop: &dyn Fn() -> bool,
) -> Result<PruneReport, MaintenanceError> {
    ensure_may_delete(session.repository(), "prune")?;
    let _lock = session.lock(true, "prune", stop)?;
    let temporary_files_removed = if dry_run {
        0
    } else {
        remove_abandoned_temp_files(session.repository().location())?
    };
    let repo = session.repository();
    let plan = arca_core::prune::plan(repo, options)?;
    let executed = !dry_run && !plan.is_noop();
    if executed {
        arca_core::prune::execute(repo, &plan)?;
    }
    Ok(PruneReport {
        plan,
        dry_run,
        temporary_files_removed,
        executed,
    })
}
