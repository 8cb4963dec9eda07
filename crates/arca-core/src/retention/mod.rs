//! Retention policies: which snapshots of one group to keep, as a pure function.
//!
//! The semantics follow restic's `forget` command (`internal/restic/snapshot_policy.go`):
//!
//! * Snapshots are walked from newest to oldest (ties broken by id, so the result does not
//!   depend on input order).
//! * `keep_last N` keeps the N newest snapshots.
//! * `keep_hourly/daily/weekly/monthly/yearly N` are calendar buckets evaluated in the
//!   snapshot's *own* local civil time (the UTC offset it was taken with): a snapshot is
//!   kept for such a rule when its bucket differs from the bucket of the last snapshot that
//!   rule kept and the rule still has budget; each keep uses one unit of budget. Weekly
//!   buckets are ISO 8601 weeks (ISO year + week number). `-1` means unlimited, `0` (or
//!   any other negative value) disables the rule.
//! * Like restic ≥ 0.17, a bucket rule that still has budget left when the walk reaches the
//!   oldest snapshot keeps that oldest snapshot as well (reason `"oldest daily snapshot"`
//!   and so on), which maximises the history kept within the limits. The same applies to
//!   the `keep_within_*` rules when the oldest snapshot lies within their duration.
//! * `keep_within D` keeps every snapshot strictly newer than `newest - D`, where *newest*
//!   is the newest snapshot of the group (not the current time) and the subtraction is
//!   Go's `AddDate(-years, -months, -days)` followed by subtracting whole hours.
//!   `AddDate` does not clamp: 2024-03-31 minus one month is "2024-02-31", normalised to
//!   2024-03-02. The calendar arithmetic happens at the newest snapshot's UTC offset.
//! * `keep_within_hourly/daily/weekly/monthly/yearly D` keep one snapshot per bucket (as
//!   above, without a count) among the snapshots within `D` of the newest one.
//! * `keep_tags` is a list of tag lists; a snapshot is kept for a list when it carries
//!   every tag of the list (restic's `--keep-tag a,b`). An empty tag `""` in a list
//!   matches snapshots that have no tags at all.
//! * A snapshot kept for several reasons reports all of them, in restic's order: tags,
//!   within, last, hourly, daily, weekly, monthly, yearly, then the within-bucket rules.
//! * A policy without any active rule keeps everything (reason `"policy is empty"`);
//!   callers should refuse to run `forget` with such a policy ([`RetentionPolicy::is_empty`]).
//!
//! Grouping snapshots (by host, paths, tags...) is the caller's job: [`apply_policy`]
//! evaluates one group.

use std::fmt;

use jiff::Timestamp;
use serde::Serialize;

use crate::id::Id;

/// Errors from parsing or validating retention settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// A `keep-within*` duration such as `1y2mo3d4h` could not be parsed.
    #[error("invalid duration {input:?}: {reason}")]
    InvalidDuration { input: String, reason: String },
    /// A count rule has a negative value other than -1 (unlimited).
    #[error("invalid value {value} for keep-{rule}: use a count >= 0, or -1 for unlimited")]
    InvalidCount { rule: &'static str, value: i64 },
}

/// A calendar duration for the `keep-within*` rules: years, months, days and hours,
/// written `1y2mo3d4h` (any subset, any order; restic writes months as `m`). A zero
/// duration disables the rule it is given for (as in restic).
pub type RetentionDuration = crate::units::CalendarSpan;

/// Parses a `keep-within*` span in arca's one duration grammar
/// ([`crate::units::parse_calendar`]): `y` (years), `mo` (months), `w` (weeks), `d` (days)
/// and `h` (hours), e.g. `1y2mo3d4h`, `36h`, `2w`; repeated units add up. restic writes
/// months as `m`; here `m` means minutes, so `6m` is refused with a message that says to
/// write `6mo`.
pub fn parse_duration(s: &str) -> Result<RetentionDuration, RetentionError> {
    crate::units::parse_calendar(s).map_err(|e| RetentionError::InvalidDuration {
        input: e.input,
        reason: e.reason,
    })
}

/// Splits one `--keep-tag` value into its tag list: comma-separated, each tag trimmed
/// (restic's `TagList`). `""` yields `[""]`, which matches untagged snapshots.
pub fn parse_tag_list(s: &str) -> Vec<String> {
    s.split(',').map(|t| t.trim().to_string()).collect()
}

