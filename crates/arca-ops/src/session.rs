//! A session on one repository: the one storage stack that every front end opens a
//! repository through (the CLI, a job run, the dashboard).
//!
//! From the bottom up: the backend at the location (connections and retries from the
//! environment and the description), the request count of `ARCA_DEBUG_REQUESTS_FILE`,
//! bandwidth limits, the local cache of object stores, and the client-side append-only
//! layer. The config is read before the password is asked for, so a missing repository is
//! reported at once; for object stores its id names the cache directory.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arca_core::Repository;
use arca_core::index::Index;
use arca_core::lock::LockGuard;
use arca_storage::{
    AppendOnlyStorage, Bandwidth, CacheStorage, OpenOptions, Storage, ThrottleStorage,
};

use crate::cache::{CacheSetting, RepositoryCachePolicy, cache_tree_packs, ensure_cachedir_tag};
use crate::password::{PasswordError, PasswordSource};

/// Everything needed to open a repository, whoever describes it (CLI flags and `ARCA_*`
/// variables, or a repository of the daemon's config).
#[derive(Debug, Clone)]
pub struct RepositorySpec {
    pub location: String,
    pub password: PasswordSource,
    /// Requests in flight against an object store; `None` keeps the backend's default.
    pub connections: Option<usize>,
    pub upload_limit_kib: Option<u64>,
    pub download_limit_kib: Option<u64>,
    pub cache: CacheSetting,
    /// Refuse deletes on the client side (`--append-only`, `append_only = true`).
    pub append_only: bool,
    /// How long to wait for a conflicting repository lock before giving up.
    pub lock_wait: Duration,
}

impl RepositorySpec {
    /// A description with defaults: no limits, the default cache, no lock waiting.
    pub fn new(location: impl Into<String>, password: PasswordSource) -> RepositorySpec {
        RepositorySpec {
            location: location.into(),
            password,
            connections: None,
            upload_limit_kib: None,
            download_limit_kib: None,
            cache: CacheSetting::Default,
            append_only: false,
            lock_wait: Duration::ZERO,
        }
    }
}

/// Whether a session may serve reads from the local cache. `check` and `repair` must judge
/// the objects the storage holds, not local copies of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Cached,
    Uncached,
}

/// Why a repository could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Storage(#[from] arca_storage::StorageError),
    #[error(transparent)]
    Repository(#[from] arca_core::Error),
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// An open repository and what was opened with it.
pub struct Session {
    repository: Arc<Repository>,
    cache: Weak<CacheStorage<Arc<dyn Storage>>>,
    lock_wait: Duration,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("location", &self.repository.location())
            .field("cached", &self.cache.upgrade().is_some())
            .finish()
    }
}

/// The storage at the location, below the cache and append-only layers: for `init`, which
/// creates the repository there.
pub fn backend(spec: &RepositorySpec) -> Result<Arc<dyn Storage>, OpenError> {
    let mut options = OpenOptions::from_env()?;
    if let Some(n) = spec.connections {
        options.connections = Some(n.max(1));
    }
    let storage = arca_storage::open_location_with(&spec.location, &options)?;
    let storage = crate::request_report::wrap(storage);
    if spec.upload_limit_kib.is_none() && spec.download_limit_kib.is_none() {
        return Ok(storage);
    }
    Ok(Arc::new(ThrottleStorage::new(
        storage,
        spec.upload_limit_kib.map(Bandwidth::kib_per_sec),
        spec.download_limit_kib.map(Bandwidth::kib_per_sec),
    )))
}

/// The repository id and the append-only flag of a config object, read without the key
/// (both are plaintext fields).
fn config_fields(raw: Option<&[u8]>) -> (Option<String>, bool) {
    let fields: Option<serde_json::Value> = raw.and_then(|c| serde_json::from_slice(c).ok());
    let id = fields
        .as_ref()
        .and_then(|v| v.get("id")?.as_str().map(str::to_string))
        .filter(|id| id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()));
    let append_only = fields
        .as_ref()
        .and_then(|v| v.get("append_only")?.as_bool())
        .unwrap_or(false);
    (id, append_only)
}

