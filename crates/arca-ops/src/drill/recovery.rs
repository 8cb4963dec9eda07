//! Recovery tiers: `hot` restores in place only what differs, `warm` restores to a
//! staging path, runs the configure and start hooks, then switches, `cold` runs the
//! provisioning hooks, then restores everything into an empty target.

use super::*;

/// How a job comes back after a loss (declared per job; drills measure it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Restore in place, writing only what differs from the snapshot.
    Hot,
    /// Restore to a staging path, run the configure and start hooks, then switch.
    Warm,
    /// Run the provisioning hooks, then restore everything into an empty target.
    #[default]
    Cold,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }

    /// The steps of a recovery in this tier, in order.
    pub fn steps(self) -> &'static [&'static str] {
        match self {
            Tier::Hot => &["restore in place (only what differs, removing extra files)"],
            Tier::Warm => &[
                "restore to the staging path",
                "run the configure hooks",
                "run the start hooks",
                "switch: rename the target aside, rename staging to the target",
            ],
            Tier::Cold => &[
                "run the provisioning hooks",
                "restore everything into the empty target",
            ],
        }
    }
}

/// A recovery tier that is not hot, warm or cold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown recovery tier {0:?} (hot, warm or cold)")]
pub struct UnknownTier(pub String);

impl std::str::FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Tier, UnknownTier> {
        match s {
            "hot" => Ok(Tier::Hot),
            "warm" => Ok(Tier::Warm),
            "cold" => Ok(Tier::Cold),
            _ => Err(UnknownTier(s.to_string())),
        }
    }
}

pub(super) fn default_hook_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Hooks of a recovery (shell commands, run in order, each with the timeout). They see
/// ARCA_RECOVER_TARGET (the final target), ARCA_RECOVER_DIR (where the data is at that
/// moment: staging for warm) and ARCA_RECOVER_TIER.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecoveryHooks {
    /// Cold: run before anything is restored (e.g. create the machine, mount the disk).
    #[serde(default)]
    pub provision: Vec<String>,
    /// Warm: run on the staged data before the switch (e.g. fix configuration).
    #[serde(default)]
    pub configure: Vec<String>,
    /// Warm: run before the switch (e.g. start the service on the staged data, or
    /// stop the old one).
    #[serde(default)]
    pub start: Vec<String>,
    #[serde(default = "default_hook_timeout", with = "duration_str")]
    pub timeout: Duration,
}

impl Default for RecoveryHooks {
    fn default() -> Self {
        RecoveryHooks {
            provision: Vec::new(),
            configure: Vec::new(),
            start: Vec::new(),
            timeout: default_hook_timeout(),
        }
    }
}

/// What a recovery did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub tier: Tier,
    pub target: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub bytes_written: u64,
    pub files_unchanged: u64,
    pub verified_files: u64,
    /// Time of the whole recovery (hooks included).
    pub duration_secs: f64,
    /// Time of the restore alone.
    pub restore_secs: f64,
    pub hooks: Vec<CommandOutcome>,
    /// Entries that did not restore (path and reason).
    pub errors: Vec<arca_core::format::EntryError>,
}

/// What to recover and how.
#[derive(Debug, Clone)]
pub struct RecoveryPlan {
    pub tier: Tier,
    pub target: PathBuf,
    /// Warm: where to stage (default: `TARGET.arca-staging` beside the target).
    pub staging: Option<PathBuf>,
    pub hooks: RecoveryHooks,
    /// Re-read every restored file and compare it with the snapshot's content.
    pub verify: bool,
    pub threads: Option<usize>,
}

impl RecoveryPlan {
    fn staging_path(&self) -> PathBuf {
        self.staging.clone().unwrap_or_else(|| {
            let mut name = self
                .target
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            name.push(".arca-staging");
            self.target.with_file_name(name)
        })
    }
}

