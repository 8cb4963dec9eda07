//! A directory that file-system calls cannot leave: the confinement of restores.
//!
//! A restore writes into a target that may already hold anything: a symlink planted by
//! another local user, the leftovers of a restore of a hostile snapshot, a shared
//! directory. [`Confined`] holds a descriptor of the target directory and makes every call
//! relative to it:
//!
//! - Directories on the way to an entry are opened with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)`, so a symlink anywhere below the target (to a file or a
//!   directory, inside or outside) ends the resolution with an error instead of being
//!   followed. Kernels without `openat2` (before 5.6) walk one component at a time with
//!   `openat(O_NOFOLLOW | O_DIRECTORY)` and check each step with `fstat`.
//! - The last component is reached through its parent's descriptor with `O_NOFOLLOW`,
//!   `AT_SYMLINK_NOFOLLOW` or calls that never follow (`unlinkat`, `mkdirat`,
//!   `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`, `mknodat`).
//! - Metadata is set through the descriptor of the entry itself (`fchown`, `fchmod`,
//!   `futimens`, `fsetxattr`) or, for symlinks and special files, through the parent's
//!   descriptor with `AT_SYMLINK_NOFOLLOW`; never by path.
//!
//! Paths given to it are relative and plain (no `..`, `.` or root); anything else is
//! refused. Long paths (past `PATH_MAX`) are resolved in pieces, each from the
//! descriptor the previous one gave.
//!
//! The restore never follows a symlink in its target, not even one it created itself
//! from the snapshot: a snapshot cannot hold entries beneath a symlink, so nothing it
//! restores needs to.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use crate::format::{Node, NodeKind};
use crate::fsmeta::{ApplyOptions, FsError};

/// Paths longer than this are resolved in pieces (below `PATH_MAX`, with room to spare).
const PIECE: usize = 3000;

/// What stands at a path in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A fifo, socket or device.
    Special,
}

/// The `lstat` of an entry in the target.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Entry {
    fn from_stat(st: &FileStat) -> Entry {
        let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let kind = if fmt == SFlag::S_IFREG {
            EntryKind::File
        } else if fmt == SFlag::S_IFDIR {
            EntryKind::Dir
        } else if fmt == SFlag::S_IFLNK {
            EntryKind::Symlink
        } else {
            EntryKind::Special
        };
        Entry {
            kind,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
            nlink: st.st_nlink,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }
}

/// How [`Confined::open_file`] opens a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    Read,
    /// Read and write an existing file.
    ReadWrite,
    /// Write, creating the file (mode 0600 until its metadata is set) when it is missing.
    WriteCreate,
}

/// A directory descriptor: the root's, borrowed, or one opened beneath it.
pub enum DirFd<'a> {
    Root(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Root(fd) => *fd,
            DirFd::Opened(fd) => fd.as_fd(),
        }
    }
}

/// A target directory; every call stays beneath it (see the module documentation).
pub struct Confined {
    root: OwnedFd,
    root_path: PathBuf,
    /// `openat2` works here (set to false the first time it says ENOSYS).
    openat2: AtomicBool,
}

impl std::fmt::Debug for Confined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confined")
            .field("root", &self.root_path)
            .finish()
    }
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// The plain components of a relative path, or an error for anything else.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is not a plain relative path (a restore writes only beneath its target)",
                        rel.display()
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Explains the errors a confined resolution gives when something in the way is not a
/// directory: a symlink (ELOOP), a file (ENOTDIR), an escape (EXDEV).
fn explain(e: io::Error, what: &Path) -> io::Error {
    let text = match e.raw_os_error() {
        Some(libc::ELOOP) => {
            "a symbolic link stands in the way (a restore never follows links in its target)"
        }
        Some(libc::ENOTDIR) => "something that is not a directory stands in the way",
        Some(libc::EXDEV) => "the path leads outside the target",
        _ => return e,
    };
    io::Error::new(e.kind(), format!("{}: {text}", what.display()))
}

impl Confined {
    /// Opens `target` (which must be a directory; symlinks in this path itself are the
    /// caller's choice and are followed).
    pub fn open(target: &Path) -> io::Result<Confined> {
        let root = nix::fcntl::open(
            target,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Confined {
            root,
            root_path: target.to_path_buf(),
            openat2: AtomicBool::new(true),
        })
    }