/// Which snapshots of a group to keep. `None` (and `Some(0)`, and a zero duration)
/// means the rule is not used; `Some(-1)` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    pub keep_last: Option<i64>,
    pub keep_hourly: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub keep_monthly: Option<i64>,
    pub keep_yearly: Option<i64>,
    pub keep_within: Option<RetentionDuration>,
    pub keep_within_hourly: Option<RetentionDuration>,
    pub keep_within_daily: Option<RetentionDuration>,
    pub keep_within_weekly: Option<RetentionDuration>,
    pub keep_within_monthly: Option<RetentionDuration>,
    pub keep_within_yearly: Option<RetentionDuration>,
    /// Each inner list is one `--keep-tag` value: all of its tags must be present.
    pub keep_tags: Vec<Vec<String>>,
}

impl RetentionPolicy {
    /// True when no rule is active: all counts are unset, 0 or invalid (< -1), all
    /// durations unset or zero, and there are no tag lists. [`apply_policy`] keeps every
    /// snapshot for such a policy. (restic treats `--keep-daily 0` alone the same way.)
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| budget(*n).is_none())
            && self
                .withins()
                .iter()
                .all(|(_, d)| active_duration(*d).is_none())
            && self.keep_tags.is_empty()
    }

    /// The common grandfather-father-son schedule: 7 daily, 4 weekly, 12 monthly and
    /// 7 yearly snapshots.
    pub fn gfs_default() -> Self {
        RetentionPolicy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            keep_yearly: Some(7),
            ..Default::default()
        }
    }

    /// Rejects counts below -1 (restic refuses them on the command line; [`apply_policy`]
    /// treats them as disabled).
    pub fn validate(&self) -> Result<(), RetentionError> {
        for (rule, n) in self.counts() {
            if let Some(value) = n
                && value < -1
            {
                return Err(RetentionError::InvalidCount { rule, value });
            }
        }
        Ok(())
    }

    fn counts(&self) -> [(&'static str, Option<i64>); 6] {
        [
            ("last", self.keep_last),
            ("hourly", self.keep_hourly),
            ("daily", self.keep_daily),
            ("weekly", self.keep_weekly),
            ("monthly", self.keep_monthly),
            ("yearly", self.keep_yearly),
        ]
    }

    fn withins(&self) -> [(&'static str, Option<RetentionDuration>); 6] {
        [
            ("within", self.keep_within),
            ("hourly", self.keep_within_hourly),
            ("daily", self.keep_within_daily),
            ("weekly", self.keep_within_weekly),
            ("monthly", self.keep_within_monthly),
            ("yearly", self.keep_within_yearly),
        ]
    }
}

impl fmt::Display for RetentionPolicy {
    /// A one-line summary in the style of restic's `Applying Policy: ...` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keeps = Vec::new();
        for (name, n) in self.counts() {
            let name = if name == "last" { "latest" } else { name };
            match budget(n) {
                Some(Budget::Unlimited) => keeps.push(format!("all {name}")),
                Some(Budget::Left(n)) => keeps.push(format!("{n} {name}")),
                None => {}
            }
        }
        let mut parts = Vec::new();
        if !keeps.is_empty() {
            parts.push(format!("keep {} snapshots", keeps.join(", ")));
        }
        let keepw: Vec<String> = self.withins()[1..]
            .iter()
            .filter_map(|(name, d)| {
                active_duration(*d).map(|d| format!("{name} snapshots within {d}"))
            })
            .collect();
        if !keepw.is_empty() {
            parts.push(format!("keep {}", keepw.join(", ")));
        }
        let mut s = parts.join(", ");
        let mut and = |extra: String| {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str(&extra);
        };
        if !self.keep_tags.is_empty() {
            let lists: Vec<String> = self.keep_tags.iter().map(|l| format_tags(l)).collect();
            and(format!("all snapshots with tags {}", lists.join(" or ")));
        }
        if let Some(d) = active_duration(self.keep_within) {
            and(format!("all snapshots within {d} of the newest"));
        }
        if s.is_empty() {
            s.push_str("keep everything (empty policy)");
        }
        f.write_str(&s)
    }
}

/// One snapshot of the group being evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: Id,
    pub time: Timestamp,
    /// The UTC offset (seconds east of UTC) in effect where and when the snapshot was
    /// taken; calendar buckets use this local time.
    pub utc_offset_secs: i32,
    pub tags: Vec<String>,
}

/// The verdict for one candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: Id,
    pub time: Timestamp,
    pub keep: bool,
    /// Why the snapshot is kept (empty when it is removed), e.g. `"last snapshot"`,
    /// `"daily snapshot"`, `"oldest monthly snapshot"`, `"within 2d"`,
    /// `"daily within 1mo"`, `"has tags [a, b]"`, `"policy is empty"`.
    pub reasons: Vec<String>,
}

