//! Continuous WAL archiving: `wal-push` (archive_command), `wal-fetch` (restore_command),
//! the gap check of `arca pg check` and WAL retention (`arca pg forget-wal`).
//!
//! Push: the file's content is chunked, deduplicated within the batch, compressed, sealed
//! and packed like any data; its record (`wal/NAME`, see [`arca_core::wal`]) is written
//! only after the packs and the index naming them are durable. A push may take along
//! other segments PostgreSQL has marked ready (`archive_status/*.ready`): they are stored
//! in the same run, and a marker `SPOOL/NAME.ok` (holding the file's device, inode, size
//! and modification time as read) lets the archiver's later call for them succeed at once
//! without opening the repository. Pushing the same content twice succeeds; different content under an
//! archived name fails.
//!
//! Fetch: the record's blobs are read, checked against the record's size and keyed hash,
//! and written to the destination through a temporary file and a rename. The following
//! segments of the same timeline may be fetched in the same run into a prefetch
//! directory, from which later calls take them with a rename.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_core::format::{BlobKind, Snapshot};
use arca_core::index::Index;
use arca_core::saver::BlobSaver;
use arca_core::wal::{self, WalRecord};
use arca_core::{Id, Repository};

use super::walname::{Lsn, WalName, parse_history, segment_header, segment_name};
use super::{Error, Result, SOURCE_BASEBACKUP};

/// Default WAL segment size (initdb's default).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// How `push` works.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Where markers of files pushed ahead of PostgreSQL's call are kept; `None` pushes
    /// only the named file.
    pub spool: Option<PathBuf>,
    /// Most files pushed in one run (the named one included).
    pub batch: usize,
    /// Compression threads.
    pub threads: usize,
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// Files stored by this run.
    pub pushed: Vec<String>,
    /// Files that were already archived with the same content.
    pub already: Vec<String>,
    /// Files taken along that could not be stored (PostgreSQL's own call retries them).
    pub skipped: Vec<(String, String)>,
    pub bytes_added: u64,
}

fn file_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Invalid(format!("{}: not a WAL file path", path.display())))?;
    if !wal::valid_name(name) {
        return Err(Error::Invalid(format!(
            "{}: {name:?} is not a WAL file name",
            path.display()
        )));
    }
    Ok(name.to_string())
}

fn marker_path(spool: &Path, name: &str) -> PathBuf {
    spool.join(format!("{name}.ok"))
}

/// Whether an earlier run already pushed `path` with exactly this content (its marker in
/// `spool` names the content's hash). The marker is consumed either way.
pub fn push_done_in_spool(spool: &Path, path: &Path) -> Result<bool> {
    let name = file_name(path)?;
    let marker = marker_path(spool, &name);
    let want = match fs::read_to_string(&marker) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(&marker, e)),
    };
    let md = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let done = file_identity(&md) == want;
    let _ = fs::remove_file(&marker);
    Ok(done)
}

/// What a marker holds: the file's device, inode, size and modification time when it was
/// read for pushing. PostgreSQL never rewrites a segment it marked ready (a recycled
/// segment gets a new name), so an unchanged identity means unchanged content, and the
/// archiver's call costs a stat instead of reading 16 MiB.
fn file_identity(md: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{} {} {} {}.{:09}",
        md.dev(),
        md.ino(),
        md.len(),
        md.mtime(),
        md.mtime_nsec()
    )
}

/// Other files PostgreSQL marked ready beside `path` (history files first, then in name
/// order), without a marker yet.
fn ready_companions(path: &Path, own: &str, spool: &Path, limit: usize) -> Vec<PathBuf> {
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    ready_files(dir, Some(own), spool, limit)
}

fn error_path(spool: &Path, name: &str) -> PathBuf {
    spool.join(format!("{name}.error"))
}

/// Files of `pg_wal` marked ready, without a marker or an error file in `spool`.
fn ready_files(pg_wal: &Path, exclude: Option<&str>, spool: &Path, limit: usize) -> Vec<PathBuf> {
    let dir = pg_wal;
    let Ok(rd) = fs::read_dir(dir.join("archive_status")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let n = n.strip_suffix(".ready")?.to_string();
            (Some(n.as_str()) != exclude
                && wal::valid_name(&n)
                && !marker_path(spool, &n).exists()
                && !error_path(spool, &n).exists())
            .then_some(n)
        })
        .collect();
    names.sort_by_key(|n| (!n.ends_with(".history"), n.clone()));
    names.truncate(limit);
    names.into_iter().map(|n| dir.join(n)).collect()
}

