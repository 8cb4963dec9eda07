//! The configuration file (TOML): daemon settings, repositories and jobs.
//!
//! Loading is two steps. Parsing keeps the byte span of every value, and each section
//! (`[daemon]`, every repository, every job) is deserialized on its own with
//! `deny_unknown_fields`, so one bad job does not hide the problems of the next. Checking
//! then validates every value (cron expressions, windows, time zones, durations, password
//! sources, repository references) and collects every problem with its line and column.
//! A [`Config`] exists only when there is no problem at all: the daemon never starts
//! half-configured. docs/CONFIG.md is the reference of every key.

mod check;
mod job;
mod raw;

use check::*;
use raw::*;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arca_core::format::BackupType;
use arca_core::retention::{RetentionPolicy, parse_duration as parse_keep_within};
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::timing::{
    DaySpec, Exclusion, JobPlan, Rotation, Schedule, Window, first_instant_at_or_after,
    parse_duration,
};

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (e.g. the file is empty).
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.reason
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.reason)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

// ---------------------------------------------------------------------------------------
// The checked configuration

/// Where a repository's password comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSource {
    File(PathBuf),
    Command(String),
    Env(String),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RepositoryConfig {
    pub name: String,
    pub location: String,
    pub password: PasswordSource,
    /// How long a password command may run before it is killed (default 60 s).
    pub password_command_timeout: Duration,
    /// A free label (`disk`, `s3`, `tape`, ...): the 3-2-1 rule counts distinct labels.
    pub media: String,
    pub offsite: bool,
    pub connections: Option<usize>,
    pub upload_limit_kib: Option<u64>,
    pub download_limit_kib: Option<u64>,
    /// Refuse deletes from this host (`append_only = true`), as `--append-only` does.
    pub append_only: bool,
    /// Whether runs keep a local cache of an object store (`cache = false` turns it off).
    pub cache: bool,
    /// Where the cache lives (else `ARCA_CACHE_DIR`, `$XDG_CACHE_HOME/arca`, `~/.cache/arca`).
    pub cache_dir: Option<PathBuf>,
    /// How long a run waits for another process's conflicting lock (default 2 minutes).
    #[serde(with = "arca_core::units::elapsed_str")]
    pub lock_wait: Duration,
}

/// How long a run waits for a conflicting repository lock when the config does not say.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(120);

/// What a job backs up.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Paths {
        paths: Vec<PathBuf>,
        exclude: Vec<String>,
        exclude_if_present: Vec<String>,
        one_file_system: bool,
    },
    /// A shell command whose standard output is stored as one file.
    Command { command: String, filename: String },
    /// A logical dump of one PostgreSQL database (arca-db: pg_dump, like `arca pg dump`).
    Postgres {
        /// A URI, a `key=value` connection string or a database name.
        #[serde(serialize_with = "serialize_redacted")]
        dbname: String,
        format: PgFormat,
        jobs: usize,
        bindir: Option<PathBuf>,
    },
    /// A logical dump of MySQL/MariaDB databases (arca-db: like `arca mysql dump`).
    Mysql {
        databases: Vec<String>,
        all_databases: bool,
        host: Option<String>,
        port: Option<u16>,
        socket: Option<PathBuf>,
        user: Option<String>,
        password_env: Option<String>,
        defaults_file: Option<PathBuf>,
        options: Vec<String>,
    },
}

/// pg_dump's output format for a PostgreSQL source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PgFormat {
    Custom,
    Plain,
    Directory,
}

fn serialize_redacted<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_dbname(v))
}

