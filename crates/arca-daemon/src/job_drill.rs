//! A job's restore drill and recovery, from its configuration: picks the job's snapshot in
//! its primary repository, runs the drill engine ([`arca_ops::drill::run_drill`]) with the
//! job's checks, tier, hooks and RTO, and records the drill as a run of kind `drill` in the
//! history, with its report. `arca drill run JOB`, the daemon's drill schedule and the
//! dashboard's "Drill now" come here; `arca recover JOB` uses [`recover_job`].

use std::path::PathBuf;

use arca_core::format::Snapshot;
use arca_core::id::Id;
use arca_core::progress::Progress;
use arca_core::repo::Repository;

use crate::config::{Config, DrillConfig, JobConfig};
use crate::history::{RunOutcome, RunRecord, RunStatus};
use crate::runner::{RunContext, RunError, Trigger, open_repository};
use arca_ops::drill::{DrillPlan, DrillReport, RecoveryPlan, RecoveryReport, recover, run_drill};

/// The job's drill settings (defaults when the job has no `[jobs.NAME.drill]`).
pub fn drill_config(job: &JobConfig) -> DrillConfig {
    job.drill.clone().unwrap_or_else(|| DrillConfig {
        schedule: None,
        schedule_text: None,
        snapshot: "latest".into(),
        checks: Vec::new(),
        tier: arca_ops::drill::Tier::Cold,
        scratch: None,
        target: None,
        hooks: Default::default(),
    })
}

/// Why a job's drill or recovery could not run; each names the job, the repository or
/// the directory it concerns.
#[derive(Debug, thiserror::Error)]
pub enum JobDrillError {
    #[error("no job {0:?} in the configuration")]
    UnknownJob(String),
    #[error("job {0} has no repository")]
    NoRepository(String),
    #[error(transparent)]
    Open(#[from] crate::runner::RepositoryError),
    #[error("repository {repository}: {source}")]
    Repository {
        repository: String,
        source: arca_core::Error,
    },
    #[error("job {job} has no snapshot in repository {repository} yet")]
    NoSnapshot { job: String, repository: String },
    #[error("keeping the restored copy needs a scratch directory: set scratch in [jobs.{0}.drill]")]
    KeepWithoutScratch(String),
    #[error("no target: give one, or set target in [jobs.{0}.drill]")]
    NoTarget(String),
    #[error("creating scratch directory {path}: {source}")]
    Scratch {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Drill(#[from] arca_ops::drill::DrillError),
}

/// The snapshot `reference` (an id, a prefix, or `latest`) among the job's snapshots (tag
/// `job:NAME`) in `repo`; an id or prefix may also name a snapshot without the tag.
pub fn job_snapshot(
    repo: &Repository,
    job: &JobConfig,
    reference: &str,
) -> Result<(Id, Snapshot), JobDrillError> {
    let repository = || job.repositories.first().cloned().unwrap_or_default();
    let (all, _unreadable) = repo
        .list_snapshots()
        .map_err(|source| JobDrillError::Repository {
            repository: repository(),
            source,
        })?;
    let tag = job.job_tag();
    let own: Vec<(Id, Snapshot)> = all
        .iter()
        .filter(|(_, s)| s.tags.contains(&tag))
        .cloned()
        .collect();
    match arca_core::repo::resolve_in(&own, reference) {
        Ok(x) => Ok(x),
        Err(_) if reference != "latest" => {
            arca_core::repo::resolve_in(&all, reference).map_err(|source| {
                JobDrillError::Repository {
                    repository: repository(),
                    source,
                }
            })
        }
        Err(_) => Err(JobDrillError::NoSnapshot {
            job: job.name.clone(),
            repository: repository(),
        }),
    }
}

/// Removes the private scratch directory a drill made.
struct PrivateScratch(Option<PathBuf>);

impl Drop for PrivateScratch {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// What [`drill_job`] was asked for besides the job.
#[derive(Debug, Clone, Default)]
pub struct DrillRequest {
    /// The snapshot (default: the job's drill setting, else `latest`).
    pub snapshot: Option<String>,
    /// Keep the restored copy (needs a configured scratch directory).
    pub keep: bool,
    pub threads: Option<usize>,
}

/// Runs a drill of `job_name` and records it in the history (kind `drill`; status success
/// when every step passed, failed otherwise, with the report). Returns the history row and
/// the report (none when the drill could not start: no snapshot, repository unreachable;
/// the row's error says why).
pub fn drill_job(
    ctx: &RunContext<'_>,
    job_name: &str,
    trigger: Trigger,
    request: &DrillRequest,
    progress: &dyn Progress,
) -> Result<(RunRecord, Option<DrillReport>), RunError> {
    let job = ctx
        .config
        .job(job_name)
        .ok_or_else(|| RunError::UnknownJob(job_name.to_string()))?;
    let dc = drill_config(job);
    let (trigger_name, slot) = match trigger {
        Trigger::Schedule(t) => ("schedule", Some(t)),
        Trigger::Manual => ("manual", None),
    };
    let start = ctx.clock.now();
    let run_id = ctx
        .history
        .start_run(job_name, "drill", None, trigger_name, slot, start)?;
    ctx.events
        .event(Some(job_name), &format!("drill {run_id} started"));
    let result = drill_once(ctx.config, job, &dc, request, progress);
    let mut outcome = RunOutcome::default();
    let report = match result {
        Ok(report) => {
            outcome.status = Some(if report.passed {
                RunStatus::Success
            } else {
                RunStatus::Failed
            });
            outcome.snapshot_id = Some(report.snapshot.clone());
            outcome.files = Some(report.files);
            outcome.bytes_read = Some(report.bytes);
            if !report.passed {
                let facts = crate::alerts::DrillFacts::from_report(&report);
                outcome.error = Some(match facts.reason {
                    Some(r) => format!("drill failed ({}): {r}", facts.failed_steps.join(", ")),
                    None => format!("drill failed ({})", facts.failed_steps.join(", ")),
                });
            }
            outcome.report = serde_json::to_value(&report).ok();
            Some(report)
        }
        Err(e) => {
            let interrupted = (ctx.stop)() || progress.should_stop();
            outcome.status = Some(if interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            });
            outcome.error = Some(e.to_string());
            None
        }
    };
    ctx.history.finish_run(run_id, ctx.clock.now(), &outcome)?;
    ctx.events.event(
        Some(job_name),
        &format!(
            "drill {run_id} {}{}",
            outcome.status.unwrap_or(RunStatus::Failed).as_str(),
            outcome
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
    );
    let rec = ctx
        .history
        .runs_of_kind(Some(job_name), "drill", 5)?
        .into_iter()
        .find(|r| r.id == run_id)
        .ok_or_else(|| RunError::UnknownJob(job_name.to_string()))?;
    Ok((rec, report))
}

fn drill_once(
    config: &Config,
    job: &JobConfig,
    dc: &DrillConfig,
    request: &DrillRequest,
    progress: &dyn Progress,
) -> Result<DrillReport, JobDrillError> {
    let primary = primary_repository(config, job)?;
    let repo = open_repository(primary, Some(job))?;
    let reference = request.snapshot.as_deref().unwrap_or(&dc.snapshot);
    let (id, snap) = job_snapshot(&repo, job, reference)?;
    let index = repo
        .load_index()
        .map_err(|source| JobDrillError::Repository {
            repository: primary.name.clone(),
            source,
        })?;
    if request.keep && dc.scratch.is_none() {
        return Err(JobDrillError::KeepWithoutScratch(job.name.clone()));
    }
    let (scratch, _private) = match &dc.scratch {
        Some(dir) => (dir.clone(), PrivateScratch(None)),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "arca-drill-{}-{}-{}",
                job.name,
                std::process::id(),
                id.short()
            ));
            std::fs::create_dir_all(&dir).map_err(|source| JobDrillError::Scratch {
                path: dir.clone(),
                source,
            })?;
            (dir.clone(), PrivateScratch(Some(dir)))
        }
    };
    let mut plan = DrillPlan::new(scratch);
    plan.checks = dc.checks.clone();
    plan.rto = job.rto;
    plan.tier = dc.tier;
    plan.hooks = dc.hooks.clone();
    plan.threads = request.threads.or(job.limits.threads);
    plan.keep = request.keep;
    Ok(run_drill(&repo, &index, &id, &snap, &plan, progress)?)
}

/// The first repository of `job`, where its drills and recoveries read.
fn primary_repository<'a>(
    config: &'a Config,
    job: &JobConfig,
) -> Result<&'a crate::config::RepositoryConfig, JobDrillError> {
    job.repositories
        .first()
        .and_then(|n| config.repositories.get(n))
        .ok_or_else(|| JobDrillError::NoRepository(job.name.clone()))
}

