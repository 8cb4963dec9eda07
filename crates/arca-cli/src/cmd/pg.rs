//! `arca pg ...`: PostgreSQL dumps, base backups, point-in-time restore and WAL checks.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arca_core::backup::{BackupOptions, BackupResult};
use arca_db::postgres::{
    self, BaseBackupMethod, BaseBackupOptions, DumpFormat, DumpOptions, RecoveryTarget,
    RestoreOptions, Tools,
};
use clap::{Args, Subcommand, ValueEnum};

use crate::cli::GlobalArgs;
use crate::cmd::db_args::DbConnectArgs;
use crate::common;
use crate::output::CliProgress;

#[derive(Debug, Subcommand)]
pub enum PgCommand {
    /// Stream pg_dump (or, with --all, every database plus the globals) into snapshots
    Dump(DumpArgs),
    /// Restore a dump snapshot through pg_restore or psql (a globals snapshot of a
    /// `dump --all` set restores the whole set)
    RestoreDump(RestoreDumpArgs),
    /// Take a base backup: the data directory read directly when it is on this host
    /// (unchanged files are not read again), else pg_basebackup -Ft -X none streamed
    Basebackup(BasebackupArgs),
    /// Lay down the newest base backup before a target and configure recovery to it
    Restore(RestoreArgs),
    /// Verify that the archived WAL has no gap from the oldest base backup on, and is readable
    Check(CheckArgs),
    /// Remove archived WAL older than the oldest base backup's start (then run `arca prune`)
    ForgetWal(ForgetWalArgs),
}

#[derive(Debug, Args)]
pub struct ToolArgs {
    /// Directory of the PostgreSQL client tools (default: PATH)
    #[arg(long, env = "ARCA_PG_BINDIR")]
    pub pg_bindir: Option<PathBuf>,
    #[command(flatten)]
    pub timeout: DbConnectArgs,
}

