//! The restorer: plans a restore from a snapshot's trees ([`plan`]), makes room in the
//! target ([`target`]), then fetches blobs pack by pack on several threads and writes them
//! at their offsets, leaving holes where content is zero ([`fetch`]); links hardlinks,
//! creates symlinks and special files and sets metadata bottom-up; optionally verifies.
//!
//! Every file-system call goes through [`Confined`]: nothing outside the target is
//! touched and no symlink in the target is followed, whatever the target already holds
//! and whatever the snapshot says (docs/SECURITY.md).
//!
//! Over an existing tree only what differs is written: existing files are compared blob
//! by blob (`Overwrite::Always`), or skipped when size and mtime match
//! (`Overwrite::IfChanged`), or never touched, content and metadata alike
//! (`Overwrite::Never`).

mod fetch;
pub mod plan;
mod plan_check;
#[cfg(test)]
mod plan_tests;
mod target;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use crate::confined::Confined;
use crate::crypto::SEAL_OVERHEAD;
use crate::error::{Error, Result};
use crate::format::{BlobEntry, EntryError, Node, NodeKind};
use crate::fsmeta::{self, ApplyOptions};
use crate::id::Id;
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::Repository;

use fetch::{PackBlobs, PackRestore, ReadBuffers};
use plan::{Filters, Plan};
use target::{DirState, FilePrep, Report};

/// What to do with entries that already exist in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overwrite {
    /// Compare content blob by blob and rewrite what differs.
    #[default]
    Always,
    /// Skip files whose size and mtime (to the nanosecond) match, trusting them as rsync's
    /// quick check does; otherwise as `Always`.
    IfChanged,
    /// Leave every existing entry alone, content and metadata; report it as skipped.
    Never,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
    pub overwrite: Overwrite,
    /// Remove entries in the target that are not in the snapshot, and non-empty
    /// directories that stand where the snapshot has something else.
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
    /// Existing entries left as they were (`--overwrite never`).
    pub skipped: u64,
    /// The first 1,000 of them.
    pub skipped_paths: Vec<String>,
    pub verified_files: u64,
    pub errors: Vec<EntryError>,
    pub duration_secs: f64,
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

/// Restores `node` (a directory's content, or a single entry) into `target`.
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
    let filters = Filters::new(&opts.includes, &opts.excludes)?;
    let plan = plan::plan(&(repo, index), node, snapshot_prefix, &filters)?;
    let mut summary = RestoreSummary {
        files: plan.files.len() as u64,
        dirs: plan.dirs.len() as u64,
        other_entries: plan.others.len() as u64,
        total_bytes: plan.files.iter().map(|f| f.node.size).sum(),
        ..Default::default()
    };
    progress.set_total(summary.files, summary.total_bytes);
    if opts.dry_run {
        for e in &plan.errors {
            progress.warning(Path::new(&e.path), &e.reason);
        }
        summary.errors = plan.errors;
        summary.duration_secs = start.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let target_existed = std::fs::symlink_metadata(target).is_ok();
    std::fs::create_dir_all(target).map_err(|e| Error::path(target, e))?;
    let confined = Confined::open(target).map_err(|e| Error::path(target, e))?;
    let report = Report::new(&confined, progress);
    for e in &plan.errors {
        report.fail(Path::new(&e.path), e.reason.clone());
    }
    let run = Run {
        repo,
        index,
        plan: &plan,
        opts,
        report: &report,
        root_created: !target_existed,
    };
    run.execute(&mut summary)?;
    if opts.sync {
        sync_file_system(target)?;
    }
    summary.skipped = report.skipped.load(Ordering::Relaxed);
    summary.skipped_paths = report
        .skipped_paths
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    summary.errors = report
        .errors
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    summary.duration_secs = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// One restore under way.
struct Run<'a> {
    repo: &'a Repository,
    index: &'a Index,
    plan: &'a Plan,
    opts: &'a RestoreOptions,
    report: &'a Report<'a>,
    /// The target did not exist before: nothing in it needs looking at.
    root_created: bool,
}

/// Per-file state of a run.
struct FileStates {
    fresh: Vec<bool>,
    remaining: Vec<AtomicU64>,
    holes: Vec<AtomicBool>,
    meta_done: Vec<AtomicBool>,
    failed: Vec<AtomicBool>,
    /// Left as they were (`--overwrite never`).
    untouched: Vec<bool>,
}

impl FileStates {
    fn new(n: usize) -> FileStates {
        let flags = || (0..n).map(|_| AtomicBool::new(false)).collect();
        FileStates {
            fresh: vec![false; n],
            remaining: (0..n).map(|_| AtomicU64::new(0)).collect(),
            holes: flags(),
            meta_done: flags(),
            failed: flags(),
            untouched: vec![false; n],
        }
    }
}

