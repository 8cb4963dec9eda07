//! Integrity check: structure (config, keys, index, packs, snapshots, trees) and, on
//! request, every byte of the data (read, hash, decrypt, decompress, rehash).
//!
//! Damage is reported per object and traced to the snapshots and paths it affects.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::format::{BlobEntry, NodeKind};
use crate::id::Id;
use crate::index::Index;
use crate::pack::{open_blob, parse_header_from_tail};
use crate::progress::Progress;
use crate::repo::{Repository, decode_tree, pack_name};

/// Which packs to read in full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// Part `n` of `m` (1-based).
    Subset(u32, u32),
    /// A random share of the packs, in percent.
    Percent(f64),
}

/// A `--read-data-subset` that is neither `n/m` (1 <= n <= m) nor a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid data subset {input:?}: {reason}")]
pub struct ReadDataError {
    pub input: String,
    pub reason: &'static str,
}

impl std::str::FromStr for ReadData {
    type Err = ReadDataError;

    /// `n/m` (part n of m, 1-based) or `P%` (a random share of the packs, 0 to 100).
    fn from_str(s: &str) -> std::result::Result<ReadData, ReadDataError> {
        let t = s.trim();
        let err = |reason| ReadDataError {
            input: t.to_string(),
            reason,
        };
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(ReadData::Percent(p)),
                _ => Err(err("a percentage is 0% to 100%")),
            };
        }
        let (n, m) = t.split_once('/').ok_or_else(|| err("use n/m or P%"))?;
        match (n.trim().parse::<u32>(), m.trim().parse::<u32>()) {
            (Ok(n), Ok(m)) if n >= 1 && n <= m => Ok(ReadData::Subset(n, m)),
            _ => Err(err("n/m needs whole numbers with 1 <= n <= m")),
        }
    }
}

/// One damaged object and what it affects.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub object: String,
    pub message: String,
    /// Snapshots and paths that cannot be restored because of it.
    pub affects: Vec<Affected>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Affected {
    pub snapshot: Id,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
    pub snapshots: u64,
    pub trees: u64,
    pub index_files: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub blobs_read: u64,
    pub bytes_read: u64,
    /// Archived WAL records checked (see [`crate::wal`]).
    pub wal_records: u64,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn subset_selected(id: &Id, rd: ReadData) -> bool {
    match rd {
        ReadData::None => false,
        ReadData::All => true,
        ReadData::Subset(n, m) => {
            let v = u32::from_le_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
            m > 0 && v % m == (n.max(1) - 1) % m
        }
        ReadData::Percent(p) => {
            let mut b = [0u8; 4];
            crate::crypto::fill_random(&mut b);
            (u32::from_le_bytes(b) as f64 / u32::MAX as f64) * 100.0 < p
        }
    }
}

/// Runs the check.
pub fn check(
    repo: &Repository,
    read_data: ReadData,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    // Damaged blobs: id -> reason, and damaged objects that are not blobs.
    let mut bad_blobs: HashMap<Id, String> = HashMap::new();

    check_keys_and_locks(repo, &mut report)?;
    // Snapshots are listed before the index: a backup writes its index before its snapshot,
    // so every snapshot listed here has its blobs in the index files listed next, even while
    // backups run beside this check (a later snapshot would not be, and is not looked at).
    let snaps = repo.list_ids("snapshots")?;
    let (index, pack_blobs) = load_index_files(repo, &mut report)?;
    let (stored, missing_packs) = compare_packs(repo, &pack_blobs, &mut bad_blobs, &mut report)?;
    if read_data != ReadData::None {
        let packs = PackSet {
            stored: &stored,
            blobs: &pack_blobs,
        };
        read_packs(
            repo,
            packs,
            read_data,
            progress,
            &mut bad_blobs,
            &mut report,
        );
    }
    let (affected, object_of) = check_snapshots(repo, &index, snaps, &bad_blobs, &mut report);
    let blob_problems = group_problems(&index, affected, object_of, &missing_packs);
    for p in missing_packs {
        let name = pack_name(&p);
        if !blob_problems.iter().any(|b| b.object == name) {
            report.problems.push(Problem {
                object: name,
                message: "pack is in the index but missing from the repository".into(),
                affects: vec![],
            });
        }
    }
    report.problems.extend(blob_problems);
    check_wal_records(repo, &index, &bad_blobs, &mut report)?;
    Ok(report)
}

/// The packs in storage (id, size) and the blobs the index puts in each.
#[derive(Clone, Copy)]
struct PackSet<'a> {
    stored: &'a HashMap<Id, u64>,
    blobs: &'a HashMap<Id, Vec<BlobEntry>>,
}

