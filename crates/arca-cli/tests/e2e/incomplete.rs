//! A file that changes while it is read is reported, and the snapshot is kept but
//! marked incomplete (exit code 3).

use std::process::Command;

const ARCA: &str = env!("CARGO_BIN_EXE_arca");

#[test]
fn file_changing_while_read_marks_snapshot_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let run = |args: &[&str]| {
        Command::new(ARCA)
            .arg("-r")
            .arg(&repo)
            .args(args)
            .env("ARCA_PASSWORD", "pw")
            .env("ARCA_INSECURE_TEST_KDF", "1")
            .output()
            .unwrap()
    };
    assert!(run(&["init"]).status.success());
    // /proc files report size 0 but have content: to arca they change while read.
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("stable.txt"), b"stable").unwrap();
    let o = run(&[
        "backup",
        "--json",
        src.to_str().unwrap(),
        "/proc/self/status",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["incomplete"], true);
    let errors = summary["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["path"] == "/proc/self/status"
            && e["reason"]
                .as_str()
                .unwrap()
                .contains("changed while it was read")),
        "{errors:?}"
    );
    // The snapshot exists, says it is incomplete, and the stable file restores.
    let o = run(&["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["incomplete"], true);
    let target = dir.path().join("out");
    let o = run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let restored = target
        .join(src.strip_prefix("/").unwrap())
        .join("stable.txt");
    assert_eq!(std::fs::read(restored).unwrap(), b"stable");
}