    /// The target as the caller named it.
    pub fn path(&self) -> &Path {
        &self.root_path
    }

    /// `rel` under the target, for messages.
    pub fn display(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            // `join("")` would add a trailing separator to the root's own name.
            return self.root_path.clone();
        }
        self.root_path.join(rel)
    }

    /// Opens the directory `comps` beneath the root with `flags` (plus `O_DIRECTORY`),
    /// following no symlink.
    fn open_dir_comps(&self, comps: &[&OsStr], flags: OFlag) -> io::Result<DirFd<'_>> {
        if comps.is_empty() {
            return Ok(DirFd::Root(self.root.as_fd()));
        }
        let flags = flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        if self.openat2.load(Ordering::Relaxed) {
            match self.open_dir_openat2(comps, flags) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    self.openat2.store(false, Ordering::Relaxed);
                }
                r => return r.map(DirFd::Opened),
            }
        }
        self.open_dir_stepwise(comps, flags).map(DirFd::Opened)
    }

    fn open_dir_openat2(&self, comps: &[&OsStr], flags: OFlag) -> io::Result<OwnedFd> {
        // RESOLVE_NO_SYMLINKS refuses a link at every component, the last included, with
        // ELOOP (with O_NOFOLLOW as well, a last link would give ENOTDIR instead).
        let how = OpenHow::new()
            .flags(flags & !OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let mut current: Option<OwnedFd> = None;
        let mut start = 0;
        while start < comps.len() {
            let mut piece = PathBuf::new();
            let mut end = start;
            while end < comps.len()
                && (end == start || piece.as_os_str().len() + comps[end].len() < PIECE)
            {
                piece.push(comps[end]);
                end += 1;
            }
            // Intermediate pieces only need to be walked through.
            let piece_how = if end < comps.len() {
                how.flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            } else {
                how
            };
            let dir = match &current {
                Some(fd) => fd.as_fd(),
                None => self.root.as_fd(),
            };
            current = Some(nix::fcntl::openat2(dir, &piece, piece_how).map_err(errno)?);
            start = end;
        }
        current.ok_or_else(|| io::Error::other("empty path"))
    }

    fn open_dir_stepwise(&self, comps: &[&OsStr], flags: OFlag) -> io::Result<OwnedFd> {
        let mut current: Option<OwnedFd> = None;
        for (i, c) in comps.iter().enumerate() {
            let dir = match &current {
                Some(fd) => fd.as_fd(),
                None => self.root.as_fd(),
            };
            // O_PATH | O_NOFOLLOW opens a symlink itself, so each step can tell a link
            // (refused as ELOOP) from a file (ENOTDIR).
            let step = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = nix::fcntl::openat(dir, *c, step, Mode::empty()).map_err(errno)?;
            let st = nix::sys::stat::fstat(&fd).map_err(errno)?;
            let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if fmt == SFlag::S_IFLNK {
                return Err(errno(Errno::ELOOP));
            }
            if fmt != SFlag::S_IFDIR {
                return Err(errno(Errno::ENOTDIR));
            }
            current = Some(if i + 1 == comps.len() && !flags.contains(OFlag::O_PATH) {
                // Reopen the checked directory for reading through its own descriptor.
                nix::fcntl::openat(&fd, ".", flags, Mode::empty()).map_err(errno)?
            } else {
                fd
            });
        }
        current.ok_or_else(|| io::Error::other("empty path"))
    }

    /// The parent directory of `rel` (opened for walking through) and the last name.
    pub fn parent<'p>(&self, rel: &'p Path) -> io::Result<(DirFd<'_>, &'p OsStr)> {
        let comps = components(rel)?;
        let Some((name, dirs)) = comps.split_last() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the target itself has no parent in the target",
            ));
        };
        let dir = self
            .open_dir_comps(dirs, OFlag::O_PATH)
            .map_err(|e| explain(e, &self.display(rel.parent().unwrap_or(rel))))?;
        Ok((dir, name))
    }

    /// Opens the directory `rel` (empty: the target) for reading its entries and setting
    /// its metadata.
    pub fn open_dir(&self, rel: &Path) -> io::Result<DirFd<'_>> {
        let comps = components(rel)?;
        self.open_dir_comps(&comps, OFlag::O_RDONLY)
            .map_err(|e| explain(e, &self.display(rel)))
    }

    /// What stands at `rel`, not following a symlink there; `None` when nothing does.
    /// An error when a directory on the way is missing or is not a directory.
    pub fn lstat(&self, rel: &Path) -> io::Result<Option<Entry>> {
        let (dir, name) = self.parent(rel)?;
        match nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Entry::from_stat(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// Creates the directory `rel` (mode 0700 until its metadata is set).
    pub fn create_dir(&self, rel: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o700)).map_err(errno)
    }

    /// Opens the regular file `rel` without following a symlink there.
    pub fn open_file(&self, rel: &Path, access: FileAccess) -> io::Result<File> {
        let (dir, name) = self.parent(rel)?;
        let base = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        let flags = match access {
            FileAccess::Read => OFlag::O_RDONLY,
            FileAccess::ReadWrite => OFlag::O_RDWR,
            FileAccess::WriteCreate => OFlag::O_WRONLY | OFlag::O_CREAT,
        };
        let fd = nix::fcntl::openat(&dir, name, base | flags, Mode::from_bits_truncate(0o600))
            .map_err(errno)?;
        let st = nix::sys::stat::fstat(&fd).map_err(errno)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(io::Error::other("not a regular file"));
        }
        // O_NONBLOCK kept a fifo from blocking the open; regular files ignore it, but
        // take it off all the same.
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Removes the entry at `rel`: a file, symlink or special file, or an empty directory.
    pub fn remove(&self, rel: &Path, kind: EntryKind) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        let flag = if kind == EntryKind::Dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        nix::unistd::unlinkat(&dir, name, flag).map_err(errno)
    }

    /// Removes the entry at `rel` and, for a directory, everything in it, without
    /// following any symlink. Returns how many entries were removed.
    pub fn remove_tree(&self, rel: &Path) -> io::Result<u64> {
        let (dir, name) = self.parent(rel)?;
        remove_tree_at(dir.as_fd(), name)
    }

    /// Whether the directory `rel` has no entries.
    pub fn is_empty_dir(&self, rel: &Path) -> io::Result<bool> {
        Ok(self.list(rel)?.is_empty())
    }

    /// The names in the directory `rel` (without `.` and `..`).
    pub fn list(&self, rel: &Path) -> io::Result<Vec<OsString>> {
        let fd = match self.open_dir(rel)? {
            DirFd::Root(fd) => fd.try_clone_to_owned()?,
            DirFd::Opened(fd) => fd,
        };
        list_fd(fd)
    }

    /// Creates the symlink `rel` pointing to `target` (raw bytes, never resolved).
    pub fn symlink(&self, target: &[u8], rel: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::unistd::symlinkat(OsStr::from_bytes(target), &dir, name).map_err(errno)
    }

    /// Creates `new` as a hard link to the existing `existing` (a link to a symlink
    /// links the symlink itself).
    pub fn hard_link(&self, existing: &Path, new: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(existing)?;
        let (to_dir, to_name) = self.parent(new)?;
        nix::unistd::linkat(&from_dir, from_name, &to_dir, to_name, AtFlags::empty()).map_err(errno)
    }

    /// Creates a fifo, socket or device node at `rel` (mode 0600 until its metadata is
    /// set; devices need `CAP_MKNOD`).
    pub fn mknod(&self, rel: &Path, kind: NodeKind, rdev: u64) -> io::Result<()> {
        let flag = match kind {
            NodeKind::Fifo => SFlag::S_IFIFO,
            NodeKind::Socket => SFlag::S_IFSOCK,
            NodeKind::CharDevice => SFlag::S_IFCHR,
            NodeKind::BlockDevice => SFlag::S_IFBLK,
            _ => return Err(io::Error::other("not a special file")),
        };
        let (dir, name) = self.parent(rel)?;
        nix::sys::stat::mknodat(&dir, name, flag, Mode::from_bits_truncate(0o600), rdev)
            .map_err(errno)
    }

    /// Writes `bytes` as the regular file `rel` with permission bits `mode`, replacing a
    /// file, symlink or special file that stands there (never writing through it).
    pub fn write_file(&self, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        if let Some(e) = self.lstat(rel)?
            && e.kind != EntryKind::File
        {
            self.remove(rel, e.kind)?;
        }
        let mut f = self.open_file(rel, FileAccess::WriteCreate)?;
        f.set_len(0)?;
        f.write_all(bytes)?;
        nix::sys::stat::fchmod(&f, Mode::from_bits_truncate(mode & 0o7777)).map_err(errno)
    }

    /// The content of the regular file `rel`; `None` when nothing is there. Anything
    /// else than a regular file (a symlink included) is an error.
    pub fn read_file(&self, rel: &Path) -> io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        match self.open_file(rel, FileAccess::Read) {
            Ok(mut f) => {
                let mut out = Vec::new();
                f.read_to_end(&mut out)?;
                Ok(Some(out))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the owner of the entry `rel` itself (a symlink is not followed).
    pub fn set_owner(&self, rel: &Path, uid: u32, gid: u32) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::unistd::fchownat(
            &dir,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
    }

    /// Sets the permission bits of the entry `rel` (not of a symlink: refused).
    pub fn set_mode(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::sys::stat::fchmodat(
            &dir,
            name,
            Mode::from_bits_truncate(mode & 0o7777),
            FchmodatFlags::NoFollowSymlink,
        )
        .map_err(errno)
    }

    /// Sets the access and modification times (ns) of the entry `rel` itself.
    pub fn set_times(&self, rel: &Path, atime_ns: i64, mtime_ns: i64) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::sys::stat::utimensat(
            &dir,
            name,
            &timespec(atime_ns),
            &timespec(mtime_ns),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(errno)
    }

    /// Gives the entry at `rel` the metadata of `node` (see [`apply_to_file`] for the
    /// order). Files and directories through their own descriptor; symlinks and special
    /// files through their parent's, never following the last component.
    pub fn apply_metadata(
        &self,
        rel: &Path,
        node: &Node,
        opts: &ApplyOptions,
    ) -> Result<(), FsError> {
        let shown = self.display(rel);
        let io_err = |op, e| FsError::io(op, &shown, e);
        match node.kind {
            NodeKind::Dir => {
                let fd = self
                    .open_dir(rel)
                    .map_err(|e| io_err("open directory", e))?;
                let fd = match fd {
                    DirFd::Root(fd) => fd.try_clone_to_owned().map_err(|e| io_err("open", e))?,
                    DirFd::Opened(fd) => fd,
                };
                apply_to_file(&File::from(fd), &shown, node, opts)
            }
            NodeKind::File => {
                let f = self
                    .open_file(rel, FileAccess::Read)
                    .or_else(|_| self.open_path_fd(rel).map(File::from))
                    .map_err(|e| io_err("open", e))?;
                apply_to_file(&f, &shown, node, opts)
            }
            _ => {
                let (dir, name) = self.parent(rel).map_err(|e| io_err("open parent of", e))?;
                apply_at(dir.as_fd(), name, &shown, node, opts)
            }
        }
    }

    /// An `O_PATH` descriptor of the file `rel` (for a file this process may not read).
    fn open_path_fd(&self, rel: &Path) -> io::Result<OwnedFd> {
        let (dir, name) = self.parent(rel)?;
        nix::fcntl::openat(
            &dir,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)
    }
}

fn list_fd(fd: OwnedFd) -> io::Result<Vec<OsString>> {
    let dir = nix::dir::Dir::from_fd(fd).map_err(errno)?;
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// Removes `name` in `dir`, recursively for a directory, never following a symlink.
fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<u64> {
    let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(errno)?;
        return Ok(1);
    }
    let sub = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let mut removed = 0;
    for child in list_fd(sub.try_clone()?)? {
        removed += remove_tree_at(sub.as_fd(), &child)?;
    }
    drop(sub);
    nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir).map_err(errno)?;
    Ok(removed + 1)
}

