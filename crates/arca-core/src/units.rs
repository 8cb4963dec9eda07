//! The one grammar of durations and sizes that every option and config key uses (the CLI
//! and the daemon's TOML both parse through here).
//!
//! A duration is a sum of `<number><unit>` parts, e.g. `90s`, `1h30m`, `2d12h`, `1y6mo`:
//!
//! | unit | meaning |
//! | --- | --- |
//! | `ms` | milliseconds |
//! | `s` | seconds |
//! | `m`, `min` | minutes |
//! | `h` | hours |
//! | `d` | days |
//! | `w` | weeks |
//! | `mo` | calendar months |
//! | `y` | calendar years |
//!
//! Two kinds of duration read this grammar:
//! - an elapsed time ([`parse_elapsed`]: timeouts, schedules, RPOs, lock waits) takes `ms`
//!   to `w`, where a day is 24 hours; months and years have no fixed length there and are
//!   refused with a message that says to write days;
//! - a calendar span ([`parse_calendar`]: `--keep-within*`, retention in job configs) takes
//!   `h`, `d`, `w`, `mo` and `y`. restic writes months as `m` in these options; arca reads
//!   `m` as minutes everywhere, so a calendar span with `m` is refused with a message that
//!   says to write `mo` for months.
//!
//! A size ([`parse_size`]) is a number with an optional binary unit: `512`, `64K`, `100M`,
//! `1.5G`, `2T` (also `KiB`, `MiB`, ...; `B` alone is bytes).

use std::str::FromStr;
use std::time::Duration;

/// A duration or a size that does not follow the grammar, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct UnitError {
    /// "duration" or "size".
    pub what: &'static str,
    pub input: String,
    pub reason: String,
}

/// A unit of the duration grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millis,
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
    Years,
}

/// One `<number><unit>` part of a duration, with the text that named the unit.
struct Part<'a> {
    number: u64,
    unit: Unit,
    unit_text: &'a str,
}

/// Splits a duration into its parts (any unit of the grammar).
fn parts(input: &str) -> Result<Vec<Part<'_>>, UnitError> {
    let err = |reason: String| UnitError {
        what: "duration",
        input: input.trim().to_string(),
        reason,
    };
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(err("empty; expected e.g. 90s, 10m, 1h30m, 2d".into()));
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err(format!(
                "expected a number at {rest:?} (e.g. 500ms, 90s, 10m, 1h30m, 7d)"
            )));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large".into()))?;
        let after = &rest[digits..];
        let letters = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let unit_text = &after[..letters];
        let unit = match unit_text {
            "ms" => Unit::Millis,
            "s" => Unit::Seconds,
            "m" | "min" => Unit::Minutes,
            "h" => Unit::Hours,
            "d" => Unit::Days,
            "w" => Unit::Weeks,
            "mo" => Unit::Months,
            "y" => Unit::Years,
            "" => {
                return Err(err(format!(
                    "missing unit after {number} (use ms, s, m, h, d, w, mo or y)"
                )));
            }
            other => {
                return Err(err(format!(
                    "unknown unit {other:?} (use ms, s, m or min, h, d, w, mo or y)"
                )));
            }
        };
        out.push(Part {
            number,
            unit,
            unit_text,
        });
        rest = &after[letters..];
    }
    Ok(out)
}

/// Parses an elapsed time: `ms`, `s`, `m`/`min`, `h`, `d` (24 hours), `w`. Zero is allowed
/// here; callers that need a positive duration say so.
pub fn parse_elapsed(input: &str) -> Result<Duration, UnitError> {
    let err = |reason: String| UnitError {
        what: "duration",
        input: input.trim().to_string(),
        reason,
    };
    let mut total = Duration::ZERO;
    for p in parts(input)? {
        let unit_secs: u64 = match p.unit {
            Unit::Millis => {
                total = total
                    .checked_add(Duration::from_millis(p.number))
                    .ok_or_else(|| err("too large".into()))?;
                continue;
            }
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3600,
            Unit::Days => 86_400,
            Unit::Weeks => 7 * 86_400,
            Unit::Months | Unit::Years => {
                return Err(err(format!(
                    "{}{} has no fixed length here; write days instead (e.g. {}d)",
                    p.number,
                    p.unit_text,
                    p.number
                        .saturating_mul(if p.unit == Unit::Years { 365 } else { 30 })
                )));
            }
        };
        let secs = p
            .number
            .checked_mul(unit_secs)
            .ok_or_else(|| err("too large".into()))?;
        total = total
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| err("too large".into()))?;
    }
    Ok(total)
}

/// Formats an elapsed time the way [`parse_elapsed`] reads it (`1h30m`, `250ms`, `0s`).
pub fn format_elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut secs = (ms / 1000) as u64;
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    if !ms.is_multiple_of(1000) {
        out.push_str(&format!("{}ms", ms % 1000));
    }
    out
}

/// A span of calendar time: years and months as on the calendar, days, hours.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct CalendarSpan {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl CalendarSpan {
    pub fn is_zero(&self) -> bool {
        *self == CalendarSpan::default()
    }
}

impl std::fmt::Display for CalendarSpan {
    /// Non-zero components only, in the grammar that parses them, e.g. `1y2mo`, `3d4h`;
    /// zero is `0h`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, "y"),
            (self.months, "mo"),
            (self.days, "d"),
            (self.hours, "h"),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for CalendarSpan {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_calendar(s)
    }
}

