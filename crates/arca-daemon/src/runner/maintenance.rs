//! Retention and prune after a run: the job's snapshots, forget by its policy, and prune
//! when its own schedule says so.

use super::*;

pub(super) fn job_snapshots(
    repo: &Repository,
    tag: &str,
) -> Result<Vec<(Id, Snapshot)>, StepError> {
    let (snaps, _bad) = repo.list_snapshots().map_err(StepError::ListSnapshots)?;
    Ok(snaps
        .into_iter()
        .filter(|(_, s)| s.tags.iter().any(|t| t == tag))
        .collect())
}

/// Applies the job's retention to its snapshots in the session's repository: arca-ops'
/// forget (append-only refusal with the delete probe, exclusive lock) on the snapshots
/// with the job's tag, in one group, as `arca forget --tag job:NAME --group-by ''` would.
/// Returns how many snapshots were removed.
pub(super) fn apply_retention(
    session: &arca_ops::Session,
    job: &JobConfig,
    stop: &dyn Fn() -> bool,
) -> Result<usize, StepError> {
    let Some(policy) = &job.retention else {
        return Ok(0);
    };
    let selection = arca_ops::forget::Selection::Policy {
        policy: Box::new(policy.clone()),
        filter: arca_ops::forget::SnapshotFilter {
            tags: vec![job.job_tag()],
            ..Default::default()
        },
        group_by: Vec::new(),
    };
    Ok(arca_ops::forget::forget(session, &selection, false, stop)?
        .removed
        .len())
}

/// Prunes one repository of the job with the job's prune settings: the prune operation of
/// arca-ops (append-only refusal with its delete probe, exclusive lock, removal of
/// abandoned temporary files, plan and execution), as `arca prune` runs it.
pub(super) fn prune_repo(
    session: &arca_ops::Session,
    job: &JobConfig,
    stop: &dyn Fn() -> bool,
) -> Result<String, StepError> {
    let Some(p) = &job.prune else {
        return Ok(String::new());
    };
    let opts = arca_core::prune::PruneOptions {
        max_unused: p.max_unused,
        max_repack_bytes: None,
        repack_cacheable_only: false,
    };
    let r = arca_ops::prune::prune(session, &opts, false, stop)?;
    let mut summary = format!(
        "delete {} packs, repack {}, frees {} bytes",
        r.plan.delete_packs.len(),
        r.plan.repack_packs.len(),
        r.plan.bytes_freed
    );
    if r.temporary_files_removed > 0 {
        summary.push_str(&format!(
            "; removed {} temporary files of interrupted writes",
            r.temporary_files_removed
        ));
    }
    Ok(summary)
}

/// Runs prune on every repository of the job when a slot of its prune schedule passed
/// since the last successful prune (or it never ran).
pub(super) fn prune_if_due(
    ctx: &RunContext<'_>,
    job: &JobConfig,
    log: &mut Log,
) -> Result<(), RunError> {
    let Some(p) = &job.prune else { return Ok(()) };
    let now = ctx.clock.now();
    let due = match ctx.history.last_prune(&job.name)? {
        None => true,
        Some(last) => p
            .schedule
            .next_after(last.start, &job.plan.tz)
            .is_some_and(|s| s <= now),
    };
    if !due {
        return Ok(());
    }
    let id = ctx
        .history
        .start_run(&job.name, "prune", None, "schedule", None, now)?;
    let mut plog = Log {
        text: String::new(),
    };
    let mut errors = Vec::new();
    for name in &job.repositories {
        let cfg = &ctx.config.repositories[name];
        let pruned = open_session(cfg, Some(job))
            .map_err(StepError::from)
            .and_then(|s| prune_repo(&s, job, ctx.stop));
        match pruned {
            Ok(s) => plog.line(ctx.clock, &format!("prune {name}: {s}")),
            Err(e) => {
                plog.line(ctx.clock, &format!("prune {name}: {e}"));
                errors.push(format!("{name}: {e}"));
            }
        }
    }
    log.line(
        ctx.clock,
        &format!(
            "prune: {}",
            if errors.is_empty() { "done" } else { "failed" }
        ),
    );
    ctx.history.finish_run(
        id,
        ctx.clock.now(),
        &RunOutcome {
            status: Some(if errors.is_empty() {
                RunStatus::Success
            } else {
                RunStatus::Failed
            }),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            log: plog.text,
            ..Default::default()
        },
    )?;
    Ok(())
}
