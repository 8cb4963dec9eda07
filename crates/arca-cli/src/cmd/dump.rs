//! `arca dump`: a file of a snapshot to stdout, or a directory as a tar stream.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arca_core::Repository;
use arca_core::format::{Node, NodeKind};
use arca_core::index::Index;
use arca_core::restore::find_path;
use arca_core::walk::{ContentReader, walk_tree};

use crate::cli::{DumpArgs, GlobalArgs};
use crate::common;

fn header(n: &Node, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(n.mode);
    h.set_uid(n.uid as u64);
    h.set_gid(n.gid as u64);
    h.set_mtime((n.mtime_ns / 1_000_000_000).max(0) as u64);
    if let Some(u) = &n.user {
        let _ = h.set_username(u);
    }
    if let Some(gr) = &n.group {
        let _ = h.set_groupname(gr);
    }
    h.set_size(0);
    h
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    repo: &Repository,
    index: &Index,
    path: &Path,
    n: &Node,
) -> Result<()> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    match n.kind {
        NodeKind::File => {
            let mut h = header(n, tar::EntryType::Regular);
            h.set_size(n.size);
            tar.append_data(&mut h, rel, ContentReader::new(repo, index, n))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        NodeKind::Dir => {
            let mut h = header(n, tar::EntryType::Directory);
            tar.append_data(&mut h, rel, std::io::empty())?;
        }
        NodeKind::Symlink => {
            let mut h = header(n, tar::EntryType::Symlink);
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(
                n.link_target.as_deref().unwrap_or_default(),
            ));
            tar.append_link(&mut h, rel, target)?;
        }
        NodeKind::Fifo => {
            let mut h = header(n, tar::EntryType::Fifo);
            tar.append_data(&mut h, rel, std::io::empty())?;
        }
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            let kind = if n.kind == NodeKind::CharDevice {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = header(n, kind);
            let _ = h.set_device_major(nix::sys::stat::major(n.rdev) as u32);
            let _ = h.set_device_minor(nix::sys::stat::minor(n.rdev) as u32);
            tar.append_data(&mut h, rel, std::io::empty())?;
        }
        NodeKind::Socket => {}
    }
    Ok(())
}

pub fn run(g: &GlobalArgs, a: DumpArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let (_, snap) = common::resolve(&snaps, &a.snapshot, None)?;
    let path = PathBuf::from("/").join(a.path.trim_start_matches('/'));
    let node = find_path(&repo, &index, &snap.tree, &path)?;
    let out: Box<dyn Write> = match &a.target {
        Some(t) => {
            Box::new(std::fs::File::create(t).with_context(|| format!("creating {}", t.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    if node.kind == NodeKind::File {
        std::io::copy(&mut ContentReader::new(&repo, &index, &node), &mut out)
            .with_context(|| format!("dumping {}", path.display()))?;
    } else {
        let mut tar = tar::Builder::new(&mut out);
        tar.follow_symlinks(false);
        if node.kind == NodeKind::Dir {
            if let Some(t) = node.subtree {
                let mut err = None;
                walk_tree(&repo, &index, &t, &path, &mut |p, n| {
                    if let Err(e) = append(&mut tar, &repo, &index, p, n) {
                        err = Some(e);
                        return Err(arca_core::Error::Interrupted);
                    }
                    Ok(true)
                })
                .or_else(|e| if err.is_some() { Ok(()) } else { Err(e) })?;
                if let Some(e) = err {
                    return Err(e);
                }
            }
        } else {
            append(&mut tar, &repo, &index, &path, &node)?;
        }
        tar.finish()?;
    }
    out.flush()?;
    Ok(crate::exit::OK)
}