/// Evaluates `policy` on one group of snapshots. Returns one decision per candidate,
/// newest first (equal times ordered by id, then offset, then tags).
pub fn apply_policy(policy: &RetentionPolicy, candidates: &[Candidate]) -> Vec<Decision> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by(|a, b| {
        b.time
            .cmp(&a.time)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.utc_offset_secs.cmp(&b.utc_offset_secs))
            .then_with(|| a.tags.cmp(&b.tags))
    });

    if policy.is_empty() {
        return order
            .into_iter()
            .map(|c| decision(c, vec!["policy is empty".to_string()]))
            .collect();
    }
    let Some(newest) = order.first().copied() else {
        return Vec::new();
    };
    let oldest_nr = order.len() - 1;

    let within = active_duration(policy.keep_within).map(|d| (d, within_cutoff(newest, d)));

    let mut counted = [
        (policy.keep_last, Kind::Always, "last snapshot"),
        (policy.keep_hourly, Kind::Hour, "hourly snapshot"),
        (policy.keep_daily, Kind::Day, "daily snapshot"),
        (policy.keep_weekly, Kind::Week, "weekly snapshot"),
        (policy.keep_monthly, Kind::Month, "monthly snapshot"),
        (policy.keep_yearly, Kind::Year, "yearly snapshot"),
    ]
    .map(|(n, kind, reason)| CountRule {
        budget: budget(n),
        kind,
        reason,
        last: None,
    });

    let mut within_buckets = [
        (policy.keep_within_hourly, Kind::Hour, "hourly within"),
        (policy.keep_within_daily, Kind::Day, "daily within"),
        (policy.keep_within_weekly, Kind::Week, "weekly within"),
        (policy.keep_within_monthly, Kind::Month, "monthly within"),
        (policy.keep_within_yearly, Kind::Year, "yearly within"),
    ]
    .map(|(d, kind, reason)| WithinRule {
        window: active_duration(d).map(|d| (d, within_cutoff(newest, d))),
        kind,
        reason,
        last: None,
    });

    let mut out = Vec::with_capacity(order.len());
    for (nr, cand) in order.into_iter().enumerate() {
        let local = LocalTime::of(cand);
        let ns = cand.time.as_nanosecond();
        let is_oldest = nr == oldest_nr;
        let mut reasons = Vec::new();

        for tags in &policy.keep_tags {
            if has_tags(&cand.tags, tags) {
                reasons.push(format!("has tags {}", format_tags(tags)));
            }
        }

        if let Some((d, cutoff)) = within
            && ns > cutoff
        {
            reasons.push(format!("within {d}"));
        }

        for rule in &mut counted {
            let Some(budget) = rule.budget else { continue };
            let key = rule.kind.key(&local, nr);
            let new_bucket = rule.last != Some(key);
            if new_bucket || is_oldest {
                rule.last = Some(key);
                rule.budget = budget.spend();
                reasons.push(if new_bucket {
                    rule.reason.to_string()
                } else {
                    format!("oldest {}", rule.reason)
                });
            }
        }

        for rule in &mut within_buckets {
            let Some((d, cutoff)) = rule.window else {
                continue;
            };
            if ns <= cutoff {
                continue;
            }
            let key = rule.kind.key(&local, nr);
            let new_bucket = rule.last != Some(key);
            if new_bucket || is_oldest {
                rule.last = Some(key);
                reasons.push(if new_bucket {
                    format!("{} {d}", rule.reason)
                } else {
                    format!("oldest {} {d}", rule.reason)
                });
            }
        }

        out.push(decision(cand, reasons));
    }
    out
}

fn decision(c: &Candidate, reasons: Vec<String>) -> Decision {
    Decision {
        id: c.id,
        time: c.time,
        keep: !reasons.is_empty(),
        reasons,
    }
}

/// restic's `Snapshot.HasTags`: every tag of `list` is present; an empty tag matches a
/// snapshot without tags. An empty list matches everything.
fn has_tags(snapshot_tags: &[String], list: &[String]) -> bool {
    for tag in list {
        if tag.is_empty() && snapshot_tags.is_empty() {
            return true;
        }
        if !snapshot_tags.contains(tag) {
            return false;
        }
    }
    true
}

/// restic's `TagList.String()`: `[a, b]`.
fn format_tags(list: &[String]) -> String {
    format!("[{}]", list.join(", "))
}

/// Remaining budget of a count rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    Unlimited,
    Left(u64),
}

impl Budget {
    /// After keeping one snapshot: the rule's remaining budget, `None` when used up.
    fn spend(self) -> Option<Budget> {
        match self {
            Budget::Unlimited => Some(Budget::Unlimited),
            Budget::Left(n) if n > 1 => Some(Budget::Left(n - 1)),
            Budget::Left(_) => None,
        }
    }
}

