//! PostgreSQL: logical dumps (`pg_dump`/`pg_dumpall` streamed into snapshots and back
//! through `pg_restore`/`psql`), base backups (the data directory read directly between
//! `pg_backup_start` and `pg_backup_stop` when it is on this host, else
//! `pg_basebackup -Ft -X none` streamed into a snapshot; tablespaces outside the data
//! directory only with the former, see `tablespace`), continuous WAL archiving
//! (`wal-push`/`wal-fetch` over the archived-file catalog of [`arca_core::wal`]), WAL checks
//! and retention, and point-in-time restore.
//!
//! arca runs the server's own client tools and never speaks the PostgreSQL protocol
//! itself. Snapshot and WAL record metadata keys written here are listed in
//! docs/FORMAT.md ("PostgreSQL WAL archive").

mod basebackup;
mod dump;
mod filebackup;
mod pgcontrol;
mod pitr;
mod tablespace;
mod tools;
mod untar;
mod walarchive;
mod walname;

pub use basebackup::{
    BaseBackupMethod, BaseBackupOptions, StartedBaseBackup, base_backup, finish_base_backup,
    start_base_backup,
};
pub use dump::{DumpFormat, DumpOptions, dump, dump_all, restore_dump, restore_dump_set};
pub use pitr::{
    RecoveryTarget, RestoreOptions, RestorePlan, choose_base_backup, restore_base_backup,
};
pub use tablespace::{META_TABLESPACES, Tablespace, parse_mapping as parse_tablespace_mapping};
pub use tools::{ServerInfo, Tools, server_info, with_dbname};
pub use walarchive::{
    FetchOutcome, PushOptions, PushReport, SpoolState, WalCheckReport, check_wal, fetch,
    forget_wal, push, push_done_in_spool, run_push_worker, spool_state, take_prefetched,
};
pub use walname::{Lsn, LsnError, WalName, segment_name};

/// Snapshot `source` of a `pg_dump` of one database.
pub const SOURCE_DUMP: &str = "pg-dump";
/// Snapshot `source` of `pg_dumpall --globals-only` (roles, tablespaces).
pub const SOURCE_DUMPALL: &str = "pg-dumpall";
/// Snapshot `source` of a base backup.
pub const SOURCE_BASEBACKUP: &str = "pg-basebackup";

/// Errors of PostgreSQL backups, WAL archiving and restores. Each names the server, tool,
/// snapshot, WAL file or directory concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repository(#[from] arca_core::Error),
    #[error(
        "{tool} not found (looked in {looked}); install the PostgreSQL client tools or pass --pg-bindir"
    )]
    ToolMissing { tool: String, looked: String },
    #[error("cannot connect to the PostgreSQL server ({target}): {message}")]
    Connect { target: String, message: String },
    #[error("starting {tool}: {error}")]
    Spawn { tool: String, error: std::io::Error },
    #[error("{tool} failed ({status}) on {target}: {message}")]
    ToolFailed {
        tool: String,
        status: String,
        target: String,
        message: String,
    },
    #[error("{path}: {error}")]
    Io {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("WAL file {name} is already archived with different content; refusing to overwrite it")]
    WalConflict { name: String },
    #[error("WAL file {name} in the repository is damaged: {reason}")]
    WalDamaged { name: String, reason: String },
    #[error("{path}: {reason}")]
    ControlFile {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Child(#[from] arca_core::child::ChildError),
}

impl Error {
    pub(crate) fn io(path: impl Into<std::path::PathBuf>, error: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
