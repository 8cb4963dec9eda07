//! Property tests of the whole store path: any byte stream, chunked, deduplicated,
//! compressed, sealed, packed and indexed, reads back identically from a fresh open.

use std::io::Read;
use std::sync::Arc;

use arca_core::Repository;
use arca_core::backup::{BackupOptions, backup_stream};
use arca_core::format::ChunkerParams;
use arca_core::progress::NoProgress;
use arca_core::repo::InitOptions;
use arca_core::restore::find_path;
use arca_core::walk::ContentReader;
use arca_storage::LocalStorage;
use proptest::prelude::*;

fn small_repo(dir: &std::path::Path, level: i32) -> Arc<Repository> {
    let storage = Arc::new(LocalStorage::new(dir.join("repo")));
    let opts = InitOptions {
        chunker: ChunkerParams {
            min_size: 256,
            avg_size: 1024,
            max_size: 4096,
        },
        compression_level: level,
        pack_size: 16 * 1024,
        kdf: Some(arca_core::crypto::test_kdf_params()),
        shared_from: None,
        append_only: false,
    };
    Arc::new(Repository::init(storage, b"pw", opts).unwrap())
}

fn store_and_read(repo: &Arc<Repository>, data: &[u8], name: &str) -> Vec<u8> {
    let index = Arc::new(repo.load_index().unwrap());
    let r = backup_stream(
        repo,
        index,
        data,
        name,
        "stdin",
        &BackupOptions::default(),
        &NoProgress,
        || Ok(Default::default()),
    )
    .unwrap();
    let id = r.snapshot_id.unwrap();
    // Read back through a freshly opened repository: nothing may come from memory.
    let reopened = Repository::open(repo.storage().clone(), b"pw").unwrap();
    let index = reopened.load_index().unwrap();
    let snap = reopened.load_snapshot(&id).unwrap();
    let node = find_path(&reopened, &index, &snap.tree, std::path::Path::new(name)).unwrap();
    let mut out = Vec::new();
    ContentReader::new(&reopened, &index, &node)
        .read_to_end(&mut out)
        .unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_stream_reads_back(
        parts in proptest::collection::vec((any::<u8>(), 0usize..3000, any::<bool>()), 0..12),
        level in 0i32..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let repo = small_repo(dir.path(), level);
        // Mix of compressible runs and noisy bytes, so both blob encodings are exercised.
        let mut data = Vec::new();
        let mut x = 0x9e37_79b9u32;
        for (b, n, noisy) in parts {
            for _ in 0..n {
                x ^= x << 13; x ^= x >> 17; x ^= x << 5;
                data.push(if noisy { x as u8 } else { b });
            }
        }
        prop_assert_eq!(store_and_read(&repo, &data, "stream.bin"), data.clone());
        // The same stream again adds no data blobs (deduplication).
        let before = repo.list_ids("data").unwrap().len();
        prop_assert_eq!(store_and_read(&repo, &data, "again.bin"), data);
        let after = repo.list_ids("data").unwrap().len();
        prop_assert!(after <= before + 1, "only a tree pack may be added ({before} -> {after})");
    }
}

#[test]
fn wrong_password_and_newer_format_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = small_repo(dir.path(), 3);
    let storage = repo.storage().clone();
    let err = Repository::open(storage.clone(), b"nope").unwrap_err();
    assert_eq!(err.kind(), arca_core::ErrorKind::WrongPassword);
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&storage.read("config").unwrap()).unwrap();
    cfg["version"] = serde_json::json!(99);
    storage
        .write("config", &serde_json::to_vec(&cfg).unwrap())
        .unwrap();
    let err = Repository::open(storage, b"pw").unwrap_err();
    assert!(err.to_string().contains("version 99"), "{err}");
}

/// Large indexes are written as several index files of bounded size (so writing one never
/// holds the whole index twice), each superseding the given files, and load back whole.
#[test]
fn index_files_are_split_by_blob_count_and_load_back() {
    use arca_core::format::{BlobEntry, BlobKind, IndexPack};
    use arca_core::repo::{INDEX_FILE_BLOBS, INDEX_FILE_PACKS};
    let dir = tempfile::tempdir().unwrap();
    let repo = small_repo(dir.path(), 3);
    let id = |n: u64| arca_core::Id::of_object(&n.to_le_bytes());
    // Three packs of 0.6 x the blob limit: the first file closes after two of them.
    let per_pack = INDEX_FILE_BLOBS * 3 / 5;
    let packs: Vec<IndexPack> = (0..3u64)
        .map(|p| IndexPack {
            id: id(1_000_000_000 + p),
            blobs: (0..per_pack as u64)
                .map(|b| BlobEntry {
                    kind: BlobKind::Data,
                    id: id(p * 10_000_000 + b),
                    offset: (b * 100) as u32,
                    length: 100,
                    raw_length: 0,
                })
                .collect(),
        })
        .collect();
    let old = [id(42)];
    assert_eq!(repo.save_index_files(packs, &old).unwrap(), 2);
    // Many small packs: a file closes at the pack limit.
    let small: Vec<IndexPack> = (0..INDEX_FILE_PACKS as u64 + 1)
        .map(|p| IndexPack {
            id: id(2_000_000_000 + p),
            blobs: vec![],
        })
        .collect();
    assert_eq!(repo.save_index_files(small, &[]).unwrap(), 2);
    let files = repo.list_ids("index").unwrap();
    assert_eq!(files.len(), 4);
    let mut blobs = 0;
    for (f, _) in &files {
        let file = repo.load_index_file(f).unwrap();
        let n: usize = file.packs.iter().map(|p| p.blobs.len()).sum();
        assert!(n <= INDEX_FILE_BLOBS * 2 && file.packs.len() <= INDEX_FILE_PACKS);
        blobs += n;
    }
    assert_eq!(blobs, per_pack * 3);
    assert_eq!(repo.load_index().unwrap().len(), per_pack * 3);
}
