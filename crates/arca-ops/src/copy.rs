//! The copy operation: copies snapshots of one repository into another (for 3-2-1),
//! skipping those already there (by origin, so copies of copies are recognised), after
//! refusing a copy of a repository into itself.
//!
//! Lock: shared on the destination (a copy only adds, as a backup does); the source is
//! only read.

use arca_core::Id;
use arca_core::copy::{CopySummary, copy_snapshots};
use arca_core::format::Snapshot;
use arca_core::progress::Progress;

use crate::session::Session;

/// Why a copy did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("source {source_location} and destination {destination} are the same repository")]
    SameRepository {
        source_location: String,
        destination: String,
    },
    #[error(transparent)]
    Repository(#[from] arca_core::Error),
}

/// What a copy did: the snapshots copied (source id, new id), those already present, and
/// what the destination gained.
pub type CopyReport = CopySummary;

/// Copies `snapshots` (of `source`) into the repository of `destination`.
pub fn copy(
    source: &Session,
    destination: &Session,
    snapshots: &[(Id, Snapshot)],
    stop: &dyn Fn() -> bool,
    progress: &dyn Progress,
) -> Result<CopyReport, CopyError> {
    let (src, dst) = (source.repository(), destination.repository());
    if src.config().id == dst.config().id {
        return Err(CopyError::SameRepository {
            source_location: src.location().to_string(),
            destination: dst.location().to_string(),
        });
    }
    let _lock = destination.lock(false, "copy", stop)?;
    Ok(copy_snapshots(src, dst, snapshots, progress)?)
}
