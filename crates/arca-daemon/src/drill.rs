//! Restore drills and recovery tiers: proving that a snapshot restores, within the RTO,
//! passes the user's checks, and comes back with the right owners and permissions from a
//! repository whose data is encrypted at rest.
//!
//! [`run_drill`] restores a snapshot into scratch space through [`recover`] (the declared
//! [`Tier`]), then runs four steps — integrity, function, performance, security — and
//! cleans up, also on failure. Everything it learns goes into a [`DrillReport`]
//! (serialisable, so the daemon can keep it as JSON in its run history); nothing here
//! prints.
//!
//! [`recover`] is the recovery itself, used by drills in scratch space and later by
//! `arca recover JOB` on the real target: `hot` restores in place only what differs, `warm`
//! restores to a staging path, runs the configure and start hooks, then switches (rename),
//! `cold` runs the provisioning hooks, then restores everything into an empty target.
//!
//! Also here, shared with the alert channels: [`run_command`] (a shell command with a
//! timeout, its process group killed when it overruns, output kept bounded) and
//! [`parse_duration`] with millisecond precision.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arca_core::Repository;
use arca_core::format::{Node, NodeKind, Snapshot};
use arca_core::id::Id;
use arca_core::index::Index;
use arca_core::progress::Progress;
use arca_core::repo::pack_name;
use arca_core::restore::{Overwrite, RestoreOptions, RestoreSummary, find_path, restore};
use serde::{Deserialize, Serialize};

/// Errors that stop a drill or a recovery before its steps can report.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("the snapshot's tree {tree}: {source}")]
    Snapshot {
        tree: String,
        source: arca_core::Error,
    },
    #[error("restore of the snapshot with tree {tree} into {target}: {source}")]
    Restore {
        tree: String,
        target: PathBuf,
        source: arca_core::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{hook} hook {command:?} failed: {reason}")]
    Hook {
        hook: &'static str,
        command: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// The progress asked to stop (Ctrl-C, SIGTERM, a closing window); the scratch space
    /// was cleaned up and nothing is known about the snapshot.
    #[error("interrupted")]
    Interrupted,
}

impl DrillError {
    fn is_interrupted(&self) -> bool {
        matches!(self, DrillError::Interrupted)
            || matches!(
                self,
                DrillError::Restore { source, .. } | DrillError::Snapshot { source, .. }
                    if source.kind() == arca_core::ErrorKind::Interrupted
            )
    }
}

fn io_err(path: &Path, source: std::io::Error) -> DrillError {
    DrillError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// Durations

/// Parses a duration such as `1ms`, `90s`, `10m`, `1h30m`, `2d`, `1w` (units ms, s, m,
/// h, d, w; a sum of parts).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration; expected e.g. 500ms, 90s, 10m, 1h30m, 2d".into());
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number at {rest:?} (e.g. 500ms, 90s, 10m, 1h30m)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        let after = &rest[digits..];
        let (part, len) = if after.starts_with("ms") {
            (Duration::from_millis(n), 2)
        } else {
            let secs = match after.chars().next() {
                Some('s') => 1,
                Some('m') => 60,
                Some('h') => 3600,
                Some('d') => 86_400,
                Some('w') => 7 * 86_400,
                Some(c) => {
                    return Err(format!(
                        "invalid duration {text:?}: unknown unit {c:?} (use ms, s, m, h, d or w)"
                    ));
                }
                None => {
                    return Err(format!(
                        "invalid duration {text:?}: missing unit after {n} (use ms, s, m, h, d or w)"
                    ));
                }
            };
            let secs = n
                .checked_mul(secs)
                .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
            (Duration::from_secs(secs), 1)
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        rest = &after[len..];
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut s = (ms / 1000) as u64;
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if !ms.is_multiple_of(1000) {
        out.push_str(&format!("{}ms", ms % 1000));
    }
    out
}

/// Serde for durations written as strings (`"30m"`, `"250ms"`).
pub mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    /// For `Option<Duration>` fields (`#[serde(default, with = "duration_str::option")]`).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&super::super::format_duration(*d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(s) => super::super::parse_duration(&s)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Commands with a timeout

/// Bytes of stdout and of stderr kept from a command (the last ones).
pub const OUTPUT_LIMIT: usize = 8 * 1024;

/// What a command did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CommandOutcome {
    pub command: String,
    /// Exit code; None when killed by a signal or not started.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Killed because the run was stopped (Ctrl-C, SIGTERM).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    pub duration_secs: f64,
    /// The last [`OUTPUT_LIMIT`] bytes of stdout and stderr (lossy UTF-8).
    pub stdout: String,
    pub stderr: String,
    /// Whether output beyond the limit was dropped.
    pub truncated: bool,
    /// Why it could not be started, if it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.interrupted && self.error.is_none()
    }

    /// One line saying why it failed (empty when it succeeded).
    pub fn failure_reason(&self) -> String {
        if let Some(e) = &self.error {
            return format!("could not start: {e}");
        }
        if self.interrupted {
            return "stopped: the run was interrupted".into();
        }
        if self.timed_out {
            return format!("timed out after {:.1}s and was killed", self.duration_secs);
        }
        match self.exit_code {
            Some(0) => String::new(),
            Some(c) => {
                let tail = last_line(&self.stderr).or_else(|| last_line(&self.stdout));
                match tail {
                    Some(t) => format!("exited with code {c}: {t}"),
                    None => format!("exited with code {c}"),
                }
            }
            None => "killed by a signal".into(),
        }
    }
}

