//! Damage to each kind of repository object is detected by `check` (or by opening the
//! repository) and named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::list_files;

const ARCA: &str = env!("CARGO_BIN_EXE_arca");

fn arca(repo: &Path, args: &[&str]) -> Output {
    Command::new(ARCA)
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("ARCA_PASSWORD", "pw")
        .env("ARCA_INSECURE_TEST_KDF", "1")
        .output()
        .unwrap()
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

/// A fresh repository with two snapshots; returns its path.
fn repo(base: &Path, name: &str) -> PathBuf {
    let src = base.join(format!("src-{name}"));
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/a.txt"), "alpha ".repeat(5000)).unwrap();
    std::fs::write(
        src.join("b.bin"),
        (0..300_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let repo = base.join(name);
    assert!(arca(&repo, &["init"]).status.success());
    assert!(
        arca(&repo, &["backup", src.to_str().unwrap(), "-q"])
            .status
            .success()
    );
    std::fs::write(src.join("c.txt"), "more").unwrap();
    assert!(
        arca(&repo, &["backup", src.to_str().unwrap(), "-q"])
            .status
            .success()
    );
    repo
}

fn check_names(repo: &Path, args: &[&str], object: &str) {
    let o = arca(repo, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "check must fail for damaged {object}: {err}"
    );
    assert!(err.contains(object), "check names {object}: {err}");
}

fn rel(repo: &Path, p: &Path) -> String {
    p.strip_prefix(repo).unwrap().to_string_lossy().into_owned()
}

#[test]
fn each_object_kind_damaged_is_named() {
    let base = tempfile::tempdir().unwrap();

    // Index file: flipped byte.
    let r = repo(base.path(), "index");
    let f = list_files(&r.join("index")).remove(0);
    flip(&f, 50);
    check_names(&r, &["check"], &rel(&r, &f));

    // Snapshot: flipped byte.
    let r = repo(base.path(), "snapshot");
    let f = list_files(&r.join("snapshots")).remove(0);
    flip(&f, 40);
    check_names(&r, &["check"], &rel(&r, &f));

    // Snapshot: truncated.
    let r = repo(base.path(), "snapshot-trunc");
    let f = list_files(&r.join("snapshots")).remove(0);
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() / 2]).unwrap();
    check_names(&r, &["check"], &rel(&r, &f));

    // Every pack, a zeroed range: check --read-data names the pack.
    let r = repo(base.path(), "packs");
    for (i, f) in list_files(&r.join("data")).into_iter().enumerate() {
        let copy = base.path().join(format!("packs-{i}"));
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(&r)
                .arg(&copy)
                .status()
                .unwrap()
                .success()
        );
        let g = copy.join(f.strip_prefix(&r).unwrap());
        let mut b = std::fs::read(&g).unwrap();
        let (mid, len) = (b.len() / 2, b.len());
        for x in &mut b[mid..(mid + 16).min(len)] {
            *x = 0;
        }
        std::fs::write(&g, b).unwrap();
        check_names(&copy, &["check", "--read-data"], &rel(&copy, &g));
    }

    // Config: truncated -> a clear error, exit 1, nothing written.
    let r = repo(base.path(), "config");
    let before = list_files(&r).len();
    std::fs::write(r.join("config"), b"{\"version\": 1, \"id\"").unwrap();
    let o = arca(&r, &["snapshots"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("config"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(list_files(&r).len(), before);

    // Key file: malformed JSON beside a good second key -> check names it.
    let r = repo(base.path(), "key");
    let pwfile = base.path().join("pw2");
    std::fs::write(&pwfile, "second").unwrap();
    assert!(
        arca(
            &r,
            &[
                "key",
                "add",
                "--new-password-file",
                pwfile.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    let keys = list_files(&r.join("keys"));
    let o = arca(&r, &["key", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let current = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = keys.iter().find(|k| !k.ends_with(&current)).unwrap();
    std::fs::write(other, b"{ not json").unwrap();
    check_names(&r, &["check"], &rel(&r, other));
}
