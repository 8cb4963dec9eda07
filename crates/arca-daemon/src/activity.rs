//! What the daemon is doing right now, shared by its loop, its run threads and its web
//! server: runs in progress, the alerts firing, the space of each repository as last
//! measured, and requests (from the dashboard) to start a run or a drill, which the loop
//! picks up.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use jiff::Timestamp;

use crate::alerts::{ActiveAlert, StorageFacts};

/// A run in progress.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunningInfo {
    pub job: String,
    /// `backup`, `prune` or `drill`.
    pub kind: String,
    pub start: Timestamp,
}

/// Something the dashboard (or another client of the daemon) asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Start a backup run of the job now.
    Run { job: String },
    /// Start a restore drill of the job now.
    Drill { job: String },
}

/// The daemon's live state. Every method takes the lock briefly; nothing here blocks.
#[derive(Debug, Default)]
pub struct Live {
    running: Mutex<BTreeMap<String, RunningInfo>>,
    alerts: Mutex<Vec<ActiveAlert>>,
    storage: Mutex<BTreeMap<String, StorageFacts>>,
    requests: Mutex<VecDeque<Request>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    pub fn new() -> Live {
        Live::default()
    }

    /// Records that `kind` of `job` started (one run per job and kind at a time).
    pub fn started(&self, job: &str, kind: &str, start: Timestamp) {
        lock(&self.running).insert(
            format!("{job}/{kind}"),
            RunningInfo {
                job: job.to_string(),
                kind: kind.to_string(),
                start,
            },
        );
    }

    /// Records that `kind` of `job` ended.
    pub fn ended(&self, job: &str, kind: &str) {
        lock(&self.running).remove(&format!("{job}/{kind}"));
    }

    /// Runs in progress.
    pub fn running(&self) -> Vec<RunningInfo> {
        lock(&self.running).values().cloned().collect()
    }

    /// Runs of `job` in progress.
    pub fn running_of(&self, job: &str) -> Vec<RunningInfo> {
        lock(&self.running)
            .values()
            .filter(|r| r.job == job)
            .cloned()
            .collect()
    }

    pub fn set_alerts(&self, alerts: Vec<ActiveAlert>) {
        *lock(&self.alerts) = alerts;
    }

    /// The alerts firing now.
    pub fn alerts(&self) -> Vec<ActiveAlert> {
        lock(&self.alerts).clone()
    }

    /// Records the space of a repository (keyed by its name in the configuration).
    pub fn set_storage(&self, repository: &str, facts: StorageFacts) {
        lock(&self.storage).insert(repository.to_string(), facts);
    }

    /// Space of each repository, as last measured.
    pub fn storage(&self) -> BTreeMap<String, StorageFacts> {
        lock(&self.storage).clone()
    }

    /// Queues a request for the daemon loop.
    pub fn request(&self, r: Request) {
        lock(&self.requests).push_back(r);
    }

    /// Takes the queued requests (the daemon loop).
    pub fn take_requests(&self) -> Vec<Request> {
        lock(&self.requests).drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_requests_come_and_go() {
        let live = Live::new();
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        live.started("docs", "backup", t);
        live.started("docs", "drill", t);
        assert_eq!(live.running_of("docs").len(), 2);
        live.ended("docs", "backup");
        assert_eq!(live.running()[0].kind, "drill");
        live.request(Request::Run { job: "docs".into() });
        live.request(Request::Drill { job: "db".into() });
        assert_eq!(live.take_requests().len(), 2);
        assert!(live.take_requests().is_empty());
    }
}
