//! The archiver: walks source paths, detects changes against a parent snapshot, reads and
//! chunks what changed, and builds the snapshot's trees.
//!
//! Threads: the walker (the caller's thread) lists directories in name order and emits
//! events; file readers chunk and hash changed files and hand new blobs to the
//! [`BlobSaver`]; a tree builder consumes the events in order, waits for each file's
//! content list, and stores one tree blob per directory (an unchanged directory encodes
//! to the same bytes, hence the same id, and is not stored again). All queues are bounded.

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

/// Picks the parent snapshot for a backup of `paths` from `host` (DESIGN.md section 3).
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
    let path_strings: Vec<String> = abs
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let host = opts.host.clone().unwrap_or_else(crate::repo::hostname);
    let excludes = Excludes::new(&opts.excludes, &opts.exclude_if_present)?;

    let (snaps, _) = repo.list_snapshots()?;
    let parent = match opts.parent {
        Some(id) => snaps.iter().find(|(i, _)| *i == id).cloned(),
        None => select_parent(&snaps, &host, &path_strings, opts.backup_type).cloned(),
    };
    let parent_root = match &parent {
        Some((_, s)) => Some(repo.load_tree(&index, &s.tree)?),
        None => None,
    };

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

/// Opens for reading without updating the access time where the kernel allows it (the
/// owner or root), so a backup does not change what the next backup sees.
fn open_noatime(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let resolved = lp(path)?;
    let path = resolved.path();
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        r => r,
    }
}

fn read_file(
    repo: &Repository,
    saver: &BlobSaver,
    job: &FileJob,
    progress: &dyn Progress,
    buf: Vec<u8>,
    fixed_chunk_size: Option<usize>,
) -> (FileResult, Vec<u8>) {
    let mut res = FileResult {
        content: Vec::new(),
        bytes_read: 0,
        error: None,
        vanished: false,
        changed: None,
    };
    progress.file_started(&job.path);
    let file = match open_noatime(&job.path) {
        Ok(f) => f,
        Err(e) => {
            res.vanished = e.kind() == std::io::ErrorKind::NotFound;
            res.error = Some(e.to_string());
            return (res, buf);
        }
    };
    let mut stream = repo.chunker().stream_with_buffer(&file, buf);
    let next_fixed = |size: usize| -> std::io::Result<Option<Vec<u8>>> {
        let mut chunk = Vec::with_capacity(size);
        (&file).take(size as u64).read_to_end(&mut chunk)?;
        Ok((!chunk.is_empty()).then_some(chunk))
    };
    loop {
        if progress.should_stop() {
            res.error = Some("interrupted".into());
            break;
        }
        let next = match fixed_chunk_size {
            Some(size) => next_fixed(size),
            None => stream.next_chunk(),
        };
        match next {
            Ok(Some(chunk)) => {
                res.bytes_read += chunk.len() as u64;
                progress.add_bytes(chunk.len() as u64);
                let id = repo.crypto().blob_id(&chunk);
                if let Err(e) = saver.save(BlobKind::Data, id, chunk) {
                    res.error = Some(e.to_string());
                    break;
                }
                res.content.push(id);
            }
            Ok(None) => break,
            Err(e) => {
                res.error = Some(e.to_string());
                break;
            }
        }
    }
    let buf = stream.into_buffer();
    if res.error.is_none() {
        match file.metadata() {
            Ok(md) => {
                let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
                if md.len() != job.size || mtime != job.mtime_ns || res.bytes_read != job.size {
                    res.changed = Some(format!(
                        "file changed while it was read (size {} -> {}, read {} bytes)",
                        job.size,
                        md.len(),
                        res.bytes_read
                    ));
                }
            }
            Err(e) => res.error = Some(e.to_string()),
        }
    }
    (res, buf)
}

