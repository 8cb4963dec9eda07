//! The restorer: plans a restore from a snapshot's trees, then fetches blobs pack by pack on
//! several threads, writes them at their offsets (leaving holes where content is zero),
//! links hardlinks, creates special files and sets metadata bottom-up; optionally verifies.
//!
//! Over an existing tree only what differs is written: existing files are compared blob
//! by blob (`Overwrite::Always`), or skipped when size and mtime match
//! (`Overwrite::IfChanged`), or never touched (`Overwrite::Never`).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::crypto::SEAL_OVERHEAD;
use crate::error::{Error, Result};
use crate::format::{BlobEntry, EntryError, Node, NodeKind, Tree};
use crate::fsmeta::{self, ApplyOptions};
use crate::id::Id;
use crate::index::Index;
use crate::longpath::resolve as lp;
use crate::pack::open_blob_in_place;
use crate::progress::Progress;
use crate::repo::{Repository, pack_name};

/// What to do with files that already exist in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overwrite {
    /// Compare content blob by blob and rewrite what differs.
    #[default]
    Always,
    /// Skip files whose size and mtime match; otherwise as `Always`.
    IfChanged,
    /// Leave existing files alone.
    Never,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
    pub overwrite: Overwrite,
    /// Remove files in the target that are not in the snapshot.
    pub delete: bool,
    pub dry_run: bool,
    /// Re-read written files and compare their content hashes.
    pub verify: bool,
    pub threads: Option<usize>,
    /// Restore ownership; default: when running as root.
    pub ownership: Option<bool>,
    /// Write everything restored to disk before returning ([`sync_file_system`]).
    pub sync: bool,
}

/// Writes back everything written to the file system that holds `dir` (one `syncfs`,
/// cheaper than an fsync per restored file): a power cut after a restore returned then
/// cannot leave empty or torn files behind.
pub fn sync_file_system(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::path(dir, e))?;
    nix::unistd::syncfs(&f).map_err(|e| Error::path(dir, std::io::Error::from(e)))
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub files_written: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub other_entries: u64,
    pub total_bytes: u64,
    pub bytes_written: u64,
    pub bytes_unchanged: u64,
    pub deleted: u64,
    pub verified_files: u64,
    pub errors: Vec<EntryError>,
    pub duration_secs: f64,
}

/// Blobs needed from one pack, each with the (file, offset) pairs it is written to.
type PackBlobs = Vec<(BlobEntry, Vec<(usize, u64)>)>;

struct PlanFile {
    path: PathBuf,
    node: Node,
    /// Index of the file this one is a hardlink of.
    link_to: Option<usize>,
}

#[derive(Default)]
struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<PlanFile>,
    others: Vec<(PathBuf, Node)>,
    /// Directories whose whole content is restored (for --delete).
    complete_dirs: Vec<(PathBuf, Vec<Vec<u8>>)>,
}

struct Filters {
    includes: Option<GlobSet>,
    excludes: Option<GlobSet>,
}

fn globset(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let full = if p.starts_with('/') {
            p.clone()
        } else {
            format!("**/{p}")
        };
        for g in [full.clone(), format!("{}/**", full.trim_end_matches('/'))] {
            b.add(
                GlobBuilder::new(&g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::Invalid(format!("bad pattern {p:?}: {e}")))?,
            );
        }
    }
    Ok(Some(b.build().map_err(|e| {
        Error::Invalid(format!("bad patterns: {e}"))
    })?))
}

/// Finds the node at `sub` (a path inside the snapshot) starting from the root tree.
pub fn find_path(repo: &Repository, index: &Index, root: &Id, sub: &Path) -> Result<Node> {
    let mut node = Node::new(Vec::new(), NodeKind::Dir);
    node.subtree = Some(*root);
    node.mode = 0o755;
    for c in sub.components() {
        let name = match c {
            std::path::Component::Normal(n) => n.as_bytes(),
            _ => continue,
        };
        let tree_id = match (&node.kind, node.subtree) {
            (NodeKind::Dir, Some(t)) => t,
            _ => {
                return Err(Error::Invalid(format!(
                    "{} is not a directory in the snapshot",
                    sub.display()
                )));
            }
        };
        let tree = repo.load_tree(index, &tree_id)?;
        node = tree
            .nodes
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| Error::Invalid(format!("{} is not in the snapshot", sub.display())))?;
    }
    Ok(node)
}

