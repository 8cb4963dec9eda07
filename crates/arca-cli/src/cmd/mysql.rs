//! `arca mysql ...`: MySQL/MariaDB logical dumps (`dump`, `restore`) and physical backups
//! (`backup`, `restore-physical`). Connection options come from flags, `ARCA_MYSQL_*`
//! variables or an option file; the work is done by `arca_db::mysql`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arca_core::backup::{BackupOptions, BackupResult};
use arca_core::format::{BackupType, Snapshot};
use arca_core::{Id, lock};
use arca_db::mysql::{self, Connection, DumpSelection};
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::cmd::db_args::DbConnectArgs;
use crate::common;
use crate::output::CliProgress;

#[derive(Debug, Subcommand)]
pub enum MysqlCommand {
    /// Stream mariadb-dump/mysqldump (--single-transaction --routines --triggers --events)
    /// into a snapshot
    Dump(DumpArgs),
    /// Pipe a dump snapshot back into the mariadb/mysql client
    Restore(RestoreArgs),
    /// Stream a physical backup (mariadb-backup/xtrabackup --stream=xbstream) into a
    /// snapshot
    Backup(PhysicalBackupArgs),
    /// Unpack and prepare a physical backup into an empty data directory
    RestorePhysical(RestorePhysicalArgs),
}

