//! The engines below the binary, on the in-memory storage: backup, restore, check, prune,
//! copy and the blob saver, with their error paths. A storage that fails from its Nth
//! write on (a disk that fills up at every possible point) must leave a repository that
//! checks clean, keeps every completed snapshot and takes the next backup; a damaged blob
//! and a missing pack are named by check with what they affect.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_core::Repository;
use arca_core::backup::{BackupOptions, BackupResult, backup_paths};
use arca_core::check::{CheckReport, ReadData, check};
use arca_core::copy::copy_snapshots;
use arca_core::format::{BlobKind, ChunkerParams};
use arca_core::id::Id;
use arca_core::progress::NoProgress;
use arca_core::prune::{PruneOptions, execute, plan};
use arca_core::repo::InitOptions;
use arca_core::restore::{RestoreOptions, find_path, restore};
use arca_core::saver::BlobSaver;
use arca_storage::Storage;
use arca_storage::fault::{FaultStorage, WriteFault};
use arca_storage::memory::MemoryStorage;

const PASSWORD: &[u8] = b"engine test";

fn init_options() -> InitOptions {
    InitOptions {
        chunker: ChunkerParams {
            min_size: 512,
            avg_size: 2048,
            max_size: 8192,
        },
        compression_level: 3,
        pack_size: 16 * 1024,
        kdf: Some(arca_core::crypto::test_kdf_params()),
        shared_from: None,
        append_only: false,
    }
}

/// A new repository on an empty in-memory storage.
fn memory_repo() -> (MemoryStorage, Arc<Repository>) {
    let memory = MemoryStorage::new("memory:engines");
    let repo = Repository::init(Arc::new(memory.clone()), PASSWORD, init_options()).unwrap();
    (memory, Arc::new(repo))
}

fn open(storage: impl Storage + 'static) -> Arc<Repository> {
    Arc::new(Repository::open(Arc::new(storage), PASSWORD).unwrap())
}

/// Pseudo-random bytes from `seed` (xorshift), so that files do not compress away.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A source tree of `files` files of 3–40 KiB under `dir/src`, seeded by `seed`.
fn source(dir: &Path, files: u64, seed: u64) -> PathBuf {
    let src = dir.join("src");
    for i in 0..files {
        let sub = src.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        let len = 3 * 1024 + ((seed + i) * 7919 % (37 * 1024)) as usize;
        std::fs::write(sub.join(format!("f{i}")), noise(seed * 1000 + i, len)).unwrap();
    }
    src
}

fn backup(repo: &Arc<Repository>, src: &Path) -> arca_core::Result<BackupResult> {
    let mut index = repo.load_index()?;
    repo.adopt_unindexed_packs(&mut index)?;
    backup_paths(
        repo,
        Arc::new(index),
        &[src.to_path_buf()],
        &BackupOptions::default(),
        &NoProgress,
    )
}

/// Restores snapshot `id` into a fresh `target` and returns where `src` landed.
fn restore_snapshot(repo: &Repository, id: &Id, src: &Path, target: &Path) -> PathBuf {
    let index = repo.load_index().unwrap();
    let snap = repo.load_snapshot(id).unwrap();
    let root = PathBuf::from("/");
    let node = find_path(repo, &index, &snap.tree, &root).unwrap();
    let opts = RestoreOptions {
        verify: true,
        ..Default::default()
    };
    restore(repo, &index, &node, &root, target, &opts, &NoProgress).unwrap();
    target.join(src.strip_prefix("/").unwrap())
}

/// Every file under `dir` by its relative path, with its content.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn checked(repo: &Repository) -> CheckReport {
    check(repo, ReadData::All, &NoProgress).unwrap()
}

fn assert_clean(report: &CheckReport, what: &str) {
    assert!(report.problems.is_empty(), "{what}: {:?}", report.problems);
}

#[test]
fn backup_check_and_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), 12, 1);
    let (_, repo) = memory_repo();
    let first = backup(&repo, &src).unwrap();
    let id = first.snapshot_id.unwrap();
    assert_eq!(first.snapshot.summary.files_new, 12);
    let report = checked(&repo);
    assert_clean(&report, "after one backup");
    assert_eq!(report.snapshots, 1);
    assert!(report.blobs_read > 0);

    // An unchanged second backup stores no data again.
    let second = backup(&repo, &src).unwrap();
    assert_eq!(second.snapshot.summary.files_unmodified, 12);
    assert_eq!(second.snapshot.summary.bytes_read, 0);
    assert_eq!(second.snapshot.parent, Some(id));

    let restored = restore_snapshot(&repo, &id, &src, &dir.path().join("target"));
    assert_eq!(contents(&restored), contents(&src));
}

