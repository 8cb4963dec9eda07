//! The core commands against a real S3-compatible server (moto, started by scripts/test):
//! init, backup, restore, forget, prune, check, and copy from a local repository to S3.

use std::path::Path;
use std::process::{Command, Output};

const ARCA: &str = env!("CARGO_BIN_EXE_arca");

fn s3_base() -> Option<String> {
    match std::env::var("ARCA_TEST_S3") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "ARCA_TEST_S3 is not set: the S3 server is missing (scripts/test starts it)"
            );
            eprintln!("skipping: ARCA_TEST_S3 not set (run scripts/services/s3.sh start)");
            None
        }
    }
}

fn arca(repo: &str, args: &[&str]) -> Output {
    Command::new(ARCA)
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("ARCA_PASSWORD", "s3-pw")
        .env("ARCA_FROM_PASSWORD", "s3-pw")
        .env("ARCA_INSECURE_TEST_KDF", "1")
        // The object-store cache of these runs, out of the user's home.
        .env(
            "ARCA_CACHE_DIR",
            std::env::temp_dir().join("arca-s3-test-cache"),
        )
        .output()
        .unwrap()
}

fn ok(repo: &str, args: &[&str]) -> String {
    let o = arca(repo, args);
    assert!(
        o.status.success(),
        "arca {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write_tree(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut x = seed | 1;
    for i in 0..5 {
        let data: Vec<u8> = (0..(300_000 * (i + 1)))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(dir.join("sub").join(format!("f{i}")), data).unwrap();
    }
    std::fs::write(dir.join("text.txt"), "hello s3\n".repeat(1000)).unwrap();
}

fn same_tree(a: &Path, b: &Path) {
    let o = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn core_commands_on_s3() {
    let Some(base) = s3_base() else { return };
    let unique = format!(
        "{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    let repo = format!("{base}/e2e-{unique}");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_tree(&src, 1);
    ok(&repo, &["init"]);
    ok(&repo, &["backup", src.to_str().unwrap(), "-q"]);
    std::fs::write(src.join("text.txt"), "changed\n").unwrap();
    ok(&repo, &["backup", src.to_str().unwrap(), "-q"]);
    let target = dir.path().join("out");
    ok(
        &repo,
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--verify",
            "-q",
        ],
    );
    same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    assert!(ok(&repo, &["check", "--read-data"]).contains("no errors"));
    ok(
        &repo,
        &[
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--max-unused",
            "0%",
            "-q",
        ],
    );
    assert!(ok(&repo, &["check", "--read-data"]).contains("no errors"));
    // Wrong password: exit 12, as on local disk.
    let o = Command::new(ARCA)
        .args(["-r", &repo, "snapshots"])
        .env("ARCA_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(12));

    // 3-2-1: copy a local repository's snapshots to S3, only new data the second time.
    let local = dir.path().join("local");
    let local = local.to_str().unwrap();
    ok(local, &["init"]);
    ok(local, &["backup", src.to_str().unwrap(), "-q"]);
    let offsite = format!("{base}/offsite-{unique}");
    ok(
        &offsite,
        &["init", "--copy-chunker-params", "--from-repo", local],
    );
    ok(&offsite, &["copy", "--from-repo", local]);
    let again = ok(&offsite, &["copy", "--from-repo", local, "--json"]);
    let v: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(
        v["copied"].as_array().unwrap().len(),
        0,
        "nothing copied twice"
    );
    let t2 = dir.path().join("out2");
    ok(
        &offsite,
        &["restore", "latest", "--target", t2.to_str().unwrap(), "-q"],
    );
    same_tree(&src, &t2.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn missing_bucket_and_unreachable_endpoint_fail_clearly() {
    let Some(base) = s3_base() else { return };
    let endpoint = base.trim_end_matches("/arca-test");
    let o = arca(&format!("{endpoint}/no-such-bucket-arca/x"), &["init"]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no-such-bucket-arca"), "{err}");
    let o = Command::new(ARCA)
        .args(["-r", "s3:http://127.0.0.1:1/bucket", "snapshots"])
        .env("ARCA_PASSWORD", "x")
        .env("ARCA_RETRY_ATTEMPTS", "2")
        .env("ARCA_RETRY_BASE_MS", "10")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
