//! Local-disk storage: objects are files under a root directory.
//!
//! Writes go to a temporary file in the target directory, are fsynced, renamed into place,
//! and the directory is fsynced, so an object is either absent or complete after a crash.
//! A write killed before its rename leaves its temporary file behind; the name says which
//! host and process wrote it, so [`LocalStorage::remove_abandoned_temp_files`] can remove
//! the ones whose writer is gone.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::{ErrorKind, ObjectInfo, Properties, Result, Storage, StorageError};

/// Prefix of temporary files; listing skips them.
const TEMP_PREFIX: &str = ".tmp-";

/// Temporary files older than this are removed whoever wrote them: no write takes a day,
/// and the writer may be on another host sharing the directory, where its process cannot
/// be looked up.
pub const ABANDONED_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A storage rooted at a local directory.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: impl AsRef<Path>) -> Self {
        LocalStorage {
            root: root.as_ref().to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        crate::check_name("resolve", name)?;
        Ok(self.root.join(name))
    }

    fn root_missing(&self, op: &'static str, name: &str) -> Option<StorageError> {
        if self.root.is_dir() {
            None
        } else {
            Some(StorageError::new(
                ErrorKind::NotFound,
                op,
                name,
                format!(
                    "repository directory {} does not exist",
                    self.root.display()
                ),
            ))
        }
    }
}

use crate::process::{host_tag, process_gone, process_start};

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `.tmp-HOST-PID-START-RANDOM`: HOST a fingerprint of the host name, PID and START the
/// writing process and its start time (0 when unknown), RANDOM separating the writes of one
/// process.
fn temp_name() -> String {
    let mut b = [0u8; 8];
    // A failure of the OS random source leaves zeros; the pid still separates processes.
    let _ = getrandom::fill(&mut b);
    let pid = std::process::id();
    format!(
        "{TEMP_PREFIX}{}-{pid}-{}-{:016x}",
        host_tag(),
        process_start(pid).unwrap_or(0),
        u64::from_le_bytes(b)
    )
}

/// Whether the temporary file `name` belongs to a write that can no longer finish: its
/// writer was a process of this host that is gone, or it is older than
/// [`ABANDONED_TEMP_AGE`] (temporary files of an older form, without host and start time,
/// only by age).
fn temp_is_abandoned(name: &str, age: Duration, host: &str) -> bool {
    if age > ABANDONED_TEMP_AGE {
        return true;
    }
    let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let [writer_host, pid, start, _random] = parts[..] else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    writer_host == host && process_gone(pid, (start != 0).then_some(start))
}

impl LocalStorage {
    /// Removes the temporary files of writes that can no longer finish (killed or crashed
    /// processes): those whose writer was a process of this host that is gone, and any older
    /// than [`ABANDONED_TEMP_AGE`]. Temporary files of live writers and of other hosts' recent
    /// writes are kept. Returns how many were removed.
    pub fn remove_abandoned_temp_files(&self) -> Result<usize> {
        if let Some(err) = self.root_missing("clean", "") {
            return Err(err);
        }
        let host = host_tag();
        let now = SystemTime::now();
        let mut removed = 0;
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("clean", &rel, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::io("clean", &rel, e))?;
                let fname = entry.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    fname.clone()
                } else {
                    format!("{rel}/{fname}")
                };
                let ft = match entry.file_type() {
                    Ok(ft) => ft,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io("clean", &child, e)),
                };
                if ft.is_dir() {
                    stack.push((entry.path(), child));
                    continue;
                }
                if !ft.is_file() || !fname.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let age = match entry.metadata().and_then(|m| m.modified()) {
                    Ok(modified) => now.duration_since(modified).unwrap_or_default(),
                    // Renamed into place or removed meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io("clean", &child, e)),
                };
                if !temp_is_abandoned(&fname, age, &host) {
                    continue;
                }
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io("clean", &child, e)),
                }
            }
        }
        Ok(removed)
    }
}

impl Storage for LocalStorage {
    fn properties(&self) -> Properties {
        Properties {
            connections: 1,
            location: self.root.display().to_string(),
            local: true,
            append_only: false,
        }
    }

