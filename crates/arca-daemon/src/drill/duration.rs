//! Durations in drill and alert settings: `1ms`, `90s`, `10m`, `1h30m`, `2d`, `1w`, with
//! millisecond precision, and their serde form.

use super::*;

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