impl Session {
    /// Opens the repository described by `spec`.
    pub fn open(spec: &RepositorySpec, access: Access) -> Result<Session, OpenError> {
        let backend = backend(spec)?;
        let config = match backend.read("config") {
            Ok(raw) => Some(raw),
            Err(e) if e.is_not_found() => {
                arca_core::repo::ensure_repository(backend.as_ref(), &spec.location)?;
                return Err(e.into());
            }
            // Repository::open reports it, as for any other object.
            Err(_) => None,
        };
        let (repo_id, config_append_only) = config_fields(config.as_deref());
        let mut warnings = Vec::new();
        let mut storage = backend;
        let mut cache = Weak::new();
        if let (Some(id), Some(raw)) = (repo_id, config)
            && access == Access::Cached
            && !storage.properties().local
            && let Some(base) = spec.cache.base()
        {
            match open_cache(&storage, base, &id) {
                Ok(c) => {
                    c.remember("config", raw);
                    let c = Arc::new(c);
                    // Weak: the storage (and its request count) drops with the repository.
                    cache = Arc::downgrade(&c);
                    storage = c;
                }
                Err(e) => warnings.push(format!("working without a cache: {e}")),
            }
        }
        if spec.append_only || config_append_only {
            let reason = if config_append_only {
                "the repository's config (arca init --append-only)"
            } else {
                "the client's append-only setting (--append-only, ARCA_APPEND_ONLY or \
                 append_only = true)"
            };
            storage = Arc::new(AppendOnlyStorage::new(storage, reason));
        }
        let password = spec.password.read()?;
        let repository = Arc::new(Repository::open(storage, &password)?);
        Ok(Session {
            repository,
            cache,
            lock_wait: spec.lock_wait,
            warnings,
        })
    }

    pub fn repository(&self) -> &Arc<Repository> {
        &self.repository
    }

    /// What went wrong without stopping the session (a cache that could not be set up).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Loads the index and tells the cache which packs hold trees.
    pub fn load_index(&self) -> arca_core::Result<Index> {
        let index = self.repository.load_index()?;
        self.cache_tree_packs(&index);
        Ok(index)
    }

    /// Tells the cache (if any) to keep the packs that hold the trees of `index`.
    pub fn cache_tree_packs(&self, index: &Index) {
        self.cache_handle().cache_tree_packs(index);
    }

    /// A handle on the session's cache that does not keep the repository open.
    pub fn cache_handle(&self) -> CacheHandle {
        CacheHandle(self.cache.clone())
    }

    /// Takes a repository lock, waiting up to the description's lock wait while another
    /// process holds a conflicting one. `stop` ends the wait early (interrupted).
    pub fn lock(
        &self,
        exclusive: bool,
        operation: &str,
        stop: &dyn Fn() -> bool,
    ) -> arca_core::Result<LockGuard> {
        arca_core::lock::acquire_waiting(
            &self.repository,
            exclusive,
            operation,
            self.lock_wait,
            stop,
        )
    }
}

/// A weak handle on a session's cache (empty when the session has none, or is gone).
#[derive(Clone, Default)]
pub struct CacheHandle(Weak<CacheStorage<Arc<dyn Storage>>>);

impl CacheHandle {
    /// A handle on no cache (usable in a `static`).
    pub const EMPTY: CacheHandle = CacheHandle(Weak::new());

    /// Tells the cache to keep the packs that hold the trees of `index`.
    pub fn cache_tree_packs(&self, index: &Index) {
        if let Some(cache) = self.0.upgrade() {
            cache_tree_packs(&cache, index);
        }
    }
}

fn open_cache(
    storage: &Arc<dyn Storage>,
    base: PathBuf,
    repo_id: &str,
) -> arca_storage::Result<CacheStorage<Arc<dyn Storage>>> {
    let _ = ensure_cachedir_tag(&base);
    CacheStorage::new(
        storage.clone(),
        base.join(repo_id),
        Arc::new(RepositoryCachePolicy),
    )
}
