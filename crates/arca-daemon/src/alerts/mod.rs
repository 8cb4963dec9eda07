//! Alert rules: pure functions over a job's state and a time, and the tracker that turns
//! conditions into messages.
//!
//! [`evaluate`] looks at a [`JobState`] at `now` and returns the rules that fire:
//! run failed; run late (still running [`RuleSettings::late_after`] past its expected end);
//! window missed (a backup window closed without a successful run starting in it); RPO
//! breached (the last good snapshot is older than the RPO); drill failed; RTO exceeded
//! (the last drill's recovery, or its projection, took longer than the RTO); storage above
//! a threshold (percent of a quota or of the local disk, see [`local_storage`]).
//!
//! [`AlertTracker`] remembers what is firing per rule and job: a new condition is sent at
//! once, a condition still firing is repeated at most every [`RuleSettings::repeat`], and
//! one that stops firing is sent once more as resolved. Its state is serialisable so the
//! daemon can keep it across restarts.
//!
//! [`RuleSettings`] holds the defaults and per-job overrides (every field optional; a job's
//! settings are merged over the defaults with [`RuleSettings::merged`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::notify::{Alert, AlertState, Severity};
use arca_ops::drill::{duration_str, format_duration};

/// The rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    RunFailed,
    RunLate,
    WindowMissed,
    RpoBreached,
    DrillFailed,
    RtoExceeded,
    StorageFull,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::RunFailed,
        Rule::RunLate,
        Rule::WindowMissed,
        Rule::RpoBreached,
        Rule::DrillFailed,
        Rule::RtoExceeded,
        Rule::StorageFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::RunFailed => "run_failed",
            Rule::RunLate => "run_late",
            Rule::WindowMissed => "window_missed",
            Rule::RpoBreached => "rpo_breached",
            Rule::DrillFailed => "drill_failed",
            Rule::RtoExceeded => "rto_exceeded",
            Rule::StorageFull => "storage_full",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::RunFailed | Rule::RpoBreached | Rule::DrillFailed | Rule::StorageFull => {
                Severity::Critical
            }
            Rule::RunLate | Rule::WindowMissed | Rule::RtoExceeded => Severity::Warning,
        }
    }
}

/// Defaults of [`RuleSettings`].
pub const DEFAULT_LATE_AFTER: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_STORAGE_PERCENT: f64 = 90.0;
pub const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);

/// Which rules apply and their thresholds: the `[alerts]` defaults and a job's overrides.
/// Every rule is on unless set to false.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    pub run_failed: Option<bool>,
    pub run_late: Option<bool>,
    /// How long past its expected end a run may go before `run_late` fires (30m).
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub late_after: Option<Duration>,
    pub window_missed: Option<bool>,
    pub rpo_breached: Option<bool>,
    pub drill_failed: Option<bool>,
    pub rto_exceeded: Option<bool>,
    pub storage_full: Option<bool>,
    /// Percent of the quota or disk above which `storage_full` fires (90).
    pub storage_percent: Option<f64>,
    /// Least time between two messages of one firing rule of one job (4h).
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub repeat: Option<Duration>,
}

impl RuleSettings {
    /// `over`'s settings where it has them, else `self`'s.
    pub fn merged(&self, over: &RuleSettings) -> RuleSettings {
        RuleSettings {
            run_failed: over.run_failed.or(self.run_failed),
            run_late: over.run_late.or(self.run_late),
            late_after: over.late_after.or(self.late_after),
            window_missed: over.window_missed.or(self.window_missed),
            rpo_breached: over.rpo_breached.or(self.rpo_breached),
            drill_failed: over.drill_failed.or(self.drill_failed),
            rto_exceeded: over.rto_exceeded.or(self.rto_exceeded),
            storage_full: over.storage_full.or(self.storage_full),
            storage_percent: over.storage_percent.or(self.storage_percent),
            repeat: over.repeat.or(self.repeat),
        }
    }

    pub fn enabled(&self, rule: Rule) -> bool {
        match rule {
            Rule::RunFailed => self.run_failed,
            Rule::RunLate => self.run_late,
            Rule::WindowMissed => self.window_missed,
            Rule::RpoBreached => self.rpo_breached,
            Rule::DrillFailed => self.drill_failed,
            Rule::RtoExceeded => self.rto_exceeded,
            Rule::StorageFull => self.storage_full,
        }
        .unwrap_or(true)
    }

    pub fn late_after(&self) -> Duration {
        self.late_after.unwrap_or(DEFAULT_LATE_AFTER)
    }

    pub fn storage_percent(&self) -> f64 {
        self.storage_percent.unwrap_or(DEFAULT_STORAGE_PERCENT)
    }

