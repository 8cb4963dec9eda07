//! The daemon's monitor: gathers each job's facts ([`JobState`]) from the configuration,
//! the run history and the live state, evaluates the job's alert rules
//! ([`crate::alerts::evaluate`]), and decides what to send with the [`AlertTracker`] (new
//! alerts at once, repeats at most every `repeat`, one resolve when a rule stops firing).
//! The tracker and the time each job was first seen are kept in the history's state table,
//! so a restarted daemon neither repeats an alert early nor forgets one that is firing.
//! Sending is left to the caller (the daemon hands the messages to a sender thread).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::activity::Live;
use crate::alerts::{
    AlertTracker, ClosedWindow, DrillFacts, FinishedRun, JobState, RunningRun, StorageFacts,
    evaluate,
};
use crate::config::{Config, JobConfig};
use crate::history::{History, HistoryError, RunStatus};
use crate::notify::{Alert, ChannelConfig};
use crate::timing::first_instant_at_or_after;
use arca_ops::drill::DrillReport;

const TRACKER_KEY: &str = "alerts.tracker";

fn seen_key(job: &str) -> String {
    format!("job.first_seen.{job}")
}

/// Alerts to send, with the channels (by name) they go to.
pub struct Outgoing {
    pub alerts: Vec<Alert>,
    pub channels: Vec<(String, ChannelConfig)>,
}

pub struct Monitor {
    tracker: AlertTracker,
    first_seen: BTreeMap<String, Timestamp>,
}

impl Monitor {
    /// The monitor as a previous daemon left it (an empty one the first time).
    pub fn load(history: &History) -> Result<Monitor, HistoryError> {
        let tracker = history
            .state(TRACKER_KEY)?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        Ok(Monitor {
            tracker,
            first_seen: BTreeMap::new(),
        })
    }

    fn first_seen(
        &mut self,
        history: &History,
        job: &str,
        now: Timestamp,
    ) -> Result<Timestamp, HistoryError> {
        if let Some(t) = self.first_seen.get(job) {
            return Ok(*t);
        }
        let key = seen_key(job);
        let t = match history.state(&key)?.and_then(|s| s.parse().ok()) {
            Some(t) => t,
            None => {
                history.set_state(&key, &now.to_string())?;
                now
            }
        };
        self.first_seen.insert(job.to_string(), t);
        Ok(t)
    }

    /// Evaluates every job at `now`; returns what to send. Jobs no longer configured have
    /// their firing alerts resolved. The live state gets the alerts now firing.
    pub fn evaluate(
        &mut self,
        config: &Config,
        history: &History,
        live: &Live,
        now: Timestamp,
    ) -> Result<Vec<Outgoing>, HistoryError> {
        let mut out = Vec::new();
        let storage = storage_facts(config, live);
        for job in config.jobs.values() {
            let since = self.first_seen(history, &job.name, now)?;
            let state = job_state(job, history, live, &storage, since, now)?;
            let firing = evaluate(&state, &job.alerts, now);
            let alerts = self
                .tracker
                .update(&job.name, &firing, now, job.alerts.repeat());
            if !alerts.is_empty() {
                out.push(Outgoing {
                    alerts,
                    channels: channels_of(config, job),
                });
            }
        }
        let gone: Vec<String> = self
            .tracker
            .active
            .values()
            .map(|a| a.job.clone())
            .filter(|j| !config.jobs.contains_key(j))
            .collect();
        for job in gone {
            let alerts = self.tracker.remove_job(&job, now);
            if !alerts.is_empty() {
                // The job's channels are gone with it: the default channels hear of it.
                let channels = config
                    .jobs
                    .values()
                    .next()
                    .map(|j| channels_of(config, j))
                    .unwrap_or_default();
                out.push(Outgoing { alerts, channels });
            }
        }
        live.set_alerts(self.tracker.active.values().cloned().collect());
        if let Ok(s) = serde_json::to_string(&self.tracker) {
            history.set_state(TRACKER_KEY, &s)?;
        }
        Ok(out)
    }
}

fn channels_of(config: &Config, job: &JobConfig) -> Vec<(String, ChannelConfig)> {
    job.channels
        .iter()
        .filter_map(|n| config.channels.get(n).map(|c| (n.clone(), c.clone())))
        .collect()
}

/// Space of every local repository (statvfs of its directory), also recorded in `live`.
/// Object stores tell no capacity here and are left out.
fn storage_facts(config: &Config, live: &Live) -> BTreeMap<String, StorageFacts> {
    let mut out = BTreeMap::new();
    for (name, r) in &config.repositories {
        let Ok(arca_storage::Location::Local(path)) = arca_storage::parse_location(&r.location)
        else {
            continue;
        };
        if let Ok(f) = crate::alerts::local_storage(name, &path) {
            live.set_storage(name, f.clone());
            out.insert(name.clone(), f);
        }
    }
    out
}

