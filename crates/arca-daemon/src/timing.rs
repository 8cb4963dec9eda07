//! When a job may run: its schedule (cron expression, fixed interval, or "auto" from the
//! RPO), backup windows in wall-clock time (possibly crossing midnight), exclusion periods,
//! and the backup-type rotation. Everything here is a pure function of timestamps and a
//! time zone, so a simulated year is checked in milliseconds.
//!
//! Rules (also in docs/CONFIG.md):
//! - Cron expressions are evaluated in the job's time zone with croner's (OCPS) DST rules:
//!   a fixed-time job whose time falls in a spring-forward gap runs at the first instant
//!   after the gap; in a fall-back fold it runs once, at the earlier instant. Jobs with a
//!   wildcard or stepped hour/minute run at every instant whose wall-clock time matches.
//! - `every D` slots are the multiples of D in elapsed time since 1970-01-01T00:00:00Z
//!   (DST never stretches or shortens them).
//! - `auto` is `every RPO/2` (whole seconds, at least one second): the newest snapshot is
//!   never older than the RPO as long as a run takes less than half of it.
//! - A window `HH:MM-HH:MM` is open when the local wall-clock time t satisfies
//!   start <= t < end (or, when end <= start, t >= start or t < end: it crosses midnight).
//! - Exclusion periods are local date-time ranges [from, to).

use std::time::Duration;

use arca_core::format::BackupType;
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution};
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ZonedDateTime};

/// Why a schedule, window, day or duration of a job is not valid; each names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error(transparent)]
    Duration(#[from] arca_core::units::UnitError),
    #[error("invalid duration {0:?}: must be longer than zero")]
    ZeroDuration(String),
    #[error("schedule \"auto\" needs an rpo (e.g. rpo = \"1h\")")]
    AutoWithoutRpo,
    #[error("empty schedule")]
    EmptySchedule,
    #[error("invalid cron expression {text:?}: {reason}")]
    Cron { text: String, reason: String },
    #[error("cron expression {text:?} never matches: {reason}")]
    CronNeverMatches { text: String, reason: String },
    #[error("invalid time of day {0:?}: expected HH:MM")]
    TimeOfDay(String),
    #[error("invalid time of day {0:?}: out of range")]
    TimeOfDayRange(String),
    #[error("window {0:?} has no end: write START-END, e.g. \"22:00-06:00\"")]
    WindowWithoutEnd(String),
    #[error("window {0:?} has no start: write START-END, e.g. \"22:00-06:00\"")]
    WindowWithoutStart(String),
    #[error("window {0:?} starts where it ends; leave the window out to allow any time")]
    EmptyWindow(String),
    #[error("invalid day {0:?}: use a weekday (mon..sun), a day of the month (1..31) or \"last\"")]
    Day(String),
}

/// Parses durations such as `90s`, `10m`, `1h30m`, `2d`, `1w` (the one grammar of
/// [`arca_core::units::parse_elapsed`]; d is 24 hours of elapsed time). Schedules and
/// RPOs must not be zero.
pub fn parse_duration(s: &str) -> Result<Duration, TimingError> {
    let d = arca_core::units::parse_elapsed(s)?;
    if d.is_zero() {
        return Err(TimingError::ZeroDuration(s.trim().to_string()));
    }
    Ok(d)
}

pub use arca_ops::drill::format_duration;

/// The interval of `schedule = "auto"`: half the RPO (whole seconds, at least 1 s).
pub fn auto_interval(rpo: Duration) -> Duration {
    Duration::from_secs((rpo.as_secs() / 2).max(1))
}

/// A job's slots: the instants it is due.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<Cron>),
    Every(Duration),
}

