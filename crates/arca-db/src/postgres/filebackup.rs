//! File-level base backups: with the data directory on this host and readable, a base
//! backup is `pg_backup_start()` in a psql session kept open, the data directory through
//! arca's parallel directory engine (unchanged files are taken from the previous base
//! backup by size, mtime, ctime and inode, as `arca backup` does), then `global/pg_control`
//! on its own, last and only once its CRC verifies (see `pgcontrol`), then `pg_backup_stop()`,
//! whose backup label (and tablespace map) go into the snapshot's metadata and, as files,
//! into the data directory's tree. What pg_basebackup leaves out is left out here too.
//! Tablespaces outside the data directory are read through their `pg_tblspc/OID` symlinks
//! and stored as directories of that name (only their `PG_MAJOR_CATVERSION` directory, as
//! pg_basebackup sends), with the list in `pg.tablespaces`. A restore lays the directory
//! down with the parallel restorer and writes the backup label from the metadata.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arca_core::backup::{BackupOptions, BackupResult, PathsSource, backup_paths_as};
use arca_core::format::{BlobKind, Node, NodeKind, Snapshot};
use arca_core::index::Index;
use arca_core::progress::Progress;
use arca_core::repo::encode_tree;
use arca_core::saver::BlobSaver;
use arca_core::{Id, Repository};

use arca_core::fsmeta::{OwnerNames, node_from_metadata};

use super::basebackup::{
    BaseBackupOptions, ServerFacts, finish_meta, needed_segments, wait_for_primary_archive,
};
use super::pgcontrol::{CONTROL_FILE, read_verified, system_identifier};
use super::tablespace::{self, META_TABLESPACES, Tablespace};
use super::tools::{ConnectionArg, Running, describe_target};
use super::walname::Lsn;
use super::{Error, Result, SOURCE_BASEBACKUP};

/// `pg.method` of a file-level base backup.
pub const METHOD_FILES: &str = "files";

/// Files reused from the previous base backup only when their recorded mtime is at least
/// this much older than that backup's start (see [`PathsSource::reuse_mtime_before_ns`]):
/// more than a kernel timestamp tick, and the granularity of file systems with whole-second
/// timestamps.
const REUSE_MARGIN_NS: i64 = 1_000_000_000;

/// Files of the data directory are cut at fixed 1 MiB offsets: relation files change in
/// place, page by page, so content-defined chunking finds nothing more and costs a rolling
/// hash over every byte.
const FIXED_CHUNK: usize = 1 << 20;

/// Below the data directory: directories whose content pg_basebackup leaves out (the
/// directories themselves are kept), and files it leaves out.
const EXCLUDED_CONTENT: &[&str] = &[
    "pg_wal",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];
const EXCLUDED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
];
/// Left out wherever they are (temporary files, relation cache init files).
const EXCLUDED_ANYWHERE: &[&str] = &["pgsql_tmp*", "pg_internal.init*"];

/// The server's data directory when it is on this host and readable: the path the server
/// reports, whose `global/pg_control` carries the server's system identifier. Otherwise
/// why not, naming the directory.
pub(crate) fn local_data_directory(facts: &ServerFacts) -> std::result::Result<PathBuf, String> {
    let Some(reported) = facts.data_directory.as_deref() else {
        return Err(
            "the server does not show this role its data_directory setting \
                    (a superuser or a member of pg_read_all_settings sees it)"
                .to_string(),
        );
    };
    let dir = PathBuf::from(reported.trim());
    if !dir.is_absolute() {
        return Err(format!(
            "the server reports a data directory that is not an absolute path ({reported:?})"
        ));
    }
    let path = dir.join(CONTROL_FILE);
    let control = match std::fs::read(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "its data directory {} is not on this host ({}: {e})",
                dir.display(),
                path.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "its data directory {} is not readable by this user ({}: {e})",
                dir.display(),
                path.display()
            ));
        }
    };
    let id = system_identifier(&control).unwrap_or(0);
    if id.to_string() != facts.system_identifier {
        return Err(format!(
            "{} on this host belongs to another cluster (system identifier {id}, the \
             server's is {}): the server's data directory is not on this host",
            dir.display(),
            facts.system_identifier
        ));
    }
    Ok(dir)
}

