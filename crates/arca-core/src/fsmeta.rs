//! Filesystem metadata on Linux, backup side: turning directory entries into [`Node`]s
//! (file kind, permission bits, ownership with the user/group names looked up for them,
//! times with nanosecond precision, device numbers, symlink targets, extended attributes)
//! and the "did this file change since the parent snapshot" test used by incremental
//! backups. It never reads or writes file content and never touches directory listings.
//! Giving restored entries their metadata back is [`crate::confined`]'s (through
//! descriptors, beneath the target); [`ApplyOptions`] says what it sets.
//!
//! Symlinks are never followed: metadata is read with `lstat` and extended attributes with
//! the `l*xattr` calls.

use std::collections::HashMap;
use std::fs::{FileType, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use crate::format::{Node, NodeKind, Xattr};

/// An error reading or applying filesystem metadata; the message names the operation and path.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A system call on `path` failed, e.g. "set owner of /x/y: Operation not permitted".
    #[error("{op} {}: {}", .path.display(), io_text(.error))]
    Io {
        /// What was being done, e.g. "set owner of", "create fifo".
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// Reading or writing one extended attribute failed.
    #[error(
        "{op} extended attribute {} of {}: {}",
        String::from_utf8_lossy(.name),
        .path.display(),
        io_text(.error)
    )]
    Xattr {
        /// "read", "list" or "set".
        op: &'static str,
        path: PathBuf,
        /// Attribute name bytes (empty for "list").
        name: Vec<u8>,
        error: io::Error,
    },
}

impl FsError {
    pub(crate) fn io(op: &'static str, path: &Path, error: io::Error) -> FsError {
        FsError::Io {
            op,
            path: path.to_path_buf(),
            error,
        }
    }

    /// The underlying I/O error, if any (to check e.g. for `ErrorKind::PermissionDenied`).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            FsError::Io { error, .. } | FsError::Xattr { error, .. } => Some(error),
        }
    }
}

/// "Operation not permitted" rather than "Operation not permitted (os error 1)".
fn io_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// Cache of uid->user name and gid->group name lookups (getpwuid/getgrgid are slow).
#[derive(Debug, Default)]
pub struct OwnerNames {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl OwnerNames {
    pub fn new() -> Self {
        Self::default()
    }

