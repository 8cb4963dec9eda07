//! Base backups: choosing the method (file-level, see `filebackup`, when the data
//! directory is on this host; else `pg_basebackup -Ft -X none -D -` streamed into a
//! snapshot holding one file, `base.tar`), the metadata every base backup records, and
//! point-in-time restore: choosing the newest base backup before the target, laying it
//! down into an empty data directory and writing the recovery settings.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use arca_core::backup::{BackupOptions, BackupResult, backup_stream};
use arca_core::format::Snapshot;
use arca_core::index::Index;
use arca_core::progress::Progress;
use arca_core::restore::find_path;
use arca_core::{Id, Repository};
use crossbeam_channel::{Receiver, bounded};

use super::filebackup::{
    FilesStarted, METHOD_FILES, file_base_backup, glob_escape, local_data_directory, start_files,
};
use super::tablespace::{self, Placement, Tablespace};
use super::tools::{ConnectionArg, Running, Tools, describe_target, query};
use super::walarchive::DEFAULT_SEGMENT_SIZE;
use super::walname::{Lsn, segment_name};
use super::{Error, Result, SOURCE_BASEBACKUP};

/// The file name of the base backup inside its snapshot.
pub const BASE_TAR: &str = "base.tar";

/// How to take a base backup.
#[derive(Debug, Clone)]
pub struct BaseBackupOptions {
    /// Connection (URI, key=value string or database name) for pg_basebackup and psql.
    pub dbname: String,
    pub tools: Tools,
    /// Request an immediate checkpoint instead of waiting for the next one.
    pub fast_checkpoint: bool,
    /// The backup label PostgreSQL records.
    pub label: String,
    pub method: BaseBackupMethod,
    /// On a standby that does not archive its own WAL: how long to wait for its primary
    /// to archive the WAL the backup needs into the repository.
    pub archive_timeout: std::time::Duration,
    pub backup: BackupOptions,
}

/// How a base backup reads the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BaseBackupMethod {
    /// `Files` when the data directory is on this host and readable, else `Stream`.
    #[default]
    Auto,
    /// The low-level backup API around a parallel directory backup of the data directory
    /// (unchanged files are not read again).
    Files,
    /// `pg_basebackup -Ft -X none` streamed into one file.
    Stream,
}

/// Facts captured from the tar stream while it passes.
#[derive(Debug, Default)]
struct Captured {
    backup_label: Option<String>,
    tablespace_map: Option<String>,
    /// The end of `backup_manifest` (its WAL-Ranges section).
    manifest_tail: Option<String>,
}

/// Bytes of `backup_manifest` kept (the WAL-Ranges section is at its end).
const MANIFEST_TAIL: usize = 64 << 10;

#[derive(Debug)]
enum TapState {
    Header(Vec<u8>),
    Data {
        remaining: u64,
        size: u64,
        capture: Option<(String, Vec<u8>)>,
    },
    End,
}

/// Passes a tar stream through and keeps the content of `backup_label` and
/// `tablespace_map`.
struct TarTap<R> {
    inner: R,
    state: TapState,
    captured: Arc<Mutex<Captured>>,
}

fn octal(field: &[u8]) -> u64 {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // base-256 (GNU) for large sizes
        return field[1..].iter().fold(0u64, |a, &b| (a << 8) | b as u64);
    }
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    u64::from_str_radix(s.trim(), 8).unwrap_or(0)
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

