//! `GET /metrics`: Prometheus text format (0.0.4) built at each scrape from the run
//! history, the daemon's live state and the refresher's cache (a scrape never opens a
//! repository or touches storage).
//!
//! Per job (`job` label): last success time, last run's duration, bytes read and added,
//! snapshots and repository size (primary repository, from the refresher), RPO age and
//! target, last drill's result, duration, time and projected restore time against the RTO,
//! runs in progress per kind, runs per kind and status (counter). Per repository
//! (`repository` label): size and snapshots (refresher), storage used, free and capacity
//! where known (statvfs of local repositories, or what the daemon measured), whether the
//! last opening worked. Alerts firing (`job`, `rule`, `severity`).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{App, Shared, WebError, blocking};
use crate::history::RunStatus;
use arca_ops::drill::DrillReport;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// A family of float gauges, registered under `name`.
struct Gauges(Family<Labels, FloatGauge>);

impl Gauges {
    fn new(registry: &mut Registry, name: &str, help: &str) -> Gauges {
        let family = Family::<Labels, FloatGauge>::default();
        registry.register(name, help, family.clone());
        Gauges(family)
    }

    fn set(&self, labels: &[(&'static str, &str)], value: f64) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self.0.get_or_create(&labels).set(value);
    }
}

fn secs(t: jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn duration(start: jiff::Timestamp, end: jiff::Timestamp) -> f64 {
    (end.as_millisecond() - start.as_millisecond()) as f64 / 1000.0
}

/// The gauges of each job: its newest run, drill, RPO/RTO, repository figures and what runs now.
struct JobMetrics {
    last_success: Gauges,
    last_run_time: Gauges,
    last_run_ok: Gauges,
    last_duration: Gauges,
    bytes_read: Gauges,
    bytes_added: Gauges,
    job_snapshots: Gauges,
    job_repo_size: Gauges,
    rpo_age: Gauges,
    rpo_target: Gauges,
    drill_ok: Gauges,
    drill_duration: Gauges,
    drill_time: Gauges,
    drill_projected: Gauges,
    rto_target: Gauges,
    running: Gauges,
}

impl JobMetrics {
    fn register(r: &mut Registry) -> JobMetrics {
        let last_success = Gauges::new(
            r,
            "job_last_success_timestamp_seconds",
            "End of the job's newest run that wrote a snapshot (Unix time)",
        );
        let last_run_time = Gauges::new(
            r,
            "job_last_run_timestamp_seconds",
            "End of the job's newest finished backup run (Unix time)",
        );
        let last_run_ok = Gauges::new(
            r,
            "job_last_run_success",
            "1 when the job's newest finished backup run wrote a snapshot, else 0",
        );
        let last_duration = Gauges::new(
            r,
            "job_last_run_duration_seconds",
            "Duration of the job's newest finished backup run",
        );
        let bytes_read = Gauges::new(
            r,
            "job_last_run_read_bytes",
            "Bytes the job's newest finished backup run read from its source",
        );
        let bytes_added = Gauges::new(
            r,
            "job_last_run_added_bytes",
            "Bytes the job's newest finished backup run added to the repository",
        );
        let job_snapshots = Gauges::new(
            r,
            "job_snapshots",
            "Snapshots of the job in its primary repository (refreshed in the background)",
        );
        let job_repo_size = Gauges::new(
            r,
            "job_repository_size_bytes",
            "Size of the job's primary repository (refreshed in the background)",
        );
        let rpo_age = Gauges::new(
            r,
            "job_rpo_age_seconds",
            "Age of the job's newest good snapshot",
        );
        let rpo_target = Gauges::new(r, "job_rpo_target_seconds", "The job's RPO");
        let drill_ok = Gauges::new(
            r,
            "job_drill_success",
            "1 when the job's newest drill passed, else 0",
        );
        let drill_duration = Gauges::new(
            r,
            "job_drill_duration_seconds",
            "Duration of the job's newest drill",
        );
        let drill_time = Gauges::new(
            r,
            "job_drill_timestamp_seconds",
            "Start of the job's newest drill (Unix time)",
        );
        let drill_projected = Gauges::new(
            r,
            "job_drill_projected_restore_seconds",
            "Full restore time the newest drill projects at its measured throughput",
        );
        let rto_target = Gauges::new(
            r,
            "job_rto_target_seconds",
            "The job's RTO (else the one its newest drill measured against)",
        );
        let running = Gauges::new(
            r,
            "job_running",
            "1 while a run of this kind (backup, prune, drill) is in progress",
        );
        JobMetrics {
            last_success,
            last_run_time,
            last_run_ok,
            last_duration,
            bytes_read,
            bytes_added,
            job_snapshots,
            job_repo_size,
            rpo_age,
            rpo_target,
            drill_ok,
            drill_duration,
            drill_time,
            drill_projected,
            rto_target,
            running,
        }
    }

    /// Sets the gauges of job `name`.
    fn record(
        &self,
        app: &App,
        (name, job): (&String, &crate::config::JobConfig),
        facts: &BTreeMap<String, super::refresh::RepoFacts>,
        live_running: &[crate::activity::RunningInfo],
        now: jiff::Timestamp,
    ) -> Result<(), WebError> {
        let history = &app.state.history;
        let hist = |e: crate::history::HistoryError| WebError::Internal(e.to_string());
        let j = name.as_str();
        let l = [("job", j)];
        if let Some(good) = history.last_good(j).map_err(hist)? {
            let t = good.end.unwrap_or(good.start);
            self.last_success.set(&l, secs(t));
            self.rpo_age.set(&l, duration(t, now).max(0.0));
        }
        if let Some(rpo) = job.rpo {
            self.rpo_target.set(&l, rpo.as_secs_f64());
        }
        if let Some(rto) = job.rto {
            self.rto_target.set(&l, rto.as_secs_f64());
        }
        let finished = history
            .runs_of_kind(Some(j), "backup", 2)
            .map_err(hist)?
            .into_iter()
            .find(|r| r.status != RunStatus::Running);
        if let Some(run) = finished {
            let end = run.end.unwrap_or(run.start);
            self.last_run_time.set(&l, secs(end));
            self.last_run_ok
                .set(&l, if run.status.is_good() { 1.0 } else { 0.0 });
            self.last_duration
                .set(&l, duration(run.start, end).max(0.0));
            if let Some(b) = run.bytes_read {
                self.bytes_read.set(&l, b as f64);
            }
            if let Some(b) = run.bytes_added {
                self.bytes_added.set(&l, b as f64);
            }
        }
        if let Some(primary) = job.repositories.first()
            && let Some(f) = facts.get(primary)
            && f.refreshed.is_some()
        {
            let lr = [("job", j), ("repository", primary.as_str())];
            self.job_snapshots
                .set(&lr, f.snapshots_by_job.get(j).copied().unwrap_or(0) as f64);
            self.job_repo_size.set(&lr, f.size_bytes as f64);
        }
        if let Some(drill) = history.last_drill(j).map_err(hist)? {
            self.drill_ok.set(
                &l,
                if drill.status == RunStatus::Success {
                    1.0
                } else {
                    0.0
                },
            );
            let report: Option<DrillReport> = drill
                .report
                .as_ref()
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            match &report {
                Some(rep) => {
                    self.drill_duration.set(&l, rep.duration_secs);
                    self.drill_time.set(&l, secs(rep.started));
                    if let Some(p) = &rep.performance {
                        self.drill_projected.set(&l, p.projected_full_restore_secs);
                        if let (None, Some(rto)) = (job.rto, p.rto_secs) {
                            self.rto_target.set(&l, rto);
                        }
                    }
                }
                None => {
                    self.drill_time.set(&l, secs(drill.start));
                    if let Some(end) = drill.end {
                        self.drill_duration
                            .set(&l, duration(drill.start, end).max(0.0));
                    }
                }
            }
        }
        for kind in ["backup", "prune", "drill"] {
            let on = live_running.iter().any(|r| r.job == j && r.kind == kind);
            self.running
                .set(&[("job", j), ("kind", kind)], if on { 1.0 } else { 0.0 });
        }
        Ok(())
    }
}

/// The gauges of each repository: size, snapshots, reachability and storage space.
struct RepositoryMetrics {
    repo_size: Gauges,
    repo_snapshots: Gauges,
    repo_up: Gauges,
    repo_refreshed: Gauges,
    storage_used: Gauges,
    storage_free: Gauges,
    storage_capacity: Gauges,
}

impl RepositoryMetrics {
    fn register(r: &mut Registry) -> RepositoryMetrics {
        let repo_size = Gauges::new(
            r,
            "repository_size_bytes",
            "Size of the repository's objects (refreshed in the background)",
        );
        let repo_snapshots = Gauges::new(
            r,
            "repository_snapshots",
            "Snapshots in the repository (refreshed in the background)",
        );
        let repo_up = Gauges::new(
            r,
            "repository_up",
            "1 when the last background opening of the repository worked, else 0",
        );
        let repo_refreshed = Gauges::new(
            r,
            "repository_refresh_timestamp_seconds",
            "When the repository was last opened in the background (Unix time)",
        );
        let storage_used = Gauges::new(
            r,
            "repository_storage_used_bytes",
            "Space used on the repository's storage (its filesystem, or its quota)",
        );
        let storage_free = Gauges::new(
            r,
            "repository_storage_free_bytes",
            "Space free on the repository's storage",
        );
        let storage_capacity = Gauges::new(
            r,
            "repository_storage_capacity_bytes",
            "Capacity of the repository's storage (filesystem size, or quota)",
        );
        RepositoryMetrics {
            repo_size,
            repo_snapshots,
            repo_up,
            repo_refreshed,
            storage_used,
            storage_free,
            storage_capacity,
        }
    }

    /// Sets the gauges of repository `name`.
    fn record(
        &self,
        name: &str,
        facts: &BTreeMap<String, super::refresh::RepoFacts>,
        live_storage: &BTreeMap<String, crate::alerts::StorageFacts>,
    ) {
        let l = [("repository", name)];
        let f = facts.get(name).cloned().unwrap_or_default();
        if let Some(t) = f.refreshed {
            self.repo_size.set(&l, f.size_bytes as f64);
            self.repo_snapshots.set(&l, f.snapshots as f64);
            self.repo_refreshed.set(&l, secs(t));
        }
        if f.refreshed.is_some() || f.error.is_some() {
            self.repo_up
                .set(&l, if f.error.is_none() { 1.0 } else { 0.0 });
        }
        // What the daemon measured (quotas) wins over the refresher's statvfs.
        if let Some(s) = live_storage.get(name).or(f.storage.as_ref()) {
            self.storage_used.set(&l, s.used_bytes as f64);
            self.storage_capacity.set(&l, s.capacity_bytes as f64);
            self.storage_free
                .set(&l, s.capacity_bytes.saturating_sub(s.used_bytes) as f64);
        }
    }
}

/// The text of one scrape.
pub fn render(app: &App) -> Result<String, WebError> {
    let config = app.state.config();
    let now = app.state.clock.now();
    let mut r = Registry::with_prefix("arca");
    let jobs = JobMetrics::register(&mut r);
    let runs = Family::<Labels, Counter>::default();
    r.register(
        "runs",
        "Runs in the history by job, kind and status",
        runs.clone(),
    );
    let repositories = RepositoryMetrics::register(&mut r);
    let alerts = Gauges::new(
        &mut r,
        "alert_firing",
        "1 for each alert firing now, by job, rule and severity",
    );

    let facts = app.facts.all();
    let live_running = app.state.live.running();
    for job in &config.jobs {
        jobs.record(app, job, &facts, &live_running, now)?;
    }
    for (job, kind, status, count) in app.db.counts()? {
        let labels: Labels = vec![("job", job), ("kind", kind), ("status", status)];
        runs.get_or_create(&labels).inc_by(count);
    }
    let live_storage = app.state.live.storage();
    for name in config.repositories.keys() {
        repositories.record(name, &facts, &live_storage);
    }
    let mut seen = BTreeMap::new();
    for a in app.state.live.alerts() {
        let severity = serde_json::to_value(a.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        seen.insert((a.job.clone(), a.rule.as_str(), severity), ());
    }
    for (job, rule, severity) in seen.keys() {
        alerts.set(&[("job", job), ("rule", rule), ("severity", severity)], 1.0);
    }
    let mut out = String::new();
    prometheus_text::encode(&mut out, &r)
        .map_err(|e| WebError::Internal(format!("encoding the metrics: {e}")))?;
    Ok(out)
}

pub async fn scrape(State(app): State<Shared>) -> Result<Response, WebError> {
    let text = blocking(move || render(&app)).await?;
    Ok((
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        text,
    )
        .into_response())
}
