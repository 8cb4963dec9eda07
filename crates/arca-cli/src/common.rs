//! Shared plumbing of the commands: opening the repository (storage layers: connections,
//! bandwidth limits, the local cache of object stores, append-only mode), resolving snapshot
//! references, filtering snapshots, interrupt handling.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyhow::{Context, Result, bail};
use arca_core::format::{BlobKind, Snapshot};
use arca_core::index::Index;
use arca_core::repo::pack_name;
use arca_core::{Id, Repository};
use arca_storage::{
    AppendOnlyStorage, Bandwidth, CachePolicy, CacheStorage, CountingStorage, ObjectInfo,
    OpenOptions, Properties, Result as StorageResult, Storage, ThrottleStorage,
};

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

/// The storage at the repository location, without cache or append-only layers: options
/// from the environment, `--connections`, bandwidth limits, and (when
/// `ARCA_DEBUG_REQUESTS_FILE` is set) a count of the requests, appended to that file as a
/// JSON line when the storage is dropped.
fn backend(g: &GlobalArgs, loc: &str) -> Result<Arc<dyn Storage>> {
    let mut options = OpenOptions::from_env()?;
    if let Some(n) = g.connections {
        options.connections = Some(n.max(1));
    }
    let mut storage = arca_storage::open_location_with(loc, &options)?;
    if let Some(file) = std::env::var_os("ARCA_DEBUG_REQUESTS_FILE").filter(|f| !f.is_empty()) {
        let counting = Arc::new(CountingStorage::new(storage));
        storage = Arc::new(RequestReport {
            counting,
            file: file.into(),
        });
    }
    if g.limit_upload.is_some() || g.limit_download.is_some() {
        storage = Arc::new(ThrottleStorage::new(
            storage,
            g.limit_upload.map(Bandwidth::kib_per_sec),
            g.limit_download.map(Bandwidth::kib_per_sec),
        ));
    }
    Ok(storage)
}

/// The storage at the repository location (for `init`: no cache, no append-only layer).
pub fn storage(g: &GlobalArgs) -> Result<Arc<dyn Storage>> {
    let loc = location(g)?;
    backend(g, &loc)
}

/// Opens the repository (asks for the password as configured).
///
/// The `config` is read first (before asking for a password, so a missing repository is
/// reported at once); for object stores its repository id names the cache directory, and
/// the cache serves the config from memory afterwards. The append-only layer is added when
/// `--append-only` / `ARCA_APPEND_ONLY` is given or the config says so.
pub fn open(g: &GlobalArgs) -> Result<Arc<Repository>> {
    open_with(g, true)
}

/// Like [`open`], without the cache: for `check` and `repair`, which must judge the objects
/// the storage holds, not local copies of them.
pub fn open_uncached(g: &GlobalArgs) -> Result<Arc<Repository>> {
    open_with(g, false)
}

fn open_with(g: &GlobalArgs, use_cache: bool) -> Result<Arc<Repository>> {
    *CACHE.lock().unwrap_or_else(|p| p.into_inner()) = Weak::new();
    let loc = location(g)?;
    let backend = backend(g, &loc)?;
    let config = match backend.read("config") {
        Ok(raw) => Some(raw),
        Err(e) if e.is_not_found() => {
            arca_core::repo::ensure_repository(backend.as_ref(), &loc)?;
            return Err(e.into());
        }
        // Repository::open reports it, as for any other object.
        Err(_) => None,
    };
    let fields: Option<serde_json::Value> = config
        .as_deref()
        .and_then(|c| serde_json::from_slice(c).ok());
    let repo_id = fields
        .as_ref()
        .and_then(|v| v.get("id")?.as_str().map(str::to_string))
        .filter(|id| id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()));
    let config_append_only = fields
        .as_ref()
        .and_then(|v| v.get("append_only")?.as_bool())
        .unwrap_or(false);
    let mut storage = backend;
    if let (Some(id), Some(raw)) = (repo_id, config)
        && use_cache
        && !storage.properties().local
        && !g.no_cache
        && let Some(base) = cache_base(g)
    {
        let _ = ensure_cachedir_tag(&base);
        match CacheStorage::new(
            storage.clone(),
            base.join(&id),
            Arc::new(RepositoryCachePolicy),
        ) {
            Ok(cache) => {
                cache.remember("config", raw);
                let cache = Arc::new(cache);
                // Weak: the storage (and the request report) must drop with the repository.
                *CACHE.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&cache);
                storage = cache;
            }
            Err(e) if !g.quiet => eprintln!("warning: working without a cache: {e}"),
            Err(_) => {}
        }
    }
    if g.append_only || config_append_only {
        let reason = if config_append_only {
            "the repository's config (arca init --append-only)"
        } else {
            "--append-only / ARCA_APPEND_ONLY"
        };
        storage = Arc::new(AppendOnlyStorage::new(storage, reason));
    }
    let password = crate::password::get(g, false)?;
    Ok(Arc::new(Repository::open(storage, &password)?))
}

/// The cache of the repository opened last by [`open`], if it has one (weak: the storage
/// and its request report must drop with the repository).
static CACHE: Mutex<Weak<CacheStorage<Arc<dyn Storage>>>> = Mutex::new(Weak::new());

/// The cache directory shared by all repositories: `--cache-dir` / `ARCA_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/arca`, else `~/.cache/arca`.
fn cache_base(g: &GlobalArgs) -> Option<PathBuf> {
    if let Some(d) = &g.cache_dir {
        return Some(d.clone());
    }
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("arca"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("arca"))
}

