//! What a restore does with what already stands in its target, entry by entry, through
//! the confined target ([`Confined`]) only.
//!
//! The rules, for every `--overwrite` mode:
//! - `never`: an existing entry is not touched at all, neither its content nor its
//!   metadata, whatever its type; it is reported as skipped. Missing entries are created.
//! - `always`, `if-changed`: an entry of the wrong type is replaced. A file, symlink or
//!   special file is unlinked, an empty directory removed; a non-empty directory only with
//!   `--delete`, otherwise the entry is a conflict (an error: the restore exits 1).
//! - An existing regular file with more than one link is never written in place (its
//!   other names may be outside the target): it is unlinked and written anew.
//! - Symlinks in the target are never followed: one standing where a directory belongs is
//!   replaced (or, under `never`, makes that directory unavailable).

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::confined::{Confined, Entry, EntryKind, FileAccess};
use crate::error::{Error, Result};
use crate::format::{EntryError, NodeKind};
use crate::id::Id;
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::Repository;

use super::plan::{Plan, PlanFile};
use super::{Overwrite, RestoreOptions, plain_length};

/// How a planned directory stands after the first pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// Created by this restore: nothing in it needs looking at before it is written.
    Created,
    /// It was there; under `never` its metadata is left alone.
    Existing,
    /// It could not be made a directory: nothing beneath it is restored.
    Unavailable,
}

/// Most skipped paths listed in a summary (the count is exact).
const SKIPPED_LISTED: usize = 1000;

/// Errors and skipped entries of a restore, shared by its threads.
pub struct Report<'a> {
    pub target: &'a Confined,
    pub progress: &'a dyn Progress,
    pub errors: Mutex<Vec<EntryError>>,
    pub skipped: AtomicU64,
    pub skipped_paths: Mutex<Vec<String>>,
}

impl<'a> Report<'a> {
    pub fn new(target: &'a Confined, progress: &'a dyn Progress) -> Report<'a> {
        Report {
            target,
            progress,
            errors: Mutex::new(Vec::new()),
            skipped: AtomicU64::new(0),
            skipped_paths: Mutex::new(Vec::new()),
        }
    }

    /// Records that the entry at `rel` could not be restored.
    pub fn fail(&self, rel: &Path, reason: String) {
        let shown = self.target.display(rel);
        self.progress.warning(&shown, &reason);
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(EntryError {
                path: shown.to_string_lossy().into_owned(),
                reason,
            });
    }

    /// Records that the existing entry at `rel` was left as it was (`--overwrite never`).
    pub fn skip(&self, rel: &Path) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        let mut listed = self.skipped_paths.lock().unwrap_or_else(|p| p.into_inner());
        if listed.len() < SKIPPED_LISTED {
            listed.push(self.target.display(rel).to_string_lossy().into_owned());
        }
    }
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "a file",
        EntryKind::Dir => "a directory",
        EntryKind::Symlink => "a symlink",
        EntryKind::Special => "a special file",
    }
}

/// Removes what stands at `rel` to make room for an entry of another kind (or a file
/// with other links). A non-empty directory goes only with `delete`.
pub fn make_way(
    target: &Confined,
    rel: &Path,
    existing: &Entry,
    delete: bool,
    wanted: &str,
) -> std::result::Result<(), String> {
    if existing.kind == EntryKind::Dir {
        let empty = target.is_empty_dir(rel).map_err(|e| {
            format!("cannot read the directory standing where {wanted} belongs: {e}")
        })?;
        if empty {
            return target.remove(rel, EntryKind::Dir).map_err(|e| {
                format!("cannot remove the empty directory standing where {wanted} belongs: {e}")
            });
        }
        if !delete {
            return Err(format!(
                "a non-empty directory stands where the snapshot has {wanted}; it was left as \
                 it is (--delete replaces it)"
            ));
        }
        return target.remove_tree(rel).map(drop).map_err(|e| {
            format!("cannot remove the directory standing where {wanted} belongs: {e}")
        });
    }
    target.remove(rel, existing.kind).map_err(|e| {
        format!(
            "cannot replace {} with {wanted}: {e}",
            kind_name(existing.kind)
        )
    })
}