    /// The user name of `uid`, or `None` when it has none (or the lookup failed).
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                User::from_uid(Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    /// The group name of `gid`, or `None` when it has none (or the lookup failed).
    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                Group::from_gid(Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// The node kind of a file type (`None` cannot happen on Linux, all seven types are covered).
fn kind_of(ft: FileType) -> Option<NodeKind> {
    if ft.is_file() {
        Some(NodeKind::File)
    } else if ft.is_dir() {
        Some(NodeKind::Dir)
    } else if ft.is_symlink() {
        Some(NodeKind::Symlink)
    } else if ft.is_fifo() {
        Some(NodeKind::Fifo)
    } else if ft.is_socket() {
        Some(NodeKind::Socket)
    } else if ft.is_char_device() {
        Some(NodeKind::CharDevice)
    } else if ft.is_block_device() {
        Some(NodeKind::BlockDevice)
    } else {
        None
    }
}

/// Seconds and nanoseconds to nanoseconds since the epoch, saturating.
fn to_ns(secs: i64, nsec: i64) -> i64 {
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

/// Size as recorded in a node: the length for files, 0 for everything else.
fn recorded_size(kind: NodeKind, md: &Metadata) -> u64 {
    if kind == NodeKind::File { md.len() } else { 0 }
}

/// Whether an xattr error means the filesystem has no extended attributes at all.
fn xattrs_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// Reads all extended attributes of `path` (not following symlinks), sorted by name.
/// Unreadable attributes are skipped and reported in `warnings`.
fn read_xattrs(path: &Path, warnings: &mut Vec<String>) -> Vec<Xattr> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if xattrs_unsupported(&e) => return Vec::new(),
        Err(e) => {
            warnings.push(
                FsError::Xattr {
                    op: "list",
                    path: path.to_path_buf(),
                    name: Vec::new(),
                    error: e,
                }
                .to_string(),
            );
            return Vec::new();
        }
    };
    let mut names: Vec<_> = names.collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push(Xattr {
                name: name.into_vec(),
                value,
            }),
            // Removed between listing and reading: nothing to record.
            Ok(None) => {}
            Err(e) => warnings.push(
                FsError::Xattr {
                    op: "read",
                    path: path.to_path_buf(),
                    name: name.into_vec(),
                    error: e,
                }
                .to_string(),
            ),
        }
    }
    out
}

/// Builds a Node from an entry: `path` is the full path, `name` the final component bytes,
/// `md` its lstat metadata (`std::fs::symlink_metadata`).
///
/// Fills kind, mode (`st_mode & 0o7777`), uid, gid, user/group names (via the cache), times
/// in ns, size (files only), dev, inode, nlink, rdev (devices only), link_target (symlinks) and
/// xattrs (not following symlinks, sorted by name). Problems that do not prevent recording the
/// entry (an unreadable attribute or symlink target) are returned as warnings naming the path.
/// `content` and `subtree` stay empty: the caller fills them.
pub fn node_from_metadata(
    path: &Path,
    name: &[u8],
    md: &Metadata,
    owners: &mut OwnerNames,
) -> (Node, Vec<String>) {
    let mut warnings = Vec::new();
    let kind = match kind_of(md.file_type()) {
        Some(kind) => kind,
        None => {
            warnings.push(format!(
                "read metadata of {}: unknown file type {:o}, recorded as a file",
                path.display(),
                md.mode() & libc::S_IFMT
            ));
            NodeKind::File
        }
    };
    let mut node = Node::new(name.to_vec(), kind);
    node.mode = md.mode() & 0o7777;
    node.uid = md.uid();
    node.gid = md.gid();
    node.user = owners.user(node.uid);
    node.group = owners.group(node.gid);
    node.mtime_ns = to_ns(md.mtime(), md.mtime_nsec());
    node.atime_ns = to_ns(md.atime(), md.atime_nsec());
    node.ctime_ns = to_ns(md.ctime(), md.ctime_nsec());
    node.size = recorded_size(kind, md);
    node.dev = md.dev();
    node.inode = md.ino();
    node.nlink = md.nlink();
    if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        node.rdev = md.rdev();
    }
    if kind == NodeKind::Symlink {
        match std::fs::read_link(path) {
            Ok(target) => node.link_target = Some(target.into_os_string().into_vec()),
            Err(e) => warnings.push(FsError::io("read symlink", path, e).to_string()),
        }
    }
    node.xattrs = read_xattrs(path, &mut warnings);
    (node, warnings)
}

/// Options for applying metadata on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Set numeric uid and gid with lchown (normally when running as root).
    pub ownership: bool,
    /// Set the recorded extended attributes.
    pub xattrs: bool,
}