fn last_line(s: &str) -> Option<String> {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().chars().take(300).collect())
}

/// Keeps the last `limit` bytes read from a pipe.
fn read_tail(mut r: impl Read, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > limit {
                    let cut = kept.len() - limit;
                    kept.drain(..cut);
                    truncated = true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    (kept, truncated)
}

/// Runs `command` with `sh -c` in `cwd` with extra `env`, feeding `stdin` (or nothing), and
/// kills its whole process group when it runs longer than `timeout`.
pub fn run_command(
    command: &str,
    cwd: Option<&Path>,
    env: &[(&str, &OsStr)],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> CommandOutcome {
    run_command_until(command, cwd, env, stdin, timeout, &|| false)
}

/// [`run_command`] that also kills the command when `stop()` turns true (the outcome
/// then says `interrupted`).
pub fn run_command_until(
    command: &str,
    cwd: Option<&Path>,
    env: &[(&str, &OsStr)],
    stdin: Option<&[u8]>,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> CommandOutcome {
    let start = Instant::now();
    let mut outcome = CommandOutcome {
        command: command.to_string(),
        ..Default::default()
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            outcome.error = Some(e.to_string());
            return outcome;
        }
    };
    let pid = child.id() as i32;
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                use std::io::Write;
                // A command that does not read its input closes the pipe: not an error.
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let out_reader = child
        .stdout
        .take()
        .map(|p| std::thread::spawn(move || read_tail(p, OUTPUT_LIMIT)));
    let err_reader = child
        .stderr
        .take()
        .map(|p| std::thread::spawn(move || read_tail(p, OUTPUT_LIMIT)));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                outcome.error = Some(format!("wait: {e}"));
                break None;
            }
        }
        if start.elapsed() >= timeout {
            outcome.timed_out = true;
            kill_group(pid);
            break child.wait().ok();
        }
        if stop() {
            outcome.interrupted = true;
            kill_group(pid);
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Whatever the command left running in its group must not hold the pipes open.
    kill_group(pid);
    if let Some(w) = writer {
        let _ = w.join();
    }
    for (reader, field) in [
        (out_reader, &mut outcome.stdout),
        (err_reader, &mut outcome.stderr),
    ] {
        if let Some(r) = reader
            && let Ok((bytes, truncated)) = r.join()
        {
            *field = String::from_utf8_lossy(&bytes).into_owned();
            outcome.truncated |= truncated;
        }
    }
    outcome.exit_code = status.and_then(|s| s.code());
    outcome.duration_secs = start.elapsed().as_secs_f64();
    outcome
}

fn kill_group(pid: i32) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
}

// ---------------------------------------------------------------------------------------
// Recovery tiers

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

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Tier, String> {
        match s {
            "hot" => Ok(Tier::Hot),
            "warm" => Ok(Tier::Warm),
            "cold" => Ok(Tier::Cold),
            _ => Err(format!("unknown recovery tier {s:?} (hot, warm or cold)")),
        }
    }
}

