//! The command tree ([`Cli`], [`Command`]) and one module per command. Help, the man
//! page and shell completions are generated from this tree.

use clap::{Parser, Subcommand};

use crate::cli::*;

pub mod alert;
pub mod backup;
pub mod cat;
pub mod check;
pub mod copy;
pub mod daemon;
pub mod db_args;
pub mod diff;
pub mod drill;
pub mod dump;
pub mod find;
pub mod forget;
pub mod generate;
pub mod init;
pub mod key;
pub mod ls;
pub mod mysql;
pub mod pg;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod wal;

#[derive(Debug, Parser)]
#[command(
    name = "arca",
    version,
    about = "Encrypted, deduplicating backups of files, streams and databases",
    after_help = "Exit codes: 0 success, 1 failure, 3 snapshot written but incomplete, \
10 repository does not exist, 11 repository locked, 12 wrong password, 130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Create a new repository
    Init(InitArgs),
    /// Back up paths, stdin or a command's output into a new snapshot
    Backup(BackupArgs),
    /// List snapshots
    Snapshots(SnapshotsArgs),
    /// List files in a snapshot
    Ls(LsArgs),
    /// Find files by name or path pattern in snapshots
    Find(FindArgs),
    /// Show what changed between two snapshots
    Diff(DiffArgs),
    /// Write a file of a snapshot to stdout (a directory as tar)
    Dump(DumpArgs),
    /// Restore a snapshot or part of it
    Restore(RestoreArgs),
    /// Print a decoded repository object as JSON (for debugging)
    Cat(CatArgs),
    /// Show repository statistics
    Stats(StatsArgs),
    /// Remove snapshots according to a retention policy
    Forget(ForgetArgs),
    /// Free space used by data no snapshot needs
    Prune(PruneArgs),
    /// Copy snapshots from another repository into this one
    Copy(CopyArgs),
    /// Check the repository's integrity
    Check(CheckArgs),
    /// Repair a damaged repository
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Manage keys (passwords)
    #[command(subcommand)]
    Key(KeyCommand),
    /// Remove stale locks
    Unlock(UnlockArgs),
    /// Print shell completions
    Completions(CompletionsArgs),
    /// Write man pages to a directory
    Man(ManArgs),
    /// PostgreSQL: logical dumps, base backups, point-in-time restore, WAL checks
    #[command(subcommand)]
    Pg(crate::cmd::pg::PgCommand),
    /// Archive one WAL file (PostgreSQL archive_command = 'arca wal-push %p')
    WalPush(crate::cmd::wal::WalPushArgs),
    /// Fetch one WAL file (PostgreSQL restore_command = 'arca wal-fetch %f %p')
    WalFetch(crate::cmd::wal::WalFetchArgs),
    /// MySQL/MariaDB: logical dumps and physical backups
    #[command(subcommand)]
    Mysql(crate::cmd::mysql::MysqlCommand),
    /// Run the scheduler: jobs from the configuration file, dashboard, API and metrics
    Daemon(crate::cmd::daemon::DaemonArgs),
    /// List or run the configured jobs
    #[command(subcommand)]
    Job(crate::cmd::daemon::JobCommand),
    /// Show every job's state: last good snapshot against its RPO, next run, 3-2-1 copies
    Status(crate::cmd::daemon::StatusArgs),
    /// Show the run history of the configured jobs
    History(crate::cmd::daemon::HistoryArgs),
    /// Check a configuration file
    #[command(subcommand)]
    Config(crate::cmd::daemon::ConfigCommand),
    /// Restore drills: prove a snapshot restores, passes checks and fits the RTO
    #[command(subcommand)]
    Drill(crate::cmd::drill::DrillCommand),
    /// Recover a configured job's data the way its tier says (hot, warm or cold)
    Recover(crate::cmd::drill::RecoverArgs),
    /// Alert channels: send a test message
    #[command(subcommand)]
    Alert(crate::cmd::alert::AlertCommand),
}
