//! `arca drill run`: restore a snapshot into scratch space and prove it works — integrity,
//! the user's check commands, restore time against the RTO, ownership, permissions and
//! encryption at rest (the engine is arca_ops::drill). `arca drill run JOB` drills a
//! configured job (its checks, tier, hooks and RTO from the configuration file) and records
//! the report in the run history; without JOB it works against the repository given by
//! -r / ARCA_REPOSITORY. `arca recover JOB` brings a job's data back the way its tier says.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use arca_core::units::Elapsed;
use arca_daemon::job_drill::{DrillRequest, RecoverRequest, drill_job, recover_job};
use arca_ops::drill::{
    CheckCommand, DrillPlan, DrillReport, RecoveryHooks, StepStatus, Tier, format_duration,
    run_drill,
};
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::common;
use crate::output::CliProgress;

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Restore a snapshot into scratch space, run the checks, measure it against the RTO,
    /// compare owners and permissions, spot-check encryption at rest, then clean up.
    /// Exit code 0 when every step passed, 1 otherwise.
    Run(DrillRunArgs),
}

#[derive(Debug, Args)]
pub struct DrillRunArgs {
    /// A job of the configuration file (--config / ARCA_CONFIG): drill it with its
    /// settings ([jobs.NAME.drill], rto) and record the report in the run history
    #[arg(value_name = "JOB", conflicts_with_all = [
        "checks", "check_timeout", "rto", "scratch", "tier", "provision", "configure",
        "start", "hook_timeout", "full_size",
    ])]
    pub job: Option<String>,
    /// The snapshot to drill (an id, a prefix of one, or "latest"; for a job, its latest
    /// snapshot unless the job's drill names one)
    #[arg(long)]
    pub snapshot: Option<String>,
    /// A check command run with `sh -c` in the restored data (cwd and $ARCA_DRILL_DIR:
    /// the restored copy of the snapshot's only path, else the restore's root, which is
    /// $ARCA_DRILL_ROOT); repeat for several
    #[arg(long = "check", value_name = "CMD")]
    pub checks: Vec<String>,
    /// Time each check command may take before it is killed and fails (default 60s)
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub check_timeout: Elapsed,
    /// Recovery time objective: the recovery (and the projection of a full restore) must
    /// take no longer (e.g. 30m, 1h, 500ms)
    #[arg(long, value_name = "DURATION")]
    pub rto: Option<Elapsed>,
    /// Directory for the drill's scratch space (a private one under $TMPDIR when not
    /// given); nothing else may change in it during the drill
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Recovery tier to measure: hot, warm or cold (default cold)
    #[arg(long)]
    pub tier: Option<Tier>,
    /// Provisioning hook (cold tier); repeat for several
    #[arg(long = "provision", value_name = "CMD")]
    pub provision: Vec<String>,
    /// Configure hook (warm tier), run on the staged data; repeat for several
    #[arg(long = "configure", value_name = "CMD")]
    pub configure: Vec<String>,
    /// Start hook (warm tier), run before the switch; repeat for several
    #[arg(long = "start", value_name = "CMD")]
    pub start: Vec<String>,
    /// Time each hook may take (default 5m)
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub hook_timeout: Elapsed,
    /// The job's current size in bytes, for the projection of a full restore (default:
    /// the snapshot's size)
    #[arg(long, value_name = "BYTES")]
    pub full_size: Option<u64>,
    /// Keep the restored copy (its path is printed) instead of removing it
    #[arg(long)]
    pub keep: bool,
}

pub fn run(g: &GlobalArgs, c: DrillCommand) -> Result<i32> {
    match c {
        DrillCommand::Run(a) => drill_run(g, a),
    }
}

/// Removes the private scratch directory when the drill made one.
struct PrivateScratch(Option<PathBuf>);

impl Drop for PrivateScratch {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir(p);
        }
    }
}

