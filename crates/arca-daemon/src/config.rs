//! The configuration file (TOML): daemon settings, repositories and jobs.
//!
//! Loading is two steps. Parsing keeps the byte span of every value, and each section
//! (`[daemon]`, every repository, every job) is deserialized on its own with
//! `deny_unknown_fields`, so one bad job does not hide the problems of the next. Checking
//! then validates every value (cron expressions, windows, time zones, durations, password
//! sources, repository references) and collects every problem with its line and column.
//! A [`Config`] exists only when there is no problem at all: the daemon never starts
//! half-configured. docs/CONFIG.md is the reference of every key.

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

use crate::schedule::{
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
// The file as written

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    listen: Option<Spanned<String>>,
    state: Option<String>,
    timezone: Option<Spanned<String>>,
    nice: Option<Spanned<i32>>,
    ionice: Option<Spanned<String>>,
    max_concurrent_runs: Option<Spanned<usize>>,
    token_file: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    location: Spanned<String>,
    password_file: Option<Spanned<String>>,
    password_command: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_command_timeout: Option<Spanned<String>>,
    media: Option<String>,
    #[serde(default)]
    offsite: bool,
    connections: Option<Spanned<usize>>,
    upload_limit_kib: Option<u64>,
    download_limit_kib: Option<u64>,
}

/// A string or a list of strings (`window = "22:00-06:00"` or `window = ["..", ".."]`).
#[derive(Debug)]
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExclusion {
    from: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    #[serde(default)]
    full: Vec<Spanned<String>>,
    #[serde(default)]
    differential: Vec<Spanned<String>>,
    #[serde(default)]
    incremental: Vec<Spanned<String>>,
    default: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<Spanned<i64>>,
    keep_hourly: Option<Spanned<i64>>,
    keep_daily: Option<Spanned<i64>>,
    keep_weekly: Option<Spanned<i64>>,
    keep_monthly: Option<Spanned<i64>>,
    keep_yearly: Option<Spanned<i64>>,
    keep_within: Option<Spanned<String>>,
    keep_within_hourly: Option<Spanned<String>>,
    keep_within_daily: Option<Spanned<String>>,
    keep_within_weekly: Option<Spanned<String>>,
    keep_within_monthly: Option<Spanned<String>>,
    keep_within_yearly: Option<Spanned<String>>,
    #[serde(default)]
    keep_tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrune {
    schedule: Spanned<String>,
    max_unused: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    #[serde(default)]
    pre: Vec<String>,
    #[serde(default)]
    post: Vec<String>,
    #[serde(default)]
    failure: Vec<String>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    nice: Option<Spanned<i32>>,
    ionice: Option<Spanned<String>>,
    threads: Option<Spanned<usize>>,
    connections: Option<Spanned<usize>>,
    upload_limit_kib: Option<u64>,
    download_limit_kib: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    dbname: Spanned<String>,
    format: Option<Spanned<String>>,
    jobs: Option<usize>,
    bindir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMysql {
    #[serde(default)]
    databases: Vec<String>,
    #[serde(default)]
    all_databases: bool,
    host: Option<String>,
    port: Option<u16>,
    socket: Option<String>,
    user: Option<String>,
    password_env: Option<Spanned<String>>,
    defaults_file: Option<String>,
    #[serde(default)]
    options: Vec<String>,
}

/// `[alerts]` (defaults for every job) and `[jobs.NAME.alerts]` (overrides).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    channels: Option<Vec<Spanned<String>>>,
    run_failed: Option<bool>,
    run_late: Option<bool>,
    late_after: Option<Spanned<String>>,
    window_missed: Option<bool>,
    rpo_breached: Option<bool>,
    drill_failed: Option<bool>,
    rto_exceeded: Option<bool>,
    storage_full: Option<bool>,
    storage_percent: Option<Spanned<f64>>,
    repeat: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDrill {
    schedule: Option<Spanned<String>>,
    snapshot: Option<String>,
    #[serde(default)]
    checks: Vec<String>,
    check_timeout: Option<Spanned<String>>,
    tier: Option<Spanned<String>>,
    scratch: Option<String>,
    target: Option<String>,
    #[serde(default)]
    provision: Vec<String>,
    #[serde(default)]
    configure: Vec<String>,
    #[serde(default)]
    start: Vec<String>,
    hook_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    sources: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    exclude_if_present: Vec<String>,
    #[serde(default)]
    one_file_system: bool,
    command: Option<Spanned<String>>,
    command_filename: Option<String>,
    postgres: Option<Spanned<RawPostgres>>,
    mysql: Option<Spanned<RawMysql>>,
    repositories: Option<Spanned<Vec<Spanned<String>>>>,
    schedule: Option<Spanned<String>>,
    rpo: Option<Spanned<String>>,
    rto: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    window: Option<Spanned<OneOrMany>>,
    on_window_close: Option<Spanned<String>>,
    #[serde(default)]
    exclusions: Vec<Spanned<RawExclusion>>,
    #[serde(default)]
    tags: Vec<String>,
    host: Option<String>,
    #[serde(default)]
    checksum: bool,
    rotation: Option<RawRotation>,
    retention: Option<RawRetention>,
    prune: Option<RawPrune>,
    hooks: Option<RawHooks>,
    limits: Option<RawLimits>,
    alerts: Option<RawAlerts>,
    drill: Option<RawDrill>,
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
}

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
    pub checks: Vec<crate::drill::CheckCommand>,
    pub tier: crate::drill::Tier,
    /// Scratch space for drills (a private directory under $TMPDIR when not set).
    pub scratch: Option<PathBuf>,
    /// Where `arca recover JOB` restores to when no target is given.
    pub target: Option<PathBuf>,
    pub hooks: crate::drill::RecoveryHooks,
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

struct Checker<'a> {
    text: &'a str,
    path: &'a Path,
    base: PathBuf,
    problems: Vec<Problem>,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// `[alerts]`, checked before the jobs (which merge it).
    alerts: crate::alerts::RuleSettings,
    /// Channels of `[alerts] channels` (every job's, unless the job names its own).
    default_channels: Vec<String>,
    /// Names of the `[channels.NAME]` sections.
    channel_names: Vec<String>,
}

fn parse_ionice(s: &str) -> Result<IoPriority, String> {
    let t = s.trim();
    let (class, level) = match t.split_once(':') {
        Some((c, l)) => (c, Some(l)),
        None => (t, None),
    };
    let level = match level {
        None => 4,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= 7 => n,
            _ => {
                return Err(format!(
                    "invalid ionice level in {t:?}: use 0 (highest) to 7"
                ));
            }
        },
    };
    match class {
        "idle" => Ok(IoPriority::Idle),
        "best-effort" => Ok(IoPriority::BestEffort(level)),
        "realtime" => Ok(IoPriority::Realtime(level)),
        _ => Err(format!(
            "invalid ionice {t:?}: use \"idle\", \"best-effort[:0-7]\" or \"realtime[:0-7]\""
        )),
    }
}

