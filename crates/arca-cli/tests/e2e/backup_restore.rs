//! End-to-end: backup and restore round trips of every file kind, stdin and command
//! sources, restoring over an existing tree.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::common::*;

const MIB: usize = 1024 * 1024;

/// Builds the "every kind" source tree. Returns the paths that carry the `user.test` xattr
/// (empty when xattrs cannot be set here).
fn build_every_kind(src: &Path) -> Vec<std::path::PathBuf> {
    fs::create_dir_all(src).unwrap();
    // Regular files: empty, small, multi-MB random spanning several chunks.
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(src.join("small.txt"), b"hello, arca\n").unwrap();
    write_random(&src.join("big.bin"), 1, 9 * MIB + 12345);
    // Nested and empty directories.
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::write(src.join("a/b/c/deep.txt"), b"deep\n").unwrap();
    fs::create_dir_all(src.join("a/b/empty_nested")).unwrap();
    fs::create_dir(src.join("emptydir")).unwrap();
    // Symlinks: plain, dangling, non-UTF-8 target.
    std::os::unix::fs::symlink("small.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", src.join("dangling")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"target\xfe\xff"), src.join("badlink")).unwrap();
    // Hardlinks: two names (in two directories), one inode.
    write_random(&src.join("hl1"), 2, 300_000);
    fs::hard_link(src.join("hl1"), src.join("a/hl2")).unwrap();
    // Sparse file: 64 MiB with 4 KiB of data in the middle.
    {
        let f = fs::File::create(src.join("sparse.img")).unwrap();
        f.set_len(64 * MIB as u64).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&random_bytes(3, 4096), 32 * MIB as u64)
            .unwrap();
    }
    // Special files: fifo, socket, character device.
    sh(Command::new("mkfifo").arg(src.join("fifo")));
    drop(std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap());
    sh(Command::new("mknod")
        .arg(src.join("null"))
        .args(["c", "1", "3"]));
    // Modes: setuid file, sticky dir, odd permissions. Ownership first: chown clears setuid.
    fs::write(src.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::create_dir(src.join("sticky")).unwrap();
    fs::write(src.join("sticky/inside"), b"x").unwrap();
    fs::write(src.join("private"), b"secret").unwrap();
    for p in [
        "setuid",
        "sticky",
        "a/b/c/deep.txt",
        "small.txt",
        "fifo",
        "null",
    ] {
        std::os::unix::fs::chown(src.join(p), Some(1234), Some(5678)).unwrap();
    }
    std::os::unix::fs::lchown(src.join("link"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(src.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(src.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(src.join("fifo"), fs::Permissions::from_mode(0o620)).unwrap();
    // Non-UTF-8 name.
    fs::write(
        src.join(OsStr::from_bytes(b"bad\xffname")),
        b"non-utf8 name\n",
    )
    .unwrap();
    // A deep path of about 3000 bytes (200-byte components).
    let mut deep = src.join("long");
    for i in 0..15 {
        let comp: String = std::iter::repeat_n((b'a' + i as u8) as char, 200).collect();
        deep.push(comp);
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom.txt"), b"bottom\n").unwrap();
    assert!(deep.join("bottom.txt").as_os_str().len() > 2900);
    // 1000 small files in one directory.
    fs::create_dir(src.join("many")).unwrap();
    for i in 0..1000 {
        fs::write(src.join(format!("many/f{i:04}")), format!("file {i}\n")).unwrap();
    }
    // Xattrs.
    let mut with_xattr = Vec::new();
    for p in ["small.txt", "a"] {
        if set_xattr(&src.join(p), "user.test", b"value \x00\xff") {
            with_xattr.push(src.join(p));
        }
    }
    if with_xattr.is_empty() {
        println!("note: cannot set user xattrs here (no setfattr/python3?): xattrs not checked");
    }
    // Times with nanoseconds: non-directories, then every directory (children first).
    set_mtime(&src.join("small.txt"), 1_500_000_000, 123_456_789);
    set_mtime(&src.join("link"), 1_400_000_000, 987_654_321);
    set_mtime(&src.join("dangling"), 1_300_000_000, 1);
    set_mtime(&src.join("fifo"), 1_200_000_000, 999_999_999);
    set_mtime(&src.join("sock"), 1_100_000_000, 500_000_000);
    set_mtime(&src.join("null"), 1_000_000_000, 42);
    set_mtime(&src.join("big.bin"), 1_600_000_000, 111_111_111);
    let mut dirs: Vec<Vec<u8>> = walk(src)
        .into_iter()
        .filter(|(_, m)| m.is_dir())
        .map(|(r, _)| r)
        .collect();
    dirs.sort_by_key(|r| std::cmp::Reverse(r.len()));
    for (i, rel) in dirs.iter().enumerate() {
        let p = if rel.is_empty() {
            src.to_path_buf()
        } else {
            src.join(OsStr::from_bytes(rel))
        };
        set_mtime(&p, 1_700_000_000 + i as i64, 100_000_007 + i as u32);
    }
    with_xattr
}

#[test]
fn every_file_kind_round_trip() {
    let env = Env::init();
    let src = env.path("src");
    let with_xattr = build_every_kind(&src);

    let sum = env.backup(&[&src], &[]);
    assert_eq!(sum["incomplete"], false, "{sum}");
    assert_eq!(sum["errors"], serde_json::json!([]), "{sum}");

    let target = env.path("restore");
    let out = env
        .run_os(&[
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            target.as_os_str(),
            OsStr::new("--verify"),
            OsStr::new("--json"),
        ])
        .ok();
    let rs = out.summary();
    assert_eq!(rs["errors"], serde_json::json!([]), "{rs}");
    assert!(u(&rs, "verified_files") > 1000, "{rs}");

    let restored = restored_path(&target, &src);
    let diffs = compare_trees(&src, &restored, &[]);
    assert!(
        diffs.is_empty(),
        "restored tree differs:\n{}",
        diffs.join("\n")
    );

    // Hardlinks share one inode in the restore.
    let (h1, h2) = (
        fs::symlink_metadata(restored.join("hl1")).unwrap(),
        fs::symlink_metadata(restored.join("a/hl2")).unwrap(),
    );
    assert_eq!(h1.ino(), h2.ino(), "hardlinks restored as separate files");
    assert_eq!(h1.nlink(), 2);

    // The sparse file stays sparse.
    let sp = fs::symlink_metadata(restored.join("sparse.img")).unwrap();
    assert_eq!(sp.len(), 64 * MIB as u64);
    assert!(
        sp.blocks() * 512 < 16 * MIB as u64,
        "sparse file restored with {} bytes allocated",
        sp.blocks() * 512
    );

    // Specific attributes, spelled out (compare_trees already covers them).
    let md = |p: &str| fs::symlink_metadata(restored.join(p)).unwrap();
    assert_eq!(md("setuid").mode() & 0o7777, 0o4755);
    assert_eq!(md("sticky").mode() & 0o7777, 0o1777);
    assert_eq!((md("setuid").uid(), md("setuid").gid()), (1234, 5678));
    assert_eq!((md("link").uid(), md("link").gid()), (1234, 5678));
    assert_eq!(
        md("null").rdev(),
        fs::symlink_metadata("/dev/null").unwrap().rdev()
    );
    assert_eq!(
        (md("small.txt").mtime(), md("small.txt").mtime_nsec()),
        (1_500_000_000, 123_456_789)
    );
    assert_eq!(
        fs::read_link(restored.join("badlink"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"target\xfe\xff"
    );
    assert_eq!(
        fs::read(restored.join(OsStr::from_bytes(b"bad\xffname"))).unwrap(),
        b"non-utf8 name\n"
    );

    for p in &with_xattr {
        let rel = p.strip_prefix(&src).unwrap();
        assert_eq!(
            get_xattr(&restored.join(rel), "user.test"),
            Some(b"value \x00\xff".to_vec()),
            "xattr of {}",
            rel.display()
        );
    }
}

/// A path longer than PATH_MAX (4096): built with relative `cd`s in bash (dash's `cd`
/// passes the whole logical path to chdir and fails).
#[test]
fn path_longer_than_path_max() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let comp: String = "x".repeat(200);
    let depth = 25; // 25 * 201 bytes > 5000
    let script = format!(
        "set -e; i=0; while [ $i -lt {depth} ]; do mkdir {comp}; cd {comp}; i=$((i+1)); done; printf 'bottom of the deep tree' > file.txt"
    );
    sh(Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&src));

    let out = env.run_os(&[OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
    let errors: Vec<String> = summary_line(&out.stdout_str())
        .and_then(|s| s["errors"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            format!(
                "path of {} bytes: {}",
                e["path"].as_str().map_or(0, str::len),
                e["reason"]
            )
        })
        .collect();
    assert_eq!(
        out.code, 0,
        "backup of a tree with a path > 4096 bytes failed (exit {}), entry errors: {errors:?}",
        out.code
    );
    let target = env.path("r");
    env.run_os(&[
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ])
    .ok();
    let restored = restored_path(&target, &src);
    let read = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; i=0; while [ $i -lt {depth} ]; do cd {comp}; i=$((i+1)); done; cat file.txt"
        ))
        .current_dir(&restored)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(read.stdout, b"bottom of the deep tree");
}

#[test]
fn stdin_backup_and_dump() {
    let env = Env::init();
    let data = random_bytes(77, 3 * MIB + 17);
    let out = env
        .run_stdin(
            &["backup", "--json", "--stdin", "--stdin-filename", "db.sql"],
            &data,
        )
        .ok();
    let sum = out.summary();
    assert_eq!(u(&sum, "total_bytes"), data.len() as u64, "{sum}");
    let dumped = env.run(&["dump", "latest", "/db.sql"]).ok();
    assert!(dumped.stdout == data, "dump differs from the input");
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["source"], "stdin");
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/db.sql"]));
}

#[test]
fn stdin_from_command_failure_keeps_no_snapshot() {
    let env = Env::init();
    let out = env.run(&[
        "backup",
        "--stdin-from-command",
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    out.fails();
    assert_eq!(
        env.snapshots().len(),
        0,
        "a failing command left a snapshot"
    );

    env.run(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "out.txt",
        "--",
        "sh",
        "-c",
        "echo hi; exit 0",
    ])
    .ok();
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["source"], "command");
    let dumped = env.run(&["dump", "latest", "/out.txt"]).ok();
    assert_eq!(dumped.stdout, b"hi\n");
}

fn restore_json(env: &Env, reference: &str, target: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("restore"),
        OsStr::new(reference),
        OsStr::new("--target"),
        target.as_os_str(),
        OsStr::new("--json"),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let out = env.run_os(&args).ok();
    out.summary()
}

/// A file far larger than the page-cache window a restore keeps per file (DROP_BEHIND,
/// 64 MiB): the ranges dropped behind the writer come back byte for byte, also when the
/// restore rewrites part of the file in place.
#[test]
fn large_file_restores_whole_past_the_drop_behind_window() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let content = write_random(&src.join("large.bin"), 77, 150 * MIB + 4321);
    env.backup(&[&src], &[]);
    let target = env.path("t");
    restore_json(&env, "latest", &target, &[]);
    let restored = restored_path(&target, &src).join("large.bin");
    assert!(fs::read(&restored).unwrap() == content, "large.bin differs");
    // Damage the middle and the end; the restore over it rewrites them in place.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&restored).unwrap();
        f.write_all_at(&[0u8; 4096], 90 * MIB as u64).unwrap();
        f.write_all_at(&[1u8; 100], (150 * MIB) as u64).unwrap();
    }
    restore_json(&env, "latest", &target, &["--overwrite", "always"]);
    assert!(
        fs::read(&restored).unwrap() == content,
        "large.bin differs after rewrite"
    );
}

#[test]
fn restore_over_existing_tree() {
    let env = Env::init();
    let src = env.path("src");
    small_tree(&src, 30, 500);
    write_random(&src.join("big.bin"), 501, 3 * MIB);
    let n = 31;
    env.backup(&[&src], &[]);

    let target = env.path("t");
    let first = restore_json(&env, "latest", &target, &[]);
    assert_eq!(u(&first, "files"), n, "{first}");
    assert_eq!(u(&first, "files_written"), n, "{first}");
    let restored = restored_path(&target, &src);
    assert_same_tree(&src, &restored);

    // Modify one restored file; the second restore rewrites only it.
    fs::write(restored.join("f001.txt"), b"changed").unwrap();
    let second = restore_json(&env, "latest", &target, &[]);
    assert_eq!(u(&second, "files_written"), 1, "{second}");
    assert_eq!(u(&second, "files_unchanged"), n - 1, "{second}");
    assert_same_tree(&src, &restored);

    // --delete removes an extra file; without it the file stays.
    fs::write(restored.join("extra.txt"), b"not in the snapshot").unwrap();
    fs::write(restored.join("sub/extra2.txt"), b"not in the snapshot").unwrap();
    restore_json(&env, "latest", &target, &[]);
    assert!(restored.join("extra.txt").exists());
    let del = restore_json(&env, "latest", &target, &["--delete"]);
    assert!(
        !restored.join("extra.txt").exists(),
        "--delete kept extra.txt"
    );
    assert!(
        !restored.join("sub/extra2.txt").exists(),
        "--delete kept sub/extra2.txt"
    );
    assert!(u(&del, "deleted") >= 2, "{del}");
    assert_same_tree(&src, &restored);
}

#[test]
fn restore_dry_run_writes_nothing() {
    let env = Env::init();
    let src = env.path("src");
    small_tree(&src, 10, 600);
    env.backup(&[&src], &[]);
    let target = env.path("t");
    let s = restore_json(&env, "latest", &target, &["--dry-run"]);
    assert_eq!(u(&s, "files"), 10, "{s}");
    assert!(!target.exists(), "--dry-run created the target");

    // Over an existing restore with a modified file: nothing changes either.
    restore_json(&env, "latest", &target, &[]);
    let restored = restored_path(&target, &src);
    fs::write(restored.join("f001.txt"), b"changed").unwrap();
    fs::write(restored.join("extra"), b"extra").unwrap();
    restore_json(&env, "latest", &target, &["--dry-run", "--delete"]);
    assert_eq!(fs::read(restored.join("f001.txt")).unwrap(), b"changed");
    assert!(restored.join("extra").exists());
}

#[test]
fn restore_include_exclude_and_subpath() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("docs/inner")).unwrap();
    fs::create_dir_all(src.join("logs")).unwrap();
    fs::write(src.join("docs/a.txt"), b"a").unwrap();
    fs::write(src.join("docs/b.md"), b"b").unwrap();
    fs::write(src.join("docs/inner/c.txt"), b"c").unwrap();
    fs::write(src.join("logs/x.log"), b"x").unwrap();
    fs::write(src.join("top.txt"), b"top").unwrap();
    env.backup(&[&src], &[]);

    let listing = |root: &Path| -> Vec<String> {
        walk(root)
            .into_iter()
            .filter(|(_, m)| m.is_file())
            .map(|(r, _)| String::from_utf8(r).unwrap())
            .collect()
    };

    // --include: only *.txt files.
    let t1 = env.path("t1");
    restore_json(&env, "latest", &t1, &["--include", "*.txt"]);
    assert_eq!(
        listing(&restored_path(&t1, &src)),
        ["docs/a.txt", "docs/inner/c.txt", "top.txt"],
    );

    // --exclude: a directory and a pattern.
    let t2 = env.path("t2");
    let logs = format!("{}/logs", src.display());
    restore_json(
        &env,
        "latest",
        &t2,
        &["--exclude", &logs, "--exclude", "*.md"],
    );
    assert_eq!(
        listing(&restored_path(&t2, &src)),
        ["docs/a.txt", "docs/inner/c.txt", "top.txt"],
    );

    // REF:sub/path restores only that subtree, directly into the target.
    let t3 = env.path("t3");
    let sub = format!("latest:{}/docs", src.display());
    let s = restore_json(&env, &sub, &t3, &[]);
    assert_eq!(u(&s, "files"), 3, "{s}");
    assert_eq!(listing(&t3), ["a.txt", "b.md", "inner/c.txt"]);
    assert_same_tree(&src.join("docs/inner"), &t3.join("inner"));
}

