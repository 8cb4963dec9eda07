//! Base backups: choosing the method (file-level, see `filebackup`, when the data
//! directory is on this host; else `pg_basebackup -Ft -X none -D -` streamed into a
//! snapshot holding one file, `base.tar`) and the metadata every base backup records.
//! Restoring them is `pitr`'s.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use arca_core::Repository;
use arca_core::backup::{BackupOptions, BackupResult, ChildStreamHooks, StreamName, backup_child};
use arca_core::index::Index;
use arca_core::progress::Progress;

use super::filebackup::{FilesStarted, file_base_backup, local_data_directory, start_files};
use super::tablespace::{self, Tablespace};
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
    let running = Running::spawn("pg_basebackup", cmd)?;
    let captured = Arc::new(Mutex::new(Captured::default()));
    let tap = |stdout| TarTap {
        inner: stdout,
        state: TapState::Header(Vec::new()),
        captured: captured.clone(),
    };
    let mut opts = o.backup.clone();
    opts.meta.extend(meta);
    let wait_for_primary =
        (facts.in_recovery && !facts.archives_itself).then_some((o.archive_timeout, &**repo));
    let name = StreamName {
        file: BASE_TAR,
        source: SOURCE_BASEBACKUP,
    };
    let accept = |ended| {
        let err = running.accepted(ended, &target)?;
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
            wait_for_primary_archive(repo, &meta, stop, seg_size, timeout, progress)
                .map_err(|e| arca_core::Error::Invalid(format!("{e}; no snapshot was written")))?;
        }
        Ok(meta)
    };
    let hooks = ChildStreamHooks { wrap: tap, accept };
    Ok(backup_child(
        repo,
        index,
        &running.child,
        name,
        &opts,
        progress,
        hooks,
    )?)
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
        .map_err(|e: super::walname::LsnError| Error::Invalid(e.to_string()))?;
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

pub(super) fn nix_is_root() -> bool {
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