/// A glob pattern matching `path` literally.
pub(crate) fn glob_escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if "*?[]{}\\!".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The exclude patterns of a base backup of `pgdata`.
fn excludes(pgdata: &Path) -> Vec<String> {
    let root = glob_escape(pgdata);
    let mut v: Vec<String> = EXCLUDED_CONTENT
        .iter()
        .map(|d| format!("{root}/{d}/*"))
        .collect();
    v.extend(EXCLUDED_FILES.iter().map(|f| format!("{root}/{f}")));
    // Read last, on its own (see `pgcontrol`).
    v.push(format!("{root}/{CONTROL_FILE}"));
    v.extend(EXCLUDED_ANYWHERE.iter().map(|p| p.to_string()));
    v
}

/// A psql session kept open for the low-level backup API (a non-exclusive backup lives
/// as long as its session; closing it aborts the backup).
struct Session {
    running: Option<Running>,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    target: String,
}

const MARK: &str = "@@arca-end-of-result@@";

impl Session {
    fn open(o: &BaseBackupOptions) -> Result<Session> {
        let mut cmd = o.tools.command("psql")?;
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "|"])
            .connection(&o.dbname)
            .env("LC_ALL", "C")
            .env("LC_MESSAGES", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let running = Running::spawn("psql", cmd)?;
        let stdin = running.take_stdin()?;
        let stdout = running.take_stdout()?;
        Ok(Session {
            running: Some(running),
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            target: describe_target(&o.dbname),
        })
    }

    /// Runs one statement; returns its rows, fields split on `|`.
    fn query(&mut self, sql: &str) -> Result<Vec<Vec<String>>> {
        let sent = match self.stdin.as_mut() {
            Some(i) => i
                .write_all(format!("{sql};\n\\echo {MARK}\n").as_bytes())
                .and_then(|_| i.flush())
                .is_ok(),
            None => false,
        };
        let mut rows = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = if sent {
                self.stdout.read_line(&mut line).unwrap_or(0)
            } else {
                0
            };
            if n == 0 {
                return Err(self.failure());
            }
            let l = line.trim_end_matches('\n');
            if l == MARK {
                return Ok(rows);
            }
            if !l.is_empty() {
                rows.push(l.split('|').map(str::to_string).collect());
            }
        }
    }

    /// psql stopped (ON_ERROR_STOP): its exit status and messages.
    fn failure(&mut self) -> Error {
        self.stdin.take();
        match self.running.take() {
            Some(r) => match r.finish(&self.target) {
                Ok(msg) => Error::ToolFailed {
                    tool: "psql".into(),
                    status: "ended early".into(),
                    target: self.target.clone(),
                    message: msg,
                },
                Err(e) => e,
            },
            None => Error::Invalid(format!("the psql session to {} ended", self.target)),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // End of input ends psql and with it the session (a running backup is aborted).
        self.stdin.take();
        if let Some(r) = self.running.take() {
            let _ = r.wait();
        }
    }
}

pub(crate) fn decode_hex_text(hex: &str) -> Result<String> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) {
        return Err(Error::Invalid(
            "pg_backup_stop returned a malformed label".into(),
        ));
    }
    let bytes: std::result::Result<Vec<u8>, _> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect();
    let bytes =
        bytes.map_err(|_| Error::Invalid("pg_backup_stop returned a malformed label".into()))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::Invalid("pg_backup_stop returned a label that is not UTF-8".into()))
}

/// The previous file-level base backup of the same cluster and data directory, if any.
fn previous_backup<'a>(
    snaps: &'a [(Id, Snapshot)],
    pgdata: &str,
    facts: &ServerFacts,
    host: &str,
) -> Option<&'a (Id, Snapshot)> {
    snaps.iter().rev().find(|(_, s)| {
        s.source == SOURCE_BASEBACKUP
            && s.host == host
            && s.meta.get("pg.method").map(String::as_str) == Some(METHOD_FILES)
            && s.meta.get("pg.system_identifier") == Some(&facts.system_identifier)
            && s.paths.len() == 1
            && s.paths[0] == pgdata
    })
}

/// A file added to a base backup's tree after the directory pass.
struct AddedFile {
    /// Its directory below the data directory (empty: the data directory itself).
    dir: Vec<Vec<u8>>,
    node: Node,
    data: Vec<u8>,
}

/// A `backup_label` or `tablespace_map` returned by `pg_backup_stop`, owned like the
/// data directory's files (`owner`, the node of pg_control).
fn label_file(name: &str, text: &str, owner: &Node) -> AddedFile {
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    node.mode = 0o600;
    node.uid = owner.uid;
    node.gid = owner.gid;
    node.user = owner.user.clone();
    node.group = owner.group.clone();
    node.mtime_ns = now;
    node.atime_ns = now;
    node.ctime_ns = now;
    AddedFile {
        dir: Vec::new(),
        node,
        data: text.as_bytes().to_vec(),
    }
}