/// Marks the cache directory for backup tools (https://bford.info/cachedir/).
fn ensure_cachedir_tag(base: &Path) -> std::io::Result<()> {
    let tag = base.join("CACHEDIR.TAG");
    if tag.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(base)?;
    std::fs::write(
        tag,
        "Signature: 8a477f597d28d172789f06886806bc55\n\
         # This file is a cache directory tag created by arca.\n\
         # For information about cache directory tags see https://bford.info/cachedir/\n",
    )
}

/// What the cache keeps: snapshots, index files and key files (and, through
/// [`cache_tree_packs`], the packs holding trees). Snapshots, index files and packs are
/// named by the BLAKE3 hash of their bytes, which every cached copy must match.
struct RepositoryCachePolicy;

impl CachePolicy for RepositoryCachePolicy {
    fn cacheable(&self, name: &str) -> bool {
        ["snapshots/", "index/", "keys/"]
            .iter()
            .any(|p| name.starts_with(p))
    }

    fn verify(&self, name: &str, data: &[u8]) -> bool {
        match name.rsplit_once('/') {
            // Key files are named by random ids; the cache's own checksum guards them.
            Some(("keys", _)) => true,
            Some((_, id)) => id.parse::<Id>().is_ok_and(|id| Id::of_object(data) == id),
            None => false,
        }
    }
}

/// Tells the cache (if any) to keep whole copies of the packs that hold trees, so that
/// `ls`, `find`, `diff` and the parent of an incremental backup read trees locally.
pub fn cache_tree_packs(index: &Index) {
    let cache = CACHE.lock().unwrap_or_else(|p| p.into_inner()).upgrade();
    let Some(cache) = cache else {
        return;
    };
    let packs: HashSet<Id> = index
        .iter()
        .filter(|l| l.entry.kind == BlobKind::Tree)
        .map(|l| l.pack)
        .collect();
    cache.cache_whole(packs.iter().map(pack_name));
}

/// Refuses an operation that deletes (`forget`, `prune`) on an append-only repository: one
/// whose config says so, opened with `--append-only`, or whose storage refuses deletes
/// (checked by deleting a probe object, before anything else is removed).
pub fn ensure_may_delete(repo: &Repository, operation: &str) -> Result<()> {
    let why = if repo.config().append_only {
        "its config says so (created with arca init --append-only)"
    } else if repo.storage().properties().append_only {
        "--append-only or ARCA_APPEND_ONLY is set"
    } else if arca_core::lock::deletes_refused(repo)? {
        "the storage refuses deletes (a credential without delete permission, or a bucket \
         policy)"
    } else {
        return Ok(());
    };
    bail!(
        "the repository {} is append-only ({why}): {operation} is refused; run it with a \
         credential that may delete",
        repo.location()
    )
}

/// Counts the requests of a storage and appends the counts to a file when dropped (for
/// tests and diagnostics: `ARCA_DEBUG_REQUESTS_FILE`).
struct RequestReport {
    counting: Arc<CountingStorage<Arc<dyn Storage>>>,
    file: PathBuf,
}

impl Drop for RequestReport {
    fn drop(&mut self) {
        let c = self.counting.counts();
        let line = serde_json::json!({
            "total": c.total(),
            "lists": c.lists,
            "reads": c.reads,
            "range_reads": c.range_reads,
            "writes": c.writes,
            "deletes": c.deletes,
            "stats": c.stats,
            "creates": c.creates,
            "bytes_read": c.bytes_read,
            "bytes_written": c.bytes_written,
        });
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!(
                "warning: cannot write request counts to {}: {e}",
                self.file.display()
            );
        }
    }
}

impl Storage for RequestReport {
    fn properties(&self) -> Properties {
        self.counting.properties()
    }
    fn create(&self) -> StorageResult<()> {
        self.counting.create()
    }
    fn read(&self, name: &str) -> StorageResult<Vec<u8>> {
        self.counting.read(name)
    }
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        self.counting.read_range_into(name, offset, length, buf)
    }
    fn write(&self, name: &str, data: &[u8]) -> StorageResult<()> {
        self.counting.write(name, data)
    }
    fn delete(&self, name: &str) -> StorageResult<()> {
        self.counting.delete(name)
    }
    fn stat(&self, name: &str) -> StorageResult<ObjectInfo> {
        self.counting.stat(name)
    }
    fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectInfo>> {
        self.counting.list(prefix)
    }
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

/// Takes a repository lock, waiting up to `--retry-lock` for a conflicting one to go.
pub fn lock(
    g: &GlobalArgs,
    repo: &Arc<Repository>,
    exclusive: bool,
    operation: &str,
) -> Result<arca_core::lock::LockGuard> {
    let wait = match &g.retry_lock {
        None => std::time::Duration::ZERO,
        Some(s) => {
            let d: jiff::SignedDuration = s.parse().with_context(|| {
                format!("invalid --retry-lock {s:?}: expected a duration such as 30s, 5m or 1h")
            })?;
            std::time::Duration::try_from(d)
                .map_err(|_| anyhow::anyhow!("invalid --retry-lock {s:?}: must not be negative"))?
        }
    };
    Ok(arca_core::lock::acquire_waiting(
        repo,
        exclusive,
        operation,
        wait,
        &interrupted,
    )?)
}