fn default_hook_timeout() -> Duration {
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

fn run_hooks(
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
fn restore_into(
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
    let node = find_path(repo, index, &snapshot.tree, &root).map_err(|e| DrillError::Snapshot {
        tree: snapshot.tree.short(),
        source: e,
    })?;
    let opts = RestoreOptions {
        overwrite,
        delete,
        verify: plan.verify,
        threads: plan.threads,
        ..Default::default()
    };
    restore(repo, index, &node, &root, target, &opts, progress).map_err(|e| DrillError::Restore {
        tree: snapshot.tree.short(),
        target: target.to_path_buf(),
        source: e,
    })
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
        Tier::Warm => {
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
            run_hooks(
                "configure",
                &plan.hooks.configure,
                plan,
                &staging,
                &mut report,
            )?;
            run_hooks("start", &plan.hooks.start, plan, &staging, &mut report)?;
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
            s
        }
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

// ---------------------------------------------------------------------------------------
// Drills

/// A check command of a drill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckCommand {
    pub command: String,
    #[serde(default = "default_check_timeout", with = "duration_str")]
    pub timeout: Duration,
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(60)
}

/// What a drill restores, checks and measures.
#[derive(Debug, Clone)]
pub struct DrillPlan {
    /// Directory under which the drill makes its own working directory (removed at the
    /// end). Nothing else in it may change during the drill: use a dedicated directory.
    pub scratch: PathBuf,
    pub checks: Vec<CheckCommand>,
    pub rto: Option<Duration>,
    /// The job's current size in bytes, for the projection of a full restore (default:
    /// the snapshot's size).
    pub full_size: Option<u64>,
    pub tier: Tier,
    pub hooks: RecoveryHooks,
    pub threads: Option<usize>,
    /// How many restored files' first bytes are looked for in raw pack files.
    pub encryption_samples: usize,
    /// Keep the restored data (for debugging a failed check) instead of removing it.
    pub keep: bool,
}

impl DrillPlan {
    pub fn new(scratch: PathBuf) -> DrillPlan {
        DrillPlan {
            scratch,
            checks: Vec::new(),
            rto: None,
            full_size: None,
            tier: Tier::Cold,
            hooks: RecoveryHooks::default(),
            threads: None,
            encryption_samples: 8,
            keep: false,
        }
    }
}

/// The outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Passed,
    Failed,
    Skipped,
}

/// The four steps of a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepName {
    Integrity,
    Function,
    Performance,
    Security,
}

/// One step of a drill: status, time, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub name: StepName,
    pub status: StepStatus,
    pub duration_secs: f64,
    /// Failures (status failed) or why it was skipped.
    pub reasons: Vec<String>,
    /// What was found that does not fail the step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl StepReport {
    fn new(name: StepName) -> StepReport {
        StepReport {
            name,
            status: StepStatus::Passed,
            duration_secs: 0.0,
            reasons: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn skipped(name: StepName, reason: &str) -> StepReport {
        StepReport {
            status: StepStatus::Skipped,
            reasons: vec![reason.to_string()],
            ..StepReport::new(name)
        }
    }

    fn fail(&mut self, reason: String) {
        self.status = StepStatus::Failed;
        self.reasons.push(reason);
    }
}

/// Restore speed against the RTO.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PerformanceFacts {
    /// Time of the recovery in the declared tier (hooks included).
    pub recovery_secs: f64,
    pub restore_secs: f64,
    pub bytes: u64,
    pub throughput_bytes_per_sec: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_secs: Option<f64>,
    pub full_size_bytes: u64,
    /// Time a restore of `full_size_bytes` would take at the measured throughput (plus
    /// the hooks' time).
    pub projected_full_restore_secs: f64,
}

/// The outcome of a check command (the function step).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    pub passed: bool,
    #[serde(flatten)]
    pub outcome: CommandOutcome,
}

/// Everything a drill found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    /// True when no step failed.
    pub passed: bool,
    pub snapshot: String,
    pub snapshot_time: jiff::Timestamp,
    pub repository: String,
    pub tier: Tier,
    pub started: jiff::Timestamp,
    pub duration_secs: f64,
    /// The restored copy (removed at the end unless kept).
    pub restore_dir: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub steps: Vec<StepReport>,
    pub checks: Vec<CheckReport>,
    /// The recovery hooks that ran (provision, configure, start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<CommandOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceFacts>,
    /// The recovery stopped before the steps could run (hook failed, restore error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub cleaned_up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_error: Option<String>,
}

impl DrillReport {
    pub fn step(&self, name: StepName) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Names of the failed steps.
    pub fn failed_steps(&self) -> Vec<StepName> {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed)
            .map(|s| s.name)
            .collect()
    }
}

/// Most reasons listed per step; more are counted.
const MAX_REASONS: usize = 50;

fn push_bounded(list: &mut Vec<String>, dropped: &mut usize, reason: String) {
    if list.len() < MAX_REASONS {
        list.push(reason);
    } else {
        *dropped += 1;
    }
}

/// Names, kinds, sizes and mtimes of the entries of `dir` (not recursive).
fn listing(dir: &Path) -> BTreeMap<Vec<u8>, (u32, u64, i64, i64)> {
    let mut out = BTreeMap::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = fs::symlink_metadata(e.path()) {
                out.insert(
                    e.file_name().as_bytes().to_vec(),
                    (m.mode() & 0o170000, m.len(), m.mtime(), m.mtime_nsec()),
                );
            }
        }
    }
    out
}

