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