pub(super) fn run_hooks(
    name: &'static str,
    commands: &[String],
    plan: &RecoveryPlan,
    data_dir: &Path,
    report: &mut RecoveryReport,
) -> Result<(), DrillError> {
    for c in commands {
        let env = [
            ("ARCA_RECOVER_TARGET", plan.target.as_os_str()),
            ("ARCA_RECOVER_DIR", data_dir.as_os_str()),
            ("ARCA_RECOVER_TIER", OsStr::new(plan.tier.as_str())),
        ];
        let cwd = data_dir.is_dir().then_some(data_dir);
        let outcome = run_command(c, cwd, &env, None, plan.hooks.timeout);
        let ok = outcome.success();
        let reason = outcome.failure_reason();
        report.hooks.push(outcome);
        if !ok {
            return Err(DrillError::Hook {
                hook: name,
                command: c.clone(),
                reason,
            });
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn restore_into(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    target: &Path,
    overwrite: Overwrite,
    delete: bool,
    plan: &RecoveryPlan,
    progress: &dyn Progress,
) -> Result<RestoreSummary, DrillError> {
    let root = PathBuf::from("/");
    let opts = RestoreOptions {
        overwrite,
        delete,
        verify: plan.verify,
        threads: plan.threads,
        ..Default::default()
    };
    crate::restore::restore_from(repo, index, snapshot, &root, target, &opts, progress).map_err(
        |e| match e {
            crate::restore::RestoreError::Path { source, .. } => DrillError::Snapshot {
                tree: snapshot.tree.short(),
                source,
            },
            crate::restore::RestoreError::Restore(source) => DrillError::Restore {
                tree: snapshot.tree.short(),
                target: target.to_path_buf(),
                source,
            },
        },
    )
}

/// The warm tier: restore into the staging path, run the configure and start hooks there,
/// then switch it into the target's place (the old target goes aside and is removed once
/// the switch is done; a failed switch puts it back).
fn recover_warm(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    plan: &RecoveryPlan,
    report: &mut RecoveryReport,
    progress: &dyn Progress,
) -> Result<RestoreSummary, DrillError> {
    let staging = plan.staging_path();
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    }
    let t = Instant::now();
    let s = restore_into(
        repo,
        index,
        snapshot,
        &staging,
        Overwrite::Always,
        false,
        plan,
        progress,
    )?;
    report.restore_secs = t.elapsed().as_secs_f64();
    if !s.errors.is_empty() {
        report.errors = s.errors.clone();
        return Err(DrillError::Invalid(format!(
            "{} entries did not restore into the staging path {}; the target was left alone",
            s.errors.len(),
            staging.display()
        )));
    }
    run_hooks("configure", &plan.hooks.configure, plan, &staging, report)?;
    run_hooks("start", &plan.hooks.start, plan, &staging, report)?;
    // Switch: the old target goes aside (removed after the switch), staging takes
    // its place.
    let mut old_name = plan.target.as_os_str().to_os_string();
    old_name.push(".arca-old");
    let old = PathBuf::from(old_name);
    let had_target = plan.target.exists();
    if had_target {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
        }
        fs::rename(&plan.target, &old).map_err(|e| io_err(&plan.target, e))?;
    }
    if let Err(e) = fs::rename(&staging, &plan.target) {
        if had_target {
            let _ = fs::rename(&old, &plan.target);
        }
        return Err(io_err(&staging, e));
    }
    if had_target {
        fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
    }
    Ok(s)
}

/// Recovers `snapshot` into `plan.target` the way `plan.tier` says (see the module doc).
/// Hook output is kept in the report; a failing hook stops the recovery (warm: before the
/// switch, so the old target stays in place).
pub fn recover(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    plan: &RecoveryPlan,
    progress: &dyn Progress,
) -> Result<RecoveryReport, DrillError> {
    let start = Instant::now();
    let mut report = RecoveryReport {
        tier: plan.tier,
        target: plan.target.clone(),
        ..Default::default()
    };
    let summary = match plan.tier {
        Tier::Hot => {
            let t = Instant::now();
            let s = restore_into(
                repo,
                index,
                snapshot,
                &plan.target,
                Overwrite::IfChanged,
                true,
                plan,
                progress,
            )?;
            report.restore_secs = t.elapsed().as_secs_f64();
            s
        }
        Tier::Warm => recover_warm(repo, index, snapshot, plan, &mut report, progress)?,
        Tier::Cold => {
            run_hooks(
                "provision",
                &plan.hooks.provision,
                plan,
                &plan.target,
                &mut report,
            )?;
            if let Ok(mut rd) = fs::read_dir(&plan.target)
                && rd.next().is_some()
            {
                return Err(DrillError::Invalid(format!(
                    "cold recovery needs an empty target, and {} is not empty",
                    plan.target.display()
                )));
            }
            let t = Instant::now();
            let s = restore_into(
                repo,
                index,
                snapshot,
                &plan.target,
                Overwrite::Always,
                false,
                plan,
                progress,
            )?;
            report.restore_secs = t.elapsed().as_secs_f64();
            s
        }
    };
    report.files = summary.files;
    report.bytes = summary.total_bytes;
    report.bytes_written = summary.bytes_written;
    report.files_unchanged = summary.files_unchanged;
    report.verified_files = summary.verified_files;
    report.errors.extend(summary.errors);
    report.duration_secs = start.elapsed().as_secs_f64();
    Ok(report)
}