impl Run<'_> {
    fn in_new_dir(&self, states: &[DirState], parent: Option<usize>) -> bool {
        match parent {
            None => self.root_created,
            Some(d) => states[d] == DirState::Created,
        }
    }

    fn available(states: &[DirState], parent: Option<usize>) -> bool {
        parent.is_none_or(|d| states[d] != DirState::Unavailable)
    }

    fn execute(&self, summary: &mut RestoreSummary) -> Result<()> {
        let (plan, report) = (self.plan, self.report);
        let dirs = target::prepare_dirs(plan, self.opts, report);
        let mut files = FileStates::new(plan.files.len());
        let needed = self.prepare_files(&dirs, &mut files, summary);
        let apply = ApplyOptions {
            ownership: self.opts.ownership.unwrap_or_else(fsmeta::running_as_root),
            xattrs: true,
        };
        let threads = self.fetch(needed, &files, &apply, summary);
        if report.progress.should_stop() {
            return Err(Error::Interrupted);
        }
        self.links(&dirs, &mut files);
        let others_done = self.others(&dirs);
        if self.opts.delete {
            summary.deleted = target::delete_extras(plan, &dirs, report);
        }
        self.metadata(&dirs, &files, &others_done, &apply);
        if self.opts.verify {
            self.verify(&files, threads, summary);
        }
        Ok(())
    }

    /// Decides per file what to write; returns the blobs needed, with where they go.
    fn prepare_files(
        &self,
        dirs: &[DirState],
        files: &mut FileStates,
        summary: &mut RestoreSummary,
    ) -> HashMap<Id, Vec<(usize, u64)>> {
        let (plan, report) = (self.plan, self.report);
        let mut needed: HashMap<Id, Vec<(usize, u64)>> = HashMap::new();
        for (i, f) in plan.files.iter().enumerate() {
            if !Self::available(dirs, f.parent) {
                files.failed[i].store(true, Ordering::Relaxed);
                continue;
            }
            if f.link_to.is_some() {
                continue;
            }
            let in_new_dir = self.in_new_dir(dirs, f.parent);
            let prep = target::prepare_file(
                self.repo,
                self.index,
                f,
                self.opts,
                in_new_dir,
                report.target,
            );
            match prep {
                Ok(FilePrep::Skip { untouched }) => {
                    if untouched {
                        files.untouched[i] = true;
                        report.skip(&f.rel);
                    } else {
                        summary.files_unchanged += 1;
                        summary.bytes_unchanged += f.node.size;
                    }
                    report.progress.add_files(1);
                    report.progress.add_bytes(f.node.size);
                }
                Ok(FilePrep::Write {
                    blobs,
                    fresh,
                    unchanged_bytes,
                }) => {
                    files.fresh[i] = fresh;
                    summary.files_written += 1;
                    summary.bytes_unchanged += unchanged_bytes;
                    report.progress.add_bytes(unchanged_bytes);
                    files.remaining[i].store(blobs.len() as u64, Ordering::Relaxed);
                    if blobs.is_empty() {
                        report.progress.add_files(1);
                    }
                    for (id, off) in blobs {
                        needed.entry(id).or_default().push((i, off));
                    }
                }
                Err(e) => {
                    files.failed[i].store(true, Ordering::Relaxed);
                    report.fail(&f.rel, e);
                }
            }
        }
        needed
    }

    /// Fetches and writes every needed blob on several threads; returns their number.
    fn fetch(
        &self,
        needed: HashMap<Id, Vec<(usize, u64)>>,
        files: &FileStates,
        apply: &ApplyOptions,
        summary: &mut RestoreSummary,
    ) -> usize {
        let (repo, plan, report) = (self.repo, self.plan, self.report);
        let mut by_pack: HashMap<Id, PackBlobs> = HashMap::new();
        for (id, targets) in needed {
            match self.index.get(&id) {
                Some(loc) => by_pack
                    .entry(loc.pack)
                    .or_default()
                    .push((loc.entry, targets)),
                None => {
                    for (fi, _) in targets {
                        files.failed[fi].store(true, Ordering::Relaxed);
                        let reason = format!("blob {id} is missing from the repository");
                        report.fail(&plan.files[fi].rel, reason);
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
            fetch::WORK_PLAIN_BYTES
        } else {
            fetch::WORK_PLAIN_BYTES_REMOTE
        };
        let packs = fetch::split_work(packs, max_plain);
        // Fetches in flight: twice the cores, or the storage's connections if more.
        let threads = self
            .opts
            .threads
            .unwrap_or_else(|| {
                (std::thread::available_parallelism().map_or(2, |n| n.get()) * 2)
                    .max(repo.storage().properties().connections)
            })
            .max(1);
        let written = AtomicU64::new(0);
        let write_locks: Vec<Mutex<()>> = (0..fetch::WRITE_LOCKS).map(|_| Mutex::new(())).collect();
        let shared = PackRestore {
            repo,
            plan,
            fresh: &files.fresh,
            remaining: &files.remaining,
            holes: &files.holes,
            meta_done: &files.meta_done,
            failed: &files.failed,
            write_locks: &write_locks,
            apply,
            written: &written,
            report,
        };
        let queue = Mutex::new(packs.into_iter());
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut open_files: HashMap<usize, File> = HashMap::new();
                    let mut buffers = ReadBuffers::default();
                    loop {
                        if report.progress.should_stop() {
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
        summary.bytes_written = written.load(Ordering::Relaxed);
        threads
    }

    /// Hardlinks: each further name of a file links to its first one, when that was
    /// restored (not left as it was, not failed).
    fn links(&self, dirs: &[DirState], files: &mut FileStates) {
        let (plan, report) = (self.plan, self.report);
        for (i, f) in plan.files.iter().enumerate() {
            let Some(first) = f.link_to else { continue };
            report.progress.add_files(1);
            if !Self::available(dirs, f.parent) {
                continue;
            }
            match target::clear_for(report.target, &f.rel, self.opts, "a file") {
                Ok(true) => {}
                Ok(false) => {
                    files.untouched[i] = true;
                    report.skip(&f.rel);
                    continue;
                }
                Err(e) => {
                    files.failed[i].store(true, Ordering::Relaxed);
                    report.fail(&f.rel, e);
                    continue;
                }
            }
            let src = &plan.files[first].rel;
            let reason = if files.untouched[first] {
                Some("not linked: its first name was left as it was (--overwrite never)".into())
            } else if files.failed[first].load(Ordering::Relaxed) {
                Some(format!(
                    "not linked: {} was not restored",
                    report.target.display(src).display()
                ))
            } else {
                report.target.hard_link(src, &f.rel).err().map(|e| {
                    format!(
                        "create hardlink to {}: {e}",
                        report.target.display(src).display()
                    )
                })
            };
            if let Some(reason) = reason {
                files.failed[i].store(true, Ordering::Relaxed);
                report.fail(&f.rel, reason);
            }
            // A hardlink shares its first name's metadata.
            files.meta_done[i].store(true, Ordering::Relaxed);
        }
    }

    /// Symlinks and special files; returns which were created (to get metadata).
    fn others(&self, dirs: &[DirState]) -> Vec<bool> {
        let (plan, report) = (self.plan, self.report);
        let mut done = vec![false; plan.others.len()];
        for (i, o) in plan.others.iter().enumerate() {
            report.progress.add_files(1);
            if !Self::available(dirs, o.parent) {
                continue;
            }
            let wanted = if o.node.kind == NodeKind::Symlink {
                "a symlink"
            } else {
                "a special file"
            };
            match target::clear_for(report.target, &o.rel, self.opts, wanted) {
                Ok(true) => match target::create_other(report.target, &o.rel, &o.node) {
                    Ok(()) => done[i] = true,
                    Err(e) => report.fail(&o.rel, e),
                },
                Ok(false) => report.skip(&o.rel),
                Err(e) => report.fail(&o.rel, e),
            }
        }
        done
    }

    /// Metadata: files not done yet, symlinks and special files, then directories
    /// deepest first. Nothing left as it was gets any.
    fn metadata(
        &self,
        dirs: &[DirState],
        files: &FileStates,
        others_done: &[bool],
        apply: &ApplyOptions,
    ) {
        let (plan, report) = (self.plan, self.report);
        let conf = report.target;
        for (i, f) in plan.files.iter().enumerate() {
            if files.untouched[i]
                || files.meta_done[i].load(Ordering::Relaxed)
                || files.failed[i].load(Ordering::Relaxed)
            {
                continue;
            }
            if let Err(e) = conf.apply_metadata(&f.rel, &f.node, apply) {
                report.fail(&f.rel, e.to_string());
            }
        }
        for (o, _) in plan
            .others
            .iter()
            .zip(others_done)
            .filter(|(_, done)| **done)
        {
            if let Err(e) = conf.apply_metadata(&o.rel, &o.node, apply) {
                report.fail(&o.rel, e.to_string());
            }
        }
        let keep_existing = self.opts.overwrite == Overwrite::Never;
        for (d, state) in plan.dirs.iter().zip(dirs).rev() {
            let touch = match state {
                DirState::Created => true,
                DirState::Existing => !keep_existing,
                DirState::Unavailable => false,
            };
            if touch && let Err(e) = conf.apply_metadata(&d.rel, &d.node, apply) {
                report.fail(&d.rel, e.to_string());
            }
        }
    }

    fn verify(&self, files: &FileStates, threads: usize, summary: &mut RestoreSummary) {
        let (plan, report) = (self.plan, self.report);
        let checked: Vec<_> = plan
            .files
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                f.link_to.is_none()
                    && !files.untouched[*i]
                    && !files.failed[*i].load(Ordering::Relaxed)
            })
            .map(|(_, f)| f)
            .collect();
        let results = crate::parallel::map(checked, threads, |f| {
            (
                f,
                target::verify_file(self.repo, self.index, report.target, f),
            )
        });
        for (f, r) in results {
            match r {
                Ok(()) => summary.verified_files += 1,
                Err(e) => report.fail(&f.rel, format!("verification failed: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests;