fn timespec(ns: i64) -> TimeSpec {
    TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

fn keep_first(first: &mut Option<FsError>, result: Result<(), FsError>) {
    if let Err(e) = result
        && first.is_none()
    {
        *first = Some(e);
    }
}

/// Applies `node`'s metadata through the open descriptor `f` of a file or directory, in
/// this order: ownership (if `opts.ownership`), xattrs (if `opts.xattrs`; set only), mode
/// (after chown, which clears setuid/setgid, and after the xattrs, so that
/// `security.capability` survives), then atime and mtime with nanoseconds. Returns the
/// first error, after trying every step.
pub fn apply_to_file(
    f: &File,
    shown: &Path,
    node: &Node,
    opts: &ApplyOptions,
) -> Result<(), FsError> {
    use xattr::FileExt;
    let mut first = None;
    // An O_PATH descriptor (a file this process may not open) refuses the f* calls;
    // its /proc/self/fd link reaches the same inode and nothing else.
    let proc_path = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(f)
    ));
    let is_path_fd = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETFL)
        .is_ok_and(|fl| OFlag::from_bits_truncate(fl).contains(OFlag::O_PATH));
    if opts.ownership {
        let r = nix::unistd::fchownat(
            f,
            "",
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            AtFlags::AT_EMPTY_PATH,
        );
        keep_first(
            &mut first,
            r.map_err(|e| FsError::io("set owner of", shown, errno(e))),
        );
    }
    if opts.xattrs {
        for x in &node.xattrs {
            let name = OsStr::from_bytes(&x.name);
            let r = if is_path_fd {
                xattr::set_deref(&proc_path, name, &x.value)
            } else {
                f.set_xattr(name, &x.value)
            };
            keep_first(
                &mut first,
                r.map_err(|e| FsError::Xattr {
                    op: "set",
                    path: shown.to_path_buf(),
                    name: x.name.clone(),
                    error: e,
                }),
            );
        }
    }
    let mode = Mode::from_bits_truncate(node.mode & 0o7777);
    let atime = timespec(node.atime_ns);
    let mtime = timespec(node.mtime_ns);
    let (chmod, times) = if is_path_fd {
        (
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                &proc_path,
                mode,
                FchmodatFlags::FollowSymlink,
            ),
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &proc_path,
                &atime,
                &mtime,
                UtimensatFlags::FollowSymlink,
            ),
        )
    } else {
        (
            nix::sys::stat::fchmod(f, mode),
            nix::sys::stat::futimens(f, &atime, &mtime),
        )
    };
    keep_first(
        &mut first,
        chmod.map_err(|e| FsError::io("set mode of", shown, errno(e))),
    );
    keep_first(
        &mut first,
        times.map_err(|e| FsError::io("set times of", shown, errno(e))),
    );
    first.map_or(Ok(()), Err)
}