/// [`node_from_metadata`] for paths of any length.
fn stat_node(
    path: &Path,
    name: &[u8],
    md: &fs::Metadata,
    owners: &mut OwnerNames,
) -> (Node, Vec<String>) {
    match lp(path) {
        Ok(r) => node_from_metadata(r.path(), name, md, owners),
        Err(_) => node_from_metadata(path, name, md, owners),
    }
}

struct Walker<'a> {
    repo: &'a Arc<Repository>,
    index: &'a Index,
    opts: &'a BackupOptions,
    excludes: &'a Excludes,
    events: Sender<Event>,
    jobs: Sender<FileJob>,
    owners: OwnerNames,
    progress: &'a dyn Progress,
    root_dev: u64,
    /// (device, inode) and path of each directory being walked, outermost first: a
    /// directory that is one of them (a bind mount inside itself) is a loop.
    ancestors: Vec<(u64, u64, PathBuf)>,
    reuse_mtime_before_ns: Option<i64>,
    changes_expected: bool,
    follow_symlinks: &'a [PathBuf],
}

#[derive(Default)]
struct Trie {
    children: BTreeMap<OsString, Trie>,
    target: bool,
}

fn find_node<'t>(tree: Option<&'t Tree>, name: &[u8]) -> Option<&'t Node> {
    let t = tree?;
    t.nodes
        .binary_search_by(|n| n.name.as_slice().cmp(name))
        .ok()
        .map(|i| &t.nodes[i])
}

