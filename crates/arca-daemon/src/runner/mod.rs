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

pub use hooks::*;
use maintenance::*;
pub use repository::*;

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

use arca_core::backup::{BackupOptions, StreamName, backup_child, backup_paths, plain_stream};
use arca_core::child::{ChildOptions, ChildProcess};
use arca_core::format::{BackupType, Snapshot};
use arca_core::progress::Progress;
use arca_core::{Id, Repository};
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
    let err = |e: arca_core::Error| {
        (
            matches!(e.kind(), arca_core::ErrorKind::Interrupted),
            e.to_string(),
        )
    };
    let repo = session.repository();
    let _lock = session
        .lock(false, "backup", &|| progress.should_stop())
        .map_err(err)?;
    let mut index = session.load_index().map_err(err)?;
    let adopted = repo.adopt_unindexed_packs(&mut index).map_err(err)?;
    if adopted > 0 {
        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            l,
            "indexed {adopted} packs left by an interrupted run (their data is reused)"
        );
    }
    let index = Arc::new(index);
    let result = match &job.source {
        Source::Postgres {
            dbname,
            format,
            jobs,
            bindir,
        } => {
            use arca_db::postgres::{DumpFormat, DumpOptions, Error as PgError, Tools, dump};
            let o = DumpOptions {
                dbname: dbname.clone(),
                tools: Tools::new(bindir.clone()),
                format: match format {
                    PgFormat::Custom => DumpFormat::Custom,
                    PgFormat::Plain => DumpFormat::Plain,
                    PgFormat::Directory => DumpFormat::Directory,
                },
                jobs: *jobs,
                backup: opts.clone(),
            };
            return match dump(repo, index, &o, &Default::default(), progress) {
                Ok(r) => backed(r),
                Err(PgError::Repository(e)) => Err(err(e)),
                Err(e) => Err((false, e.to_string())),
            };
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
            use arca_db::mysql::{Connection, DumpSelection, Error as MyError, dump};
            let password = match password_env {
                Some(v) => Some(std::env::var(v).map_err(|_| {
                    (
                        false,
                        format!("environment variable {v} (mysql password_env) is not set"),
                    )
                })?),
                None => None,
            };
            let conn = Connection {
                host: host.clone(),
                port: *port,
                socket: socket.clone(),
                user: user.clone(),
                password,
                defaults_file: defaults_file.clone(),
                connect_timeout: None,
            };
            let selection = if *all_databases {
                DumpSelection::AllDatabases
            } else {
                DumpSelection::Databases(databases.clone())
            };
            return match dump(repo, index, &conn, &selection, options, &opts, progress) {
                Ok(r) => backed(r),
                Err(MyError::Core(e)) => Err(err(e)),
                Err(e) => Err((false, e.to_string())),
            };
        }
        Source::Paths { paths, .. } => backup_paths(repo, index, paths, &opts, progress),
        Source::Command { command, filename } => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(command)
                .stdin(Stdio::null())
                .stdout(Stdio::piped());
            let options = ChildOptions {
                own_group: true,
                on_stderr_line: None,
            };
            let child = ChildProcess::spawn(format!("command {command:?}"), &mut sh, options)
                .map_err(|e| (false, e.to_string()))?;
            let name = StreamName {
                file: filename,
                source: "command",
            };
            let r = backup_child(repo, index, &child, name, &opts, progress, plain_stream());
            let tail = child.stderr_tail();
            if !tail.is_empty() {
                let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(l, "command stderr:\n{}", tail.text());
            }
            r
        }
    };
    backed(result.map_err(err)?)
}

fn backed(r: arca_core::backup::BackupResult) -> Result<Backed, (bool, String)> {
    match r.snapshot_id {
        Some(id) => Ok(Backed {
            snapshot_id: id,
            snapshot: r.snapshot,
        }),
        None => Err((false, "the backup wrote no snapshot".into())),
    }
}