impl<R: Read> TarTap<R> {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                TapState::End => return,
                TapState::Header(buf) => {
                    let take = (512 - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if buf.len() < 512 {
                        continue;
                    }
                    let h = std::mem::take(buf);
                    if h.iter().all(|&b| b == 0) {
                        self.state = TapState::End;
                        return;
                    }
                    let mut name = cstr(&h[..100]);
                    if &h[257..262] == b"ustar" {
                        let prefix = cstr(&h[345..500]);
                        if !prefix.is_empty() {
                            name = format!("{prefix}/{name}");
                        }
                    }
                    let name = name.trim_start_matches("./").to_string();
                    let size = octal(&h[124..136]);
                    let typeflag = h[156];
                    let padded = size.div_ceil(512) * 512;
                    let capture = ((typeflag == b'0' || typeflag == 0)
                        && (((name == "backup_label" || name == "tablespace_map")
                            && size <= 1 << 20)
                            || name == "backup_manifest"))
                        .then(|| (name, Vec::new()));
                    self.state = if padded == 0 {
                        if let Some((n, v)) = capture {
                            self.store(&n, v);
                        }
                        TapState::Header(Vec::new())
                    } else {
                        TapState::Data {
                            remaining: padded,
                            size,
                            capture,
                        }
                    };
                }
                TapState::Data {
                    remaining,
                    size,
                    capture,
                } => {
                    let take = (*remaining).min(data.len() as u64) as usize;
                    if let Some((_, v)) = capture {
                        // Bytes of content (not padding) in this piece.
                        let consumed_before = size.div_ceil(512) * 512 - *remaining;
                        let content_here =
                            size.saturating_sub(consumed_before).min(take as u64) as usize;
                        v.extend_from_slice(&data[..content_here]);
                        if v.len() > 2 * MANIFEST_TAIL {
                            v.drain(..v.len() - MANIFEST_TAIL);
                        }
                    }
                    *remaining -= take as u64;
                    data = &data[take..];
                    if *remaining == 0 {
                        let cap = capture.take();
                        self.state = TapState::Header(Vec::new());
                        if let Some((n, v)) = cap {
                            self.store(&n, v);
                        }
                    }
                }
            }
        }
    }

    fn store(&self, name: &str, v: Vec<u8>) {
        let text = String::from_utf8_lossy(&v).into_owned();
        let mut c = self.captured.lock().unwrap_or_else(|p| p.into_inner());
        match name {
            "backup_label" => c.backup_label = Some(text),
            "tablespace_map" => c.tablespace_map = Some(text),
            _ => c.manifest_tail = Some(text),
        }
    }
}

impl<R: Read> Read for TarTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.feed(&buf[..n]);
        Ok(n)
    }
}

/// `KEY: value` lines of a backup label.
fn label_field<'a>(label: &'a str, key: &str) -> Option<&'a str> {
    label
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// What a base backup learns from the server before it starts.
pub(crate) struct ServerFacts {
    /// Snapshot metadata: versions, system identifier, segment size, start time.
    pub meta: BTreeMap<String, String>,
    pub seg_size: u64,
    pub version_num: u32,
    pub system_identifier: String,
    /// The server's data directory, when this user may see the setting.
    pub data_directory: Option<String>,
    /// Whether this server archives its own WAL: a primary with archiving on, or a
    /// standby with `archive_mode = always` (a standby's WAL is archived by its primary).
    pub archives_itself: bool,
    /// A standby (`pg_is_in_recovery()`).
    pub in_recovery: bool,
    /// `catalog_version_no`: names a tablespace's version directory
    /// (`PG_MAJOR_CATVERSION`).
    pub catalog_version: String,
    /// Tablespaces other than `pg_default` and `pg_global`.
    pub tablespaces: Vec<Tablespace>,
}

impl ServerFacts {
    /// Tablespaces whose content is outside the data directory.
    pub fn linked_tablespaces(&self) -> Vec<&Tablespace> {
        self.tablespaces.iter().filter(|t| !t.in_place()).collect()
    }
}

/// Why a cluster with tablespaces outside its data directory cannot be streamed.
fn tablespaces_need_files(target: &str, linked: &[&Tablespace], why: Option<&str>) -> Error {
    let names: Vec<String> = linked.iter().map(|t| t.describe()).collect();
    let not_here = why
        .map(|w| format!("; arca cannot use it here because {w}"))
        .unwrap_or_default();
    Error::Invalid(format!(
        "the cluster at {target} has tablespace{} outside the data directory: {}. \
         pg_basebackup cannot send more than one tablespace to standard output, so \
         --method stream cannot back it up; the file method (--method files, the default \
         when arca runs on the database host with read access to the data directory) backs \
         up tablespaces{not_here}. No snapshot was written",
        if linked.len() > 1 { "s" } else { "" },
        names.join(", ")
    ))
}