/// Key files must parse; a damaged lock is only worth a warning.
fn check_keys_and_locks(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    // Keys.
    for (id, _) in repo.list_ids("keys")? {
        let name = format!("keys/{id}");
        match repo.storage().read(&name) {
            Ok(raw) => {
                if let Err(e) = serde_json::from_slice::<crate::format::KeyFile>(&raw) {
                    report.problems.push(Problem {
                        object: name,
                        message: format!("key file is malformed: {e}"),
                        affects: vec![],
                    });
                }
            }
            Err(e) => report.problems.push(Problem {
                object: name,
                message: e.to_string(),
                affects: vec![],
            }),
        }
    }

    // Locks: a damaged one protects nothing (it counts as stale) but is worth a word.
    for (id, lock) in crate::lock::list_locks(repo)? {
        if lock.is_none() {
            report.warnings.push(format!(
                "lock locks/{id} cannot be read (damaged?): it is treated as stale; `unlock` removes it"
            ));
        }
    }
    Ok(())
}

/// The index and, per pack, the blobs the index files put in it.
type LoadedIndex = (Index, HashMap<Id, Vec<BlobEntry>>);

/// Every index file, merged; an unreadable one is a problem.
fn load_index_files(repo: &Repository, report: &mut CheckReport) -> Result<LoadedIndex> {
    let mut index = Index::new();
    let mut pack_blobs: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
    for (id, _) in repo.list_ids("index")? {
        report.index_files += 1;
        match repo.load_index_file(&id) {
            Ok(f) => {
                for p in f.packs {
                    index.insert_pack(p.id, &p.blobs);
                    pack_blobs.entry(p.id).or_default().extend(p.blobs);
                }
            }
            Err(e) => report.problems.push(Problem {
                object: format!("index/{id}"),
                message: e.to_string(),
                affects: vec![],
            }),
        }
    }
    Ok((index, pack_blobs))
}

/// The packs in storage against those the index names: a missing one damages its blobs,
/// an unindexed one is a warning. Returns the stored packs and the missing ones.
fn compare_packs(
    repo: &Repository,
    pack_blobs: &HashMap<Id, Vec<BlobEntry>>,
    bad_blobs: &mut HashMap<Id, String>,
    report: &mut CheckReport,
) -> Result<(HashMap<Id, u64>, Vec<Id>)> {
    let stored: HashMap<Id, u64> = repo.list_ids("data")?.into_iter().collect();
    report.packs = stored.len() as u64;
    let mut missing_packs = Vec::new();
    for (pack, blobs) in pack_blobs {
        if !stored.contains_key(pack) {
            missing_packs.push(*pack);
            for b in blobs {
                bad_blobs.insert(b.id, format!("its pack {} is missing", pack_name(pack)));
            }
        }
    }
    let mut unindexed: Vec<&Id> = stored
        .keys()
        .filter(|p| !pack_blobs.contains_key(p))
        .collect();
    unindexed.sort();
    for p in unindexed {
        report.warnings.push(format!(
            "pack {} is not in the index (left by an interrupted backup?); `repair index` adopts it, `prune` removes it",
            pack_name(p)
        ));
    }
    Ok((stored, missing_packs))
}