impl ToolArgs {
    /// The client tools, with the connection timeout.
    fn tools(&self) -> Result<Tools> {
        Ok(Tools::new(self.pg_bindir.clone()).with_connect_timeout(Some(self.timeout.limit()?)))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Custom,
    Plain,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Connection string or URI (e.g. postgresql://user@host:5432/db)
    #[arg(long, short = 'd')]
    pub dbname: String,
    /// pg_dump's output format
    #[arg(long, value_enum, default_value = "custom")]
    pub format: FormatArg,
    /// Dump with N parallel jobs (directory format, tarred into the snapshot)
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Every database (one snapshot each) plus the globals (roles, tablespaces)
    #[arg(long)]
    pub all: bool,
    /// Tags for the snapshot(s)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub tools: ToolArgs,
}

#[derive(Debug, Args)]
pub struct RestoreDumpArgs {
    /// The dump snapshot (or the globals snapshot of a `dump --all` set)
    pub snapshot: String,
    /// Target database (for a set: a maintenance database such as postgres)
    #[arg(long, short = 'd')]
    pub dbname: String,
    /// pg_restore jobs (directory-format dumps)
    #[arg(long, short = 'j', default_value_t = 1)]
    pub jobs: usize,
    #[command(flatten)]
    pub tools: ToolArgs,
}

#[derive(Debug, Args)]
pub struct BasebackupArgs {
    /// Connection string or URI of a user with the REPLICATION privilege
    #[arg(long, short = 'd')]
    pub dbname: String,
    /// Backup label
    #[arg(long, default_value = "arca base backup")]
    pub label: String,
    /// Wait for the next regular checkpoint instead of requesting an immediate one
    #[arg(long)]
    pub spread_checkpoint: bool,
    /// files: read the data directory between pg_backup_start and pg_backup_stop (it must
    /// be on this host and readable; needs a superuser or EXECUTE on those functions);
    /// stream: pg_basebackup (REPLICATION privilege); auto: files when possible
    #[arg(long, value_enum, default_value = "auto")]
    pub method: MethodArg,
    /// Of a standby that does not archive itself (archive_mode = on): seconds to wait for
    /// the primary to archive the WAL the backup needs into the repository
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub archive_timeout: u64,
    /// Tags for the snapshot
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub tools: ToolArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    Auto,
    Files,
    Stream,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The new data directory (must be empty or absent)
    #[arg(long)]
    pub pgdata: PathBuf,
    /// Recover to this time ("YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]"; local time without offset)
    #[arg(long, group = "target_kind")]
    pub target_time: Option<String>,
    /// Recover to this WAL position (X/Y)
    #[arg(long, group = "target_kind")]
    pub target_lsn: Option<String>,
    /// Recover to this restore point (pg_create_restore_point)
    #[arg(long, group = "target_kind")]
    pub target_name: Option<String>,
    /// `latest`: recover to the end of the archived WAL
    #[arg(long, group = "target_kind")]
    pub target: Option<String>,
    /// Use this base backup instead of the newest one before the target
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Restore a tablespace into DIR instead of its original location (by OID or name;
    /// repeatable). DIR must be absent or empty
    #[arg(long, value_name = "OID_OR_NAME=DIR", value_parser = postgres::parse_tablespace_mapping)]
    pub tablespace_map: Vec<(String, PathBuf)>,
    /// Restore each tablespace not named by --tablespace-map into DIR/NAME
    #[arg(long, value_name = "DIR")]
    pub tablespace_map_all: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read every needed segment and verify its content
    #[arg(long)]
    pub read_data: bool,
}

#[derive(Debug, Args)]
pub struct ForgetWalArgs {
    /// Only show what would be removed
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

/// arca-db errors for anyhow, keeping a repository error visible to the exit-code mapping.
pub fn db_err(e: postgres::Error) -> anyhow::Error {
    match e {
        postgres::Error::Repository(c) => anyhow::Error::from(c),
        other => anyhow::Error::from(other),
    }
}

pub fn run(g: &GlobalArgs, c: PgCommand) -> Result<i32> {
    match c {
        PgCommand::Dump(a) => dump(g, a),
        PgCommand::RestoreDump(a) => restore_dump(g, a),
        PgCommand::Basebackup(a) => basebackup(g, a),
        PgCommand::Restore(a) => restore(g, a),
        PgCommand::Check(a) => check(g, a),
        PgCommand::ForgetWal(a) => forget_wal(g, a),
    }
}

fn backup_options(g: &GlobalArgs, tags: &[String]) -> BackupOptions {
    BackupOptions {
        tags: tags
            .iter()
            .flat_map(|t| t.split(','))
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        threads: g.threads,
        ..Default::default()
    }
}

fn print_result(g: &GlobalArgs, what: &str, r: &BackupResult) -> Result<()> {
    let s = &r.snapshot.summary;
    if g.json {
        common::print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": r.snapshot_id,
            "source": r.snapshot.source,
            "paths": r.snapshot.paths,
            "meta": r.snapshot.meta,
            "bytes_read": s.bytes_read,
            "bytes_added": s.bytes_added,
            "bytes_added_raw": s.bytes_added_raw,
            "duration_secs": s.duration_secs,
        }))?;
    } else if !g.quiet {
        println!(
            "{what}: read {}, added {} in {:.2}s; snapshot {} saved",
            common::human_bytes(s.bytes_read),
            common::human_bytes(s.bytes_added),
            s.duration_secs,
            r.snapshot_id.map(|i| i.short()).unwrap_or_default()
        );
    }
    Ok(())
}

fn dump(g: &GlobalArgs, a: DumpArgs) -> Result<i32> {
    let tools = a.tools.tools()?;
    // A missing tool is reported before the repository is opened.
    tools
        .find(if a.all { "pg_dumpall" } else { "pg_dump" })
        .map_err(db_err)?;
    let format = match (a.jobs, a.format) {
        (Some(j), _) if j > 1 => DumpFormat::Directory,
        (_, FormatArg::Custom) => DumpFormat::Custom,
        (_, FormatArg::Plain) => DumpFormat::Plain,
    };
    if format == DumpFormat::Directory && matches!(a.format, FormatArg::Plain) {
        bail!("--jobs needs the directory format; it cannot be combined with --format plain");
    }
    let repo = common::open(g)?;
    let _lock = common::lock(g, &repo, false, "pg dump")?;
    let index = common::load_index(&repo)?;
    let opts = DumpOptions {
        dbname: a.dbname.clone(),
        tools,
        format,
        jobs: a.jobs.unwrap_or(1),
        backup: backup_options(g, &a.tags),
    };
    let progress = CliProgress::new(g, "pg dump");
    let results = if a.all {
        postgres::dump_all(&repo, index, &opts, &progress)
    } else {
        postgres::dump(&repo, index, &opts, &Default::default(), &progress).map(|r| vec![r])
    };
    progress.finish();
    let results = results.map_err(db_err)?;
    for r in &results {
        let what = r
            .snapshot
            .meta
            .get("pg.database")
            .map(|d| format!("database {d}"))
            .unwrap_or_else(|| "globals".into());
        print_result(g, &what, r)?;
    }
    Ok(crate::exit::OK)
}

fn restore_dump(g: &GlobalArgs, a: RestoreDumpArgs) -> Result<i32> {
    let tools = a.tools.tools()?;
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let snap = common::resolve(&snaps, &a.snapshot, None)?;
    if snap.1.source == postgres::SOURCE_DUMPALL {
        let dbs =
            postgres::restore_dump_set(&repo, &index, &snaps, &snap, &a.dbname, &tools, a.jobs)
                .map_err(db_err)?;
        if !g.quiet {
            println!(
                "restored globals and {} databases: {}",
                dbs.len(),
                dbs.join(", ")
            );
        }
    } else {
        postgres::restore_dump(&repo, &index, &snap, &a.dbname, &tools, a.jobs).map_err(db_err)?;
        if !g.quiet {
            println!("restored snapshot {}", snap.0.short());
        }
    }
    Ok(crate::exit::OK)
}

fn basebackup(g: &GlobalArgs, a: BasebackupArgs) -> Result<i32> {
    let tools = a.tools.tools()?;
    if !matches!(a.method, MethodArg::Files) {
        tools.find("pg_basebackup").map_err(db_err)?;
    }
    tools.find("psql").map_err(db_err)?;
    let opts = BaseBackupOptions {
        dbname: a.dbname.clone(),
        tools,
        fast_checkpoint: !a.spread_checkpoint,
        label: a.label.clone(),
        method: match a.method {
            MethodArg::Auto => BaseBackupMethod::Auto,
            MethodArg::Files => BaseBackupMethod::Files,
            MethodArg::Stream => BaseBackupMethod::Stream,
        },
        archive_timeout: std::time::Duration::from_secs(a.archive_timeout),
        backup: backup_options(g, &a.tags),
    };
    // The server's checkpoint (pg_backup_start) runs while the repository opens, unless
    // a password prompt could meet one of psql's on the terminal.
    let prompt_free = g.password_file.is_some()
        || g.password_command.is_some()
        || std::env::var_os("ARCA_PASSWORD").is_some();
    let (repo, started) = if prompt_free {
        std::thread::scope(|s| {
            let starting = s.spawn(|| postgres::start_base_backup(&opts));
            let repo = common::open(g);
            let started = starting.join().unwrap_or_else(|_| {
                Err(postgres::Error::Invalid(
                    "starting the base backup failed unexpectedly".into(),
                ))
            });
            (repo, started)
        })
    } else {
        let repo = common::open(g);
        let started = match &repo {
            Ok(_) => postgres::start_base_backup(&opts),
            Err(_) => Err(postgres::Error::Invalid("not started".into())),
        };
        (repo, started)
    };
    // A repository that cannot be opened is reported first (the started backup, if any,
    // is aborted when its session closes).
    let repo = repo?;
    let started = started.map_err(db_err)?;
    if let Some(why) = started.streams_because()
        && !g.quiet
    {
        eprintln!(
            "note: streaming with pg_basebackup instead of reading the data directory: {why}"
        );
    }
    let _lock = common::lock(g, &repo, false, "pg basebackup")?;
    let index = common::load_index(&repo)?;
    let progress = CliProgress::new(g, "pg basebackup");
    let r = postgres::finish_base_backup(&repo, index, &opts, started, &progress);
    progress.finish();
    let r = r.map_err(db_err)?;
    let what = match r.snapshot.meta.get("pg.method").map(String::as_str) {
        Some("files") => "base backup (files)",
        _ => "base backup (pg_basebackup stream)",
    };
    print_result(g, what, &r)?;
    Ok(crate::exit::OK)
}

/// Parses a target time: with an offset as given, without one in local time.
fn parse_target_time(s: &str) -> Result<jiff::Timestamp> {
    let t = s.trim();
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    // PostgreSQL style offsets: "+00" -> "+00:00".
    let normalized = {
        let b = t.as_bytes();
        let n = b.len();
        if n > 3
            && (b[n - 3] == b'+' || b[n - 3] == b'-')
            && b[n - 2..].iter().all(u8::is_ascii_digit)
        {
            format!("{t}:00")
        } else {
            t.to_string()
        }
    };
    if let Ok(ts) = normalized.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let civil: jiff::civil::DateTime = t.parse().with_context(|| {
        format!("invalid --target-time {s:?}: expected \"YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]\"")
    })?;
    Ok(civil
        .to_zoned_datetime(jiff::tz::TimeZone::system())
        .with_context(|| format!("invalid --target-time {s:?}"))?
        .timestamp())
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,@+%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The restore_command: this arca binary, the repository and password source when they
/// came from the command line or a file, then `wal-fetch %f %p`.
fn restore_command(g: &GlobalArgs) -> Result<(String, bool)> {
    let exe = std::env::current_exe().context("locating the arca binary")?;
    let mut parts = vec![shell_quote(&exe.to_string_lossy())];
    let loc = common::location(g)?;
    let loc = if loc.contains("://") {
        loc
    } else {
        absolute(std::path::Path::new(&loc))
            .to_string_lossy()
            .into_owned()
    };
    parts.push("-r".into());
    parts.push(shell_quote(&loc));
    let mut password_in_command = false;
    if let Some(cmd) = &g.password_command {
        parts.push("--password-command".into());
        parts.push(shell_quote(cmd));
        password_in_command = true;
    } else if let Some(f) = &g.password_file {
        parts.push("--password-file".into());
        parts.push(shell_quote(&absolute(f).to_string_lossy()));
        password_in_command = true;
    }
    parts.push("wal-fetch".into());
    parts.push("%f".into());
    parts.push("%p".into());
    Ok((parts.join(" "), password_in_command))
}

fn restore(g: &GlobalArgs, a: RestoreArgs) -> Result<i32> {
    let target = if let Some(t) = &a.target_time {
        RecoveryTarget::Time(parse_target_time(t)?)
    } else if let Some(l) = &a.target_lsn {
        RecoveryTarget::Lsn(
            l.parse()
                .map_err(|e: arca_db::postgres::LsnError| anyhow::anyhow!("--target-lsn: {e}"))?,
        )
    } else if let Some(n) = &a.target_name {
        RecoveryTarget::Name(n.clone())
    } else {
        match a.target.as_deref() {
            Some("latest") => RecoveryTarget::Latest,
            Some(other) => bail!("--target {other:?}: only `latest` is known"),
            None => bail!(
                "give a recovery target: --target-time, --target-lsn, --target-name or --target latest"
            ),
        }
    };
    let (command, password_in_command) = restore_command(g)?;
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let chosen = match &a.snapshot {
        Some(r) => {
            let s = common::resolve(&snaps, r, None)?;
            if s.1.source != postgres::SOURCE_BASEBACKUP {
                bail!("snapshot {} is not a PostgreSQL base backup", s.0.short());
            }
            s
        }
        None => postgres::choose_base_backup(&snaps, &target).map_err(db_err)?,
    };
    let progress = CliProgress::new(g, "pg restore");
    let opts = RestoreOptions {
        pgdata: a.pgdata.clone(),
        target,
        restore_command: command,
        threads: g
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        tablespace_map: a.tablespace_map.clone(),
        tablespace_map_all: a.tablespace_map_all.clone(),
    };
    let r = postgres::restore_base_backup(&repo, &index, &chosen, &opts, &progress);
    progress.finish();
    let plan = r.map_err(db_err)?;
    if g.json {
        common::print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": plan.snapshot,
            "pgdata": a.pgdata,
            "bytes": plan.bytes,
            "settings": plan.settings,
        }))?;
    } else if !g.quiet {
        println!(
            "restored base backup {} ({}) into {}",
            plan.snapshot.short(),
            common::human_bytes(plan.bytes),
            a.pgdata.display()
        );
        for s in &plan.settings {
            println!("  {s}");
        }
        println!("start PostgreSQL on {} to recover", a.pgdata.display());
    }
    if !password_in_command && !g.quiet {
        eprintln!(
            "note: restore_command takes the repository password from the server's environment: \
             start PostgreSQL with ARCA_PASSWORD_FILE (or ARCA_PASSWORD) set"
        );
    }
    Ok(crate::exit::OK)
}

