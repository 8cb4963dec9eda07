//! Point-in-time restore: choosing the newest base backup before the target, laying it
//! down into an empty data directory (and its tablespaces into theirs), and writing the
//! recovery settings.
//!
//! Everything written into the data directory after the restorer laid it down goes
//! through the same confined target ([`Confined`]): a hostile snapshot whose data
//! directory holds a symlink named `backup_label`, `pg_wal` or `postgresql.auto.conf`
//! cannot make the restore write outside it.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use arca_core::confined::{Confined, EntryKind};
use arca_core::format::Snapshot;
use arca_core::index::Index;
use arca_core::progress::Progress;
use arca_core::restore::find_path;
use arca_core::{Id, Repository};
use crossbeam_channel::{Receiver, bounded};

use super::basebackup::nix_is_root;
use super::filebackup::{METHOD_FILES, glob_escape};
use super::tablespace::{self, Placement};
use super::walname::Lsn;
use super::{Error, Result, SOURCE_BASEBACKUP};

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
    let conf = Confined::open(dir).map_err(|e| Error::io(dir, e))?;
    let bytes = if snapshot.1.meta.get("pg.method").map(String::as_str) == Some(METHOD_FILES) {
        restore_files(repo, index, snapshot, o, &placements, &conf, progress)?
    } else {
        restore_tar(repo, index, snapshot, o, &conf, progress)?
    };
    // The data directory belongs to whoever owns its files (postgres).
    let owner = data_owner(&conf);
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))?;
    let settings = write_recovery_settings(&conf, snapshot, o, owner)?;
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

/// The parts of a data directory a restore makes itself: `pg_wal` (and its
/// `archive_status`) as plain directories, `backup_label`, and `tablespace_map` naming
/// where the tablespaces went.
fn lay_down_wal_and_labels(
    conf: &Confined,
    snap: &Snapshot,
    label: &str,
    placements: &[Placement],
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let chown = |rel: &Path| {
        if let Some((uid, gid)) = owner {
            let _ = conf.set_owner(rel, uid, gid);
        }
    };
    let io = |rel: &Path, e: std::io::Error| Error::io(conf.display(rel), e);
    // pg_wal as a symlink elsewhere comes back as a plain directory, as pg_basebackup does.
    let wal = Path::new("pg_wal");
    if let Some(e) = conf.lstat(wal).map_err(|e| io(wal, e))?
        && e.kind != EntryKind::Dir
    {
        conf.remove(wal, e.kind).map_err(|e| io(wal, e))?;
    }
    for d in [wal.to_path_buf(), wal.join("archive_status")] {
        if !is_dir(conf, &d)? {
            conf.create_dir(&d).map_err(|e| io(&d, e))?;
            conf.set_mode(&d, 0o700).map_err(|e| io(&d, e))?;
            chown(&d);
        }
    }
    let mut files = vec![("backup_label", label.to_string())];
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
        let p = Path::new(name);
        conf.write_file(p, text.as_bytes(), 0o600)
            .map_err(|e| io(p, e))?;
        chown(p);
    }
    Ok(())
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
    conf: &Confined,
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
    let owner = data_owner(conf);
    let chown = |rel: &Path| {
        if let Some((uid, gid)) = owner {
            let _ = conf.set_owner(rel, uid, gid);
        }
    };
    let io = |rel: &Path, e: std::io::Error| Error::io(conf.display(rel), e);
    let opts = arca_core::restore::RestoreOptions {
        excludes: Vec::new(),
        ..opts
    };
    let restored_tblspc = Path::new("pg_tblspc");
    if !placements.is_empty() && !is_dir(conf, restored_tblspc)? {
        conf.create_dir(restored_tblspc)
            .map_err(|e| io(restored_tblspc, e))?;
        chown(restored_tblspc);
    }
    for p in placements {
        let oid = p.tablespace.oid.to_string();
        let inside = tblspc.join(&oid);
        let node = find_path(repo, index, &snap.tree, &inside)?;
        create_tablespace_dir(&p.target)?;
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::lchown(&p.target, Some(uid), Some(gid));
        }
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
        conf.symlink(p.target.as_os_str().as_bytes(), &link)
            .map_err(|e| io(&link, e))?;
        chown(&link);
    }
    lay_down_wal_and_labels(conf, snap, label, placements, owner)?;
    Ok(bytes)
}

/// Whether a directory (not a link to one) stands at `rel` of the data directory.
fn is_dir(conf: &Confined, rel: &Path) -> Result<bool> {
    let entry = conf
        .lstat(rel)
        .map_err(|e| Error::io(conf.display(rel), e))?;
    Ok(entry.is_some_and(|e| e.kind == EntryKind::Dir))
}

/// The owner of the restored `PG_VERSION` (postgres), when running as root: the data
/// directory and what the restore adds to it get the same.
fn data_owner(conf: &Confined) -> Option<(u32, u32)> {
    if !nix_is_root() {
        return None;
    }
    match conf.lstat(Path::new("PG_VERSION")) {
        Ok(Some(e)) if e.kind == EntryKind::File => Some((e.uid, e.gid)),
        _ => None,
    }
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
    conf: &Confined,
    progress: &dyn Progress,
) -> Result<u64> {
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
        let r = super::untar::unpack(&mut archive, conf, is_root);
        // Drain so the feeder and readers stop.
        drop(archive);
        r
    })?;
    Ok(node.size)
}

/// Writes `recovery.signal` and the recovery settings into `postgresql.auto.conf`.
fn write_recovery_settings(
    conf: &Confined,
    snapshot: &(Id, Snapshot),
    o: &RestoreOptions,
    owner: Option<(u32, u32)>,
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
    let io = |rel: &Path, e: std::io::Error| Error::io(conf.display(rel), e);
    let auto = Path::new("postgresql.auto.conf");
    let existing = conf.read_file(auto).map_err(|e| io(auto, e))?;
    let mut text = String::from_utf8_lossy(&existing.unwrap_or_default()).into_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "# Recovery settings written by arca pg restore (base backup {})\n",
        snapshot.0
    ));
    for l in &settings {
        text.push_str(l);
        text.push('\n');
    }
    conf.write_file(auto, text.as_bytes(), 0o600)
        .map_err(|e| io(auto, e))?;
    // A base backup of a standby carries its standby.signal, which would keep the
    // restored cluster a standby (following primary_conninfo) instead of recovering to the
    // target and ending recovery.
    let standby_signal = Path::new("standby.signal");
    if let Some(e) = conf
        .lstat(standby_signal)
        .map_err(|e| io(standby_signal, e))?
    {
        conf.remove(standby_signal, e.kind)
            .map_err(|e| io(standby_signal, e))?;
    }
    let signal = Path::new("recovery.signal");
    conf.write_file(signal, b"", 0o600)
        .map_err(|e| io(signal, e))?;
    if let Some((uid, gid)) = owner {
        for f in [auto, signal] {
            let _ = conf.set_owner(f, uid, gid);
        }
    }
    Ok(settings)
}
