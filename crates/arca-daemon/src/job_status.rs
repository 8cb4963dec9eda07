//! Per-job status from the configuration and the run history: the last good snapshot and
//! its age against the RPO, the next run, the window state, the 3-2-1 state and the last
//! error. `arca status` and the daemon's `/api/status` show it.

use jiff::Timestamp;

use crate::config::{Config, JobConfig};
use crate::history::{History, HistoryError, RunStatus};
use crate::runner::ThreeTwoOne;
use crate::timing::WindowState;

#[derive(Debug, Clone, serde::Serialize)]
pub struct LastGood {
    pub snapshot_id: String,
    pub time: Timestamp,
    pub age_secs: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LastRun {
    pub id: i64,
    pub status: RunStatus,
    #[serde(rename = "type")]
    pub backup_type: Option<String>,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStatus {
    pub job: String,
    pub source: String,
    pub repositories: Vec<String>,
    pub schedule: String,
    pub timezone: String,
    pub rpo_secs: Option<u64>,
    pub last_good: Option<LastGood>,
    /// `None` without an RPO; false when the last good snapshot is older than the RPO
    /// (or there is none).
    pub rpo_ok: Option<bool>,
    pub last_run: Option<LastRun>,
    pub last_error: Option<String>,
    pub running: bool,
    pub next_run: Option<Timestamp>,
    pub window: WindowState,
    pub three_two_one: Option<ThreeTwoOne>,
}

pub fn job_status(
    history: &History,
    job: &JobConfig,
    now: Timestamp,
) -> Result<JobStatus, HistoryError> {
    let last_good = history.last_good(&job.name)?;
    let last_run = history.last_run(&job.name)?;
    let last_good_view = last_good.as_ref().and_then(|r| {
        let time = r.end.unwrap_or(r.start);
        Some(LastGood {
            snapshot_id: r.snapshot_id.clone()?,
            time,
            age_secs: now.as_second() - time.as_second(),
        })
    });
    let rpo_ok = job.rpo.map(|rpo| {
        last_good_view
            .as_ref()
            .is_some_and(|g| g.age_secs <= rpo.as_secs() as i64)
    });
    let running = last_run
        .as_ref()
        .is_some_and(|r| r.status == RunStatus::Running);
    let last_slot = history.last_slot(&job.name)?.unwrap_or(now);
    let next_run = job.plan.next_run(last_slot, now);
    let three_two_one = last_good
        .as_ref()
        .and_then(|r| r.copies.as_ref())
        .and_then(|c| serde_json::from_value(c.get("three_two_one")?.clone()).ok());
    let last_error = last_run
        .as_ref()
        .filter(|r| !r.status.is_good() && r.status != RunStatus::Running)
        .and_then(|r| r.error.clone());
    Ok(JobStatus {
        job: job.name.clone(),
        source: job.source.describe(),
        repositories: job.repositories.clone(),
        schedule: job.schedule_text.clone(),
        timezone: job.timezone.clone(),
        rpo_secs: job.rpo.map(|d| d.as_secs()),
        last_good: last_good_view,
        rpo_ok,
        last_run: last_run.map(|r| LastRun {
            id: r.id,
            status: r.status,
            backup_type: r.backup_type,
            start: r.start,
            end: r.end,
            error: r.error,
        }),
        last_error,
        running,
        next_run,
        window: job.plan.window_state(now),
        three_two_one,
    })
}

pub fn all_status(
    config: &Config,
    history: &History,
    now: Timestamp,
) -> Result<Vec<JobStatus>, HistoryError> {
    config
        .jobs
        .values()
        .map(|j| job_status(history, j, now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::RunOutcome;

    #[test]
    fn rpo_breach_window_and_three_two_one() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"[daemon]
state = "state.db"
[repositories.r]
location = "/tmp/r"
password_env = "PW"
[jobs.j]
sources = ["/data"]
repositories = ["r"]
schedule = "0 23 * * *"
window = "22:00-06:00"
timezone = "UTC"
rpo = "1h"
"#;
        let config =
            Config::parse(&dir.path().join("arca.toml"), text, &|_| Some("x".into())).unwrap();
        let history = History::open(&dir.path().join("state.db")).unwrap();
        let noon: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        let job = config.job("j").unwrap();
        // Never ran: the RPO is breached, the window is closed until 22:00.
        let s = job_status(&history, job, noon).unwrap();
        assert_eq!(s.rpo_ok, Some(false));
        assert!(s.last_good.is_none());
        match s.window {
            WindowState::Closed { opens_at } => {
                assert_eq!(opens_at, Some("2026-06-01T22:00:00Z".parse().unwrap()))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.next_run, Some("2026-06-01T23:00:00Z".parse().unwrap()));
        // A good run two hours ago: still breached; 30 minutes ago: fine.
        for (ago, ok) in [(7200, false), (1800, true)] {
            let t = Timestamp::from_second(noon.as_second() - ago).unwrap();
            let id = history
                .start_run("j", "backup", Some("full"), "manual", None, t)
                .unwrap();
            history
                .finish_run(
                    id,
                    t,
                    &RunOutcome {
                        status: Some(RunStatus::Success),
                        snapshot_id: Some(format!("{ago:064}")),
                        copies: Some(serde_json::json!({"three_two_one": {
                            "copies": 2, "media": 1, "offsite": 0, "ok": false, "holders": ["r"]
                        }})),
                        ..Default::default()
                    },
                )
                .unwrap();
            let s = job_status(&history, job, noon).unwrap();
            assert_eq!(s.rpo_ok, Some(ok), "{ago}");
            assert_eq!(s.last_good.as_ref().unwrap().age_secs, ago);
            assert_eq!(s.three_two_one.as_ref().unwrap().copies, 2);
            assert!(s.last_error.is_none());
        }
    }
}