/// Asks the server for its versions, settings and tablespaces; refuses clusters without
/// WAL archiving.
pub(crate) fn server_facts(o: &BaseBackupOptions) -> Result<ServerFacts> {
    let target = describe_target(&o.dbname);
    let sql = format!(
        "select current_setting('server_version'), current_setting('server_version_num'), \
         (select system_identifier from pg_control_system()), \
         (select setting from pg_settings where name = 'wal_segment_size'), \
         current_setting('archive_mode'), {}, \
         (select setting from pg_settings where name = 'data_directory'), \
         pg_is_in_recovery(), \
         (select catalog_version_no from pg_control_system())",
        tablespace::LIST_SQL
    );
    let rows = query(&o.tools, &o.dbname, &sql)?;
    let row = rows.into_iter().next().unwrap_or_default();
    let get = |i: usize| row.get(i).cloned().unwrap_or_default();
    let tablespaces = tablespace::parse_listed(&get(5))?;
    if get(4) == "off" {
        return Err(Error::Invalid(format!(
            "archive_mode is off on {target}: a base backup restores only with the WAL written \
             during and after it; set archive_mode = on and archive_command = 'arca wal-push %p'"
        )));
    }
    let mut meta = BTreeMap::new();
    meta.insert("pg.server_version".to_string(), get(0));
    meta.insert("pg.server_version_num".to_string(), get(1));
    meta.insert("pg.system_identifier".to_string(), get(2));
    let seg_size: u64 = get(3).parse().unwrap_or(DEFAULT_SEGMENT_SIZE);
    meta.insert("pg.wal_segment_size".to_string(), seg_size.to_string());
    meta.insert(
        "pg.start_time".to_string(),
        jiff::Timestamp::now().to_string(),
    );
    Ok(ServerFacts {
        meta,
        seg_size,
        version_num: get(1).parse().unwrap_or(0),
        system_identifier: get(2),
        data_directory: Some(get(6)).filter(|d| !d.is_empty()),
        archives_itself: get(4) == "always" || (get(4) == "on" && get(7) != "t"),
        in_recovery: get(7) == "t",
        catalog_version: get(8),
        tablespaces,
    })
}

/// A base backup begun before the repository is opened, so that the server's checkpoint
/// overlaps arca's key derivation and index loading: the server's facts and, for a
/// file-level backup, the session in backup mode (dropping this aborts that backup).
pub struct StartedBaseBackup {
    facts: ServerFacts,
    files: Option<FilesStarted>,
    /// Why `--method auto` streams instead of reading the data directory.
    streams_because: Option<String>,
}

impl StartedBaseBackup {
    /// Why `--method auto` chose the pg_basebackup stream (the data directory is not on
    /// this host or not readable), for a note to the user.
    pub fn streams_because(&self) -> Option<&str> {
        self.streams_because.as_deref()
    }
}

/// Asks the server for its facts, chooses the method and, for a file-level backup, puts
/// the server in backup mode (`pg_backup_start`).
pub fn start_base_backup(o: &BaseBackupOptions) -> Result<StartedBaseBackup> {
    let facts = server_facts(o)?;
    let linked = facts.linked_tablespaces();
    let local = match o.method {
        BaseBackupMethod::Stream => {
            if !linked.is_empty() {
                return Err(tablespaces_need_files(
                    &describe_target(&o.dbname),
                    &linked,
                    None,
                ));
            }
            Err(String::new())
        }
        _ => local_data_directory(&facts),
    };
    let mut streams_because = None;
    let files = match (o.method, local) {
        (BaseBackupMethod::Files | BaseBackupMethod::Auto, Ok(dir)) => {
            Some(start_files(o, &facts, dir)?)
        }
        (BaseBackupMethod::Auto, Err(why)) if !linked.is_empty() => {
            return Err(tablespaces_need_files(
                &describe_target(&o.dbname),
                &linked,
                Some(&why),
            ));
        }
        (BaseBackupMethod::Auto, Err(why)) => {
            streams_because = Some(why);
            None
        }
        (BaseBackupMethod::Files, Err(why)) => {
            return Err(Error::Invalid(format!(
                "a file-level base backup of {} reads the server's data directory directly, \
                 but {why}; use --method stream (pg_basebackup)",
                describe_target(&o.dbname)
            )));
        }
        _ => None,
    };
    Ok(StartedBaseBackup {
        facts,
        files,
        streams_because,
    })
}

/// Takes the base backup begun by [`start_base_backup`] into the repository.
pub fn finish_base_backup(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    o: &BaseBackupOptions,
    started: StartedBaseBackup,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    match started.files {
        Some(files) => file_base_backup(repo, index, o, started.facts, files, progress),
        None => stream_base_backup(repo, index, o, started.facts, progress),
    }
}

/// Takes a base backup: [`start_base_backup`] then [`finish_base_backup`].
pub fn base_backup(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    o: &BaseBackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let started = start_base_backup(o)?;
    finish_base_backup(repo, index, o, started, progress)
}