fn drill_run(g: &GlobalArgs, a: DrillRunArgs) -> Result<i32> {
    if let Some(job) = &a.job {
        return drill_configured_job(g, job, &a);
    }
    let check_timeout = a.check_timeout.0;
    let rto = a.rto.map(|r| r.0);
    let hook_timeout = a.hook_timeout.0;
    if a.keep && a.scratch.is_none() {
        bail!("--keep needs --scratch DIR (the private scratch directory is removed)");
    }

    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let (id, snap) = common::resolve(&snaps, a.snapshot.as_deref().unwrap_or("latest"), None)?;

    let (scratch, _private) = match &a.scratch {
        Some(dir) => (dir.clone(), PrivateScratch(None)),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "arca-drill-scratch-{}-{}",
                std::process::id(),
                id.short()
            ));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating scratch directory {}", dir.display()))?;
            (dir.clone(), PrivateScratch(Some(dir)))
        }
    };
    let mut plan = DrillPlan::new(scratch);
    plan.checks = a
        .checks
        .iter()
        .map(|c| CheckCommand {
            command: c.clone(),
            timeout: check_timeout,
        })
        .collect();
    plan.rto = rto;
    plan.full_size = a.full_size;
    plan.tier = a.tier.unwrap_or_default();
    plan.hooks = RecoveryHooks {
        provision: a.provision.clone(),
        configure: a.configure.clone(),
        start: a.start.clone(),
        timeout: hook_timeout,
    };
    plan.threads = g.threads;
    plan.keep = a.keep;

    let progress = CliProgress::new(g, "drill");
    let result = run_drill(&repo, &index, &id, &snap, &plan, &progress);
    progress.finish();
    if common::interrupted() {
        return Err(arca_core::Error::Interrupted.into());
    }
    let report = result?;
    show_report(g, &report)
}

/// Prints a drill report (JSON with --json); the exit code: 0 when it passed, 1 otherwise.
fn show_report(g: &GlobalArgs, report: &DrillReport) -> Result<i32> {
    if g.json {
        let mut v = serde_json::to_value(report)?;
        v["message_type"] = serde_json::json!("drill");
        common::print_json(&v)?;
    } else if !g.quiet || !report.passed {
        print_report(report);
    }
    Ok(if report.passed {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    })
}