/// Whether the current process runs as root (euid 0).
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when `md` (lstat of the current file) shows the same file as `node` recorded in a
/// parent snapshot without reading content: same kind, size, mtime, ctime, inode and device.
pub fn unchanged_since(node: &Node, md: &Metadata) -> bool {
    let Some(kind) = kind_of(md.file_type()) else {
        return false;
    };
    kind == node.kind
        && recorded_size(kind, md) == node.size
        && to_ns(md.mtime(), md.mtime_nsec()) == node.mtime_ns
        && to_ns(md.ctime(), md.ctime_nsec()) == node.ctime_ns
        && md.ino() == node.inode
        && md.dev() == node.dev
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    use filetime::FileTime;
    use nix::sys::stat::Mode;

    fn to_filetime(ns: i64) -> FileTime {
        let secs = ns.div_euclid(1_000_000_000);
        // rem_euclid of a positive divisor is in 0..1e9, so it fits in u32.
        let nanos = u32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0);
        FileTime::from_unix_time(secs, nanos)
    }
    use std::os::unix::fs::lchown;

    const ATIME_NS: i64 = 1_600_000_000_123_456_789;
    const MTIME_NS: i64 = 1_650_000_000_987_654_321;

    fn lstat(p: &Path) -> Metadata {
        std::fs::symlink_metadata(p).unwrap()
    }

    fn capture(p: &Path) -> Node {
        let mut owners = OwnerNames::new();
        let name = p.file_name().unwrap().as_bytes();
        let (node, warnings) = node_from_metadata(p, name, &lstat(p), &mut owners);
        assert!(warnings.is_empty(), "warnings: {warnings:?}");
        node
    }

    fn set_times(p: &Path) {
        filetime::set_symlink_file_times(p, to_filetime(ATIME_NS), to_filetime(MTIME_NS)).unwrap();
    }

    /// Gives `b/NAME` the metadata of `node` the way a restore does (through the
    /// confined target).
    fn apply_in(b: &Path, node: &Node) {
        let target = crate::confined::Confined::open(b).unwrap();
        let rel = Path::new(OsStr::from_bytes(&node.name));
        target.apply_metadata(rel, node, &opts()).unwrap();
    }

    /// Creates the symlink or special file `b/NAME` of `node` as a restore does.
    fn create_in(b: &Path, node: &Node) {
        let target = crate::confined::Confined::open(b).unwrap();
        let rel = Path::new(OsStr::from_bytes(&node.name));
        match node.kind {
            NodeKind::Symlink => target
                .symlink(node.link_target.as_deref().unwrap(), rel)
                .unwrap(),
            kind => target.mknod(rel, kind, node.rdev).unwrap(),
        }
    }

    fn opts() -> ApplyOptions {
        ApplyOptions {
            ownership: running_as_root(),
            xattrs: true,
        }
    }

    /// Sets owner 1234:5678 on `p` when root (before any chmod, which chown would undo).
    fn chown_src(p: &Path) {
        if running_as_root() {
            lchown(p, Some(1234), Some(5678)).unwrap();
        }
    }

    fn assert_same(src: &Node, dst: &Node) {
        assert_eq!(src.kind, dst.kind);
        assert_eq!(src.name, dst.name);
        assert_eq!(src.mode, dst.mode, "mode {:o} vs {:o}", src.mode, dst.mode);
        assert_eq!(src.mtime_ns, dst.mtime_ns);
        assert_eq!(src.atime_ns, dst.atime_ns);
        assert_eq!(src.size, dst.size);
        assert_eq!(src.rdev, dst.rdev);
        assert_eq!(src.link_target, dst.link_target);
        assert_eq!(src.xattrs, dst.xattrs);
        if running_as_root() {
            assert_eq!((src.uid, src.gid), (1234, 5678));
            assert_eq!((dst.uid, dst.gid), (1234, 5678));
        }
        assert!(dst.content.is_empty() && dst.subtree.is_none());
    }

    /// Two directories with the same final name for source and restored copy.
    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("src");
        let b = tmp.path().join("dst");
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        (tmp, a, b)
    }

    #[test]
    fn fsmeta_file_roundtrip_with_setuid_xattr_times_owner() {
        let (_tmp, a, b) = dirs();
        let src = a.join("f");
        std::fs::write(&src, b"hello").unwrap();
        chown_src(&src);
        std::fs::set_permissions(&src, Permissions::from_mode(0o4755)).unwrap();
        let have_xattrs = match xattr::set(&src, "user.arca", b"\x00\xffvalue") {
            Ok(()) => true,
            Err(e) => {
                assert!(xattrs_unsupported(&e), "set xattr: {e}");
                println!("note: user xattrs not supported here, skipping xattr assertion");
                false
            }
        };
        set_times(&src);

        let node = capture(&src);
        assert_eq!(node.kind, NodeKind::File);
        assert_eq!(node.mode, 0o4755);
        assert_eq!(node.size, 5);
        assert_eq!(node.mtime_ns, MTIME_NS);
        assert_eq!(node.atime_ns, ATIME_NS);
        assert_eq!(node.nlink, 1);
        if have_xattrs {
            assert_eq!(
                node.xattrs,
                vec![Xattr {
                    name: b"user.arca".to_vec(),
                    value: b"\x00\xffvalue".to_vec()
                }]
            );
        }

        let dst = b.join("f");
        std::fs::write(&dst, b"hello").unwrap();
        apply_in(&b, &node);
        assert_same(&node, &capture(&dst));
    }

    #[test]
    fn fsmeta_dir_roundtrip_sticky() {
        let (_tmp, a, b) = dirs();
        let src = a.join("d");
        std::fs::create_dir(&src).unwrap();
        chown_src(&src);
        std::fs::set_permissions(&src, Permissions::from_mode(0o1777)).unwrap();
        set_times(&src);
        let node = capture(&src);
        assert_eq!(node.kind, NodeKind::Dir);
        assert_eq!(node.mode, 0o1777);
        assert_eq!(node.size, 0);

        let dst = b.join("d");
        std::fs::create_dir(&dst).unwrap();
        apply_in(&b, &node);
        assert_same(&node, &capture(&dst));
    }

    #[test]
    fn fsmeta_symlink_roundtrip_non_utf8_target() {
        let (_tmp, a, b) = dirs();
        let src = a.join("l");
        let target: &[u8] = b"../t\xff\xfeget";
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &src).unwrap();
        chown_src(&src);
        set_times(&src);
        let node = capture(&src);
        assert_eq!(node.kind, NodeKind::Symlink);
        assert_eq!(node.link_target.as_deref(), Some(target));
        assert_eq!(node.size, 0);

        let dst = b.join("l");
        create_in(&b, &node);
        apply_in(&b, &node);
        assert_same(&node, &capture(&dst));
    }

    #[test]
    fn fsmeta_fifo_roundtrip() {
        let (_tmp, a, b) = dirs();
        let src = a.join("p");
        nix::unistd::mkfifo(&src, Mode::from_bits_truncate(0o600)).unwrap();
        chown_src(&src);
        std::fs::set_permissions(&src, Permissions::from_mode(0o640)).unwrap();
        set_times(&src);
        let node = capture(&src);
        assert_eq!(node.kind, NodeKind::Fifo);
        assert_eq!(node.mode, 0o640);

        let dst = b.join("p");
        create_in(&b, &node);
        apply_in(&b, &node);
        assert_same(&node, &capture(&dst));
    }

    #[test]
    fn fsmeta_socket_roundtrip() {
        let (_tmp, a, b) = dirs();
        let src = a.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&src).unwrap();
        drop(listener);
        chown_src(&src);
        std::fs::set_permissions(&src, Permissions::from_mode(0o755)).unwrap();
        set_times(&src);
        let node = capture(&src);
        assert_eq!(node.kind, NodeKind::Socket);

        let dst = b.join("s");
        create_in(&b, &node);
        apply_in(&b, &node);
        assert_same(&node, &capture(&dst));
    }

    #[test]
    fn fsmeta_devices_when_root() {
        if !running_as_root() {
            println!("note: not root, skipping device test");
            return;
        }
        let (_tmp, a, b) = dirs();
        for (name, kind, dev) in [
            ("c", NodeKind::CharDevice, nix::sys::stat::makedev(1, 3)),
            ("b", NodeKind::BlockDevice, nix::sys::stat::makedev(7, 200)),
        ] {
            let mut wanted = Node::new(name.as_bytes().to_vec(), kind);
            wanted.mode = 0o666;
            wanted.rdev = dev;
            let src = a.join(name);
            create_in(&a, &wanted);
            chown_src(&src);
            std::fs::set_permissions(&src, Permissions::from_mode(0o620)).unwrap();
            set_times(&src);
            let node = capture(&src);
            assert_eq!(node.kind, kind);
            assert_eq!(node.rdev, dev);
            assert_eq!(node.mode, 0o620);

            let dst = b.join(name);
            create_in(&b, &node);
            apply_in(&b, &node);
            assert_same(&node, &capture(&dst));
        }
    }

    #[test]
    fn fsmeta_create_special_rejects_other_kinds() {
        let tmp = tempfile::tempdir().unwrap();
        let target = crate::confined::Confined::open(tmp.path()).unwrap();
        let err = target.mknod(Path::new("x"), NodeKind::File, 0).unwrap_err();
        assert!(err.to_string().contains("not a special file"), "{err}");
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn fsmeta_error_names_operation_and_path() {
        let tmp = tempfile::tempdir().unwrap();
        let target = crate::confined::Confined::open(tmp.path()).unwrap();
        let node = Node::new(b"missing".to_vec(), NodeKind::File);
        let opts = ApplyOptions {
            ownership: true,
            xattrs: true,
        };
        let err = target
            .apply_metadata(Path::new("missing"), &node, &opts)
            .unwrap_err();
        let p = tmp.path().join("missing");
        assert_eq!(
            err.to_string(),
            format!("open {}: No such file or directory", p.display())
        );
        assert_eq!(
            err.io_error().map(io::Error::kind),
            Some(io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn fsmeta_apply_continues_after_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let mut node = capture(&p);
        // No such namespace: the kernel refuses it, the later steps still run.
        node.xattrs = vec![Xattr {
            name: b"bogus.attr".to_vec(),
            value: b"v".to_vec(),
        }];
        node.mode = 0o2710;
        node.mtime_ns = MTIME_NS;
        node.atime_ns = ATIME_NS;
        let target = crate::confined::Confined::open(tmp.path()).unwrap();
        let opts = ApplyOptions {
            ownership: false,
            xattrs: true,
        };
        let err = target
            .apply_metadata(Path::new("f"), &node, &opts)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("set extended attribute bogus.attr of "),
            "{err}"
        );
        let after = capture(&p);
        assert_eq!(after.mode, 0o2710);
        assert_eq!(after.mtime_ns, MTIME_NS);
        assert_eq!(after.atime_ns, ATIME_NS);
    }

    #[test]
    fn fsmeta_unchanged_since() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let node = capture(&p);
        assert!(unchanged_since(&node, &lstat(&p)));

        // Any recorded field that differs means changed.
        let perturbed: [fn(&mut Node); 6] = [
            |n| n.kind = NodeKind::Symlink,
            |n| n.size += 1,
            |n| n.mtime_ns += 1,
            |n| n.ctime_ns += 1,
            |n| n.inode += 1,
            |n| n.dev += 1,
        ];
        for change in perturbed {
            let mut other = node.clone();
            change(&mut other);
            assert!(!unchanged_since(&other, &lstat(&p)));
        }
        // Fields that are not compared (e.g. owner names) do not matter.
        let mut other = node.clone();
        other.user = Some("someone".into());
        assert!(unchanged_since(&other, &lstat(&p)));

        // Real content change.
        std::fs::write(&p, b"three").unwrap();
        assert!(!unchanged_since(&node, &lstat(&p)));

        // Replaced by another file: inode differs.
        let fresh = capture(&p);
        let q = tmp.path().join("g");
        std::fs::write(&q, b"two").unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert!(!unchanged_since(&fresh, &lstat(&p)));

        // Directories: size is not compared against st_size.
        let d = tmp.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let dn = capture(&d);
        assert!(unchanged_since(&dn, &lstat(&d)));
    }

    #[test]
    fn fsmeta_owner_names_cached() {
        let mut owners = OwnerNames::new();
        assert_eq!(owners.user(0).as_deref(), Some("root"));
        assert_eq!(owners.user(0).as_deref(), Some("root"));
        assert!(owners.group(0).is_some());
        assert_eq!(owners.user(3_999_999_999), None);
        assert_eq!(owners.group(3_999_999_999), None);
        assert_eq!(owners.users.len(), 2);
    }

    #[test]
    fn fsmeta_time_conversion() {
        for ns in [
            0,
            1,
            -1,
            ATIME_NS,
            -1_500_000_000,
            i64::MAX,
            i64::MIN + 1_000_000_000,
        ] {
            let ft = to_filetime(ns);
            assert_eq!(to_ns(ft.unix_seconds(), i64::from(ft.nanoseconds())), ns);
        }
    }
}
