//! Durations in drill and alert settings, in the one grammar of
//! [`arca_core::units`] (`1ms`, `90s`, `10m`, `1h30m`, `2d`, `1w`), and their serde form.

pub use arca_core::units::elapsed_str as duration_str;
pub use arca_core::units::format_elapsed as format_duration;