/// Adds `files` to the data directory's tree in `snap` (replacing nodes of the same
/// name): with `backup_label` in the snapshot itself, even a plain `arca restore` lays
/// down a data directory that recovers from the backup's start (or refuses to start
/// without the WAL), never one that silently starts from a later checkpoint; pg_control,
/// left out of the directory pass, is added here after it was read last.
fn add_files_to_tree(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    indexes_before: &HashSet<arca_core::Id>,
    snap: &mut Snapshot,
    pgdata: &Path,
    files: Vec<AddedFile>,
) -> arca_core::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let names: Vec<Vec<u8>> = pgdata
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    // This backup's trees are in the index files it wrote, not in `index` (loaded before).
    let mut written = Index::new();
    for (id, _) in repo.list_ids("index")? {
        if !indexes_before.contains(&id) {
            for p in repo.load_index_file(&id)?.packs {
                written.insert_pack(p.id, &p.blobs);
            }
        }
    }
    let load = |id: &arca_core::Id| {
        if written.contains(id) {
            repo.load_tree(&written, id)
        } else {
            repo.load_tree(index, id)
        }
    };
    let saver = BlobSaver::new(repo.clone(), index.clone(), 1);
    let mut files: Vec<AddedFile> = files
        .into_iter()
        .map(|mut f| {
            let mut dir = names.clone();
            dir.append(&mut f.dir);
            f.dir = dir;
            f
        })
        .collect();
    for f in &mut files {
        f.node.size = f.data.len() as u64;
        f.node.content = Vec::new();
        if !f.data.is_empty() {
            let id = repo.crypto().blob_id(&f.data);
            saver.save(BlobKind::Data, id, std::mem::take(&mut f.data))?;
            f.node.content = vec![id];
        }
    }
    let files: Vec<&AddedFile> = files.iter().collect();
    let root = rewrite_tree(repo, &load, &saver, &snap.tree, &[], &files)?;
    saver.finish()?;
    snap.tree = root;
    Ok(())
}

/// The tree `id` at path `at` with `files` added below it; returns the new tree's id.
fn rewrite_tree(
    repo: &Repository,
    load: &dyn Fn(&arca_core::Id) -> arca_core::Result<arca_core::format::Tree>,
    saver: &BlobSaver,
    id: &arca_core::Id,
    at: &[Vec<u8>],
    files: &[&AddedFile],
) -> arca_core::Result<arca_core::Id> {
    let mut tree = load(id)?;
    let mut below: Vec<&[u8]> = Vec::new();
    for f in files {
        if f.dir.len() == at.len() {
            tree.nodes.retain(|n| n.name != f.node.name);
            tree.nodes.push(f.node.clone());
        } else if !below.contains(&f.dir[at.len()].as_slice()) {
            below.push(&f.dir[at.len()]);
        }
    }
    for name in below {
        let mut path = at.to_vec();
        path.push(name.to_vec());
        let shown = || String::from_utf8_lossy(&path.join(&b'/')).into_owned();
        let node = tree
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| {
                arca_core::Error::Invalid(format!(
                    "/{} is not in the base backup's snapshot",
                    shown()
                ))
            })?;
        let sub = node.subtree.ok_or_else(|| {
            arca_core::Error::Invalid(format!(
                "/{} is not a directory in the base backup's snapshot",
                shown()
            ))
        })?;
        let inner: Vec<&AddedFile> = files
            .iter()
            .copied()
            .filter(|f| f.dir.starts_with(&path))
            .collect();
        node.subtree = Some(rewrite_tree(repo, load, saver, &sub, &path, &inner)?);
    }
    tree.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let bytes = encode_tree(&tree);
    let id = repo.crypto().blob_id(&bytes);
    saver.save(BlobKind::Tree, id, bytes)?;
    Ok(id)
}