/// A connection string for messages: passwords hidden.
pub fn redact_dbname(s: &str) -> String {
    let mut out = s.to_string();
    if let Some(scheme) = out.find("://") {
        let rest = scheme + 3;
        if let Some(at) = out[rest..].find('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    out.split(' ')
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Paths { paths, .. } => paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Source::Command { command, .. } => format!("command: {command}"),
            Source::Postgres { dbname, .. } => format!("postgres: {}", redact_dbname(dbname)),
            Source::Mysql {
                databases,
                all_databases,
                ..
            } => {
                if *all_databases {
                    "mysql: all databases".into()
                } else {
                    format!("mysql: {}", databases.join(", "))
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnWindowClose {
    /// The run goes on until it is done.
    Finish,
    /// The run stops at a checkpoint: no snapshot, stored data reused next time.
    Stop,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Hooks {
    pub pre: Vec<String>,
    pub post: Vec<String>,
    pub failure: Vec<String>,
    pub timeout: Duration,
}

/// I/O scheduling class for ionice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IoPriority {
    Idle,
    BestEffort(u8),
    Realtime(u8),
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Limits {
    pub nice: Option<i32>,
    pub ionice: Option<IoPriority>,
    pub threads: Option<usize>,
    pub connections: Option<usize>,
    pub upload_limit_kib: Option<u64>,
    pub download_limit_kib: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneConfig {
    #[serde(skip)]
    pub schedule: Schedule,
    pub schedule_text: String,
    pub max_unused: arca_core::prune::MaxUnused,
}

/// A job's restore drill (`[jobs.NAME.drill]`), also the recovery plan `arca recover` uses.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillConfig {
    /// When drills run (the daemon); `None`: only on request.
    #[serde(skip)]
    pub schedule: Option<Schedule>,
    pub schedule_text: Option<String>,
    /// Which snapshot to drill ("latest" unless set).
    pub snapshot: String,
    pub checks: Vec<arca_ops::drill::CheckCommand>,
    pub tier: arca_ops::drill::Tier,
    /// Scratch space for drills (a private directory under $TMPDIR when not set).
    pub scratch: Option<PathBuf>,
    /// Where `arca recover JOB` restores to when no target is given.
    pub target: Option<PathBuf>,
    pub hooks: arca_ops::drill::RecoveryHooks,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobConfig {
    pub name: String,
    pub source: Source,
    /// The first is the primary; the others receive copies.
    pub repositories: Vec<String>,
    pub schedule_text: String,
    #[serde(skip)]
    pub plan: Arc<JobPlan>,
    pub timezone: String,
    pub windows: Vec<String>,
    pub rpo: Option<Duration>,
    /// Recovery time objective: drills measure restores against it.
    pub rto: Option<Duration>,
    pub on_window_close: OnWindowClose,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub checksum: bool,
    pub retention: Option<RetentionPolicy>,
    pub prune: Option<PruneConfig>,
    pub hooks: Hooks,
    pub limits: Limits,
    /// The alert rules for this job: `[alerts]` merged with the job's overrides.
    pub alerts: crate::alerts::RuleSettings,
    /// Channels its alerts go to (names of `[channels.NAME]`).
    pub channels: Vec<String>,
    pub drill: Option<DrillConfig>,
}

impl JobConfig {
    /// The tag every snapshot of this job carries; retention and copies select by it.
    pub fn job_tag(&self) -> String {
        format!("job:{}", self.name)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DaemonSettings {
    pub listen: Option<std::net::SocketAddr>,
    /// The SQLite run history.
    pub state: PathBuf,
    pub timezone: String,
    pub nice: Option<i32>,
    pub ionice: Option<IoPriority>,
    /// At most this many runs at once (`None`: every due job starts).
    pub max_concurrent_runs: Option<usize>,
    /// The token the web server asks for (`Authorization: Bearer TOKEN`, or the login
    /// form); required when `listen` is not a loopback address.
    #[serde(skip)]
    pub token: Option<String>,
    /// `token_file`, resolved: the web server reads it again on every request, so that
    /// writing a new token into it ends every session made with the old one.
    pub token_file: Option<PathBuf>,
    /// A dashboard login session unused for this long ends (`session_idle`, 30 minutes).
    pub session_idle: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: DaemonSettings,
    pub repositories: BTreeMap<String, RepositoryConfig>,
    pub jobs: BTreeMap<String, JobConfig>,
    /// Alert channels by name (`[channels.NAME]`); secrets are never shown.
    #[serde(skip)]
    pub channels: BTreeMap<String, crate::notify::ChannelConfig>,
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text, &|k| std::env::var(k).ok())
    }

    /// Checks `text` as the contents of `path`; `env` answers for environment variables
    /// (password_env).
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut c = Checker {
            text,
            path,
            base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            problems: Vec::new(),
            env,
            alerts: Default::default(),
            default_channels: Vec::new(),
            channel_names: Vec::new(),
        };
        let config = c.check();
        if !c.problems.is_empty() || config.is_none() {
            let mut problems: Vec<Problem> = c.problems.clone();
            problems.sort_by_key(|p| (p.line, p.column));
            problems.dedup();
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            });
        }
        config.ok_or_else(|| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: Vec::new(),
        })
    }

    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.get(name)
    }
}

/// The default history file when `[daemon] state` is not set.
pub fn default_state_path() -> PathBuf {
    if let Ok(d) = std::env::var("XDG_STATE_HOME")
        && !d.is_empty()
    {
        return PathBuf::from(d).join("arca/state.db");
    }
    match std::env::var("HOME") {
        Ok(h) if !h.is_empty() => PathBuf::from(h).join(".local/state/arca/state.db"),
        _ => PathBuf::from("/var/lib/arca/state.db"),
    }
}

/// Quotes `s` for `sh -c`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests;
