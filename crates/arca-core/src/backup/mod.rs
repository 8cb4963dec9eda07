//! The archiver: walks source paths, detects changes against a parent snapshot, reads and
//! chunks what changed, and builds the snapshot's trees.
//!
//! Threads: the walker (the caller's thread) lists directories in name order and emits
//! events; file readers chunk and hash changed files and hand new blobs to the
//! [`BlobSaver`]; a tree builder consumes the events in order, waits for each file's
//! content list, and stores one tree blob per directory (an unchanged directory encodes
//! to the same bytes, hence the same id, and is not stored again). All queues are bounded.

mod child_stream;
mod read;
mod trees;
mod walker;

pub use child_stream::{ChildResult, ChildStreamHooks, StreamName, backup_child, plain_stream};

use read::*;
use trees::*;
use walker::*;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::format::{
    BackupType, BlobKind, EntryError, FORMAT_VERSION, Node, NodeKind, Snapshot, SnapshotSummary,
    Tree,
};
use crate::fsmeta::{OwnerNames, node_from_metadata, unchanged_since};
use crate::id::Id;
use crate::index::Index;
use crate::longpath::resolve as lp;
use crate::progress::Progress;
use crate::repo::{Repository, encode_tree};
use crate::saver::BlobSaver;

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub backup_type: BackupType,
    /// Read every file and compare content (checksum-based change detection).
    pub checksum: bool,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub time: Option<jiff::Timestamp>,
    pub excludes: Vec<String>,
    pub exclude_if_present: Vec<String>,
    pub one_file_system: bool,
    pub dry_run: bool,
    /// Reader threads (default: available cores).
    pub threads: Option<usize>,
    /// Parent snapshot chosen by the caller; `None` selects one by type.
    pub parent: Option<Id>,
    /// Source metadata recorded in the snapshot (see [`Snapshot::meta`]).
    pub meta: std::collections::BTreeMap<String, String>,
}

/// The result of a backup run.
#[derive(Debug, Clone)]
pub struct BackupResult {
    /// `None` in a dry run.
    pub snapshot_id: Option<Id>,
    pub snapshot: Snapshot,
}

/// Compiled exclude rules.
#[derive(Debug, Clone)]
pub struct Excludes {
    set: GlobSet,
    if_present: Vec<OsString>,
}

impl Excludes {
    /// Patterns without `/` match a name anywhere; with `/`, a whole path (patterns not
    /// starting with `/` match at any depth). `**` crosses directories.
    pub fn new(patterns: &[String], if_present: &[String]) -> Result<Excludes> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            let full = if p.starts_with('/') {
                p.to_string()
            } else {
                format!("**/{p}")
            };
            let g = GlobBuilder::new(&full)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::Invalid(format!("bad exclude pattern {p:?}: {e}")))?;
            b.add(g);
            // A pattern naming a directory also excludes what is inside it.
            if let Ok(g) = GlobBuilder::new(&format!("{}/**", full.trim_end_matches('/')))
                .literal_separator(true)
                .build()
            {
                b.add(g);
            }
        }
        let set = b
            .build()
            .map_err(|e| Error::Invalid(format!("bad exclude patterns: {e}")))?;
        Ok(Excludes {
            set,
            if_present: if_present.iter().map(OsString::from).collect(),
        })
    }

    pub fn is_excluded(&self, path: &Path) -> bool {
        !self.set.is_empty() && self.set.is_match(path)
    }
}

/// Picks the parent snapshot for a backup of `paths` from `host`: none for a full backup,
/// the latest file snapshot of the same host and paths for an incremental one, the latest
/// full one for a differential one (docs/FORMAT.md, Snapshots).
pub fn select_parent<'a>(
    snaps: &'a [(Id, Snapshot)],
    host: &str,
    paths: &[String],
    backup_type: BackupType,
) -> Option<&'a (Id, Snapshot)> {
    if backup_type == BackupType::Full {
        return None;
    }
    let mut want: Vec<&String> = paths.iter().collect();
    want.sort();
    snaps.iter().rev().find(|(_, s)| {
        let mut p: Vec<&String> = s.paths.iter().collect();
        p.sort();
        s.host == host
            && p == want
            && s.source == "files"
            && (backup_type == BackupType::Incremental || s.backup_type == BackupType::Full)
    })
}

