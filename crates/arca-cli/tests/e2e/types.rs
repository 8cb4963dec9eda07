//! End-to-end: backup types (full, incremental, differential), parents, change detection
//! and `--checksum`, as reported by the JSON summary and `snapshots --json`.

use std::fs;
use std::path::Path;

use crate::common::*;

fn id(v: &serde_json::Value) -> String {
    s(v, "snapshot_id").to_string()
}

/// Rewrites `path` with new content of `len` bytes and a different mtime.
fn modify(path: &Path, seed: u64, len: usize) {
    write_random(path, seed, len);
    set_mtime(path, 1_650_000_000 + seed as i64, 7);
}

#[test]
fn backup_types_and_parents() {
    let env = Env::init();
    let src = env.path("src");
    let small = small_tree(&src, 20, 100);
    write_random(&src.join("big.bin"), 99, 1024 * 1024 + 3);
    let n: u64 = 21;
    let total = small + 1024 * 1024 + 3;

    // First backup (incremental by default, no parent): reads everything.
    let first = env.backup(&[&src], &[]);
    assert_eq!(s(&first, "type"), "incremental", "{first}");
    assert!(first["parent"].is_null(), "{first}");
    assert_eq!(u(&first, "files_new"), n, "{first}");
    assert_eq!(u(&first, "bytes_read"), total, "{first}");
    assert_eq!(u(&first, "total_bytes"), total, "{first}");

    // No change: nothing is read, the parent is the previous snapshot.
    let second = env.backup(&[&src], &[]);
    assert_eq!(u(&second, "files_unmodified"), n, "{second}");
    assert_eq!(u(&second, "files_new"), 0, "{second}");
    assert_eq!(u(&second, "files_changed"), 0, "{second}");
    assert_eq!(u(&second, "bytes_read"), 0, "{second}");
    assert_eq!(u(&second, "total_bytes"), total, "{second}");
    assert_eq!(s(&second, "parent"), id(&first), "{second}");

    // One file modified: only it is read.
    let changed = src.join("f001.txt");
    let old_len = fs::metadata(&changed).unwrap().len();
    modify(&changed, 1, 5000);
    let total = total - old_len + 5000;
    let third = env.backup(&[&src], &[]);
    assert_eq!(u(&third, "files_changed"), 1, "{third}");
    assert_eq!(u(&third, "files_unmodified"), n - 1, "{third}");
    assert_eq!(u(&third, "bytes_read"), 5000, "{third}");
    assert_eq!(u(&third, "total_bytes"), total, "{third}");
    assert_eq!(s(&third, "parent"), id(&second), "{third}");

    // Full: reads everything, no parent.
    let full = env.backup(&[&src], &["--type", "full"]);
    assert_eq!(s(&full, "type"), "full", "{full}");
    assert!(full["parent"].is_null(), "{full}");
    assert_eq!(u(&full, "bytes_read"), total, "{full}");
    assert_eq!(u(&full, "total_bytes"), total, "{full}");
    // Nothing new to store but the snapshot's trees (all data is already there).
    assert!(
        u(&full, "bytes_added_raw") < 64 * 1024,
        "full backup of unchanged data stored {} bytes",
        u(&full, "bytes_added_raw")
    );

    // Incremental after the full: parent is the full; change one file first.
    let changed2 = src.join("f002.txt");
    modify(&changed2, 2, 7000);
    let incr = env.backup(&[&src], &["--type", "incremental"]);
    assert_eq!(s(&incr, "parent"), id(&full), "{incr}");
    assert_eq!(u(&incr, "files_changed"), 1, "{incr}");
    assert_eq!(u(&incr, "bytes_read"), 7000, "{incr}");

    // Differential: parent is the latest full, not the incremental; it reads what changed
    // since the full (f002 again).
    let diff = env.backup(&[&src], &["--type", "differential"]);
    assert_eq!(s(&diff, "type"), "differential", "{diff}");
    assert_eq!(s(&diff, "parent"), id(&full), "{diff}");
    assert_eq!(u(&diff, "files_changed"), 1, "{diff}");
    assert_eq!(u(&diff, "bytes_read"), 7000, "{diff}");

    // snapshots --json shows type and parent of each.
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 6);
    let by_id = |i: &str| {
        snaps
            .iter()
            .find(|v| v["id"] == i)
            .unwrap_or_else(|| panic!("snapshot {i} not listed"))
            .clone()
    };
    let expect = [
        (&first, "incremental", None),
        (&second, "incremental", Some(id(&first))),
        (&third, "incremental", Some(id(&second))),
        (&full, "full", None),
        (&incr, "incremental", Some(id(&full))),
        (&diff, "differential", Some(id(&full))),
    ];
    for (sum, ty, parent) in expect {
        let snap = by_id(&id(sum));
        assert_eq!(snap["type"], ty, "{snap}");
        match parent {
            Some(p) => assert_eq!(snap["parent"], serde_json::json!(p), "{snap}"),
            None => assert!(snap["parent"].is_null(), "{snap}"),
        }
    }
}

#[test]
fn differential_without_full_has_no_parent() {
    let env = Env::init();
    let src = env.path("src");
    let total = small_tree(&src, 5, 200);
    env.backup(&[&src], &[]);
    let d = env.backup(&[&src], &["--type", "differential"]);
    assert!(
        d["parent"].is_null(),
        "differential with no full snapshot took parent {}",
        d["parent"]
    );
    assert_eq!(u(&d, "bytes_read"), total, "{d}");
}

#[test]
fn checksum_reads_every_file() {
    let env = Env::init();
    let src = env.path("src");
    let total = small_tree(&src, 15, 300);
    let first = env.backup(&[&src], &[]);
    let sum = env.backup(&[&src], &["--checksum"]);
    assert_eq!(u(&sum, "bytes_read"), total, "{sum}");
    assert_eq!(u(&sum, "files_unmodified"), 15, "{sum}");
    assert_eq!(u(&sum, "files_changed"), 0, "{sum}");
    assert_eq!(s(&sum, "parent"), id(&first), "{sum}");

    // Same size and mtime but different content: counted as changed.
    let p = src.join("f004.txt");
    let md = fs::metadata(&p).unwrap();
    let mut data = fs::read(&p).unwrap();
    data[0] ^= 0xff;
    fs::write(&p, &data).unwrap();
    use std::os::unix::fs::MetadataExt;
    set_mtime(&p, md.mtime(), md.mtime_nsec() as u32);
    let sum = env.backup(&[&src], &["--checksum"]);
    assert_eq!(u(&sum, "files_changed"), 1, "{sum}");
    assert_eq!(u(&sum, "bytes_read"), total, "{sum}");
}

#[test]
fn removed_and_new_files_are_counted() {
    let env = Env::init();
    let src = env.path("src");
    small_tree(&src, 6, 400);
    env.backup(&[&src], &[]);
    fs::remove_file(src.join("f001.txt")).unwrap();
    fs::remove_file(src.join("f002.txt")).unwrap();
    fs::write(src.join("new.txt"), b"new file").unwrap();
    let sum = env.backup(&[&src], &[]);
    assert_eq!(u(&sum, "files_removed"), 2, "{sum}");
    assert_eq!(u(&sum, "files_new"), 1, "{sum}");
    assert_eq!(u(&sum, "files_unmodified"), 4, "{sum}");
    assert_eq!(u(&sum, "bytes_read"), 8, "{sum}");
}