/// Plaintext length of a blob from its index entry.
pub fn plain_length(e: &BlobEntry) -> u64 {
    if e.raw_length > 0 {
        e.raw_length as u64
    } else {
        (e.length as usize).saturating_sub(SEAL_OVERHEAD) as u64
    }
}

/// Restores `node` (a directory's content, or a single file) into `target`.
/// `snapshot_prefix` is the path of `node` inside the snapshot (for include/exclude).
pub fn restore(
    repo: &Repository,
    index: &Index,
    node: &Node,
    snapshot_prefix: &Path,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let start = std::time::Instant::now();
    let filters = Filters {
        includes: globset(&opts.includes)?,
        excludes: globset(&opts.excludes)?,
    };
    let mut summary = RestoreSummary::default();
    let mut plan = Plan::default();
    let mut links: HashMap<(u64, u64), usize> = HashMap::new();
    if node.kind == NodeKind::Dir {
        plan_dir(
            repo,
            index,
            node,
            snapshot_prefix,
            target,
            &filters,
            false,
            &mut plan,
            &mut links,
            &mut summary,
        )?;
    } else {
        plan_entry(
            node.clone(),
            snapshot_prefix,
            target.join(std::ffi::OsStr::from_bytes(&node.name)),
            &mut plan,
            &mut links,
        );
    }
    summary.files = plan.files.len() as u64;
    summary.dirs = plan.dirs.len() as u64;
    summary.other_entries = plan.others.len() as u64;
    summary.total_bytes = plan.files.iter().map(|f| f.node.size).sum();
    progress.set_total(summary.files, summary.total_bytes);
    // Directories whose listing could not be read are errors of the restore (reported,
    // and they make it incomplete), never silently empty directories.
    for e in &summary.errors {
        progress.warning(Path::new(&e.path), &e.reason);
    }
    if opts.dry_run {
        summary.duration_secs = start.elapsed().as_secs_f64();
        return Ok(summary);
    }

    fs::create_dir_all(target).map_err(|e| Error::path(target, e))?;
    let errors = Mutex::new(Vec::<EntryError>::new());
    let fail = |path: &Path, reason: String| {
        progress.warning(path, &reason);
        errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(EntryError {
                path: path.to_string_lossy().into_owned(),
                reason,
            });
    };

    // Directories first (replacing anything that is not a directory). Those that did not
    // exist are remembered: nothing in them needs to be looked at before it is written.
    let mut created_dirs: std::collections::HashSet<&Path> = std::collections::HashSet::new();
    for (path, _) in &plan.dirs {
        match lp(path).and_then(|r| fs::symlink_metadata(r.path())) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                if opts.overwrite == Overwrite::Never {
                    fail(path, "exists and is not a directory".into());
                    continue;
                }
                if let Err(e) = lp(path).and_then(|r| fs::remove_file(r.path())) {
                    fail(path, format!("cannot replace with a directory: {e}"));
                    continue;
                }
                if let Err(e) = lp(path).and_then(|r| fs::create_dir(r.path())) {
                    fail(path, format!("create directory: {e}"));
                }
            }
            Err(_) => match lp(path).and_then(|r| fs::create_dir_all(r.path())) {
                Ok(()) => {
                    created_dirs.insert(path);
                }
                Err(e) => fail(path, format!("create directory: {e}")),
            },
        }
    }

    // Decide per file what to write; collect the blobs needed.
    let mut needed: HashMap<Id, Vec<(usize, u64)>> = HashMap::new();
    let mut fresh = vec![false; plan.files.len()];
    let remaining: Vec<AtomicU64> = (0..plan.files.len()).map(|_| AtomicU64::new(0)).collect();
    let holes: Vec<AtomicBool> = (0..plan.files.len())
        .map(|_| AtomicBool::new(false))
        .collect();
    for (i, f) in plan.files.iter().enumerate() {
        if f.link_to.is_some() {
            continue;
        }
        let in_new_dir = f.path.parent().is_some_and(|d| created_dirs.contains(d));
        match prepare_file(repo, index, f, opts.overwrite, in_new_dir) {
            Ok(FilePrep::Skip) => {
                summary.files_unchanged += 1;
                summary.bytes_unchanged += f.node.size;
                progress.add_files(1);
                progress.add_bytes(f.node.size);
            }
            Ok(FilePrep::Write {
                blobs,
                fresh: is_fresh,
                unchanged_bytes,
            }) => {
                fresh[i] = is_fresh;
                summary.files_written += 1;
                summary.bytes_unchanged += unchanged_bytes;
                progress.add_bytes(unchanged_bytes);
                remaining[i].store(blobs.len() as u64, Ordering::Relaxed);
                if blobs.is_empty() {
                    progress.add_files(1);
                }
                for (id, off) in blobs {
                    needed.entry(id).or_default().push((i, off));
                }
            }
            Err(e) => fail(&f.path, e.to_string()),
        }
    }

    // Group by pack.
    let mut by_pack: HashMap<Id, PackBlobs> = HashMap::new();
    for (id, targets) in needed {
        match index.get(&id) {
            Some(loc) => by_pack
                .entry(loc.pack)
                .or_default()
                .push((loc.entry, targets)),
            None => {
                for (fi, _) in targets {
                    fail(
                        &plan.files[fi].path,
                        format!("blob {id} is missing from the repository"),
                    );
                }
            }
        }
    }
    let mut packs: Vec<(Id, PackBlobs)> = by_pack.into_iter().collect();
    // In the order of the files and offsets they fill first: a large file is written
    // front to back by the threads together (the order its packs were written in), not
    // at random offsets, which the kernel's writeback handles far better.
    packs.sort_by_cached_key(|(id, blobs)| {
        let first = blobs
            .iter()
            .flat_map(|(_, targets)| targets.iter().copied())
            .min()
            .unwrap_or((usize::MAX, u64::MAX));
        (first, *id)
    });
    let max_plain = if repo.storage().properties().local {
        WORK_PLAIN_BYTES
    } else {
        WORK_PLAIN_BYTES_REMOTE
    };
    let packs = split_work(packs, max_plain);
    // Fetches in flight: twice the cores, or the storage's connections if more.
    let threads = opts
        .threads
        .unwrap_or_else(|| {
            (std::thread::available_parallelism().map_or(2, |n| n.get()) * 2)
                .max(repo.storage().properties().connections)
        })
        .max(1);
    let written = AtomicU64::new(0);
    let apply = ApplyOptions {
        ownership: opts.ownership.unwrap_or_else(fsmeta::running_as_root),
        xattrs: true,
    };
    // Files whose metadata a restoring thread set as soon as their last blob was written
    // (the rest, and directories, get theirs at the end).
    let meta_done: Vec<AtomicBool> = (0..plan.files.len())
        .map(|_| AtomicBool::new(false))
        .collect();
    let write_locks: Vec<Mutex<()>> = (0..WRITE_LOCKS).map(|_| Mutex::new(())).collect();
    let shared = PackRestore {
        repo,
        plan: &plan,
        fresh: &fresh,
        remaining: &remaining,
        holes: &holes,
        meta_done: &meta_done,
        write_locks: &write_locks,
        apply: &apply,
        written: &written,
        progress,
        fail: &fail,
    };
    let queue = Mutex::new(packs.into_iter());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut open_files: HashMap<usize, File> = HashMap::new();
                let mut buffers = ReadBuffers::default();
                loop {
                    if progress.should_stop() {
                        break;
                    }
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some((pack, blobs)) = next else { break };
                    shared.restore_pack(&pack, &blobs, &mut open_files, &mut buffers);
                    if open_files.len() > 256 {
                        open_files.clear();
                    }
                }
            });
        }
    });
    if progress.should_stop() {
        return Err(Error::Interrupted);
    }
    summary.bytes_written = written.load(Ordering::Relaxed);

    // Hardlinks, symlinks and special files.
    for f in &plan.files {
        if let Some(first) = f.link_to {
            let src = &plan.files[first].path;
            let _ = lp(&f.path).and_then(|r| fs::remove_file(r.path()));
            let linked =
                lp(src).and_then(|s| lp(&f.path).and_then(|d| fs::hard_link(s.path(), d.path())));
            if let Err(e) = linked {
                fail(
                    &f.path,
                    format!("create hardlink to {}: {e}", src.display()),
                );
            }
            progress.add_files(1);
        }
    }
    for (path, node) in &plan.others {
        if let Ok(m) = lp(path).and_then(|r| fs::symlink_metadata(r.path())) {
            if opts.overwrite == Overwrite::Never {
                continue;
            }
            let r = lp(path).and_then(|r| {
                if m.is_dir() {
                    fs::remove_dir_all(r.path())
                } else {
                    fs::remove_file(r.path())
                }
            });
            if let Err(e) = r {
                fail(path, format!("cannot replace: {e}"));
                continue;
            }
        }
        let r = match lp(path) {
            Ok(rp) => match node.kind {
                NodeKind::Symlink => {
                    fsmeta::create_symlink(rp.path(), node).map_err(|e| e.to_string())
                }
                _ => fsmeta::create_special(rp.path(), node).map_err(|e| e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = r {
            fail(path, e);
        }
        progress.add_files(1);
    }

    // --delete: remove what the snapshot does not have.
    if opts.delete {
        for (dir, names) in &plan.complete_dirs {
            let Ok(rd) = lp(dir).and_then(|r| fs::read_dir(r.path())) else {
                continue;
            };
            for entry in rd.flatten() {
                let name = entry.file_name();
                if names
                    .binary_search_by(|n| n.as_slice().cmp(name.as_bytes()))
                    .is_ok()
                {
                    continue;
                }
                let p = entry.path();
                let r = lp(&p).and_then(|rp| match entry.file_type() {
                    Ok(t) if t.is_dir() => fs::remove_dir_all(rp.path()),
                    _ => fs::remove_file(rp.path()),
                });
                match r {
                    Ok(()) => summary.deleted += 1,
                    Err(e) => fail(&p, format!("delete: {e}")),
                }
            }
        }
    }

    // Metadata: files not done yet and others, then directories deepest first.
    let failed_paths: std::collections::HashSet<String> = errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|e| e.path.clone())
        .collect();
    for (i, f) in plan.files.iter().enumerate() {
        if f.link_to.is_none()
            && !meta_done[i].load(Ordering::Relaxed)
            && !failed_paths.contains(f.path.to_string_lossy().as_ref())
            && let Err(e) = apply_at(&f.path, &f.node, &apply)
        {
            fail(&f.path, e);
        }
    }
    for (path, node) in &plan.others {
        if let Err(e) = apply_at(path, node, &apply) {
            fail(path, e.to_string());
        }
    }
    for (path, node) in plan.dirs.iter().rev() {
        if let Err(e) = apply_at(path, node, &apply) {
            fail(path, e.to_string());
        }
    }

    if opts.sync {
        sync_file_system(target)?;
    }
    if opts.verify {
        let results = crate::parallel::map(
            plan.files.iter().filter(|f| f.link_to.is_none()).collect(),
            threads,
            |f| (f, verify_file(repo, index, f)),
        );
        for (f, r) in results {
            match r {
                Ok(()) => summary.verified_files += 1,
                Err(e) => fail(&f.path, format!("verification failed: {e}")),
            }
        }
    }
    summary
        .errors
        .extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
    summary.duration_secs = start.elapsed().as_secs_f64();
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn plan_dir(
    repo: &Repository,
    index: &Index,
    dir: &Node,
    snap_path: &Path,
    target: &Path,
    filters: &Filters,
    parent_included: bool,
    plan: &mut Plan,
    links: &mut HashMap<(u64, u64), usize>,
    summary: &mut RestoreSummary,
) -> Result<bool> {
    let tree: Tree = match dir.subtree {
        Some(id) => match repo.load_tree(index, &id) {
            Ok(t) => t,
            Err(e) => {
                summary.errors.push(EntryError {
                    path: target.to_string_lossy().into_owned(),
                    reason: format!("cannot read directory listing: {e}"),
                });
                return Ok(false);
            }
        },
        None => Tree::default(),
    };
    let mut any = false;
    let mut complete = true;
    let mut names = Vec::new();
    for node in tree.nodes {
        if !node.has_safe_name() {
            summary.errors.push(EntryError {
                path: target.to_string_lossy().into_owned(),
                reason: format!(
                    "refusing unsafe name {:?} in the snapshot",
                    node.name_lossy()
                ),
            });
            complete = false;
            continue;
        }
        let name = std::ffi::OsStr::from_bytes(&node.name);
        let sp = snap_path.join(name);
        let tp = target.join(name);
        if filters.excludes.as_ref().is_some_and(|g| g.is_match(&sp)) {
            complete = false;
            continue;
        }
        let included = parent_included || filters.includes.as_ref().is_none_or(|g| g.is_match(&sp));
        if node.kind == NodeKind::Dir {
            let dir_index = plan.dirs.len();
            plan.dirs.push((tp.clone(), node.clone()));
            let sub = plan_dir(
                repo, index, &node, &sp, &tp, filters, included, plan, links, summary,
            )?;
            if !(sub || included) {
                plan.dirs.remove(dir_index);
                complete = false;
                continue;
            }
            any = true;
        } else if included {
            plan_entry(node.clone(), &sp, tp, plan, links);
            any = true;
        } else {
            complete = false;
            continue;
        }
        names.push(node.name);
    }
    if complete {
        names.sort();
        plan.complete_dirs.push((target.to_path_buf(), names));
    }
    Ok(any)
}

fn plan_entry(
    node: Node,
    _snap_path: &Path,
    path: PathBuf,
    plan: &mut Plan,
    links: &mut HashMap<(u64, u64), usize>,
) {
    match node.kind {
        NodeKind::File => {
            let mut link_to = None;
            if node.nlink > 1 {
                let key = (node.dev, node.inode);
                match links.get(&key) {
                    Some(&first) => link_to = Some(first),
                    None => {
                        links.insert(key, plan.files.len());
                    }
                }
            }
            plan.files.push(PlanFile {
                path,
                node,
                link_to,
            });
        }
        NodeKind::Dir => plan.dirs.push((path, node)),
        _ => plan.others.push((path, node)),
    }
}

enum FilePrep {
    Skip,
    Write {
        blobs: Vec<(Id, u64)>,
        fresh: bool,
        unchanged_bytes: u64,
    },
}

fn prepare_file(
    repo: &Repository,
    index: &Index,
    f: &PlanFile,
    overwrite: Overwrite,
    in_new_dir: bool,
) -> Result<FilePrep> {
    let node = &f.node;
    let mut layout = Vec::with_capacity(node.content.len());
    let mut off = 0u64;
    for id in &node.content {
        let loc = index.get(id).ok_or(Error::BlobNotFound(*id))?;
        let len = plain_length(&loc.entry);
        layout.push((*id, off, len));
        off += len;
    }
    let existing = if in_new_dir {
        None
    } else {
        lp(&f.path)
            .and_then(|r| fs::symlink_metadata(r.path()))
            .ok()
    };
    match existing {
        Some(m) if m.is_file() => {
            if overwrite == Overwrite::Never {
                return Ok(FilePrep::Skip);
            }
            let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
            if overwrite == Overwrite::IfChanged && m.len() == node.size && mtime == node.mtime_ns {
                return Ok(FilePrep::Skip);
            }
            // Compare blob by blob; keep what matches.
            let file = lp(&f.path)
                .and_then(|r| OpenOptions::new().read(true).write(true).open(r.path()))
                .map_err(|e| Error::path(&f.path, e))?;
            let mut blobs = Vec::new();
            let mut unchanged = 0u64;
            let mut buf = Vec::new();
            for &(id, off, len) in &layout {
                let same = off + len <= m.len() && {
                    buf.resize(len as usize, 0);
                    file.read_exact_at(&mut buf, off).is_ok() && repo.crypto().blob_id(&buf) == id
                };
                if same {
                    unchanged += len;
                } else {
                    blobs.push((id, off));
                }
            }
            file.set_len(node.size)
                .map_err(|e| Error::path(&f.path, e))?;
            if blobs.is_empty() && m.len() == node.size {
                return Ok(FilePrep::Skip);
            }
            Ok(FilePrep::Write {
                blobs,
                fresh: false,
                unchanged_bytes: unchanged,
            })
        }
        Some(m) => {
            if overwrite == Overwrite::Never {
                return Ok(FilePrep::Skip);
            }
            if m.is_dir() {
                lp(&f.path)
                    .and_then(|r| fs::remove_dir_all(r.path()))
                    .map_err(|e| Error::path(&f.path, e))?;
            } else {
                lp(&f.path)
                    .and_then(|r| fs::remove_file(r.path()))
                    .map_err(|e| Error::path(&f.path, e))?;
            }
            fresh_file(f, &layout)
        }
        None => fresh_file(f, &layout),
    }
}

/// A file restored from scratch: every blob is written. Files with content are created by
/// the first blob written to them; empty ones here.
fn fresh_file(f: &PlanFile, layout: &[(Id, u64, u64)]) -> Result<FilePrep> {
    if layout.is_empty() {
        create_sized(&f.path, f.node.size)?;
    }
    Ok(FilePrep::Write {
        blobs: layout.iter().map(|&(id, off, _)| (id, off)).collect(),
        fresh: true,
        unchanged_bytes: 0,
    })
}

fn create_sized(path: &Path, size: u64) -> Result<()> {
    let f = lp(path)
        .and_then(|r| File::create(r.path()))
        .map_err(|e| Error::path(path, e))?;
    if size > 0 {
        f.set_len(size).map_err(|e| Error::path(path, e))?;
    }
    Ok(())
}

/// [`fsmeta::apply_metadata`] for paths of any length.
fn apply_at(path: &Path, node: &Node, opts: &ApplyOptions) -> std::result::Result<(), String> {
    let r = lp(path).map_err(|e| format!("{}: {e}", path.display()))?;
    fsmeta::apply_metadata(r.path(), node, opts).map_err(|e| e.to_string())
}

/// Most plaintext bytes one unit of restore work writes from a local repository: a pack of
/// very compressible data (a database's pages) holds hundreds of MiB, and whole packs as
/// units left one thread decompressing the last of them while the others idled.
const WORK_PLAIN_BYTES: u64 = 16 << 20;
/// The same from an object store, where each unit is one more request: only packs of very
/// compressible data are split (units of 16 MiB made an S3 restore of ordinary files 4%
/// slower).
const WORK_PLAIN_BYTES_REMOTE: u64 = 128 << 20;

/// Splits each pack's blobs (sorted by offset) into units of work of at most `max_plain`
/// bytes of plaintext (one blob at least), in the packs' order.
fn split_work(packs: Vec<(Id, PackBlobs)>, max_plain: u64) -> Vec<(Id, PackBlobs)> {
    let mut units = Vec::with_capacity(packs.len());
    for (pack, mut blobs) in packs {
        blobs.sort_by_key(|(e, _)| e.offset);
        let mut unit: PackBlobs = Vec::new();
        let mut plain = 0u64;
        for blob in blobs {
            let size = plain_length(&blob.0);
            if !unit.is_empty() && plain + size > max_plain {
                units.push((pack, std::mem::take(&mut unit)));
                plain = 0;
            }
            plain += size;
            unit.push(blob);
        }
        if !unit.is_empty() {
            units.push((pack, unit));
        }
    }
    units
}

/// Stripes of the per-file write locks.
const WRITE_LOCKS: usize = 64;
/// How far behind its newest write a file's restored pages are dropped from the page
/// cache. Each range's writeback starts as it is written; this much later it is done
/// (pages still being written are skipped: only advice), and the range is dropped. A
/// large restore then leaves at most this much of each file in memory instead of
/// filling the page cache: it does not push a server's working set out of memory, and
/// it reuses the same pages instead of taking fresh ones (3 GB written in 1 MiB pieces
/// with 3 GB of other files cached: 4.7 s with the pages kept, 1.1 s dropped behind).
const DROP_BEHIND: u64 = 64 << 20;

/// Largest gap between needed blobs that is read through rather than skipped.
const MAX_GAP: u64 = 1 << 20;

/// The buffers one restoring thread reuses from read to read: the sealed bytes of a range
/// of a pack (decrypted where they lie) and a blob's decompressed plaintext.
#[derive(Default)]
struct ReadBuffers {
    range: Vec<u8>,
    plain: Vec<u8>,
}

/// What the restoring threads share: the plan, per-file state, and where to report.
struct PackRestore<'a> {
    repo: &'a Repository,
    plan: &'a Plan,
    /// Files created by this restore (holes may be left in them).
    fresh: &'a [bool],
    /// Blob writes still to come per file.
    remaining: &'a [AtomicU64],
    /// Files in which a hole was left (their size is set when complete).
    holes: &'a [AtomicBool],
    meta_done: &'a [AtomicBool],
    /// Striped by file index: held while writing to a file.
    write_locks: &'a [Mutex<()>],
    apply: &'a ApplyOptions,
    written: &'a AtomicU64,
    progress: &'a dyn Progress,
    fail: &'a (dyn Fn(&Path, String) + Sync),
}

impl PackRestore<'_> {
    /// Fetches the needed blobs of one pack (neighbours in one ranged read) and writes
    /// them to their files; completes the files whose last blob this was.
    fn restore_pack(
        &self,
        pack: &Id,
        blobs: &[(BlobEntry, Vec<(usize, u64)>)],
        open_files: &mut HashMap<usize, File>,
        buffers: &mut ReadBuffers,
    ) {
        let PackRestore {
            repo,
            plan,
            fresh,
            remaining,
            holes,
            written,
            progress,
            fail,
            ..
        } = *self;
        let name = pack_name(pack);
        let mut i = 0;
        while i < blobs.len() {
            // Coalesce neighbouring blobs into one read.
            let start = blobs[i].0.offset as u64;
            let mut end = start + blobs[i].0.length as u64;
            let mut j = i + 1;
            while j < blobs.len()
                && (blobs[j].0.offset as u64) <= end + MAX_GAP
                && end - start < (32 << 20)
            {
                end = end.max(blobs[j].0.offset as u64 + blobs[j].0.length as u64);
                j += 1;
            }
            let read =
                repo.storage()
                    .read_range_into(&name, start, end - start, &mut buffers.range);
            for (entry, targets) in &blobs[i..j] {
                let mut single = Vec::new();
                let sealed = match &read {
                    Ok(()) => {
                        let o = (entry.offset as u64 - start) as usize;
                        Ok(&mut buffers.range[o..o + entry.length as usize])
                    }
                    // The read of several blobs failed (e.g. a truncated pack): each blob that
                    // can still be read on its own is restored.
                    Err(_) if j - i > 1 => repo
                        .storage()
                        .read_range_into(
                            &name,
                            entry.offset as u64,
                            entry.length as u64,
                            &mut single,
                        )
                        .map(|()| &mut single[..])
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let plain = sealed.and_then(|sealed| {
                    open_blob_in_place(repo.crypto(), entry, sealed, &mut buffers.plain)
                        .map_err(|e| format!("{name}: {e}"))
                });
                let plain = match plain {
                    Ok(p) => p,
                    Err(e) => {
                        for (fi, _) in targets {
                            fail(
                                &plan.files[*fi].path,
                                format!("cannot restore blob {}: {e}", entry.id),
                            );
                        }
                        continue;
                    }
                };
                let zero = plain.iter().all(|&b| b == 0);
                for &(fi, off) in targets {
                    let path = &plan.files[fi].path;
                    progress.add_bytes(plain.len() as u64);
                    let file = match open_files.entry(fi) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            let mut o = OpenOptions::new();
                            o.write(true);
                            if fresh[fi] {
                                o.create(true);
                            }
                            match lp(path).and_then(|r| o.open(r.path())) {
                                Ok(f) => v.insert(f),
                                Err(e) => {
                                    fail(path, format!("open for writing: {e}"));
                                    continue;
                                }
                            }
                        }
                    };
                    if zero && fresh[fi] {
                        // Leave a hole; the size is set when the file is complete.
                        holes[fi].store(true, Ordering::Relaxed);
                    } else {
                        // One writer per file at a time: the file system serialises writes
                        // to one file anyway (ext4 holds the inode's lock for the copy),
                        // and a second writer would spin on that lock in the kernel,
                        // burning the core another thread could decompress on.
                        let _writing = self.write_locks[fi % WRITE_LOCKS]
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        let r = if fresh[fi] {
                            write_sparse(file, plain, off, &holes[fi])
                        } else {
                            file.write_all_at(plain, off)
                        };
                        if let Err(e) = r {
                            fail(path, format!("write: {e}"));
                            continue;
                        }
                        // Start writing this range to disk now (DONTNEED on dirty pages
                        // starts their writeback and drops nothing yet): the disk works
                        // while later blobs are decrypted, and a final sync finds little
                        // left (a synced database restore 15-25% faster on disk). Only
                        // advice: a failure changes nothing.
                        let _ = nix::fcntl::posix_fadvise(
                            &*file,
                            off as i64,
                            plain.len() as i64,
                            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                        );
                        // And drop the range written DROP_BEHIND earlier, on disk by now.
                        if off >= DROP_BEHIND {
                            let _ = nix::fcntl::posix_fadvise(
                                &*file,
                                (off - DROP_BEHIND) as i64,
                                plain.len() as i64,
                                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                            );
                        }
                        written.fetch_add(plain.len() as u64, Ordering::Relaxed);
                    }
                    if remaining[fi].fetch_sub(1, Ordering::AcqRel) == 1 {
                        let sized = match open_files.remove(&fi) {
                            Some(f) if holes[fi].load(Ordering::Relaxed) => {
                                f.set_len(plan.files[fi].node.size)
                            }
                            _ => Ok(()),
                        };
                        match sized {
                            Err(e) => fail(path, format!("set size: {e}")),
                            Ok(()) => match apply_at(path, &plan.files[fi].node, self.apply) {
                                Ok(()) => self.meta_done[fi].store(true, Ordering::Relaxed),
                                Err(e) => fail(path, e),
                            },
                        }
                        progress.add_files(1);
                    }
                }
            }
            i = j;
        }
    }
}

