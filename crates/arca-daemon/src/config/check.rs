//! Checking a parsed file: positions of problems, paths, time zones, durations, the
//! `[daemon]` and alert sections, and the value parsers the checks share.

use super::*;

/// `[daemon] session_idle` when the file gives none.
const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
    pub(super) base: PathBuf,
    pub(super) problems: Vec<Problem>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    /// `[alerts]`, checked before the jobs (which merge it).
    pub(super) alerts: crate::alerts::RuleSettings,
    /// Channels of `[alerts] channels` (every job's, unless the job names its own).
    pub(super) default_channels: Vec<String>,
    /// Names of the `[channels.NAME]` sections.
    pub(super) channel_names: Vec<String>,
}

/// A value of the file that is not one of the words or forms its key takes; each names
/// the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ValueError {
    #[error("invalid ionice level in {0:?}: use 0 (highest) to 7")]
    IoniceLevel(String),
    #[error("invalid ionice {0:?}: use \"idle\", \"best-effort[:0-7]\" or \"realtime[:0-7]\"")]
    Ionice(String),
    #[error("invalid backup type {0:?}: use full, incremental or differential")]
    BackupType(String),
}

pub(super) fn parse_ionice(s: &str) -> Result<IoPriority, ValueError> {
    let t = s.trim();
    let (class, level) = match t.split_once(':') {
        Some((c, l)) => (c, Some(l)),
        None => (t, None),
    };
    let level = match level {
        None => 4,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= 7 => n,
            _ => return Err(ValueError::IoniceLevel(t.to_string())),
        },
    };
    match class {
        "idle" => Ok(IoPriority::Idle),
        "best-effort" => Ok(IoPriority::BestEffort(level)),
        "realtime" => Ok(IoPriority::Realtime(level)),
        _ => Err(ValueError::Ionice(t.to_string())),
    }
}

pub(super) fn parse_backup_type(s: &str) -> Result<BackupType, ValueError> {
    match s.trim() {
        "full" => Ok(BackupType::Full),
        "incremental" => Ok(BackupType::Incremental),
        "differential" => Ok(BackupType::Differential),
        other => Err(ValueError::BackupType(other.to_string())),
    }
}

impl Checker<'_> {
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    pub(super) fn problem(&mut self, span: Option<Range<usize>>, reason: impl Into<String>) {
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

    pub(super) fn at<T>(&mut self, s: &Spanned<T>, reason: impl Into<String>) {
        self.problem(Some(s.span()), reason);
    }

    pub(super) fn de<T: serde::de::DeserializeOwned>(
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

    pub(super) fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn timezone(
        &mut self,
        tz: Option<&Spanned<String>>,
        default: &str,
    ) -> (TimeZone, String) {
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

    pub(super) fn duration(&mut self, s: &Spanned<String>, key: &str) -> Option<Duration> {
        match parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(s, format!("{key}: {e}"));
                None
            }
        }
    }

    pub(super) fn check(&mut self) -> Option<Config> {
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

        let (daemon, daemon_tz) = self.daemon_settings(&daemon_raw);

        let known_repos: Vec<String> = repo_values.iter().map(|(n, _, _)| n.clone()).collect();
        let mut repositories = BTreeMap::new();
        for (name, name_span, v) in repo_values {
            if let Some(r) = self.repository(&name, name_span, v) {
                repositories.insert(name, r);
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

    /// The `[daemon]` section, and the daemon's time zone ("" for the system's).
    fn daemon_settings(&mut self, daemon_raw: &RawDaemon) -> (DaemonSettings, String) {
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
                        self.at(s, e.to_string());
                        None
                    }
                });
        let (token, token_file) = self.dashboard_token(daemon_raw);
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
        let session_idle = daemon_raw
            .session_idle
            .as_ref()
            .and_then(|d| {
                let idle = self.duration(d, "[daemon] session_idle")?;
                if idle.is_zero() {
                    self.at(d, "[daemon] session_idle must be longer than 0s");
                    return None;
                }
                Some(idle)
            })
            .unwrap_or(DEFAULT_SESSION_IDLE);
        let daemon = DaemonSettings {
            listen,
            token,
            token_file,
            session_idle,
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
        (daemon, daemon_tz)
    }

    /// The dashboard's token (`token_file` or `token_env`), and the file it came from.
    fn dashboard_token(&mut self, daemon_raw: &RawDaemon) -> (Option<String>, Option<PathBuf>) {
        let mut token_file = None;
        let token = match (&daemon_raw.token_file, &daemon_raw.token_env) {
            (Some(f), Some(_)) => {
                self.at(f, "[daemon] takes token_file or token_env, not both");
                None
            }
            (Some(f), None) => {
                let path = self.resolve_path(f.get_ref());
                token_file = Some(path.clone());
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
        (token, token_file)
    }

    /// One `[repositories.NAME]` section; `None` when it has a problem that leaves no
    /// usable repository (the problem is recorded).
    fn repository(
        &mut self,
        name: &str,
        name_span: Range<usize>,
        v: &Spanned<DeValue<'_>>,
    ) -> Option<RepositoryConfig> {
        let what = format!("[repositories.{name}]");
        let r = self.de::<RawRepository>(&what, v)?;
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
        let lock_wait = r
            .lock_wait
            .as_ref()
            .and_then(|t| self.duration(t, &format!("{what} lock_wait")))
            .unwrap_or(DEFAULT_LOCK_WAIT);
        if r.cache == Some(false)
            && let Some(d) = &r.cache_dir
        {
            self.at(d, format!("{what} cache_dir is set but cache = false"));
        }
        let cache_dir = r.cache_dir.as_ref().map(|d| self.resolve_path(d.get_ref()));
        Some(RepositoryConfig {
            name: name.to_string(),
            location: r.location.get_ref().clone(),
            password: password?,
            password_command_timeout,
            media: r.media.clone().unwrap_or_else(|| "disk".into()),
            offsite: r.offsite,
            connections: r.connections.map(|c| c.into_inner()),
            upload_limit_kib: r.upload_limit_kib,
            download_limit_kib: r.download_limit_kib,
            append_only: r.append_only,
            cache: r.cache.unwrap_or(true),
            cache_dir,
            lock_wait,
        })
    }

    /// Checks an `[alerts]`-shaped table: the rule settings and the channel names it lists.
    pub(super) fn alert_settings(
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
}