/// Reads the selected packs in full (in parallel): damaged blobs and packs are recorded.
fn read_packs(
    repo: &Repository,
    packs: PackSet<'_>,
    read_data: ReadData,
    progress: &dyn Progress,
    bad_blobs: &mut HashMap<Id, String>,
    report: &mut CheckReport,
) {
    let selected: Vec<(Id, u64)> = packs
        .stored
        .iter()
        .filter(|(id, _)| packs.blobs.contains_key(id) && subset_selected(id, read_data))
        .map(|(id, s)| (*id, *s))
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results = crate::parallel::map(selected, threads, |(id, size)| {
        let r = read_pack(repo, &id, size, packs.blobs.get(&id).map_or(&[][..], |v| v));
        progress.add_bytes(size);
        progress.add_files(1);
        (id, size, r)
    });
    for (id, size, r) in results {
        report.packs_read += 1;
        report.bytes_read += size;
        match r {
            Ok(PackCheck { blobs, bad, damage }) => {
                report.blobs_read += blobs;
                for (blob, reason) in bad {
                    bad_blobs.insert(blob, reason);
                }
                if let Some(message) = damage {
                    report.problems.push(Problem {
                        object: pack_name(&id),
                        message,
                        affects: vec![],
                    });
                }
            }
            Err(reason) => {
                for b in packs.blobs.get(&id).into_iter().flatten() {
                    bad_blobs.insert(b.id, reason.clone());
                }
                report.problems.push(Problem {
                    object: pack_name(&id),
                    message: reason,
                    affects: vec![],
                });
            }
        }
    }
}

/// Per damaged blob, the snapshots and paths it affects, and why it is damaged.
type Damage = (HashMap<Id, Vec<Affected>>, HashMap<Id, String>);

/// Walks every snapshot's trees; an unreadable snapshot is a problem.
fn check_snapshots(
    repo: &Repository,
    index: &Index,
    snaps: Vec<(Id, u64)>,
    bad_blobs: &HashMap<Id, String>,
    report: &mut CheckReport,
) -> Damage {
    let mut memo: HashMap<Id, Vec<(PathBuf, Id, String)>> = HashMap::new();
    let mut affected: HashMap<Id, Vec<Affected>> = HashMap::new();
    let mut object_of: HashMap<Id, String> = HashMap::new();
    for (sid, _) in snaps {
        report.snapshots += 1;
        let snap = match repo.load_snapshot(&sid) {
            Ok(s) => s,
            // Forgotten since it was listed (forget runs beside checks).
            Err(crate::Error::Storage(e)) if e.is_not_found() => {
                report.snapshots -= 1;
                continue;
            }
            Err(e) => {
                report.problems.push(Problem {
                    object: format!("snapshots/{sid}"),
                    message: e.to_string(),
                    affects: vec![],
                });
                continue;
            }
        };
        let damage = walk_tree(
            repo,
            index,
            &snap.tree,
            bad_blobs,
            &mut memo,
            &mut report.trees,
        );
        let mut per_blob: HashMap<Id, Vec<String>> = HashMap::new();
        for (path, blob, reason) in damage {
            per_blob
                .entry(blob)
                .or_default()
                .push(Path::new("/").join(&path).to_string_lossy().into_owned());
            object_of.entry(blob).or_insert(reason);
        }
        for (blob, paths) in per_blob {
            affected.entry(blob).or_default().push(Affected {
                snapshot: sid,
                paths,
            });
        }
    }
    (affected, object_of)
}

/// One problem per damaged object (a pack, or a blob without a pack), with every snapshot
/// path it affects.
fn group_problems(
    index: &Index,
    affected: HashMap<Id, Vec<Affected>>,
    mut object_of: HashMap<Id, String>,
    missing_packs: &[Id],
) -> Vec<Problem> {
    let mut grouped: std::collections::BTreeMap<(String, String), HashMap<Id, Vec<String>>> =
        Default::default();
    for (blob, affects) in affected {
        let reason = object_of.remove(&blob).unwrap_or_default();
        let object = index
            .get(&blob)
            .map(|l| pack_name(&l.pack))
            .unwrap_or_else(|| format!("blob {blob}"));
        let reason = if missing_packs.iter().any(|p| pack_name(p) == object) {
            "pack is in the index but missing from the repository".to_string()
        } else if object.starts_with("data/") {
            format!("blob {blob}: {reason}")
        } else {
            reason
        };
        let g = grouped.entry((object, reason)).or_default();
        for a in affects {
            g.entry(a.snapshot).or_default().extend(a.paths);
        }
    }
    let mut blob_problems = Vec::new();
    for ((object, message), per_snap) in grouped {
        let mut affects: Vec<Affected> = per_snap
            .into_iter()
            .map(|(snapshot, mut paths)| {
                paths.sort();
                paths.dedup();
                Affected { snapshot, paths }
            })
            .collect();
        affects.sort_by_key(|a| a.snapshot);
        blob_problems.push(Problem {
            object,
            message,
            affects,
        });
    }
    blob_problems
}

