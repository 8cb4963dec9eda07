//! `arca wal-push` / `arca wal-fetch`: PostgreSQL's archive_command and restore_command.
//!
//! Exit codes follow PostgreSQL's contract. wal-push: 0 once the file is durable in the
//! repository, non-zero otherwise (PostgreSQL retries). wal-fetch: 0 when the file was
//! written, 1 when the repository simply does not have it (recovery ends there), and 255
//! on any real error (repository unreachable, wrong password, damaged data), which makes
//! PostgreSQL stop instead of ending recovery early.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arca_db::postgres::{self, FetchOutcome, PushOptions};
use clap::Args;

use crate::cli::GlobalArgs;
use crate::common;

/// wal-fetch's exit code for real errors (> 125: PostgreSQL aborts recovery).
pub const FETCH_FATAL: i32 = 255;
/// wal-fetch's exit code for a file the repository does not have.
pub const FETCH_NOT_ARCHIVED: i32 = 1;

#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// Path of the WAL file to archive (%p)
    pub path: PathBuf,
    /// Directory for markers of files pushed ahead of PostgreSQL's call
    /// (default: arca-spool beside the WAL file, i.e. in pg_wal)
    #[arg(long, env = "ARCA_WAL_SPOOL")]
    pub spool: Option<PathBuf>,
    /// Push up to this many ready WAL files in one run (1: only the named file)
    #[arg(long, env = "ARCA_WAL_PUSH_BATCH", default_value_t = 32)]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    /// Name of the WAL file wanted (%f)
    pub name: String,
    /// Where to write it (%p)
    pub dest: PathBuf,
    /// Also fetch up to this many following segments into a prefetch directory beside
    /// the destination (0: off)
    #[arg(long, env = "ARCA_WAL_PREFETCH", default_value_t = 16)]
    pub prefetch: usize,
}

fn spool_dir(a: &WalPushArgs) -> PathBuf {
    a.spool
        .clone()
        .unwrap_or_else(|| a.path.parent().unwrap_or(Path::new(".")).join("arca-spool"))
}

pub fn push(g: &GlobalArgs, a: WalPushArgs) -> Result<i32> {
    let spool = spool_dir(&a);
    if a.batch > 1
        && postgres::push_done_in_spool(&spool, &a.path).map_err(crate::cmd::pg::db_err)?
    {
        return Ok(crate::exit::OK);
    }
    let repo = common::open(g)?;
    let opts = PushOptions {
        spool: (a.batch > 1).then_some(spool),
        batch: a.batch.max(1),
        threads: g
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
    };
    let report = postgres::push(&repo, &a.path, &opts)
        .map_err(crate::cmd::pg::db_err)
        .with_context(|| format!("archiving {}", a.path.display()))?;
    for (name, why) in &report.skipped {
        eprintln!("arca wal-push: {name} left for a later call: {why}");
    }
    if g.json {
        common::print_json(&serde_json::json!({
            "message_type": "summary",
            "pushed": report.pushed,
            "already_archived": report.already,
            "bytes_added": report.bytes_added,
        }))?;
    }
    Ok(crate::exit::OK)
}

pub fn fetch(g: &GlobalArgs, a: WalFetchArgs) -> Result<i32> {
    match fetch_inner(g, &a) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("arca wal-fetch {}: {e:#}", a.name);
            Ok(FETCH_FATAL)
        }
    }
}

fn fetch_inner(g: &GlobalArgs, a: &WalFetchArgs) -> Result<i32> {
    let prefetch_dir = a
        .dest
        .parent()
        .unwrap_or(Path::new("."))
        .join("arca-prefetch");
    if a.prefetch > 0
        && postgres::take_prefetched(&prefetch_dir, &a.name, &a.dest)
            .map_err(crate::cmd::pg::db_err)?
    {
        return Ok(crate::exit::OK);
    }
    let repo = common::open(g)?;
    let outcome = postgres::fetch(
        &repo,
        &a.name,
        &a.dest,
        (a.prefetch > 0).then_some(prefetch_dir.as_path()),
        a.prefetch,
    )
    .map_err(crate::cmd::pg::db_err)?;
    Ok(match outcome {
        FetchOutcome::Restored => crate::exit::OK,
        FetchOutcome::NotArchived => FETCH_NOT_ARCHIVED,
    })
}
