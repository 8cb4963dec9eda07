//! The blob index: where every blob lives (pack, offset, length).
//!
//! In memory an entry costs 48 bytes plus a 4-byte slot in a hash table (about 56 bytes per
//! blob): the entries sit in one vector and the table holds their positions, hashed by the
//! first bytes of the id (ids are uniformly random). On disk, `index/ID` objects are sealed,
//! zstd-compressed postcard encodings of [`IndexFile`] after a version byte.

use hashbrown::HashTable;

use crate::format::{BINARY_VERSION, BlobEntry, BlobKind, IndexFile};
use crate::id::Id;

const TREE_BIT: u32 = 1 << 31;

#[derive(Clone, Copy)]
struct Entry {
    id: Id,
    /// Index into `packs`, with the top bit set for tree blobs.
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// Where a blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub entry: BlobEntry,
}

/// All blobs of a repository, looked up by id.
#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_slots: hashbrown::HashMap<Id, u32>,
    entries: Vec<Entry>,
    table: HashTable<u32>,
}

fn hash_id(id: &Id) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b)
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Reserves room for `blobs` more entries.
    pub fn reserve(&mut self, blobs: usize) {
        self.entries.reserve_exact(blobs);
        let entries = &self.entries;
        self.table
            .reserve(blobs, |&i| hash_id(&entries[i as usize].id));
    }

    /// Adds every blob of a pack. A blob already known (in another pack) keeps its first
    /// location.
    pub fn insert_pack(&mut self, pack: Id, blobs: &[BlobEntry]) {
        let slot = match self.pack_slots.get(&pack) {
            Some(&s) => s,
            None => {
                let s = self.packs.len() as u32;
                self.packs.push(pack);
                self.pack_slots.insert(pack, s);
                s
            }
        };
        for b in blobs {
            let h = hash_id(&b.id);
            let entries = &self.entries;
            if self
                .table
                .find(h, |&i| entries[i as usize].id == b.id)
                .is_some()
            {
                continue;
            }
            let pos = self.entries.len() as u32;
            self.entries.push(Entry {
                id: b.id,
                pack: slot
                    | if b.kind == BlobKind::Tree {
                        TREE_BIT
                    } else {
                        0
                    },
                offset: b.offset,
                length: b.length,
                raw_length: b.raw_length,
            });
            let entries = &self.entries;
            self.table
                .insert_unique(h, pos, |&i| hash_id(&entries[i as usize].id));
        }
    }

    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        let i = *self
            .table
            .find(hash_id(id), |&i| self.entries[i as usize].id == *id)?;
        let e = &self.entries[i as usize];
        Some(BlobLocation {
            pack: self.packs[(e.pack & !TREE_BIT) as usize],
            entry: BlobEntry {
                kind: if e.pack & TREE_BIT != 0 {
                    BlobKind::Tree
                } else {
                    BlobKind::Data
                },
                id: e.id,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            },
        })
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.table
            .find(hash_id(id), |&i| self.entries[i as usize].id == *id)
            .is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn has_pack(&self, pack: &Id) -> bool {
        self.pack_slots.contains_key(pack)
    }

    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    /// Every blob with its location.
    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        self.entries.iter().filter_map(|e| self.get(&e.id))
    }

    /// Approximate heap bytes used.
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.packs.capacity() * 32
            + self.pack_slots.capacity() * 40
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index file is malformed: {0}")]
    Malformed(String),
    #[error("index file has unknown version {0}")]
    Version(u8),
}

/// Upper bound of a decoded index file (bounds decompression of untrusted data).
const MAX_INDEX_PLAIN: u64 = 1 << 30;

/// Encodes an index file (before sealing).
pub fn encode_index(file: &IndexFile) -> Vec<u8> {
    let body = postcard::to_stdvec(file).unwrap_or_default();
    let mut out = vec![BINARY_VERSION];
    out.extend(zstd::bulk::compress(&body, 1).unwrap_or_default());
    out
}

/// Decodes an index file (after opening its seal).
pub fn decode_index(data: &[u8]) -> Result<IndexFile, IndexError> {
    use std::io::Read;
    let (&v, rest) = data
        .split_first()
        .ok_or_else(|| IndexError::Malformed("empty".into()))?;
    if v != BINARY_VERSION {
        return Err(IndexError::Version(v));
    }
    // Index entries are mostly random ids and barely compress: a body expanding more
    // than 16-fold is a decompression bomb.
    let limit = MAX_INDEX_PLAIN.min((rest.len() as u64).saturating_mul(16) + 4096);
    let mut body = Vec::new();
    zstd::stream::read::Decoder::new(rest)
        .map_err(|e| IndexError::Malformed(e.to_string()))?
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| IndexError::Malformed(e.to_string()))?;
    if body.len() as u64 > limit {
        return Err(IndexError::Malformed(
            "decompresses to more than 16 times its size".into(),
        ));
    }
    postcard::from_bytes(&body).map_err(|e| IndexError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::IndexPack;
    use proptest::prelude::*;

    fn entry(n: u32, kind: BlobKind) -> BlobEntry {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_le_bytes());
        id[31] = 7;
        BlobEntry {
            kind,
            id: Id(id),
            offset: n * 10,
            length: 100 + n,
            raw_length: n,
        }
    }

    #[test]
    fn lookup_after_insert() {
        let mut ix = Index::new();
        let p1 = Id([1; 32]);
        let p2 = Id([2; 32]);
        ix.insert_pack(p1, &[entry(1, BlobKind::Data), entry(2, BlobKind::Tree)]);
        ix.insert_pack(p2, &[entry(2, BlobKind::Tree), entry(3, BlobKind::Data)]);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.get(&entry(2, BlobKind::Tree).id).unwrap().pack, p1);
        assert_eq!(
            ix.get(&entry(2, BlobKind::Tree).id).unwrap().entry,
            entry(2, BlobKind::Tree)
        );
        assert_eq!(ix.get(&entry(3, BlobKind::Data).id).unwrap().pack, p2);
        assert!(ix.get(&entry(4, BlobKind::Data).id).is_none());
        assert!(ix.memory_bytes() > 0);
    }

    /// Found by the index fuzz target: a tiny object decompressing to a gigabyte.
    #[test]
    fn decompression_bomb_is_refused() {
        let mut data = vec![BINARY_VERSION];
        data.extend(zstd::bulk::compress(&vec![0u8; 8 << 20], 19).unwrap());
        assert!(data.len() < 4096);
        assert!(matches!(decode_index(&data), Err(IndexError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn index_file_round_trip(n in 0u32..200, sup in 0usize..3) {
            let f = IndexFile {
                packs: vec![IndexPack { id: Id([9; 32]), blobs: (0..n).map(|i| entry(i, BlobKind::Data)).collect() }],
                supersedes: vec![Id([3; 32]); sup],
            };
            prop_assert_eq!(decode_index(&encode_index(&f)).unwrap(), f);
        }

        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_index(&data);
        }
    }
}