/// Applies `node`'s metadata to the symlink or special file `name` in `dir`, never
/// following it: ownership and times with `AT_SYMLINK_NOFOLLOW`, the mode (not for
/// symlinks) with `fchmodat(AT_SYMLINK_NOFOLLOW)`, xattrs with `lsetxattr` through the
/// parent's descriptor.
fn apply_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    node: &Node,
    opts: &ApplyOptions,
) -> Result<(), FsError> {
    let mut first = None;
    if opts.ownership {
        let r = nix::unistd::fchownat(
            dir,
            name,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        keep_first(
            &mut first,
            r.map_err(|e| FsError::io("set owner of", shown, errno(e))),
        );
    }
    if opts.xattrs && !node.xattrs.is_empty() {
        let mut via = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&dir)
        ));
        via.push(name);
        for x in &node.xattrs {
            keep_first(
                &mut first,
                xattr::set(&via, OsStr::from_bytes(&x.name), &x.value).map_err(|e| {
                    FsError::Xattr {
                        op: "set",
                        path: shown.to_path_buf(),
                        name: x.name.clone(),
                        error: e,
                    }
                }),
            );
        }
    }
    if node.kind != NodeKind::Symlink {
        let r = nix::sys::stat::fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(node.mode & 0o7777),
            FchmodatFlags::NoFollowSymlink,
        );
        keep_first(
            &mut first,
            r.map_err(|e| FsError::io("set mode of", shown, errno(e))),
        );
    }
    let r = nix::sys::stat::utimensat(
        dir,
        name,
        &timespec(node.atime_ns),
        &timespec(node.mtime_ns),
        UtimensatFlags::NoFollowSymlink,
    );
    keep_first(
        &mut first,
        r.map_err(|e| FsError::io("set times of", shown, errno(e))),
    );
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests;
