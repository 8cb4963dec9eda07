//! Restore drills and recovery tiers: proving that a snapshot restores, within the RTO,
//! passes the user's checks, and comes back with the right owners and permissions from a
//! repository whose data is encrypted at rest.
//!
//! [`run_drill`] restores a snapshot into scratch space through [`recover`] (the declared
//! [`Tier`]), then runs four steps — integrity, function, performance, security — and
//! cleans up, also on failure. Everything it learns goes into a [`DrillReport`]
//! (serialisable, so the daemon can keep it as JSON in its run history); nothing here
//! prints.
//!
//! [`recover`] is the recovery itself, used by drills in scratch space and later by
//! `arca recover JOB` on the real target: `hot` restores in place only what differs, `warm`
//! restores to a staging path, runs the configure and start hooks, then switches (rename),
//! `cold` runs the provisioning hooks, then restores everything into an empty target.
//!
//! Also here, shared with the alert channels: [`run_command`] (a shell command with a
//! timeout, its process group killed when it overruns, output kept bounded) and the
//! serde form of durations (the grammar of [`arca_core::units`]).

mod command;
mod compare;
mod duration;
mod recovery;
mod steps;

pub use command::*;
pub use compare::*;
pub use duration::*;
pub use recovery::*;
pub use steps::*;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arca_core::Repository;
use arca_core::format::{Node, NodeKind, Snapshot};
use arca_core::id::Id;
use arca_core::index::Index;
use arca_core::progress::Progress;
use arca_core::repo::pack_name;
use arca_core::restore::{Overwrite, RestoreOptions, RestoreSummary};
use serde::{Deserialize, Serialize};

/// Errors that stop a drill or a recovery before its steps can report.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("the snapshot's tree {tree}: {source}")]
    Snapshot {
        tree: String,
        source: arca_core::Error,
    },
    #[error("restore of the snapshot with tree {tree} into {target}: {source}")]
    Restore {
        tree: String,
        target: PathBuf,
        source: arca_core::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{hook} hook {command:?} failed: {reason}")]
    Hook {
        hook: &'static str,
        command: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// The progress asked to stop (Ctrl-C, SIGTERM, a closing window); the scratch space
    /// was cleaned up and nothing is known about the snapshot.
    #[error("interrupted")]
    Interrupted,
}

impl DrillError {
    fn is_interrupted(&self) -> bool {
        matches!(self, DrillError::Interrupted)
            || matches!(
                self,
                DrillError::Restore { source, .. } | DrillError::Snapshot { source, .. }
                    if source.kind() == arca_core::ErrorKind::Interrupted
            )
    }
}

fn io_err(path: &Path, source: std::io::Error) -> DrillError {
    DrillError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A check command of a drill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckCommand {
    pub command: String,
    #[serde(default = "default_check_timeout", with = "duration_str")]
    pub timeout: Duration,
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(60)
}

/// What a drill restores, checks and measures.
#[derive(Debug, Clone)]
pub struct DrillPlan {
    /// Directory under which the drill makes its own working directory (removed at the
    /// end). Nothing else in it may change during the drill: use a dedicated directory.
    pub scratch: PathBuf,
    pub checks: Vec<CheckCommand>,
    pub rto: Option<Duration>,
    /// The job's current size in bytes, for the projection of a full restore (default:
    /// the snapshot's size).
    pub full_size: Option<u64>,
    pub tier: Tier,
    pub hooks: RecoveryHooks,
    pub threads: Option<usize>,
    /// How many restored files' first bytes are looked for in raw pack files.
    pub encryption_samples: usize,
    /// Keep the restored data (for debugging a failed check) instead of removing it.
    pub keep: bool,
}

impl DrillPlan {
    pub fn new(scratch: PathBuf) -> DrillPlan {
        DrillPlan {
            scratch,
            checks: Vec::new(),
            rto: None,
            full_size: None,
            tier: Tier::Cold,
            hooks: RecoveryHooks::default(),
            threads: None,
            encryption_samples: 8,
            keep: false,
        }
    }
}

/// The outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Passed,
    Failed,
    Skipped,
}

/// The four steps of a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepName {
    Integrity,
    Function,
    Performance,
    Security,
}

/// One step of a drill: status, time, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub name: StepName,
    pub status: StepStatus,
    pub duration_secs: f64,
    /// Failures (status failed) or why it was skipped.
    pub reasons: Vec<String>,
    /// What was found that does not fail the step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl StepReport {
    fn new(name: StepName) -> StepReport {
        StepReport {
            name,
            status: StepStatus::Passed,
            duration_secs: 0.0,
            reasons: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn skipped(name: StepName, reason: &str) -> StepReport {
        StepReport {
            status: StepStatus::Skipped,
            reasons: vec![reason.to_string()],
            ..StepReport::new(name)
        }
    }

    fn fail(&mut self, reason: String) {
        self.status = StepStatus::Failed;
        self.reasons.push(reason);
    }
}

/// Restore speed against the RTO.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PerformanceFacts {
    /// Time of the recovery in the declared tier (hooks included).
    pub recovery_secs: f64,
    pub restore_secs: f64,
    pub bytes: u64,
    pub throughput_bytes_per_sec: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_secs: Option<f64>,
    pub full_size_bytes: u64,
    /// Time a restore of `full_size_bytes` would take at the measured throughput (plus
    /// the hooks' time).
    pub projected_full_restore_secs: f64,
}

/// The outcome of a check command (the function step).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    pub passed: bool,
    #[serde(flatten)]
    pub outcome: CommandOutcome,
}