/// Makes every planned directory a directory (parents first); returns their states.
pub fn prepare_dirs(plan: &Plan, opts: &RestoreOptions, report: &Report<'_>) -> Vec<DirState> {
    let target = report.target;
    let mut states: Vec<DirState> = Vec::with_capacity(plan.dirs.len());
    for d in &plan.dirs {
        let parent = d.parent.map(|p| states[p]);
        let state = match parent {
            Some(DirState::Unavailable) => DirState::Unavailable,
            Some(DirState::Created) => match target.create_dir(&d.rel) {
                Ok(()) => DirState::Created,
                Err(e) => {
                    report.fail(&d.rel, format!("create directory: {e}"));
                    DirState::Unavailable
                }
            },
            _ => prepare_dir(target, &d.rel, opts, report),
        };
        states.push(state);
    }
    states
}

fn prepare_dir(
    target: &Confined,
    rel: &Path,
    opts: &RestoreOptions,
    report: &Report<'_>,
) -> DirState {
    let created = |report: &Report<'_>| match target.create_dir(rel) {
        Ok(()) => DirState::Created,
        Err(e) => {
            report.fail(rel, format!("create directory: {e}"));
            DirState::Unavailable
        }
    };
    match target.lstat(rel) {
        Ok(None) => created(report),
        Ok(Some(e)) if e.kind == EntryKind::Dir => DirState::Existing,
        Ok(Some(e)) if opts.overwrite == Overwrite::Never => {
            report.fail(
                rel,
                format!(
                    "{} stands where the snapshot has a directory; left as it is \
                     (--overwrite never), nothing beneath it was restored",
                    kind_name(e.kind)
                ),
            );
            DirState::Unavailable
        }
        Ok(Some(e)) => match make_way(target, rel, &e, opts.delete, "a directory") {
            Ok(()) => created(report),
            Err(reason) => {
                report.fail(rel, reason);
                DirState::Unavailable
            }
        },
        Err(e) => {
            report.fail(rel, format!("cannot look at the target: {e}"));
            DirState::Unavailable
        }
    }
}

/// What to do with one planned file.
pub enum FilePrep {
    /// Nothing to write: the file is unchanged (`untouched: false`, its metadata is
    /// still set) or was left as it was under `never` (`untouched: true`).
    Skip { untouched: bool },
    Write {
        blobs: Vec<(Id, u64)>,
        /// Created by this restore (holes may be left in it).
        fresh: bool,
        unchanged_bytes: u64,
    },
}

/// Decides what to write of `f`, comparing with the file in the target when there is one.
pub fn prepare_file(
    repo: &Repository,
    index: &Index,
    f: &PlanFile,
    opts: &RestoreOptions,
    in_new_dir: bool,
    target: &Confined,
) -> std::result::Result<FilePrep, String> {
    let node = &f.node;
    let mut layout = Vec::with_capacity(node.content.len());
    let mut off = 0u64;
    for id in &node.content {
        let loc = index
            .get(id)
            .ok_or_else(|| Error::BlobNotFound(*id).to_string())?;
        let len = plain_length(&loc.entry);
        layout.push((*id, off, len));
        off += len;
    }
    let existing = if in_new_dir {
        None
    } else {
        target
            .lstat(&f.rel)
            .map_err(|e| format!("cannot look at the target: {e}"))?
    };
    let fresh = |layout: &[(Id, u64, u64)]| {
        if layout.is_empty() {
            create_sized(target, &f.rel, node.size).map_err(|e| e.to_string())?;
        }
        Ok(FilePrep::Write {
            blobs: layout.iter().map(|&(id, off, _)| (id, off)).collect(),
            fresh: true,
            unchanged_bytes: 0,
        })
    };
    let Some(e) = existing else {
        return fresh(&layout);
    };
    if opts.overwrite == Overwrite::Never {
        return Ok(FilePrep::Skip { untouched: true });
    }
    if e.kind != EntryKind::File || e.nlink > 1 {
        make_way(target, &f.rel, &e, opts.delete, "a file")?;
        return fresh(&layout);
    }
    if opts.overwrite == Overwrite::IfChanged && e.size == node.size && e.mtime_ns == node.mtime_ns
    {
        return Ok(FilePrep::Skip { untouched: false });
    }
    compare_in_place(repo, target, f, &layout, &e).map_err(|e| e.to_string())
}