/// WAL records are roots like snapshots: each must open, and its blobs must be indexed
/// and undamaged. A problem names the record (`wal/NAME`).
fn check_wal_records(
    repo: &Repository,
    index: &Index,
    bad_blobs: &HashMap<Id, String>,
    report: &mut CheckReport,
) -> Result<()> {
    let names = crate::wal::list(repo)?;
    let loaded = crate::parallel::map(names, 8, |n| {
        let r = crate::wal::load(repo, &n);
        (n, r)
    });
    for (name, r) in loaded {
        report.wal_records += 1;
        let object = crate::wal::object_name(&name);
        let record = match r {
            Ok(Some(rec)) => rec,
            Ok(None) => continue,
            Err(e) => {
                report.problems.push(Problem {
                    object,
                    message: format!("WAL record {name} cannot be read: {e}"),
                    affects: vec![],
                });
                continue;
            }
        };
        let damaged: Vec<String> = record
            .blobs
            .iter()
            .filter_map(|b| match bad_blobs.get(b) {
                Some(reason) => Some(format!("blob {b}: {reason}")),
                None if !index.contains(b) => Some(format!("blob {b} is not in the index")),
                None => None,
            })
            .collect();
        if !damaged.is_empty() {
            report.problems.push(Problem {
                object,
                message: format!("WAL file {name} cannot be restored: {}", damaged.join("; ")),
                affects: vec![],
            });
        }
    }
    Ok(())
}

struct PackCheck {
    blobs: u64,
    bad: Vec<(Id, String)>,
    /// Damage to the pack as a whole (its hash, its header); its blobs are still verified
    /// one by one, so only the files whose blobs are damaged are reported as affected.
    damage: Option<String>,
}

fn read_pack(
    repo: &Repository,
    id: &Id,
    size: u64,
    indexed: &[BlobEntry],
) -> std::result::Result<PackCheck, String> {
    let name = pack_name(id);
    let data = repo.storage().read(&name).map_err(|e| e.to_string())?;
    let mut damage = Vec::new();
    if Id::of_object(&data) != *id {
        damage.push(format!(
            "pack content does not match its name (hash mismatch, {size} bytes)"
        ));
    }
    let mut out = PackCheck {
        blobs: 0,
        bad: Vec::new(),
        damage: None,
    };
    // The blobs to verify: the header's (checked against the index) when it can be read,
    // else the index's.
    let entries = match parse_header_from_tail(repo.crypto(), data.len() as u64, &data) {
        Ok(header) => {
            let in_header: HashSet<(Id, u32)> = header.iter().map(|e| (e.id, e.offset)).collect();
            for e in indexed {
                if !in_header.contains(&(e.id, e.offset)) {
                    out.bad.push((
                        e.id,
                        format!("index entry not found in the header of {name}"),
                    ));
                }
            }
            header
        }
        Err(e) => {
            damage.push(format!("pack header: {e}"));
            indexed.to_vec()
        }
    };
    for e in &entries {
        out.blobs += 1;
        let start = e.offset as usize;
        let Some(s) = start
            .checked_add(e.length as usize)
            .and_then(|end| data.get(start..end))
        else {
            out.bad.push((
                e.id,
                format!("blob lies past the end of {name} ({} bytes)", data.len()),
            ));
            continue;
        };
        if let Err(err) = open_blob(repo.crypto(), e, s) {
            out.bad.push((e.id, err.to_string()));
        }
    }
    if !damage.is_empty() {
        out.damage = Some(damage.join("; "));
    }
    Ok(out)
}