fn unique_name(snapshot: &Id) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "arca-drill-{}-{}-{nanos:08x}",
        snapshot.short(),
        std::process::id()
    )
}

/// Runs a drill of `snapshot` (id `snapshot_id`): see the module doc. Errors of the drill
/// itself (cannot create the scratch directory) are returned; everything about the
/// snapshot is in the report. When `progress` asks to stop, the drill cleans up and
/// returns [`DrillError::Interrupted`] (no report: it proved nothing). The security step examines the restore as it came out,
/// before the check commands run (they may change the restored data); it is reported last.
pub fn run_drill(
    repo: &Repository,
    index: &Index,
    snapshot_id: &Id,
    snapshot: &Snapshot,
    plan: &DrillPlan,
    progress: &dyn Progress,
) -> Result<DrillReport, DrillError> {
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    fs::create_dir_all(&plan.scratch).map_err(|e| io_err(&plan.scratch, e))?;
    let before = listing(&plan.scratch);
    let work_name = unique_name(snapshot_id);
    let work = plan.scratch.join(&work_name);
    fs::create_dir(&work).map_err(|e| io_err(&work, e))?;
    let target = work.join("target");
    fs::create_dir(&target).map_err(|e| io_err(&target, e))?;
    let mut report = DrillReport {
        passed: false,
        snapshot: snapshot_id.to_hex(),
        snapshot_time: snapshot.time,
        repository: repo.location().to_string(),
        tier: plan.tier,
        started,
        duration_secs: 0.0,
        restore_dir: target.clone(),
        files: 0,
        bytes: 0,
        steps: Vec::new(),
        checks: Vec::new(),
        hooks: Vec::new(),
        performance: None,
        error: None,
        cleaned_up: false,
        cleanup_error: None,
    };

    let recovery_plan = RecoveryPlan {
        tier: plan.tier,
        target: target.clone(),
        staging: Some(work.join("staging")),
        hooks: plan.hooks.clone(),
        verify: true,
        threads: plan.threads,
    };
    let recovered = recover(repo, index, snapshot, &recovery_plan, progress);
    let interrupted = matches!(&recovered, Err(e) if e.is_interrupted());
    match recovered {
        Err(e) => {
            report.error = Some(e.to_string());
            let mut integrity = StepReport::new(StepName::Integrity);
            integrity.fail(format!("the recovery did not complete: {e}"));
            report.steps.push(integrity);
            for name in [
                StepName::Function,
                StepName::Performance,
                StepName::Security,
            ] {
                report
                    .steps
                    .push(StepReport::skipped(name, "the recovery did not complete"));
            }
        }
        Ok(rec) => {
            report.files = rec.files;
            report.bytes = rec.bytes;
            report.hooks = rec.hooks.clone();
            report.steps.push(integrity_step(&rec));
            // Security looks at the restore as it came out, before the checks run (a
            // check such as starting a database server changes the restored data).
            let security = security_step(
                repo,
                index,
                snapshot,
                &target,
                &plan.scratch,
                &work_name,
                &before,
                &work,
                plan.encryption_samples,
            );
            let (function, checks) = function_step(plan, snapshot, &target, progress);
            report.steps.push(function);
            report.checks = checks;
            let (perf_step, perf) = performance_step(plan, snapshot, &rec);
            report.steps.push(perf_step);
            report.performance = Some(perf);
            report.steps.push(security);
        }
    }

    // Clean up, also after a failure.
    if plan.keep {
        report.cleaned_up = false;
    } else {
        make_removable(&work);
        match fs::remove_dir_all(&work) {
            Ok(()) => report.cleaned_up = true,
            Err(e) => report.cleanup_error = Some(format!("{}: {e}", work.display())),
        }
    }
    if interrupted || progress.should_stop() {
        return Err(DrillError::Interrupted);
    }
    report.passed =
        report.error.is_none() && report.steps.iter().all(|s| s.status != StepStatus::Failed);
    report.duration_secs = clock.elapsed().as_secs_f64();
    Ok(report)
}

/// Gives the owner write and search permission on every directory below `dir`, so a
/// snapshot's read-only directories can be removed.
fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = fs::symlink_metadata(dir) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    if m.mode() & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode((m.mode() | 0o700) & 0o7777));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            make_removable(&e.path());
        }
    }
}

