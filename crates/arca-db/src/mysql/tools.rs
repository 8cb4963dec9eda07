//! Finding the MySQL/MariaDB command-line tools in PATH (MariaDB names first, then the
//! MySQL or Percona ones).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// A tool arca runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// The SQL client (queries, restoring dumps).
    Client,
    /// The logical dump tool.
    Dump,
    /// The physical backup tool (`mariadb-backup` or `xtrabackup`).
    Backup,
}

impl Tool {
    /// Names tried in order.
    pub fn candidates(self) -> &'static [&'static str] {
        match self {
            Tool::Client => &["mariadb", "mysql"],
            Tool::Dump => &["mariadb-dump", "mysqldump"],
            Tool::Backup => &["mariadb-backup", "mariabackup", "xtrabackup"],
        }
    }

    fn what(self) -> &'static str {
        match self {
            Tool::Client => "the MySQL/MariaDB client",
            Tool::Dump => "a dump tool",
            Tool::Backup => "a physical backup tool",
        }
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first of `names` found in PATH.
pub(crate) fn find_named(names: &[&str], what: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    Err(Error::ToolMissing {
        wanted: what.to_string(),
        candidates: names.join(", "),
    })
}

/// The path of `tool`, or a clear error naming what was looked for.
pub fn find_tool(tool: Tool) -> Result<PathBuf> {
    find_named(tool.candidates(), tool.what())
}

/// The stream extractor that matches a physical backup tool (`mbstream` for MariaDB,
/// `xbstream` for Percona XtraBackup).
pub(crate) fn extractor_for(backup_tool: &str) -> &'static [&'static str] {
    if backup_tool.contains("xtrabackup") {
        &["xbstream", "mbstream"]
    } else {
        &["mbstream", "xbstream"]
    }
}

/// Base name of a tool path, for messages and metadata.
pub(crate) fn tool_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}