/// Damaged entries under a tree: (path relative to the tree, blob, reason). Memoized.
fn walk_tree(
    repo: &Repository,
    index: &Index,
    tree_id: &Id,
    bad: &HashMap<Id, String>,
    memo: &mut HashMap<Id, Vec<(PathBuf, Id, String)>>,
    trees: &mut u64,
) -> Vec<(PathBuf, Id, String)> {
    if let Some(m) = memo.get(tree_id) {
        return m.clone();
    }
    *trees += 1;
    let mut out = Vec::new();
    let tree = match bad.get(tree_id) {
        Some(reason) => Err(reason.clone()),
        None => match index.get(tree_id) {
            None => Err("tree blob is not in the index".to_string()),
            Some(_) => repo
                .read_blob(index, tree_id)
                .map_err(|e| e.to_string())
                .and_then(|d| decode_tree(&d).map_err(|e| e.to_string())),
        },
    };
    match tree {
        Err(reason) => out.push((PathBuf::new(), *tree_id, reason)),
        Ok(tree) => {
            for node in &tree.nodes {
                let name = PathBuf::from(std::ffi::OsStr::from_bytes(&node.name));
                match node.kind {
                    NodeKind::Dir => {
                        if let Some(sub) = &node.subtree {
                            for (p, b, r) in walk_tree(repo, index, sub, bad, memo, trees) {
                                out.push((name.join(p), b, r));
                            }
                        }
                    }
                    NodeKind::File => {
                        for b in &node.content {
                            let reason = match bad.get(b) {
                                Some(r) => Some(r.clone()),
                                None if !index.contains(b) => {
                                    Some("blob is not in the index".into())
                                }
                                None => None,
                            };
                            if let Some(r) = reason {
                                out.push((name.clone(), *b, r));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    memo.insert(*tree_id, out.clone());
    out
}

/// Rebuilds the index from pack headers: every pack in the repository is read (header only)
/// and one new index file replaces all existing ones. Returns (packs indexed, packs unreadable).
pub fn repair_index(repo: &Repository) -> Result<(usize, Vec<(Id, String)>)> {
    let stored = repo.list_ids("data")?;
    let old: Vec<Id> = repo
        .list_ids("index")?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let results = crate::parallel::map(stored, 8, |(id, size)| {
        (id, repo.read_pack_header(&id, Some(size)))
    });
    let mut packs = Vec::new();
    let mut bad = Vec::new();
    for (id, r) in results {
        match r {
            Ok(blobs) => packs.push(crate::format::IndexPack { id, blobs }),
            Err(e) => bad.push((id, e.to_string())),
        }
    }
    let n = packs.len();
    repo.save_index_files(packs, &old)?;
    // Only after the new index is durable are the old files removed.
    for id in old {
        let _ = repo.storage().delete(&format!("index/{id}"));
    }
    Ok((n, bad))
}

/// What `repair snapshots` did to one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct RepairedSnapshot {
    pub snapshot: Id,
    /// The new snapshot (None in a dry run).
    pub new_snapshot: Option<Id>,
    /// Paths left out because their data is missing or damaged.
    pub removed: Vec<String>,
}

struct Repairer<'a> {
    repo: &'a Repository,
    index: &'a Index,
    saver: Option<&'a crate::saver::BlobSaver>,
    read_data: bool,
    stored: HashSet<Id>,
    blob_ok: HashMap<Id, bool>,
    memo: HashMap<Id, (Id, Vec<PathBuf>)>,
}

impl Repairer<'_> {
    fn blob_ok(&mut self, id: &Id) -> bool {
        if let Some(ok) = self.blob_ok.get(id) {
            return *ok;
        }
        let ok = self
            .index
            .get(id)
            .is_some_and(|l| self.stored.contains(&l.pack))
            && (!self.read_data || self.repo.read_blob(self.index, id).is_ok());
        self.blob_ok.insert(*id, ok);
        ok
    }

    /// Returns the repaired tree's id and the paths (relative) that were left out.
    fn tree(&mut self, id: &Id) -> Result<(Id, Vec<PathBuf>)> {
        if let Some(m) = self.memo.get(id) {
            return Ok(m.clone());
        }
        let mut removed = Vec::new();
        let tree = match self.repo.load_tree(self.index, id) {
            Ok(t) => t,
            Err(_) => {
                removed.push(PathBuf::new());
                crate::format::Tree::default()
            }
        };
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut changed = !removed.is_empty();
        for mut n in tree.nodes {
            let name = PathBuf::from(std::ffi::OsStr::from_bytes(&n.name));
            match n.kind {
                NodeKind::Dir => {
                    if let Some(sub) = n.subtree {
                        let (new, rem) = self.tree(&sub)?;
                        if new != sub {
                            changed = true;
                            n.subtree = Some(new);
                        }
                        removed.extend(rem.into_iter().map(|p| name.join(p)));
                    }
                }
                NodeKind::File => {
                    let content = n.content.clone();
                    if !content.iter().all(|b| self.blob_ok(b)) {
                        removed.push(name);
                        changed = true;
                        continue;
                    }
                }
                _ => {}
            }
            nodes.push(n);
        }
        let new_id = if changed {
            let bytes = crate::repo::encode_tree(&crate::format::Tree { nodes });
            let nid = self.repo.crypto().blob_id(&bytes);
            if let Some(s) = self.saver {
                s.save(crate::format::BlobKind::Tree, nid, bytes)?;
            }
            nid
        } else {
            *id
        };
        self.memo.insert(*id, (new_id, removed.clone()));
        Ok((new_id, removed))
    }
}

/// Writes new snapshots that leave out files whose data is missing (or, with `read_data`,
/// damaged), marked as repaired; with `forget`, removes the damaged originals.
pub fn repair_snapshots(
    repo: &std::sync::Arc<Repository>,
    read_data: bool,
    forget: bool,
    dry_run: bool,
) -> Result<Vec<RepairedSnapshot>> {
    let index = std::sync::Arc::new(repo.load_index()?);
    let saver = if dry_run {
        None
    } else {
        Some(crate::saver::BlobSaver::new(repo.clone(), index.clone(), 2))
    };
    let (snaps, _) = repo.list_snapshots()?;
    let mut planned = Vec::new();
    {
        let mut r = Repairer {
            repo,
            index: &index,
            saver: saver.as_ref(),
            read_data,
            stored: repo.list_ids("data")?.into_iter().map(|(i, _)| i).collect(),
            blob_ok: HashMap::new(),
            memo: HashMap::new(),
        };
        for (id, snap) in snaps {
            let (new_tree, removed) = r.tree(&snap.tree)?;
            if new_tree == snap.tree {
                continue;
            }
            planned.push((id, snap, new_tree, removed));
        }
    }
    if let Some(s) = saver {
        s.finish()?;
    }
    let mut out = Vec::new();
    for (id, mut snap, new_tree, removed) in planned {
        let removed: Vec<String> = removed
            .iter()
            .map(|p| Path::new("/").join(p).to_string_lossy().into_owned())
            .collect();
        let new_snapshot = if dry_run {
            None
        } else {
            snap.tree = new_tree;
            snap.repaired_from = Some(id);
            if !snap.tags.iter().any(|t| t == "repaired") {
                snap.tags.push("repaired".into());
            }
            for p in &removed {
                snap.errors.push(crate::format::EntryError {
                    path: p.clone(),
                    reason: "left out by `repair snapshots`: data missing or damaged".into(),
                });
            }
            let new = repo.save_snapshot(&snap)?;
            if forget {
                repo.storage().delete(&format!("snapshots/{id}"))?;
            }
            Some(new)
        };
        out.push(RepairedSnapshot {
            snapshot: id,
            new_snapshot,
            removed,
        });
    }
    Ok(out)
}