fn integrity_step(rec: &RecoveryReport) -> StepReport {
    let mut step = StepReport::new(StepName::Integrity);
    let mut dropped = 0;
    // Paths as in the snapshot, not in scratch space.
    let prefix = rec.target.to_string_lossy().into_owned();
    let in_snapshot = |p: &str| match p.strip_prefix(prefix.as_str()) {
        Some("") => "/".to_string(),
        Some(rest) => rest.to_string(),
        None => p.to_string(),
    };
    for e in &rec.errors {
        step.status = StepStatus::Failed;
        let reason = e.reason.replace(prefix.as_str(), "");
        push_bounded(
            &mut step.reasons,
            &mut dropped,
            format!("{}: {reason}", in_snapshot(&e.path)),
        );
    }
    if dropped > 0 {
        step.reasons.push(format!("... and {dropped} more"));
    }
    if step.status == StepStatus::Passed && rec.files > 0 && rec.verified_files == 0 {
        step.fail(format!(
            "none of the {} restored files was verified",
            rec.files
        ));
    }
    step.notes.push(format!(
        "{} files verified against the snapshot's content hashes",
        rec.verified_files
    ));
    // The restore's verification is timed within the restore.
    step.duration_secs = 0.0;
    step
}

/// The directory checks run in: the restored copy of the snapshot's only path when it
/// has one path that is a directory, else the restore's root.
pub fn data_dir(target: &Path, snapshot: &Snapshot) -> PathBuf {
    if let [only] = snapshot.paths.as_slice() {
        let p = target.join(only.trim_start_matches('/'));
        if p.is_dir() {
            return p;
        }
    }
    target.to_path_buf()
}

fn function_step(
    plan: &DrillPlan,
    snapshot: &Snapshot,
    target: &Path,
    progress: &dyn Progress,
) -> (StepReport, Vec<CheckReport>) {
    let t = Instant::now();
    let mut step = StepReport::new(StepName::Function);
    if plan.checks.is_empty() {
        step.status = StepStatus::Skipped;
        step.reasons.push("no check commands declared".into());
        return (step, Vec::new());
    }
    let dir = data_dir(target, snapshot);
    let mut checks = Vec::new();
    for c in &plan.checks {
        let env = [
            ("ARCA_DRILL_DIR", dir.as_os_str()),
            ("ARCA_DRILL_ROOT", target.as_os_str()),
        ];
        let outcome = run_command_until(&c.command, Some(&dir), &env, None, c.timeout, &|| {
            progress.should_stop()
        });
        let passed = outcome.success();
        if !passed {
            step.fail(format!(
                "check {:?} {}",
                c.command,
                outcome.failure_reason()
            ));
        }
        checks.push(CheckReport { passed, outcome });
    }
    step.duration_secs = t.elapsed().as_secs_f64();
    (step, checks)
}

fn performance_step(
    plan: &DrillPlan,
    snapshot: &Snapshot,
    rec: &RecoveryReport,
) -> (StepReport, PerformanceFacts) {
    let mut step = StepReport::new(StepName::Performance);
    let restore_secs = rec.restore_secs.max(1e-6);
    let throughput = rec.bytes as f64 / restore_secs;
    let full = plan
        .full_size
        .unwrap_or(snapshot.summary.total_bytes.max(rec.bytes));
    let hooks_secs = (rec.duration_secs - rec.restore_secs).max(0.0);
    let projected = if rec.bytes == 0 {
        rec.duration_secs
    } else {
        full as f64 / throughput + hooks_secs
    };
    let facts = PerformanceFacts {
        recovery_secs: rec.duration_secs,
        restore_secs: rec.restore_secs,
        bytes: rec.bytes,
        throughput_bytes_per_sec: throughput,
        rto_secs: plan.rto.map(|d| d.as_secs_f64()),
        full_size_bytes: full,
        projected_full_restore_secs: projected,
    };
    step.duration_secs = rec.duration_secs;
    step.notes.push(format!(
        "{} tier recovery took {:.3}s ({} bytes at {:.1} MB/s); a full restore of {} bytes is projected at {:.3}s",
        rec.tier.as_str(),
        rec.duration_secs,
        rec.bytes,
        throughput / 1e6,
        full,
        projected
    ));
    match plan.rto {
        None => step.notes.push("no RTO declared: measured only".into()),
        Some(rto) => {
            let rto_s = rto.as_secs_f64();
            if rec.duration_secs > rto_s {
                step.fail(format!(
                    "the recovery took {:.3}s, over the RTO of {}",
                    rec.duration_secs,
                    format_duration(rto)
                ));
            } else if projected > rto_s {
                step.fail(format!(
                    "a full restore of {full} bytes is projected at {projected:.3}s, over the RTO of {}",
                    format_duration(rto)
                ));
            }
        }
    }
    (step, facts)
}

