//! `PathsSource::follow_symlinks`: a listed symlink is stored as the directory it points
//! to, under its own name, and the next backup finds its files in the parent.

use std::sync::Arc;

use arca_core::Repository;
use arca_core::backup::{BackupOptions, PathsSource, backup_paths_as};
use arca_core::format::NodeKind;
use arca_core::progress::NoProgress;
use arca_core::repo::InitOptions;
use arca_core::restore::find_path;
use arca_storage::LocalStorage;

#[test]
fn a_followed_symlink_is_stored_and_reused_as_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalStorage::new(tmp.path().join("repo")));
    let opts = InitOptions {
        kdf: Some(arca_core::crypto::test_kdf_params()),
        ..Default::default()
    };
    let repo = Arc::new(Repository::init(storage, b"pw", opts).unwrap());
    let root = tmp.path().join("src");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("sub")).unwrap();
    std::fs::write(elsewhere.join("sub/f"), vec![7u8; 3000]).unwrap();
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("followed")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("kept")).unwrap();
    // Old enough to be reused by the second run.
    let old = std::fs::FileTimes::new()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60));
    std::fs::File::options()
        .write(true)
        .open(elsewhere.join("sub/f"))
        .unwrap()
        .set_times(old)
        .unwrap();
    let kind = PathsSource {
        source: "test".into(),
        follow_symlinks: vec![root.join("followed")],
        ..Default::default()
    };
    let run = |parent| {
        let index = Arc::new(repo.load_index().unwrap());
        let o = BackupOptions {
            parent,
            ..Default::default()
        };
        backup_paths_as(
            &repo,
            index,
            std::slice::from_ref(&root),
            &o,
            &kind,
            &NoProgress,
            |_| Ok(()),
        )
        .unwrap()
    };
    let first = run(None);
    let index = repo.load_index().unwrap();
    let tree = first.snapshot.tree;
    let f = find_path(&repo, &index, &tree, &root.join("followed/sub/f")).unwrap();
    assert_eq!((f.kind, f.size), (NodeKind::File, 3000));
    let kept = find_path(&repo, &index, &tree, &root.join("kept")).unwrap();
    assert_eq!(kept.kind, NodeKind::Symlink);
    assert_eq!(first.snapshot.summary.bytes_read, 3000);
    let second = run(first.snapshot_id);
    assert_eq!(second.snapshot.summary.bytes_read, 0);
    assert_eq!(second.snapshot.summary.files_unmodified, 1);
}
