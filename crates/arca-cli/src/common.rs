//! Shared plumbing of the commands: opening the repository, resolving snapshot references,
//! filtering snapshots, interrupt handling.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use arca_core::format::Snapshot;
use arca_core::index::Index;
use arca_core::{Id, Repository};

use crate::cli::{GlobalArgs, SnapshotFilter};

static INTERRUPTED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Ctrl-C and SIGTERM set a flag that engines poll; a second Ctrl-C exits at once.
pub fn install_interrupt_handler() {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    let _ = INTERRUPTED.set(flag);
}

pub fn interrupted() -> bool {
    INTERRUPTED.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

pub fn location(g: &GlobalArgs) -> Result<String> {
    match &g.repo {
        Some(r) if !r.is_empty() => Ok(r.clone()),
        _ => bail!("no repository given: use -r/--repo or set ARCA_REPOSITORY"),
    }
}

pub fn storage(g: &GlobalArgs) -> Result<Arc<dyn arca_storage::Storage>> {
    let loc = location(g)?;
    Ok(arca_storage::open_location(&loc)?)
}

/// Opens the repository (asks for the password as configured).
pub fn open(g: &GlobalArgs) -> Result<Arc<Repository>> {
    let storage = storage(g)?;
    let loc = location(g)?;
    // Fail on a missing repository before asking for a password.
    arca_core::repo::ensure_repository(storage.as_ref(), &loc)?;
    let password = crate::password::get(g, false)?;
    Ok(Arc::new(Repository::open(storage, &password)?))
}

pub fn load_index(repo: &Repository) -> Result<Arc<Index>> {
    Ok(Arc::new(repo.load_index().context("loading the index")?))
}

/// Splits `REF:sub/path` into the reference and the path.
pub fn split_ref(r: &str) -> (&str, Option<&str>) {
    match r.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (r, None),
    }
}

pub fn matches_filter(s: &Snapshot, f: &SnapshotFilter) -> bool {
    (f.hosts.is_empty() || f.hosts.contains(&s.host))
        && (f.tags.is_empty()
            || f.tags.iter().any(|t| {
                t.split(',')
                    .filter(|x| !x.is_empty())
                    .all(|x| s.tags.iter().any(|st| st == x))
            }))
        && (f.paths.is_empty() || f.paths.iter().all(|p| s.paths.iter().any(|sp| sp == p)))
}

/// Resolves a reference against the snapshots matching `filter` (for `latest`).
pub fn resolve(
    snaps: &[(Id, Snapshot)],
    reference: &str,
    filter: Option<&SnapshotFilter>,
) -> Result<(Id, Snapshot)> {
    let filtered: Vec<(Id, Snapshot)> = match filter {
        Some(f) => snaps
            .iter()
            .filter(|(_, s)| matches_filter(s, f))
            .cloned()
            .collect(),
        None => snaps.to_vec(),
    };
    Ok(arca_core::repo::resolve_in(&filtered, reference)?)
}

/// The snapshots named by `refs`, or (without refs) all those matching `filter`.
pub fn select(
    snaps: &[(Id, Snapshot)],
    refs: &[String],
    filter: Option<&SnapshotFilter>,
) -> Result<Vec<(Id, Snapshot)>> {
    if refs.is_empty() {
        return Ok(snaps
            .iter()
            .filter(|(_, s)| filter.is_none_or(|f| matches_filter(s, f)))
            .cloned()
            .collect());
    }
    refs.iter().map(|r| resolve(snaps, r, None)).collect()
}

pub fn all_snapshots(repo: &Repository) -> Result<Vec<(Id, Snapshot)>> {
    let (snaps, bad) = repo.list_snapshots()?;
    for e in bad {
        eprintln!("warning: {e}");
    }
    Ok(snaps)
}

/// Formats bytes as KiB/MiB/GiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Local time for display.
pub fn local_time(t: jiff::Timestamp) -> String {
    t.to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

/// Key-derivation parameters for new keys: the defaults, or cheap ones when
/// `ARCA_INSECURE_TEST_KDF=1` (test suites only: such keys are easy to brute-force).
pub fn kdf_params() -> Option<arca_core::format::KdfParams> {
    (std::env::var("ARCA_INSECURE_TEST_KDF").as_deref() == Ok("1"))
        .then(arca_core::crypto::test_kdf_params)
}