struct Prepared {
    name: String,
    record: Option<WalRecord>,
    marker: String,
}

/// Archives `path` (and, with a spool, up to `batch - 1` other ready files).
pub fn push(repo: &Arc<Repository>, path: &Path, opts: &PushOptions) -> Result<PushReport> {
    let own = file_name(path)?;
    let mut files = vec![path.to_path_buf()];
    if let Some(spool) = &opts.spool
        && opts.batch > 1
    {
        files.extend(ready_companions(path, &own, spool, opts.batch - 1));
    }
    push_files(repo, files, opts, false)
}

/// What the archiver's call for a file finds in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolState {
    /// Pushed, with this content (the marker was consumed).
    Done,
    /// The worker could not push it (the error file was consumed).
    Failed(String),
    Pending,
}

/// Whether a worker pushed `path` (or failed to).
pub fn spool_state(spool: &Path, path: &Path) -> Result<SpoolState> {
    if push_done_in_spool(spool, path)? {
        return Ok(SpoolState::Done);
    }
    let name = file_name(path)?;
    let ep = error_path(spool, &name);
    match fs::read_to_string(&ep) {
        Ok(msg) => {
            let _ = fs::remove_file(&ep);
            Ok(SpoolState::Failed(msg.trim().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SpoolState::Pending),
        Err(e) => Err(Error::io(&ep, e)),
    }
}

/// The background pusher: archives every file of `pg_wal` that PostgreSQL marked ready,
/// `opts.batch` at a time, leaving a marker (or an error file) per file in the spool,
/// until none has appeared for `idle`. One repository opening serves every file.
pub fn run_push_worker(
    repo: &Arc<Repository>,
    pg_wal: &Path,
    opts: &PushOptions,
    idle: std::time::Duration,
) -> Result<PushReport> {
    let spool = opts
        .spool
        .clone()
        .ok_or_else(|| Error::Invalid("the WAL push worker needs a spool directory".into()))?;
    fs::create_dir_all(&spool).map_err(|e| Error::io(&spool, e))?;
    let mut total = PushReport::default();
    let mut last_work = std::time::Instant::now();
    loop {
        let files = ready_files(pg_wal, None, &spool, opts.batch.max(1));
        if files.is_empty() {
            if last_work.elapsed() >= idle {
                return Ok(total);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        let names: Vec<String> = files.iter().filter_map(|p| file_name(p).ok()).collect();
        match push_files(repo, files, opts, true) {
            Ok(r) => {
                for (name, why) in &r.skipped {
                    let _ = fs::write(error_path(&spool, name), why);
                }
                total.pushed.extend(r.pushed);
                total.already.extend(r.already);
                total.skipped.extend(r.skipped);
                total.bytes_added += r.bytes_added;
            }
            Err(e) => {
                // The whole batch failed (e.g. the repository is locked or full): every
                // waiting archiver call reports it, and PostgreSQL retries.
                for n in &names {
                    let _ = fs::write(error_path(&spool, n), e.to_string());
                }
                return Err(e);
            }
        }
        last_work = std::time::Instant::now();
    }
}

/// Stores `files` in one run; markers are written for every file but the first unless
/// `mark_first` (the first is the caller's own, answered by the exit code).
fn push_files(
    repo: &Arc<Repository>,
    files: Vec<PathBuf>,
    opts: &PushOptions,
    mark_first: bool,
) -> Result<PushReport> {
    let _lock = arca_core::lock::acquire(repo, false, "wal-push")?;
    let saver = BlobSaver::new(repo.clone(), Arc::new(Index::new()), opts.threads.max(1));
    let readers = opts.threads.clamp(1, 4);
    let prepared = arca_core::parallel::map(files, readers, |p| prepare(repo, &saver, &p));
    let (_, totals) = saver.finish()?;
    // Packs and index are durable: the records may name them now.
    let mut report = PushReport {
        bytes_added: totals.bytes_added,
        ..Default::default()
    };
    let mut own_result: Result<()> = Ok(());
    let mut to_save = Vec::new();
    for (i, p) in prepared.into_iter().enumerate() {
        let is_own = i == 0 && !mark_first;
        match p {
            Ok(p) => to_save.push((is_own, p)),
            Err((name, e)) if is_own => {
                let _ = name;
                own_result = Err(e);
            }
            Err((name, e)) => report.skipped.push((name, e.to_string())),
        }
    }
    let saved = arca_core::parallel::map(to_save, 4, |(is_own, p)| {
        let r = match &p.record {
            Some(rec) => wal::save(repo, rec).map_err(Error::from),
            None => Ok(()),
        };
        (is_own, p, r)
    });
    for (is_own, p, r) in saved {
        match r {
            Ok(()) => {
                if p.record.is_some() {
                    report.pushed.push(p.name.clone());
                } else {
                    report.already.push(p.name.clone());
                }
                if !is_own
                    && !p.marker.is_empty()
                    && let Some(spool) = &opts.spool
                {
                    write_marker(spool, &p.name, &p.marker)?;
                }
            }
            Err(e) if is_own => own_result = Err(e),
            Err(e) => report.skipped.push((p.name, e.to_string())),
        }
    }
    own_result.map(|()| report)
}

fn write_marker(spool: &Path, name: &str, hash: &str) -> Result<()> {
    fs::create_dir_all(spool).map_err(|e| Error::io(spool, e))?;
    let marker = marker_path(spool, name);
    let tmp = spool.join(format!(".{name}.ok.tmp"));
    fs::write(&tmp, hash)
        .and_then(|()| fs::rename(&tmp, &marker))
        .map_err(|e| Error::io(&marker, e))
}

/// WAL files are cut at fixed 1 MiB offsets. WAL hardly deduplicates: a push does not
/// load the repository's index, so only pieces identical within one batch are stored
/// once (zero-filled ends of segments switched early, a `.partial` and the segment it
/// became), and those fall at the same aligned offsets. Content-defined chunking found
/// nothing more and cost a rolling hash over every byte (11 % of the CPU of pushing 200
/// segments); fixed pieces are also read straight into the buffers queued for storing.
const WAL_CHUNK: usize = 1 << 20;

/// Reads one file, compares it with an existing record, queues its blobs.
fn prepare(
    repo: &Repository,
    saver: &BlobSaver,
    path: &Path,
) -> std::result::Result<Prepared, (String, Error)> {
    use std::io::Read;
    let name = file_name(path).map_err(|e| (path.display().to_string(), e))?;
    let fail = |e: Error| (name.clone(), e);
    let existing = wal::load(repo, &name).map_err(|e| fail(e.into()))?;
    let mut file = fs::File::open(path).map_err(|e| fail(Error::io(path, e)))?;
    let before = file.metadata().map_err(|e| fail(Error::io(path, e)))?;
    let mut hasher = repo.crypto().blob_hasher();
    let mut size = 0u64;
    let mut header = None;
    let mut blobs = Vec::new();
    loop {
        let mut piece = Vec::with_capacity(WAL_CHUNK);
        (&mut file)
            .take(WAL_CHUNK as u64)
            .read_to_end(&mut piece)
            .map_err(|e| fail(Error::io(path, e)))?;
        if piece.is_empty() {
            break;
        }
        if size == 0 {
            header = segment_header(&piece);
        }
        size += piece.len() as u64;
        hasher.update(&piece);
        // An archived file is only compared: nothing of it is stored again.
        if existing.is_none() {
            let id = repo.crypto().blob_id(&piece);
            saver
                .save(BlobKind::Data, id, piece)
                .map_err(|e| fail(e.into()))?;
            blobs.push(id);
        }
    }
    let after = fs::metadata(path).map_err(|e| fail(Error::io(path, e)))?;
    let hash = Id(*hasher.finalize().as_bytes());
    // A file that changed while read gets no marker: the archiver's own call pushes it.
    let marker = if file_identity(&before) == file_identity(&after) && after.len() == size {
        file_identity(&after)
    } else {
        String::new()
    };
    if let Some(existing) = existing {
        if existing.hash == hash && existing.size == size {
            return Ok(Prepared {
                name,
                record: None,
                marker,
            });
        }
        return Err(fail(Error::WalConflict { name: name.clone() }));
    }
    let mut record = WalRecord::new(&name, size, hash, blobs);
    if matches!(WalName::parse(&name), Some(WalName::Segment { .. }))
        && let Some((sysid, seg_size)) = header
    {
        record
            .meta
            .insert("pg.system_identifier".into(), sysid.to_string());
        record
            .meta
            .insert("pg.wal_segment_size".into(), seg_size.to_string());
    }
    Ok(Prepared {
        name,
        record: Some(record),
        marker,
    })
}

// ---------------------------------------------------------------------------------------
// Fetch

/// What a fetch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The file was written to the destination.
    Restored,
    /// The repository has no such file (recovery ends here normally).
    NotArchived,
}

/// Moves `name` from the prefetch directory to `dest` when an earlier run fetched it.
pub fn take_prefetched(prefetch: &Path, name: &str, dest: &Path) -> Result<bool> {
    let p = prefetch.join(name);
    match fs::rename(&p, dest) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&p, e)),
    }
}