/// The initial budget of a count rule, `None` when the rule is inactive.
fn budget(n: Option<i64>) -> Option<Budget> {
    match n {
        Some(-1) => Some(Budget::Unlimited),
        Some(n) => u64::try_from(n).ok().filter(|&n| n > 0).map(Budget::Left),
        None => None,
    }
}

fn active_duration(d: Option<RetentionDuration>) -> Option<RetentionDuration> {
    d.filter(|d| !d.is_zero())
}

struct CountRule {
    budget: Option<Budget>,
    kind: Kind,
    reason: &'static str,
    last: Option<i128>,
}

struct WithinRule {
    /// The duration and its cutoff (nanoseconds since the epoch, exclusive).
    window: Option<(RetentionDuration, i128)>,
    kind: Kind,
    reason: &'static str,
    last: Option<i128>,
}

/// How a rule maps a snapshot to its bucket.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Every snapshot is its own bucket (keep-last).
    Always,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Kind {
    fn key(self, t: &LocalTime, nr: usize) -> i128 {
        match self {
            // usize always fits in i128; the fallback is unreachable.
            Kind::Always => i128::try_from(nr).unwrap_or(i128::MAX),
            Kind::Hour => ((t.year * 100 + t.month) * 100 + t.day) * 100 + t.hour,
            Kind::Day => (t.year * 100 + t.month) * 100 + t.day,
            Kind::Week => t.iso_year * 100 + t.iso_week,
            Kind::Month => t.year * 100 + t.month,
            Kind::Year => t.year,
        }
    }
}

const NS_PER_SEC: i128 = 1_000_000_000;
const NS_PER_HOUR: i128 = 3600 * NS_PER_SEC;
const NS_PER_DAY: i128 = 24 * NS_PER_HOUR;

/// A snapshot's civil time fields at its own UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LocalTime {
    year: i128,
    month: i128,
    day: i128,
    hour: i128,
    iso_year: i128,
    iso_week: i128,
}

impl LocalTime {
    fn of(c: &Candidate) -> LocalTime {
        let local_ns = c.time.as_nanosecond() + i128::from(c.utc_offset_secs) * NS_PER_SEC;
        let days = local_ns.div_euclid(NS_PER_DAY);
        let hour = local_ns.rem_euclid(NS_PER_DAY) / NS_PER_HOUR;
        let (year, month, day) = civil_from_days(days);
        let (iso_year, iso_week) = iso_week(days);
        LocalTime {
            year,
            month,
            day,
            hour,
            iso_year,
            iso_week,
        }
    }
}

/// Days since 1970-01-01 to proleptic Gregorian (year, month 1..=12, day 1..=31).
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

/// Proleptic Gregorian date to days since 1970-01-01 (`month` in 1..=12; `day` may be
/// any value and simply offsets from the first of the month).
fn days_from_civil(year: i128, month: i128, day: i128) -> i128 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ISO 8601 (week-year, week) of the day `days` since 1970-01-01.
fn iso_week(days: i128) -> (i128, i128) {
    // 1970-01-01 was a Thursday; weekday 0 = Monday.
    let weekday = (days + 3).rem_euclid(7);
    let thursday = days - weekday + 3;
    let (iso_year, _, _) = civil_from_days(thursday);
    let week = (thursday - days_from_civil(iso_year, 1, 1)) / 7 + 1;
    (iso_year, week)
}

/// `newest - d` in nanoseconds since the epoch, computed like Go's
/// `t.AddDate(-y, -m, -d).Add(-h * time.Hour)` with `t` at the newest snapshot's offset:
/// year/month/day are subtracted on the civil date and then normalised (so a day past
/// the end of the month rolls over into the next month), hours are absolute.
fn within_cutoff(newest: &Candidate, d: RetentionDuration) -> i128 {
    let offset_ns = i128::from(newest.utc_offset_secs) * NS_PER_SEC;
    let local_ns = newest.time.as_nanosecond() + offset_ns;
    let days = local_ns.div_euclid(NS_PER_DAY);
    let time_of_day = local_ns.rem_euclid(NS_PER_DAY);
    let (year, month, day) = civil_from_days(days);

    let months0 = (year - i128::from(d.years)) * 12 + (month - 1) - i128::from(d.months);
    let new_year = months0.div_euclid(12);
    let new_month = months0.rem_euclid(12) + 1;
    let new_days = days_from_civil(new_year, new_month, 1) + (day - i128::from(d.days)) - 1;

    new_days * NS_PER_DAY + time_of_day - offset_ns - i128::from(d.hours) * NS_PER_HOUR
}

#[cfg(test)]
mod tests;
