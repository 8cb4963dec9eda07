//! The file as written: the sections of a configuration file as serde reads them, every
//! value with its byte span.

use super::*;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) state: Option<String>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) nice: Option<Spanned<i32>>,
    pub(super) ionice: Option<Spanned<String>>,
    pub(super) max_concurrent_runs: Option<Spanned<usize>>,
    pub(super) token_file: Option<Spanned<String>>,
    pub(super) token_env: Option<Spanned<String>>,
    pub(super) session_idle: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRepository {
    pub(super) location: Spanned<String>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) password_command: Option<Spanned<String>>,
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) password_command_timeout: Option<Spanned<String>>,
    pub(super) media: Option<String>,
    #[serde(default)]
    pub(super) offsite: bool,
    pub(super) connections: Option<Spanned<usize>>,
    pub(super) upload_limit_kib: Option<u64>,
    pub(super) download_limit_kib: Option<u64>,
    #[serde(default)]
    pub(super) append_only: bool,
    pub(super) cache: Option<bool>,
    pub(super) cache_dir: Option<Spanned<String>>,
    pub(super) lock_wait: Option<Spanned<String>>,
}

/// A string or a list of strings (`window = "22:00-06:00"` or `window = ["..", ".."]`).
#[derive(Debug)]
pub(super) struct OneOrMany(pub(super) Vec<String>);

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
pub(super) struct RawExclusion {
    pub(super) from: Option<Spanned<String>>,
    pub(super) to: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) reason: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRotation {
    #[serde(default)]
    pub(super) full: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) differential: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) incremental: Vec<Spanned<String>>,
    pub(super) default: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) keep_last: Option<Spanned<i64>>,
    pub(super) keep_hourly: Option<Spanned<i64>>,
    pub(super) keep_daily: Option<Spanned<i64>>,
    pub(super) keep_weekly: Option<Spanned<i64>>,
    pub(super) keep_monthly: Option<Spanned<i64>>,
    pub(super) keep_yearly: Option<Spanned<i64>>,
    pub(super) keep_within: Option<Spanned<String>>,
    pub(super) keep_within_hourly: Option<Spanned<String>>,
    pub(super) keep_within_daily: Option<Spanned<String>>,
    pub(super) keep_within_weekly: Option<Spanned<String>>,
    pub(super) keep_within_monthly: Option<Spanned<String>>,
    pub(super) keep_within_yearly: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) keep_tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrune {
    pub(super) schedule: Spanned<String>,
    pub(super) max_unused: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    #[serde(default)]
    pub(super) pre: Vec<String>,
    #[serde(default)]
    pub(super) post: Vec<String>,
    #[serde(default)]
    pub(super) failure: Vec<String>,
    pub(super) timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) nice: Option<Spanned<i32>>,
    pub(super) ionice: Option<Spanned<String>>,
    pub(super) threads: Option<Spanned<usize>>,
    pub(super) connections: Option<Spanned<usize>>,
    pub(super) upload_limit_kib: Option<u64>,
    pub(super) download_limit_kib: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
    pub(super) dbname: Spanned<String>,
    pub(super) format: Option<Spanned<String>>,
    pub(super) jobs: Option<usize>,
    pub(super) bindir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMysql {
    #[serde(default)]
    pub(super) databases: Vec<String>,
    #[serde(default)]
    pub(super) all_databases: bool,
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) socket: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) defaults_file: Option<String>,
    #[serde(default)]
    pub(super) options: Vec<String>,
}

/// `[alerts]` (defaults for every job) and `[jobs.NAME.alerts]` (overrides).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub(super) channels: Option<Vec<Spanned<String>>>,
    pub(super) run_failed: Option<bool>,
    pub(super) run_late: Option<bool>,
    pub(super) late_after: Option<Spanned<String>>,
    pub(super) window_missed: Option<bool>,
    pub(super) rpo_breached: Option<bool>,
    pub(super) drill_failed: Option<bool>,
    pub(super) rto_exceeded: Option<bool>,
    pub(super) storage_full: Option<bool>,
    pub(super) storage_percent: Option<Spanned<f64>>,
    pub(super) repeat: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDrill {
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) snapshot: Option<String>,
    #[serde(default)]
    pub(super) checks: Vec<String>,
    pub(super) check_timeout: Option<Spanned<String>>,
    pub(super) tier: Option<Spanned<String>>,
    pub(super) scratch: Option<String>,
    pub(super) target: Option<String>,
    #[serde(default)]
    pub(super) provision: Vec<String>,
    #[serde(default)]
    pub(super) configure: Vec<String>,
    #[serde(default)]
    pub(super) start: Vec<String>,
    pub(super) hook_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub(super) sources: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) exclude: Vec<String>,
    #[serde(default)]
    pub(super) exclude_if_present: Vec<String>,
    #[serde(default)]
    pub(super) one_file_system: bool,
    pub(super) command: Option<Spanned<String>>,
    pub(super) command_filename: Option<String>,
    pub(super) postgres: Option<Spanned<RawPostgres>>,
    pub(super) mysql: Option<Spanned<RawMysql>>,
    pub(super) repositories: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) rpo: Option<Spanned<String>>,
    pub(super) rto: Option<Spanned<String>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) window: Option<Spanned<OneOrMany>>,
    pub(super) on_window_close: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) exclusions: Vec<Spanned<RawExclusion>>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    pub(super) host: Option<String>,
    #[serde(default)]
    pub(super) checksum: bool,
    pub(super) rotation: Option<RawRotation>,
    pub(super) retention: Option<RawRetention>,
    pub(super) prune: Option<RawPrune>,
    pub(super) hooks: Option<RawHooks>,
    pub(super) limits: Option<RawLimits>,
    pub(super) alerts: Option<RawAlerts>,
    pub(super) drill: Option<RawDrill>,
}