/// Reads an archived file's content and verifies it against its record.
fn read_content(repo: &Repository, index: &Index, rec: &WalRecord) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rec.size as usize);
    for b in &rec.blobs {
        let data = repo.read_blob(index, b).map_err(|e| Error::WalDamaged {
            name: rec.name.clone(),
            reason: e.to_string(),
        })?;
        out.extend_from_slice(&data);
    }
    if out.len() as u64 != rec.size || repo.crypto().blob_id(&out) != rec.hash {
        return Err(Error::WalDamaged {
            name: rec.name.clone(),
            reason: format!(
                "content does not match its record ({} bytes read, {} recorded)",
                out.len(),
                rec.size
            ),
        });
    }
    Ok(out)
}

/// Writes `data` to `dest` through a temporary file in the same directory.
fn write_atomic(dest: &Path, data: &[u8], sync: bool) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let fname = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".arca-tmp-{}-{fname}", std::process::id()));
    let r = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, dest)
    })();
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(dest, e));
    }
    Ok(())
}

/// Fetches `name` into `dest`; with a prefetch directory, also up to `prefetch_count`
/// following segments of the same timeline that are archived.
pub fn fetch(
    repo: &Repository,
    name: &str,
    dest: &Path,
    prefetch: Option<&Path>,
    prefetch_count: usize,
) -> Result<FetchOutcome> {
    if !wal::valid_name(name) {
        return Err(Error::Invalid(format!("{name:?} is not a WAL file name")));
    }
    let Some(rec) = wal::load(repo, name)? else {
        return Ok(FetchOutcome::NotArchived);
    };
    let mut wanted: Vec<WalRecord> = vec![rec];
    if let (Some(dir), Some(WalName::Segment { timeline, .. })) = (prefetch, WalName::parse(name)) {
        // Old prefetched files of this timeline are of no use any more.
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.len() == 24 && n[..8] == name[..8] && n.as_str() <= name {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let size = wanted[0]
            .meta
            .get("pg.wal_segment_size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_SEGMENT_SIZE);
        if let Some(segno) = WalName::parse(name).and_then(|n| n.segno(size)) {
            let next: Vec<String> = (1..=prefetch_count as u64)
                .map(|i| segment_name(timeline, segno + i, size))
                .filter(|n| !dir.join(n).exists())
                .collect();
            let found = arca_core::parallel::map(next, 8, |n| wal::load(repo, &n));
            for r in found {
                match r {
                    Ok(Some(r)) => wanted.push(r),
                    // Stop at the first gap: recovery asks again for what follows it.
                    _ => break,
                }
            }
        }
    }
    let index = repo.load_index()?;
    let prefetch_dir = prefetch.map(Path::to_path_buf);
    if wanted.len() > 1
        && let Some(d) = &prefetch_dir
    {
        fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let results = arca_core::parallel::map(
        wanted.into_iter().enumerate().collect(),
        4,
        |(i, rec): (usize, WalRecord)| -> Result<()> {
            let data = read_content(repo, &index, &rec)?;
            if i == 0 {
                write_atomic(dest, &data, false)
            } else if let Some(d) = &prefetch_dir {
                write_atomic(&d.join(&rec.name), &data, false)
            } else {
                Ok(())
            }
        },
    );
    let mut results = results.into_iter();
    if let Some(r) = results.next() {
        r?;
    }
    // A prefetch that failed is fetched again (and reported) when recovery asks for it.
    Ok(FetchOutcome::Restored)
}

// ---------------------------------------------------------------------------------------
// Check and retention

/// What `arca pg check` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WalCheckReport {
    pub base_backups: usize,
    /// First segment needed (the oldest base backup's start), if any base backup.
    pub first_needed: Option<String>,
    /// Newest archived segment.
    pub newest: Option<String>,
    pub segments_checked: u64,
    pub timelines: Vec<u32>,
    /// Segments missing inside the needed ranges.
    pub missing: Vec<String>,
    /// Records that cannot be read or whose content is damaged: (name, reason).
    pub damaged: Vec<(String, String)>,
}

impl WalCheckReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.damaged.is_empty()
    }
}