/// How long a run of `job` is expected to take: the longest of its recent good runs (at
/// least a minute), or an hour without history.
fn expected_duration(history: &History, job: &str) -> Result<Duration, HistoryError> {
    let longest = history
        .runs_of_kind(Some(job), "backup", 10)?
        .iter()
        .filter(|r| r.status.is_good())
        .filter_map(|r| {
            let end = r.end?;
            Duration::try_from(end.duration_since(r.start)).ok()
        })
        .max();
    Ok(longest
        .map(|d| d.max(Duration::from_secs(60)))
        .unwrap_or(Duration::from_secs(3600)))
}

/// The most recent backup window of `job` that has closed by `now` and in which a slot of
/// its schedule fell (a window with no slot in it was not meant to hold a run).
fn last_closed_window(job: &JobConfig, now: Timestamp) -> Option<ClosedWindow> {
    let plan = &job.plan;
    if plan.windows.is_empty() {
        return None;
    }
    let today = plan.local(now).date();
    let mut best: Option<ClosedWindow> = None;
    let mut day = today.yesterday().ok()?.yesterday().ok()?;
    for _ in 0..3 {
        for w in &plan.windows {
            let Some(start) = first_instant_at_or_after(day, w.start, &plan.tz) else {
                continue;
            };
            let end_day = if w.end <= w.start {
                day.tomorrow().ok()?
            } else {
                day
            };
            let Some(end) = first_instant_at_or_after(end_day, w.end, &plan.tz) else {
                continue;
            };
            if end > now || end <= start {
                continue;
            }
            let probe = start.checked_sub(jiff::SignedDuration::from_secs(1)).ok()?;
            let slot_inside = plan
                .schedule
                .next_after(probe, &plan.tz)
                .is_some_and(|s| s < end);
            if slot_inside && best.as_ref().is_none_or(|b| end > b.end) {
                best = Some(ClosedWindow { start, end });
            }
        }
        day = day.tomorrow().ok()?;
    }
    best
}

/// The facts the alert rules look at for `job`.
pub fn job_state(
    job: &JobConfig,
    history: &History,
    live: &Live,
    storage: &BTreeMap<String, StorageFacts>,
    configured_since: Timestamp,
    now: Timestamp,
) -> Result<JobState, HistoryError> {
    let last_run = history
        .last_run(&job.name)?
        .filter(|r| r.status != RunStatus::Running)
        .map(|r| FinishedRun {
            started: r.start,
            ended: r.end.unwrap_or(r.start),
            succeeded: !matches!(r.status, RunStatus::Failed | RunStatus::Abandoned),
            error: r.error.clone(),
        });
    let running = match live
        .running_of(&job.name)
        .into_iter()
        .find(|r| r.kind == "backup")
    {
        Some(r) => {
            let d = expected_duration(history, &job.name)?;
            let expected_end = r
                .start
                .checked_add(jiff::SignedDuration::try_from(d).unwrap_or_default())
                .unwrap_or(r.start);
            Some(RunningRun {
                started: r.start,
                expected_end,
            })
        }
        None => None,
    };
    let last_good = history.last_good(&job.name)?;
    let last_drill = history.last_drill(&job.name)?.map(|r| {
        match r
            .report
            .and_then(|v| serde_json::from_value::<DrillReport>(v).ok())
        {
            Some(report) => DrillFacts::from_report(&report),
            None => DrillFacts {
                time: r.start,
                passed: r.status == RunStatus::Success,
                failed_steps: Vec::new(),
                reason: r.error.clone(),
                recovery_secs: 0.0,
                projected_full_restore_secs: None,
            },
        }
    });
    Ok(JobState {
        job: job.name.clone(),
        configured_since: Some(configured_since),
        last_run,
        running,
        last_success_started: last_good.as_ref().map(|r| r.start),
        last_window: last_closed_window(job, now),
        last_good_snapshot: last_good.as_ref().map(|r| r.end.unwrap_or(r.start)),
        rpo: job.rpo,
        rto: job.rto,
        last_drill,
        storage: job
            .repositories
            .iter()
            .filter_map(|n| storage.get(n).cloned())
            .collect(),
    })
}

/// When the next drill of `job` is due: `None` without a drill schedule. A job without a
/// drill yet counts from its first good snapshot (no snapshot: not due).
pub fn drill_due(job: &JobConfig, history: &History, now: Timestamp) -> Result<bool, HistoryError> {
    let Some(schedule) = job.drill.as_ref().and_then(|d| d.schedule.as_ref()) else {
        return Ok(false);
    };
    let reference = match history.runs_of_kind(Some(&job.name), "drill", 1)?.first() {
        Some(r) => r.start,
        None => match history.last_good(&job.name)? {
            Some(g) => g.start,
            None => return Ok(false),
        },
    };
    Ok(schedule
        .next_after(reference, &job.plan.tz)
        .is_some_and(|t| t <= now))
}