/// Writes `data` at `off`, leaving holes for runs of zero pages (sparse files stay
/// sparse); marks `hole` when something was skipped.
fn write_sparse(file: &File, data: &[u8], off: u64, hole: &AtomicBool) -> std::io::Result<()> {
    const PAGE: usize = 4096;
    let zero_page = |p: &[u8]| p.len() == PAGE && p.iter().all(|&b| b == 0);
    let mut start = 0;
    while start < data.len() {
        // Skip zero pages.
        let mut i = start;
        while i < data.len() && zero_page(&data[i..(i + PAGE).min(data.len())]) {
            i += PAGE;
        }
        if i > start {
            hole.store(true, Ordering::Relaxed);
        }
        // Write up to the next zero page.
        let mut j = i;
        while j < data.len() && !zero_page(&data[j..(j + PAGE).min(data.len())]) {
            j += PAGE;
        }
        let j = j.min(data.len());
        if j > i {
            file.write_all_at(&data[i..j], off + i as u64)?;
        }
        start = j;
    }
    Ok(())
}

fn verify_file(repo: &Repository, index: &Index, f: &PlanFile) -> Result<()> {
    let mut file = lp(&f.path)
        .and_then(|r| File::open(r.path()))
        .map_err(|e| Error::path(&f.path, e))?;
    let mut buf = Vec::new();
    let mut total = 0u64;
    for id in &f.node.content {
        let loc = index.get(id).ok_or(Error::BlobNotFound(*id))?;
        let len = plain_length(&loc.entry) as usize;
        buf.resize(len, 0);
        file.read_exact(&mut buf)
            .map_err(|e| Error::path(&f.path, format!("reading at {total}: {e}")))?;
        if repo.crypto().blob_id(&buf) != *id {
            return Err(Error::path(
                &f.path,
                format!("content at offset {total} differs from the snapshot"),
            ));
        }
        total += len as u64;
    }
    let md = file.metadata().map_err(|e| Error::path(&f.path, e))?;
    if md.len() != total {
        return Err(Error::path(
            &f.path,
            format!("size is {} but the snapshot has {total}", md.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::BlobKind;

    fn blob(n: u8, offset: u32, raw_length: u32) -> (BlobEntry, Vec<(usize, u64)>) {
        let entry = BlobEntry {
            kind: BlobKind::Data,
            id: Id([n; 32]),
            offset,
            length: 1000,
            raw_length,
        };
        (entry, vec![(n as usize, 0)])
    }

    #[test]
    fn work_is_split_by_plaintext_in_offset_order_and_keeps_every_blob() {
        let mib = 1u32 << 20;
        // A pack of very compressible blobs (4 MiB of plaintext each), listed out of order,
        // and a pack with one blob larger than a unit.
        let a = Id([1; 32]);
        let b = Id([2; 32]);
        let big: PackBlobs = (0..10u8)
            .rev()
            .map(|i| blob(i, u32::from(i) * 1000, 4 * mib))
            .collect();
        let huge: PackBlobs = vec![blob(20, 0, 40 * mib), blob(21, 1000, 0)];
        let units = split_work(vec![(a, big), (b, huge)], WORK_PLAIN_BYTES);
        let sizes: Vec<(Id, usize)> = units.iter().map(|(p, u)| (*p, u.len())).collect();
        assert_eq!(sizes, vec![(a, 4), (a, 4), (a, 2), (b, 1), (b, 1)]);
        for (_, unit) in &units {
            let plain: u64 = unit.iter().map(|(e, _)| plain_length(e)).sum();
            assert!(unit.len() == 1 || plain <= WORK_PLAIN_BYTES, "{plain}");
            assert!(unit.windows(2).all(|w| w[0].0.offset < w[1].0.offset));
        }
        let mut ids: Vec<u8> = units
            .iter()
            .flat_map(|(_, u)| u.iter().map(|(e, _)| e.id.0[0]))
            .collect();
        assert_eq!(
            ids[..10],
            (0..10).collect::<Vec<u8>>()[..],
            "pack order, then offsets"
        );
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 12);
    }
}
