//! MySQL / MariaDB: logical dumps (`mariadb-dump`/`mysqldump` streamed into a snapshot and
//! piped back into `mariadb`/`mysql`) and physical backups (`mariadb-backup --stream` or
//! `xtrabackup` into a snapshot, unpacked and prepared into a data directory).
//!
//! arca never speaks the MySQL protocol itself: it runs the server's own tools. The
//! password reaches them only through a temporary option file (mode 0600, removed when the
//! run ends) named by the first argument, never on a command line or in a child's
//! environment. Snapshot metadata keys written here are listed in docs/FORMAT.md.

mod connection;
mod dump;
mod physical;
mod scan;
mod server;
mod tools;
pub mod xbstream;

use std::path::PathBuf;

pub use connection::{Connection, OptionFile};
pub use dump::{DumpSelection, RestoreSummary, dump, dump_arguments, restore_dump};
pub use physical::{PhysicalRestore, backup_physical, restore_physical};
pub use scan::{BinlogCoordinates, parse_backup_log_line, parse_dump_comment_line};
pub use server::{ServerInfo, server_info};
pub use tools::{Tool, find_tool};

/// Snapshot `source` of a logical dump.
pub const SOURCE_DUMP: &str = "mysql-dump";
/// Snapshot `source` of a physical (mariadb-backup/xtrabackup) backup.
pub const SOURCE_BACKUP: &str = "mysql-backup";

/// Errors of MySQL/MariaDB backups and restores. Each names the server, tool, snapshot or
/// directory concerned; none ever contains the password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{wanted} not found in PATH (looked for {candidates}); install the MariaDB or MySQL client tools"
    )]
    ToolMissing { wanted: String, candidates: String },
    #[error("cannot connect to the MySQL/MariaDB server ({server}): {message}")]
    Connect { server: String, message: String },
    #[error("{tool} failed ({status}) on {target}: {message}")]
    ToolFailed {
        tool: String,
        status: String,
        target: String,
        message: String,
    },
    #[error("starting {tool}: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("snapshot {snapshot} holds a {found:?} backup, not a {expected:?} one")]
    WrongSnapshotSource {
        snapshot: String,
        found: String,
        expected: String,
    },
    #[error("snapshot {0} holds no single stream file to restore")]
    NoStream(String),
    #[error(
        "data directory {0} is not empty; restore-physical only writes into an empty or new directory"
    )]
    DirectoryNotEmpty(PathBuf),
    #[error(
        "refusing the backup stream of snapshot {snapshot}: {source}; nothing was extracted past that chunk into {datadir}"
    )]
    HostileStream {
        snapshot: String,
        datadir: PathBuf,
        source: xbstream::StreamError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Core(#[from] arca_core::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The arca-core error inside, if any (the CLI maps its kind to an exit code).
    pub fn core(&self) -> Option<&arca_core::Error> {
        match self {
            Error::Core(e) => Some(e),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
