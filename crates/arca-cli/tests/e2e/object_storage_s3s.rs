//! Object storage on s3s-fs (scripts/services/s3s.sh): a server that checks SigV4 signatures
//! and keeps objects as files. Wrong keys are refused with a message naming the location and
//! where the credentials came from, and nothing is written; with the right keys the objects
//! arca writes are files on disk, and damage done to them there is detected.
//!
//! Needs `ARCA_TEST_S3S` (and the keys and data directory the script exports); without it the
//! tests skip, except under CI=true where they fail.

use crate::common;

use std::path::{Path, PathBuf};

use crate::common::{Env, Out, assert_same_tree, restored_path, run_cmd, write_random};

struct S3s {
    base: String,
    access_key: String,
    secret_key: String,
    /// Directory of the bucket on disk.
    bucket_dir: PathBuf,
}

fn s3s() -> Option<S3s> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("ARCA_TEST_S3S"),
        var("ARCA_TEST_S3S_ACCESS_KEY"),
        var("ARCA_TEST_S3S_SECRET_KEY"),
        var("ARCA_TEST_S3S_DATA"),
    ) {
        (Some(base), Some(access_key), Some(secret_key), Some(data)) => {
            let bucket = base.rsplit('/').next().unwrap_or_default().to_string();
            Some(S3s {
                base,
                access_key,
                secret_key,
                bucket_dir: Path::new(&data).join(bucket),
            })
        }
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "ARCA_TEST_S3S is not set: s3s-fs is missing (scripts/services/s3s.sh start)"
            );
            eprintln!("skipping: ARCA_TEST_S3S not set (run scripts/services/s3s.sh start)");
            None
        }
    }
}

fn arca(env: &Env, repo: &str, key: &str, secret: &str, args: &[&str]) -> Out {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_CACHE_DIR", env.path("cache"))
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_SESSION_TOKEN")
        .env("ARCA_RETRY_ATTEMPTS", "2")
        .env("ARCA_RETRY_BASE_MS", "10")
        .arg("-r")
        .arg(repo)
        .args(args);
    run_cmd(c, None)
}

fn prefix(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    )
}

#[test]
fn wrong_keys_are_refused_clearly_and_nothing_is_written() {
    let Some(s) = s3s() else { return };
    let env = Env::new();
    let name = prefix("wrong-keys");
    let repo = format!("{}/{name}", s.base);
    let out = arca(&env, &repo, &s.access_key, "not-the-secret", &["init"])
        .fails()
        .says("access denied")
        .says(&repo)
        .says("SignatureDoesNotMatch")
        .says("credentials came from the environment (AWS_ACCESS_KEY_ID");
    assert_ne!(out.code, 0);
    arca(&env, &repo, "unknown-key", &s.secret_key, &["init"])
        .fails()
        .says("access denied")
        .says("AWS_ACCESS_KEY_ID");
    assert!(
        !s.bucket_dir.join(&name).exists(),
        "nothing written under {name}"
    );
    // A repository made with the right keys is not readable with wrong ones either.
    arca(&env, &repo, &s.access_key, &s.secret_key, &["init"]).ok();
    arca(&env, &repo, &s.access_key, "not-the-secret", &["snapshots"])
        .fails()
        .says("access denied")
        .says(&repo);
}

#[test]
fn objects_are_files_on_disk_and_damage_there_is_detected() {
    let Some(s) = s3s() else { return };
    let env = Env::new();
    let name = prefix("on-disk");
    let repo = format!("{}/{name}", s.base);
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..6 {
        write_random(
            &src.join("sub").join(format!("f{i}")),
            i,
            200_000 * (i as usize + 1),
        );
    }
    // A large file: several packs, each signed and checked by the server.
    write_random(&src.join("large"), 77, 20 << 20);
    let (k, sk) = (s.access_key.as_str(), s.secret_key.as_str());
    arca(&env, &repo, k, sk, &["init"]).ok();
    arca(&env, &repo, k, sk, &["backup", "-q", src.to_str().unwrap()]).ok();
    let root = s.bucket_dir.join(&name);
    assert!(root.join("config").is_file());
    let packs = common::list_files(&root.join("data"));
    assert!(!packs.is_empty());
    assert_eq!(common::list_files(&root.join("snapshots")).len(), 1);
    assert_eq!(common::list_files(&root.join("keys")).len(), 1);
    let target = env.path("out");
    arca(
        &env,
        &repo,
        k,
        sk,
        &[
            "restore",
            "latest",
            "-q",
            "--target",
            target.to_str().unwrap(),
        ],
    )
    .ok();
    assert_same_tree(&src, &restored_path(&target, &src));
    arca(&env, &repo, k, sk, &["check", "--read-data"]).ok();

    // Damage an index file on the server's disk: `check` reads the storage, not the (good)
    // cached copy, and finds it.
    let index_files = common::list_files(&root.join("index"));
    let index_file = &index_files[0];
    let good_index = std::fs::read(index_file).unwrap();
    let mut bad_index = good_index.clone();
    bad_index[40] ^= 0x01;
    std::fs::write(index_file, &bad_index).unwrap();
    let index_id = index_file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    arca(&env, &repo, k, sk, &["check"])
        .fails()
        .says(&index_id[..16]);
    std::fs::write(index_file, &good_index).unwrap();

    // Flip one byte of the largest pack file on the server's disk.
    let victim = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(victim, &bytes).unwrap();
    let pack_id = victim.file_name().unwrap().to_string_lossy().into_owned();
    arca(&env, &repo, k, sk, &["check", "--read-data"])
        .fails()
        .says(&pack_id[..16]);
}
