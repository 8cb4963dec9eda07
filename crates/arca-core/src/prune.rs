//! Prune: free the space of blobs no snapshot uses.
//!
//! First a [`PrunePlan`] is computed (which packs are deleted whole, which are repacked,
//! how many bytes are freed) — `--dry-run` prints it — then [`execute`] carries it out in
//! a crash-safe order: (1) used blobs of packs to repack are written to new packs,
//! (2) one new set of index files describing every kept pack is written, (3) the old
//! index files are deleted, (4) the packs that are no longer referenced are deleted.
//! A crash before (3) leaves the old index in force (new packs are then merely
//! unreferenced); after (3) only garbage is left. Packs that are fully used are never
//! read. The caller holds the exclusive lock, so no backup runs meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::{BlobEntry, IndexPack, NodeKind};
use crate::id::Id;
use crate::index::Index;
use crate::pack::open_blob;
use crate::repo::{Repository, pack_name};
use crate::saver::BlobSaver;

/// How much unused space may stay in partly used packs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum MaxUnused {
    Percent(f64),
    Bytes(u64),
    Unlimited,
}

impl std::str::FromStr for MaxUnused {
    type Err = crate::units::UnitError;

    /// `unlimited`, a percentage of the repository (`5%`, 0 to 100), or a size (`100M`, in
    /// the grammar of [`crate::units::parse_size`]).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let t = s.trim();
        if t == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => Ok(MaxUnused::Percent(v)),
                _ => Err(crate::units::UnitError {
                    what: "max-unused",
                    input: t.to_string(),
                    reason: "a percentage is 0% to 100%".into(),
                }),
            };
        }
        crate::units::parse_size(t)
            .map(MaxUnused::Bytes)
            .map_err(|_| crate::units::UnitError {
                what: "max-unused",
                input: t.to_string(),
                reason: "use a percentage (5%), a size (100M) or unlimited".into(),
            })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneOptions {
    pub max_unused: MaxUnused,
    /// Repack at most this many bytes of packs.
    pub max_repack_bytes: Option<u64>,
    /// Only repack tree packs (cheap to read back from object stores).
    pub repack_cacheable_only: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: MaxUnused::Percent(5.0),
            max_repack_bytes: None,
            repack_cacheable_only: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunePlan {
    pub snapshots: u64,
    pub blobs_used: u64,
    pub blobs_unused: u64,
    pub bytes_used: u64,
    pub bytes_unused: u64,
    /// Packs deleted because nothing in them is used.
    pub delete_packs: Vec<Id>,
    /// Packs present but in no index file (left by interrupted backups).
    pub delete_unindexed: Vec<Id>,
    /// Packs whose used blobs are copied to new packs, then deleted.
    pub repack_packs: Vec<Id>,
    pub bytes_freed: u64,
    pub bytes_repacked: u64,
    pub packs_kept: u64,
    pub index_files: u64,
    #[serde(skip)]
    keep: Vec<IndexPack>,
    #[serde(skip)]
    repack: Vec<IndexPack>,
    #[serde(skip)]
    old_index: Vec<Id>,
}

impl PrunePlan {
    pub fn is_noop(&self) -> bool {
        self.delete_packs.is_empty()
            && self.delete_unindexed.is_empty()
            && self.repack_packs.is_empty()
    }
}

/// Every blob reachable from a snapshot.
pub fn used_blobs(repo: &Repository, index: &Index, trees: &[Id]) -> Result<HashSet<Id>> {
    let mut used = HashSet::new();
    let mut stack: Vec<Id> = trees.to_vec();
    while let Some(t) = stack.pop() {
        if !used.insert(t) {
            continue;
        }
        let tree = repo.load_tree(index, &t)?;
        for n in tree.nodes {
            match n.kind {
                NodeKind::Dir => {
                    if let Some(s) = n.subtree {
                        stack.push(s);
                    }
                }
                NodeKind::File => used.extend(n.content),
                _ => {}
            }
        }
    }
    Ok(used)
}

/// Computes what prune would do.
pub fn plan(repo: &Repository, opts: &PruneOptions) -> Result<PrunePlan> {
    let mut p = PrunePlan::default();
    let old_index: Vec<Id> = repo
        .list_ids("index")?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let mut packs: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
    for id in &old_index {
        for pk in repo.load_index_file(id)?.packs {
            let e = packs.entry(pk.id).or_default();
            if e.is_empty() {
                *e = pk.blobs;
            }
        }
    }
    // Packs in name order, so a blob stored in several packs belongs (in the index and in
    // the counts below) to the first of them.
    let mut ids: Vec<Id> = packs.keys().copied().collect();
    ids.sort();
    let mut index = Index::new();
    index.reserve(packs.values().map(Vec::len).sum());
    for id in &ids {
        index.insert_pack(*id, &packs[id]);
    }
    let (snaps, bad) = repo.list_snapshots()?;
    if let Some(e) = bad.into_iter().next() {
        return Err(Error::Invalid(format!(
            "refusing to prune while a snapshot cannot be read ({e}); run `arca check`"
        )));
    }
    p.snapshots = snaps.len() as u64;
    let roots: Vec<Id> = snaps.iter().map(|(_, s)| s.tree).collect();
    let mut used = used_blobs(repo, &index, &roots)?;
    // Archived WAL files are roots too (their records list data blobs directly).
    used.extend(crate::wal::used_blobs(repo).map_err(|e| {
        Error::Invalid(format!(
            "refusing to prune while a WAL record cannot be read ({e}); run `arca check`"
        ))
    })?);
    let stored: HashMap<Id, u64> = repo.list_ids("data")?.into_iter().collect();
    for pack in stored.keys() {
        if !packs.contains_key(pack) {
            p.delete_unindexed.push(*pack);
            p.bytes_freed += stored[pack];
        }
    }
    // Memory: the blob lists move from `packs` into the plan (never copied), and the
    // index goes as soon as the counts are done.
    let mut partial: Vec<(IndexPack, u64, u64, bool)> = Vec::new();
    for pack in ids {
        let blobs = packs.remove(&pack).unwrap_or_default();
        let Some(&size) = stored.get(&pack) else {
            return Err(Error::Invalid(format!(
                "pack {} is in the index but missing; run `arca check` and `arca repair index` first",
                pack_name(&pack)
            )));
        };
        let (mut u, mut un) = (0u64, 0u64);
        for b in &blobs {
            // A blob stored twice counts as used only in the first pack that holds it.
            if used.contains(&b.id) && index.get(&b.id).is_some_and(|l| l.pack == pack) {
                u += b.length as u64;
                p.blobs_used += 1;
            } else {
                un += b.length as u64;
                p.blobs_unused += 1;
            }
        }
        p.bytes_used += u;
        p.bytes_unused += un;
        if u == 0 {
            p.delete_packs.push(pack);
            p.bytes_freed += size;
        } else if un > 0 {
            let tree = blobs
                .iter()
                .all(|b| b.kind == crate::format::BlobKind::Tree);
            partial.push((IndexPack { id: pack, blobs }, u, un, tree));
        } else {
            p.keep.push(IndexPack { id: pack, blobs });
        }
    }
    drop(index);
    // Repack the emptiest packs first until the unused space left is within the limit.
    partial.sort_by(|a, b| (b.2 * a.1).cmp(&(a.2 * b.1)));
    let total_unused: u64 = partial.iter().map(|x| x.2).sum();
    let allowed = match opts.max_unused {
        MaxUnused::Unlimited => u64::MAX,
        MaxUnused::Bytes(b) => b,
        MaxUnused::Percent(pc) => (p.bytes_used as f64 * pc / 100.0) as u64,
    };
    let mut unused_left = total_unused;
    for (pack, u, un, tree) in partial {
        let over_budget = opts
            .max_repack_bytes
            .is_some_and(|m| p.bytes_repacked + u + un > m);
        if unused_left > allowed && !over_budget && (tree || !opts.repack_cacheable_only) {
            unused_left -= un;
            p.repack_packs.push(pack.id);
            p.bytes_repacked += u + un;
            p.bytes_freed += un;
            p.repack.push(pack);
        } else {
            p.keep.push(pack);
        }
    }
    p.packs_kept = p.keep.len() as u64;
    p.index_files = old_index.len() as u64;
    p.old_index = old_index;
    // Keep only the used blobs' entries of repacked packs for the copy step.
    for rp in &mut p.repack {
        rp.blobs.retain(|b| used.contains(&b.id));
    }
    Ok(p)
}

/// Carries out a plan (see the module comment for the order of steps).
/// The plan stays with the caller (for its report); the kept packs stream into the new
/// index files without a second copy of the whole index.
pub fn execute(repo: &Arc<Repository>, plan: &PrunePlan) -> Result<()> {
    if plan.is_noop() {
        return Ok(());
    }
    // (1) Copy used blobs out of packs being repacked. The saver gets an index of the
    // kept packs only, so blobs that live elsewhere too are not copied twice.
    let mut keep_index = Index::new();
    for k in &plan.keep {
        keep_index.insert_pack(k.id, &k.blobs);
    }
    let saver = BlobSaver::new(repo.clone(), Arc::new(keep_index), 2);
    for rp in &plan.repack {
        let name = pack_name(&rp.id);
        let data = repo.storage().read(&name)?;
        for b in &rp.blobs {
            let end = b.offset as usize + b.length as usize;
            let sealed = data
                .get(b.offset as usize..end)
                .ok_or_else(|| Error::corrupt(&name, "blob past the end of the pack"))?;
            let plain = open_blob(repo.crypto(), b, sealed)
                .map_err(|e| Error::corrupt(format!("{name} (blob {})", b.id), e))?;
            saver.save(b.kind, b.id, plain)?;
        }
    }
    // The saver writes index files for its new packs; they are superseded below by the
    // full index, which includes them.
    let (new_packs, _) = saver.finish()?;
    let saver_index: HashSet<Id> = repo
        .list_ids("index")?
        .into_iter()
        .map(|(i, _)| i)
        .filter(|i| !plan.old_index.contains(i))
        .collect();
    // (2) The new index: every kept pack and every new pack.
    let all = plan.keep.iter().cloned().chain(new_packs);
    let mut supersedes = plan.old_index.clone();
    supersedes.extend(saver_index.iter().copied());
    repo.save_index_files(all, &supersedes)?;
    // (3) Old index files.
    for id in plan.old_index.iter().chain(saver_index.iter()) {
        repo.storage().delete(&format!("index/{id}"))?;
    }
    // (4) Packs nothing refers to any more.
    for id in plan
        .delete_packs
        .iter()
        .chain(&plan.repack_packs)
        .chain(&plan.delete_unindexed)
    {
        match repo.storage().delete(&pack_name(id)) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
