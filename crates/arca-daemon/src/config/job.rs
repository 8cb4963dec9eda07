//! Checking one `[jobs.NAME]` section into a [`JobConfig`].

use super::*;

impl Checker<'_> {
    pub(super) fn job(
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

        let source = self.job_source(&what, name, &name_span, &j);
        let repositories = self.job_repositories(&what, &name_span, &j, known_repos);

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

        let (windows, window_texts, on_window_close) = self.job_windows(&what, &j);
        let exclusions = self.job_exclusions(&what, &j, &tz);
        let rotation = self.job_rotation(&what, &j);
        let retention = self.job_retention(&what, &name_span, &j);
        let prune = self.job_prune(&what, &j, rpo);
        let drill = self.job_drill(&what, &j, rpo);

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

        let limits = self.job_limits(&what, j.limits.unwrap_or_default());

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

    /// The job's one source (`sources`, `command`, `postgres` or `mysql`).
    fn job_source(
        &mut self,
        what: &str,
        name: &str,
        name_span: &Range<usize>,
        j: &RawJob,
    ) -> Option<Source> {
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
            source = Some(self.mysql_source(what, my));
        }
        source
    }

    /// A `[jobs.NAME.mysql]` source.
    fn mysql_source(&mut self, what: &str, my: &Spanned<RawMysql>) -> Source {
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
        Source::Mysql {
            databases: m.databases.clone(),
            all_databases: m.all_databases,
            host: m.host.clone(),
            port: m.port,
            socket: m.socket.as_deref().map(PathBuf::from),
            user: m.user.clone(),
            password_env: m.password_env.as_ref().map(|e| e.get_ref().clone()),
            defaults_file: m.defaults_file.as_deref().map(|f| self.resolve_path(f)),
            options: m.options.clone(),
        }
    }

    /// The repositories the job backs up to, each defined once.
    fn job_repositories(
        &mut self,
        what: &str,
        name_span: &Range<usize>,
        j: &RawJob,
        known_repos: &[String],
    ) -> Vec<String> {
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
        repositories
    }

    /// The backup windows (parsed and as written) and what a closing window does.
    fn job_windows(&mut self, what: &str, j: &RawJob) -> (Vec<Window>, Vec<String>, OnWindowClose) {
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
        (windows, window_texts, on_window_close)
    }

    /// The periods in which the job does not run, as instants of its time zone.
    fn job_exclusions(&mut self, what: &str, j: &RawJob, tz: &TimeZone) -> Vec<Exclusion> {
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
                    Ok(dt) => first_instant_at_or_after(dt.date(), dt.time(), tz),
                    Err(_) => match text.parse::<jiff::civil::Date>() {
                        Ok(d) => first_instant_at_or_after(d, jiff::civil::Time::midnight(), tz),
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
        exclusions
    }

    /// Which days run full, differential or incremental backups.
    fn job_rotation(&mut self, what: &str, j: &RawJob) -> Rotation {
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
        rotation
    }

    /// The retention policy; one that keeps nothing is refused.
    fn job_retention(
        &mut self,
        what: &str,
        name_span: &Range<usize>,
        j: &RawJob,
    ) -> Option<RetentionPolicy> {
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
        retention
    }

    /// The job's prune schedule and threshold.
    fn job_prune(&mut self, what: &str, j: &RawJob, rpo: Option<Duration>) -> Option<PruneConfig> {
        j.prune.as_ref().and_then(|p| {
            let schedule = match Schedule::parse(p.schedule.get_ref(), rpo) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.at(&p.schedule, format!("{what} prune schedule: {e}"));
                    None
                }
            };
            let max_unused = match &p.max_unused {
                None => Some(arca_core::prune::MaxUnused::Percent(5.0)),
                Some(m) => match m.get_ref().parse::<arca_core::prune::MaxUnused>() {
                    Ok(x) => Some(x),
                    Err(e) => {
                        self.at(m, format!("{what} prune max_unused: {e}"));
                        None
                    }
                },
            };
            Some(PruneConfig {
                schedule: schedule?,
                schedule_text: p.schedule.get_ref().clone(),
                max_unused: max_unused?,
            })
        })
    }

    /// Thread, connection, bandwidth and priority limits.
    fn job_limits(&mut self, what: &str, l: RawLimits) -> Limits {
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
        limits
    }

    /// The job's restore drill.
    fn job_drill(&mut self, what: &str, j: &RawJob, rpo: Option<Duration>) -> Option<DrillConfig> {
        j.drill.as_ref().map(|d| {
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
                Some(t) => t
                    .get_ref()
                    .parse()
                    .unwrap_or_else(|e: arca_ops::drill::UnknownTier| {
                        self.at(t, format!("{what} drill tier: {e}"));
                        arca_ops::drill::Tier::Cold
                    }),
                None => arca_ops::drill::Tier::Cold,
            };
            DrillConfig {
                schedule,
                schedule_text: d.schedule.as_ref().map(|s| s.get_ref().clone()),
                snapshot: d.snapshot.clone().unwrap_or_else(|| "latest".into()),
                checks: d
                    .checks
                    .iter()
                    .map(|c| arca_ops::drill::CheckCommand {
                        command: c.clone(),
                        timeout: check_timeout,
                    })
                    .collect(),
                tier,
                scratch: d.scratch.as_deref().map(|p| self.resolve_path(p)),
                target: d.target.as_deref().map(|p| self.resolve_path(p)),
                hooks: arca_ops::drill::RecoveryHooks {
                    provision: d.provision.clone(),
                    configure: d.configure.clone(),
                    start: d.start.clone(),
                    timeout: hook_timeout,
                },
            }
        })
    }
}