impl Schedule {
    /// `every D`, `auto` (needs the RPO) or a cron expression (5 fields, or 6 with seconds).
    pub fn parse(s: &str, rpo: Option<Duration>) -> Result<Schedule, TimingError> {
        let text = s.trim();
        if text == "auto" {
            return match rpo {
                Some(rpo) => Ok(Schedule::Every(auto_interval(rpo))),
                None => Err(TimingError::AutoWithoutRpo),
            };
        }
        if let Some(d) = text.strip_prefix("every ") {
            return parse_duration(d).map(Schedule::Every);
        }
        if text.is_empty() {
            return Err(TimingError::EmptySchedule);
        }
        let cron: Cron =
            text.parse()
                .map_err(|e: croner::errors::CronError| TimingError::Cron {
                    text: text.to_string(),
                    reason: e.to_string(),
                })?;
        // A pattern that can never match (e.g. 30 February) is an error too.
        let probe = CronTime(Timestamp::UNIX_EPOCH.to_zoned_datetime(TimeZone::UTC));
        cron.find_next_occurrence(&probe, false)
            .map_err(|e| TimingError::CronNeverMatches {
                text: text.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Schedule::Cron(Box::new(cron)))
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => {
                let step = d.as_secs().max(1) as i64;
                let secs = t.as_second();
                let next = (secs.div_euclid(step) + 1) * step;
                Timestamp::from_second(next).ok()
            }
            Schedule::Cron(c) => {
                let z = CronTime(t.to_zoned_datetime(tz.clone()));
                c.find_next_occurrence(&z, false)
                    .ok()
                    .map(|z| z.0.timestamp())
            }
        }
    }

    /// The newest slot at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => {
                let step = d.as_secs().max(1) as i64;
                let secs = t.as_second();
                Timestamp::from_second(secs.div_euclid(step) * step).ok()
            }
            Schedule::Cron(c) => {
                // croner works in whole seconds: search from the second that holds `t`.
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                let z = CronTime(whole.to_zoned_datetime(tz.clone()));
                c.find_previous_occurrence(&z, true)
                    .ok()
                    .map(|z| z.0.timestamp())
            }
        }
    }
}

/// jiff 1.0 date-times for croner (whose own jiff support targets jiff 0.2).
#[derive(Debug, Clone)]
struct CronTime(ZonedDateTime);

fn to_civil(dt: DateTime) -> CivilDateTime {
    CivilDateTime::new(
        CivilDate::from_parts_unchecked(i32::from(dt.year()), dt.month() as u32, dt.day() as u32),
        CivilTime::from_parts_unchecked(dt.hour() as u32, dt.minute() as u32, dt.second() as u32),
    )
}

impl CronDateTime for CronTime {
    fn to_civil(&self) -> CivilDateTime {
        to_civil(self.0.datetime())
    }

    fn civil_weekday(&self) -> croner::Weekday {
        croner::Weekday::from_days_from_sunday(self.0.weekday().to_sunday_zero_offset() as u32)
    }