#[test]
fn a_backup_failing_from_any_write_on_leaves_a_repository_that_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), 10, 2);
    let (memory, repo) = memory_repo();
    let kept = backup(&repo, &src).unwrap().snapshot_id.unwrap();
    std::fs::write(src.join("d0/new"), noise(99, 60 * 1024)).unwrap();

    let mut failed = 0;
    for budget in 0..40u64 {
        let copy = memory.fork(format!("memory:budget-{budget}"));
        let faulty = FaultStorage::new(copy.clone()).with_write_budget(budget, WriteFault::NoSpace);
        let result = backup(&open(faulty), &src);
        let after = open(copy);
        let report = checked(&after);
        assert_clean(
            &report,
            &format!("a backup that could write {budget} objects"),
        );
        if result.is_err() {
            failed += 1;
            assert_eq!(report.snapshots, 1, "budget {budget}: {report:?}");
        }
        // The completed snapshot restores, and the next backup (with space) succeeds.
        let target = dir.path().join(format!("t{budget}"));
        let restored = restore_snapshot(&after, &kept, &src, &target);
        assert_eq!(contents(&restored).len(), 10, "budget {budget}");
        let next = backup(&after, &src).unwrap();
        assert!(next.snapshot_id.is_some());
        assert_clean(
            &checked(&after),
            &format!("the backup after budget {budget}"),
        );
        if result.is_ok() {
            break;
        }
    }
    assert!(failed >= 3, "only {failed} budgets made the backup fail");
    eprintln!("the backup failed at {failed} write budgets, then succeeded");
}

/// The data packs of a repository's storage.
fn data_packs(memory: &MemoryStorage) -> Vec<String> {
    memory
        .names()
        .into_iter()
        .filter(|n| n.starts_with("data/"))
        .collect()
}

#[test]
fn a_damaged_blob_is_named_with_the_files_it_affects() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), 6, 3);
    let (memory, repo) = memory_repo();
    backup(&repo, &src).unwrap();
    // Flip a byte in the middle of the largest data pack (inside a blob's ciphertext).
    let pack = data_packs(&memory)
        .into_iter()
        .max_by_key(|n| memory.read(n).unwrap().len())
        .unwrap();
    let mut bytes = memory.read(&pack).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x40;
    memory.write(&pack, &bytes).unwrap();

    let report = checked(&open(memory.clone()));
    assert!(!report.problems.is_empty(), "check missed a damaged pack");
    let named = report
        .problems
        .iter()
        .any(|p| p.object.contains(pack.trim_start_matches("data/")));
    assert!(
        named,
        "the damaged pack is not named: {:?}",
        report.problems
    );
    let affected: Vec<&String> = report
        .problems
        .iter()
        .flat_map(|p| &p.affects)
        .flat_map(|a| &a.paths)
        .collect();
    assert!(
        affected.iter().any(|p| p.contains("/src/d")),
        "no affected file is named: {:?}",
        report.problems
    );
}

#[test]
fn a_missing_pack_is_reported_and_the_next_backup_stores_its_blobs_again() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), 6, 4);
    let (memory, repo) = memory_repo();
    backup(&repo, &src).unwrap();
    let pack = data_packs(&memory).remove(0);
    memory.delete(&pack).unwrap();
    let report = checked(&open(memory.clone()));
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object.contains(pack.trim_start_matches("data/"))
                || p.message.contains(pack.trim_start_matches("data/"))),
        "the missing pack is not named: {:?}",
        report.problems
    );
}

#[test]
fn prune_after_removing_a_snapshot_frees_its_data_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, repo) = memory_repo();
    let old_src = source(&dir.path().join("old"), 8, 5);
    let old = backup(&repo, &old_src).unwrap().snapshot_id.unwrap();
    let new_src = source(&dir.path().join("new"), 8, 6);
    let new = backup(&repo, &new_src).unwrap().snapshot_id.unwrap();
    let before = memory.total_bytes();

    repo.storage().delete(&format!("snapshots/{old}")).unwrap();
    let opts = PruneOptions::default();
    let p = plan(&repo, &opts).unwrap();
    assert!(!p.is_noop());
    assert!(p.bytes_freed > 0, "{p:?}");
    execute(&repo, &p).unwrap();
    assert!(memory.total_bytes() < before);

    let after = open(memory.clone());
    assert_clean(&checked(&after), "after prune");
    let restored = restore_snapshot(&after, &new, &new_src, &dir.path().join("target"));
    assert_eq!(contents(&restored), contents(&new_src));
    // Nothing is left to do.
    assert!(plan(&after, &opts).unwrap().is_noop());
}

