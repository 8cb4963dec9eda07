//! Copy snapshots from one repository to another (the 3-2-1 rule).
//!
//! When both repositories share the blob-id secret (the destination was created with
//! `init --copy-chunker-params`), ids are equal in both: only blobs the destination lacks
//! are read and sent. Otherwise every blob is read, re-identified with the destination's
//! key, and trees are re-encoded. Copied snapshots record the source snapshot in
//! `original`, and a snapshot already copied is skipped.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{BlobKind, NodeKind, Snapshot, Tree};
use crate::id::Id;
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::{Repository, encode_tree};
use crate::saver::BlobSaver;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopySummary {
    pub copied: Vec<(Id, Id)>,
    pub skipped: Vec<Id>,
    pub blobs_added: u64,
    pub bytes_added: u64,
}

/// The id a source snapshot is known by across copies.
pub fn origin(id: &Id, s: &Snapshot) -> Id {
    s.original.unwrap_or(*id)
}

struct Copier<'a> {
    src: &'a Repository,
    src_index: &'a Index,
    dst: &'a Repository,
    saver: &'a BlobSaver,
    same_ids: bool,
    trees: HashMap<Id, Id>,
    blobs: HashMap<Id, Id>,
    progress: &'a dyn Progress,
}

impl Copier<'_> {
    fn data_blob(&mut self, id: &Id) -> Result<Id> {
        if self.same_ids {
            if !self.saver.is_known(id) {
                let plain = self.src.read_blob(self.src_index, id)?;
                self.progress.add_bytes(plain.len() as u64);
                self.saver.save(BlobKind::Data, *id, plain)?;
            }
            return Ok(*id);
        }
        if let Some(d) = self.blobs.get(id) {
            return Ok(*d);
        }
        let plain = self.src.read_blob(self.src_index, id)?;
        self.progress.add_bytes(plain.len() as u64);
        let new = self.dst.crypto().blob_id(&plain);
        self.saver.save(BlobKind::Data, new, plain)?;
        self.blobs.insert(*id, new);
        Ok(new)
    }

    fn tree(&mut self, id: &Id) -> Result<Id> {
        if let Some(d) = self.trees.get(id) {
            return Ok(*d);
        }
        if self.progress.should_stop() {
            return Err(Error::Interrupted);
        }
        let tree = self.src.load_tree(self.src_index, id)?;
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for mut n in tree.nodes {
            match n.kind {
                NodeKind::Dir => {
                    if let Some(s) = n.subtree {
                        n.subtree = Some(self.tree(&s)?);
                    }
                }
                NodeKind::File => {
                    let mut content = Vec::with_capacity(n.content.len());
                    for b in &n.content {
                        content.push(self.data_blob(b)?);
                    }
                    n.content = content;
                }
                _ => {}
            }
            nodes.push(n);
        }
        let bytes = encode_tree(&Tree { nodes });
        let new = self.dst.crypto().blob_id(&bytes);
        self.saver.save(BlobKind::Tree, new, bytes)?;
        self.trees.insert(*id, new);
        Ok(new)
    }
}

/// Copies `snapshots` (ids in `src`) into `dst`, skipping those already there.
pub fn copy_snapshots(
    src: &Repository,
    dst: &Arc<Repository>,
    snapshots: &[(Id, Snapshot)],
    progress: &dyn Progress,
) -> Result<CopySummary> {
    let src_index = src.load_index()?;
    let mut dst_index = dst.load_index()?;
    dst.adopt_unindexed_packs(&mut dst_index)?;
    let (existing, _) = dst.list_snapshots()?;
    let have: std::collections::HashSet<Id> =
        existing.iter().map(|(id, s)| origin(id, s)).collect();
    let same_ids = src.crypto().master_key().id_key() == dst.crypto().master_key().id_key();
    let saver = BlobSaver::new(dst.clone(), Arc::new(dst_index), 2);
    let mut summary = CopySummary::default();
    let mut pending = Vec::new();
    {
        let mut c = Copier {
            src,
            src_index: &src_index,
            dst,
            saver: &saver,
            same_ids,
            trees: HashMap::new(),
            blobs: HashMap::new(),
            progress,
        };
        for (id, s) in snapshots {
            if have.contains(&origin(id, s)) {
                summary.skipped.push(*id);
                continue;
            }
            let tree = c.tree(&s.tree)?;
            let mut copy = s.clone();
            copy.tree = tree;
            copy.original = Some(origin(id, s));
            copy.parent = None;
            pending.push((*id, copy));
            progress.add_files(1);
        }
    }
    let (_, totals) = saver.finish()?;
    // Snapshots only after every blob they need is stored and indexed.
    for (id, snap) in pending {
        let new = dst.save_snapshot(&snap)?;
        summary.copied.push((id, new));
    }
    summary.blobs_added = totals.blobs_added;
    summary.bytes_added = totals.bytes_added;
    Ok(summary)
}
