//! `repair` recovers what can be recovered: a lost index is rebuilt from the packs, and
//! snapshots whose data was damaged or lost are rewritten without the affected files, which
//! are named; every unaffected file still restores byte for byte, and the next backup
//! stores the missing data again.

use std::path::{Path, PathBuf};

use crate::common::*;

/// Twelve 2 MiB files of random data: about three packs.
fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        write_random(&src.join(format!("file{i:02}.bin")), 1000 + i, 2 << 20);
    }
    src
}

fn restore(env: &Env, snap: &str, name: &str) -> (Out, PathBuf) {
    let target = env.path(name);
    let out = env.run_os(&[
        "restore".as_ref(),
        snap.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    (out, target)
}

fn latest_id(env: &Env) -> String {
    let snaps = env.snapshots();
    s(snaps.last().expect("a snapshot"), "id").to_string()
}

/// The data packs (largest first; the small tree pack last).
fn packs_by_size(repo: &Path) -> Vec<PathBuf> {
    let mut packs = list_files(&repo.join("data"));
    packs.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    packs
}

/// Files of `src` that restored identically under `target`, and those that did not.
fn split_restored(src: &Path, target: &Path) -> (Vec<String>, Vec<String>) {
    let mut same = Vec::new();
    let mut other = Vec::new();
    for f in list_files(src) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let restored = restored_path(target, &f);
        match std::fs::read(&restored) {
            Ok(b) if b == std::fs::read(&f).unwrap() => same.push(name),
            _ => other.push(name),
        }
    }
    (same, other)
}

#[test]
fn lost_index_is_rebuilt_from_packs() {
    let env = Env::init();
    let src = source(&env);
    env.backup(&[&src], &[]);
    for f in list_files(&env.repo.join("index")) {
        std::fs::remove_file(f).unwrap();
    }
    env.run(&["check"]).fails();
    env.run(&["repair", "index"]).ok().says("rebuilt the index");
    env.run(&["check", "--read-data"]).ok();
    let (out, target) = restore(&env, "latest", "restored");
    out.ok();
    let (_, bad) = split_restored(&src, &target);
    assert!(bad.is_empty(), "not restored identically: {bad:?}");
}

#[test]
fn damaged_index_is_rebuilt_from_packs() {
    let env = Env::init();
    let src = source(&env);
    env.backup(&[&src], &[]);
    let idx = list_files(&env.repo.join("index")).remove(0);
    let mut b = std::fs::read(&idx).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    std::fs::write(&idx, b).unwrap();
    let rel = idx
        .strip_prefix(&env.repo)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    env.run(&["check"]).fails().says(&rel);
    env.run(&["repair", "index"]).ok();
    env.run(&["check", "--read-data"]).ok();
    let (out, target) = restore(&env, "latest", "restored");
    out.ok();
    assert!(split_restored(&src, &target).1.is_empty());
}

#[test]
fn damaged_pack_costs_only_the_files_it_holds() {
    let env = Env::init();
    let src = source(&env);
    env.backup(&[&src], &[]);
    let original = latest_id(&env);
    let packs = packs_by_size(&env.repo);
    assert!(packs.len() >= 3, "want several packs, got {}", packs.len());
    let pack = &packs[0];
    let mut b = std::fs::read(pack).unwrap();
    let mid = b.len() / 2;
    for x in &mut b[mid..mid + 64] {
        *x = 0;
    }
    std::fs::write(pack, b).unwrap();
    let rel = pack
        .strip_prefix(&env.repo)
        .unwrap()
        .to_string_lossy()
        .into_owned();

    // Detected and named.
    env.run(&["check", "--read-data"]).fails().says(&rel);
    // Restoring the damaged snapshot fails loudly, naming a file.
    let (out, _) = restore(&env, &original, "restored-damaged");
    out.fails().says("file");

    // repair snapshots leaves out exactly the damaged files.
    let out = env
        .run(&["repair", "snapshots", "--read-data", "--forget", "--json"])
        .ok();
    let done = out.json();
    let done = done.as_array().expect("a list of repaired snapshots");
    assert_eq!(done.len(), 1, "{done:?}");
    let removed: Vec<String> = done[0]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    assert!(
        !removed.is_empty() && removed.len() < 12,
        "removed {removed:?}"
    );
    // The damaged original is forgotten; the repaired snapshot is the only one.
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_ne!(s(&snaps[0], "id"), original);

    let (out, target) = restore(&env, "latest", "restored-repaired");
    out.ok();
    let (same, missing) = split_restored(&src, &target);
    assert_eq!(
        same.len() + removed.len(),
        12,
        "same {same:?}, removed {removed:?}"
    );
    let mut missing = missing;
    let mut removed_sorted = removed.clone();
    missing.sort();
    removed_sorted.sort();
    assert_eq!(
        missing, removed_sorted,
        "exactly the left-out files are absent"
    );

    // Prune drops the damaged data; the next backup stores it again and the repository is
    // whole: every byte reads back.
    env.run(&["prune"]).ok();
    let s2 = env.backup(&[&src], &[]);
    assert!(
        u(&s2, "bytes_added") > 0,
        "the lost data is stored again: {s2}"
    );
    env.run(&["check", "--read-data"]).ok();
    let (out, target) = restore(&env, "latest", "restored-healed");
    out.ok();
    assert!(split_restored(&src, &target).1.is_empty());
}

#[test]
fn lost_pack_costs_only_the_files_it_held() {
    let env = Env::init();
    let src = source(&env);
    env.backup(&[&src], &[]);
    let packs = packs_by_size(&env.repo);
    assert!(packs.len() >= 3);
    let rel_name = packs[1].file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(&packs[1]).unwrap();
    env.run(&["check"]).fails().says(&rel_name);

    env.run(&["repair", "index"]).ok();
    let out = env.run(&["repair", "snapshots", "--forget", "--json"]).ok();
    let done = out.json();
    let removed = done[0]["removed"].as_array().unwrap().len();
    assert!(removed > 0 && removed < 12, "{done}");
    env.run(&["check"]).ok();
    let (out, target) = restore(&env, "latest", "restored");
    out.ok();
    let (same, _) = split_restored(&src, &target);
    assert_eq!(same.len() + removed, 12);

    // The next backup stores what was lost; everything restores again.
    env.backup(&[&src], &[]);
    env.run(&["check", "--read-data"]).ok();
    let (out, target) = restore(&env, "latest", "restored-healed");
    out.ok();
    assert!(split_restored(&src, &target).1.is_empty());
}

#[test]
fn damaged_tree_pack_fails_restore_loudly() {
    let env = Env::init();
    let src = source(&env);
    env.backup(&[&src], &[]);
    let tree_pack = packs_by_size(&env.repo).pop().unwrap();
    let mut b = std::fs::read(&tree_pack).unwrap();
    let mid = b.len() / 2;
    for x in &mut b[mid..mid + 16] {
        *x = 0;
    }
    std::fs::write(&tree_pack, b).unwrap();
    let name = tree_pack
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    env.run(&["check", "--read-data"]).fails().says(&name);
    // Never an "empty but successful" restore: the unreadable directory is named.
    let (out, _) = restore(&env, "latest", "restored");
    out.code(1).says("cannot read directory listing");
    env.run(&["restore", "latest", "--target", "x", "--dry-run"])
        .code(1)
        .says(&name);
}