/// The tree comparison itself notices differences (so a passing round trip means something).
#[test]
fn compare_trees_notices_differences() {
    let env = Env::new();
    let a = env.path("a");
    small_tree(&a, 8, 1);
    fs::hard_link(a.join("f001.txt"), a.join("sub/link1")).unwrap();
    std::os::unix::fs::symlink("f001.txt", a.join("sym")).unwrap();
    let b = env.path("b");
    sh(Command::new("cp").arg("-a").arg(&a).arg(&b));
    assert_same_tree(&a, &b);

    let expect = |what: &str| {
        let d = compare_trees(&a, &b, &[]);
        assert!(
            d.iter().any(|l| l.contains(what)),
            "expected a {what:?} difference, got {d:?}"
        );
    };
    set_mtime(&b.join("f002.txt"), 1_000_000_000, 1);
    expect("mtime");
    sh(Command::new("cp")
        .arg("-a")
        .arg(a.join("f002.txt"))
        .arg(b.join("f002.txt")));
    assert_same_tree(&a, &b);
    // A broken hardlink (same content, own inode).
    fs::remove_file(b.join("sub/link1")).unwrap();
    sh(Command::new("cp")
        .arg("-p")
        .arg(a.join("sub/link1"))
        .arg(b.join("sub/link1")));
    expect("nlink");
    expect("hardlink identity");
    fs::remove_file(b.join("sub/link1")).unwrap();
    fs::hard_link(b.join("f001.txt"), b.join("sub/link1")).unwrap();
    set_mtime(
        &b.join("sub"),
        {
            let m = fs::metadata(a.join("sub")).unwrap();
            m.mtime()
        },
        fs::metadata(a.join("sub")).unwrap().mtime_nsec() as u32,
    );
    assert_same_tree(&a, &b);
    fs::set_permissions(b.join("f004.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    expect("mode");
    std::os::unix::fs::chown(b.join("f004.txt"), Some(4321), None).unwrap();
    expect("uid");
    let mut data = fs::read(b.join("f005.txt")).unwrap();
    data[3] ^= 1;
    fs::write(b.join("f005.txt"), &data).unwrap();
    expect("content differs");
    fs::remove_file(b.join("sym")).unwrap();
    std::os::unix::fs::symlink("elsewhere", b.join("sym")).unwrap();
    expect("link target");
    fs::write(b.join("extra"), b"x").unwrap();
    expect("extra in the restore");
    fs::remove_file(b.join("f007.txt")).unwrap();
    expect("missing in the restore");
}

/// `restore --sync` writes back the target's file system (one syncfs on a descriptor of the
/// target) before it reports success; without it no syncfs is made. Seen through strace;
/// without strace the test skips, except under CI=true where it fails.
#[test]
fn restore_sync_writes_back_the_target_before_success() {
    if !tool_or_skip(
        "strace",
        "restore_sync_writes_back_the_target_before_success",
    ) {
        return;
    }
    let env = Env::init();
    let src = env.path("src");
    small_tree(&src, 20, 7);
    env.run_os(&[OsStr::new("backup"), OsStr::new("-q"), src.as_os_str()])
        .ok();
    for (name, extra, syncs) in [("synced", Some("--sync"), true), ("plain", None, false)] {
        let target = env.path(name);
        let log = env.path(&format!("{name}.strace"));
        let c = env.cmd();
        let mut s = Command::new("strace");
        s.args(["-f", "-qq", "-e", "trace=syncfs,openat", "-o"])
            .arg(&log)
            .arg(c.get_program())
            .args(["restore", "latest", "-q", "--target"])
            .arg(&target)
            .args(extra);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => s.env(k, v),
                None => s.env_remove(k),
            };
        }
        let status = s.status().expect("run strace");
        assert!(status.success(), "{name}: restore failed");
        assert_same_tree(&src, &restored_path(&target, &src));
        let trace = fs::read_to_string(&log).unwrap();
        let calls: Vec<&str> = trace.lines().filter(|l| l.contains("syncfs(")).collect();
        if syncs {
            // The descriptor synced is the target directory's.
            let fd = calls
                .iter()
                .find_map(|l| l.split("syncfs(").nth(1)?.split(')').next())
                .unwrap_or_else(|| panic!("no syncfs in the trace:\n{trace}"));
            let target_open = format!("\"{}\"", target.display());
            assert!(
                trace.lines().any(|l| l.contains("openat(")
                    && l.contains(&target_open)
                    && l.trim_end().ends_with(&format!("= {fd}"))),
                "syncfs({fd}) is not on the target {target_open}:\n{trace}"
            );
            assert!(
                calls.iter().all(|l| l.trim_end().ends_with("= 0")),
                "{calls:?}"
            );
        } else {
            assert!(calls.is_empty(), "syncfs without --sync: {calls:?}");
        }
    }
}

/// Found by the fuzz target `restore_plan` (2026-12-04): with `--include`, a directory
/// left out of the restore (here the empty `askipped`, listed before `wanted`) kept its
/// "complete listing" in the plan under the index that `wanted` then took, so `--delete`
/// removed the file it had just restored into `wanted`.
#[test]
fn delete_with_include_keeps_what_it_restored() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("askipped")).unwrap();
    fs::create_dir_all(src.join("wanted")).unwrap();
    fs::write(src.join("wanted/file.txt"), "hello").unwrap();
    env.backup(&[&src], &[]);
    let target = env.path("target");
    let wanted = src.join("wanted");
    let out = env
        .run_os(&[
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            target.as_os_str(),
            OsStr::new("--include"),
            wanted.as_os_str(),
            OsStr::new("--delete"),
            OsStr::new("--json"),
        ])
        .ok();
    let sum = out.summary();
    assert_eq!(u(&sum, "deleted"), 0, "{sum}");
    let restored = restored_path(&target, &src);
    assert_eq!(
        fs::read_to_string(restored.join("wanted/file.txt")).unwrap(),
        "hello"
    );
    assert!(!restored.join("askipped").exists());
}
