//! Restore stays inside its target: one regression test per finding of issue 15 (each was
//! reproduced against the release build before the fix), run for every `--overwrite` mode.
//!
//! Every test plants something in the target (a symlink to a file or a directory outside,
//! a hard link to an outside file, a non-empty directory, an edited file) and checks both
//! the outside sentinel (content, mode, mtime, link count) and what the mode promises
//! for the target. The tests run as whoever runs the suite; CI runs them as root, where
//! the original findings were worst (a root restore chmods and chowns).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::common::*;

const MODES: [&str; 3] = ["always", "if-changed", "never"];

/// A repository with one snapshot of `src/a/b.txt` (mode 0777) and `src/a/c.txt`, and an
/// `outside` directory (mode 0700) holding `victim.txt` (mode 0600).
struct Scene {
    env: Env,
    src: PathBuf,
    outside: PathBuf,
    victim: PathBuf,
}

const SNAPSHOT_B: &[u8] = b"content from the snapshot\n";
const VICTIM: &[u8] = b"must never change\n";

fn scene() -> Scene {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::write(src.join("a/b.txt"), SNAPSHOT_B).unwrap();
    fs::set_permissions(src.join("a/b.txt"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(src.join("a/c.txt"), b"second file\n").unwrap();
    env.backup(&[&src], &[]);
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
    let victim = outside.join("victim.txt");
    fs::write(&victim, VICTIM).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&victim, 1_000_000_000, 0);
    Scene {
        env,
        src,
        outside,
        victim,
    }
}

/// What a sentinel must keep: its whole listing with content, mode, owner, mtime, links.
fn sentinel(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32, u32, i64, u64)> {
    let mut out = Vec::new();
    let md = fs::symlink_metadata(dir).unwrap();
    out.push((
        dir.to_path_buf(),
        Vec::new(),
        md.mode(),
        md.uid(),
        md.mtime(),
        md.nlink(),
    ));
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let md = fs::symlink_metadata(&p).unwrap();
        let content = if md.is_file() {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.push((p, content, md.mode(), md.uid(), md.mtime(), md.nlink()));
    }
    out
}

impl Scene {
    /// The restored copy of `rel` (under the source) in target `t`.
    fn at(&self, t: &Path, rel: &str) -> PathBuf {
        restored_path(t, &self.src).join(rel)
    }

    /// A fresh target holding `src/a` (restored once, so everything else is as the
    /// snapshot has it).
    fn target(&self, name: &str) -> PathBuf {
        let t = self.env.path(name);
        self.env
            .run_os(&[
                "restore".as_ref(),
                "latest".as_ref(),
                "--target".as_ref(),
                t.as_os_str(),
            ])
            .ok();
        t
    }

    fn restore(&self, t: &Path, mode: &str, extra: &[&str]) -> Out {
        let ts = t.to_string_lossy().into_owned();
        let mut args = vec![
            "restore",
            "latest",
            "--json",
            "--target",
            &ts,
            "--overwrite",
            mode,
        ];
        args.extend_from_slice(extra);
        self.env.run(&args)
    }
}

#[test]
fn a_root_restore_with_overwrite_never_does_not_chmod_through_a_symlinked_file() {
    let s = scene();
    for mode in MODES {
        let t = s.target(&format!("t-{mode}"));
        let b = s.at(&t, "a/b.txt");
        fs::remove_file(&b).unwrap();
        symlink(&s.victim, &b).unwrap();
        let before = sentinel(&s.outside);
        let out = s.restore(&t, mode, &[]).ok();
        assert_eq!(sentinel(&s.outside), before, "--overwrite {mode}");
        let md = fs::symlink_metadata(&b).unwrap();
        if mode == "never" {
            // Left exactly as it was, and said so.
            assert!(md.file_type().is_symlink(), "never replaced the link");
            let sum = out.summary();
            let skipped = sum["skipped_paths"].as_array().cloned().unwrap_or_default();
            let shown = b.to_string_lossy().into_owned();
            assert!(skipped.iter().any(|p| p.as_str() == Some(&shown)), "{sum}");
        } else {
            // Replaced: the link is gone, the file is the snapshot's, with its mode.
            assert!(md.is_file(), "--overwrite {mode} kept the link");
            assert_eq!(fs::read(&b).unwrap(), SNAPSHOT_B);
            assert_eq!(md.mode() & 0o7777, 0o777);
        }
    }
}

#[test]
fn a_symlinked_directory_in_the_target_is_never_followed() {
    let s = scene();
    for mode in MODES {
        let t = s.target(&format!("t-{mode}"));
        let a = s.at(&t, "a");
        fs::remove_dir_all(&a).unwrap();
        symlink(&s.outside, &a).unwrap();
        let before = sentinel(&s.outside);
        let out = s.restore(&t, mode, &[]);
        assert_eq!(sentinel(&s.outside), before, "--overwrite {mode}");
        assert!(!s.outside.join("b.txt").exists(), "--overwrite {mode}");
        let md = fs::symlink_metadata(&a).unwrap();
        if mode == "never" {
            // Left as it is; nothing beneath it was restored, so the restore is
            // incomplete: exit 1, naming the link.
            let out = out.code(1);
            assert!(
                out.stderr.contains("a symlink stands where"),
                "{}",
                out.stderr
            );
            assert!(md.file_type().is_symlink(), "never replaced the link");
        } else {
            out.ok();
            assert!(md.is_dir(), "--overwrite {mode} kept the link");
            assert_eq!(fs::read(a.join("b.txt")).unwrap(), SNAPSHOT_B);
        }
    }
}

#[test]
fn overwrite_never_leaves_content_and_metadata_alone_and_if_changed_then_notices() {
    let s = scene();
    let t = s.target("t");
    let b = s.at(&t, "a/b.txt");
    // Same size as the snapshot's, other bytes, another mode and an older mtime.
    let edited = b"CONTENT FROM THE SNAPSHOT\n";
    assert_eq!(edited.len(), SNAPSHOT_B.len());
    fs::write(&b, edited).unwrap();
    fs::set_permissions(&b, fs::Permissions::from_mode(0o640)).unwrap();
    set_mtime(&b, 1_200_000_000, 0);
    let before = fs::symlink_metadata(&b).unwrap();
    let sum = s.restore(&t, "never", &[]).ok().summary();
    let after = fs::symlink_metadata(&b).unwrap();
    assert_eq!(fs::read(&b).unwrap(), edited);
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime(), before.mtime());
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert_eq!(after.ctime(), before.ctime(), "never touched the inode");
    assert!(u(&sum, "skipped") >= 1, "{sum}");
    // `never` did not stamp the snapshot's mtime on it, so `if-changed` sees the change.
    let sum = s.restore(&t, "if-changed", &[]).ok().summary();
    assert_eq!(fs::read(&b).unwrap(), SNAPSHOT_B, "{sum}");
    assert_eq!(fs::symlink_metadata(&b).unwrap().mode() & 0o7777, 0o777);
    assert!(u(&sum, "files_written") >= 1, "{sum}");
}

