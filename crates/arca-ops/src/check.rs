//! The check operation: reads the repository's structure (keys, config, snapshots, index,
//! trees, pack headers) and as much pack data as asked, and reports every damaged object
//! with the snapshots and paths it affects. A check reads the storage itself, never a
//! cache: open the session with [`crate::Access::Uncached`].
//!
//! Lock: shared (backups go on meanwhile; prune waits).

use arca_core::check::{CheckReport, ReadData};
use arca_core::progress::Progress;

use crate::session::Session;

/// Checks the repository of `session`.
pub fn check(
    session: &Session,
    read_data: ReadData,
    stop: &dyn Fn() -> bool,
    progress: &dyn Progress,
) -> arca_core::Result<CheckReport> {
    let _lock = session.lock(false, "check", stop)?;
    arca_core::check::check(session.repository(), read_data, progress)
}
