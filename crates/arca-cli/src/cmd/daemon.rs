//! `arca daemon`, `arca job`, `arca status`, `arca history`, `arca config`: the job
//! configuration file and the scheduler that runs it. The work is in arca-daemon; this
//! module reads the arguments, prints, and maps outcomes to exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use arca_daemon::clock::{Clock, SystemClock};
use arca_daemon::config::{Config, ConfigError};
use arca_daemon::history::{History, RunRecord, RunStatus};
use arca_daemon::runner::{EventLog, RunContext, Trigger, run_job};
use arca_daemon::timing::{WindowState, format_duration};
use clap::{Args, Subcommand, ValueEnum};

use crate::cli::GlobalArgs;
use crate::common;

#[derive(Debug, Args)]
pub struct DaemonArgs {}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RunType {
    Full,
    Incremental,
    Differential,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List the configured jobs
    List,
    /// Run a job once now (the same steps as a scheduled run)
    Run {
        /// The job's name
        name: String,
        /// Backup type for this run (default: the job's rotation for today)
        #[arg(long = "type", value_enum)]
        backup_type: Option<RunType>,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only the runs of this job
    #[arg(long)]
    pub job: Option<String>,
    /// At most this many runs, newest first (0: all)
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Include each run's log (steps and hook output)
    #[arg(long)]
    pub log: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file: every problem with its file, line and reason
    Check {
        /// The file (default: --config or ARCA_CONFIG)
        file: Option<PathBuf>,
    },
}

/// Prints daemon and run events on stderr, one line each.
pub(crate) struct StderrEvents;

impl EventLog for StderrEvents {
    fn event(&self, job: Option<&str>, message: &str) {
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
        match job {
            Some(j) => eprintln!("{now} [{j}] {message}"),
            None => eprintln!("{now} {message}"),
        }
    }
}

pub(crate) fn config_path(g: &GlobalArgs) -> Result<PathBuf> {
    match &g.config {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.clone()),
        _ => bail!("no configuration file: use --config FILE or set ARCA_CONFIG"),
    }
}