/// Runs `job` once. `backup_type` overrides the rotation; `stop_at` is when the window
/// closes (the run stops there if the job says so).
pub fn run_job(
    ctx: &RunContext<'_>,
    job_name: &str,
    trigger: Trigger,
    backup_type: Option<BackupType>,
    stop_at: Option<Timestamp>,
) -> Result<RunRecord, RunError> {
    let job = ctx
        .config
        .job(job_name)
        .ok_or_else(|| RunError::UnknownJob(job_name.to_string()))?;
    let _job_lock = lock_job(ctx.config, job_name)?;
    let start = ctx.clock.now();
    let backup_type = backup_type.unwrap_or_else(|| job.plan.backup_type_at(start));
    let (trigger_name, slot) = match trigger {
        Trigger::Schedule(s) => ("schedule", Some(s)),
        Trigger::Manual => ("manual", None),
    };
    let run_id = ctx.history.start_run(
        job_name,
        "backup",
        Some(backup_type.as_str()),
        trigger_name,
        slot,
        start,
    )?;
    ctx.events.event(
        Some(job_name),
        &format!(
            "run {run_id} started ({}, {trigger_name})",
            backup_type.as_str()
        ),
    );
    let mut log = Log {
        text: String::new(),
    };
    let mut outcome = RunOutcome::default();

    // Resource limits for this thread, its workers and its hooks.
    if let Some(n) = job.limits.nice
        && let Err(e) = crate::limits::set_nice(n)
    {
        log.line(ctx.clock, &format!("warning: {e}"));
    }
    if let Some(p) = job.limits.ionice
        && let Err(e) = crate::limits::set_ionice(p)
    {
        log.line(ctx.clock, &format!("warning: {e}"));
    }

    let hook_env = |status: &str, snapshot: &str, error: &str| -> Vec<(&'static str, String)> {
        vec![
            ("ARCA_JOB", job_name.to_string()),
            ("ARCA_RUN_ID", run_id.to_string()),
            ("ARCA_BACKUP_TYPE", backup_type.as_str().to_string()),
            ("ARCA_STATUS", status.to_string()),
            ("ARCA_SNAPSHOT", snapshot.to_string()),
            ("ARCA_ERROR", error.to_string()),
        ]
    };
    let run_hooks = |log: &mut Log,
                     which: &str,
                     cmds: &[String],
                     env: &[(&str, String)]|
     -> Result<(), String> {
        for cmd in cmds {
            let r = run_hook(cmd, job.hooks.timeout, env);
            log.line(ctx.clock, &format!("{which} hook {cmd:?}: {}", r.detail));
            if !r.output.is_empty() {
                log.text.push_str(&r.output);
                if !r.output.ends_with('\n') {
                    log.text.push('\n');
                }
            }
            if !r.ok {
                return Err(format!("{which} hook {cmd:?} {}", r.detail));
            }
        }
        Ok(())
    };

    let progress = RunProgress {
        stop: ctx.stop,
        clock: ctx.clock,
        stop_at: if job.on_window_close == OnWindowClose::Stop {
            stop_at
        } else {
            None
        },
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        window_closed: std::sync::atomic::AtomicBool::new(false),
    };

    let result: Result<(), (bool, String)> = (|| {
        run_hooks(
            &mut log,
            "pre",
            &job.hooks.pre,
            &hook_env("running", "", ""),
        )
        .map_err(|e| (false, e))?;
        let primary_name = &job.repositories[0];
        let primary_cfg = &ctx.config.repositories[primary_name];
        log.line(
            ctx.clock,
            &format!(
                "backup ({}) of {} to {primary_name}",
                backup_type.as_str(),
                job.source.describe()
            ),
        );
        let primary_session =
            open_session(primary_cfg, Some(job)).map_err(|e| (false, e.to_string()))?;
        for w in primary_session.warnings() {
            log.line(ctx.clock, &format!("warning: {w}"));
        }
        let primary = primary_session.repository().clone();
        let engine_log = Mutex::new(String::new());
        let b = backup(&primary_session, job, backup_type, &progress, &engine_log);
        log.text
            .push_str(&engine_log.into_inner().unwrap_or_else(|p| p.into_inner()));
        let b = b?;
        let s = &b.snapshot.summary;
        outcome.snapshot_id = Some(b.snapshot_id.to_string());
        outcome.files = Some(s.files_new + s.files_changed + s.files_unmodified);
        outcome.bytes_read = Some(s.bytes_read);
        outcome.bytes_added = Some(s.bytes_added);
        log.line(
            ctx.clock,
            &format!(
                "snapshot {} saved: {} files, read {} bytes, added {} bytes",
                b.snapshot_id.short(),
                outcome.files.unwrap_or(0),
                s.bytes_read,
                s.bytes_added
            ),
        );
        if b.snapshot.is_incomplete() {
            for e in &b.snapshot.errors {
                log.line(ctx.clock, &format!("unreadable: {}: {}", e.path, e.reason));
            }
        }
        let mut problems = Vec::new();
        let mut holders: Vec<&RepositoryConfig> = vec![primary_cfg];
        let origin = b.snapshot_id;
        let mut copies_detail = serde_json::Map::new();
        copies_detail.insert(
            primary_name.clone(),
            serde_json::json!({"snapshot": origin.to_string()}),
        );
        match apply_retention(&primary_session, job, ctx.stop) {
            Ok(n) if n > 0 => log.line(
                ctx.clock,
                &format!("retention on {primary_name}: removed {n} snapshots"),
            ),
            Ok(_) => {}
            Err(e) => problems.push(format!("retention on {primary_name}: {e}")),
        }
        for name in &job.repositories[1..] {
            if (ctx.stop)() {
                problems.push("stopped before all copies were made".into());
                break;
            }
            let cfg = &ctx.config.repositories[name];
            let r: Result<(), String> = (|| {
                let dst_session = open_session(cfg, Some(job)).map_err(|e| e.to_string())?;
                let dst = dst_session.repository();
                if dst.config().id == primary.config().id {
                    return Err("it is the same repository as the primary".into());
                }
                let selected = job_snapshots(&primary, &job.job_tag())?;
                let summary = {
                    let _l = dst_session
                        .lock(false, "copy", ctx.stop)
                        .map_err(|e| e.to_string())?;
                    arca_core::copy::copy_snapshots(&primary, dst, &selected, &progress)
                        .map_err(|e| e.to_string())?
                };
                log.line(
                    ctx.clock,
                    &format!(
                        "copy to {name}: {} copied, {} already there, {} bytes added",
                        summary.copied.len(),
                        summary.skipped.len(),
                        summary.bytes_added
                    ),
                );
                let removed = apply_retention(&dst_session, job, ctx.stop)?;
                if removed > 0 {
                    log.line(
                        ctx.clock,
                        &format!("retention on {name}: removed {removed} snapshots"),
                    );
                }
                // Holds the new snapshot?
                let there = job_snapshots(dst, &job.job_tag())?;
                if !there
                    .iter()
                    .any(|(id, s)| arca_core::copy::origin(id, s) == origin)
                {
                    return Err(format!(
                        "snapshot {} is not there after the copy",
                        origin.short()
                    ));
                }
                Ok(())
            })();
            match r {
                Ok(()) => {
                    holders.push(cfg);
                    copies_detail.insert(name.clone(), serde_json::json!({"ok": true}));
                }
                Err(e) => {
                    copies_detail
                        .insert(name.clone(), serde_json::json!({"ok": false, "error": e}));
                    problems.push(format!("copy to {name}: {e}"));
                }
            }
        }
        let state = three_two_one(&holders);
        log.line(
            ctx.clock,
            &format!(
                "3-2-1: {} copies, {} media, {} offsite{}",
                state.copies,
                state.media,
                state.offsite,
                if state.ok { " (met)" } else { " (not met)" }
            ),
        );
        outcome.copies = Some(serde_json::json!({
            "repositories": copies_detail,
            "three_two_one": state,
        }));
        if b.snapshot.is_incomplete() {
            outcome.status = Some(RunStatus::Incomplete);
        }
        if !problems.is_empty() {
            // Steps cut short by a stop request are an interruption, not a failure.
            return Err(((ctx.stop)(), problems.join("; ")));
        }
        Ok(())
    })();

    let snapshot = outcome.snapshot_id.clone().unwrap_or_default();
    match &result {
        Ok(()) => {
            match run_hooks(
                &mut log,
                "post",
                &job.hooks.post,
                &hook_env("success", &snapshot, ""),
            ) {
                Ok(()) => {
                    if outcome.status.is_none() {
                        outcome.status = Some(RunStatus::Success);
                    }
                }
                Err(e) => {
                    outcome.status = Some(RunStatus::Failed);
                    outcome.error = Some(e);
                }
            }
        }
        Err((interrupted, e)) => {
            let stopped_by_window = progress.window_closed.load(Ordering::Relaxed);
            let status = if *interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            };
            let e = if *interrupted && stopped_by_window {
                format!(
                    "{e}: the backup window closed (on_window_close = \"stop\"); the next run reuses the stored data"
                )
            } else if *interrupted {
                format!("{e}: stopped on request; the next run reuses the stored data")
            } else {
                e.clone()
            };
            log.line(ctx.clock, &format!("error: {e}"));
            outcome.status = Some(status);
            outcome.error = Some(e.clone());
            if let Err(he) = run_hooks(
                &mut log,
                "failure",
                &job.hooks.failure,
                &hook_env(status.as_str(), &snapshot, &e),
            ) {
                log.line(ctx.clock, &format!("warning: {he}"));
            }
        }
    }
    // Prune on its own schedule, after a run that wrote a snapshot.
    if outcome.snapshot_id.is_some() && !(ctx.stop)() {
        prune_if_due(ctx, job, &mut log)?;
    }
    outcome.log = log.text;
    let end = ctx.clock.now();
    ctx.history.finish_run(run_id, end, &outcome)?;
    let status = outcome.status.unwrap_or(RunStatus::Failed);
    ctx.events.event(
        Some(job_name),
        &format!(
            "run {run_id} {}{}",
            status.as_str(),
            outcome
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
    );
    let rec = ctx
        .history
        .runs(Some(job_name), 20)?
        .into_iter()
        .find(|r| r.id == run_id);
    rec.ok_or(RunError::UnknownJob(job_name.to_string()))
}

#[cfg(test)]
mod tests;