/// Waits until the archiver marked `segment` done (what `pg_backup_stop(true)` waits
/// for, polled often instead of once a second). A standby that does not archive itself
/// has no archiver to wait for: see [`wait_for_primary_archive`].
fn wait_archived(pgdata: &Path, segment: &str, progress: &dyn Progress) -> Result<()> {
    let status = pgdata.join("pg_wal/archive_status");
    let done = status.join(format!("{segment}.done"));
    let ready = status.join(format!("{segment}.ready"));
    let mut waited = Duration::ZERO;
    let mut step = Duration::from_millis(5);
    loop {
        if done.exists() {
            return Ok(());
        }
        // Neither marker nor segment: archived and already recycled.
        if !ready.exists() && !pgdata.join("pg_wal").join(segment).exists() {
            return Ok(());
        }
        if progress.should_stop() {
            return Err(Error::Repository(arca_core::Error::Interrupted));
        }
        if waited >= Duration::from_secs(60) && waited < Duration::from_secs(60) + step {
            progress.warning(
                &ready,
                "still waiting for the archiver to archive the backup's last WAL segment \
                 (check archive_command)",
            );
        }
        std::thread::sleep(step);
        waited += step;
        step = (step * 2).min(Duration::from_millis(50));
    }
}

/// A file-level base backup in progress: the server is in backup mode for as long as
/// `session` lives.
pub(crate) struct FilesStarted {
    session: Session,
    pgdata: PathBuf,
    /// The tablespaces as listed in backup mode (those `pg_backup_stop`'s map names).
    tablespaces: Vec<Tablespace>,
}

/// Opens the session and starts backup mode (`pg_backup_start`, a checkpoint).
pub(crate) fn start_files(
    o: &BaseBackupOptions,
    facts: &ServerFacts,
    pgdata: PathBuf,
) -> Result<FilesStarted> {
    let mut session = Session::open(o)?;
    let label = o.label.replace('\'', "''");
    let fast = if o.fast_checkpoint { "true" } else { "false" };
    let start_sql = if new_api(facts) {
        format!("select pg_backup_start('{label}', {fast})")
    } else {
        format!("select pg_start_backup('{label}', {fast}, false)")
    };
    session.query(&start_sql).map_err(|e| match e {
        Error::ToolFailed { message, .. } if message.contains("permission denied") => {
            Error::Invalid(format!(
                "{message}: a file-level base backup needs a superuser or EXECUTE on \
                 pg_backup_start/pg_backup_stop; or use --method stream (REPLICATION)"
            ))
        }
        other => other,
    })?;
    // Listed again in backup mode: a tablespace created after `server_facts` asked is in
    // the backup's tablespace map, and must be in this list.
    let rows = session.query(&format!("select {}", tablespace::LIST_SQL))?;
    let hex = rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default();
    let tablespaces = tablespace::parse_listed(&hex)?;
    Ok(FilesStarted {
        session,
        pgdata,
        tablespaces,
    })
}

/// The directory inside a tablespace that belongs to this server version
/// (`TABLESPACE_VERSION_DIRECTORY`), the only one pg_basebackup sends.
fn tablespace_version_dir(facts: &ServerFacts) -> String {
    let major = if facts.version_num >= 100000 {
        (facts.version_num / 10000).to_string()
    } else {
        format!(
            "{}.{}",
            facts.version_num / 10000,
            facts.version_num / 100 % 100
        )
    };
    format!("PG_{major}_{}", facts.catalog_version.trim())
}

/// For each tablespace outside the data directory: its `pg_tblspc/OID` symlink, checked
/// to lead to a directory (walked as that directory), and exclude patterns for whatever
/// its location holds besides `version_dir`.
fn tablespace_walk(
    pgdata: &Path,
    list: &[Tablespace],
    version_dir: &str,
) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let mut follow = Vec::new();
    let mut excludes = Vec::new();
    for t in list.iter().filter(|t| !t.in_place()) {
        let link = pgdata.join("pg_tblspc").join(t.oid.to_string());
        let md = std::fs::metadata(&link).map_err(|e| {
            Error::Invalid(format!(
                "tablespace {}: {} does not lead to its directory ({e}); no snapshot was \
                 written",
                t.describe(),
                link.display()
            ))
        })?;
        if !md.is_dir() {
            return Err(Error::Invalid(format!(
                "tablespace {}: {} is not a directory; no snapshot was written",
                t.describe(),
                link.display()
            )));
        }
        let rd = std::fs::read_dir(&link).map_err(|e| Error::io(&link, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&link, e))?;
            if entry.file_name() != version_dir {
                excludes.push(glob_escape(&link.join(entry.file_name())));
            }
        }
        follow.push(link);
    }
    Ok((follow, excludes))
}

/// PostgreSQL 15 renamed the low-level backup functions.
fn new_api(facts: &ServerFacts) -> bool {
    facts.version_num >= 150000 || facts.version_num == 0
}