    pub fn repeat(&self) -> Duration {
        self.repeat.unwrap_or(DEFAULT_REPEAT)
    }

    /// Problems a configuration check should report (thresholds out of range).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = self.storage_percent
            && !(p > 0.0 && p <= 100.0)
        {
            out.push(format!(
                "storage_percent must be above 0 and at most 100, not {p}"
            ));
        }
        if self.repeat == Some(Duration::ZERO) {
            out.push("repeat must be longer than 0s".into());
        }
        out
    }
}

/// The last finished run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedRun {
    pub started: Timestamp,
    pub ended: Timestamp,
    pub succeeded: bool,
    pub error: Option<String>,
}

/// A run in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningRun {
    pub started: Timestamp,
    /// When it should be done (the daemon's estimate, e.g. start + the longest recent run,
    /// or the end of the window).
    pub expected_end: Timestamp,
}

/// A backup window that has closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedWindow {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// The last drill of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillFacts {
    pub time: Timestamp,
    pub passed: bool,
    /// Names of the failed steps (integrity, function, performance, security).
    pub failed_steps: Vec<String>,
    /// The first reason of the first failed step.
    pub reason: Option<String>,
    pub recovery_secs: f64,
    pub projected_full_restore_secs: Option<f64>,
}

impl DrillFacts {
    /// The facts of a drill report.
    pub fn from_report(r: &arca_ops::drill::DrillReport) -> DrillFacts {
        let failed: Vec<&arca_ops::drill::StepReport> = r
            .steps
            .iter()
            .filter(|s| s.status == arca_ops::drill::StepStatus::Failed)
            .collect();
        DrillFacts {
            time: r.started,
            passed: r.passed,
            failed_steps: failed
                .iter()
                .map(|s| {
                    serde_json::to_value(s.name)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect(),
            reason: failed
                .first()
                .and_then(|s| s.reasons.first().cloned())
                .or_else(|| r.error.clone()),
            recovery_secs: r.performance.as_ref().map_or(0.0, |p| p.recovery_secs),
            projected_full_restore_secs: r
                .performance
                .as_ref()
                .map(|p| p.projected_full_restore_secs),
        }
    }
}

/// Space of one repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageFacts {
    pub repository: String,
    pub used_bytes: u64,
    /// The quota, or the size of the filesystem.
    pub capacity_bytes: u64,
}

impl StorageFacts {
    pub fn percent(&self) -> f64 {
        if self.capacity_bytes == 0 {
            0.0
        } else {
            self.used_bytes as f64 * 100.0 / self.capacity_bytes as f64
        }
    }
}

/// Used and total space of the filesystem holding `path` (statvfs), for a local
/// repository without a quota. Space reserved for root counts as used.
pub fn local_storage(repository: &str, path: &Path) -> std::io::Result<StorageFacts> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let frsize = st.fragment_size() as u64;
    let total = st.blocks() as u64 * frsize;
    let available = st.blocks_available() as u64 * frsize;
    Ok(StorageFacts {
        repository: repository.to_string(),
        used_bytes: total.saturating_sub(available),
        capacity_bytes: total,
    })
}

/// Everything the rules look at for one job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub job: String,
    /// When the job was first configured (the RPO of a job without a snapshot is
    /// counted from here).
    pub configured_since: Option<Timestamp>,
    pub last_run: Option<FinishedRun>,
    pub running: Option<RunningRun>,
    /// Start time of the last successful run.
    pub last_success_started: Option<Timestamp>,
    /// The most recent window that has closed, when the job has windows.
    pub last_window: Option<ClosedWindow>,
    /// Time of the last good (complete) snapshot.
    pub last_good_snapshot: Option<Timestamp>,
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub rpo: Option<Duration>,
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub rto: Option<Duration>,
    pub last_drill: Option<DrillFacts>,
    #[serde(default)]
    pub storage: Vec<StorageFacts>,
}

/// A rule that fires, with what to say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub rule: Rule,
    pub severity: Severity,
    pub summary: String,
    pub details: BTreeMap<String, String>,
}

impl Condition {
    fn new(rule: Rule, summary: String) -> Condition {
        Condition {
            rule,
            severity: rule.severity(),
            summary,
            details: BTreeMap::new(),
        }
    }

    fn detail(mut self, key: &str, value: impl ToString) -> Condition {
        self.details.insert(key.to_string(), value.to_string());
        self
    }
}

fn since(now: Timestamp, t: Timestamp) -> Duration {
    now.duration_since(t).try_into().unwrap_or(Duration::ZERO)
}

fn human(d: Duration) -> String {
    format_duration(Duration::from_secs(d.as_secs()))
}