/// `arca drill run JOB`: the job's drill from the configuration, recorded in the history.
fn drill_configured_job(g: &GlobalArgs, job: &str, a: &DrillRunArgs) -> Result<i32> {
    use crate::cmd::daemon::{StderrEvents, config_path, load, open_history};
    use arca_daemon::runner::{EventLog, RunContext, Trigger};
    let path = config_path(g)?;
    let config = load(&path)?;
    if config.job(job).is_none() {
        bail!(
            "no job {job:?} in {}; configured: {}",
            path.display(),
            config.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let history = open_history(&config)?;
    struct Quiet(bool);
    impl EventLog for Quiet {
        fn event(&self, job: Option<&str>, message: &str) {
            if !self.0 {
                StderrEvents.event(job, message);
            }
        }
    }
    let events = Quiet(g.quiet || g.json);
    let clock = arca_daemon::clock::SystemClock;
    let ctx = RunContext {
        config: &config,
        history: &history,
        clock: &clock,
        stop: &common::interrupted,
        events: &events,
    };
    let request = DrillRequest {
        snapshot: a.snapshot.clone(),
        keep: a.keep,
        threads: g.threads,
    };
    let progress = CliProgress::new(g, "drill");
    let result = drill_job(&ctx, job, Trigger::Manual, &request, &progress);
    progress.finish();
    if common::interrupted() {
        return Err(arca_core::Error::Interrupted.into());
    }
    let (record, report) = result?;
    match report {
        Some(r) => show_report(g, &r),
        None => bail!(
            "drill of job {job} (run {}) did not start: {}",
            record.id,
            record.error.as_deref().unwrap_or("unknown error")
        ),
    }
}

/// `arca recover JOB`: bring a job's data back from its primary repository.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// A job of the configuration file (--config / ARCA_CONFIG)
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Where to recover to (default: target in [jobs.NAME.drill])
    #[arg(long, value_name = "DIR")]
    pub target: Option<PathBuf>,
    /// The snapshot (an id, a prefix of one, or "latest" of the job)
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Recovery tier: hot (in place, only what differs), warm (staging, hooks, switch),
    /// cold (provisioning hooks, then a full restore into an empty target); default: the
    /// job's
    #[arg(long)]
    pub tier: Option<Tier>,
    /// Warm tier: where to stage (default: TARGET.arca-staging beside the target)
    #[arg(long, value_name = "DIR")]
    pub staging: Option<PathBuf>,
    /// Re-read every restored file and compare it with the snapshot
    #[arg(long)]
    pub verify: bool,
}

pub fn recover(g: &GlobalArgs, a: RecoverArgs) -> Result<i32> {
    use crate::cmd::daemon::{config_path, load};
    let path = config_path(g)?;
    let config = load(&path)?;
    let request = RecoverRequest {
        target: a.target.clone(),
        snapshot: a.snapshot.clone(),
        tier: a.tier,
        staging: a.staging.clone(),
        verify: a.verify,
        threads: g.threads,
    };
    let progress = CliProgress::new(g, "recover");
    let result = recover_job(&config, &a.job, &request, &progress);
    progress.finish();
    if common::interrupted() {
        return Err(arca_core::Error::Interrupted.into());
    }
    let (snapshot, report) = result.map_err(|e| anyhow::anyhow!("recover {}: {e}", a.job))?;
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = serde_json::json!("recover");
        v["snapshot"] = serde_json::json!(snapshot);
        common::print_json(&v)?;
    } else if !g.quiet || !report.errors.is_empty() {
        println!(
            "recovered job {} from snapshot {} into {} ({} tier): {} files, {} written, {} \
             unchanged, {:.2}s",
            a.job,
            &snapshot[..snapshot.len().min(8)],
            report.target.display(),
            report.tier.as_str(),
            report.files,
            common::human_bytes(report.bytes_written),
            report.files_unchanged,
            report.duration_secs
        );
        for e in &report.errors {
            eprintln!("  not restored: {}: {}", e.path, e.reason);
        }
    }
    Ok(if report.errors.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::INCOMPLETE
    })
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Passed => "passed",
        StepStatus::Failed => "FAILED",
        StepStatus::Skipped => "skipped",
    }
}

fn print_report(r: &DrillReport) {
    println!(
        "drill of snapshot {} ({}) from {}: {}",
        &r.snapshot[..r.snapshot.len().min(8)],
        common::local_time(r.snapshot_time),
        r.repository,
        if r.passed { "PASSED" } else { "FAILED" }
    );
    println!(
        "  {} tier, {} files, {} restored; drill took {:.2}s",
        r.tier.as_str(),
        r.files,
        common::human_bytes(r.bytes),
        r.duration_secs
    );
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
    for s in &r.steps {
        let name = serde_json::to_value(s.name)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!(
            "  {name:<12} {:<8} {:.2}s",
            status_word(s.status),
            s.duration_secs
        );
        for reason in &s.reasons {
            println!("      {reason}");
        }
        for note in &s.notes {
            println!("      note: {note}");
        }
    }
    for c in &r.checks {
        if !c.passed {
            let out = format!("{}\n{}", c.outcome.stdout.trim(), c.outcome.stderr.trim());
            let out = out.trim();
            if !out.is_empty() {
                println!("  output of {:?}:", c.outcome.command);
                for line in out
                    .lines()
                    .rev()
                    .take(10)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    println!("      {line}");
                }
            }
        }
    }
    if let Some(p) = &r.performance
        && let Some(rto) = p.rto_secs
    {
        println!(
            "  RTO {}: recovery {:.3}s, projected full restore {:.3}s",
            format_duration(std::time::Duration::from_secs_f64(rto)),
            p.recovery_secs,
            p.projected_full_restore_secs
        );
    }
    if r.cleaned_up {
        println!("  scratch space removed");
    } else if let Some(e) = &r.cleanup_error {
        println!("  cleanup failed: {e}");
    } else {
        println!("  restored copy kept in {}", r.restore_dir.display());
    }
}
