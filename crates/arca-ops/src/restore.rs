//! The restore operation: a snapshot, or a path inside it, into a target directory,
//! confined to it (every call resolves beneath the target and follows no link the restore
//! did not make: [`arca_core::confined`]), as the overwrite mode says. `arca restore`,
//! drills and recoveries call it alike.
//!
//! Lock: none (a restore reads only what its snapshot references, which no prune removes
//! while the snapshot exists).

use std::path::{Path, PathBuf};

use arca_core::format::Snapshot;
use arca_core::index::Index;
use arca_core::progress::Progress;
use arca_core::restore::{RestoreOptions, RestoreSummary, find_path};
use arca_core::{Id, Repository};
use serde::Serialize;

use crate::session::Session;

/// Why a restore did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{path} in the snapshot (tree {tree}): {source}")]
    Path {
        tree: String,
        path: PathBuf,
        source: arca_core::Error,
    },
    #[error(transparent)]
    Restore(arca_core::Error),
}

impl RestoreError {
    /// The engine's error (for its kind: interrupted, wrong password, ...).
    pub fn core(&self) -> &arca_core::Error {
        match self {
            RestoreError::Path { source, .. } => source,
            RestoreError::Restore(e) => e,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub snapshot_id: Id,
    pub target: PathBuf,
    pub dry_run: bool,
    pub verify: bool,
    #[serde(flatten)]
    pub summary: RestoreSummary,
}

/// Restores `sub_path` (`/` for all of it) of `snapshot` into `target`, reading the
/// session's index.
pub fn restore(
    session: &Session,
    (id, snapshot): (&Id, &Snapshot),
    sub_path: &Path,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    let index = session.load_index().map_err(RestoreError::Restore)?;
    let repo = session.repository();
    let summary = restore_from(repo, &index, snapshot, sub_path, target, opts, progress)?;
    Ok(RestoreReport {
        snapshot_id: *id,
        target: target.to_path_buf(),
        dry_run: opts.dry_run,
        verify: opts.verify,
        summary,
    })
}

/// [`restore`] with a repository and index the caller already holds (drills and
/// recoveries); what it did.
pub fn restore_from(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    sub_path: &Path,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary, RestoreError> {
    let node =
        find_path(repo, index, &snapshot.tree, sub_path).map_err(|source| RestoreError::Path {
            tree: snapshot.tree.short(),
            path: sub_path.to_path_buf(),
            source,
        })?;
    arca_core::restore::restore(repo, index, &node, sub_path, target, opts, progress)
        .map_err(RestoreError::Restore)
}