/// Whether the last finished run failed.
pub fn run_failed(s: &JobState) -> Option<Condition> {
    let run = s.last_run.as_ref()?;
    if run.succeeded {
        return None;
    }
    let mut c = Condition::new(Rule::RunFailed, format!("the last run of {} failed", s.job))
        .detail("started", run.started)
        .detail("ended", run.ended);
    if let Some(e) = &run.error {
        c.summary = format!("the last run of {} failed: {e}", s.job);
        c = c.detail("error", e);
    }
    Some(c)
}

/// Whether a run is still going `late_after` past its expected end.
pub fn run_late(s: &JobState, now: Timestamp, late_after: Duration) -> Option<Condition> {
    let run = s.running.as_ref()?;
    if now <= run.expected_end {
        return None;
    }
    let over = since(now, run.expected_end);
    if over < late_after {
        return None;
    }
    Some(
        Condition::new(
            Rule::RunLate,
            format!(
                "the run of {} is still going {} past its expected end",
                s.job,
                human(over)
            ),
        )
        .detail("started", run.started)
        .detail("expected_end", run.expected_end),
    )
}

/// Whether the last closed window passed without a successful run starting in it.
pub fn window_missed(s: &JobState, now: Timestamp) -> Option<Condition> {
    let w = s.last_window.as_ref()?;
    if w.end > now {
        return None;
    }
    if s.last_success_started.is_some_and(|t| t >= w.start) {
        return None;
    }
    Some(
        Condition::new(
            Rule::WindowMissed,
            format!(
                "no successful run of {} in the window {} to {}",
                s.job, w.start, w.end
            ),
        )
        .detail("window_start", w.start)
        .detail("window_end", w.end),
    )
}

/// Whether the last good snapshot (or, without one, the job's configuration) is older
/// than the RPO.
pub fn rpo_breached(s: &JobState, now: Timestamp) -> Option<Condition> {
    let rpo = s.rpo?;
    let reference = s.last_good_snapshot.or(s.configured_since)?;
    let age = since(now, reference);
    if age <= rpo {
        return None;
    }
    let summary = match s.last_good_snapshot {
        Some(_) => format!(
            "the last good snapshot of {} is {} old, over its RPO of {}",
            s.job,
            human(age),
            format_duration(rpo)
        ),
        None => format!(
            "{} has no good snapshot {} after it was configured, over its RPO of {}",
            s.job,
            human(age),
            format_duration(rpo)
        ),
    };
    let mut c = Condition::new(Rule::RpoBreached, summary)
        .detail("rpo", format_duration(rpo))
        .detail("age", human(age));
    if let Some(t) = s.last_good_snapshot {
        c = c.detail("last_good_snapshot", t);
    }
    Some(c)
}

/// Whether the last drill failed a step other than performance.
pub fn drill_failed(s: &JobState) -> Option<Condition> {
    let d = s.last_drill.as_ref()?;
    let failed: Vec<&String> = d
        .failed_steps
        .iter()
        .filter(|n| n.as_str() != "performance")
        .collect();
    if d.passed || (failed.is_empty() && !d.failed_steps.is_empty()) {
        return None;
    }
    let steps = failed
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut c = Condition::new(
        Rule::DrillFailed,
        match &d.reason {
            Some(r) => format!("the restore drill of {} failed ({steps}): {r}", s.job),
            None => format!("the restore drill of {} failed ({steps})", s.job),
        },
    )
    .detail("drill_time", d.time)
    .detail("failed_steps", steps.clone());
    if let Some(r) = &d.reason {
        c = c.detail("reason", r);
    }
    Some(c)
}

/// Whether the last drill's recovery, or the projection of a full restore, took longer
/// than the RTO.
pub fn rto_exceeded(s: &JobState) -> Option<Condition> {
    let d = s.last_drill.as_ref()?;
    let rto = s.rto?;
    let rto_s = rto.as_secs_f64();
    let worst = d
        .projected_full_restore_secs
        .unwrap_or(0.0)
        .max(d.recovery_secs);
    if worst <= rto_s && !d.failed_steps.iter().any(|n| n == "performance") {
        return None;
    }
    Some(
        Condition::new(
            Rule::RtoExceeded,
            format!(
                "a recovery of {} takes {worst:.1}s (drill of {}), over its RTO of {}",
                s.job,
                d.time,
                format_duration(rto)
            ),
        )
        .detail("rto", format_duration(rto))
        .detail("recovery_secs", format!("{:.3}", d.recovery_secs))
        .detail("projected_secs", format!("{worst:.3}")),
    )
}