/// The `stream` method: `pg_basebackup -Ft -X none` into one file, `base.tar`.
pub(crate) fn stream_base_backup(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    o: &BaseBackupOptions,
    facts: ServerFacts,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let target = describe_target(&o.dbname);
    let seg_size = facts.seg_size;
    let mut meta = facts.meta;
    meta.insert("pg.method".to_string(), "stream".to_string());
    let mut cmd = o.tools.command("pg_basebackup")?;
    cmd.args(["-D", "-", "-F", "t", "-X", "none", "-v", "-l"])
        .arg(&o.label)
        .arg(if o.fast_checkpoint {
            "--checkpoint=fast"
        } else {
            "--checkpoint=spread"
        })
        .connection(&o.dbname)
        .env("LC_ALL", "C")
        .env("LC_MESSAGES", "C")
        .stdout(Stdio::piped());
    let mut running = Running::spawn("pg_basebackup", cmd)?;
    let stdout = running
        .child
        .stdout
        .take()
        .ok_or_else(|| Error::Invalid("pg_basebackup's output is not available".into()))?;
    let captured = Arc::new(Mutex::new(Captured::default()));
    let tap = TarTap {
        inner: stdout,
        state: TapState::Header(Vec::new()),
        captured: captured.clone(),
    };
    let mut opts = o.backup.clone();
    opts.meta.extend(meta);
    let wait_for_primary =
        (facts.in_recovery && !facts.archives_itself).then_some((o.archive_timeout, &**repo));
    let result = backup_stream(
        repo,
        index,
        tap,
        BASE_TAR,
        SOURCE_BASEBACKUP,
        &opts,
        progress,
        move || {
            let err = running
                .finish(&target)
                .map_err(|e| arca_core::Error::Invalid(format!("{e}; no snapshot was written")))?;
            let c = captured.lock().unwrap_or_else(|p| p.into_inner());
            let label = c.backup_label.clone().ok_or_else(|| {
                arca_core::Error::Invalid(
                    "pg_basebackup's output has no backup_label (not a base backup?); \
                     no snapshot was written"
                        .into(),
                )
            })?;
            let stop = c
                .manifest_tail
                .as_deref()
                .and_then(manifest_end_lsn)
                .ok_or_else(|| {
                    arca_core::Error::Invalid(format!(
                        "pg_basebackup's output has no backup_manifest with the backup's WAL \
                         range (PostgreSQL 13 or later is needed); its messages: {err}; \
                         no snapshot was written"
                    ))
                })?;
            let meta = finish_meta(label, stop, c.tablespace_map.clone(), seg_size)
                .map_err(|e| arca_core::Error::Invalid(format!("{e}; no snapshot was written")))?;
            if let Some((timeout, repo)) = wait_for_primary {
                wait_for_primary_archive(repo, &meta, stop, seg_size, timeout, progress).map_err(
                    |e| arca_core::Error::Invalid(format!("{e}; no snapshot was written")),
                )?;
            }
            Ok(meta)
        },
    )?;
    Ok(result)
}

/// The metadata known only at the end: WAL range, timeline, label.
pub(crate) fn finish_meta(
    label: String,
    stop: Lsn,
    tablespace_map: Option<String>,
    seg_size: u64,
) -> Result<BTreeMap<String, String>> {
    let start_field = label_field(&label, "START WAL LOCATION")
        .ok_or_else(|| Error::Invalid("backup_label has no START WAL LOCATION".into()))?;
    let start: Lsn = start_field
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(Error::Invalid)?;
    let timeline: u32 = label_field(&label, "START TIMELINE")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let mut m = BTreeMap::new();
    m.insert("pg.start_lsn".into(), start.to_string());
    m.insert("pg.stop_lsn".into(), stop.to_string());
    m.insert("pg.timeline".into(), timeline.to_string());
    m.insert(
        "pg.start_wal".into(),
        segment_name(timeline, start.0 / seg_size, seg_size),
    );
    m.insert(
        "pg.stop_wal".into(),
        segment_name(timeline, stop.0 / seg_size, seg_size),
    );
    m.insert("pg.stop_time".into(), jiff::Timestamp::now().to_string());
    m.insert("pg.backup_label".into(), label);
    if let Some(t) = tablespace_map.filter(|t| !t.is_empty()) {
        m.insert("pg.tablespace_map".into(), t);
    }
    Ok(m)
}

/// The WAL segments from a backup's start to its stop (`meta` from [`finish_meta`]).
pub(crate) fn needed_segments(
    meta: &BTreeMap<String, String>,
    stop: Lsn,
    seg_size: u64,
) -> Vec<String> {
    let timeline: u32 = meta
        .get("pg.timeline")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let start: u64 = meta
        .get("pg.start_lsn")
        .and_then(|l| l.parse::<Lsn>().ok())
        .map_or(stop.0, |l| l.0);
    let first = start / seg_size;
    let last = (stop.0.saturating_sub(1) / seg_size).max(first);
    (first..=last)
        .map(|n| segment_name(timeline, n, seg_size))
        .collect()
}

