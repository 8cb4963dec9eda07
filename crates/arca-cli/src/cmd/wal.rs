//! `arca wal-push` / `arca wal-fetch`: PostgreSQL's archive_command and restore_command.
//!
//! Exit codes follow PostgreSQL's contract. wal-push: 0 once the file is durable in the
//! repository, non-zero otherwise (PostgreSQL retries). wal-fetch: 0 when the file was
//! written, 1 when the repository simply does not have it (recovery ends there), and 255
//! on any real error (repository unreachable, wrong password, damaged data), which makes
//! PostgreSQL stop instead of ending recovery early.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arca_db::postgres::{self, FetchOutcome, PushOptions, SpoolState};
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
    /// Files per batch of the background pusher (1: push only the named file, in this
    /// process, without a background pusher)
    #[arg(long, env = "ARCA_WAL_PUSH_BATCH", default_value_t = 16)]
    pub batch: usize,
    /// Run as the background pusher for this pg_wal directory (started by wal-push)
    #[arg(long, hide = true, value_name = "PG_WAL")]
    pub worker: Option<PathBuf>,
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

/// How long the background pusher waits for more ready files before it exits.
const WORKER_IDLE: Duration = Duration::from_secs(3);
/// How long an archiver call waits for the background pusher to store its file.
const WAIT_FOR_WORKER: Duration = Duration::from_secs(600);

fn threads(g: &GlobalArgs) -> usize {
    g.threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// The worker's lock: held (flock) for the worker's whole life.
fn worker_lock(spool: &Path) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    std::fs::create_dir_all(spool).with_context(|| format!("creating {}", spool.display()))?;
    let path = spool.join("worker.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(anyhow::anyhow!("locking {}: {e}", path.display())),
    }
}

/// Starts the background pusher (detached, in its own process group so that signals to
/// PostgreSQL's archiver do not reach it).
fn spawn_worker(g: &GlobalArgs, a: &WalPushArgs, pg_wal: &Path, spool: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("locating the arca binary")?;
    let mut c = Command::new(exe);
    c.arg("-r").arg(common::location(g)?);
    if let Some(f) = &g.password_file {
        c.arg("--password-file").arg(f);
    }
    if let Some(p) = &g.password_command {
        c.arg("--password-command").arg(p);
    }
    if let Some(t) = g.threads {
        c.arg("--threads").arg(t.to_string());
    }
    c.arg("wal-push")
        .arg("--spool")
        .arg(spool)
        .arg("--batch")
        .arg(a.batch.to_string())
        .arg("--worker")
        .arg(pg_wal)
        .arg(&a.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0);
    c.spawn().context("starting the background WAL pusher")
}

fn run_worker(g: &GlobalArgs, a: &WalPushArgs, pg_wal: &Path) -> Result<i32> {
    let spool = spool_dir(a);
    let Some(_held) = worker_lock(&spool)? else {
        return Ok(crate::exit::OK); // another worker is running
    };
    let repo = common::open(g)?;
    let opts = PushOptions {
        spool: Some(spool),
        batch: a.batch.max(1),
        threads: threads(g),
    };
    postgres::run_push_worker(&repo, pg_wal, &opts, WORKER_IDLE).map_err(crate::cmd::pg::db_err)?;
    Ok(crate::exit::OK)
}

/// The archiver's call in batch mode: done when the background pusher left a marker for
/// the file; starts the pusher when none runs; `None` when the pusher ended without
/// storing the file (the caller then pushes it itself).
fn push_through_worker(g: &GlobalArgs, a: &WalPushArgs) -> Result<Option<i32>> {
    let spool = spool_dir(a);
    let pg_wal = a.path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let state =
        |spool: &Path| postgres::spool_state(spool, &a.path).map_err(crate::cmd::pg::db_err);
    let failed = |why: String| anyhow::anyhow!("archiving {}: {why}", a.path.display());
    if state(&spool)? == SpoolState::Done {
        return Ok(Some(crate::exit::OK));
    }
    let mut child = match worker_lock(&spool)? {
        Some(l) => {
            drop(l);
            Some(spawn_worker(g, a, &pg_wal, &spool)?)
        }
        None => None,
    };
    let start = Instant::now();
    loop {
        match state(&spool)? {
            SpoolState::Done => return Ok(Some(crate::exit::OK)),
            SpoolState::Failed(why) => return Err(failed(why)),
            SpoolState::Pending => {}
        }
        let alive = match &mut child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => worker_lock(&spool)?.is_none(),
        };
        if !alive {
            // One last look: the pusher may have stored the file just before it ended.
            return match state(&spool)? {
                SpoolState::Done => Ok(Some(crate::exit::OK)),
                SpoolState::Failed(why) => Err(failed(why)),
                SpoolState::Pending => Ok(None),
            };
        }
        if start.elapsed() > WAIT_FOR_WORKER {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn push(g: &GlobalArgs, a: WalPushArgs) -> Result<i32> {
    if let Some(pg_wal) = &a.worker {
        return run_worker(g, &a, pg_wal);
    }
    if a.batch > 1 {
        common::location(g)?;
        if let Some(code) = push_through_worker(g, &a)? {
            return Ok(code);
        }
    }
    let spool = spool_dir(&a);
    let repo = common::open(g)?;
    let opts = PushOptions {
        spool: (a.batch > 1).then_some(spool),
        batch: a.batch.max(1),
        threads: threads(g),
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