/// How to reach the server. Unset options come from the client option files (or
/// --defaults-file). The password is passed to the tools in a temporary 0600 option file,
/// never on a command line.
#[derive(Debug, Args, Clone)]
pub struct ConnectionArgs {
    /// Server host (TCP)
    #[arg(long, env = "ARCA_MYSQL_HOST")]
    pub host: Option<String>,
    /// Server TCP port
    #[arg(long, env = "ARCA_MYSQL_PORT")]
    pub port: Option<u16>,
    /// Server unix socket
    #[arg(long, env = "ARCA_MYSQL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// User name
    #[arg(long, env = "ARCA_MYSQL_USER")]
    pub user: Option<String>,
    /// Read the server password from this file (first line); else ARCA_MYSQL_PASSWORD,
    /// MYSQL_PWD, or the option files
    #[arg(long, value_name = "FILE", env = "ARCA_MYSQL_PASSWORD_FILE")]
    pub mysql_password_file: Option<PathBuf>,
    /// Read client options only from this option file (like the tools' --defaults-file)
    #[arg(long, value_name = "FILE", env = "ARCA_MYSQL_DEFAULTS_FILE")]
    pub defaults_file: Option<PathBuf>,
    #[command(flatten)]
    pub timeout: DbConnectArgs,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Databases to dump
    #[arg(long, num_args = 1.., value_name = "DB", conflicts_with = "all_databases")]
    pub databases: Vec<String>,
    /// Dump every database
    #[arg(long)]
    pub all_databases: bool,
    /// Tags for the snapshot (comma-separated or repeated)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Extra arguments for the dump tool (after `--`)
    #[arg(last = true)]
    pub extra: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot ID (or `latest`: the newest MySQL dump)
    pub snapshot: String,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Extra arguments for the client (after `--`)
    #[arg(last = true)]
    pub extra: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PhysicalBackupArgs {
    /// Tags for the snapshot (comma-separated or repeated)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Extra arguments for the backup tool (after `--`), e.g. --parallel=4
    #[arg(last = true)]
    pub extra: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestorePhysicalArgs {
    /// Snapshot ID (or `latest`: the newest physical MySQL backup)
    pub snapshot: String,
    /// The data directory to create (must be empty or missing)
    #[arg(long, value_name = "DIR")]
    pub datadir: PathBuf,
    /// Give every restored file to this user (and its group, or USER:GROUP), e.g. mysql
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,
}

pub fn run(g: &GlobalArgs, c: MysqlCommand) -> Result<i32> {
    match c {
        MysqlCommand::Dump(a) => dump(g, a),
        MysqlCommand::Restore(a) => restore(g, a),
        MysqlCommand::Backup(a) => backup(g, a),
        MysqlCommand::RestorePhysical(a) => restore_physical(g, a),
    }
}

/// Keeps arca-core errors in the chain so they map to their exit codes.
fn db_error(e: mysql::Error) -> anyhow::Error {
    match e {
        mysql::Error::Core(c) => c.into(),
        other => other.into(),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The password from --mysql-password-file, ARCA_MYSQL_PASSWORD or MYSQL_PWD.
fn password(a: &ConnectionArgs) -> Result<Option<String>> {
    if let Some(f) = &a.mysql_password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading the MySQL password file {}", f.display()))?;
        return Ok(Some(first_line(&text).to_string()));
    }
    for var in ["ARCA_MYSQL_PASSWORD", "MYSQL_PWD"] {
        if let Ok(p) = std::env::var(var) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

fn connection(a: &ConnectionArgs) -> Result<Connection> {
    Ok(Connection {
        host: a.host.clone().filter(|h| !h.is_empty()),
        port: a.port,
        socket: a.socket.clone(),
        user: a.user.clone().filter(|u| !u.is_empty()),
        password: password(a)?,
        defaults_file: a.defaults_file.clone(),
        connect_timeout: Some(a.timeout.limit()?),
    })
}

fn backup_options(g: &GlobalArgs, tags: &[String]) -> BackupOptions {
    BackupOptions {
        backup_type: BackupType::Full,
        checksum: false,
        tags: tags
            .iter()
            .flat_map(|t| t.split(','))
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        host: None,
        time: None,
        excludes: Vec::new(),
        exclude_if_present: Vec::new(),
        one_file_system: false,
        dry_run: false,
        threads: g.threads,
        parent: None,
        meta: Default::default(),
    }
}

/// Opens the repository for a backup: shared lock, index with adopted packs.
fn open_for_backup(
    g: &GlobalArgs,
    operation: &str,
) -> Result<(
    Arc<arca_core::Repository>,
    lock::LockGuard,
    Arc<arca_core::index::Index>,
)> {
    let repo = common::open(g)?;
    let guard = common::lock(g, &repo, false, operation)?;
    let mut index = repo.load_index().context("loading the index")?;
    let adopted = repo.adopt_unindexed_packs(&mut index)?;
    if adopted > 0 && !g.quiet && !g.json {
        eprintln!("indexed {adopted} packs left by an interrupted backup");
    }
    Ok((repo, guard, Arc::new(index)))
}

fn print_backup(g: &GlobalArgs, what: &str, r: &BackupResult) -> Result<()> {
    let s = &r.snapshot.summary;
    if g.json {
        common::print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": r.snapshot_id,
            "source": r.snapshot.source,
            "paths": r.snapshot.paths,
            "meta": r.snapshot.meta,
            "total_bytes": s.total_bytes,
            "bytes_added": s.bytes_added,
            "bytes_added_raw": s.bytes_added_raw,
            "duration_secs": s.duration_secs,
        }))?;
    } else if !g.quiet {
        println!(
            "{what}: read {}, added {} ({} before compression) in {:.2}s",
            common::human_bytes(s.total_bytes),
            common::human_bytes(s.bytes_added),
            common::human_bytes(s.bytes_added_raw),
            s.duration_secs
        );
        let m = &r.snapshot.meta;
        if let (Some(f), Some(p)) = (m.get("binlog_file"), m.get("binlog_position")) {
            println!(
                "binlog position {f}:{p}{}",
                m.get("gtid")
                    .map(|g| format!(", GTID {g}"))
                    .unwrap_or_default()
            );
        }
        if let Some(id) = r.snapshot_id {
            println!("snapshot {} saved", id.short());
        }
    }
    Ok(())
}

fn dump(g: &GlobalArgs, a: DumpArgs) -> Result<i32> {
    let selection = if a.all_databases {
        DumpSelection::AllDatabases
    } else if !a.databases.is_empty() {
        DumpSelection::Databases(a.databases.clone())
    } else {
        bail!("say what to dump: --databases DB... or --all-databases");
    };
    let conn = connection(&a.connection)?;
    let (repo, _lock, index) = open_for_backup(g, "mysql dump")?;
    let progress = CliProgress::new(g, "mysql dump");
    let result = mysql::dump(
        &repo,
        index,
        &conn,
        &selection,
        &a.extra,
        &backup_options(g, &a.tags),
        &progress,
    );
    progress.finish();
    let r = result.map_err(db_error)?;
    print_backup(g, "dump", &r)?;
    Ok(crate::exit::OK)
}

fn backup(g: &GlobalArgs, a: PhysicalBackupArgs) -> Result<i32> {
    let conn = connection(&a.connection)?;
    let (repo, _lock, index) = open_for_backup(g, "mysql backup")?;
    let progress = CliProgress::new(g, "mysql backup");
    let result = mysql::backup_physical(
        &repo,
        index,
        &conn,
        &a.extra,
        &backup_options(g, &a.tags),
        &progress,
    );
    progress.finish();
    let r = result.map_err(db_error)?;
    print_backup(g, "backup", &r)?;
    Ok(crate::exit::OK)
}

/// Resolves a reference; `latest` means the newest snapshot of `source`.
fn resolve(snaps: &[(Id, Snapshot)], reference: &str, source: &str) -> Result<(Id, Snapshot)> {
    if reference == "latest" {
        let of_source: Vec<(Id, Snapshot)> = snaps
            .iter()
            .filter(|(_, s)| s.source == source)
            .cloned()
            .collect();
        if of_source.is_empty() {
            bail!("no {source} snapshot in the repository");
        }
        return common::resolve(&of_source, reference, None);
    }
    common::resolve(snaps, reference, None)
}

fn restore(g: &GlobalArgs, a: RestoreArgs) -> Result<i32> {
    let conn = connection(&a.connection)?;
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let (id, snap) = resolve(&snaps, &a.snapshot, mysql::SOURCE_DUMP)?;
    let progress = CliProgress::new(g, "mysql restore");
    let result = mysql::restore_dump(&repo, &index, &id, &snap, &conn, &a.extra, &progress);
    progress.finish();
    let s = result.map_err(db_error)?;
    if g.json {
        common::print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": id,
            "bytes": s.bytes,
            "duration_secs": s.duration_secs,
        }))?;
    } else if !g.quiet {
        println!(
            "restored {} of snapshot {} ({}) through {} in {:.2}s",
            s.stream,
            id.short(),
            common::human_bytes(s.bytes),
            s.tool,
            s.duration_secs
        );
    }
    Ok(crate::exit::OK)
}