fn parse_backup_type(s: &str) -> Result<BackupType, String> {
    match s.trim() {
        "full" => Ok(BackupType::Full),
        "incremental" => Ok(BackupType::Incremental),
        "differential" => Ok(BackupType::Differential),
        other => Err(format!(
            "invalid backup type {other:?}: use full, incremental or differential"
        )),
    }
}

fn parse_max_unused(s: &str) -> Result<arca_core::prune::MaxUnused, String> {
    use arca_core::prune::MaxUnused;
    let t = s.trim();
    if t == "unlimited" {
        return Ok(MaxUnused::Unlimited);
    }
    if let Some(p) = t.strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(MaxUnused::Percent(v)),
            _ => Err(format!("invalid max_unused {t:?}: a percentage 0-100%")),
        };
    }
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .map(|n| MaxUnused::Bytes(n.saturating_mul(mult)))
        .map_err(|_| {
            format!("invalid max_unused {t:?}: use a percentage (5%), a size (100M) or unlimited")
        })
}

impl Checker<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn problem(&mut self, span: Option<Range<usize>>, reason: impl Into<String>) {
        let (line, column) = match span {
            Some(r) => self.position(r.start),
            None => (0, 0),
        };
        self.problems.push(Problem {
            file: self.path.to_path_buf(),
            line,
            column,
            reason: reason.into(),
        });
    }

    fn at<T>(&mut self, s: &Spanned<T>, reason: impl Into<String>) {
        self.problem(Some(s.span()), reason);
    }

    fn de<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let mut owned = value.clone();
        owned.get_mut().make_owned();
        match T::deserialize(ValueDeserializer::from(owned)) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().or(Some(value.span()));
                let msg = e.message().trim().to_string();
                self.problem(span, format!("{what}: {msg}"));
                None
            }
        }
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn timezone(&mut self, tz: Option<&Spanned<String>>, default: &str) -> (TimeZone, String) {
        match tz {
            Some(s) => match TimeZone::get(s.get_ref()) {
                Ok(z) => (z, s.get_ref().clone()),
                Err(e) => {
                    self.at(s, format!("unknown time zone {:?}: {e}", s.get_ref()));
                    (TimeZone::UTC, "UTC".into())
                }
            },
            None if default.is_empty() => {
                let tz = TimeZone::try_system().unwrap_or(TimeZone::UTC);
                let name = tz.iana_name().unwrap_or("system").to_string();
                (tz, name)
            }
            None => (
                TimeZone::get(default).unwrap_or(TimeZone::UTC),
                default.to_string(),
            ),
        }
    }

    fn duration(&mut self, s: &Spanned<String>, key: &str) -> Option<Duration> {
        match parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(s, format!("{key}: {e}"));
                None
            }
        }
    }

    fn check(&mut self) -> Option<Config> {
        let doc = match DeTable::parse(self.text) {
            Ok(d) => d,
            Err(e) => {
                let span = e.span();
                let msg = format!("invalid TOML: {}", e.message().trim());
                self.problem(span, msg);
                return None;
            }
        };
        let mut daemon_raw = RawDaemon::default();
        let mut repo_values = Vec::new();
        let mut job_values = Vec::new();
        let mut alerts_value = None;
        let mut channel_values = Vec::new();
        for (k, v) in doc.get_ref().iter() {
            match k.get_ref().as_ref() {
                "daemon" => {
                    if let Some(d) = self.de::<RawDaemon>("[daemon]", v) {
                        daemon_raw = d;
                    }
                }
                "repositories" => match v.get_ref().as_table() {
                    Some(t) => {
                        for (name, rv) in t.iter() {
                            repo_values.push((name.get_ref().to_string(), name.span(), rv));
                        }
                    }
                    None => self.problem(
                        Some(v.span()),
                        "repositories must be a table of [repositories.NAME] sections",
                    ),
                },
                "alerts" => alerts_value = Some(v),
                "channels" => match v.get_ref().as_table() {
                    Some(t) => {
                        for (name, cv) in t.iter() {
                            channel_values.push((name.get_ref().to_string(), name.span(), cv));
                        }
                    }
                    None => self.problem(
                        Some(v.span()),
                        "channels must be a table of [channels.NAME] sections",
                    ),
                },
                "jobs" => match v.get_ref().as_table() {
                    Some(t) => {
                        for (name, jv) in t.iter() {
                            job_values.push((name.get_ref().to_string(), name.span(), jv));
                        }
                    }
                    None => self.problem(
                        Some(v.span()),
                        "jobs must be a table of [jobs.NAME] sections",
                    ),
                },
                other => self.problem(
                    Some(k.span()),
                    format!(
                        "unknown key {other:?} at the top level: expected [daemon], [repositories.NAME], [jobs.NAME], [alerts] or [channels.NAME]"
                    ),
                ),
            }
        }

        // [daemon]
        let listen = daemon_raw.listen.as_ref().and_then(|l| {
            match l.get_ref().parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.at(
                        l,
                        format!(
                            "listen: {:?} is not an address:port such as \"127.0.0.1:9898\"",
                            l.get_ref()
                        ),
                    );
                    None
                }
            }
        });
        // Empty: the system's zone, looked up again by each job.
        let daemon_tz = match &daemon_raw.timezone {
            Some(_) => self.timezone(daemon_raw.timezone.as_ref(), "").1,
            None => String::new(),
        };
        let daemon_nice = daemon_raw.nice.as_ref().and_then(|n| {
            if (-20..=19).contains(n.get_ref()) {
                Some(*n.get_ref())
            } else {
                self.at(n, "nice: use -20 (highest priority) to 19 (lowest)");
                None
            }
        });
        let daemon_ionice =
            daemon_raw
                .ionice
                .as_ref()
                .and_then(|s| match parse_ionice(s.get_ref()) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.at(s, e);
                        None
                    }
                });
        let token = match (&daemon_raw.token_file, &daemon_raw.token_env) {
            (Some(f), Some(_)) => {
                self.at(f, "[daemon] takes token_file or token_env, not both");
                None
            }
            (Some(f), None) => {
                let path = self.resolve_path(f.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                    Ok(_) => {
                        self.at(f, format!("token_file {} is empty", path.display()));
                        None
                    }
                    Err(e) => {
                        self.at(f, format!("token_file {}: {e}", path.display()));
                        None
                    }
                }
            }
            (None, Some(v)) => match (self.env)(v.get_ref()) {
                Some(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                _ => {
                    self.at(
                        v,
                        format!("token_env: the variable {} is not set", v.get_ref()),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        if let (Some(addr), None) = (listen, &token)
            && !addr.ip().is_loopback()
            && let Some(l) = &daemon_raw.listen
        {
            self.at(
                l,
                format!(
                    "listen: {addr} is not a loopback address, so the dashboard needs a token: \
                     set [daemon] token_file or token_env"
                ),
            );
        }
        let daemon = DaemonSettings {
            listen,
            token,
            state: daemon_raw
                .state
                .as_deref()
                .map(|s| self.resolve_path(s))
                .unwrap_or_else(default_state_path),
            timezone: daemon_tz.clone(),
            nice: daemon_nice,
            ionice: daemon_ionice,
            max_concurrent_runs: daemon_raw.max_concurrent_runs.as_ref().and_then(|n| {
                if *n.get_ref() == 0 {
                    self.at(n, "[daemon] max_concurrent_runs must be at least 1");
                    None
                } else {
                    Some(*n.get_ref())
                }
            }),
        };

        // [repositories.NAME]
        let mut repositories = BTreeMap::new();
        let mut known_repos = Vec::new();
        for (name, name_span, v) in repo_values {
            known_repos.push(name.clone());
            let what = format!("[repositories.{name}]");
            let Some(r) = self.de::<RawRepository>(&what, v) else {
                continue;
            };
            if let Err(e) = arca_storage::parse_location(r.location.get_ref()) {
                self.at(&r.location, format!("{what} location: {e}"));
            }
            let sources = [
                r.password_file.is_some(),
                r.password_command.is_some(),
                r.password_env.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            let password = if sources == 0 {
                self.problem(
                    Some(name_span.clone()),
                    format!(
                        "{what} has no password source: set password_file, password_command or password_env"
                    ),
                );
                None
            } else if sources > 1 {
                self.problem(
                    Some(name_span.clone()),
                    format!(
                        "{what} has more than one password source: keep one of password_file, password_command, password_env"
                    ),
                );
                None
            } else if let Some(f) = &r.password_file {
                let p = self.resolve_path(f.get_ref());
                if !p.is_file() {
                    self.at(
                        f,
                        format!("{what} password_file {} does not exist", p.display()),
                    );
                }
                Some(PasswordSource::File(p))
            } else if let Some(c) = &r.password_command {
                if c.get_ref().trim().is_empty() {
                    self.at(c, format!("{what} password_command is empty"));
                }
                Some(PasswordSource::Command(c.get_ref().clone()))
            } else if let Some(e) = &r.password_env {
                if (self.env)(e.get_ref()).is_none_or(|v| v.is_empty()) {
                    self.at(
                        e,
                        format!(
                            "{what} password_env: the environment variable {} is not set",
                            e.get_ref()
                        ),
                    );
                }
                Some(PasswordSource::Env(e.get_ref().clone()))
            } else {
                None
            };
            if let Some(c) = &r.connections
                && *c.get_ref() == 0
            {
                self.at(c, format!("{what} connections must be at least 1"));
            }
            let password_command_timeout = r
                .password_command_timeout
                .as_ref()
                .and_then(|t| self.duration(t, &format!("{what} password_command_timeout")))
                .unwrap_or(Duration::from_secs(60));
            if let Some(password) = password {
                repositories.insert(
                    name.clone(),
                    RepositoryConfig {
                        name: name.clone(),
                        location: r.location.get_ref().clone(),
                        password,
                        password_command_timeout,
                        media: r.media.clone().unwrap_or_else(|| "disk".into()),
                        offsite: r.offsite,
                        connections: r.connections.map(|c| c.into_inner()),
                        upload_limit_kib: r.upload_limit_kib,
                        download_limit_kib: r.download_limit_kib,
                    },
                );
            }
        }

        // [channels.NAME]
        let mut channels = BTreeMap::new();
        for (name, name_span, v) in channel_values {
            let what = format!("[channels.{name}]");
            self.channel_names.push(name.clone());
            let Some(c) = self.de::<crate::notify::ChannelConfig>(&what, v) else {
                continue;
            };
            for p in crate::notify::channel_problems(&c, self.env) {
                self.problem(Some(name_span.clone()), format!("{what}: {p}"));
            }
            channels.insert(name, c);
        }

        // [alerts]
        if let Some(v) = alerts_value
            && let Some(raw) = self.de::<RawAlerts>("[alerts]", v)
        {
            let (rules, chans) = self.alert_settings("[alerts]", &raw);
            self.alerts = rules;
            self.default_channels = chans.unwrap_or_default();
        }

        // [jobs.NAME]
        let mut jobs = BTreeMap::new();
        for (name, name_span, v) in job_values {
            let what = format!("[jobs.{name}]");
            let Some(j) = self.de::<RawJob>(&what, v) else {
                continue;
            };
            if let Some(job) = self.job(&name, name_span, j, &known_repos, &daemon_tz) {
                jobs.insert(name, job);
            }
        }
        if !self.problems.is_empty() {
            return None;
        }
        Some(Config {
            path: self.path.to_path_buf(),
            daemon,
            repositories,
            jobs,
            channels,
        })
    }

    /// Checks an `[alerts]`-shaped table: the rule settings and the channel names it lists.
    fn alert_settings(
        &mut self,
        what: &str,
        raw: &RawAlerts,
    ) -> (crate::alerts::RuleSettings, Option<Vec<String>>) {
        let late_after = raw
            .late_after
            .as_ref()
            .and_then(|d| self.duration(d, &format!("{what} late_after")));
        let repeat = raw
            .repeat
            .as_ref()
            .and_then(|d| self.duration(d, &format!("{what} repeat")));
        let rules = crate::alerts::RuleSettings {
            run_failed: raw.run_failed,
            run_late: raw.run_late,
            late_after,
            window_missed: raw.window_missed,
            rpo_breached: raw.rpo_breached,
            drill_failed: raw.drill_failed,
            rto_exceeded: raw.rto_exceeded,
            storage_full: raw.storage_full,
            storage_percent: raw.storage_percent.as_ref().map(|p| *p.get_ref()),
            repeat,
        };
        for p in rules.problems() {
            let span = if p.starts_with("storage_percent") {
                raw.storage_percent.as_ref().map(|s| s.span())
            } else {
                raw.repeat.as_ref().map(|s| s.span())
            };
            self.problem(span, format!("{what} {p}"));
        }
        let channels = raw.channels.as_ref().map(|list| {
            let mut out = Vec::new();
            for c in list {
                if !self.channel_names.contains(c.get_ref()) {
                    self.at(
                        c,
                        format!(
                            "{what} channels: no [channels.{}] section (known: {})",
                            c.get_ref(),
                            if self.channel_names.is_empty() {
                                "none".to_string()
                            } else {
                                self.channel_names.join(", ")
                            }
                        ),
                    );
                }
                out.push(c.get_ref().clone());
            }
            out
        });
        (rules, channels)
    }

    fn job(
        &mut self,
        name: &str,
        name_span: Range<usize>,
        j: RawJob,
        known_repos: &[String],
        daemon_tz: &str,
    ) -> Option<JobConfig> {
        let what = format!("[jobs.{name}]");
        let before = self.problems.len();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ',') {
            self.problem(
                Some(name_span.clone()),
                format!("job name {name:?}: use letters, digits, '-' or '_'"),
            );
        }

        // Source: exactly one kind.
        let kinds = [
            j.sources.is_some(),
            j.command.is_some(),
            j.postgres.is_some(),
            j.mysql.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        let mut source = None;
        if kinds == 0 {
            self.problem(
                Some(name_span.clone()),
                format!("{what} has no source: set sources, command, postgres or mysql"),
            );
        } else if kinds > 1 {
            self.problem(
                Some(name_span.clone()),
                format!(
                    "{what} has more than one kind of source: one job backs up either sources, a command, postgres or mysql"
                ),
            );
        } else if let Some(s) = &j.sources {
            if s.get_ref().is_empty() {
                self.at(s, format!("{what} sources is empty"));
            }
            let mut paths = Vec::new();
            for p in s.get_ref() {
                if !Path::new(p.get_ref()).is_absolute() {
                    self.at(
                        p,
                        format!("{what} source {:?} is not an absolute path", p.get_ref()),
                    );
                }
                paths.push(PathBuf::from(p.get_ref()));
            }
            if let Err(e) = arca_core::backup::Excludes::new(&j.exclude, &j.exclude_if_present) {
                self.problem(Some(name_span.clone()), format!("{what} exclude: {e}"));
            }
            source = Some(Source::Paths {
                paths,
                exclude: j.exclude.clone(),
                exclude_if_present: j.exclude_if_present.clone(),
                one_file_system: j.one_file_system,
            });
        } else if let Some(c) = &j.command {
            if c.get_ref().trim().is_empty() {
                self.at(c, format!("{what} command is empty"));
            }
            source = Some(Source::Command {
                command: c.get_ref().clone(),
                filename: j
                    .command_filename
                    .clone()
                    .unwrap_or_else(|| format!("{name}.out")),
            });
        } else if let Some(pg) = &j.postgres {
            let p = pg.get_ref();
            if p.dbname.get_ref().trim().is_empty() {
                self.at(&p.dbname, format!("{what} postgres dbname is empty"));
            }
            let format = match p.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
                None | Some((_, "custom")) => PgFormat::Custom,
                Some((_, "plain")) => PgFormat::Plain,
                Some((_, "directory")) => PgFormat::Directory,
                Some((f, other)) => {
                    self.at(
                        f,
                        format!("{what} postgres format {other:?}: use custom, plain or directory"),
                    );
                    PgFormat::Custom
                }
            };
            source = Some(Source::Postgres {
                dbname: p.dbname.get_ref().clone(),
                format,
                jobs: p.jobs.unwrap_or(1).max(1),
                bindir: p.bindir.as_deref().map(|b| self.resolve_path(b)),
            });
        } else if let Some(my) = &j.mysql {
            let m = my.get_ref();
            if m.databases.is_empty() != m.all_databases {
                self.at(
                    my,
                    format!(
                        "{what} mysql: set either databases = [\"DB\", ...] or all_databases = true"
                    ),
                );
            }
            if let Some(e) = &m.password_env
                && (self.env)(e.get_ref()).is_none()
            {
                self.at(
                    e,
                    format!(
                        "{what} mysql password_env: the environment variable {} is not set",
                        e.get_ref()
                    ),
                );
            }
            source = Some(Source::Mysql {
                databases: m.databases.clone(),
                all_databases: m.all_databases,
                host: m.host.clone(),
                port: m.port,
                socket: m.socket.as_deref().map(PathBuf::from),
                user: m.user.clone(),
                password_env: m.password_env.as_ref().map(|e| e.get_ref().clone()),
                defaults_file: m.defaults_file.as_deref().map(|f| self.resolve_path(f)),
                options: m.options.clone(),
            });
        }

        // Repositories.
        let mut repositories = Vec::new();
        match &j.repositories {
            None => self.problem(
                Some(name_span.clone()),
                format!("{what} has no repositories: set repositories = [\"NAME\", ...]"),
            ),
            Some(list) if list.get_ref().is_empty() => {
                self.at(list, format!("{what} repositories is empty"))
            }
            Some(list) => {
                for r in list.get_ref() {
                    if !known_repos.contains(r.get_ref()) {
                        self.at(
                            r,
                            format!(
                                "{what} uses repository {:?}, which is not defined (no [repositories.{}])",
                                r.get_ref(),
                                r.get_ref()
                            ),
                        );
                    } else if repositories.contains(r.get_ref()) {
                        self.at(
                            r,
                            format!("{what} lists repository {:?} twice", r.get_ref()),
                        );
                    }
                    repositories.push(r.get_ref().clone());
                }
            }
        }

        // Time zone, RPO, schedule.
        let (tz, tz_name) = self.timezone(j.timezone.as_ref(), daemon_tz);
        let rpo = j.rpo.as_ref().and_then(|r| self.duration(r, "rpo"));
        let rto = j.rto.as_ref().and_then(|r| self.duration(r, "rto"));
        let schedule = match &j.schedule {
            None => {
                self.problem(
                    Some(name_span.clone()),
                    format!(
                        "{what} has no schedule: set schedule = \"CRON\", \"every 10m\" or \"auto\""
                    ),
                );
                None
            }
            Some(s) => match Schedule::parse(s.get_ref(), rpo) {
                Ok(x) => Some(x),
                Err(e) => {
                    self.at(s, format!("{what} schedule: {e}"));
                    None
                }
            },
        };

        // Windows and exclusions.
        let mut windows = Vec::new();
        let mut window_texts = Vec::new();
        if let Some(w) = &j.window {
            for item in &w.get_ref().0 {
                match Window::parse(item) {
                    Ok(x) => {
                        windows.push(x);
                        window_texts.push(x.to_string());
                    }
                    Err(e) => self.at(w, format!("{what} window: {e}")),
                }
            }
        }
        let on_window_close = match j
            .on_window_close
            .as_ref()
            .map(|s| (s, s.get_ref().as_str()))
        {
            None | Some((_, "finish")) => OnWindowClose::Finish,
            Some((_, "stop")) => OnWindowClose::Stop,
            Some((s, other)) => {
                self.at(
                    s,
                    format!("{what} on_window_close {other:?}: use \"finish\" or \"stop\""),
                );
                OnWindowClose::Finish
            }
        };
        let mut exclusions = Vec::new();
        for e in &j.exclusions {
            let raw = e.get_ref();
            let label = if raw.reason.is_empty() {
                "exclusion".to_string()
            } else {
                format!("exclusion ({})", raw.reason)
            };
            let parse = |c: &mut Self, s: &Spanned<String>| -> Option<jiff::Timestamp> {
                let text = s.get_ref().trim().replace(' ', "T");
                match text.parse::<jiff::civil::DateTime>() {
                    Ok(dt) => first_instant_at_or_after(dt.date(), dt.time(), &tz),
                    Err(_) => match text.parse::<jiff::civil::Date>() {
                        Ok(d) => first_instant_at_or_after(d, jiff::civil::Time::midnight(), &tz),
                        Err(_) => {
                            c.at(
                                s,
                                format!(
                                    "{what} {label}: {:?} is not a date-time such as \"2026-12-24 18:00\"",
                                    s.get_ref()
                                ),
                            );
                            None
                        }
                    },
                }
            };
            let from = match &raw.from {
                Some(f) => parse(self, f),
                None => {
                    self.at(
                        e,
                        format!("{what} {label} has no start: set from = \"YYYY-MM-DD HH:MM\""),
                    );
                    None
                }
            };
            let to = match &raw.to {
                Some(t) => parse(self, t),
                None => {
                    self.at(
                        e,
                        format!("{what} {label} has no end: set to = \"YYYY-MM-DD HH:MM\""),
                    );
                    None
                }
            };
            if let (Some(from), Some(to)) = (from, to) {
                if to <= from {
                    self.at(e, format!("{what} {label} ends before it starts"));
                } else {
                    exclusions.push(Exclusion { from, to });
                }
            }
        }

        // Rotation.
        let mut rotation = Rotation::default();
        if let Some(r) = &j.rotation {
            for (list, out) in [
                (&r.full, &mut rotation.full),
                (&r.differential, &mut rotation.differential),
                (&r.incremental, &mut rotation.incremental),
            ] {
                for d in list {
                    match DaySpec::parse(d.get_ref()) {
                        Ok(x) => out.push(x),
                        Err(e) => self.at(d, format!("{what} rotation: {e}")),
                    }
                }
            }
            if let Some(d) = &r.default {
                match parse_backup_type(d.get_ref()) {
                    Ok(t) => rotation.default = t,
                    Err(e) => self.at(d, format!("{what} rotation default: {e}")),
                }
            }
        }

        // Retention.
        let before_retention = self.problems.len();
        let retention = j.retention.as_ref().map(|r| {
            let count = |c: &mut Self, v: &Option<Spanned<i64>>, key: &str| {
                v.as_ref().and_then(|n| {
                    if *n.get_ref() < -1 {
                        c.at(
                            n,
                            format!(
                                "{what} retention {key}: use a count >= 0, or -1 for unlimited"
                            ),
                        );
                        None
                    } else {
                        Some(*n.get_ref())
                    }
                })
            };
            let within = |c: &mut Self, v: &Option<Spanned<String>>, key: &str| {
                v.as_ref()
                    .and_then(|s| match parse_keep_within(s.get_ref()) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            c.at(s, format!("{what} retention {key}: {e}"));
                            None
                        }
                    })
            };
            RetentionPolicy {
                keep_last: count(self, &r.keep_last, "keep_last"),
                keep_hourly: count(self, &r.keep_hourly, "keep_hourly"),
                keep_daily: count(self, &r.keep_daily, "keep_daily"),
                keep_weekly: count(self, &r.keep_weekly, "keep_weekly"),
                keep_monthly: count(self, &r.keep_monthly, "keep_monthly"),
                keep_yearly: count(self, &r.keep_yearly, "keep_yearly"),
                keep_within: within(self, &r.keep_within, "keep_within"),
                keep_within_hourly: within(self, &r.keep_within_hourly, "keep_within_hourly"),
                keep_within_daily: within(self, &r.keep_within_daily, "keep_within_daily"),
                keep_within_weekly: within(self, &r.keep_within_weekly, "keep_within_weekly"),
                keep_within_monthly: within(self, &r.keep_within_monthly, "keep_within_monthly"),
                keep_within_yearly: within(self, &r.keep_within_yearly, "keep_within_yearly"),
                keep_tags: r
                    .keep_tags
                    .iter()
                    .map(|t| arca_core::retention::parse_tag_list(t))
                    .collect(),
            }
        });
        if let Some(p) = &retention
            && p.is_empty()
            && self.problems.len() == before_retention
        {
            self.problem(
                Some(name_span.clone()),
                format!("{what} retention keeps nothing: set at least one keep_* rule (an empty policy would remove every snapshot)"),
            );
        }

        // Prune.
        let prune = j.prune.as_ref().and_then(|p| {
            let schedule = match Schedule::parse(p.schedule.get_ref(), rpo) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.at(&p.schedule, format!("{what} prune schedule: {e}"));
                    None
                }
            };
            let max_unused = match &p.max_unused {
                None => Some(arca_core::prune::MaxUnused::Percent(5.0)),
                Some(m) => match parse_max_unused(m.get_ref()) {
                    Ok(x) => Some(x),
                    Err(e) => {
                        self.at(m, format!("{what} prune {e}"));
                        None
                    }
                },
            };
            Some(PruneConfig {
                schedule: schedule?,
                schedule_text: p.schedule.get_ref().clone(),
                max_unused: max_unused?,
            })
        });

        // Hooks.
        let hooks_raw = j.hooks.unwrap_or_default();
        let timeout = match &hooks_raw.timeout {
            Some(t) => self
                .duration(t, &format!("{what} hooks timeout"))
                .unwrap_or_default(),
            None => Duration::from_secs(300),
        };
        let hooks = Hooks {
            pre: hooks_raw.pre,
            post: hooks_raw.post,
            failure: hooks_raw.failure,
            timeout,
        };

        // Limits.
        let l = j.limits.unwrap_or_default();
        let mut limits = Limits {
            threads: l.threads.as_ref().map(|t| *t.get_ref()),
            connections: l.connections.as_ref().map(|t| *t.get_ref()),
            upload_limit_kib: l.upload_limit_kib,
            download_limit_kib: l.download_limit_kib,
            ..Limits::default()
        };
        if let Some(n) = &l.nice {
            if (-20..=19).contains(n.get_ref()) {
                limits.nice = Some(*n.get_ref());
            } else {
                self.at(
                    n,
                    format!("{what} limits nice: use -20 (highest priority) to 19 (lowest)"),
                );
            }
        }
        if let Some(s) = &l.ionice {
            match parse_ionice(s.get_ref()) {
                Ok(p) => limits.ionice = Some(p),
                Err(e) => self.at(s, format!("{what} limits {e}")),
            }
        }
        for (v, key) in [(&l.threads, "threads"), (&l.connections, "connections")] {
            if let Some(n) = v
                && *n.get_ref() == 0
            {
                self.at(n, format!("{what} limits {key} must be at least 1"));
            }
        }

        // Alerts.
        let (alerts, channels) = match &j.alerts {
            Some(raw) => {
                let (rules, chans) = self.alert_settings(&format!("{what} alerts"), raw);
                (
                    self.alerts.merged(&rules),
                    chans.unwrap_or_else(|| self.default_channels.clone()),
                )
            }
            None => (self.alerts.clone(), self.default_channels.clone()),
        };

        // Drill.
        let drill = j.drill.as_ref().map(|d| {
            let schedule =
                d.schedule
                    .as_ref()
                    .and_then(|s| match Schedule::parse(s.get_ref(), rpo) {
                        Ok(x) => Some(x),
                        Err(e) => {
                            self.at(s, format!("{what} drill schedule: {e}"));
                            None
                        }
                    });
            let check_timeout = d
                .check_timeout
                .as_ref()
                .and_then(|t| self.duration(t, &format!("{what} drill check_timeout")))
                .unwrap_or(Duration::from_secs(60));
            let hook_timeout = d
                .hook_timeout
                .as_ref()
                .and_then(|t| self.duration(t, &format!("{what} drill hook_timeout")))
                .unwrap_or(Duration::from_secs(300));
            let tier = match &d.tier {
                Some(t) => t.get_ref().parse().unwrap_or_else(|e: String| {
                    self.at(t, format!("{what} drill tier: {e}"));
                    crate::drill::Tier::Cold
                }),
                None => crate::drill::Tier::Cold,
            };
            DrillConfig {
                schedule,
                schedule_text: d.schedule.as_ref().map(|s| s.get_ref().clone()),
                snapshot: d.snapshot.clone().unwrap_or_else(|| "latest".into()),
                checks: d
                    .checks
                    .iter()
                    .map(|c| crate::drill::CheckCommand {
                        command: c.clone(),
                        timeout: check_timeout,
                    })
                    .collect(),
                tier,
                scratch: d.scratch.as_deref().map(|p| self.resolve_path(p)),
                target: d.target.as_deref().map(|p| self.resolve_path(p)),
                hooks: crate::drill::RecoveryHooks {
                    provision: d.provision.clone(),
                    configure: d.configure.clone(),
                    start: d.start.clone(),
                    timeout: hook_timeout,
                },
            }
        });

        if self.problems.len() > before {
            return None;
        }
        let plan = JobPlan {
            tz,
            schedule: schedule?,
            windows,
            exclusions,
            rotation,
        };
        Some(JobConfig {
            name: name.to_string(),
            source: source?,
            repositories,
            schedule_text: j.schedule.map(|s| s.into_inner()).unwrap_or_default(),
            plan: Arc::new(plan),
            timezone: tz_name,
            windows: window_texts,
            rpo,
            rto,
            on_window_close,
            tags: j.tags,
            host: j.host,
            checksum: j.checksum,
            retention,
            prune,
            hooks,
            limits,
            alerts,
            channels,
            drill,
        })
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
mod tests {
    use super::*;

    const MINIMAL: &str = r#"[daemon]
listen = "127.0.0.1:9898"          # dashboard, API and /metrics
state = "/var/lib/arca/state.db"   # run history (SQLite)

[repositories.local]
location = "/srv/backup/repo"
password_file = "/etc/arca/pw"     # or password_command, password_env
media = "disk"
offsite = false

[jobs.docs]
sources = ["/home/me/docs"]
repositories = ["local"]
schedule = "*/5 * * * *"           # or "every 10m", or "auto" (from rpo)
rpo = "1h"
"#;

    fn check(text: &str) -> Result<Config, Vec<Problem>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
        let text = text.replace("/etc/arca/pw", &dir.path().join("pw").display().to_string());
        let env = |k: &str| (k == "ARCA_TEST_PW").then(|| "x".to_string());
        match Config::parse(Path::new("/etc/arca/arca.toml"), &text, &env) {
            Ok(c) => Ok(c),
            Err(ConfigError::Invalid { problems, .. }) => Err(problems),
            Err(e) => panic!("{e}"),
        }
    }

    fn problems(text: &str) -> Vec<(usize, usize, String)> {
        check(text)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"))
            .into_iter()
            .map(|p| (p.line, p.column, p.reason))
            .collect()
    }

    fn has(ps: &[(usize, usize, String)], line: usize, needle: &str) {
        assert!(
            ps.iter().any(|(l, _, r)| *l == line && r.contains(needle)),
            "no problem {needle:?} at line {line} in {ps:#?}"
        );
    }

    #[test]
    fn the_minimal_file_of_the_issue_works_as_written() {
        let c = check(MINIMAL).unwrap();
        assert_eq!(c.daemon.listen.unwrap().to_string(), "127.0.0.1:9898");
        assert_eq!(c.daemon.state, PathBuf::from("/var/lib/arca/state.db"));
        let j = c.job("docs").unwrap();
        assert_eq!(j.repositories, vec!["local"]);
        assert_eq!(j.rpo, Some(Duration::from_secs(3600)));
        assert!(matches!(j.source, Source::Paths { .. }));
        assert_eq!(c.repositories["local"].media, "disk");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = MINIMAL.replace("rpo = \"1h\"", "rpo = \"1h\"\nschedul = \"x\"")
            + "\n[repositories.other]\nlocation = \"/x\"\npassword_env = \"ARCA_TEST_PW\"\ncolour = \"red\"\n"
            + "\n[extra]\nx = 1\n";
        let ps = problems(&text);
        has(&ps, 16, "unknown field `schedul`");
        has(&ps, 21, "unknown field `colour`");
        has(&ps, 23, "unknown key \"extra\"");
        assert_eq!(ps.len(), 3, "{ps:#?}");
    }

    #[test]
    fn every_kind_of_mistake_at_once() {
        let text = r#"[repositories.local]
location = "/srv/repo"
media = "disk"

[repositories.cloud]
location = "s3:http://127.0.0.1:9000/bucket"
password_env = "ARCA_TEST_PW"

[jobs.a]
sources = ["/data"]
repositories = ["local", "nowhere"]
schedule = "61 * * * *"
window = "22:00"

[jobs.b]
sources = ["relative/path"]
repositories = ["cloud"]
schedule = "auto"
window = ["22:00-06:00", "07:00-"]
exclusions = [{ from = "2026-12-24 00:00" }]
timezone = "Mars/Olympus"

[jobs.c]
command = "echo hi"
repositories = ["cloud"]
schedule = "every 10q"
on_window_close = "explode"
rotation = { full = ["sundae"], default = "fancy" }
retention = { keep_daily = -5, keep_within = "3x" }
limits = { nice = 40, ionice = "sometimes" }
hooks = { timeout = "forever" }
"#;
        let ps = problems(text);
        has(&ps, 1, "no password source");
        has(&ps, 11, "repository \"nowhere\", which is not defined");
        has(&ps, 12, "invalid cron expression");
        has(&ps, 13, "has no end");
        has(&ps, 16, "not an absolute path");
        has(&ps, 18, "\"auto\" needs an rpo");
        has(&ps, 19, "\"07:00-\" has no end");
        has(&ps, 20, "has no end");
        has(&ps, 21, "unknown time zone");
        has(&ps, 26, "unknown unit");
        has(&ps, 27, "use \"finish\" or \"stop\"");
        has(&ps, 28, "invalid day \"sundae\"");
        has(&ps, 28, "invalid backup type");
        has(&ps, 29, "keep_daily");
        has(&ps, 29, "keep_within");
        has(&ps, 30, "nice");
        has(&ps, 30, "invalid ionice");
        has(&ps, 31, "hooks timeout");
        // Columns point at the value.
        let cron = ps.iter().find(|p| p.2.contains("invalid cron")).unwrap();
        assert_eq!(cron.1, 12);
    }

    #[test]
    fn database_sources() {
        let base = "[repositories.r]\nlocation = \"/r\"\npassword_env = \"ARCA_TEST_PW\"\n";
        let ok = format!(
            "{base}[jobs.pg]\npostgres = {{ dbname = \"postgresql://u:secret@db/app\", format = \"directory\", jobs = 4 }}\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n\n[jobs.my]\nmysql = {{ databases = [\"shop\"], user = \"backup\", password_env = \"ARCA_TEST_PW\" }}\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n"
        );
        let c = check(&ok).unwrap();
        let pg = c.job("pg").unwrap();
        assert!(matches!(
            pg.source,
            Source::Postgres {
                format: PgFormat::Directory,
                jobs: 4,
                ..
            }
        ));
        assert_eq!(pg.source.describe(), "postgres: postgresql://u:***@db/app");
        assert!(
            !serde_json::to_string(&pg.source)
                .unwrap()
                .contains("secret")
        );
        assert_eq!(
            redact_dbname("host=x password=pw dbname=a"),
            "host=x password=*** dbname=a"
        );
        let bad = format!(
            "{base}[jobs.my]\nmysql = {{ user = \"backup\", password_env = \"NOPE\" }}\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n[jobs.pg]\npostgres = {{ dbname = \"app\", format = \"tar\" }}\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n"
        );
        let ps = problems(&bad);
        has(&ps, 5, "either databases");
        has(&ps, 5, "NOPE is not set");
        has(&ps, 9, "use custom, plain or directory");
    }

    #[test]
    fn invalid_toml_and_missing_password_file() {
        let ps = problems("[jobs.a\nsources = 1\n");
        assert_eq!(ps[0].0, 1);
        assert!(ps[0].2.contains("invalid TOML"));
        let text = MINIMAL.replace("/etc/arca/pw", "/nonexistent/pw");
        let dir_free = Config::parse(Path::new("x.toml"), &text, &|_| None);
        match dir_free {
            Err(ConfigError::Invalid { problems, .. }) => {
                assert!(
                    problems[0].reason.contains("does not exist"),
                    "{problems:?}"
                );
                assert_eq!(problems[0].line, 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_example_parses() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/arca.toml"
        ))
        .unwrap();
        // The example's password file and environment variable are placeholders.
        std::fs::write(dir.path().join("pw"), "x").unwrap();
        let text = text.replace("/etc/arca/pw", &dir.path().join("pw").display().to_string());
        let env = |_: &str| Some("x".to_string());
        let c = Config::parse(Path::new("/etc/arca/arca.toml"), &text, &env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.jobs.len() >= 3);
    }
}