/// Parses a calendar span: `y`, `mo`, `w` (7 days), `d`, `h`, e.g. `1y6mo`, `14d`, `36h`.
/// `m` (minutes in this grammar, months in restic's `--keep-within`) is refused with a
/// message that says to write `mo`.
pub fn parse_calendar(input: &str) -> Result<CalendarSpan, UnitError> {
    let err = |reason: String| UnitError {
        what: "duration",
        input: input.trim().to_string(),
        reason,
    };
    let mut span = CalendarSpan::default();
    let add = |slot: &mut u32, n: u64| -> Result<(), UnitError> {
        let n = u32::try_from(n).map_err(|_| err("number too large".into()))?;
        *slot = slot
            .checked_add(n)
            .ok_or_else(|| err("number too large".into()))?;
        Ok(())
    };
    for p in parts(input)? {
        match p.unit {
            Unit::Years => add(&mut span.years, p.number)?,
            Unit::Months => add(&mut span.months, p.number)?,
            Unit::Weeks => add(&mut span.days, p.number.saturating_mul(7))?,
            Unit::Days => add(&mut span.days, p.number)?,
            Unit::Hours => add(&mut span.hours, p.number)?,
            Unit::Minutes if p.unit_text == "m" => {
                return Err(err(format!(
                    "`m` means minutes in arca, and this duration counts hours and more; for \
                     months write {n}mo (restic's {n}m), for hours write e.g. {n}h",
                    n = p.number
                )));
            }
            Unit::Minutes | Unit::Seconds | Unit::Millis => {
                return Err(err(format!(
                    "{}{} is finer than this duration counts; use h, d, w, mo or y",
                    p.number, p.unit_text
                )));
            }
        }
    }
    Ok(span)
}

/// Parses a size: a number (fractions allowed) with an optional binary unit `K`, `M`, `G`,
/// `T` (or `KiB`, `MiB`, `GiB`, `TiB`, `B`), case-insensitive.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let err = |reason: &str| UnitError {
        what: "size",
        input: input.trim().to_string(),
        reason: reason.to_string(),
    };
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        "t" | "tib" | "tb" => 40,
        _ => return Err(err("unknown unit (use K, M, G or T, e.g. 100M)")),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| err("expected a number such as 512, 64K, 100M or 1.5G"))?;
    let bytes = n * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(err("too large"));
    }
    Ok(bytes as u64)
}

/// An elapsed time that parses with [`parse_elapsed`] and prints with [`format_elapsed`]
/// (for clap values and TOML keys alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Elapsed(pub Duration);

impl FromStr for Elapsed {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        parse_elapsed(s).map(Elapsed)
    }
}

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_elapsed(self.0))
    }
}

/// A size that parses with [`parse_size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        parse_size(s).map(Size)
    }
}

/// Serde of elapsed times written as strings (`"30m"`, `"250ms"`).
pub mod elapsed_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_elapsed(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_elapsed(&s).map_err(serde::de::Error::custom)
    }

    /// For `Option<Duration>` fields (`#[serde(default, with = "elapsed_str::option")]`).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&super::super::format_elapsed(*d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(s) => super::super::parse_elapsed(&s)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_times() {
        let ok = |s: &str| parse_elapsed(s).unwrap();
        assert_eq!(ok("1ms"), Duration::from_millis(1));
        assert_eq!(ok("60s"), Duration::from_secs(60));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("10min"), Duration::from_secs(600));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok(" 2d "), Duration::from_secs(172_800));
        assert_eq!(ok("1w"), Duration::from_secs(604_800));
        assert_eq!(ok("2s500ms"), Duration::from_millis(2500));
        assert_eq!(ok("0s"), Duration::ZERO);
        for bad in [
            "",
            "10",
            "5x",
            "h",
            "1h 30m",
            "-5s",
            "99999999999999999999s",
        ] {
            assert!(parse_elapsed(bad).is_err(), "{bad:?} accepted");
        }
        let months = parse_elapsed("1mo").unwrap_err().to_string();
        assert!(months.contains("write days instead (e.g. 30d)"), "{months}");
        assert!(parse_elapsed("1y").is_err());
    }

    #[test]
    fn elapsed_round_trips_through_its_format() {
        for ms in [0, 1, 999, 1000, 59_000, 61_001, 3_600_000, 90_061_001] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_elapsed(&format_elapsed(d)), Ok(d), "{ms} ms");
        }
        assert_eq!(format_elapsed(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn calendar_spans() {
        let ok = |s: &str| parse_calendar(s).unwrap();
        assert_eq!(
            ok("1y2mo3d4h"),
            CalendarSpan {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(ok("2w").days, 14);
        assert_eq!(ok("36h").hours, 36);
        let restic = parse_calendar("1y6m").unwrap_err().to_string();
        assert!(restic.contains("write 6mo"), "{restic}");
        assert!(parse_calendar("30min").is_err());
        assert!(parse_calendar("90s").is_err());
        assert!(parse_calendar("").is_err());
    }

    #[test]
    fn sizes() {
        let ok = |s: &str| parse_size(s).unwrap();
        assert_eq!(ok("512"), 512);
        assert_eq!(ok("64K"), 64 << 10);
        assert_eq!(ok("100m"), 100 << 20);
        assert_eq!(ok("1.5G"), 3 << 29);
        assert_eq!(ok("2TiB"), 2 << 40);
        assert_eq!(ok("7B"), 7);
        for bad in ["", "M", "10X", "1.2.3K", "-1K"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
