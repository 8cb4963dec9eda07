//! Unpacking a tar archive (a `stream` base backup's `base.tar`) into a confined target.
//!
//! Every entry is written through [`Confined`], like the restorer's own writes: names
//! must be plain relative paths, nothing is written through a symlink (one the archive
//! itself created included), hard links must point at an entry inside the target, and
//! metadata is set without following links. Directories get their times last, deepest
//! first.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use arca_core::confined::{Confined, EntryKind, FileAccess};
use arca_core::format::NodeKind;

use super::{Error, Result};

/// Unpacks `archive` into `target`; ownership is set when `ownership` (root).
pub fn unpack<R: Read>(
    archive: &mut tar::Archive<R>,
    target: &Confined,
    ownership: bool,
) -> Result<()> {
    let bad = |what: &str| Error::Invalid(format!("base.tar: {what}"));
    let mut dirs: Vec<(PathBuf, i64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| bad(&format!("cannot read the archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(&format!("cannot read an entry: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| bad(&format!("bad entry name: {e}")))?
            .into_owned();
        let Some(rel) = plain(&raw) else {
            return Err(bad(&format!(
                "refusing entry {:?}: not a plain relative path",
                raw.display()
            )));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o600);
        let mtime_ns = header.mtime().unwrap_or(0) as i64 * 1_000_000_000;
        let io = |e: std::io::Error| Error::io(target.display(&rel), e);
        make_parents(target, &rel).map_err(io)?;
        let kind = header.entry_type();
        if kind.is_dir() {
            match target.lstat(&rel).map_err(io)? {
                Some(e) if e.kind == EntryKind::Dir => {}
                Some(e) => {
                    target.remove(&rel, e.kind).map_err(io)?;
                    target.create_dir(&rel).map_err(io)?;
                }
                None => target.create_dir(&rel).map_err(io)?,
            }
            target.set_mode(&rel, mode).map_err(io)?;
            if ownership {
                owner(target, &rel, &header).map_err(io)?;
            }
            dirs.push((rel.clone(), mtime_ns));
        } else {
            clear(target, &rel).map_err(io)?;
            if kind.is_file() {
                let mut f = target
                    .open_file(&rel, FileAccess::WriteCreate)
                    .map_err(io)?;
                std::io::copy(&mut entry, &mut f).map_err(io)?;
                nix::sys::stat::fchmod(&f, nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777))
                    .map_err(|e| io(e.into()))?;
            } else if kind.is_symlink() || kind.is_hard_link() {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad(&format!("{} has no link target", rel.display())))?
                    .into_owned();
                if kind.is_symlink() {
                    target.symlink(&link, &rel).map_err(io)?;
                } else {
                    let link = Path::new(std::ffi::OsStr::from_bytes(&link));
                    let Some(existing) = plain(link) else {
                        return Err(bad(&format!(
                            "refusing hard link {} to outside the archive",
                            rel.display()
                        )));
                    };
                    target.hard_link(&existing, &rel).map_err(io)?;
                    continue;
                }
            } else if let Some(node_kind) = special(kind) {
                let dev = nix::sys::stat::makedev(
                    u64::from(header.device_major().ok().flatten().unwrap_or(0)),
                    u64::from(header.device_minor().ok().flatten().unwrap_or(0)),
                );
                target.mknod(&rel, node_kind, dev).map_err(io)?;
                target.set_mode(&rel, mode).map_err(io)?;
            } else {
                // PAX and GNU extension headers are read by the iterator itself; other
                // kinds carry nothing a data directory needs.
                continue;
            }
            if ownership {
                owner(target, &rel, &header).map_err(io)?;
            }
            target.set_times(&rel, mtime_ns, mtime_ns).map_err(io)?;
        }
    }
    for (rel, mtime_ns) in dirs.iter().rev() {
        target
            .set_times(rel, *mtime_ns, *mtime_ns)
            .map_err(|e| Error::io(target.display(rel), e))?;
    }
    Ok(())
}

/// `path` without a leading `./`, when it is a plain relative path.
fn plain(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn special(kind: tar::EntryType) -> Option<NodeKind> {
    match kind {
        tar::EntryType::Fifo => Some(NodeKind::Fifo),
        tar::EntryType::Char => Some(NodeKind::CharDevice),
        tar::EntryType::Block => Some(NodeKind::BlockDevice),
        _ => None,
    }
}

/// Creates the missing directories above `rel` (mode 0700), as an archive that lists a
/// file before its directory needs.
fn make_parents(target: &Confined, rel: &Path) -> std::io::Result<()> {
    let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    // The usual case, the parent listed before: one look, not one per ancestor.
    if target.lstat(parent)?.is_some() {
        return Ok(());
    }
    let mut dir = PathBuf::new();
    for c in parent.components() {
        dir.push(c);
        if target.lstat(&dir)?.is_none() {
            target.create_dir(&dir)?;
        }
    }
    Ok(())
}

/// Removes a file, link or special file at `rel` that a later entry replaces; a
/// directory there is an error.
fn clear(target: &Confined, rel: &Path) -> std::io::Result<()> {
    match target.lstat(rel)? {
        Some(e) if e.kind == EntryKind::Dir => Err(std::io::Error::other(
            "a directory stands where the archive has a file",
        )),
        Some(e) => target.remove(rel, e.kind),
        None => Ok(()),
    }
}

fn owner(target: &Confined, rel: &Path, header: &tar::Header) -> std::io::Result<()> {
    let uid = header.uid().unwrap_or(0) as u32;
    let gid = header.gid().unwrap_or(0) as u32;
    target.set_owner(rel, uid, gid)
}