/// The options of a file-level base backup: the parent (the previous backup of the same
/// cluster and directory) and how far its files may be reused, what is left out, the
/// tablespaces read through their links; and the OIDs of those linked tablespaces.
fn files_options(
    repo: &Repository,
    o: &BaseBackupOptions,
    facts: &ServerFacts,
    pgdata: &Path,
    tablespaces: &[Tablespace],
) -> Result<(BackupOptions, PathsSource, HashSet<String>)> {
    let pgdata_str = pgdata.to_string_lossy().into_owned();
    let host = o
        .backup
        .host
        .clone()
        .unwrap_or_else(arca_core::repo::hostname);
    let (snaps, _) = repo.list_snapshots()?;
    let parent = previous_backup(&snaps, &pgdata_str, facts, &host);
    let reuse_before = parent.map(|(_, s)| {
        let start = s.summary.start.unwrap_or(s.time);
        start.as_nanosecond() as i64 - REUSE_MARGIN_NS
    });
    let mut opts = o.backup.clone();
    opts.parent = parent.map(|p| p.0);
    opts.excludes.extend(excludes(pgdata));
    opts.meta.extend(facts.meta.clone());
    opts.meta
        .insert("pg.method".to_string(), METHOD_FILES.to_string());
    opts.meta
        .insert("pg.pgdata".to_string(), pgdata_str.clone());
    let (follow_symlinks, tablespace_excludes) =
        tablespace_walk(pgdata, tablespaces, &tablespace_version_dir(facts))?;
    opts.excludes.extend(tablespace_excludes);
    if !tablespaces.is_empty() {
        opts.meta.insert(
            META_TABLESPACES.to_string(),
            tablespace::to_meta(tablespaces),
        );
    }
    let linked: HashSet<String> = tablespaces
        .iter()
        .filter(|t| !t.in_place())
        .map(|t| t.oid.to_string())
        .collect();
    let kind = PathsSource {
        source: SOURCE_BASEBACKUP.to_string(),
        reuse_mtime_before_ns: Some(reuse_before.unwrap_or(i64::MAX)),
        changes_expected: true,
        fixed_chunk_size: Some(FIXED_CHUNK),
        follow_symlinks,
    };
    Ok((opts, kind, linked))
}

/// A copy of `global/pg_control` whose CRC verifies, as the tree node and bytes to store.
fn control_file(
    pgdata: &Path,
    cluster_id: u64,
    progress: &dyn Progress,
) -> Result<(arca_core::format::Node, Vec<u8>)> {
    let control = read_verified(pgdata, cluster_id)?;
    let control_path = pgdata.join(CONTROL_FILE);
    if control.attempts > 1 {
        progress.warning(
            &control_path,
            &format!(
                "read {} times until its CRC verified (the server was rewriting it)",
                control.attempts
            ),
        );
    }
    let (control_node, warnings) = node_from_metadata(
        &control_path,
        b"pg_control",
        &control.metadata,
        &mut OwnerNames::new(),
    );
    for w in warnings {
        progress.warning(&control_path, &w);
    }
    Ok((control_node, control.bytes))
}