    fn create(&self) -> Result<()> {
        let r = self.root.display().to_string();
        fs::create_dir_all(&self.root).map_err(|e| StorageError::io("create", &r, e))?;
        if let Some(parent) = self.root.parent()
            && !parent.as_os_str().is_empty()
        {
            let _ = sync_dir(parent);
        }
        Ok(())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name)?;
        fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound
                && let Some(err) = self.root_missing("read", name)
            {
                return err;
            }
            StorageError::io("read", name, e)
        })
    }

    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let path = self.path(name)?;
        let file = File::open(&path).map_err(|e| StorageError::io("read", name, e))?;
        let size = file
            .metadata()
            .map_err(|e| StorageError::io("read", name, e))?
            .len();
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(StorageError::new(
                ErrorKind::Other,
                "read",
                name,
                format!("range {offset}+{length} is past the end of the object ({size} bytes)"),
            ));
        }
        let len = usize::try_from(length)
            .map_err(|_| StorageError::new(ErrorKind::Other, "read", name, "range too large"))?;
        buf.clear();
        buf.resize(len, 0);
        file.read_exact_at(buf, offset)
            .map_err(|e| StorageError::io("read", name, e))
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        let path = self.path(name)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let tmp = dir.join(temp_name());
        let open = |p: &Path| OpenOptions::new().write(true).create_new(true).open(p);
        let mut file = match open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(err) = self.root_missing("write", name) {
                    return Err(err);
                }
                fs::create_dir_all(&dir).map_err(|e| StorageError::io("write", name, e))?;
                if let Some(p) = dir.parent() {
                    let _ = sync_dir(p);
                }
                open(&tmp).map_err(|e| StorageError::io("write", name, e))?
            }
            Err(e) => return Err(StorageError::io("write", name, e)),
        };
        let result = file
            .write_all(data)
            .and_then(|_| file.sync_all())
            .and_then(|_| fs::rename(&tmp, &path))
            .and_then(|_| sync_dir(&dir));
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(StorageError::io("write", name, e));
        }
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        fs::remove_file(&path).map_err(|e| StorageError::io("delete", name, e))?;
        if let Some(dir) = path.parent() {
            let _ = sync_dir(dir);
        }
        Ok(())
    }

    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        let path = self.path(name)?;
        let md = fs::metadata(&path).map_err(|e| StorageError::io("stat", name, e))?;
        Ok(ObjectInfo {
            name: name.to_string(),
            size: md.len(),
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        if let Some(err) = self.root_missing("list", prefix) {
            return Err(err);
        }
        let prefix = prefix.trim_end_matches('/');
        let mut out = Vec::new();
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix)?
        };
        let mut stack = vec![(start, prefix.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("list", &rel, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::io("list", &rel, e))?;
                let fname = entry.file_name();
                let Some(fname) = fname.to_str() else {
                    continue;
                };
                if fname.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let child = if rel.is_empty() {
                    fname.to_string()
                } else {
                    format!("{rel}/{fname}")
                };
                let ft = match entry.file_type() {
                    Ok(ft) => ft,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io("list", &child, e)),
                };
                if ft.is_dir() {
                    stack.push((entry.path(), child));
                } else if ft.is_file() {
                    let size = match entry.metadata() {
                        Ok(md) => md.len(),
                        // Deleted since the directory was read (a lock released, a delete
                        // probe removed): not an object any more.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(StorageError::io("list", &child, e)),
                    };
                    out.push(ObjectInfo { name: child, size });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().join("repo"));
        crate::suite::run_all(&s);
    }

    #[test]
    fn missing_root_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().join("nope"));
        let err = s.read("config").unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(err.message.contains("does not exist"));
        let err = s.write("data/aa/x", b"1").unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(!dir.path().join("nope").exists(), "nothing is created");
    }

    #[test]
    fn temp_names_say_host_process_and_start() {
        let name = temp_name();
        let me = std::process::id();
        let parts: Vec<&str> = name.strip_prefix(TEMP_PREFIX).unwrap().split('-').collect();
        assert_eq!(parts.len(), 4, "{name}");
        assert_eq!(parts[0], host_tag());
        assert_eq!(parts[1], me.to_string());
        assert_eq!(parts[2], process_start(me).unwrap().to_string());
        assert_ne!(temp_name(), name, "two writes of one process get two names");
    }

    #[test]
    fn temp_files_of_gone_or_old_writers_are_abandoned() {
        let host = host_tag();
        let me = std::process::id();
        let start = process_start(me).unwrap();
        let young = Duration::from_secs(60);
        let live = format!("{TEMP_PREFIX}{host}-{me}-{start}-00");
        assert!(!temp_is_abandoned(&live, young, &host));
        // The same pid with another start time: a later process has it, the writer is gone.
        let reused = format!("{TEMP_PREFIX}{host}-{me}-{}-00", start + 1);
        assert!(temp_is_abandoned(&reused, young, &host));
        // A pid no process has.
        let gone = format!("{TEMP_PREFIX}{host}-{}-{start}-00", u32::MAX);
        assert!(temp_is_abandoned(&gone, young, &host));
        // Another host's recent write is kept; anything older than a day goes.
        let other = format!("{TEMP_PREFIX}0000000000000000-{}-{start}-00", u32::MAX);
        assert!(!temp_is_abandoned(&other, young, &host));
        let old = ABANDONED_TEMP_AGE + Duration::from_secs(1);
        assert!(temp_is_abandoned(&other, old, &host));
        assert!(temp_is_abandoned(&live, old, &host));
        // The older form (`.tmp-PID-RANDOM`) says no host: only its age counts.
        let older_form = format!("{TEMP_PREFIX}{}-00ff00ff00ff00ff", u32::MAX);
        assert!(!temp_is_abandoned(&older_form, young, &host));
    }

    #[test]
    fn abandoned_temp_files_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().join("repo"));
        s.create().unwrap();
        s.write("data/ab/object", b"kept").unwrap();
        let host = host_tag();
        let me = std::process::id();
        let start = process_start(me).unwrap();
        let data = dir.path().join("repo/data/ab");
        let gone = data.join(format!("{TEMP_PREFIX}{host}-{}-{start}-01", u32::MAX));
        let live = data.join(format!("{TEMP_PREFIX}{host}-{me}-{start}-02"));
        let at_root = dir
            .path()
            .join(format!("repo/{TEMP_PREFIX}{host}-{}-0-03", u32::MAX));
        for p in [&gone, &live, &at_root] {
            fs::write(p, b"partial").unwrap();
        }
        assert_eq!(s.remove_abandoned_temp_files().unwrap(), 2);
        assert!(!gone.exists() && !at_root.exists());
        assert!(live.exists(), "a live writer's temporary file is kept");
        assert_eq!(s.read("data/ab/object").unwrap(), b"kept");
        assert_eq!(s.remove_abandoned_temp_files().unwrap(), 0);
    }

    #[test]
    fn listing_skips_objects_deleted_while_it_runs() {
        // Another process (a prune's delete probe, a lock being released) removes objects
        // between the directory read and the stat of each entry: the listing must not fail.
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(LocalStorage::new(dir.path().join("repo")));
        s.create().unwrap();
        s.write("locks/steady", b"1").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let names: Vec<String> = (0..50).map(|i| format!("locks/p{n}-{i}")).collect();
                    for name in &names {
                        s.write(name, b"probe").unwrap();
                    }
                    for name in &names {
                        s.delete(name).unwrap();
                    }
                    n += 1;
                }
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let mut lists = 0;
        let mut failure = None;
        while std::time::Instant::now() < deadline && failure.is_none() {
            match s.list("locks/") {
                Ok(objects) => assert!(objects.iter().any(|o| o.name == "locks/steady")),
                Err(e) => failure = Some(e),
            }
            lists += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        assert!(failure.is_none(), "listing {lists}: {failure:?}");
    }

    #[test]
    fn names_cannot_escape_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(s.write(bad, b"1").is_err(), "{bad}");
        }
    }
}