/// What [`recover_job`] was asked for besides the job.
#[derive(Debug, Clone, Default)]
pub struct RecoverRequest {
    /// Where to recover to (default: the drill's `target`).
    pub target: Option<PathBuf>,
    /// The snapshot (default: `latest` of the job).
    pub snapshot: Option<String>,
    /// Override the job's tier.
    pub tier: Option<arca_ops::drill::Tier>,
    pub staging: Option<PathBuf>,
    pub verify: bool,
    pub threads: Option<usize>,
}

/// Recovers `job` from its primary repository the way its tier says (hot: in place, only
/// what differs; warm: staging, hooks, switch; cold: provisioning hooks, then a full
/// restore into an empty target).
pub fn recover_job(
    config: &Config,
    job_name: &str,
    request: &RecoverRequest,
    progress: &dyn Progress,
) -> Result<(String, RecoveryReport), JobDrillError> {
    let job = config
        .job(job_name)
        .ok_or_else(|| JobDrillError::UnknownJob(job_name.to_string()))?;
    let dc = drill_config(job);
    let target = request
        .target
        .clone()
        .or(dc.target.clone())
        .ok_or_else(|| JobDrillError::NoTarget(job.name.clone()))?;
    let primary = primary_repository(config, job)?;
    let repo = open_repository(primary, Some(job))?;
    let (id, snap) = job_snapshot(&repo, job, request.snapshot.as_deref().unwrap_or("latest"))?;
    let index = repo
        .load_index()
        .map_err(|source| JobDrillError::Repository {
            repository: primary.name.clone(),
            source,
        })?;
    let plan = RecoveryPlan {
        tier: request.tier.unwrap_or(dc.tier),
        target,
        staging: request.staging.clone(),
        hooks: dc.hooks.clone(),
        verify: request.verify,
        threads: request.threads.or(job.limits.threads),
    };
    let report = recover(&repo, &index, &snap, &plan, progress)?;
    Ok((id.to_hex(), report))
}
