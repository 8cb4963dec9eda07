//! [`run_job`]: the steps of one run in order (pre hooks, backup, retention, copies,
//! 3-2-1, post or failure hooks, prune when due) and the history row it leaves.

use super::*;

/// What every step of one run shares: the context, the job and the run's identity.
struct RunScope<'a> {
    ctx: &'a RunContext<'a>,
    job: &'a JobConfig,
    job_name: &'a str,
    run_id: i64,
    backup_type: BackupType,
}

impl RunScope<'_> {
    /// The environment a hook sees.
    fn hook_env(&self, status: &str, snapshot: &str, error: &str) -> Vec<(&'static str, String)> {
        vec![
            ("ARCA_JOB", self.job_name.to_string()),
            ("ARCA_RUN_ID", self.run_id.to_string()),
            ("ARCA_BACKUP_TYPE", self.backup_type.as_str().to_string()),
            ("ARCA_STATUS", status.to_string()),
            ("ARCA_SNAPSHOT", snapshot.to_string()),
            ("ARCA_ERROR", error.to_string()),
        ]
    }

    /// Runs the hooks `cmds` one after the other into the run's log; the first that fails
    /// stops them.
    fn run_hooks(
        &self,
        log: &mut Log,
        which: &str,
        cmds: &[String],
        env: &[(&str, String)],
    ) -> Result<(), StepError> {
        for cmd in cmds {
            let r = run_hook(cmd, self.job.hooks.timeout, env);
            log.line(
                self.ctx.clock,
                &format!("{which} hook {cmd:?}: {}", r.detail),
            );
            if !r.output.is_empty() {
                log.text.push_str(&r.output);
                if !r.output.ends_with('\n') {
                    log.text.push('\n');
                }
            }
            if !r.ok {
                return Err(StepError::Hook {
                    which: which.to_string(),
                    command: cmd.clone(),
                    detail: r.detail,
                });
            }
        }
        Ok(())
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
    let scope = RunScope {
        ctx,
        job,
        job_name,
        run_id,
        backup_type,
    };
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
    let result = backup_and_copy(&scope, &progress, &mut log, &mut outcome);
    settle(&scope, result, &progress, &mut log, &mut outcome);
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

/// The pre hooks, the backup into the primary repository, retention there, the copies
/// and their retention, and the 3-2-1 state. An error says whether the run was stopped
/// (true) rather than failed.
fn backup_and_copy(
    scope: &RunScope<'_>,
    progress: &RunProgress<'_>,
    log: &mut Log,
    outcome: &mut RunOutcome,
) -> Result<(), (bool, String)> {
    let RunScope {
        ctx,
        job,
        backup_type,
        ..
    } = *scope;
    scope
        .run_hooks(
            log,
            "pre",
            &job.hooks.pre,
            &scope.hook_env("running", "", ""),
        )
        .map_err(|e| (false, e.to_string()))?;
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
    let engine_log = Mutex::new(String::new());
    let b = backup(&primary_session, job, backup_type, progress, &engine_log);
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
        match copy_to(scope, &primary_session, origin, cfg, progress, log) {
            Ok(()) => {
                holders.push(cfg);
                copies_detail.insert(name.clone(), serde_json::json!({"ok": true}));
            }
            Err(e) => {
                copies_detail.insert(
                    name.clone(),
                    serde_json::json!({"ok": false, "error": e.to_string()}),
                );
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
}

/// Copies the job's snapshots from `primary` to the secondary repository `cfg` (the copy
/// operation of arca-ops, as `arca copy` runs it), applies the job's retention there, and
/// checks that the new snapshot `origin` arrived.
fn copy_to(
    scope: &RunScope<'_>,
    primary: &arca_ops::Session,
    origin: Id,
    cfg: &RepositoryConfig,
    progress: &RunProgress<'_>,
    log: &mut Log,
) -> Result<(), StepError> {
    let RunScope { ctx, job, .. } = *scope;
    let name = &cfg.name;
    let dst_session = open_session(cfg, Some(job))?;
    let dst = dst_session.repository();
    let selected = job_snapshots(primary.repository(), &job.job_tag())?;
    let summary = arca_ops::copy::copy(primary, &dst_session, &selected, ctx.stop, progress)?;
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
        return Err(StepError::NotCopied(origin.short()));
    }
    Ok(())
}

/// The run's status and error from how its steps ended, with the post hooks (after
/// success) or the failure hooks.
fn settle(
    scope: &RunScope<'_>,
    result: Result<(), (bool, String)>,
    progress: &RunProgress<'_>,
    log: &mut Log,
    outcome: &mut RunOutcome,
) {
    let RunScope { ctx, job, .. } = *scope;
    let snapshot = outcome.snapshot_id.clone().unwrap_or_default();
    match result {
        Ok(()) => {
            let env = scope.hook_env("success", &snapshot, "");
            match scope.run_hooks(log, "post", &job.hooks.post, &env) {
                Ok(()) => {
                    if outcome.status.is_none() {
                        outcome.status = Some(RunStatus::Success);
                    }
                }
                Err(e) => {
                    outcome.status = Some(RunStatus::Failed);
                    outcome.error = Some(e.to_string());
                }
            }
        }
        Err((interrupted, e)) => {
            let stopped_by_window = progress.window_closed.load(Ordering::Relaxed);
            let status = if interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            };
            let e = if interrupted && stopped_by_window {
                format!(
                    "{e}: the backup window closed (on_window_close = \"stop\"); the next run reuses the stored data"
                )
            } else if interrupted {
                format!("{e}: stopped on request; the next run reuses the stored data")
            } else {
                e
            };
            log.line(ctx.clock, &format!("error: {e}"));
            outcome.status = Some(status);
            outcome.error = Some(e.clone());
            let env = scope.hook_env(status.as_str(), &snapshot, &e);
            if let Err(he) = scope.run_hooks(log, "failure", &job.hooks.failure, &env) {
                log.line(ctx.clock, &format!("warning: {he}"));
            }
        }
    }
}