/// Whether a repository of the job is fuller than `percent`.
pub fn storage_full(s: &JobState, percent: f64) -> Option<Condition> {
    let full: Vec<&StorageFacts> = s
        .storage
        .iter()
        .filter(|f| f.percent() >= percent)
        .collect();
    let first = full.first()?;
    let mut c = Condition::new(
        Rule::StorageFull,
        format!(
            "repository {} of {} is {:.1}% full (threshold {percent}%)",
            first.repository,
            s.job,
            first.percent()
        ),
    );
    for f in &full {
        c = c.detail(
            &format!("repository {}", f.repository),
            format!(
                "{:.1}% ({} of {} bytes)",
                f.percent(),
                f.used_bytes,
                f.capacity_bytes
            ),
        );
    }
    Some(c)
}

/// Every enabled rule that fires for `s` at `now`.
pub fn evaluate(s: &JobState, rules: &RuleSettings, now: Timestamp) -> Vec<Condition> {
    let mut out = Vec::new();
    for rule in Rule::ALL {
        if !rules.enabled(rule) {
            continue;
        }
        let c = match rule {
            Rule::RunFailed => run_failed(s),
            Rule::RunLate => run_late(s, now, rules.late_after()),
            Rule::WindowMissed => window_missed(s, now),
            Rule::RpoBreached => rpo_breached(s, now),
            Rule::DrillFailed => drill_failed(s),
            Rule::RtoExceeded => rto_exceeded(s),
            Rule::StorageFull => storage_full(s, rules.storage_percent()),
        };
        out.extend(c);
    }
    out
}

/// A condition that is firing, as the tracker remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub rule: Rule,
    pub job: String,
    pub severity: Severity,
    pub summary: String,
    pub details: BTreeMap<String, String>,
    pub since: Timestamp,
    pub last_sent: Timestamp,
    pub sent: u64,
}

/// What is firing, per job and rule; decides what to send (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertTracker {
    /// Keyed by `JOB/RULE`.
    pub active: BTreeMap<String, ActiveAlert>,
}

fn key(job: &str, rule: Rule) -> String {
    format!("{job}/{}", rule.as_str())
}

impl AlertTracker {
    /// Takes the conditions firing for `job` at `now` (all of them: a rule of this job
    /// that is absent has stopped firing) and returns the alerts to send: new ones, repeats
    /// of those last sent at least `repeat` ago, and one resolve for each that stopped.
    pub fn update(
        &mut self,
        job: &str,
        firing: &[Condition],
        now: Timestamp,
        repeat: Duration,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for c in firing {
            let k = key(job, c.rule);
            match self.active.get_mut(&k) {
                Some(a) => {
                    a.summary = c.summary.clone();
                    a.details = c.details.clone();
                    a.severity = c.severity;
                    if since(now, a.last_sent) >= repeat {
                        a.last_sent = now;
                        a.sent += 1;
                        let mut details = c.details.clone();
                        details.insert("firing_since".into(), a.since.to_string());
                        out.push(Alert {
                            rule: c.rule.as_str().into(),
                            job: job.into(),
                            severity: c.severity,
                            state: AlertState::Firing,
                            summary: c.summary.clone(),
                            details,
                            time: now,
                        });
                    }
                }
                None => {
                    self.active.insert(
                        k,
                        ActiveAlert {
                            rule: c.rule,
                            job: job.into(),
                            severity: c.severity,
                            summary: c.summary.clone(),
                            details: c.details.clone(),
                            since: now,
                            last_sent: now,
                            sent: 1,
                        },
                    );
                    out.push(Alert {
                        rule: c.rule.as_str().into(),
                        job: job.into(),
                        severity: c.severity,
                        state: AlertState::Firing,
                        summary: c.summary.clone(),
                        details: c.details.clone(),
                        time: now,
                    });
                }
            }
        }
        let still: Vec<String> = firing.iter().map(|c| key(job, c.rule)).collect();
        let prefix = format!("{job}/");
        let stopped: Vec<String> = self
            .active
            .iter()
            .filter(|(k, a)| k.starts_with(&prefix) && a.job == job && !still.contains(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stopped {
            if let Some(a) = self.active.remove(&k) {
                let mut details = a.details.clone();
                details.insert("firing_since".into(), a.since.to_string());
                out.push(Alert {
                    rule: a.rule.as_str().into(),
                    job: job.into(),
                    severity: a.severity,
                    state: AlertState::Resolved,
                    summary: format!("resolved: {}", a.summary),
                    details,
                    time: now,
                });
            }
        }
        out
    }

    /// Forgets a job (removed from the configuration) and resolves what it had firing.
    pub fn remove_job(&mut self, job: &str, now: Timestamp) -> Vec<Alert> {
        self.update(job, &[], now, DEFAULT_REPEAT)
    }
}

#[cfg(test)]
mod tests;
