//! Torture: a full disk, on the repository and on the restore target. Both live on small
//! tmpfs mounts: the run fails with a clear error and a non-zero exit, the repository stays
//! valid (`check` passes, earlier snapshots restore), and once space is freed (the mount
//! grows) the next run succeeds.
//!
//! Needs `mount -t tmpfs` (root with CAP_SYS_ADMIN); elsewhere the tests print a note and
//! pass, since whether CI may mount is not known.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::torture_support::*;

/// A tmpfs mounted for the test; unmounted on drop (also on panic).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "6m") at `path`, or None when mounting is refused.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Grows (or shrinks) the mount: "space is freed".
    fn resize(&self, size: &str) {
        sh(Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn mount_or_skip(path: &Path, size: &str, test: &str) -> Option<Tmpfs> {
    let m = Tmpfs::mount(path, size);
    if m.is_none() {
        eprintln!("{test}: skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
    }
    m
}

fn says_no_space(out: &Out) -> bool {
    let all = format!("{}{}", out.stdout_str(), out.stderr).to_lowercase();
    all.contains("no space") || all.contains("space left") || all.contains("disk full")
}

#[test]
fn repository_disk_full_then_space_freed() {
    let test = "repository_disk_full_then_space_freed";
    let env = Env::new();
    let Some(mnt) = mount_or_skip(&env.path("small"), "6m", test) else {
        return;
    };
    // The repository lives on the small mount (the sandbox's repo path is used by env.cmd).
    let repo = mnt.path.join("repo");
    fs::create_dir(&repo).unwrap();
    fs::remove_dir_all(&env.repo).ok();
    std::os::unix::fs::symlink(&repo, &env.repo).unwrap();
    run(&env, &["init"]).ok();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("first.bin"), 1, 1_500_000);
    run_os(&env, &["backup".as_ref(), "-q".as_ref(), src.as_os_str()]).ok();
    let first = snapshots(&env, PASSWORD)[0].0.clone();
    let first_digest = digest(&src);

    // 8 MB more than the 6 MB mount holds.
    for i in 0..4 {
        write_random(&src.join(format!("big{i}.bin")), 10 + i, 2_000_000);
    }
    let out = run_os(&env, &["backup".as_ref(), src.as_os_str()]);
    assert!(
        out.code != 0 && out.code != 3,
        "a backup into a full disk must fail: exit {}",
        out.code
    );
    assert!(says_no_space(&out), "no clear error: {}", out.stderr);
    assert_eq!(snapshots(&env, PASSWORD).len(), 1, "a snapshot was written");
    let msg = out.stderr.lines().last().unwrap_or_default().to_string();
    // The repository is valid: check passes (unindexed packs are only warnings), the first
    // snapshot restores. (Reading works on a full disk.)
    assert_check(&env, PASSWORD, true, "disk full");
    assert_restores(&env, PASSWORD, &first, &src, &first_digest, "disk full");
    let leftovers = temp_files(&repo);

    // Space freed: the next backup succeeds, reusing what the failed one stored.
    mnt.resize("64m");
    let sum = run_os(
        &env,
        &["backup".as_ref(), "--json".as_ref(), src.as_os_str()],
    )
    .ok()
    .summary();
    let id = s(&sum, "snapshot_id").to_string();
    assert_check(&env, PASSWORD, true, "after space was freed");
    assert_restores(
        &env,
        PASSWORD,
        &id,
        &src,
        &digest(&src),
        "after space was freed",
    );
    assert_eq!(files_in(&repo.join("locks")), 0, "locks left");
    figure(
        test,
        &format!(
            "backup of 9.5 MB into a 6 MiB repository disk: failed with {msg:?}; check passed, \
             earlier snapshot restored; temporary files left {leftovers}; after growing the \
             disk the next backup added {} of {} bytes and restored",
            u(&sum, "bytes_added"),
            u(&sum, "total_bytes")
        ),
    );
}

#[test]
fn restore_target_disk_full_then_space_freed() {
    let test = "restore_target_disk_full_then_space_freed";
    let env = Env::new();
    let target_dir = env.path("target");
    let Some(mnt) = mount_or_skip(&target_dir, "3m", test) else {
        return;
    };
    run(&env, &["init"]).ok();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        write_random(&src.join(format!("f{i}.bin")), 20 + i, 1_500_000);
    }
    let sum = run_os(
        &env,
        &["backup".as_ref(), "--json".as_ref(), src.as_os_str()],
    )
    .ok()
    .summary();
    let id = s(&sum, "snapshot_id").to_string();
    let repo_before = list_files(&env.repo).len();
    let t = mnt.path.to_string_lossy().into_owned();
    let out = run(&env, &["restore", &id, "--target", &t]);
    assert!(out.code != 0, "a restore onto a full disk must fail");
    assert!(says_no_space(&out), "no clear error: {}", out.stderr);
    let msg = out
        .stderr
        .lines()
        .find(|l| l.to_lowercase().contains("space"))
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        list_files(&env.repo).len(),
        repo_before,
        "restore wrote to the repo"
    );
    assert_check(&env, PASSWORD, false, "restore target full");
    mnt.resize("32m");
    run(&env, &["restore", &id, "--target", &t, "-q"]).ok();
    let got = digest(&restored_path(&mnt.path, &src));
    assert!(digest_diff(&digest(&src), &got).is_empty());
    figure(
        test,
        &format!(
            "restore of 6 MB onto a 3 MiB disk: failed with {msg:?}; repository untouched; \
             after growing the disk the restore completed byte for byte"
        ),
    );
}
