//! A local cache of small, hot, immutable objects in front of a remote storage.
//!
//! [`CacheStorage`] keeps copies of the objects a [`CachePolicy`] names (for arca: snapshots,
//! index files, key files) and of objects marked with [`CacheStorage::cache_whole`] (packs
//! holding trees, whose ranged reads are then served from one whole copy) in a directory on
//! local disk, so that listing snapshots or browsing trees makes few round trips to an
//! object store.
//!
//! - Objects are immutable, so a cached copy never goes out of date; it can only be removed
//!   remotely. A listing of a prefix drops the cached copies under that prefix that the
//!   listing no longer shows.
//! - Every cache file starts with the BLAKE3 hash of the object, and the policy may verify
//!   the content against the name (content-addressed objects). A cache file that fails
//!   either check is removed and the object is fetched again: the cache is never trusted.
//! - Writes go to the storage first and then to the cache (write-through); deletes remove
//!   both.
//! - The cache is an optimisation: any failure to read or write it falls back to the storage
//!   and is only counted ([`CacheStats`]).
//! - Objects already read in this process can be handed in with [`CacheStorage::remember`]
//!   (the repository `config`, read to find the cache directory).
//! - Objects cached whole are also kept in memory once loaded and checked (up to
//!   [`WHOLE_IN_MEMORY`] bytes, least recently used first out), so the many ranged reads of one
//!   tree pack read and hash its cache file once, not once per tree.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::{ErrorKind, ObjectInfo, Properties, Result, Storage, StorageError};

/// Which objects are cached and how their content is checked.
pub trait CachePolicy: Send + Sync {
    /// Whether `name` is cached whenever it is read or written.
    fn cacheable(&self, name: &str) -> bool;
    /// Whether `data` may be the content of `name` (true when the name says nothing about
    /// the content).
    fn verify(&self, name: &str, data: &[u8]) -> bool;
}

/// What the cache did, for tests and diagnostics.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Cache files that failed their checks and were removed.
    pub dropped: AtomicU64,
    /// Cache files removed because a listing no longer shows their object.
    pub evicted: AtomicU64,
    /// Failures to read or write the cache directory.
    pub errors: AtomicU64,
}

/// Prefix of temporary cache files.
const TEMP_PREFIX: &str = ".tmp-";
/// Length of the hash at the start of each cache file.
const HASH_LEN: usize = 32;

/// Bytes of whole objects (tree packs) kept in memory for ranged reads.
pub const WHOLE_IN_MEMORY: usize = 128 << 20;

/// Whole objects in memory, the least recently used dropped first past a byte budget.
#[derive(Default)]
struct WholeInMemory {
    objects: HashMap<String, (Arc<Vec<u8>>, u64)>,
    bytes: usize,
    clock: u64,
}

impl WholeInMemory {
    fn get(&mut self, name: &str) -> Option<Arc<Vec<u8>>> {
        self.clock += 1;
        let clock = self.clock;
        self.objects.get_mut(name).map(|(data, used)| {
            *used = clock;
            data.clone()
        })
    }

    fn insert(&mut self, name: &str, data: Arc<Vec<u8>>, budget: usize) {
        if data.len() > budget {
            return;
        }
        self.clock += 1;
        self.bytes += data.len();
        if let Some((old, _)) = self.objects.insert(name.to_string(), (data, self.clock)) {
            self.bytes -= old.len();
        }
        while self.bytes > budget {
            let Some(oldest) = self
                .objects
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some((old, _)) = self.objects.remove(name) {
            self.bytes -= old.len();
        }
    }
}

/// A storage with a local cache of its small immutable objects.
pub struct CacheStorage<S> {
    inner: S,
    /// Cache files live under `root/objects/NAME`.
    root: PathBuf,
    policy: Arc<dyn CachePolicy>,
    whole: RwLock<HashSet<String>>,
    memo: Mutex<HashMap<String, Vec<u8>>>,
    in_memory: Mutex<WholeInMemory>,
    stats: CacheStats,
}

impl<S: Storage> CacheStorage<S> {
    /// A cache of `inner` in directory `root` (created if missing; one directory per
    /// repository: the cache never checks which repository its files came from).
    pub fn new(inner: S, root: impl AsRef<Path>, policy: Arc<dyn CachePolicy>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let objects = root.join("objects");
        fs::create_dir_all(&objects).map_err(|e| {
            StorageError::new(
                ErrorKind::Other,
                "cache",
                &objects.display().to_string(),
                format!("cannot create the cache directory: {e}"),
            )
        })?;
        // Only the owner may read the copies (encrypted, but key files wrap the master key).
        let _ = fs::set_permissions(&root, fs::Permissions::from_mode(0o700));
        Ok(CacheStorage {
            inner,
            root,
            policy,
            whole: RwLock::new(HashSet::new()),
            memo: Mutex::new(HashMap::new()),
            in_memory: Mutex::new(WholeInMemory::default()),
            stats: CacheStats::default(),
        })
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Caches these objects whole, also when only ranges of them are read.
    pub fn cache_whole<I: IntoIterator<Item = String>>(&self, names: I) {
        let mut w = self.whole.write().unwrap_or_else(|p| p.into_inner());
        w.extend(names);
    }

    /// Serves `name` from memory for the rest of this process (an object already read).
    pub fn remember(&self, name: &str, data: Vec<u8>) {
        self.memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), data);
    }

