//! Local-disk storage: objects are files under a root directory.
//!
//! Writes go to a temporary file in the target directory, are fsynced, renamed into place,
//! and the directory is fsynced, so an object is either absent or complete after a crash.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{ErrorKind, ObjectInfo, Properties, Result, Storage, StorageError};

/// Prefix of temporary files; listing skips them.
const TEMP_PREFIX: &str = ".tmp-";

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

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn temp_name() -> String {
    let mut b = [0u8; 8];
    // A failure of the OS random source leaves zeros; the pid still separates processes.
    let _ = getrandom::fill(&mut b);
    format!(
        "{TEMP_PREFIX}{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(b)
    )
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

    fn read_range(&self, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
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
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| StorageError::io("read", name, e))?;
        Ok(buf)
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
                let ft = entry
                    .file_type()
                    .map_err(|e| StorageError::io("list", &child, e))?;
                if ft.is_dir() {
                    stack.push((entry.path(), child));
                } else if ft.is_file() {
                    let size = entry
                        .metadata()
                        .map_err(|e| StorageError::io("list", &child, e))?
                        .len();
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
    fn names_cannot_escape_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(s.write(bad, b"1").is_err(), "{bad}");
        }
    }
}