/// A standby archives no WAL of its own (archive_mode = on) and PostgreSQL does not wait
/// for the archive on a standby: the WAL of its base backup is archived by the primary,
/// when the primary finishes those segments. Waits until every segment from the backup's
/// start to its stop is in the repository's WAL archive (as pgBackRest's backup from a
/// standby waits for the archive), at most `timeout`.
pub(crate) fn wait_for_primary_archive(
    repo: &Repository,
    meta: &BTreeMap<String, String>,
    stop: Lsn,
    seg_size: u64,
    timeout: std::time::Duration,
    progress: &dyn Progress,
) -> Result<()> {
    let started = std::time::Instant::now();
    let mut missing = needed_segments(meta, stop, seg_size);
    let mut warned = false;
    loop {
        let mut still = Vec::new();
        for name in missing {
            if arca_core::wal::load(repo, &name)?.is_none() {
                still.push(name);
            }
        }
        missing = still;
        let Some(first) = missing.first() else {
            return Ok(());
        };
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(Error::Invalid(format!(
                "this base backup of a standby needs WAL segment{} {}{}, which the primary \
                 has not archived into this repository within {} s (a standby with \
                 archive_mode = on archives nothing itself): run `select pg_switch_wal()` on \
                 the primary or set archive_timeout there, check its archive_command \
                 (arca wal-push into this repository), or wait longer with --archive-timeout",
                if missing.len() > 1 { "s" } else { "" },
                first,
                missing
                    .last()
                    .filter(|l| *l != first)
                    .map(|l| format!(" to {l}"))
                    .unwrap_or_default(),
                timeout.as_secs()
            )));
        }
        if !warned && waited >= std::time::Duration::from_secs(10) {
            warned = true;
            progress.warning(
                Path::new(first),
                "waiting for the primary to archive this WAL segment, which the standby's \
                 base backup needs (run `select pg_switch_wal()` on the primary to finish it now)",
            );
        }
        if progress.should_stop() {
            return Err(Error::Repository(arca_core::Error::Interrupted));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The End-LSN of the last WAL range of a backup manifest (given its tail).
fn manifest_end_lsn(tail: &str) -> Option<Lsn> {
    let start = tail.rfind("\"WAL-Ranges\"")?;
    let rest = &tail[start..];
    let open = rest.find('[')?;
    let close = rest.find(']')?;
    let ranges: Vec<serde_json::Value> = serde_json::from_str(&rest[open..=close]).ok()?;
    ranges.last()?.get("End-LSN")?.as_str()?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Restore

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq)]
pub enum RecoveryTarget {
    Time(jiff::Timestamp),
    Lsn(Lsn),
    Name(String),
    /// The end of the archived WAL.
    Latest,
}

/// What `restore_base_backup` needs.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub pgdata: PathBuf,
    pub target: RecoveryTarget,
    /// The full restore_command (e.g. `/usr/bin/arca -r /repo wal-fetch %f %p`).
    pub restore_command: String,
    /// Threads reading the repository.
    pub threads: usize,
    /// Tablespaces restored elsewhere than their original location: (OID or name,
    /// directory), from `--tablespace-map`.
    pub tablespace_map: Vec<(String, PathBuf)>,
    /// Tablespaces not in `tablespace_map` go to `DIR/NAME` (`--tablespace-map-all`).
    pub tablespace_map_all: Option<PathBuf>,
}

/// What was restored.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub snapshot: Id,
    pub bytes: u64,
    pub settings: Vec<String>,
}

fn meta_time(s: &Snapshot, key: &str) -> Option<jiff::Timestamp> {
    s.meta.get(key)?.parse().ok()
}

/// The newest base backup that ends before the target.
pub fn choose_base_backup(
    snaps: &[(Id, Snapshot)],
    target: &RecoveryTarget,
) -> Result<(Id, Snapshot)> {
    let backups: Vec<&(Id, Snapshot)> = snaps
        .iter()
        .filter(|(_, s)| s.source == SOURCE_BASEBACKUP && s.meta.contains_key("pg.stop_lsn"))
        .collect();
    if backups.is_empty() {
        return Err(Error::Invalid(
            "the repository has no PostgreSQL base backup (run `arca pg basebackup`)".into(),
        ));
    }
    let fits = |s: &Snapshot| match target {
        RecoveryTarget::Time(t) => meta_time(s, "pg.stop_time").is_some_and(|st| st <= *t),
        RecoveryTarget::Lsn(l) => s
            .meta
            .get("pg.stop_lsn")
            .and_then(|v| v.parse::<Lsn>().ok())
            .is_some_and(|st| st <= *l),
        RecoveryTarget::Name(_) | RecoveryTarget::Latest => true,
    };
    backups
        .iter()
        .rev()
        .find(|(_, s)| fits(s))
        .map(|x| (*x).clone())
        .ok_or_else(|| {
            let oldest = backups[0];
            Error::Invalid(format!(
                "no base backup ends before the target {target:?}; the oldest, {}, ends at {} (LSN {})",
                oldest.0.short(),
                oldest.1.meta.get("pg.stop_time").map_or("?", String::as_str),
                oldest.1.meta.get("pg.stop_lsn").map_or("?", String::as_str),
            ))
        })
}

