//! Paths longer than the kernel's PATH_MAX (4096 bytes).
//!
//! System calls refuse such paths (ENAMETOOLONG). [`resolve`] turns a long path into an
//! equivalent short one by opening ancestor directories (`O_PATH`) in steps and going on
//! from `/proc/self/fd/N`; the descriptors stay open as long as the returned value lives.
//! Short paths are passed through untouched, at no cost.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Paths at least this long are resolved in steps (below PATH_MAX with room to spare).
const LIMIT: usize = 3500;

/// A path usable in system calls, with the directory handles it depends on.
pub struct Resolved<'a> {
    _dirs: Vec<File>,
    path: Cow<'a, Path>,
}

impl Resolved<'_> {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Resolved<'_> {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

fn open_dir(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(p)
}

/// An equivalent path that system calls accept.
pub fn resolve(path: &Path) -> io::Result<Resolved<'_>> {
    if path.as_os_str().len() < LIMIT {
        return Ok(Resolved {
            _dirs: Vec::new(),
            path: Cow::Borrowed(path),
        });
    }
    let mut comps: Vec<&OsStr> = Vec::new();
    let mut base = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => base.push("/"),
            Component::CurDir => {}
            Component::ParentDir => comps.push(OsStr::new("..")),
            Component::Normal(n) => comps.push(n),
            Component::Prefix(_) => {}
        }
    }
    let last = comps.pop();
    let mut dirs = Vec::new();
    let mut chunk = PathBuf::new();
    for c in comps {
        if base.as_os_str().len() + chunk.as_os_str().len() + c.len() + 2 >= LIMIT {
            let fd = open_dir(&base.join(&chunk))?;
            base = PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ));
            dirs.push(fd);
            chunk = PathBuf::new();
        }
        chunk.push(c);
    }
    let mut out = base.join(chunk);
    if let Some(l) = last {
        out.push(l);
    }
    if out.as_os_str().as_bytes().len() >= 4096 {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    Ok(Resolved {
        _dirs: dirs,
        path: Cow::Owned(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_tree_beyond_path_max() {
        let dir = tempfile::tempdir().unwrap();
        let comp = "d".repeat(200);
        let mut p = dir.path().to_path_buf();
        for _ in 0..30 {
            p.push(&comp);
            std::fs::create_dir(resolve(&p).unwrap().path()).unwrap();
        }
        assert!(p.as_os_str().len() > 6000);
        let f = p.join("file");
        std::fs::write(resolve(&f).unwrap().path(), b"deep").unwrap();
        assert_eq!(std::fs::read(resolve(&f).unwrap().path()).unwrap(), b"deep");
        assert!(
            std::fs::read(&f).is_err(),
            "the plain path is too long for the kernel"
        );
        let short = dir.path().join("x");
        assert_eq!(resolve(&short).unwrap().path(), short.as_path());
    }
}