fn check(g: &GlobalArgs, a: CheckArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let snaps = common::all_snapshots(&repo)?;
    let report = postgres::check_wal(&repo, &snaps, a.read_data).map_err(db_err)?;
    if g.json {
        common::print_json(&report)?;
    } else if !g.quiet {
        println!(
            "{} base backups; {} WAL segments checked from {} to {} (timelines {:?})",
            report.base_backups,
            report.segments_checked,
            report
                .first_needed
                .as_deref()
                .unwrap_or("the oldest archived"),
            report.newest.as_deref().unwrap_or("-"),
            report.timelines
        );
    }
    for m in &report.missing {
        eprintln!("missing WAL file: {m}");
    }
    for (n, why) in &report.damaged {
        eprintln!("damaged WAL file {n}: {why}");
    }
    if report.is_ok() {
        if !g.json && !g.quiet {
            println!("no gaps, every needed segment readable");
        }
        Ok(crate::exit::OK)
    } else {
        bail!(
            "the WAL archive is not restorable past a gap: {} missing, {} damaged (first missing: {})",
            report.missing.len(),
            report.damaged.len(),
            report
                .missing
                .first()
                .or(report.damaged.first().map(|d| &d.0))
                .map_or("-", String::as_str)
        )
    }
}

fn forget_wal(g: &GlobalArgs, a: ForgetWalArgs) -> Result<i32> {
    let repo: Arc<arca_core::Repository> = common::open(g)?;
    let _lock = if a.dry_run {
        None
    } else {
        Some(common::lock(g, &repo, true, "pg forget-wal")?)
    };
    let snaps = common::all_snapshots(&repo)?;
    let removed = postgres::forget_wal(&repo, &snaps, a.dry_run).map_err(db_err)?;
    if g.json {
        common::print_json(&serde_json::json!({
            "message_type": "summary",
            "dry_run": a.dry_run,
            "removed": removed,
        }))?;
    } else if !g.quiet {
        println!(
            "{} {} WAL files older than the oldest base backup{}",
            if a.dry_run { "would remove" } else { "removed" },
            removed.len(),
            if a.dry_run {
                ""
            } else {
                "; run `arca prune` to free their space"
            }
        );
    }
    Ok(crate::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Restore {
        #[command(flatten)]
        a: RestoreArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<RestoreArgs, clap::Error> {
        let mut v = vec!["restore", "--pgdata", "/d", "--target", "latest"];
        v.extend_from_slice(args);
        Restore::try_parse_from(v).map(|r| r.a)
    }

    #[test]
    fn tablespace_map_flags_parse() {
        let a = parse(&[
            "--tablespace-map",
            "ts1=/srv/ts1",
            "--tablespace-map",
            "16385=/srv/x=y",
            "--tablespace-map-all",
            "/srv/all",
        ])
        .unwrap();
        assert_eq!(
            a.tablespace_map,
            vec![
                ("ts1".to_string(), PathBuf::from("/srv/ts1")),
                ("16385".to_string(), PathBuf::from("/srv/x=y")),
            ]
        );
        assert_eq!(a.tablespace_map_all, Some(PathBuf::from("/srv/all")));
        let a = parse(&[]).unwrap();
        assert!(a.tablespace_map.is_empty() && a.tablespace_map_all.is_none());
        for bad in ["ts1", "=/x", "ts1="] {
            let e = parse(&["--tablespace-map", bad]).unwrap_err().to_string();
            assert!(e.contains("OID_OR_NAME=DIR"), "{bad}: {e}");
        }
    }
}
