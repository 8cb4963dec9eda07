//! One run of a job, the same code for the daemon and `arca job run`: pre hooks, backup of
//! the job's source into its primary repository, retention (forget) on every repository of
//! the job, copies to the secondary repositories, prune when its own schedule says so, the
//! 3-2-1 state, post or failure hooks, and the history row with the run's log.
//!
//! Stopping: the backup engine polls [`Progress::should_stop`], which turns true when the
//! daemon is asked to stop (SIGTERM) or, for jobs with `on_window_close = "stop"`, when the
//! window closes. An interrupted backup writes no snapshot; the packs it stored are adopted
//! by the next run, which then does not upload them again.

mod hooks;
mod maintenance;
mod repository;
mod run;

pub use hooks::*;
use maintenance::*;
pub use repository::*;
pub use run::run_job;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arca_core::backup::BackupOptions;
use arca_core::child::StderrTail;
use arca_core::format::{BackupType, Snapshot};
use arca_core::progress::Progress;
use arca_core::{Id, Repository};
use arca_ops::backup::BackupSource;
use jiff::Timestamp;

use crate::clock::Clock;
use crate::config::{
    Config, JobConfig, OnWindowClose, PasswordSource, PgFormat, RepositoryConfig, Source,
};
use crate::history::{History, HistoryError, RunOutcome, RunRecord, RunStatus};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no job {0:?} in the configuration")]
    UnknownJob(String),
    #[error("job {job} is already running (lock {path} is held)")]
    AlreadyRunning { job: String, path: PathBuf },
    #[error("job {job}: lock file {path}: {source}")]
    LockFile {
        job: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// Why one step of a run failed (retention, a copy, prune, a hook); the run's log and its
/// history row show it, with the repository or hook it concerns in the message around it.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("listing snapshots: {0}")]
    ListSnapshots(arca_core::Error),
    #[error(transparent)]
    Open(#[from] RepositoryError),
    #[error(transparent)]
    Maintenance(#[from] arca_ops::prune::MaintenanceError),
    #[error(transparent)]
    Repository(#[from] arca_core::Error),
    #[error(transparent)]
    Copy(#[from] arca_ops::copy::CopyError),
    #[error("snapshot {0} is not there after the copy")]
    NotCopied(String),
    #[error("{which} hook {command:?} {detail}")]
    Hook {
        which: String,
        command: String,
        detail: String,
    },
}

/// What a run reports to whoever shows it (the daemon's log, the CLI).
pub trait EventLog: Send + Sync {
    fn event(&self, job: Option<&str>, message: &str);
}

/// An event log that drops everything.
pub struct NoEvents;

impl EventLog for NoEvents {
    fn event(&self, _job: Option<&str>, _message: &str) {}
}

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// By the scheduler, serving this slot.
    Schedule(Timestamp),
    Manual,
}

/// Everything a run needs besides the job.
pub struct RunContext<'a> {
    pub config: &'a Config,
    pub history: &'a History,
    pub clock: &'a dyn Clock,
    /// True when the daemon (or the CLI) is asked to stop.
    pub stop: &'a (dyn Fn() -> bool + Sync),
    pub events: &'a dyn EventLog,
}

/// The lock that keeps one run of a job at a time, across processes.
pub struct JobLock {
    _lock: nix::fcntl::Flock<File>,
}

pub fn lock_path(config: &Config, job: &str) -> PathBuf {
    let state = &config.daemon.state;
    let dir = state
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join(format!(
        "{}.locks",
        state
            .file_name()
            .map_or("state".into(), |n| n.to_string_lossy())
    ))
    .join(format!("{job}.lock"))
}

pub fn lock_job(config: &Config, job: &str) -> Result<JobLock, RunError> {
    let path = lock_path(config, job);
    let io = |source| RunError::LockFile {
        job: job.to_string(),
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(JobLock { _lock: l }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(RunError::AlreadyRunning {
            job: job.to_string(),
            path,
        }),
        Err((_, e)) => Err(io(std::io::Error::from(e))),
    }
}

/// The 3-2-1 state of a job after a run: copies (counting the source), distinct media
/// among the repositories holding the newest snapshot, and offsite copies.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ThreeTwoOne {
    pub copies: usize,
    pub media: usize,
    pub offsite: usize,
    /// 3 copies, 2 media, 1 offsite.
    pub ok: bool,
    /// Repositories that hold the newest snapshot.
    pub holders: Vec<String>,
}

pub fn three_two_one(holders: &[&RepositoryConfig]) -> ThreeTwoOne {
    let media: BTreeSet<&str> = holders.iter().map(|r| r.media.as_str()).collect();
    let copies = holders.len() + 1;
    let offsite = holders.iter().filter(|r| r.offsite).count();
    ThreeTwoOne {
        copies,
        media: media.len(),
        offsite,
        ok: copies >= 3 && media.len() >= 2 && offsite >= 1,
        holders: holders.iter().map(|r| r.name.clone()).collect(),
    }
}

struct Log {
    text: String,
}

impl Log {
    fn line(&mut self, clock: &dyn Clock, msg: &str) {
        let _ = writeln!(
            self.text,
            "{} {msg}",
            clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        );
    }
}

/// The result of the backup step.
struct Backed {
    snapshot_id: Id,
    snapshot: Snapshot,
}

fn backup(
    session: &arca_ops::Session,
    job: &JobConfig,
    backup_type: BackupType,
    progress: &RunProgress<'_>,
    log: &Mutex<String>,
) -> Result<Backed, (bool, String)> {
    let mut tags = vec![job.job_tag()];
    tags.extend(job.tags.iter().cloned());
    let (excludes, if_present, one_fs) = match &job.source {
        Source::Paths {
            exclude,
            exclude_if_present,
            one_file_system,
            ..
        } => (
            exclude.clone(),
            exclude_if_present.clone(),
            *one_file_system,
        ),
        _ => (Vec::new(), Vec::new(), false),
    };
    let opts = BackupOptions {
        backup_type,
        checksum: job.checksum,
        tags,
        host: job.host.clone(),
        excludes,
        exclude_if_present: if_present,
        one_file_system: one_fs,
        threads: job.limits.threads,
        ..BackupOptions::default()
    };
    // A command's error output goes into the run's log (its last lines).
    let stderr_lines: Arc<Mutex<StderrTail>> = Arc::default();
    let source = backup_source(job, &opts, &stderr_lines)?;
    let result = arca_ops::backup::backup(session, source, &opts, progress);
    {
        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
        let stderr = stderr_lines.lock().unwrap_or_else(|p| p.into_inner());
        if !stderr.is_empty() {
            let _ = writeln!(l, "command stderr:\n{}", stderr.text());
        }
        if let Ok(r) = &result
            && r.adopted_packs > 0
        {
            let _ = writeln!(
                l,
                "indexed {} packs left by an interrupted run (their data is reused)",
                r.adopted_packs
            );
        }
    }
    let report = result.map_err(|e| (e.is_interrupted(), e.to_string()))?;
    match report.snapshot_id {
        Some(id) => Ok(Backed {
            snapshot_id: id,
            snapshot: report.snapshot,
        }),
        None => Err((false, "the backup wrote no snapshot".into())),
    }
}

/// What a job backs up, as the backup operation's source; a command's error lines go to
/// `stderr_lines` (its last 40).
fn backup_source<'a>(
    job: &'a JobConfig,
    opts: &BackupOptions,
    stderr_lines: &Arc<Mutex<StderrTail>>,
) -> Result<BackupSource<'a>, (bool, String)> {
    let source = match &job.source {
        Source::Postgres {
            dbname,
            format,
            jobs,
            bindir,
        } => {
            use arca_db::postgres::{DumpFormat, DumpOptions, Tools};
            BackupSource::Postgres(DumpOptions {
                dbname: dbname.clone(),
                tools: Tools::new(bindir.clone()),
                format: match format {
                    PgFormat::Custom => DumpFormat::Custom,
                    PgFormat::Plain => DumpFormat::Plain,
                    PgFormat::Directory => DumpFormat::Directory,
                },
                jobs: *jobs,
                backup: opts.clone(),
            })
        }
        Source::Mysql {
            databases,
            all_databases,
            host,
            port,
            socket,
            user,
            password_env,
            defaults_file,
            options,
        } => {
            use arca_db::mysql::{Connection, DumpSelection};
            let password = match password_env {
                Some(v) => Some(std::env::var(v).map_err(|_| {
                    (
                        false,
                        format!("environment variable {v} (mysql password_env) is not set"),
                    )
                })?),
                None => None,
            };
            BackupSource::Mysql {
                connection: Connection {
                    host: host.clone(),
                    port: *port,
                    socket: socket.clone(),
                    user: user.clone(),
                    password,
                    defaults_file: defaults_file.clone(),
                    connect_timeout: None,
                },
                selection: if *all_databases {
                    DumpSelection::AllDatabases
                } else {
                    DumpSelection::Databases(databases.clone())
                },
                options: options.clone(),
            }
        }
        Source::Paths { paths, .. } => BackupSource::Paths(paths),
        Source::Command { command, filename } => {
            let mut sh = Command::new("sh");
            sh.arg("-c").arg(command);
            let lines = stderr_lines.clone();
            BackupSource::Command {
                command: sh,
                tool: format!("command {command:?}"),
                file: filename,
                on_stderr_line: Some(Box::new(move |line: &str| {
                    lines
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line.to_string());
                })),
            }
        }
    };
    Ok(source)
}

#[cfg(test)]
mod tests;
