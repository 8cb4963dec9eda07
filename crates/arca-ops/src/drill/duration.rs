//! Durations in drill and alert settings, in the one grammar of
//! [`arca_core::units`] (`1ms`, `90s`, `10m`, `1h30m`, `2d`, `1w`), and their serde form.

use super::*;

/// Parses an elapsed time (see [`arca_core::units::parse_elapsed`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    arca_core::units::parse_elapsed(s).map_err(|e| e.to_string())
}

pub use arca_core::units::elapsed_str as duration_str;
pub use arca_core::units::format_elapsed as format_duration;
