//! Forget, prune and copy under crashes: kill -9 at random moments, then every snapshot
//! that should survive still checks and restores byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ARCA: &str = env!("CARGO_BIN_EXE_arca");

fn arca(repo: &Path, args: &[&str]) -> Output {
    Command::new(ARCA)
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("ARCA_PASSWORD", "maint-pw")
        .env("ARCA_INSECURE_TEST_KDF", "1")
        .env_remove("ARCA_REPOSITORY")
        .output()
        .expect("run arca")
}

fn ok(repo: &Path, args: &[&str]) -> String {
    let o = arca(repo, args);
    assert!(
        o.status.success(),
        "arca {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Writes generation `g` of the source tree: some files change every generation.
fn write_generation(src: &Path, g: u64) {
    std::fs::create_dir_all(src).unwrap();
    for f in 0..6u64 {
        // File f changes in generations where g % (f+1) == 0.
        let version = g - g % (f + 1);
        let mut r = Rng(0x1234_5678 ^ (f << 32) ^ version.wrapping_mul(0x9e37_79b9));
        std::fs::write(src.join(format!("f{f}.bin")), r.bytes(1_500_000)).unwrap();
    }
}

fn snapshot_ids(repo: &Path) -> Vec<String> {
    let out = ok(repo, &["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let s = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(s.success());
}

fn dir_digest(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((
                    e.path().strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Builds a repository with 6 snapshots and keeps the expected content of each.
/// Relative path and content of every file of a tree.
type TreeContent = Vec<(PathBuf, Vec<u8>)>;

fn fixture(base: &Path) -> (PathBuf, Vec<(String, TreeContent)>) {
    let repo = base.join("repo");
    let src = base.join("src");
    ok(&repo, &["init"]);
    let mut expected = Vec::new();
    for g in 1..=6u64 {
        write_generation(&src, g);
        let day = format!("2026-01-{:02} 12:00:00", g);
        ok(
            &repo,
            &["backup", src.to_str().unwrap(), "--time", &day, "-q"],
        );
        let id = snapshot_ids(&repo).pop().unwrap();
        expected.push((id, dir_digest(&src)));
    }
    (repo, expected)
}

fn assert_restores(
    repo: &Path,
    id: &str,
    expected: &[(PathBuf, Vec<u8>)],
    scratch: &Path,
    src: &Path,
) {
    let target = scratch.join(format!("restore-{id}"));
    let _ = std::fs::remove_dir_all(&target);
    ok(
        repo,
        &["restore", id, "--target", target.to_str().unwrap(), "-q"],
    );
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        dir_digest(&restored),
        expected,
        "snapshot {id} restores identically"
    );
    std::fs::remove_dir_all(&target).unwrap();
}

fn kill_at(repo: &Path, args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(ARCA)
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("ARCA_PASSWORD", "maint-pw")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let _ = child.wait();
    finished
}

#[test]
fn prune_killed_at_random_points_loses_nothing() {
    let base = tempfile::tempdir().unwrap();
    let (pristine, expected) = fixture(base.path());
    let src = base.path().join("src");
    // Forget the older half: the prune then deletes and repacks.
    ok(&pristine, &["forget", "--keep-last", "3"]);
    let kept: Vec<_> = expected[3..].to_vec();
    // How long a full prune takes, to spread the kill points over it.
    let probe = base.path().join("probe");
    copy_dir(&pristine, &probe);
    let t = Instant::now();
    ok(&probe, &["prune", "--max-unused", "0%"]);
    let full = t.elapsed().as_micros().max(1000) as u64;
    let runs: u64 = std::env::var("ARCA_TORTURE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut rng = Rng(42);
    let mut completed = 0;
    for run in 0..runs {
        let repo = base.path().join(format!("run{run}"));
        copy_dir(&pristine, &repo);
        let delay = Duration::from_micros(rng.next() % (full + full / 4));
        if kill_at(&repo, &["prune", "--max-unused", "0%"], delay) {
            completed += 1;
        }
        // The lock of the killed process is stale (its pid is gone): check ignores it.
        let o = arca(&repo, &["check"]);
        assert!(
            o.status.success(),
            "check after a prune killed at {delay:?} (run {run}): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for (id, files) in &kept {
            assert_restores(&repo, id, files, base.path(), &src);
        }
        // Finishing the prune afterwards works and leaves a clean repository.
        ok(&repo, &["unlock"]);
        ok(&repo, &["prune", "--max-unused", "0%"]);
        let o = ok(&repo, &["check", "--read-data"]);
        assert!(o.contains("no errors"), "{o}");
        std::fs::remove_dir_all(&repo).unwrap();
    }
    eprintln!(
        "{runs} prunes killed at random points ({completed} had already finished); nothing lost"
    );
}

#[test]
fn copy_killed_then_resumed() {
    let base = tempfile::tempdir().unwrap();
    let (src_repo, expected) = fixture(base.path());
    let src = base.path().join("src");
    let dst = base.path().join("dst");
    let o = Command::new(ARCA)
        .args([
            "-r",
            dst.to_str().unwrap(),
            "init",
            "--copy-chunker-params",
            "--from-repo",
        ])
        .arg(&src_repo)
        .env("ARCA_PASSWORD", "maint-pw")
        .env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_FROM_PASSWORD", "maint-pw")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let copy = |wait: Option<Duration>| {
        let mut c = Command::new(ARCA);
        c.args(["-r", dst.to_str().unwrap(), "copy", "--from-repo"])
            .arg(&src_repo)
            .env("ARCA_PASSWORD", "maint-pw")
            .env("ARCA_FROM_PASSWORD", "maint-pw")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        match wait {
            Some(d) => {
                std::thread::sleep(d);
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    };
    let mut rng = Rng(7);
    for _ in 0..4 {
        copy(Some(Duration::from_millis(rng.next() % 150)));
        let o = arca(&dst, &["check"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    copy(None);
    copy(None);
    let ids = snapshot_ids(&dst);
    assert_eq!(
        ids.len(),
        expected.len(),
        "every snapshot copied exactly once"
    );
    let o = ok(&dst, &["check", "--read-data"]);
    assert!(o.contains("no errors"), "{o}");
    // The copies restore like the originals (matched by time order).
    for (copied, (_, files)) in ids.iter().zip(&expected) {
        assert_restores(&dst, copied, files, base.path(), &src);
    }
}

#[test]
fn forget_applies_gfs_and_prune_frees_space() {
    let base = tempfile::tempdir().unwrap();
    let (repo, _) = fixture(base.path());
    let before: u64 = dir_size(&repo.join("data"));
    let out = ok(
        &repo,
        &[
            "forget",
            "--keep-daily",
            "2",
            "--json",
            "--prune",
            "--max-unused",
            "0%",
        ],
    );
    let first = out.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(v["removed"].as_array().unwrap().len(), 4);
    assert_eq!(snapshot_ids(&repo).len(), 2);
    let after = dir_size(&repo.join("data"));
    assert!(after < before, "prune freed space: {before} -> {after}");
    let o = ok(&repo, &["check", "--read-data"]);
    assert!(o.contains("no errors"), "{o}");
    // No policy at all is refused.
    let o = arca(&repo, &["forget"]);
    assert_eq!(o.status.code(), Some(1));
}

fn dir_size(d: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                n += m.len();
            }
        }
    }
    n
}