/// Makes a path absolute and clean without resolving symlinks.
pub fn absolute_clean(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).map_err(|e| Error::path(path, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

enum Pending {
    Ready,
    Wait(Receiver<FileResult>),
}

struct FileResult {
    content: Vec<Id>,
    bytes_read: u64,
    error: Option<String>,
    /// The file was gone when its reader opened it.
    vanished: bool,
    /// The file changed while it was read (reported, content kept as read).
    changed: Option<String>,
}

enum Event {
    Enter,
    Entry {
        node: Node,
        pending: Pending,
        parent_content: Option<Vec<Id>>,
        path: PathBuf,
    },
    Leave(Node),
    Error(EntryError),
    FilesRemoved(u64),
}

struct FileJob {
    path: PathBuf,
    size: u64,
    mtime_ns: i64,
    reply: Sender<FileResult>,
}

/// Runs a backup of `paths` and writes its snapshot (unless a dry run).
pub fn backup_paths(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    paths: &[PathBuf],
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    backup_paths_as(
        repo,
        index,
        paths,
        opts,
        &PathsSource::default(),
        progress,
        |_| Ok(()),
    )
}

/// A directory backed up as something else than plain files (a database's data
/// directory): its snapshot `source`, how far a parent's content is trusted, and whether
/// files changing under the reader are expected.
#[derive(Debug, Clone, Default)]
pub struct PathsSource {
    /// Snapshot `source`; empty: `files`.
    pub source: String,
    /// Reuse a parent's content only for files whose recorded mtime (ns) is before this:
    /// a write in the same timestamp tick as the parent's read leaves mtime and size
    /// alone, so files modified shortly before the parent ran are read again.
    pub reuse_mtime_before_ns: Option<i64>,
    /// Files that change or vanish while read are expected (a running database whose
    /// recovery repairs them): neither is reported or recorded as an error.
    pub changes_expected: bool,
    /// Cut files into blocks of this many bytes at fixed offsets instead of
    /// content-defined chunks: for files changed in place, never shifted (a database's
    /// pages), it finds the same blobs without the rolling hash and reads straight into
    /// each blob.
    pub fixed_chunk_size: Option<usize>,
    /// Symlinks (absolute paths below the backed-up paths) walked as the directories
    /// they point to, under their own names: a database's tablespaces, linked from its
    /// data directory, are stored inside the data directory's tree, where the next
    /// backup finds them in its parent.
    pub follow_symlinks: Vec<PathBuf>,
}

/// The sources as absolute, clean, sorted and distinct paths (each must exist), and as
/// the strings the snapshot records.
fn source_paths(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<String>)> {
    if paths.is_empty() {
        return Err(Error::Invalid(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut abs = Vec::new();
    for p in paths {
        let a = absolute_clean(p)?;
        lp(&a)
            .and_then(|r| fs::symlink_metadata(r.path()))
            .map_err(|e| Error::path(&a, e))?;
        abs.push(a);
    }
    abs.sort();
    abs.dedup();
    let strings = abs
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    Ok((abs, strings))
}

/// A parent snapshot and its root tree.
type Parent = (Option<(Id, Snapshot)>, Option<Tree>);

/// The parent snapshot (the one asked for, else by the backup type's rule) and its root
/// tree.
fn parent_of(
    repo: &Repository,
    index: &Index,
    opts: &BackupOptions,
    host: &str,
    paths: &[String],
) -> Result<Parent> {
    let (snaps, _) = repo.list_snapshots()?;
    let parent = match opts.parent {
        Some(id) => snaps.iter().find(|(i, _)| *i == id).cloned(),
        None => select_parent(&snaps, host, paths, opts.backup_type).cloned(),
    };
    let root = match &parent {
        Some((_, s)) => Some(repo.load_tree(index, &s.tree)?),
        None => None,
    };
    Ok((parent, root))
}

/// [`backup_paths`] for another source kind. `finish` runs after the walk and before the
/// snapshot is written; it may add metadata, and an error from it discards the snapshot.
pub fn backup_paths_as(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    paths: &[PathBuf],
    opts: &BackupOptions,
    kind: &PathsSource,
    progress: &dyn Progress,
    finish: impl FnOnce(&mut Snapshot) -> Result<()>,
) -> Result<BackupResult> {
    let start = Instant::now();
    let start_time = jiff::Timestamp::now();
    let (abs, path_strings) = source_paths(paths)?;
    let host = opts.host.clone().unwrap_or_else(crate::repo::hostname);
    let excludes = Excludes::new(&opts.excludes, &opts.exclude_if_present)?;
    let (parent, parent_root) = parent_of(repo, &index, opts, &host, &path_strings)?;

    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let mut saver = BlobSaver::new(repo.clone(), index.clone(), threads * 2);
    saver.set_dry_run(opts.dry_run);
    let saver = Arc::new(saver);

    let (event_tx, event_rx) = bounded::<Event>(4096);
    let (job_tx, job_rx) = bounded::<FileJob>(threads * 4);

    let walk_result = std::thread::scope(|s| {
        let readers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = job_rx.clone();
                let saver = saver.clone();
                let repo = repo.clone();
                let fixed = kind.fixed_chunk_size.filter(|&n| n > 0);
                s.spawn(move || {
                    let mut buf = Vec::new();
                    for job in rx {
                        let (res, b) = read_file(&repo, &saver, &job, progress, buf, fixed);
                        buf = b;
                        let _ = job.reply.send(res);
                    }
                })
            })
            .collect();
        drop(job_rx);
        let builder = {
            let saver = saver.clone();
            let repo = repo.clone();
            let changes_expected = kind.changes_expected;
            s.spawn(move || build_trees(&repo, &saver, event_rx, progress, changes_expected))
        };
        let mut walker = Walker {
            repo,
            index: &index,
            opts,
            excludes: &excludes,
            events: event_tx,
            jobs: job_tx,
            owners: OwnerNames::new(),
            progress,
            root_dev: 0,
            ancestors: Vec::new(),
            reuse_mtime_before_ns: kind.reuse_mtime_before_ns,
            changes_expected: kind.changes_expected,
            follow_symlinks: &kind.follow_symlinks,
        };
        let walked = walker.walk_roots(&abs, parent_root.as_ref());
        drop(walker);
        for r in readers {
            let _ = r.join();
        }
        let built = builder
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("tree builder panicked".into())));
        walked.and(built)
    });

    let saver =
        Arc::try_unwrap(saver).map_err(|_| Error::Invalid("blob saver still in use".into()))?;
    let (root, mut summary, errors) = match walk_result {
        Ok(v) => v,
        Err(e) => {
            // Store what was already packed so the next run reuses it.
            let _ = saver.finish();
            return Err(e);
        }
    };
    let (_, totals) = saver.finish()?;
    summary.blobs_added = totals.blobs_added;
    summary.bytes_added = totals.bytes_added;
    summary.bytes_added_raw = totals.bytes_added_raw;
    summary.start = Some(start_time);
    summary.end = Some(jiff::Timestamp::now());
    summary.duration_secs = start.elapsed().as_secs_f64();

    let mut snapshot = new_snapshot(
        opts,
        host,
        path_strings,
        root,
        parent.map(|p| p.0),
        if kind.source.is_empty() {
            "files"
        } else {
            &kind.source
        },
        summary,
        errors,
    );
    finish(&mut snapshot)?;
    finish_snapshot(repo, snapshot, opts.dry_run)
}

#[allow(clippy::too_many_arguments)]
fn new_snapshot(
    opts: &BackupOptions,
    host: String,
    paths: Vec<String>,
    tree: Id,
    parent: Option<Id>,
    source: &str,
    summary: SnapshotSummary,
    errors: Vec<EntryError>,
) -> Snapshot {
    let time = opts.time.unwrap_or_else(jiff::Timestamp::now);
    let offset = jiff::tz::TimeZone::system().to_offset(time).seconds();
    Snapshot {
        version: FORMAT_VERSION,
        time,
        utc_offset_secs: offset,
        host,
        username: crate::repo::username(),
        paths,
        tags: opts.tags.clone(),
        tree,
        backup_type: opts.backup_type,
        parent,
        source: source.to_string(),
        program_version: concat!("arca ", env!("CARGO_PKG_VERSION")).to_string(),
        summary,
        errors,
        repaired_from: None,
        original: None,
        meta: opts.meta.clone(),
    }
}

/// Backs up one stream (stdin or a command's output) as a single file named `name`.
/// `accept` runs after the stream ended and before the snapshot is written; an error from
/// it (e.g. the command failed) discards the snapshot. The metadata it returns is added to
/// the snapshot's `meta` (e.g. a database's stop position, known only at the end).
#[allow(clippy::too_many_arguments)] // one call site per source kind; a struct adds nothing
pub fn backup_stream(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    mut reader: impl Read,
    name: &str,
    source: &str,
    opts: &BackupOptions,
    progress: &dyn Progress,
    accept: impl FnOnce() -> Result<std::collections::BTreeMap<String, String>>,
) -> Result<BackupResult> {
    let start = Instant::now();
    let start_time = jiff::Timestamp::now();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::Invalid(format!("invalid stream file name {name:?}")));
    }
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut saver = BlobSaver::new(repo.clone(), index, threads);
    saver.set_dry_run(opts.dry_run);
    let mut content = Vec::new();
    let mut size = 0u64;
    let mut stream = repo.chunker().stream(&mut reader);
    let read: Result<()> = (|| {
        while let Some(chunk) = stream
            .next_chunk()
            .map_err(|e| Error::path(name, format!("reading the stream: {e}")))?
        {
            if progress.should_stop() {
                return Err(Error::Interrupted);
            }
            size += chunk.len() as u64;
            progress.add_bytes(chunk.len() as u64);
            let id = repo.crypto().blob_id(&chunk);
            saver.save(BlobKind::Data, id, chunk)?;
            content.push(id);
        }
        Ok(())
    })();
    drop(stream);
    if let Err(e) = read {
        let _ = saver.finish();
        return Err(e);
    }
    let accepted = accept();
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    node.mode = 0o600;
    node.uid = nix::unistd::getuid().as_raw();
    node.gid = nix::unistd::getgid().as_raw();
    node.mtime_ns = now;
    node.atime_ns = now;
    node.ctime_ns = now;
    node.size = size;
    node.content = content;
    let tree = Tree { nodes: vec![node] };
    let bytes = encode_tree(&tree);
    let tree_id = repo.crypto().blob_id(&bytes);
    saver.save(BlobKind::Tree, tree_id, bytes)?;
    let (_, totals) = saver.finish()?;
    let extra_meta = accepted?;
    let summary = SnapshotSummary {
        files_new: 1,
        bytes_read: size,
        total_bytes: size,
        blobs_added: totals.blobs_added,
        bytes_added: totals.bytes_added,
        bytes_added_raw: totals.bytes_added_raw,
        start: Some(start_time),
        end: Some(jiff::Timestamp::now()),
        duration_secs: start.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let host = opts.host.clone().unwrap_or_else(crate::repo::hostname);
    let mut o = opts.clone();
    o.backup_type = BackupType::Full;
    o.meta.extend(extra_meta);
    let snapshot = new_snapshot(
        &o,
        host,
        vec![format!("/{name}")],
        tree_id,
        None,
        source,
        summary,
        Vec::new(),
    );
    finish_snapshot(repo, snapshot, opts.dry_run)
}

/// Writes the snapshot (unless a dry run) as the last step of a backup.
fn finish_snapshot(repo: &Repository, snapshot: Snapshot, dry_run: bool) -> Result<BackupResult> {
    let snapshot_id = if dry_run {
        None
    } else {
        Some(repo.save_snapshot(&snapshot)?)
    };
    Ok(BackupResult {
        snapshot_id,
        snapshot,
    })
}

/// Counts files and bytes under `paths` (for progress totals), honouring excludes.
pub fn scan_totals(paths: &[PathBuf], excludes: &Excludes) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| absolute_clean(p).ok())
        .collect();
    while let Some(p) = stack.pop() {
        let Ok(md) = lp(&p).and_then(|r| fs::symlink_metadata(r.path())) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = lp(&p).and_then(|r| fs::read_dir(r.path())) {
                for e in rd.flatten() {
                    let child = e.path();
                    if !excludes.is_excluded(&child) {
                        stack.push(child);
                    }
                }
            }
        } else {
            files += 1;
            if md.is_file() {
                bytes += md.len();
            }
        }
    }
    (files, bytes)
}