pub(crate) fn load(path: &Path) -> Result<Config> {
    Config::load(path).map_err(|e| match e {
        ConfigError::Invalid { problems, .. } => anyhow::anyhow!(
            "the configuration has {} problems:\n{}",
            problems.len(),
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
        other => anyhow::Error::new(other),
    })
}

pub(crate) fn open_history(config: &Config) -> Result<History> {
    Ok(History::open(&config.daemon.state)?)
}

pub fn daemon(g: &GlobalArgs, _a: DaemonArgs) -> Result<i32> {
    let path = config_path(g)?;
    // Check first: the daemon never starts half-configured.
    load(&path)?;
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing the SIGHUP handler")?;
    let control = arca_daemon::daemon::Control {
        stop: Arc::new(common::interrupted),
        reload,
    };
    arca_daemon::daemon::run(&path, control, Arc::new(StderrEvents))?;
    Ok(crate::exit::OK)
}

fn run_exit_code(status: RunStatus) -> i32 {
    match status {
        RunStatus::Success => crate::exit::OK,
        RunStatus::Incomplete => crate::exit::INCOMPLETE,
        RunStatus::Interrupted => crate::exit::INTERRUPTED,
        _ => crate::exit::FAILURE,
    }
}

fn human_age(secs: i64) -> String {
    if secs < 0 {
        return "in the future".into();
    }
    format_duration(std::time::Duration::from_secs(secs as u64))
}

fn print_run(r: &RunRecord, with_log: bool) {
    let dur = r
        .end
        .map(|e| {
            format!(
                "{:.1}s",
                (e.as_millisecond() - r.start.as_millisecond()) as f64 / 1000.0
            )
        })
        .unwrap_or_else(|| "-".into());
    println!(
        "{:>5}  {:<12}  {:<6}  {:<12}  {:<19}  {:>7}  {:<11}  {:>6}  {:>10}  {:>10}  {}",
        r.id,
        r.job,
        r.kind,
        r.backup_type.as_deref().unwrap_or("-"),
        common::local_time(r.start),
        dur,
        r.status.as_str(),
        r.files.map_or("-".into(), |v| v.to_string()),
        r.bytes_read.map_or("-".into(), common::human_bytes),
        r.bytes_added.map_or("-".into(), common::human_bytes),
        r.snapshot_id
            .as_deref()
            .map(|s| s.chars().take(8).collect::<String>())
            .or(r.error.clone())
            .unwrap_or_default()
    );
    if with_log && !r.log.is_empty() {
        for l in r.log.lines() {
            println!("         | {l}");
        }
    }
}

pub fn job(g: &GlobalArgs, c: JobCommand) -> Result<i32> {
    let path = config_path(g)?;
    let config = load(&path)?;
    match c {
        JobCommand::List => {
            if g.json {
                let jobs: Vec<serde_json::Value> = config
                    .jobs
                    .values()
                    .map(|j| {
                        serde_json::json!({
                            "name": j.name,
                            "source": j.source,
                            "repositories": j.repositories,
                            "schedule": j.schedule_text,
                            "timezone": j.timezone,
                            "windows": j.windows,
                            "rpo_secs": j.rpo.map(|d| d.as_secs()),
                            "on_window_close": j.on_window_close,
                            "retention": j.retention,
                            "prune": j.prune.as_ref().map(|p| &p.schedule_text),
                        })
                    })
                    .collect();
                common::print_json(&jobs)?;
            } else {
                println!(
                    "{:<16}  {:<20}  {:<12}  {:<6}  {:<24}  source",
                    "job", "schedule", "window", "rpo", "repositories"
                );
                for j in config.jobs.values() {
                    println!(
                        "{:<16}  {:<20}  {:<12}  {:<6}  {:<24}  {}",
                        j.name,
                        j.schedule_text,
                        if j.windows.is_empty() {
                            "any time".to_string()
                        } else {
                            j.windows.join(",")
                        },
                        j.rpo.map_or("-".into(), format_duration),
                        j.repositories.join(","),
                        j.source.describe()
                    );
                }
            }
            Ok(crate::exit::OK)
        }
        JobCommand::Run { name, backup_type } => {
            if config.job(&name).is_none() {
                bail!(
                    "no job {name:?} in {}; configured: {}",
                    path.display(),
                    config.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            let history = open_history(&config)?;
            let _ = history.close_abandoned();
            let clock = SystemClock;
            let quiet = g.quiet || g.json;
            struct CliEvents(bool);
            impl EventLog for CliEvents {
                fn event(&self, job: Option<&str>, message: &str) {
                    if !self.0 {
                        StderrEvents.event(job, message);
                    }
                }
            }
            let events = CliEvents(quiet);
            let ctx = RunContext {
                config: &config,
                history: &history,
                clock: &clock,
                stop: &common::interrupted,
                events: &events,
            };
            let bt = backup_type.map(|t| match t {
                RunType::Full => arca_core::format::BackupType::Full,
                RunType::Incremental => arca_core::format::BackupType::Incremental,
                RunType::Differential => arca_core::format::BackupType::Differential,
            });
            let job = config.job(&name).map(|j| j.plan.clone());
            let stop_at = job.and_then(|p| p.run_must_stop_at(clock.now()));
            let rec = run_job(&ctx, &name, Trigger::Manual, bt, stop_at)?;
            if g.json {
                common::print_json(&rec)?;
            } else if !g.quiet {
                print!("{}", rec.log);
                println!(
                    "run {} of job {}: {}{}",
                    rec.id,
                    rec.job,
                    rec.status.as_str(),
                    rec.snapshot_id
                        .as_deref()
                        .map(|s| format!(", snapshot {}", &s[..s.len().min(8)]))
                        .unwrap_or_default()
                );
                if let Some(e) = &rec.error {
                    eprintln!("error: {e}");
                }
            }
            Ok(run_exit_code(rec.status))
        }
    }
}

pub fn status(g: &GlobalArgs, _a: StatusArgs) -> Result<i32> {
    let path = config_path(g)?;
    let config = load(&path)?;
    let history = open_history(&config)?;
    let _ = history.close_abandoned();
    let now = jiff::Timestamp::now();
    let all = arca_daemon::job_status::all_status(&config, &history, now)?;
    if g.json {
        common::print_json(&serde_json::json!({ "time": now, "jobs": all }))?;
        return Ok(crate::exit::OK);
    }
    for s in &all {
        println!("job {}  ({})", s.job, s.source);
        match &s.last_good {
            Some(lg) => println!(
                "  last good snapshot  {} at {} ({} ago){}",
                &lg.snapshot_id[..lg.snapshot_id.len().min(8)],
                common::local_time(lg.time),
                human_age(lg.age_secs),
                match (s.rpo_ok, s.rpo_secs) {
                    (Some(true), Some(r)) => format!(", within the RPO of {}", human_age(r as i64)),
                    (Some(false), Some(r)) => format!(", RPO of {} BREACHED", human_age(r as i64)),
                    _ => String::new(),
                }
            ),
            None => println!(
                "  last good snapshot  none{}",
                if s.rpo_ok == Some(false) {
                    ", RPO BREACHED"
                } else {
                    ""
                }
            ),
        }
        if s.running {
            println!("  running now");
        }
        match s.next_run {
            Some(t) => println!("  next run            {}", common::local_time(t)),
            None => println!("  next run            -"),
        }
        let window = match s.window {
            WindowState::Always => "any time".to_string(),
            WindowState::Open { closes_at } => format!(
                "open{}",
                closes_at
                    .map(|t| format!(" until {}", common::local_time(t)))
                    .unwrap_or_default()
            ),
            WindowState::Closed { opens_at } => format!(
                "closed{}",
                opens_at
                    .map(|t| format!(", opens {}", common::local_time(t)))
                    .unwrap_or_default()
            ),
            WindowState::Excluded { until } => {
                format!("exclusion period until {}", common::local_time(until))
            }
        };
        println!("  window              {window}");
        match &s.three_two_one {
            Some(t) => println!(
                "  3-2-1               {} copies, {} media, {} offsite: {}",
                t.copies,
                t.media,
                t.offsite,
                if t.ok { "met" } else { "NOT met" }
            ),
            None => println!("  3-2-1               unknown (no good run yet)"),
        }
        if let Some(e) = &s.last_error {
            println!("  last error          {e}");
        }
    }
    Ok(crate::exit::OK)
}

pub fn history(g: &GlobalArgs, a: HistoryArgs) -> Result<i32> {
    let path = config_path(g)?;
    let config = load(&path)?;
    let history = open_history(&config)?;
    let runs = history.runs(a.job.as_deref(), a.limit)?;
    if g.json {
        common::print_json(&runs)?;
        return Ok(crate::exit::OK);
    }
    println!(
        "{:>5}  {:<12}  {:<6}  {:<12}  {:<19}  {:>7}  {:<11}  {:>6}  {:>10}  {:>10}  snapshot/error",
        "id", "job", "kind", "type", "start", "took", "status", "files", "read", "added"
    );
    for r in &runs {
        print_run(r, a.log);
    }
    Ok(crate::exit::OK)
}

pub fn config(g: &GlobalArgs, c: ConfigCommand) -> Result<i32> {
    match c {
        ConfigCommand::Check { file } => {
            let path = match file {
                Some(f) => f,
                None => config_path(g)?,
            };
            match Config::load(&path) {
                Ok(cfg) => {
                    if g.json {
                        common::print_json(&serde_json::json!({
                            "ok": true,
                            "file": path,
                            "repositories": cfg.repositories.keys().collect::<Vec<_>>(),
                            "jobs": cfg.jobs.keys().collect::<Vec<_>>(),
                        }))?;
                    } else if !g.quiet {
                        println!(
                            "{}: ok ({} repositories, {} jobs)",
                            path.display(),
                            cfg.repositories.len(),
                            cfg.jobs.len()
                        );
                    }
                    Ok(crate::exit::OK)
                }
                Err(ConfigError::Invalid { problems, .. }) => {
                    if g.json {
                        common::print_json(&serde_json::json!({
                            "ok": false,
                            "file": path,
                            "problems": problems,
                        }))?;
                    } else {
                        for p in &problems {
                            eprintln!("{p}");
                        }
                        eprintln!("{}: {} problems", path.display(), problems.len());
                    }
                    Ok(crate::exit::FAILURE)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}
