//! Shared plumbing of the commands: the repository description that the flags name (opened
//! as an arca-ops session, the storage stack every front end shares), resolving snapshot
//! references, filtering snapshots, interrupt handling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use arca_core::format::Snapshot;
use arca_core::index::Index;
use arca_core::{Id, Repository};
use arca_ops::{Access, CacheHandle, CacheSetting, OpenError, RepositorySpec, Session};
use arca_storage::Storage;

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

/// The description of the repository that the flags and `ARCA_*` variables name.
pub fn spec(g: &GlobalArgs) -> Result<RepositorySpec> {
    spec_with(g, location(g)?, crate::password::source(g, false)?)
}

/// [`spec`] for the repository at `location` with its own password source (a second
/// repository, such as the source of a copy): the same connections, limits, cache and
/// lock waiting.
pub fn spec_with(
    g: &GlobalArgs,
    location: String,
    password: arca_ops::PasswordSource,
) -> Result<RepositorySpec> {
    let cache = if g.no_cache {
        CacheSetting::Off
    } else {
        g.cache_dir
            .clone()
            .map_or(CacheSetting::Default, CacheSetting::Dir)
    };
    Ok(RepositorySpec {
        location,
        password,
        connections: g.connections,
        upload_limit_kib: g.limit_upload,
        download_limit_kib: g.limit_download,
        cache,
        append_only: g.append_only,
        lock_wait: lock_wait(g)?,
    })
}

/// The storage at the repository location (for `init`: no cache, no append-only layer).
pub fn storage(g: &GlobalArgs) -> Result<Arc<dyn Storage>> {
    arca_ops::session::backend(&spec(g)?).map_err(open_error)
}

/// Opens the repository (asks for the password as configured): a session of arca-ops,
/// whose cache is remembered for [`load_index`].
pub fn open(g: &GlobalArgs) -> Result<Arc<Repository>> {
    open_with(g, Access::Cached)
}

/// Like [`open`], without the cache: for `check` and `repair`, which must judge the objects
/// the storage holds, not local copies of them.
pub fn open_uncached(g: &GlobalArgs) -> Result<Arc<Repository>> {
    open_with(g, Access::Uncached)
}

fn open_with(g: &GlobalArgs, access: Access) -> Result<Arc<Repository>> {
    Ok(open_session(g, access)?.repository().clone())
}

/// Opens a session on the repository (with the cache), for the operations of arca-ops.
pub fn session(g: &GlobalArgs) -> Result<Session> {
    open_session(g, Access::Cached)
}

/// Opens a session that reads the storage itself (no cache), for `check`.
pub fn session_uncached(g: &GlobalArgs) -> Result<Session> {
    open_session(g, Access::Uncached)
}

fn open_session(g: &GlobalArgs, access: Access) -> Result<Session> {
    *CACHE.lock().unwrap_or_else(|p| p.into_inner()) = CacheHandle::default();
    let session = Session::open(&spec(g)?, access).map_err(open_error)?;
    if !g.quiet {
        for w in session.warnings() {
            eprintln!("warning: {w}");
        }
    }
    *CACHE.lock().unwrap_or_else(|p| p.into_inner()) = session.cache_handle();
    Ok(session)
}

/// The error of opening, as the error it wraps (so the exit code follows its kind).
pub fn open_error(e: OpenError) -> anyhow::Error {
    match e {
        OpenError::Storage(e) => e.into(),
        OpenError::Repository(e) => e.into(),
        OpenError::Password(e) => e.into(),
    }
}

/// The cache of the repository opened last by [`open`] (weak: the storage and its request
/// count must drop with the repository).
static CACHE: Mutex<CacheHandle> = Mutex::new(CacheHandle::EMPTY);

/// Tells the cache (if any) to keep whole copies of the packs that hold trees, so that
/// `ls`, `find`, `diff` and the parent of an incremental backup read trees locally.
pub fn cache_tree_packs(index: &Index) {
    CACHE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .cache_tree_packs(index);
}

/// Refuses an operation that deletes (`forget`, `prune`) on an append-only repository
/// (see [`arca_ops::prune::ensure_may_delete`]).
pub fn ensure_may_delete(repo: &Repository, operation: &'static str) -> Result<()> {
    Ok(arca_ops::prune::ensure_may_delete(repo, operation)?)
}

/// Loads the index (and tells the cache which packs hold trees).
pub fn load_index(repo: &Repository) -> Result<Arc<Index>> {
    let index = repo.load_index().context("loading the index")?;
    cache_tree_packs(&index);
    Ok(Arc::new(index))
}

/// Splits `REF:sub/path` into the reference and the path.
pub fn split_ref(r: &str) -> (&str, Option<&str>) {
    match r.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (r, None),
    }
}

/// The operations' form of the snapshot filter flags.
pub fn ops_filter(f: &SnapshotFilter) -> arca_ops::forget::SnapshotFilter {
    arca_ops::forget::SnapshotFilter {
        hosts: f.hosts.clone(),
        tags: f.tags.clone(),
        paths: f.paths.clone(),
    }
}

/// Resolves a reference against the snapshots matching `filter` (for `latest`).
pub fn resolve(
    snaps: &[(Id, Snapshot)],
    reference: &str,
    filter: Option<&SnapshotFilter>,
) -> Result<(Id, Snapshot)> {
    let filtered: Vec<(Id, Snapshot)> = match filter.map(ops_filter) {
        Some(f) => snaps
            .iter()
            .filter(|(_, s)| f.matches(s))
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
        let filter = filter.map(ops_filter);
        return Ok(snaps
            .iter()
            .filter(|(_, s)| filter.as_ref().is_none_or(|f| f.matches(s)))
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

/// How long `--retry-lock` waits for a conflicting lock (zero without it).
fn lock_wait(g: &GlobalArgs) -> Result<std::time::Duration> {
    match &g.retry_lock {
        None => Ok(std::time::Duration::ZERO),
        Some(s) => arca_core::units::parse_elapsed(s)
            .with_context(|| format!("--retry-lock {s:?} (ARCA_RETRY_LOCK)")),
    }
}

/// Takes a repository lock, waiting up to `--retry-lock` for a conflicting one to go.
pub fn lock(
    g: &GlobalArgs,
    repo: &Arc<Repository>,
    exclusive: bool,
    operation: &str,
) -> Result<arca_core::lock::LockGuard> {
    Ok(arca_core::lock::acquire_waiting(
        repo,
        exclusive,
        operation,
        lock_wait(g)?,
        &interrupted,
    )?)
}