/// Compares the metadata of a restored entry with its snapshot node: kind, permission
/// bits (not for symlinks), and owner and group when `check_owner`. One line per
/// difference.
pub fn compare_metadata(
    rel: &str,
    node: &Node,
    md: &fs::Metadata,
    check_owner: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let ft = md.file_type();
    let kind_ok = match node.kind {
        NodeKind::File => ft.is_file(),
        NodeKind::Dir => ft.is_dir(),
        NodeKind::Symlink => ft.is_symlink(),
        NodeKind::Fifo => {
            use std::os::unix::fs::FileTypeExt;
            ft.is_fifo()
        }
        NodeKind::Socket => {
            use std::os::unix::fs::FileTypeExt;
            ft.is_socket()
        }
        NodeKind::CharDevice => {
            use std::os::unix::fs::FileTypeExt;
            ft.is_char_device()
        }
        NodeKind::BlockDevice => {
            use std::os::unix::fs::FileTypeExt;
            ft.is_block_device()
        }
    };
    if !kind_ok {
        out.push(format!(
            "{rel}: is not a {:?} as in the snapshot",
            node.kind
        ));
        return out;
    }
    if node.kind != NodeKind::Symlink && md.mode() & 0o7777 != node.mode & 0o7777 {
        out.push(format!(
            "{rel}: mode {:04o}, the snapshot has {:04o}",
            md.mode() & 0o7777,
            node.mode & 0o7777
        ));
    }
    if check_owner {
        if md.uid() != node.uid {
            out.push(format!(
                "{rel}: owner uid {}, the snapshot has {}",
                md.uid(),
                node.uid
            ));
        }
        if md.gid() != node.gid {
            out.push(format!(
                "{rel}: group gid {}, the snapshot has {}",
                md.gid(),
                node.gid
            ));
        }
    }
    out
}

/// Walks the snapshot's tree beside the restored one; every difference of kind, mode and
/// (when `check_owner`) ownership, and every entry that is missing or not in the
/// snapshot, is one line.
pub fn compare_with_snapshot(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    target: &Path,
    check_owner: bool,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut dropped = 0usize;
    compare_dir(
        repo,
        index,
        tree,
        target,
        "",
        check_owner,
        &mut diffs,
        &mut dropped,
    );
    if dropped > 0 {
        diffs.push(format!("... and {dropped} more differences"));
    }
    diffs
}

#[allow(clippy::too_many_arguments)]
fn compare_dir(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    dir: &Path,
    rel: &str,
    check_owner: bool,
    diffs: &mut Vec<String>,
    dropped: &mut usize,
) {
    let tree = match repo.load_tree(index, tree) {
        Ok(t) => t,
        Err(e) => {
            push_bounded(
                diffs,
                dropped,
                format!("{rel}/: cannot read the snapshot's listing: {e}"),
            );
            return;
        }
    };
    let mut names = HashSet::new();
    for node in &tree.nodes {
        if !node.has_safe_name() {
            continue;
        }
        names.insert(node.name.clone());
        let name = OsStr::from_bytes(&node.name);
        let path = dir.join(name);
        let r = format!("{rel}/{}", name.to_string_lossy());
        let md = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                push_bounded(
                    diffs,
                    dropped,
                    format!("{r}: missing from the restore: {e}"),
                );
                continue;
            }
        };
        for d in compare_metadata(&r, node, &md, check_owner) {
            push_bounded(diffs, dropped, d);
        }
        if node.kind == NodeKind::Dir
            && md.is_dir()
            && let Some(sub) = node.subtree
        {
            compare_dir(repo, index, &sub, &path, &r, check_owner, diffs, dropped);
        }
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if !names.contains(e.file_name().as_bytes()) {
                push_bounded(
                    diffs,
                    dropped,
                    format!(
                        "{rel}/{}: in the restore but not in the snapshot",
                        e.file_name().to_string_lossy()
                    ),
                );
            }
        }
    }
}

/// Shannon entropy of `data` in bits per byte (0 to 8).
pub fn entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Lowest entropy (bits per byte) accepted for a pack of encrypted data of at least
/// [`ENTROPY_MIN_BYTES`]; random data of 1 KiB already measures about 7.8.
pub const ENTROPY_THRESHOLD: f64 = 7.5;
pub const ENTROPY_MIN_BYTES: usize = 1024;

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}