/// Reads a file's blobs in order with several reads in flight.
struct AheadReader {
    rx: Receiver<Receiver<arca_core::Result<Vec<u8>>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for AheadReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            let Ok(next) = self.rx.recv() else {
                return Ok(0);
            };
            self.current = next
                .recv()
                .map_err(|_| std::io::Error::other("a reader thread stopped"))?
                .map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn quote_conf(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Unpacks a base backup into `o.pgdata` (created empty, mode 0700), its tablespaces
/// into their original or mapped locations (absent or empty; created mode 0700), and
/// writes `recovery.signal` and the recovery settings into `postgresql.auto.conf`.
/// Every location is checked before anything is written.
pub fn restore_base_backup(
    repo: &Repository,
    index: &Index,
    snapshot: &(Id, Snapshot),
    o: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestorePlan> {
    let dir = &o.pgdata;
    let exists = match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::Invalid(format!(
                    "{} is not empty; restore a base backup into an empty or new directory",
                    dir.display()
                )));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(dir, e)),
    };
    let placements = tablespace::place(
        &tablespace::from_meta(&snapshot.1.meta)?,
        &o.tablespace_map,
        o.tablespace_map_all.as_deref(),
        dir,
        &snapshot.0.short(),
    )?;
    if !exists {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))?;
    let is_root = nix_is_root();
    let bytes = if snapshot.1.meta.get("pg.method").map(String::as_str) == Some(METHOD_FILES) {
        restore_files(repo, index, snapshot, o, &placements, progress)?
    } else {
        restore_tar(repo, index, snapshot, o, progress)?
    };
    // The data directory belongs to whoever owns its files (postgres).
    if is_root && let Ok(md) = std::fs::metadata(dir.join("PG_VERSION")) {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(dir, Some(md.uid()), Some(md.gid()));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))?;
    let settings = write_recovery_settings(dir, snapshot, o, is_root)?;
    // Everything restored is on disk before the restore reports success (pgBackRest fsyncs
    // every file it restores): a power cut after `arca pg restore` returned cannot leave an
    // empty or torn relation file behind a `recovery.signal`. Tablespaces may be on other
    // file systems: one syncfs per file system.
    arca_core::restore::sync_file_system(dir)?;
    let mut synced = vec![std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?.dev()];
    for p in &placements {
        let dev = std::fs::metadata(&p.target)
            .map_err(|e| Error::io(&p.target, e))?
            .dev();
        if !synced.contains(&dev) {
            arca_core::restore::sync_file_system(&p.target)?;
            synced.push(dev);
        }
    }
    Ok(RestorePlan {
        snapshot: snapshot.0,
        bytes,
        settings,
    })
}

