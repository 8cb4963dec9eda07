//! The local cache of a repository on an object store: where it lives, what it keeps
//! (snapshots, index files, key files and the packs that hold trees), and how a cached
//! copy is checked before it is used.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use arca_core::Id;
use arca_core::format::BlobKind;
use arca_core::index::Index;
use arca_core::repo::pack_name;
use arca_storage::{CachePolicy, CacheStorage, Storage};

/// Where a session keeps its cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CacheSetting {
    /// `ARCA_CACHE_DIR`, else `$XDG_CACHE_HOME/arca`, else `~/.cache/arca`.
    #[default]
    Default,
    /// A directory shared by all repositories (one subdirectory per repository id).
    Dir(PathBuf),
    /// No cache: every read goes to the storage.
    Off,
}

impl CacheSetting {
    /// The base directory, or `None` when there is no cache.
    pub fn base(&self) -> Option<PathBuf> {
        match self {
            CacheSetting::Off => None,
            CacheSetting::Dir(d) => Some(d.clone()),
            CacheSetting::Default => default_base(),
        }
    }
}

fn default_base() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = nonempty("ARCA_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(x) = nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("arca"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("arca"))
}

/// Marks the cache directory for backup tools (https://bford.info/cachedir/).
pub(crate) fn ensure_cachedir_tag(base: &Path) -> std::io::Result<()> {
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
pub(crate) struct RepositoryCachePolicy;

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

/// Tells the cache to keep whole copies of the packs that hold trees, so that `ls`,
/// `find`, `diff` and the parent of an incremental backup read trees locally.
pub(crate) fn cache_tree_packs<S: Storage>(cache: &CacheStorage<S>, index: &Index) {
    let packs: HashSet<Id> = index
        .iter()
        .filter(|l| l.entry.kind == BlobKind::Tree)
        .map(|l| l.pack)
        .collect();
    cache.cache_whole(packs.iter().map(pack_name));
}