/// Up to `n` restored regular files (path inside the snapshot, node) with at least 16
/// bytes, largest first (spread over the tree).
fn sample_files(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    target: &Path,
    n: usize,
) -> Vec<(PathBuf, Node)> {
    let mut found = Vec::new();
    let mut stack = vec![(*tree, target.to_path_buf())];
    while let Some((t, dir)) = stack.pop() {
        if found.len() > 64 * n.max(1) {
            break;
        }
        let Ok(tree) = repo.load_tree(index, &t) else {
            continue;
        };
        for node in tree.nodes {
            if !node.has_safe_name() {
                continue;
            }
            let p = dir.join(OsStr::from_bytes(&node.name));
            match node.kind {
                NodeKind::File if node.size >= 16 && !node.content.is_empty() => {
                    found.push((p, node))
                }
                NodeKind::Dir => {
                    if let Some(s) = node.subtree {
                        stack.push((s, p));
                    }
                }
                _ => {}
            }
        }
    }
    found.sort_by_key(|(_, n)| std::cmp::Reverse(n.size));
    found.truncate(n);
    found
}

#[allow(clippy::too_many_arguments)]
fn security_step(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    target: &Path,
    scratch: &Path,
    work_name: &str,
    before: &BTreeMap<Vec<u8>, (u32, u64, i64, i64)>,
    work: &Path,
    samples: usize,
) -> StepReport {
    let t = Instant::now();
    let mut step = StepReport::new(StepName::Security);

    // 1. Ownership and permissions.
    let check_owner = arca_core::fsmeta::running_as_root();
    if !check_owner {
        step.notes.push(
            "owners not compared: not running as root, so the restore cannot set them".into(),
        );
    }
    for d in compare_with_snapshot(repo, index, &snapshot.tree, target, check_owner) {
        step.fail(d);
    }

    // 2. Nothing written outside the target.
    let mut after = listing(scratch);
    after.remove(work_name.as_bytes());
    for (name, facts) in &after {
        match before.get(name) {
            None => step.fail(format!(
                "{}: appeared beside the drill during the restore (written outside the target?)",
                scratch.join(OsStr::from_bytes(name)).display()
            )),
            Some(old) if old != facts => step.fail(format!(
                "{}: changed during the restore (written outside the target?)",
                scratch.join(OsStr::from_bytes(name)).display()
            )),
            _ => {}
        }
    }
    for name in before.keys() {
        if !after.contains_key(name) && name.as_slice() != work_name.as_bytes() {
            step.fail(format!(
                "{}: disappeared during the restore",
                scratch.join(OsStr::from_bytes(name)).display()
            ));
        }
    }
    for name in listing(work).keys() {
        if name.as_slice() != b"target" {
            step.fail(format!(
                "{}: left in the drill's directory beside the target",
                work.join(OsStr::from_bytes(name)).display()
            ));
        }
    }
    let escaping = symlinks_leaving(target);
    if escaping > 0 {
        step.notes.push(format!(
            "{escaping} restored symlinks point outside the restored tree (as in the snapshot; none was followed)"
        ));
    }

    // 3. Encryption at rest: raw packs hold neither the files' first bytes nor
    // low-entropy content.
    let files = sample_files(repo, index, &snapshot.tree, target, samples);
    let mut packs: Vec<Id> = Vec::new();
    for (_, node) in &files {
        if let Some(loc) = node.content.first().and_then(|id| index.get(id))
            && !packs.contains(&loc.pack)
        {
            packs.push(loc.pack);
        }
    }
    if packs.is_empty() {
        step.notes
            .push("no file large enough to spot-check encryption at rest".into());
    }
    let mut checked = 0;
    for pack in packs.iter().take(samples.max(1)) {
        let name = pack_name(pack);
        let raw = match repo.storage().read(&name) {
            Ok(r) => r,
            Err(e) => {
                step.fail(format!("{name}: cannot read the pack raw: {e}"));
                continue;
            }
        };
        checked += 1;
        for (path, node) in &files {
            let Ok(mut f) = fs::File::open(path) else {
                continue;
            };
            let mut head = vec![0u8; node.size.min(64) as usize];
            if f.read_exact(&mut head).is_err() || head.iter().all(|&b| b == head[0]) {
                continue;
            }
            if contains(&raw, &head) {
                step.fail(format!(
                    "{name}: holds the first {} bytes of {} in plaintext",
                    head.len(),
                    path.display()
                ));
            }
        }
        if raw.len() >= ENTROPY_MIN_BYTES {
            let e = entropy(&raw);
            if e < ENTROPY_THRESHOLD {
                step.fail(format!(
                    "{name}: byte entropy {e:.2} bits/byte is below {ENTROPY_THRESHOLD} (not encrypted?)"
                ));
            }
        }
    }
    step.notes.push(format!(
        "{checked} pack files read raw: no plaintext of {} sampled files, entropy above {ENTROPY_THRESHOLD} bits/byte",
        files.len()
    ));
    step.duration_secs = t.elapsed().as_secs_f64();
    step
}