/// Lays down a file-level base backup: the data directory through the parallel
/// restorer, each tablespace into its placement, then `backup_label` (and
/// `tablespace_map`) from the snapshot's metadata and the WAL directories the backup left
/// out. Returns the bytes restored.
///
/// Tablespaces: the data directory's pass leaves out `pg_tblspc/OID`, and each
/// tablespace's subtree is then restored straight into its target by a pass of its own,
/// after which `pg_tblspc/OID` becomes a symlink to it. A target is usually on another
/// file system than the data directory (that is what tablespaces are for), where laying
/// everything down in one pass and moving the directories afterwards would copy every
/// byte a second time (rename does not cross devices); a pass per target writes each byte
/// once, in parallel within the pass, and a cluster without tablespaces keeps the single
/// pass it always had.
fn restore_files(
    repo: &Repository,
    index: &Index,
    snapshot: &(Id, Snapshot),
    o: &RestoreOptions,
    placements: &[Placement],
    progress: &dyn Progress,
) -> Result<u64> {
    let dir = &o.pgdata;
    let snap = &snapshot.1;
    let short = snapshot.0.short();
    let (Some(pgdata), Some(label)) = (snap.paths.first(), snap.meta.get("pg.backup_label")) else {
        return Err(Error::Invalid(format!(
            "base backup {short} has no data directory or backup label in its metadata"
        )));
    };
    let pgdata = Path::new(pgdata);
    let node = find_path(repo, index, &snap.tree, pgdata)?;
    let tblspc = pgdata.join("pg_tblspc");
    let opts = arca_core::restore::RestoreOptions {
        // Fetches in flight: reads overlap decompression and writes.
        threads: Some(o.threads.clamp(1, 16) * 2),
        excludes: placements
            .iter()
            .map(|p| glob_escape(&tblspc.join(p.tablespace.oid.to_string())))
            .collect(),
        ..Default::default()
    };
    let failed = |summary: &arca_core::restore::RestoreSummary, into: &Path, what: &str| {
        let first: Vec<String> = summary
            .errors
            .iter()
            .take(3)
            .map(|e| format!("{}: {}", e.path, e.reason))
            .collect();
        Error::Invalid(format!(
            "restoring base backup {short} into {} failed for {} files ({}); {what} is \
             incomplete",
            into.display(),
            summary.errors.len(),
            first.join("; ")
        ))
    };
    let summary = arca_core::restore::restore(repo, index, &node, pgdata, dir, &opts, progress)?;
    if !summary.errors.is_empty() {
        return Err(failed(&summary, dir, "the data directory"));
    }
    let mut bytes = summary.total_bytes;
    let owner = std::fs::metadata(dir.join("PG_VERSION"))
        .ok()
        .filter(|_| nix_is_root());
    let chown = |p: &Path| {
        if let Some(md) = &owner {
            let _ = std::os::unix::fs::lchown(p, Some(md.uid()), Some(md.gid()));
        }
    };
    let opts = arca_core::restore::RestoreOptions {
        excludes: Vec::new(),
        ..opts
    };
    let restored_tblspc = dir.join("pg_tblspc");
    if !placements.is_empty() && !restored_tblspc.is_dir() {
        std::fs::create_dir(&restored_tblspc).map_err(|e| Error::io(&restored_tblspc, e))?;
        chown(&restored_tblspc);
    }
    for p in placements {
        let oid = p.tablespace.oid.to_string();
        let inside = tblspc.join(&oid);
        let node = find_path(repo, index, &snap.tree, &inside)?;
        create_tablespace_dir(&p.target)?;
        chown(&p.target);
        let summary =
            arca_core::restore::restore(repo, index, &node, &inside, &p.target, &opts, progress)?;
        if !summary.errors.is_empty() {
            return Err(failed(
                &summary,
                &p.target,
                &format!("tablespace {}", p.tablespace.name),
            ));
        }
        bytes += summary.total_bytes;
        let link = restored_tblspc.join(&oid);
        std::os::unix::fs::symlink(&p.target, &link).map_err(|e| Error::io(&link, e))?;
        chown(&link);
    }
    // pg_wal as a symlink elsewhere comes back as a plain directory, as pg_basebackup does.
    let wal = dir.join("pg_wal");
    if std::fs::symlink_metadata(&wal).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(&wal).map_err(|e| Error::io(&wal, e))?;
    }
    for d in [wal.clone(), wal.join("archive_status")] {
        if !d.is_dir() {
            std::fs::create_dir(&d).map_err(|e| Error::io(&d, e))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(&d, e))?;
            chown(&d);
        }
    }
    let mut files = vec![("backup_label", label.clone())];
    if !placements.is_empty() {
        // PostgreSQL re-creates the pg_tblspc symlinks from this file when recovery
        // starts: it names the locations chosen here, not the original ones.
        let entries: Vec<(u32, &Path)> = placements
            .iter()
            .map(|p| (p.tablespace.oid, p.target.as_path()))
            .collect();
        files.push(("tablespace_map", tablespace::format_map(&entries)));
    } else if let Some(map) = snap.meta.get("pg.tablespace_map").filter(|m| !m.is_empty()) {
        files.push(("tablespace_map", map.clone()));
    }
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&p, e))?;
        chown(&p);
    }
    Ok(bytes)
}

/// Creates a tablespace's target (its parents as needed) or takes the empty directory
/// that is there (checked by `tablespace::place`), mode 0700 as PostgreSQL makes it.
fn create_tablespace_dir(target: &Path) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    match std::fs::create_dir(target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() => {}
        Err(e) => return Err(Error::io(target, e)),
    }
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(target, e))
}