    fn resolve_civil(
        &self,
        c: CivilDateTime,
    ) -> Result<Resolution<Self>, croner::errors::CronError> {
        use croner::errors::CronError;
        let year = i16::try_from(c.year()).map_err(|_| CronError::InvalidDate)?;
        let dt = DateTime::new(
            year,
            c.month() as i8,
            c.day() as i8,
            c.hour() as i8,
            c.minute() as i8,
            c.second() as i8,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        let amb = self.0.time_zone().to_ambiguous_zoned_datetime(dt);
        Ok(match amb.offset() {
            AmbiguousOffset::Unambiguous { .. } => Resolution::Single(CronTime(
                amb.unambiguous().map_err(|_| CronError::InvalidTime)?,
            )),
            AmbiguousOffset::Fold { .. } => {
                let earlier = amb.clone().earlier().map_err(|_| CronError::InvalidTime)?;
                let later = amb.later().map_err(|_| CronError::InvalidTime)?;
                Resolution::Ambiguous(CronTime(earlier), CronTime(later))
            }
            AmbiguousOffset::Gap { .. } => Resolution::Gap,
        })
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
            .map(CronTime)
    }

    fn cmp_instant(&self, other: &Self) -> std::cmp::Ordering {
        self.0.timestamp().cmp(&other.0.timestamp())
    }
}

/// The first instant whose local wall-clock time is `date time` or later: the instant
/// itself, the earlier one in a fold, the end of the gap in a spring-forward gap.
pub fn first_instant_at_or_after(date: Date, time: Time, tz: &TimeZone) -> Option<Timestamp> {
    let dt = DateTime::from_parts(date, time);
    let amb = tz.to_ambiguous_timestamp(dt);
    match amb.offset() {
        AmbiguousOffset::Unambiguous { .. } => amb.unambiguous().ok(),
        AmbiguousOffset::Fold { .. } => amb.earlier().ok(),
        AmbiguousOffset::Gap { .. } => {
            // Binary search for the transition between the two candidate instants.
            let mut lo = amb.earlier().ok()?.as_second();
            let mut hi = amb.later().ok()?.as_second();
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                let m = Timestamp::from_second(mid).ok()?;
                if tz.to_datetime(m) >= dt {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            Timestamp::from_second(hi).ok()
        }
    }
}

/// A daily backup window in wall-clock time; `end <= start` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Time,
    pub end: Time,
}

fn parse_clock(s: &str) -> Result<Time, TimingError> {
    let t = s.trim();
    let parts: Vec<&str> = t.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty() || p.len() > 2) {
        return Err(TimingError::TimeOfDay(t.to_string()));
    }
    let num = |p: &str| -> Result<i8, TimingError> {
        p.parse::<i8>()
            .map_err(|_| TimingError::TimeOfDay(t.to_string()))
    };
    let h = num(parts[0])?;
    let m = num(parts[1])?;
    let sec = if parts.len() == 3 { num(parts[2])? } else { 0 };
    if h == 24 && m == 0 && sec == 0 {
        return Ok(Time::midnight());
    }
    Time::new(h, m, sec, 0).map_err(|_| TimingError::TimeOfDayRange(t.to_string()))
}

impl Window {
    /// `HH:MM-HH:MM` (seconds optional; `24:00` means midnight).
    pub fn parse(s: &str) -> Result<Window, TimingError> {
        let text = s.trim();
        let Some((a, b)) = text.split_once('-') else {
            return Err(TimingError::WindowWithoutEnd(text.to_string()));
        };
        if b.trim().is_empty() {
            return Err(TimingError::WindowWithoutEnd(text.to_string()));
        }
        if a.trim().is_empty() {
            return Err(TimingError::WindowWithoutStart(text.to_string()));
        }
        let w = Window {
            start: parse_clock(a)?,
            end: parse_clock(b)?,
        };
        if w.start == w.end {
            return Err(TimingError::EmptyWindow(text.to_string()));
        }
        Ok(w)
    }

    pub fn contains_time(&self, t: Time) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start.hour(),
            self.start.minute(),
            self.end.hour(),
            self.end.minute()
        )
    }
}

/// When a job's snapshot is a full, differential or incremental backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaySpec {
    Weekday(Weekday),
    /// Day of the month, 1..=31 (a month without that day never matches).
    MonthDay(i8),
    /// The last day of the month.
    LastDay,
}

impl DaySpec {
    pub fn parse(s: &str) -> Result<DaySpec, TimingError> {
        let t = s.trim().to_ascii_lowercase();
        let wd = match t.as_str() {
            "mon" | "monday" => Some(Weekday::Monday),
            "tue" | "tuesday" => Some(Weekday::Tuesday),
            "wed" | "wednesday" => Some(Weekday::Wednesday),
            "thu" | "thursday" => Some(Weekday::Thursday),
            "fri" | "friday" => Some(Weekday::Friday),
            "sat" | "saturday" => Some(Weekday::Saturday),
            "sun" | "sunday" => Some(Weekday::Sunday),
            _ => None,
        };
        if let Some(wd) = wd {
            return Ok(DaySpec::Weekday(wd));
        }
        if t == "last" {
            return Ok(DaySpec::LastDay);
        }
        match t.parse::<i8>() {
            Ok(n) if (1..=31).contains(&n) => Ok(DaySpec::MonthDay(n)),
            _ => Err(TimingError::Day(s.to_string())),
        }
    }