/// Everything a drill found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    /// True when no step failed.
    pub passed: bool,
    pub snapshot: String,
    pub snapshot_time: jiff::Timestamp,
    pub repository: String,
    pub tier: Tier,
    pub started: jiff::Timestamp,
    pub duration_secs: f64,
    /// The restored copy (removed at the end unless kept).
    pub restore_dir: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub steps: Vec<StepReport>,
    pub checks: Vec<CheckReport>,
    /// The recovery hooks that ran (provision, configure, start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<CommandOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceFacts>,
    /// The recovery stopped before the steps could run (hook failed, restore error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub cleaned_up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_error: Option<String>,
}

impl DrillReport {
    pub fn step(&self, name: StepName) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Names of the failed steps.
    pub fn failed_steps(&self) -> Vec<StepName> {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed)
            .map(|s| s.name)
            .collect()
    }
}

/// Most reasons listed per step; more are counted.
const MAX_REASONS: usize = 50;

fn push_bounded(list: &mut Vec<String>, dropped: &mut usize, reason: String) {
    if list.len() < MAX_REASONS {
        list.push(reason);
    } else {
        *dropped += 1;
    }
}

/// Names, kinds, sizes and mtimes of the entries of `dir` (not recursive).
fn listing(dir: &Path) -> BTreeMap<Vec<u8>, (u32, u64, i64, i64)> {
    let mut out = BTreeMap::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = fs::symlink_metadata(e.path()) {
                out.insert(
                    e.file_name().as_bytes().to_vec(),
                    (m.mode() & 0o170000, m.len(), m.mtime(), m.mtime_nsec()),
                );
            }
        }
    }
    out
}

fn unique_name(snapshot: &Id) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "arca-drill-{}-{}-{nanos:08x}",
        snapshot.short(),
        std::process::id()
    )
}

/// Runs a drill of `snapshot` (id `snapshot_id`): see the module doc. Errors of the drill
/// itself (cannot create the scratch directory) are returned; everything about the
/// snapshot is in the report. When `progress` asks to stop, the drill cleans up and
/// returns [`DrillError::Interrupted`] (no report: it proved nothing). The security step examines the restore as it came out,
/// before the check commands run (they may change the restored data); it is reported last.
pub fn run_drill(
    repo: &Repository,
    index: &Index,
    snapshot_id: &Id,
    snapshot: &Snapshot,
    plan: &DrillPlan,
    progress: &dyn Progress,
) -> Result<DrillReport, DrillError> {
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    fs::create_dir_all(&plan.scratch).map_err(|e| io_err(&plan.scratch, e))?;
    let before = listing(&plan.scratch);
    let work_name = unique_name(snapshot_id);
    let work = plan.scratch.join(&work_name);
    fs::create_dir(&work).map_err(|e| io_err(&work, e))?;
    let target = work.join("target");
    fs::create_dir(&target).map_err(|e| io_err(&target, e))?;
    let mut report = DrillReport {
        passed: false,
        snapshot: snapshot_id.to_hex(),
        snapshot_time: snapshot.time,
        repository: repo.location().to_string(),
        tier: plan.tier,
        started,
        duration_secs: 0.0,
        restore_dir: target.clone(),
        files: 0,
        bytes: 0,
        steps: Vec::new(),
        checks: Vec::new(),
        hooks: Vec::new(),
        performance: None,
        error: None,
        cleaned_up: false,
        cleanup_error: None,
    };

    let recovery_plan = RecoveryPlan {
        tier: plan.tier,
        target: target.clone(),
        staging: Some(work.join("staging")),
        hooks: plan.hooks.clone(),
        verify: true,
        threads: plan.threads,
    };
    let recovered = recover(repo, index, snapshot, &recovery_plan, progress);
    let interrupted = matches!(&recovered, Err(e) if e.is_interrupted());
    match recovered {
        Err(e) => {
            report.error = Some(e.to_string());
            let mut integrity = StepReport::new(StepName::Integrity);
            integrity.fail(format!("the recovery did not complete: {e}"));
            report.steps.push(integrity);
            for name in [
                StepName::Function,
                StepName::Performance,
                StepName::Security,
            ] {
                report
                    .steps
                    .push(StepReport::skipped(name, "the recovery did not complete"));
            }
        }
        Ok(rec) => {
            report.files = rec.files;
            report.bytes = rec.bytes;
            report.hooks = rec.hooks.clone();
            report.steps.push(integrity_step(&rec));
            // Security looks at the restore as it came out, before the checks run (a
            // check such as starting a database server changes the restored data).
            let security = security_step(
                repo,
                index,
                snapshot,
                &target,
                &plan.scratch,
                &work_name,
                &before,
                &work,
                plan.encryption_samples,
            );
            let (function, checks) = function_step(plan, snapshot, &target, progress);
            report.steps.push(function);
            report.checks = checks;
            let (perf_step, perf) = performance_step(plan, snapshot, &rec);
            report.steps.push(perf_step);
            report.performance = Some(perf);
            report.steps.push(security);
        }
    }

    // Clean up, also after a failure.
    if plan.keep {
        report.cleaned_up = false;
    } else {
        make_removable(&work);
        match fs::remove_dir_all(&work) {
            Ok(()) => report.cleaned_up = true,
            Err(e) => report.cleanup_error = Some(format!("{}: {e}", work.display())),
        }
    }
    if interrupted || progress.should_stop() {
        return Err(DrillError::Interrupted);
    }
    report.passed =
        report.error.is_none() && report.steps.iter().all(|s| s.status != StepStatus::Failed);
    report.duration_secs = clock.elapsed().as_secs_f64();
    Ok(report)
}

/// Gives the owner write and search permission on every directory below `dir`, so a
/// snapshot's read-only directories can be removed.
fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = fs::symlink_metadata(dir) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    if m.mode() & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode((m.mode() | 0o700) & 0o7777));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            make_removable(&e.path());
        }
    }
}

#[cfg(test)]
mod tests;