/// The `files` method: a directory backup of the data directory while the server is in
/// backup mode, then `pg_backup_stop`.
pub(crate) fn file_base_backup(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    o: &BaseBackupOptions,
    facts: ServerFacts,
    started: FilesStarted,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let FilesStarted {
        mut session,
        pgdata,
        tablespaces,
    } = started;
    let pgdata = pgdata.as_path();
    let (opts, kind, linked) = files_options(repo, o, &facts, pgdata, &tablespaces)?;
    let seg_size = facts.seg_size;
    let cluster_id: u64 = facts.system_identifier.parse().map_err(|_| {
        Error::Invalid(format!(
            "the server reported a malformed system identifier {:?}",
            facts.system_identifier
        ))
    })?;
    let archives_itself = facts.archives_itself;
    let in_recovery = facts.in_recovery;
    let archive_timeout = o.archive_timeout;
    let stop_sql = if new_api(&facts) {
        "select lsn, encode(convert_to(labelfile, 'UTF8'), 'hex'), \
         encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex') from pg_backup_stop(false)"
    } else {
        "select lsn, encode(convert_to(labelfile, 'UTF8'), 'hex'), \
         encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex') \
         from pg_stop_backup(false, false)"
    };
    let no_snapshot = |e: Error| arca_core::Error::Invalid(format!("{e}; no snapshot was written"));
    let index_for_label = index.clone();
    let indexes_before: HashSet<arca_core::Id> = repo
        .list_ids("index")?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let result = backup_paths_as(
        repo,
        index,
        &[pgdata.to_path_buf()],
        &opts,
        &kind,
        progress,
        |snap| {
            if !snap.errors.is_empty() {
                let first: Vec<String> = snap
                    .errors
                    .iter()
                    .take(3)
                    .map(|e| format!("{}: {}", e.path, e.reason))
                    .collect();
                return Err(arca_core::Error::Invalid(format!(
                    "{} files of the data directory could not be read ({}); no snapshot \
                     was written",
                    snap.errors.len(),
                    first.join("; ")
                )));
            }
            // pg_control last, after every other file, and only a copy that verifies.
            let (control_node, control_bytes) =
                control_file(pgdata, cluster_id, progress).map_err(no_snapshot)?;
            let rows = session.query(stop_sql).map_err(no_snapshot)?;
            let row = rows.into_iter().next().unwrap_or_default();
            let get = |i: usize| row.get(i).cloned().unwrap_or_default();
            let stop: Lsn = get(0).parse().map_err(|e: super::walname::LsnError| {
                no_snapshot(Error::Invalid(e.to_string()))
            })?;
            let label = decode_hex_text(&get(1)).map_err(no_snapshot)?;
            let map = decode_hex_text(&get(2)).map_err(no_snapshot)?;
            // Every tablespace the map names was read through its symlink.
            if let Some((oid, _)) = tablespace::parse_map(&map)
                .into_iter()
                .find(|(oid, _)| !linked.contains(oid))
            {
                return Err(no_snapshot(Error::Invalid(format!(
                    "tablespace OID {oid} appeared during the backup (it is in the \
                     backup's tablespace map but was not read); run the backup again"
                ))));
            }
            let mut files = vec![label_file("backup_label", &label, &control_node)];
            // With tablespaces stored as directories under pg_tblspc, the tree keeps no
            // tablespace_map: PostgreSQL would replace those directories with symlinks to
            // the original locations. A plain restore of the tree then starts with its
            // tablespaces inside the data directory; `arca pg restore` writes the map with
            // the locations it chose, from `pg.tablespace_map`'s metadata.
            if !map.is_empty() && linked.is_empty() {
                files.push(label_file("tablespace_map", &map, &control_node));
            }
            files.push(AddedFile {
                dir: vec![b"global".to_vec()],
                node: control_node,
                data: control_bytes,
            });
            add_files_to_tree(repo, &index_for_label, &indexes_before, snap, pgdata, files)?;
            let meta = finish_meta(label, stop, Some(map), seg_size).map_err(no_snapshot)?;
            // The backup is usable once its last segment is archived.
            let stop_seg = needed_segments(&meta, stop, seg_size)
                .pop()
                .unwrap_or_default();
            if archives_itself {
                wait_archived(pgdata, &stop_seg, progress).map_err(no_snapshot)?;
            } else if in_recovery {
                wait_for_primary_archive(repo, &meta, stop, seg_size, archive_timeout, progress)
                    .map_err(no_snapshot)?;
            }
            snap.meta.extend(meta);
            Ok(())
        },
    )?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_escape_the_data_directory() {
        let v = excludes(Path::new("/srv/pg[1]/data"));
        assert!(v.contains(&"/srv/pg\\[1\\]/data/pg_wal/*".to_string()));
        assert!(v.contains(&"/srv/pg\\[1\\]/data/postmaster.pid".to_string()));
        let ex = arca_core::backup::Excludes::new(&v, &[]).unwrap();
        let root = Path::new("/srv/pg[1]/data");
        assert!(ex.is_excluded(&root.join("pg_wal/000000010000000000000001")));
        assert!(ex.is_excluded(&root.join("pg_wal/archive_status")));
        assert!(!ex.is_excluded(&root.join("pg_wal")));
        assert!(ex.is_excluded(&root.join("base/5/pgsql_tmp/pgsql_tmp1.0")));
        assert!(ex.is_excluded(&root.join("global/pg_internal.init")));
        assert!(ex.is_excluded(&root.join("postmaster.pid")));
        assert!(!ex.is_excluded(&root.join("base/5/16384")));
        assert!(ex.is_excluded(&root.join("global/pg_control")));
        assert!(!ex.is_excluded(&root.join("global/1262")));
    }

    #[test]
    fn hex_labels_decode() {
        assert_eq!(decode_hex_text("41420a").unwrap(), "AB\n");
        assert!(decode_hex_text("4").is_err());
        assert!(decode_hex_text("zz").is_err());
    }
}