    pub fn matches(&self, d: Date) -> bool {
        match self {
            DaySpec::Weekday(w) => d.weekday() == *w,
            DaySpec::MonthDay(n) => d.day() == *n,
            DaySpec::LastDay => d == d.last_of_month(),
        }
    }
}

/// Which backup type a run gets, by the local date it starts on. The first matching rule
/// wins, in the order full, differential, incremental; otherwise `default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub full: Vec<DaySpec>,
    pub differential: Vec<DaySpec>,
    pub incremental: Vec<DaySpec>,
    pub default: BackupType,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            full: Vec::new(),
            differential: Vec::new(),
            incremental: Vec::new(),
            default: BackupType::Incremental,
        }
    }
}

impl Rotation {
    pub fn type_on(&self, d: Date) -> BackupType {
        if self.full.iter().any(|s| s.matches(d)) {
            BackupType::Full
        } else if self.differential.iter().any(|s| s.matches(d)) {
            BackupType::Differential
        } else if self.incremental.iter().any(|s| s.matches(d)) {
            BackupType::Incremental
        } else {
            self.default
        }
    }
}

/// An exclusion period, resolved to instants: no run starts in [from, to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exclusion {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// Everything that decides when one job runs.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub tz: TimeZone,
    pub schedule: Schedule,
    /// Empty: any time of day.
    pub windows: Vec<Window>,
    pub exclusions: Vec<Exclusion>,
    pub rotation: Rotation,
}

/// Window state at an instant, for `arca status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WindowState {
    /// No window and no exclusion in force.
    Always,
    Open {
        closes_at: Option<Timestamp>,
    },
    Closed {
        opens_at: Option<Timestamp>,
    },
    Excluded {
        until: Timestamp,
    },
}

impl JobPlan {
    /// A plan that runs on `schedule` at any time (UTC).
    pub fn simple(schedule: Schedule) -> JobPlan {
        JobPlan {
            tz: TimeZone::UTC,
            schedule,
            windows: Vec::new(),
            exclusions: Vec::new(),
            rotation: Rotation::default(),
        }
    }

    pub fn local(&self, t: Timestamp) -> DateTime {
        self.tz.to_datetime(t)
    }

    pub fn window_open(&self, t: Timestamp) -> bool {
        self.windows.is_empty() || {
            let time = self.local(t).time();
            self.windows.iter().any(|w| w.contains_time(time))
        }
    }

    pub fn excluded(&self, t: Timestamp) -> Option<&Exclusion> {
        self.exclusions.iter().find(|e| e.from <= t && t < e.to)
    }

    /// Whether a run may start at `t`.
    pub fn allowed(&self, t: Timestamp) -> bool {
        self.window_open(t) && self.excluded(t).is_none()
    }