/// A base backup's start: (timeline, start segment number, segment size).
fn backup_start(s: &Snapshot) -> Option<(u32, u64, u64)> {
    let size: u64 = s
        .meta
        .get("pg.wal_segment_size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEGMENT_SIZE);
    let tli: u32 = s.meta.get("pg.timeline")?.parse().ok()?;
    let lsn: Lsn = s.meta.get("pg.start_lsn")?.parse().ok()?;
    Some((tli, lsn.0 / size, size))
}

fn base_backups(snaps: &[(Id, Snapshot)]) -> Vec<&(Id, Snapshot)> {
    snaps
        .iter()
        .filter(|(_, s)| s.source == SOURCE_BASEBACKUP && backup_start(s).is_some())
        .collect()
}

/// Checks that every segment from the oldest base backup's start to the newest archived
/// segment is archived (per timeline, from where each timeline begins) and readable;
/// `read_data` also reads every needed segment's content and verifies its hash.
pub fn check_wal(
    repo: &Repository,
    snaps: &[(Id, Snapshot)],
    read_data: bool,
) -> Result<WalCheckReport> {
    let names = wal::list(repo)?;
    let backups = base_backups(snaps);
    let mut report = WalCheckReport {
        base_backups: backups.len(),
        ..Default::default()
    };
    let oldest = backups
        .iter()
        .filter_map(|(_, s)| backup_start(s))
        .min_by_key(|(_, segno, _)| *segno);
    let size = oldest.map_or(DEFAULT_SEGMENT_SIZE, |o| o.2);
    let mut per_tli: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut histories: BTreeSet<u32> = BTreeSet::new();
    for n in &names {
        match WalName::parse(n) {
            Some(w @ WalName::Segment { timeline, .. }) => {
                if let Some(s) = w.segno(size) {
                    per_tli.entry(timeline).or_default().insert(s);
                }
            }
            Some(WalName::History { timeline }) => {
                histories.insert(timeline);
            }
            _ => {}
        }
    }
    report.timelines = per_tli.keys().copied().collect();
    report.newest = per_tli
        .iter()
        .flat_map(|(t, s)| s.iter().map(move |x| (*x, *t)))
        .max()
        .map(|(s, t)| segment_name(t, s, size));
    report.first_needed = oldest.map(|(t, s, sz)| segment_name(t, s, sz));
    let mut needed: Vec<String> = Vec::new();
    for (&tli, segs) in &per_tli {
        let (Some(&first_archived), Some(&last)) = (segs.first(), segs.last()) else {
            continue;
        };
        let lo = match oldest {
            Some((btli, start, _)) if tli == btli => start,
            Some((btli, _, _)) if tli < btli => continue,
            Some((_, start, _)) => {
                // A later timeline begins at its switch point (from its history file).
                let switch = histories.contains(&tli).then(|| {
                    wal::load(repo, &format!("{tli:08X}.history"))
                        .ok()
                        .flatten()
                        .and_then(|rec| {
                            let index = repo.load_index().ok()?;
                            read_content(repo, &index, &rec).ok()
                        })
                        .and_then(|d| {
                            parse_history(&String::from_utf8_lossy(&d))
                                .last()
                                .map(|(_, l)| l.0 / size)
                        })
                });
                match switch.flatten() {
                    Some(s) => s.max(start),
                    None => {
                        if tli > 1 {
                            report.missing.push(format!("{tli:08X}.history"));
                        }
                        first_archived
                    }
                }
            }
            None => first_archived,
        };
        for s in lo..=last {
            let n = segment_name(tli, s, size);
            if segs.contains(&s) {
                needed.push(n);
            } else {
                report.missing.push(n);
            }
        }
    }
    report.segments_checked = needed.len() as u64;
    let index = repo.load_index()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results = arca_core::parallel::map(needed, threads, |n| {
        let r = (|| -> Result<()> {
            let rec = wal::load(repo, &n)?.ok_or_else(|| Error::WalDamaged {
                name: n.clone(),
                reason: "record vanished during the check".into(),
            })?;
            if read_data {
                read_content(repo, &index, &rec)?;
            } else if let Some(b) = rec.blobs.iter().find(|b| !index.contains(b)) {
                return Err(Error::WalDamaged {
                    name: n.clone(),
                    reason: format!("blob {b} is not in the index"),
                });
            }
            Ok(())
        })();
        (n, r)
    });
    for (n, r) in results {
        if let Err(e) = r {
            report.damaged.push((n, e.to_string()));
        }
    }
    Ok(report)
}

/// Removes the records of WAL older than the oldest base backup's start segment (history
/// files are kept). Returns the names removed (or that would be, with `dry_run`).
pub fn forget_wal(
    repo: &Repository,
    snaps: &[(Id, Snapshot)],
    dry_run: bool,
) -> Result<Vec<String>> {
    let Some((_, start, size)) = base_backups(snaps)
        .iter()
        .filter_map(|(_, s)| backup_start(s))
        .min_by_key(|(_, segno, _)| *segno)
    else {
        return Err(Error::Invalid(
            "the repository has no base backup: keeping all WAL (nothing would restore without one)"
                .into(),
        ));
    };
    let old: Vec<String> = wal::list(repo)?
        .into_iter()
        .filter(|n| {
            WalName::parse(n)
                .and_then(|w| w.segno(size))
                .is_some_and(|s| s < start)
        })
        .collect();
    if !dry_run {
        for n in &old {
            wal::delete(repo, n)?;
        }
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arca_core::repo::InitOptions;
    use arca_storage::local::LocalStorage;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Files of every size around the 1 MiB pieces are stored in pieces of at most 1 MiB,
    /// come back byte for byte, are accepted again with the same content and refused with
    /// another.
    #[test]
    fn pushed_files_come_back_whole_in_one_mib_pieces() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Arc::new(LocalStorage::new(tmp.path().join("repo")));
        let opts = InitOptions {
            kdf: Some(arca_core::crypto::test_kdf_params()),
            ..Default::default()
        };
        let repo = Arc::new(Repository::init(storage, b"pw", opts).unwrap());
        let push_opts = PushOptions {
            spool: None,
            batch: 1,
            threads: 2,
        };
        let wal = tmp.path().join("pg_wal");
        fs::create_dir(&wal).unwrap();
        let sizes = [0usize, 100, WAL_CHUNK, 2 * WAL_CHUNK + 1, 5 * WAL_CHUNK - 7];
        for (i, &size) in sizes.iter().enumerate() {
            let name = format!("0000000100000000000000{:02X}", i + 1);
            let path = wal.join(&name);
            let content = pseudo_random(size, i as u64);
            fs::write(&path, &content).unwrap();
            let report = push(&repo, &path, &push_opts).unwrap();
            assert_eq!(report.pushed, vec![name.clone()], "size {size}");
            let record = wal::load(&repo, &name).unwrap().unwrap();
            assert_eq!(record.size, size as u64);
            assert_eq!(record.blobs.len(), size.div_ceil(WAL_CHUNK), "size {size}");
            assert_eq!(record.hash, repo.crypto().blob_id(&content));

            let again = push(&repo, &path, &push_opts).unwrap();
            assert_eq!(again.already, vec![name.clone()]);
            assert_eq!(again.bytes_added, 0);

            let dest = tmp.path().join(format!("fetched-{i}"));
            assert_eq!(
                fetch(&repo, &name, &dest, None, 0).unwrap(),
                FetchOutcome::Restored
            );
            assert!(fs::read(&dest).unwrap() == content, "size {size}");

            if size > 0 {
                let mut other = content.clone();
                other[size - 1] ^= 1;
                fs::write(&path, &other).unwrap();
                assert!(matches!(
                    push(&repo, &path, &push_opts),
                    Err(Error::WalConflict { .. })
                ));
            }
        }
    }
}
