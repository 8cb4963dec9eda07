//! Command-line definitions shared by the commands: the global options, the snapshot
//! filter, and the arguments of the repository commands. Every flag is declared once;
//! the command tree that puts them together is [`crate::cmd::Cli`], from which help, the
//! man page and shell completions are generated.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Repository location (a local directory)
    #[arg(short = 'r', long = "repo", env = "ARCA_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// Read the password from this file (first line)
    #[arg(long, env = "ARCA_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password
    #[arg(long, env = "ARCA_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Kill the password command and fail (exit code 124) when it runs longer than this
    #[arg(
        long,
        env = "ARCA_PASSWORD_COMMAND_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s",
        global = true
    )]
    pub password_command_timeout: String,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Never show progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Cache directory (object stores; accepted for local repositories)
    #[arg(long, env = "ARCA_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Do not use a local cache
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Worker threads (default: the number of cores)
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Concurrent requests to the repository's storage (object stores)
    #[arg(long, env = "ARCA_CONNECTIONS", global = true)]
    pub connections: Option<usize>,
    /// Limit uploads to this many KiB/s
    #[arg(long, value_name = "KIB_PER_SEC", global = true)]
    pub limit_upload: Option<u64>,
    /// Limit downloads to this many KiB/s
    #[arg(long, value_name = "KIB_PER_SEC", global = true)]
    pub limit_download: Option<u64>,
    /// Only add to the repository: never delete or replace objects (forget and prune are
    /// refused); with `init`, records append-only mode in the repository's config
    #[arg(
        long,
        env = "ARCA_APPEND_ONLY",
        global = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub append_only: bool,
    /// Wait up to this long for a conflicting lock to be released (e.g. "5m", "30s")
    #[arg(long, env = "ARCA_RETRY_LOCK", value_name = "DURATION", global = true)]
    pub retry_lock: Option<String>,
    /// The configuration file (jobs, repositories, daemon)
    #[arg(long = "config", env = "ARCA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// zstd compression level for data (0 disables compression)
    #[arg(long, default_value_t = 3)]
    pub compression: i32,
    /// Deduplicate like --from-repo (share its chunker and blob-id secrets), so `copy`
    /// sends only what is new
    #[arg(long, requires = "from_repo")]
    pub copy_chunker_params: bool,
    #[command(flatten)]
    pub from: FromRepoArgs,
}