    /// Instants after `t` (within a few days) where window membership can change:
    /// the window boundaries and the time zone's transitions.
    fn boundaries(&self, t: Timestamp, pick_start: bool) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let day = self.local(t).date();
        let mut d = day.yesterday().unwrap_or(day);
        for _ in 0..4 {
            for w in &self.windows {
                let time = if pick_start { w.start } else { w.end };
                if let Some(x) = first_instant_at_or_after(d, time, &self.tz)
                    && x > t
                {
                    out.push(x);
                }
            }
            d = match d.tomorrow() {
                Ok(n) => n,
                Err(_) => break,
            };
        }
        let horizon = t.checked_add(SignedDuration::from_hours(72)).unwrap_or(t);
        for tr in self.tz.following(t).take(4) {
            let x = tr.timestamp();
            if x > horizon {
                break;
            }
            out.push(x);
        }
        out.sort();
        out
    }

    /// The first instant at or after `t` when the window is open (`t` when it is).
    pub fn next_window_open(&self, t: Timestamp) -> Option<Timestamp> {
        if self.window_open(t) {
            return Some(t);
        }
        self.boundaries(t, true)
            .into_iter()
            .find(|x| self.window_open(*x))
    }

    /// When the window open at `t` closes (`None` without windows, or if it is closed).
    pub fn window_closes(&self, t: Timestamp) -> Option<Timestamp> {
        if self.windows.is_empty() || !self.window_open(t) {
            return None;
        }
        self.boundaries(t, false)
            .into_iter()
            .find(|x| !self.window_open(*x))
    }

    /// The first instant at or after `t` when a run may start.
    pub fn next_allowed(&self, t: Timestamp) -> Option<Timestamp> {
        let mut t = t;
        for _ in 0..10_000 {
            let open = self.next_window_open(t)?;
            match self.excluded(open) {
                Some(e) => t = e.to,
                None => return Some(open),
            }
        }
        None
    }

    /// When a run that may start at `t` must stop (for `on_window_close = "stop"`):
    /// the window closes or an exclusion period begins.
    pub fn run_must_stop_at(&self, t: Timestamp) -> Option<Timestamp> {
        let close = self.window_closes(t);
        let excl = self
            .exclusions
            .iter()
            .filter(|e| e.from > t)
            .map(|e| e.from)
            .min();
        match (close, excl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn window_state(&self, t: Timestamp) -> WindowState {
        if let Some(e) = self.excluded(t) {
            return WindowState::Excluded { until: e.to };
        }
        if self.windows.is_empty() {
            return WindowState::Always;
        }
        if self.window_open(t) {
            WindowState::Open {
                closes_at: self.window_closes(t),
            }
        } else {
            WindowState::Closed {
                opens_at: self.next_allowed(t),
            }
        }
    }

    /// The backup type of a run starting at `t`.
    pub fn backup_type_at(&self, t: Timestamp) -> BackupType {
        self.rotation.type_on(self.local(t).date())
    }

    /// The pending slot at `now`: the newest slot in (last_slot, now], if any.
    pub fn pending_slot(&self, last_slot: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let next = self.schedule.next_after(last_slot, &self.tz)?;
        if next > now {
            return None;
        }
        self.schedule
            .latest_at_or_before(now, &self.tz)
            .filter(|s| *s > last_slot)
            .or(Some(next))
    }

    /// When the job runs next, given the last slot it served: at once (`now`) when a slot is
    /// pending and a run is allowed, else when the window opens or the next slot comes.
    pub fn next_run(&self, last_slot: Timestamp, now: Timestamp) -> Option<Timestamp> {
        if self.pending_slot(last_slot, now).is_some() {
            return self.next_allowed(now);
        }
        let from = last_slot.max(now);
        let slot = self.schedule.next_after(from, &self.tz)?;
        self.next_allowed(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn auto_rule_is_half_the_rpo() {
        let rpo = parse_duration("15m").unwrap();
        assert_eq!(auto_interval(rpo), Duration::from_secs(450));
        match Schedule::parse("auto", Some(rpo)).unwrap() {
            Schedule::Every(d) => assert_eq!(d, Duration::from_secs(450)),
            other => panic!("{other:?}"),
        }
        assert!(Schedule::parse("auto", None).is_err());
    }

    #[test]
    fn windows_parse() {
        let w = Window::parse("22:00-06:00").unwrap();
        assert!(w.contains_time(Time::new(23, 0, 0, 0).unwrap()));
        assert!(w.contains_time(Time::new(5, 59, 0, 0).unwrap()));
        assert!(!w.contains_time(Time::new(6, 0, 0, 0).unwrap()));
        assert!(!w.contains_time(Time::new(12, 0, 0, 0).unwrap()));
        for bad in [
            "22:00",
            "22:00-",
            "-06:00",
            "25:00-01:00",
            "10:00-10:00",
            "ab-cd",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bad_cron_expressions() {
        for bad in ["* * *", "61 * * * *", "0 0 30 2 *", "hello", "*/0 * * * *"] {
            assert!(Schedule::parse(bad, None).is_err(), "{bad} accepted");
        }
        assert!(Schedule::parse("*/5 * * * *", None).is_ok());
        assert!(Schedule::parse("*/5 * * * * *", None).is_ok());
        assert!(Schedule::parse("every 10m", None).is_ok());
    }
}