#[test]
fn a_prune_failing_from_any_write_on_loses_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, repo) = memory_repo();
    let old_src = source(&dir.path().join("old"), 6, 7);
    let old = backup(&repo, &old_src).unwrap().snapshot_id.unwrap();
    // The second source shares half its files with the first: prune must repack.
    let new_src = source(&dir.path().join("new"), 6, 8);
    for i in [0, 3] {
        std::fs::copy(
            old_src.join(format!("d{}/f{i}", i % 3)),
            new_src.join(format!("d{}/shared{i}", i % 3)),
        )
        .unwrap();
    }
    let new = backup(&repo, &new_src).unwrap().snapshot_id.unwrap();
    repo.storage().delete(&format!("snapshots/{old}")).unwrap();
    let opts = PruneOptions {
        max_unused: "0%".parse().unwrap(),
        ..Default::default()
    };
    let mut failed = 0;
    for budget in 0..30u64 {
        let copy = memory.fork(format!("memory:prune-{budget}"));
        let faulty = FaultStorage::new(copy.clone()).with_write_budget(budget, WriteFault::NoSpace);
        let faulty = open(faulty);
        let done = plan(&faulty, &opts).and_then(|p| execute(&faulty, &p));
        let after = open(copy);
        assert_clean(
            &checked(&after),
            &format!("a prune that could write {budget} objects"),
        );
        let target = dir.path().join(format!("t{budget}"));
        let restored = restore_snapshot(&after, &new, &new_src, &target);
        assert_eq!(contents(&restored), contents(&new_src), "budget {budget}");
        match done {
            Ok(()) => {
                assert!(failed >= 2, "only {failed} budgets made prune fail");
                eprintln!("prune failed at {failed} write budgets, then succeeded");
                return;
            }
            Err(_) => failed += 1,
        }
    }
    panic!("prune did not succeed within 30 writes");
}

#[test]
fn copy_to_a_second_repository_is_complete_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), 8, 9);
    let (_, repo) = memory_repo();
    let id = backup(&repo, &src).unwrap().snapshot_id.unwrap();
    let (dst_memory, dst) = memory_repo();
    let (snaps, _) = repo.list_snapshots().unwrap();
    let first = copy_snapshots(&repo, &dst, &snaps, &NoProgress).unwrap();
    assert_eq!(first.copied.len(), 1, "{first:?}");
    assert!(first.blobs_added > 0);
    let again = copy_snapshots(&repo, &dst, &snaps, &NoProgress).unwrap();
    assert!(again.copied.is_empty(), "{again:?}");
    assert_eq!(again.skipped.len(), 1);

    let dst = open(dst_memory);
    assert_clean(&checked(&dst), "the copy");
    let (copies, _) = dst.list_snapshots().unwrap();
    assert_eq!(copies.len(), 1);
    let restored = restore_snapshot(&dst, &copies[0].0, &src, &dir.path().join("target"));
    assert_eq!(contents(&restored), contents(&src));
    assert_eq!(arca_core::copy::origin(&copies[0].0, &copies[0].1), id);
}

#[test]
fn the_saver_stores_a_blob_once_and_a_failed_upload_is_an_error() {
    let (memory, repo) = memory_repo();
    let index = Arc::new(repo.load_index().unwrap());
    let saver = BlobSaver::new(repo.clone(), index, 2);
    let data = noise(10, 4096);
    let id = repo.crypto().blob_id(&data);
    assert!(saver.save(BlobKind::Data, id, data.clone()).unwrap());
    assert!(!saver.save(BlobKind::Data, id, data).unwrap());
    let (packs, totals) = saver.finish().unwrap();
    assert_eq!(totals.blobs_added, 1);
    assert_eq!(packs.len(), 1);

    // Every pack upload fails: the saver reports it instead of losing the blob quietly.
    let faulty = FaultStorage::new(memory.fork("memory:saver"))
        .counting_only("data/")
        .with_write_budget(0, WriteFault::NoSpace);
    let faulty = open(faulty);
    let saver = BlobSaver::new(faulty.clone(), Arc::new(faulty.load_index().unwrap()), 2);
    let data = noise(11, 4096);
    let id = faulty.crypto().blob_id(&data);
    let saved = saver.save(BlobKind::Data, id, data);
    let finished = saver.finish();
    assert!(
        saved.is_err() || finished.is_err(),
        "a pack that could not be written went unnoticed"
    );
}