#[derive(Debug, Args, Clone)]
pub struct FromRepoArgs {
    /// The other (source) repository
    #[arg(long, env = "ARCA_FROM_REPOSITORY")]
    pub from_repo: Option<String>,
    /// Password file of the source repository
    #[arg(long, env = "ARCA_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Command printing the source repository's password
    #[arg(long, env = "ARCA_FROM_PASSWORD_COMMAND")]
    pub from_password_command: Option<String>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    pub from: FromRepoArgs,
    /// Snapshots to copy (default: all matching the filters)
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BackupTypeArg {
    Full,
    Incremental,
    Differential,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up
    pub paths: Vec<PathBuf>,
    /// Backup type: what is read and which snapshot is the parent
    #[arg(long = "type", value_enum, default_value = "incremental")]
    pub backup_type: BackupTypeArg,
    /// Read every file and compare content instead of trusting timestamps
    #[arg(long)]
    pub checksum: bool,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Snapshot time, "YYYY-MM-DD HH:MM:SS" in local time (default: now)
    #[arg(long)]
    pub time: Option<String>,
    /// Exclude paths matching a glob (repeatable)
    #[arg(short = 'e', long = "exclude")]
    pub excludes: Vec<String>,
    /// Read exclude globs from a file, one per line
    #[arg(long)]
    pub exclude_file: Vec<PathBuf>,
    /// Skip directories that contain a file with this name
    #[arg(long)]
    pub exclude_if_present: Vec<String>,
    /// Do not cross filesystem boundaries
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Do everything but write to the repository
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Read the data to back up from stdin
    #[arg(long, conflicts_with = "paths")]
    pub stdin: bool,
    /// File name for --stdin / --stdin-from-command data
    #[arg(long, default_value = "stdin")]
    pub stdin_filename: String,
    /// Run the command after `--` and back up its stdout; a failing command keeps no snapshot
    #[arg(long, conflicts_with = "stdin")]
    pub stdin_from_command: bool,
    /// Command and arguments for --stdin-from-command
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct SnapshotFilter {
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable; "a,b" needs both)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots of this path (repeatable)
    #[arg(long = "path")]
    pub paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Only these snapshots
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot (id, prefix, `latest`, or REF:sub/path)
    pub snapshot: String,
    /// Only list below this path
    pub path: Option<String>,
    /// Long listing: mode, owner, size, time
    #[arg(short, long)]
    pub long: bool,
    /// Only the directory itself, not its whole subtree
    #[arg(long)]
    pub no_recursive: bool,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    /// Glob matched against file names (or whole paths when it contains `/`)
    pub pattern: String,
    /// Only this snapshot (repeatable)
    #[arg(short = 's', long = "snapshot")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub first: String,
    pub second: String,
    /// Also list metadata-only changes
    #[arg(long)]
    pub metadata: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    pub snapshot: String,
    /// Path inside the snapshot
    pub path: String,
    /// Write to this file instead of stdout
    #[arg(short = 't', long)]
    pub target: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OverwriteArg {
    /// Compare existing files with the snapshot blob by blob and rewrite what differs;
    /// replace entries of the wrong type
    Always,
    /// Trust files whose size and mtime (to the nanosecond) match; otherwise as always
    IfChanged,
    /// Leave every existing entry as it is, content and metadata, and report it as skipped
    Never,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot to restore (id, prefix, `latest`), optionally REF:sub/path
    pub snapshot: String,
    /// Directory to restore into
    #[arg(short = 't', long)]
    pub target: PathBuf,
    /// Only restore paths matching a glob (repeatable)
    #[arg(short = 'i', long = "include")]
    pub includes: Vec<String>,
    /// Do not restore paths matching a glob (repeatable)
    #[arg(short = 'e', long = "exclude")]
    pub excludes: Vec<String>,
    /// Re-read restored files and compare with the snapshot
    #[arg(long)]
    pub verify: bool,
    /// What to do with entries that already exist in the target. The restore never
    /// follows a symlink in the target and never writes outside it
    #[arg(long, value_enum, default_value = "always")]
    pub overwrite: OverwriteArg,
    /// Remove entries in the target that are not in the snapshot, and non-empty
    /// directories that stand where the snapshot has a file or link (without it such a
    /// directory is a conflict: reported, left alone, exit 1)
    #[arg(long)]
    pub delete: bool,
    /// Write everything restored to disk before reporting success (one syncfs of the
    /// target's file system)
    #[arg(long)]
    pub sync: bool,
    /// Show what would be restored
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// config, snapshot, tree, index, key or pack
    pub kind: String,
    /// Object id (snapshot references allowed for `snapshot`; `tree` accepts SNAP:path)
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only these snapshots (default: all)
    pub snapshots: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Read and verify every byte of data
    #[arg(long)]
    pub read_data: bool,
    /// Read a subset of the data: "n/m" (part n of m) or "P%" (a random share)
    #[arg(long, value_name = "n/m|P%")]
    pub read_data_subset: Option<arca_core::check::ReadData>,
}

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the packs' headers
    Index,
    /// Write new snapshots that leave out files whose data is missing or damaged
    Snapshots {
        /// Read every referenced blob to find damaged ones (not only missing ones)
        #[arg(long)]
        read_data: bool,
        /// Remove the damaged original snapshots
        #[arg(long)]
        forget: bool,
        /// Only show what would be repaired
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List keys
    List,
    /// Add a key for a new password
    Add(NewPasswordArgs),
    /// Remove a key (not the last one, not the one in use)
    Remove { id: String },
    /// Change the password of the key in use
    Passwd(NewPasswordArgs),
}

#[derive(Debug, Args)]
pub struct NewPasswordArgs {
    /// Read the new password from this file
    #[arg(long)]
    pub new_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones
    #[arg(long)]
    pub remove_all: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the man pages into
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots to remove explicitly (instead of a policy)
    pub snapshots: Vec<String>,
    /// Keep the last N snapshots (-1: all)
    #[arg(short = 'l', long, allow_hyphen_values = true)]
    pub keep_last: Option<i64>,
    /// Keep the last N hourly snapshots
    #[arg(short = 'H', long, allow_hyphen_values = true)]
    pub keep_hourly: Option<i64>,
    /// Keep the last N daily snapshots
    #[arg(short = 'd', long, allow_hyphen_values = true)]
    pub keep_daily: Option<i64>,
    /// Keep the last N weekly snapshots
    #[arg(short = 'w', long, allow_hyphen_values = true)]
    pub keep_weekly: Option<i64>,
    /// Keep the last N monthly snapshots
    #[arg(short = 'm', long, allow_hyphen_values = true)]
    pub keep_monthly: Option<i64>,
    /// Keep the last N yearly snapshots
    #[arg(short = 'y', long, allow_hyphen_values = true)]
    pub keep_yearly: Option<i64>,
    /// Keep snapshots newer than DURATION relative to the newest: h, d, w, mo (months), y,
    /// e.g. 1y5mo7d2h (restic's month unit m is refused: m means minutes in arca)
    #[arg(long)]
    pub keep_within: Option<arca_core::retention::RetentionDuration>,
    #[arg(long)]
    pub keep_within_hourly: Option<arca_core::retention::RetentionDuration>,
    #[arg(long)]
    pub keep_within_daily: Option<arca_core::retention::RetentionDuration>,
    #[arg(long)]
    pub keep_within_weekly: Option<arca_core::retention::RetentionDuration>,
    #[arg(long)]
    pub keep_within_monthly: Option<arca_core::retention::RetentionDuration>,
    #[arg(long)]
    pub keep_within_yearly: Option<arca_core::retention::RetentionDuration>,
    /// Keep snapshots with this tag ("a,b" needs both; repeatable)
    #[arg(long = "keep-tag")]
    pub keep_tags: Vec<String>,
    /// Group snapshots by these fields before applying the policy (host,paths,tags or "")
    #[arg(short = 'g', long, default_value = "host,paths")]
    pub group_by: String,
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Only show what would be removed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_opts: PruneOpts,
}

#[derive(Debug, Args, Clone)]
pub struct PruneOpts {
    /// Unused space to tolerate in partly used packs: PERCENT%, SIZE (e.g. 100M) or unlimited
    #[arg(long, default_value = "5%")]
    pub max_unused: arca_core::prune::MaxUnused,
    /// Repack at most this much data (e.g. 2G)
    #[arg(long)]
    pub max_repack_size: Option<arca_core::units::Size>,
    /// Only repack tree packs
    #[arg(long)]
    pub repack_cacheable_only: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub opts: PruneOpts,
    /// Only show the plan
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}