#[test]
fn overwrite_never_does_not_give_a_directory_the_mode_of_a_file() {
    let s = scene();
    let t = s.target("t");
    let b = s.at(&t, "a/b.txt");
    fs::remove_file(&b).unwrap();
    fs::create_dir(&b).unwrap();
    fs::set_permissions(&b, fs::Permissions::from_mode(0o710)).unwrap();
    let sum = s.restore(&t, "never", &[]).ok().summary();
    let md = fs::symlink_metadata(&b).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.mode() & 0o7777, 0o710, "{sum}");
}

#[test]
fn a_default_restore_does_not_delete_a_non_empty_directory_in_a_files_place() {
    let s = scene();
    for mode in ["always", "if-changed"] {
        let t = s.target(&format!("t-{mode}"));
        let b = s.at(&t, "a/b.txt");
        fs::remove_file(&b).unwrap();
        fs::create_dir(&b).unwrap();
        fs::write(b.join("precious"), b"keep me").unwrap();
        // Without --delete: a conflict, reported by path, exit 1, nothing removed; the
        // other files of the snapshot are still restored.
        let out = s.restore(&t, mode, &[]).code(1);
        assert!(out.stderr.contains("b.txt"), "{}", out.stderr);
        assert!(out.stderr.contains("--delete"), "{}", out.stderr);
        assert_eq!(fs::read(b.join("precious")).unwrap(), b"keep me");
        assert_eq!(
            fs::read(s.at(&t, "a/c.txt")).unwrap(),
            b"second file\n",
            "--overwrite {mode}"
        );
        // With --delete the directory makes way.
        s.restore(&t, mode, &["--delete"]).ok();
        assert_eq!(fs::read(&b).unwrap(), SNAPSHOT_B, "--overwrite {mode}");
    }
}

#[test]
fn an_existing_hardlinked_file_is_replaced_not_written_through() {
    let s = scene();
    for mode in ["always", "if-changed"] {
        let t = s.target(&format!("t-{mode}"));
        let b = s.at(&t, "a/b.txt");
        fs::remove_file(&b).unwrap();
        fs::hard_link(&s.victim, &b).unwrap();
        let before = sentinel(&s.outside);
        s.restore(&t, mode, &[]).ok();
        // The victim keeps its content and mode; only its link count dropped back to 1
        // because the restore unlinked the target's name instead of writing through it.
        let after = sentinel(&s.outside);
        let strip = |v: Vec<(PathBuf, Vec<u8>, u32, u32, i64, u64)>| -> Vec<_> {
            v.into_iter()
                .map(|(p, c, m, o, t, _)| (p, c, m, o, t))
                .collect()
        };
        assert_eq!(strip(after), strip(before), "--overwrite {mode}");
        assert_eq!(fs::metadata(&s.victim).unwrap().nlink(), 1);
        assert_eq!(fs::read(&b).unwrap(), SNAPSHOT_B, "--overwrite {mode}");
    }
}

#[test]
fn a_symlinked_target_ancestor_is_not_followed_by_delete() {
    // --delete removes what the snapshot does not have; a link in the target is removed as
    // a link, never as the directory it points to.
    let s = scene();
    let t = s.target("t");
    let extra = s.at(&t, "a/extra");
    symlink(&s.outside, &extra).unwrap();
    let before = sentinel(&s.outside);
    s.restore(&t, "always", &["--delete"]).ok();
    assert_eq!(sentinel(&s.outside), before);
    assert!(
        fs::symlink_metadata(&extra).is_err(),
        "the extra link stayed"
    );
}