/// Compares an existing file blob by blob with the snapshot; keeps what matches.
fn compare_in_place(
    repo: &Repository,
    target: &Confined,
    f: &PlanFile,
    layout: &[(Id, u64, u64)],
    existing: &Entry,
) -> Result<FilePrep> {
    let shown = target.display(&f.rel);
    let file = target
        .open_file(&f.rel, FileAccess::ReadWrite)
        .map_err(|e| Error::path(&shown, e))?;
    let mut blobs = Vec::new();
    let mut unchanged = 0u64;
    let mut buf = Vec::new();
    for &(id, off, len) in layout {
        let same = off + len <= existing.size && {
            buf.resize(len as usize, 0);
            file.read_exact_at(&mut buf, off).is_ok() && repo.crypto().blob_id(&buf) == id
        };
        if same {
            unchanged += len;
        } else {
            blobs.push((id, off));
        }
    }
    file.set_len(f.node.size)
        .map_err(|e| Error::path(&shown, e))?;
    if blobs.is_empty() && existing.size == f.node.size {
        return Ok(FilePrep::Skip { untouched: false });
    }
    Ok(FilePrep::Write {
        blobs,
        fresh: false,
        unchanged_bytes: unchanged,
    })
}

fn create_sized(target: &Confined, rel: &Path, size: u64) -> Result<()> {
    let shown = target.display(rel);
    let f = target
        .open_file(rel, FileAccess::WriteCreate)
        .map_err(|e| Error::path(&shown, e))?;
    if size > 0 {
        f.set_len(size).map_err(|e| Error::path(&shown, e))?;
    }
    Ok(())
}

/// Whether an existing entry at `rel` must first make way for a new one of `wanted`
/// (`Ok(true)`: the path is free now), is kept under `never` (`Ok(false)`), or stays
/// in the way (an error).
pub fn clear_for(
    target: &Confined,
    rel: &Path,
    opts: &RestoreOptions,
    wanted: &str,
) -> std::result::Result<bool, String> {
    match target.lstat(rel) {
        Ok(None) => Ok(true),
        Ok(Some(_)) if opts.overwrite == Overwrite::Never => Ok(false),
        Ok(Some(e)) => make_way(target, rel, &e, opts.delete, wanted).map(|()| true),
        Err(e) => Err(format!("cannot look at the target: {e}")),
    }
}

/// Creates a symlink, fifo, socket or device from its node at `rel`.
pub fn create_other(
    target: &Confined,
    rel: &Path,
    node: &crate::format::Node,
) -> std::result::Result<(), String> {
    match node.kind {
        NodeKind::Symlink => {
            let Some(link) = node.link_target.as_deref() else {
                return Err("create symlink: the node has no link target".into());
            };
            target
                .symlink(link, rel)
                .map_err(|e| format!("create symlink: {e}"))
        }
        kind => target
            .mknod(rel, kind, node.rdev)
            .map_err(|e| format!("create {kind:?}: {e}")),
    }
}

/// `--delete`: removes from every completely restored directory what the snapshot does
/// not have. Returns the number of entries removed.
pub fn delete_extras(plan: &Plan, states: &[DirState], report: &Report<'_>) -> u64 {
    let target = report.target;
    let mut deleted = 0;
    for (dir, names) in &plan.complete_dirs {
        if dir.is_some_and(|d| states[d] == DirState::Unavailable) {
            continue;
        }
        let rel = plan.dir_rel(*dir);
        let Ok(present) = target.list(rel) else {
            continue;
        };
        for name in present {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
            if names.binary_search_by(|n| n.as_slice().cmp(bytes)).is_ok() {
                continue;
            }
            let p = rel.join(&name);
            match target.remove_tree(&p) {
                Ok(_) => deleted += 1,
                Err(e) => report.fail(&p, format!("delete: {e}")),
            }
        }
    }
    deleted
}

/// Re-reads a restored file and compares its content with the snapshot's blob ids.
pub fn verify_file(
    repo: &Repository,
    index: &Index,
    target: &Confined,
    f: &PlanFile,
) -> Result<()> {
    let shown = target.display(&f.rel);
    let mut file = target
        .open_file(&f.rel, FileAccess::Read)
        .map_err(|e| Error::path(&shown, e))?;
    let mut buf = Vec::new();
    let mut total = 0u64;
    for id in &f.node.content {
        let loc = index.get(id).ok_or(Error::BlobNotFound(*id))?;
        let len = plain_length(&loc.entry) as usize;
        buf.resize(len, 0);
        file.read_exact(&mut buf)
            .map_err(|e| Error::path(&shown, format!("reading at {total}: {e}")))?;
        if repo.crypto().blob_id(&buf) != *id {
            return Err(Error::path(
                &shown,
                format!("content at offset {total} differs from the snapshot"),
            ));
        }
        total += len as u64;
    }
    let md = file.metadata().map_err(|e| Error::path(&shown, e))?;
    if md.len() != total {
        return Err(Error::path(
            &shown,
            format!("size is {} but the snapshot has {total}", md.len()),
        ));
    }
    Ok(())
}