/// How many symlinks below `root` point outside it (absolute, or climbing out with `..`).
fn symlinks_leaving(root: &Path) -> usize {
    fn walk(dir: &Path, depth: usize, count: &mut usize) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.file_type().is_symlink() {
                if let Ok(t) = fs::read_link(&p) {
                    let mut level = depth as isize;
                    let mut leaves = t.is_absolute();
                    for c in t.components() {
                        match c {
                            std::path::Component::ParentDir => level -= 1,
                            std::path::Component::Normal(_) => level += 1,
                            _ => {}
                        }
                        if level < 0 {
                            leaves = true;
                        }
                    }
                    if leaves {
                        *count += 1;
                    }
                }
            } else if m.is_dir() {
                walk(&p, depth + 1, count);
            }
        }
    }
    let mut count = 0;
    walk(root, 0, &mut count);
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn durations_parse_with_milliseconds() {
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2s500ms"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(
            format_duration(Duration::from_millis(5_400_250)),
            "1h30m250ms"
        );
        assert_eq!(
            parse_duration(&format_duration(Duration::from_millis(90_061_001))),
            Ok(Duration::from_millis(90_061_001))
        );
    }

    #[test]
    fn command_timeout_kills_the_group() {
        let t = Instant::now();
        let o = run_command(
            "sleep 30 & sleep 30",
            None,
            &[],
            None,
            Duration::from_millis(300),
        );
        assert!(o.timed_out);
        assert!(!o.success());
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the pipes were held open"
        );
        assert!(o.failure_reason().contains("timed out"));
    }

    #[test]
    fn command_output_is_bounded_and_stdin_is_fed() {
        let o = run_command(
            "cat; head -c 100000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3",
            None,
            &[("ARCA_X", OsStr::new("1"))],
            Some(b"hello\n"),
            Duration::from_secs(10),
        );
        assert_eq!(o.exit_code, Some(3));
        assert!(o.truncated);
        assert!(o.stdout.len() <= OUTPUT_LIMIT);
        assert!(
            o.failure_reason().contains("code 3: oops"),
            "{}",
            o.failure_reason()
        );
        let o = run_command("cat", None, &[], Some(b"abc"), Duration::from_secs(10));
        assert_eq!(o.stdout, "abc");
        assert!(o.success());
    }

    #[test]
    fn metadata_comparison_names_mode_and_kind_differences() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let md = fs::symlink_metadata(&p).unwrap();
        let mut node = Node::new(b"f".to_vec(), NodeKind::File);
        node.mode = 0o640;
        node.uid = md.uid();
        node.gid = md.gid();
        assert!(compare_metadata("/f", &node, &md, true).is_empty());
        // Changed behind the restore's back.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        let md = fs::symlink_metadata(&p).unwrap();
        let d = compare_metadata("/f", &node, &md, true);
        assert_eq!(d, vec!["/f: mode 0666, the snapshot has 0640".to_string()]);
        node.uid = md.uid() + 1;
        let d = compare_metadata("/f", &node, &md, true);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[1].contains("owner uid"));
        assert_eq!(compare_metadata("/f", &node, &md, false).len(), 1);
        let dnode = Node::new(b"f".to_vec(), NodeKind::Dir);
        assert!(compare_metadata("/f", &dnode, &md, false)[0].contains("is not a Dir"));
    }

    #[test]
    fn entropy_tells_random_from_text() {
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(100);
        assert!(entropy(&text) < 5.0);
        let mut x = 0x1234_5678_9abc_def0u64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(entropy(&random) > ENTROPY_THRESHOLD, "{}", entropy(&random));
        assert!(contains(b"abcdef", b"cde"));
        assert!(!contains(b"abcdef", b""));
    }

    #[test]
    fn symlinks_leaving_the_tree_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../x", dir.path().join("a/up")).unwrap();
        std::os::unix::fs::symlink("../../x", dir.path().join("a/out")).unwrap();
        assert_eq!(symlinks_leaving(dir.path()), 2);
    }

    #[test]
    fn tiers_parse_and_list_steps() {
        assert_eq!("warm".parse::<Tier>(), Ok(Tier::Warm));
        assert!("tepid".parse::<Tier>().is_err());
        assert_eq!(Tier::Cold.steps().len(), 2);
        assert!(Tier::Warm.steps()[3].contains("switch"));
        let hooks: RecoveryHooks =
            serde_json::from_str(r#"{"configure":["true"],"timeout":"30s"}"#).unwrap();
        assert_eq!(hooks.timeout, Duration::from_secs(30));
        assert!(serde_json::from_str::<RecoveryHooks>(r#"{"bogus":1}"#).is_err());
    }
}