/// `USER`, `USER:GROUP`, or numeric ids.
fn parse_owner(spec: &str) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, default_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, None),
        Err(_) => {
            let u = nix::unistd::User::from_name(user)
                .with_context(|| format!("looking up user {user:?}"))?
                .with_context(|| format!("no user {user:?} on this host"))?;
            (u.uid.as_raw(), Some(u.gid.as_raw()))
        }
    };
    let gid = match group {
        Some(gr) => match gr.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => nix::unistd::Group::from_name(gr)
                .with_context(|| format!("looking up group {gr:?}"))?
                .with_context(|| format!("no group {gr:?} on this host"))?
                .gid
                .as_raw(),
        },
        None => default_gid.unwrap_or(uid),
    };
    Ok((uid, gid))
}

fn restore_physical(g: &GlobalArgs, a: RestorePhysicalArgs) -> Result<i32> {
    let owner = a.owner.as_deref().map(parse_owner).transpose()?;
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let (id, snap) = resolve(&snaps, &a.snapshot, mysql::SOURCE_BACKUP)?;
    let progress = CliProgress::new(g, "mysql restore-physical");
    let result = mysql::restore_physical(&repo, &index, &id, &snap, &a.datadir, owner, &progress);
    progress.finish();
    let r = result.map_err(db_error)?;
    if g.json {
        common::print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": id,
            "datadir": r.datadir,
            "bytes": r.bytes,
            "binlog_file": r.coordinates.file,
            "binlog_position": r.coordinates.position,
            "gtid": r.coordinates.gtid,
            "duration_secs": r.duration_secs,
        }))?;
    } else if !g.quiet {
        println!(
            "restored and prepared snapshot {} into {} ({}) in {:.2}s",
            id.short(),
            r.datadir.display(),
            common::human_bytes(r.bytes),
            r.duration_secs
        );
        if let (Some(f), Some(p)) = (&r.coordinates.file, r.coordinates.position) {
            println!(
                "binlog position {f}:{p}{}",
                r.coordinates
                    .gtid
                    .as_ref()
                    .map(|g| format!(", GTID {g}"))
                    .unwrap_or_default()
            );
        }
        if owner.is_none() {
            println!(
                "the files belong to the user running arca; give them to the server's user (e.g. chown -R mysql: {}) before starting it",
                r.datadir.display()
            );
        }
    }
    Ok(crate::exit::OK)
}
