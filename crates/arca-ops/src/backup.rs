//! The backup operation: one source (paths, a stream such as standard input, a command's
//! output, a PostgreSQL dump, a MySQL dump) into a new snapshot of the session's
//! repository. `arca backup` and a job run call it alike: the same lock, the same index
//! (the session's cache keeps the packs of its trees), the same adoption of packs that an
//! interrupted run left unindexed (their data is reused, not uploaded again), and the same
//! child-process source for commands ([`arca_core::child`]: killed when the run is told
//! to stop, no snapshot unless it exited 0).
//!
//! Lock: shared (any number of backups at once); none for a dry run.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use arca_core::Id;
use arca_core::backup::{
    BackupOptions, BackupResult, StreamName, backup_child, backup_paths, backup_stream,
    plain_stream,
};
use arca_core::child::{ChildOptions, ChildProcess, LineObserver};
use arca_core::format::Snapshot;
use arca_core::progress::Progress;
use serde::Serialize;

use crate::session::Session;

/// What a backup reads.
pub enum BackupSource<'a> {
    /// Files and directories (absolute or relative to the working directory).
    Paths(&'a [PathBuf]),
    /// A stream (e.g. standard input), stored as one file named `file`.
    Stream {
        reader: Box<dyn Read + 'a>,
        file: &'a str,
    },
    /// A program's standard output, stored as one file named `file`. It runs in a process
    /// group of its own; `tool` names it in messages; `on_stderr_line` sees its error
    /// output (which is also kept for the message when it fails).
    Command {
        command: Command,
        tool: String,
        file: &'a str,
        on_stderr_line: Option<LineObserver>,
    },
    /// A `pg_dump` of one database.
    Postgres(arca_db::postgres::DumpOptions),
    /// A `mysqldump` / `mariadb-dump` of some databases.
    Mysql {
        connection: arca_db::mysql::Connection,
        selection: arca_db::mysql::DumpSelection,
        /// Extra options for the dump tool.
        options: Vec<String>,
    },
}

/// Why a backup wrote no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Repository(#[from] arca_core::Error),
    #[error(transparent)]
    Postgres(arca_db::postgres::Error),
    #[error(transparent)]
    Mysql(arca_db::mysql::Error),
}

impl BackupError {
    /// The engine's error, also where a database source wraps it.
    pub fn core(&self) -> Option<&arca_core::Error> {
        match self {
            BackupError::Repository(e)
            | BackupError::Postgres(arca_db::postgres::Error::Repository(e))
            | BackupError::Mysql(arca_db::mysql::Error::Core(e)) => Some(e),
            _ => None,
        }
    }

    /// The run was told to stop.
    pub fn is_interrupted(&self) -> bool {
        self.core()
            .is_some_and(|e| e.kind() == arca_core::ErrorKind::Interrupted)
    }
}

/// What a backup did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The new snapshot's id (none for a dry run).
    pub snapshot_id: Option<Id>,
    pub snapshot: Snapshot,
    pub dry_run: bool,
    /// Packs an interrupted run had left unindexed, adopted before the backup.
    pub adopted_packs: usize,
}

/// Backs up `source` into the repository of `session` (see the module documentation).
pub fn backup(
    session: &Session,
    source: BackupSource<'_>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    let repo = session.repository();
    let _lock = if opts.dry_run {
        None
    } else {
        Some(session.lock(false, "backup", &|| progress.should_stop())?)
    };
    let mut index = session.load_index()?;
    let adopted_packs = if opts.dry_run {
        0
    } else {
        repo.adopt_unindexed_packs(&mut index)?
    };
    let index = Arc::new(index);
    let BackupResult {
        snapshot_id,
        snapshot,
    } = match source {
        BackupSource::Paths(paths) => backup_paths(repo, index, paths, opts, progress)?,
        BackupSource::Stream { reader, file } => {
            backup_stream(repo, index, reader, file, "stdin", opts, progress, || {
                Ok(Default::default())
            })?
        }
        BackupSource::Command {
            mut command,
            tool,
            file,
            on_stderr_line,
        } => {
            command.stdin(Stdio::null()).stdout(Stdio::piped());
            let options = ChildOptions {
                own_group: true,
                on_stderr_line,
            };
            let child =
                ChildProcess::spawn(tool, &mut command, options).map_err(arca_core::Error::from)?;
            let name = StreamName {
                file,
                source: "command",
            };
            backup_child(repo, index, &child, name, opts, progress, plain_stream())?
        }
        BackupSource::Postgres(mut o) => {
            o.backup = opts.clone();
            arca_db::postgres::dump(repo, index, &o, &Default::default(), progress)
                .map_err(postgres_error)?
        }
        BackupSource::Mysql {
            connection,
            selection,
            options,
        } => arca_db::mysql::dump(
            repo,
            index,
            &connection,
            &selection,
            &options,
            opts,
            progress,
        )
        .map_err(mysql_error)?,
    };
    Ok(BackupReport {
        snapshot_id,
        snapshot,
        dry_run: opts.dry_run,
        adopted_packs,
    })
}

/// The engine's errors as [`BackupError::Repository`], so that an interruption is one.
fn postgres_error(e: arca_db::postgres::Error) -> BackupError {
    match e {
        arca_db::postgres::Error::Repository(e) => BackupError::Repository(e),
        e => BackupError::Postgres(e),
    }
}

fn mysql_error(e: arca_db::mysql::Error) -> BackupError {
    match e {
        arca_db::mysql::Error::Core(e) => BackupError::Repository(e),
        e => BackupError::Mysql(e),
    }
}