impl Walker<'_> {
    fn send(&self, e: Event) -> Result<()> {
        self.events
            .send(e)
            .map_err(|_| Error::Invalid("tree builder stopped".into()))
    }

    fn error(&self, path: &Path, reason: impl std::fmt::Display) -> Result<()> {
        let reason = reason.to_string();
        self.progress.warning(path, &reason);
        self.send(Event::Error(EntryError {
            path: path.to_string_lossy().into_owned(),
            reason,
        }))
    }

    fn walk_roots(&mut self, paths: &[PathBuf], parent_root: Option<&Tree>) -> Result<()> {
        let mut trie = Trie::default();
        for p in paths {
            let mut t = &mut trie;
            for c in p.components() {
                if let Component::Normal(n) = c {
                    t = t.children.entry(n.to_os_string()).or_default();
                }
            }
            t.target = true;
        }
        self.send(Event::Enter)?;
        self.visit_trie(Path::new("/"), &trie, parent_root)
    }

    fn visit_trie(&mut self, dir: &Path, trie: &Trie, parent: Option<&Tree>) -> Result<()> {
        for (name, child) in &trie.children {
            let path = dir.join(name);
            let md = match lp(&path).and_then(|r| fs::symlink_metadata(r.path())) {
                Ok(m) => m,
                Err(e) => {
                    self.error(&path, e)?;
                    continue;
                }
            };
            let pnode = find_node(parent, name.as_bytes());
            if child.target {
                self.root_dev = md.dev();
                self.walk(&path, name.as_bytes(), md, pnode)?;
            } else {
                let (mut node, _) = stat_node(&path, name.as_bytes(), &md, &mut self.owners);
                node.atime_ns = node.mtime_ns;
                let ptree = self.parent_subtree(pnode)?;
                self.send(Event::Enter)?;
                self.visit_trie(&path, child, ptree.as_ref())?;
                self.send(Event::Leave(node))?;
            }
        }
        Ok(())
    }

    fn parent_subtree(&self, pnode: Option<&Node>) -> Result<Option<Tree>> {
        match pnode {
            Some(n) if n.kind == NodeKind::Dir => match &n.subtree {
                Some(id) => match self.repo.load_tree(self.index, id) {
                    Ok(t) => Ok(Some(t)),
                    // A damaged parent only costs re-reading: the new snapshot is complete.
                    Err(_) => Ok(None),
                },
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    fn walk(
        &mut self,
        path: &Path,
        name: &[u8],
        md: fs::Metadata,
        pnode: Option<&Node>,
    ) -> Result<()> {
        if self.progress.should_stop() {
            return Err(Error::Interrupted);
        }
        let (mut node, warnings) = stat_node(path, name, &md, &mut self.owners);
        if node.kind == NodeKind::Dir {
            // Listing a directory updates its atime: recording it would make every
            // directory look changed in the next backup. Directories restore atime = mtime.
            node.atime_ns = node.mtime_ns;
        }
        for w in warnings {
            self.error(path, w)?;
        }
        match node.kind {
            NodeKind::Dir => {
                let ptree = self.parent_subtree(pnode)?;
                self.send(Event::Enter)?;
                let cross = self.opts.one_file_system && md.dev() != self.root_dev;
                let identity = (md.dev(), md.ino());
                let looped = self
                    .ancestors
                    .iter()
                    .find(|(dev, ino, _)| (*dev, *ino) == identity)
                    .map(|(_, _, ancestor)| ancestor.clone());
                if let Some(ancestor) = &looped {
                    self.error(
                        path,
                        format!(
                            "directory loop: this is {} again (a bind mount inside itself?); \
                             stored empty",
                            ancestor.display()
                        ),
                    )?;
                }
                let skip = cross
                    || looped.is_some()
                    || self.excludes.if_present.iter().any(|n| {
                        lp(&path.join(n))
                            .and_then(|r| fs::symlink_metadata(r.path()))
                            .is_ok()
                    });
                if !skip {
                    self.ancestors
                        .push((identity.0, identity.1, path.to_path_buf()));
                    let walked = self.walk_dir(path, ptree.as_ref());
                    self.ancestors.pop();
                    walked?;
                }
                self.send(Event::Leave(node))?;
            }
            NodeKind::File => {
                let parent_content = pnode
                    .filter(|p| p.kind == NodeKind::File)
                    .map(|p| p.content.clone());
                let reuse = self.opts.backup_type != BackupType::Full
                    && !self.opts.checksum
                    && pnode.is_some_and(|p| {
                        unchanged_since(p, &md)
                            && self.reuse_mtime_before_ns.is_none_or(|t| p.mtime_ns < t)
                            && p.content.iter().all(|b| self.index.contains(b))
                    });
                if reuse {
                    node.content = parent_content.clone().unwrap_or_default();
                    self.send(Event::Entry {
                        node,
                        pending: Pending::Ready,
                        parent_content,
                        path: PathBuf::new(),
                    })?;
                } else {
                    let (tx, rx) = bounded(1);
                    self.jobs
                        .send(FileJob {
                            path: path.to_path_buf(),
                            size: node.size,
                            mtime_ns: node.mtime_ns,
                            reply: tx,
                        })
                        .map_err(|_| Error::Invalid("file readers stopped".into()))?;
                    self.send(Event::Entry {
                        node,
                        pending: Pending::Wait(rx),
                        parent_content,
                        path: path.to_path_buf(),
                    })?;
                }
            }
            _ => self.send(Event::Entry {
                node,
                pending: Pending::Ready,
                parent_content: None,
                path: PathBuf::new(),
            })?,
        }
        Ok(())
    }

    fn walk_dir(&mut self, dir: &Path, ptree: Option<&Tree>) -> Result<()> {
        let rd = match lp(dir).and_then(|r| fs::read_dir(r.path())) {
            Ok(r) => r,
            Err(e) if self.changes_expected && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return self.error(dir, e),
        };
        let mut names: Vec<OsString> = Vec::new();
        for entry in rd {
            match entry {
                Ok(e) => names.push(e.file_name()),
                Err(e) => self.error(dir, e)?,
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if let Some(t) = ptree {
            let removed = t
                .nodes
                .iter()
                .filter(|n| {
                    n.kind == NodeKind::File
                        && names
                            .binary_search_by(|x| x.as_bytes().cmp(&n.name))
                            .is_err()
                })
                .count();
            if removed > 0 {
                self.send(Event::FilesRemoved(removed as u64))?;
            }
        }
        for name in names {
            let path = dir.join(&name);
            if self.excludes.is_excluded(&path) {
                continue;
            }
            let md = match lp(&path).and_then(|r| {
                let md = fs::symlink_metadata(r.path())?;
                if md.file_type().is_symlink() && self.follow_symlinks.contains(&path) {
                    fs::metadata(r.path())
                } else {
                    Ok(md)
                }
            }) {
                Ok(m) => m,
                Err(e) => {
                    // Vanished between listing and stat: not an error worth failing for.
                    if e.kind() != std::io::ErrorKind::NotFound {
                        self.error(&path, e)?;
                    }
                    continue;
                }
            };
            let pnode = find_node(ptree, name.as_bytes());
            self.walk(&path, &OsString::into_vec(name.clone()), md, pnode)?;
        }
        Ok(())
    }
}

type Built = (Id, SnapshotSummary, Vec<EntryError>);

fn build_trees(
    repo: &Repository,
    saver: &BlobSaver,
    events: Receiver<Event>,
    progress: &dyn Progress,
    changes_expected: bool,
) -> Result<Built> {
    let mut stack: Vec<Vec<Node>> = Vec::new();
    let mut summary = SnapshotSummary::default();
    let mut errors = Vec::new();
    let mut root = None;
    let store = |nodes: Vec<Node>| -> Result<Id> {
        let tree = Tree { nodes };
        let bytes = encode_tree(&tree);
        let id = repo.crypto().blob_id(&bytes);
        saver.save(BlobKind::Tree, id, bytes)?;
        Ok(id)
    };
    for ev in events {
        match ev {
            Event::Enter => stack.push(Vec::new()),
            Event::Entry {
                mut node,
                pending,
                parent_content,
                path,
            } => {
                if node.kind == NodeKind::File {
                    if let Pending::Wait(rx) = pending {
                        let r = rx.recv().map_err(|_| {
                            Error::Invalid("a file reader stopped unexpectedly".into())
                        })?;
                        summary.bytes_read += r.bytes_read;
                        if let Some(err) = r.error {
                            if err == "interrupted" {
                                return Err(Error::Interrupted);
                            }
                            if changes_expected && r.vanished {
                                continue;
                            }
                            progress.warning(&path, &err);
                            errors.push(EntryError {
                                path: path.to_string_lossy().into_owned(),
                                reason: err,
                            });
                            continue;
                        }
                        if let Some(c) = r.changed {
                            if !changes_expected {
                                progress.warning(&path, &c);
                                errors.push(EntryError {
                                    path: path.to_string_lossy().into_owned(),
                                    reason: c,
                                });
                            }
                            node.size = r.bytes_read;
                        }
                        node.content = r.content;
                        match parent_content {
                            None => summary.files_new += 1,
                            Some(pc) if pc == node.content => summary.files_unmodified += 1,
                            Some(_) => summary.files_changed += 1,
                        }
                    } else {
                        summary.files_unmodified += 1;
                    }
                    summary.total_bytes += node.size;
                } else {
                    summary.other_entries += 1;
                }
                progress.add_files(1);
                if let Some(top) = stack.last_mut() {
                    top.push(node);
                }
            }
            Event::Leave(mut node) => {
                let mut nodes = stack.pop().unwrap_or_default();
                nodes.sort_by(|a, b| a.name.cmp(&b.name));
                node.subtree = Some(store(nodes)?);
                summary.dirs += 1;
                if let Some(top) = stack.last_mut() {
                    top.push(node);
                }
            }
            Event::Error(e) => errors.push(e),
            Event::FilesRemoved(n) => summary.files_removed += n,
        }
    }
    if let Some(mut nodes) = stack.pop() {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        root = Some(store(nodes)?);
    }
    let root = root.ok_or_else(|| Error::Invalid("the walk ended early".into()))?;
    Ok((root, summary, errors))
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
