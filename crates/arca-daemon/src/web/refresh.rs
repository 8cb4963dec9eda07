//! The refresher: a thread that opens the configured repositories (password and all) to
//! count their snapshots (in all, and per job by its `job:NAME` tag) and add up the size
//! of their objects, and measures the filesystem of local repositories (statvfs). It runs
//! when the server starts, every `ARCA_WEB_REFRESH_SECS` (300 by default) and, for the
//! repositories of a job, as soon as a run of that job ends. `/metrics` and the pages read
//! only what it cached: no request opens a repository for these numbers or waits on
//! storage.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::Shared;
use crate::alerts::StorageFacts;
use crate::config::RepositoryConfig;

/// What is known of one repository.
#[derive(Debug, Clone, Default)]
pub struct RepoFacts {
    /// When the repository was last opened successfully.
    pub refreshed: Option<Timestamp>,
    /// Why the last opening failed (the numbers are then those of the last success).
    pub error: Option<String>,
    pub snapshots: u64,
    /// Snapshots per job (by the `job:NAME` tag).
    pub snapshots_by_job: BTreeMap<String, u64>,
    /// Bytes of the repository's objects (packs, indexes, snapshots, keys, config).
    pub size_bytes: u64,
    /// The filesystem of a local repository.
    pub storage: Option<StorageFacts>,
}

#[derive(Debug, Default)]
pub struct Facts {
    repos: Mutex<BTreeMap<String, RepoFacts>>,
}

impl Facts {
    pub fn all(&self) -> BTreeMap<String, RepoFacts> {
        self.repos.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, repository: &str, f: impl FnOnce(&mut RepoFacts)) {
        let mut repos = self.repos.lock().unwrap_or_else(|p| p.into_inner());
        f(repos.entry(repository.to_string()).or_default());
    }
}

/// The repository's snapshots and size (opens it: blocking, slow on purpose here only).
/// Why a repository's figures could not be taken (the dashboard shows it).
#[derive(Debug, thiserror::Error)]
enum MeasureError {
    #[error(transparent)]
    Open(#[from] crate::runner::RepositoryError),
    #[error("repository {repository}: listing {what}: {reason}")]
    List {
        repository: String,
        what: &'static str,
        reason: String,
    },
}

/// A repository's figures: snapshots, snapshots per job, bytes stored.
type Measured = (u64, BTreeMap<String, u64>, u64);

fn measure(repo: &RepositoryConfig) -> Result<Measured, MeasureError> {
    let opened = crate::runner::open_repository(repo, None)?;
    let list_error = |what: &'static str, reason: String| MeasureError::List {
        repository: repo.name.clone(),
        what,
        reason,
    };
    let (snaps, _unreadable) = opened
        .list_snapshots()
        .map_err(|e| list_error("snapshots", e.to_string()))?;
    let mut by_job: BTreeMap<String, u64> = BTreeMap::new();
    for (_, s) in &snaps {
        for tag in &s.tags {
            if let Some(job) = tag.strip_prefix("job:") {
                *by_job.entry(job.to_string()).or_default() += 1;
            }
        }
    }
    let storage = opened.storage();
    let mut size = 0u64;
    for prefix in ["data/", "index/", "snapshots/", "keys/"] {
        let objects = storage
            .list(prefix)
            .map_err(|e| list_error(prefix, e.to_string()))?;
        size += objects.iter().map(|o| o.size).sum::<u64>();
    }
    if let Ok(info) = storage.stat("config") {
        size += info.size;
    }
    Ok((snaps.len() as u64, by_job, size))
}

fn refresh_repository(app: &Shared, repo: &RepositoryConfig) {
    let result = measure(repo);
    let now = app.state.clock.now();
    app.facts.update(&repo.name, |f| match result {
        Ok((snapshots, by_job, size)) => {
            f.refreshed = Some(now);
            f.error = None;
            f.snapshots = snapshots;
            f.snapshots_by_job = by_job;
            f.size_bytes = size;
        }
        Err(e) => f.error = Some(e.to_string()),
    });
}

fn refresh_storage(app: &Shared) {
    let config = app.state.config();
    for repo in config.repositories.values() {
        if let Ok(arca_storage::Location::Local(path)) =
            arca_storage::parse_location(&repo.location)
            && let Ok(facts) = crate::alerts::local_storage(&repo.name, &path)
        {
            app.facts.update(&repo.name, |f| f.storage = Some(facts));
        }
    }
}

fn refresh_interval() -> Duration {
    std::env::var("ARCA_WEB_REFRESH_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(Duration::from_secs(300), Duration::from_secs)
}

/// Starts the refresher; it ends when `stopped` turns true.
pub fn spawn(app: Shared, stopped: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("arca-web-refresh".into())
        .spawn(move || run(app, stopped))
        .ok()
}

fn run(app: Shared, stopped: Arc<AtomicBool>) {
    let interval = refresh_interval();
    let storage_interval = Duration::from_secs(30).min(interval);
    // Runs that end from now on trigger a refresh of their job's repositories (the ones
    // before are covered by the refresh at start). History times, not the clock: runs of
    // `arca job run` and of the daemon may use different clocks in tests.
    let mut since_ms = match app.db.newest_end_ms() {
        Ok(Some(newest)) => newest + 1,
        _ => 0,
    };
    let mut seen: HashSet<i64> = HashSet::new();
    let mut last_full: Option<Instant> = None;
    let mut last_storage: Option<Instant> = None;
    while !stopped.load(Ordering::SeqCst) {
        let config = app.state.config();
        if last_storage.is_none_or(|t| t.elapsed() >= storage_interval) {
            refresh_storage(&app);
            last_storage = Some(Instant::now());
        }
        let mut due: BTreeSet<String> = BTreeSet::new();
        if last_full.is_none_or(|t| t.elapsed() >= interval) {
            due.extend(config.repositories.keys().cloned());
            last_full = Some(Instant::now());
        }
        if let Ok(ended) = app.db.ended_since(since_ms) {
            for run in ended {
                if !seen.insert(run.id) {
                    continue;
                }
                if let Some(job) = config.job(&run.job) {
                    due.extend(job.repositories.iter().cloned());
                }
                since_ms = since_ms.max(run.end_ms);
            }
            // Only ids at the newest time can come back in the next query.
            let newest = since_ms;
            if let Ok(again) = app.db.ended_since(newest) {
                let keep: HashSet<i64> = again.iter().map(|r| r.id).collect();
                seen.retain(|id| keep.contains(id));
            }
        }
        for name in &due {
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            if let Some(repo) = config.repositories.get(name) {
                refresh_repository(&app, repo);
            }
        }
        for _ in 0..10 {
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