    /// The path of the cache file of `name`.
    pub fn cache_path(&self, name: &str) -> Result<PathBuf> {
        crate::check_name("cache", name)?;
        Ok(self.root.join("objects").join(name))
    }

    fn is_whole(&self, name: &str) -> bool {
        self.whole
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    fn cached(&self, name: &str) -> bool {
        self.policy.cacheable(name) || self.is_whole(name)
    }

    /// The cached content of `name`, if a valid copy exists; an invalid copy is removed.
    fn load(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.cache_path(name).ok()?;
        let mut raw = match fs::read(&path) {
            Ok(r) => r,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
                return None;
            }
        };
        let valid = raw.len() >= HASH_LEN
            && blake3::hash(&raw[HASH_LEN..]).as_bytes()[..] == raw[..HASH_LEN]
            && self.policy.verify(name, &raw[HASH_LEN..]);
        if !valid {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = fs::remove_file(&path);
            return None;
        }
        raw.drain(..HASH_LEN);
        Some(raw)
    }

    /// Stores `data` as the cached content of `name` (atomically: temporary file, rename).
    fn store(&self, name: &str, data: &[u8]) {
        if !self.policy.verify(name, data) {
            // The storage returned something that is not this object; do not keep it.
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(path) = self.cache_path(name) else {
            return;
        };
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let mut suffix = [0u8; 8];
        let _ = getrandom::fill(&mut suffix);
        let tmp = dir.join(format!(
            "{TEMP_PREFIX}{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(suffix)
        ));
        let result = fs::create_dir_all(&dir)
            .and_then(|_| fs::File::create(&tmp))
            .and_then(|mut f| {
                f.write_all(blake3::hash(data).as_bytes())?;
                f.write_all(data)
            })
            .and_then(|_| fs::rename(&tmp, &path));
        if result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            let _ = fs::remove_file(&tmp);
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(path) = self.cache_path(name) {
            let _ = fs::remove_file(path);
        }
        self.in_memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Whole-object read through the cache.
    fn read_cached(&self, name: &str) -> Result<Vec<u8>> {
        if let Some(d) = self.load(name) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(d);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let data = self.inner.read(name)?;
        self.store(name, &data);
        Ok(data)
    }

    /// Removes cache files under `prefix` whose objects `listed` does not show.
    fn evict_unlisted(&self, prefix: &str, listed: &[ObjectInfo]) {
        let trimmed = prefix.trim_end_matches('/');
        let start = if trimmed.is_empty() {
            self.root.join("objects")
        } else {
            match self.cache_path(trimmed) {
                Ok(p) => p,
                Err(_) => return,
            }
        };
        if !start.is_dir() {
            return;
        }
        let names: HashSet<&str> = listed.iter().map(|o| o.name.as_str()).collect();
        let mut stack = vec![(start, trimmed.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let fname = entry.file_name();
                let Some(fname) = fname.to_str() else {
                    continue;
                };
                let child = if rel.is_empty() {
                    fname.to_string()
                } else {
                    format!("{rel}/{fname}")
                };
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push((entry.path(), child)),
                    Ok(_) if fname.starts_with(TEMP_PREFIX) => {}
                    Ok(_)
                        if !names.contains(child.as_str())
                            && fs::remove_file(entry.path()).is_ok() =>
                    {
                        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
    }
}

fn range_error(name: &str, offset: u64, length: u64, size: u64) -> StorageError {
    StorageError::new(
        ErrorKind::Other,
        "read",
        name,
        format!("range {offset}+{length} is past the end of the object ({size} bytes)"),
    )
}

impl<S: Storage> Storage for CacheStorage<S> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        if let Some(d) = self
            .memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(d.clone());
        }
        if self.cached(name) {
            return self.read_cached(name);
        }
        self.inner.read(name)
    }
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if !self.cached(name) {
            return self.inner.read_range_into(name, offset, length, buf);
        }
        let held = self
            .in_memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name);
        let data = match held {
            Some(d) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                d
            }
            None => {
                let d = Arc::new(self.read_cached(name)?);
                if self.is_whole(name) {
                    self.in_memory
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name, d.clone(), WHOLE_IN_MEMORY);
                }
                d
            }
        };
        let size = data.len() as u64;
        match offset.checked_add(length) {
            Some(end) if end <= size => {
                buf.clear();
                buf.extend_from_slice(&data[offset as usize..end as usize]);
                Ok(())
            }
            _ => Err(range_error(name, offset, length, size)),
        }
    }
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write(name, data)?;
        if self.cached(name) {
            self.store(name, data);
        } else {
            self.forget(name);
        }
        Ok(())
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.forget(name);
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        self.inner.stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let listed = self.inner.list(prefix)?;
        self.evict_unlisted(prefix, &listed);
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStorage;
    use crate::counting::CountingStorage;

    /// Caches `snapshots/` and `keys/`; names under `snapshots/` are the hex BLAKE3 of
    /// their content.
    struct TestPolicy;

    impl CachePolicy for TestPolicy {
        fn cacheable(&self, name: &str) -> bool {
            name.starts_with("snapshots/") || name.starts_with("keys/")
        }
        fn verify(&self, name: &str, data: &[u8]) -> bool {
            match name.strip_prefix("snapshots/") {
                Some(id) => blake3::hash(data).to_hex().as_str() == id,
                None => true,
            }
        }
    }

    fn snapshot_name(data: &[u8]) -> String {
        format!("snapshots/{}", blake3::hash(data).to_hex())
    }

    fn setup(dir: &Path) -> CacheStorage<CountingStorage<LocalStorage>> {
        let remote = CountingStorage::new(LocalStorage::new(dir.join("remote")));
        CacheStorage::new(remote, dir.join("cache"), Arc::new(TestPolicy)).unwrap()
    }

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        let mode = fs::metadata(s.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        s.cache_whole(["data/ab/large".to_string()]);
        crate::suite::run_all(&s);
    }

    #[test]
    fn second_read_is_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        s.create().unwrap();
        let name = snapshot_name(b"snap one");
        s.inner().inner().write(&name, b"snap one").unwrap();
        assert_eq!(s.read(&name).unwrap(), b"snap one");
        assert_eq!(s.read(&name).unwrap(), b"snap one");
        assert_eq!(s.inner().counts().reads, 1);
        // A fresh process (new layer) over the same cache directory: no request.
        let again = setup(dir.path());
        assert_eq!(again.read(&name).unwrap(), b"snap one");
        assert_eq!(again.inner().counts().reads, 0);
        // Not cacheable: every read goes to the storage.
        s.write("data/aa/x", b"x").unwrap();
        s.read("data/aa/x").unwrap();
        s.read("data/aa/x").unwrap();
        assert_eq!(s.inner().counts().reads, 3);
    }

    #[test]
    fn writes_go_through_and_deletes_and_listings_evict() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        s.create().unwrap();
        let a = snapshot_name(b"a");
        let b = snapshot_name(b"b");
        s.write(&a, b"a").unwrap();
        s.write(&b, b"b").unwrap();
        assert_eq!(s.inner().inner().read(&a).unwrap(), b"a", "written through");
        assert!(s.cache_path(&a).unwrap().is_file());
        assert_eq!(s.read(&a).unwrap(), b"a");
        assert_eq!(s.inner().counts().reads, 0);
        s.delete(&a).unwrap();
        assert!(!s.cache_path(&a).unwrap().exists());
        // Another client removes b: the next listing drops its cached copy.
        s.inner().inner().delete(&b).unwrap();
        assert!(s.cache_path(&b).unwrap().is_file());
        assert!(s.list("snapshots/").unwrap().is_empty());
        assert!(!s.cache_path(&b).unwrap().exists());
        assert_eq!(s.stats().evicted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn corrupt_cache_files_are_dropped_and_refetched() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        s.create().unwrap();
        let name = snapshot_name(b"precious");
        s.write(&name, b"precious").unwrap();
        s.write("keys/k", b"key file").unwrap();
        let path = s.cache_path(&name).unwrap();
        let key_path = s.cache_path("keys/k").unwrap();
        // Flip a content byte; truncate the key file's copy.
        let mut raw = fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        fs::write(&path, &raw).unwrap();
        fs::write(&key_path, b"short").unwrap();
        assert_eq!(s.read(&name).unwrap(), b"precious");
        assert_eq!(s.read("keys/k").unwrap(), b"key file");
        assert_eq!(s.stats().dropped.load(Ordering::Relaxed), 2);
        assert_eq!(s.inner().counts().reads, 2);
        // Replaced by good copies.
        assert_eq!(s.read(&name).unwrap(), b"precious");
        assert_eq!(s.inner().counts().reads, 2);
        // A copy whose own hash matches but whose name does not (planted) is refused too.
        let mut planted = blake3::hash(b"evil").as_bytes().to_vec();
        planted.extend_from_slice(b"evil");
        fs::write(&path, planted).unwrap();
        assert_eq!(s.read(&name).unwrap(), b"precious");
        assert_eq!(s.stats().dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn whole_objects_serve_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        s.create().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        s.write("data/cd/tree", &data).unwrap();
        s.cache_whole(["data/cd/tree".to_string()]);
        assert_eq!(s.read_range("data/cd/tree", 10, 20).unwrap(), &data[10..30]);
        assert_eq!(
            s.read_range("data/cd/tree", 99_000, 1000).unwrap(),
            &data[99_000..]
        );
        assert!(s.read_range("data/cd/tree", 99_000, 1001).is_err());
        assert_eq!(s.inner().counts().reads, 1, "one whole read");
        assert_eq!(s.inner().counts().range_reads, 0);
    }

    #[test]
    fn whole_objects_are_read_from_the_cache_file_once_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        {
            let s = setup(dir.path());
            s.create().unwrap();
            s.write("data/cd/tree", &data).unwrap();
        }
        // A new process: the first range loads (and checks) the cache file, later ranges
        // come from memory even when the file has meanwhile been removed.
        let s = setup(dir.path());
        s.cache_whole(["data/cd/tree".to_string()]);
        assert_eq!(s.read_range("data/cd/tree", 0, 10).unwrap(), &data[..10]);
        let path = s.cache_path("data/cd/tree").unwrap();
        assert!(path.exists());
        fs::remove_file(&path).unwrap();
        for off in [100u64, 20_000, 49_990] {
            assert_eq!(
                s.read_range("data/cd/tree", off, 10).unwrap(),
                &data[off as usize..off as usize + 10]
            );
        }
        assert!(!path.exists(), "not read again");
        assert_eq!(s.inner().counts().reads, 1);
        // Deleting the object drops the copy in memory too.
        s.delete("data/cd/tree").unwrap();
        assert!(s.read_range("data/cd/tree", 0, 10).is_err());
    }

    #[test]
    fn whole_objects_in_memory_keep_to_their_budget() {
        let mut m = WholeInMemory::default();
        m.insert("a", Arc::new(vec![1; 40]), 100);
        m.insert("b", Arc::new(vec![2; 40]), 100);
        assert!(m.get("a").is_some(), "a used after b");
        m.insert("c", Arc::new(vec![3; 40]), 100);
        assert!(m.get("b").is_none(), "the least recently used left");
        assert!(m.get("a").is_some() && m.get("c").is_some());
        assert_eq!(m.bytes, 80);
        m.insert("big", Arc::new(vec![4; 101]), 100);
        assert!(m.get("big").is_none(), "larger than the budget: not kept");
        m.insert("a", Arc::new(vec![5; 10]), 100);
        assert_eq!(m.bytes, 50);
        m.remove("a");
        m.remove("c");
        assert_eq!(m.bytes, 0);
    }

    #[test]
    fn remembered_objects_need_no_request() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        s.remember("config", b"{}".to_vec());
        assert_eq!(s.read("config").unwrap(), b"{}");
        assert_eq!(s.inner().counts().total(), 0);
    }
}