/// Unpacks `base.tar` (a `stream` base backup). Returns the bytes restored.
fn restore_tar(
    repo: &Repository,
    index: &Index,
    snapshot: &(Id, Snapshot),
    o: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<u64> {
    let dir = &o.pgdata;
    let node = find_path(repo, index, &snapshot.1.tree, Path::new("/base.tar"))?;
    let is_root = nix_is_root();
    let threads = o.threads.clamp(1, 16);
    let blobs = node.content.clone();
    std::thread::scope(|s| -> Result<()> {
        let (job_tx, job_rx) = bounded::<(Id, crossbeam_channel::Sender<_>)>(threads * 2);
        let (order_tx, order_rx) = bounded(threads * 4);
        s.spawn(move || {
            for id in blobs {
                let (tx, rx) = bounded(1);
                if job_tx.send((id, tx)).is_err() || order_tx.send(rx).is_err() {
                    break;
                }
            }
        });
        for _ in 0..threads {
            let job_rx = job_rx.clone();
            s.spawn(move || {
                for (id, tx) in job_rx {
                    let r = repo.read_blob(index, &id);
                    if let Ok(d) = &r {
                        progress.add_bytes(d.len() as u64);
                    }
                    let _ = tx.send(r);
                }
            });
        }
        drop(job_rx);
        let reader = AheadReader {
            rx: order_rx,
            current: Vec::new(),
            pos: 0,
        };
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(is_root);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(false);
        let r = archive.unpack(dir).map_err(|e| Error::io(dir, e));
        // Drain so the feeder and readers stop.
        drop(archive);
        r
    })?;
    Ok(node.size)
}

/// Writes `recovery.signal` and the recovery settings into `postgresql.auto.conf`.
fn write_recovery_settings(
    dir: &Path,
    snapshot: &(Id, Snapshot),
    o: &RestoreOptions,
    is_root: bool,
) -> Result<Vec<String>> {
    let mut settings = vec![
        format!("restore_command = {}", quote_conf(&o.restore_command)),
        "recovery_target_timeline = 'latest'".to_string(),
    ];
    match &o.target {
        RecoveryTarget::Time(t) => {
            settings.push(format!(
                "recovery_target_time = {}",
                quote_conf(&t.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
            ));
        }
        RecoveryTarget::Lsn(l) => settings.push(format!(
            "recovery_target_lsn = {}",
            quote_conf(&l.to_string())
        )),
        RecoveryTarget::Name(n) => {
            settings.push(format!("recovery_target_name = {}", quote_conf(n)))
        }
        RecoveryTarget::Latest => {}
    }
    if o.target != RecoveryTarget::Latest {
        settings.push("recovery_target_action = 'promote'".to_string());
    }
    let auto = dir.join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
    if !conf.is_empty() && !conf.ends_with('\n') {
        conf.push('\n');
    }
    conf.push_str(&format!(
        "# Recovery settings written by arca pg restore (base backup {})\n",
        snapshot.0
    ));
    for l in &settings {
        conf.push_str(l);
        conf.push('\n');
    }
    std::fs::write(&auto, conf).map_err(|e| Error::io(&auto, e))?;
    // A base backup of a standby carries its standby.signal, which would keep the
    // restored cluster a standby (following primary_conninfo) instead of recovering to the
    // target and ending recovery.
    let standby_signal = dir.join("standby.signal");
    match std::fs::remove_file(&standby_signal) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&standby_signal, e)),
    }
    let signal = dir.join("recovery.signal");
    std::fs::write(&signal, b"").map_err(|e| Error::io(&signal, e))?;
    if is_root && let Ok(md) = std::fs::metadata(dir.join("PG_VERSION")) {
        use std::os::unix::fs::MetadataExt;
        for f in [&auto, &signal] {
            let _ = std::os::unix::fs::chown(f, Some(md.uid()), Some(md.gid()));
        }
    }
    Ok(settings)
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_segments_run_from_the_start_to_the_stop_segment() {
        let seg = 16 << 20;
        let mut meta = BTreeMap::new();
        meta.insert("pg.timeline".to_string(), "2".to_string());
        meta.insert("pg.start_lsn".to_string(), "0/2000028".to_string());
        let names = |stop: &str| needed_segments(&meta, stop.parse().unwrap(), seg);
        assert_eq!(
            names("0/3000100"),
            vec![
                "000000020000000000000002".to_string(),
                "000000020000000000000003".to_string()
            ]
        );
        // A stop at a segment boundary needs nothing of the segment it points into.
        assert_eq!(names("0/3000000"), vec!["000000020000000000000002"]);
        assert_eq!(names("0/2000100"), vec!["000000020000000000000002"]);
        assert_eq!(names("1/0").len(), 255 - 2 + 1);
    }
}
