//! Object-storage features through the `arca` binary: bandwidth limits, the local cache of
//! hot objects (request counts cold vs warm, corrupt cache files), append-only mode (config,
//! flag, and an S3 bucket with versioning and Object Lock on moto).
//!
//! The S3 tests need the moto server of scripts/services/s3.sh (`ARCA_TEST_S3`); without it
//! they skip, except under CI=true where they fail.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::common::{Env, Out, assert_same_tree, restored_path, run_cmd, write_random};

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

/// A repository name no other test run uses.
fn unique(base: &str, what: &str) -> String {
    format!(
        "{base}/{what}-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    )
}

/// `arca -r REPO ARGS` in the sandbox, with a cache directory of the sandbox.
fn arca(env: &Env, repo: &str, args: &[&str]) -> Out {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_CACHE_DIR", env.path("cache"))
        .arg("-r")
        .arg(repo)
        .args(args);
    run_cmd(c, None)
}

/// Like [`arca`], counting the storage requests; returns the output and the counts.
fn counted(env: &Env, repo: &str, args: &[&str]) -> (Out, serde_json::Value) {
    let file = env.path("requests.jsonl");
    let _ = std::fs::remove_file(&file);
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_CACHE_DIR", env.path("cache"))
        .env("ARCA_DEBUG_REQUESTS_FILE", &file)
        .arg("-r")
        .arg(repo)
        .args(args);
    let out = run_cmd(c, None).ok();
    let text = std::fs::read_to_string(&file).expect("request counts written");
    let last = text.lines().last().expect("one line of counts");
    (out, serde_json::from_str(last).expect("counts are JSON"))
}

fn total(counts: &serde_json::Value) -> u64 {
    counts["total"].as_u64().expect("total")
}

fn make_tree(root: &Path, dirs: usize, files: usize, seed: u64) {
    for d in 0..dirs {
        let dir = root.join(format!("dir{d}")).join("nested");
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            write_random(
                &dir.join(format!("f{f}")),
                seed + (d * 100 + f) as u64,
                2000 + f * 300,
            );
        }
    }
}

#[test]
fn bandwidth_limits_pace_backup_and_restore() {
    let env = Env::new();
    let repo = env.repo.to_str().unwrap().to_string();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Incompressible: the bytes sent are the bytes read.
    let size = 3 << 20;
    write_random(&src.join("big"), 7, size);
    arca(&env, &repo, &["init"]).ok();
    let limit_kib = 1024u64;
    let start = Instant::now();
    arca(
        &env,
        &repo,
        &[
            "backup",
            src.to_str().unwrap(),
            "-q",
            "--limit-upload",
            &limit_kib.to_string(),
        ],
    )
    .ok();
    let up = start.elapsed().as_secs_f64();
    // At 1 MiB/s, 3 MiB need at least ~2.75 s beyond the 256 KiB burst; allow 20% slack.
    let lower = (size as f64 - 256.0 * 1024.0) / (limit_kib as f64 * 1024.0) * 0.8;
    assert!(
        up >= lower,
        "limited upload took {up:.2} s, less than {lower:.2} s"
    );

    let target = env.path("out");
    let start = Instant::now();
    arca(
        &env,
        &repo,
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "-q",
            "--limit-download",
            &(2 * limit_kib).to_string(),
        ],
    )
    .ok();
    let down = start.elapsed().as_secs_f64();
    let lower = (size as f64 - 512.0 * 1024.0) / (2.0 * limit_kib as f64 * 1024.0) * 0.8;
    assert!(
        down >= lower,
        "limited download took {down:.2} s, less than {lower:.2} s"
    );
    assert_same_tree(&src, &restored_path(&target, &src));
}

#[test]
fn cache_cuts_requests_for_snapshots_and_ls_on_s3() {
    let Some(base) = s3_base() else { return };
    let env = Env::new();
    let repo = unique(&base, "cache");
    let src = env.path("src");
    make_tree(&src, 12, 4, 1);
    arca(&env, &repo, &["init", "--no-cache"]).ok();
    for i in 0..4 {
        std::fs::write(src.join(format!("changed{i}")), format!("{i}\n")).unwrap();
        arca(
            &env,
            &repo,
            &["backup", "--no-cache", src.to_str().unwrap(), "-q"],
        )
        .ok();
    }
    let cache = env.path("cache");
    assert!(!cache.exists(), "--no-cache writes no cache");

    let (cold, cold_snapshots) = counted(&env, &repo, &["snapshots", "--json"]);
    let (warm, warm_snapshots) = counted(&env, &repo, &["snapshots", "--json"]);
    assert_eq!(cold.stdout, warm.stdout, "same answer from the cache");
    eprintln!("snapshots: cold {cold_snapshots}\nsnapshots: warm {warm_snapshots}");
    assert!(
        total(&warm_snapshots) + 4 <= total(&cold_snapshots),
        "cold {cold_snapshots} vs warm {warm_snapshots}"
    );
    // Only the config is read (it names the cache directory).
    assert_eq!(warm_snapshots["reads"], 1, "{warm_snapshots}");

    let ls = ["ls", "latest", "--json"];
    let (_, _) = counted(&env, &repo, &["snapshots"]);
    let (cold_ls_out, cold_ls) = {
        // Cold for trees: a fresh cache directory.
        std::fs::remove_dir_all(&cache).unwrap();
        counted(&env, &repo, &ls)
    };
    let (warm_ls_out, warm_ls) = counted(&env, &repo, &ls);
    eprintln!("ls: cold {cold_ls}\nls: warm {warm_ls}");
    assert_eq!(cold_ls_out.stdout, warm_ls_out.stdout);
    assert!(
        total(&warm_ls) * 2 <= total(&cold_ls),
        "cold {cold_ls} vs warm {warm_ls}"
    );
    assert_eq!(warm_ls["reads"], 1, "{warm_ls}");
    assert_eq!(warm_ls["range_reads"], 0, "{warm_ls}");

    // A corrupted cache file is ignored, fetched again and replaced.
    let snapshot_copies: Vec<PathBuf> = common::list_files(&cache)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/objects/snapshots/"))
        .collect();
    assert_eq!(snapshot_copies.len(), 4, "{snapshot_copies:?}");
    let victim = &snapshot_copies[0];
    let good = std::fs::read(victim).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    std::fs::write(victim, &bad).unwrap();
    let (again, counts) = counted(&env, &repo, &["snapshots", "--json"]);
    assert_eq!(again.stdout, cold.stdout, "the corrupt copy was not used");
    assert_eq!(
        counts["reads"], 2,
        "config and one snapshot fetched: {counts}"
    );
    assert_eq!(
        std::fs::read(victim).unwrap(),
        good,
        "the copy was replaced"
    );

    // `forget` elsewhere: the next listing drops the cached copy of the removed snapshot.
    arca(
        &env,
        &repo,
        &["forget", "--no-cache", "--keep-last", "3", "-q"],
    )
    .ok();
    counted(&env, &repo, &["snapshots"]);
    let left = common::list_files(&cache)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/objects/snapshots/"))
        .count();
    assert_eq!(left, 3);
}

#[test]
fn append_only_repository_refuses_forget_and_prune() {
    let env = Env::new();
    let repo = env.repo.to_str().unwrap().to_string();
    let src = env.path("src");
    make_tree(&src, 2, 3, 5);
    arca(&env, &repo, &["init", "--append-only"])
        .ok()
        .says("append-only");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.repo.join("config")).unwrap()).unwrap();
    assert_eq!(config["append_only"], true);
    arca(&env, &repo, &["backup", src.to_str().unwrap(), "-q"]).ok();
    arca(&env, &repo, &["backup", src.to_str().unwrap(), "-q"]).ok();
    assert_eq!(env.count_objects("snapshots"), 2);
    arca(&env, &repo, &["forget", "--keep-last", "1"])
        .fails()
        .says("append-only")
        .says("forget is refused");
    arca(&env, &repo, &["prune"])
        .fails()
        .says("prune is refused");
    arca(&env, &repo, &["forget", "--keep-last", "1", "--prune"]).fails();
    assert_eq!(env.count_objects("snapshots"), 2, "nothing was removed");
    let target = env.path("out");
    arca(
        &env,
        &repo,
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "-q",
        ],
    )
    .ok();
    assert_same_tree(&src, &restored_path(&target, &src));
    arca(&env, &repo, &["check"]).ok();
}

#[test]
fn append_only_flag_keeps_backups_working_and_refuses_deletes() {
    let env = Env::new();
    let repo = env.repo.to_str().unwrap().to_string();
    let src = env.path("src");
    make_tree(&src, 2, 3, 9);
    arca(&env, &repo, &["init"]).ok();
    for _ in 0..2 {
        let mut c = env.cmd();
        c.env("ARCA_INSECURE_TEST_KDF", "1")
            .env("ARCA_APPEND_ONLY", "1")
            .args(["backup", "-q", src.to_str().unwrap()]);
        run_cmd(c, None).ok();
    }
    // The backups could not remove their own (shared) locks; they block no other backup
    // and go stale when their process is gone.
    assert_eq!(env.count_objects("locks"), 2);
    arca(
        &env,
        &repo,
        &["--append-only", "forget", "--keep-last", "1"],
    )
    .fails()
    .says("--append-only");
    arca(&env, &repo, &["--append-only", "unlock", "--remove-all"])
        .fails()
        .says("append-only");
    assert_eq!(env.count_objects("locks"), 2);
    // Without the flag (a credential that may delete), maintenance works.
    arca(&env, &repo, &["unlock"]).ok();
    assert_eq!(env.count_objects("locks"), 0);
    arca(&env, &repo, &["forget", "--keep-last", "1", "--prune"]).ok();
    assert_eq!(env.count_objects("snapshots"), 1);
    arca(&env, &repo, &["check"]).ok();
}

/// Runs Python (with boto3) from the moto virtualenv of scripts/services/s3.sh.
fn boto3(script: &str, args: &[&str]) -> std::process::Output {
    let dir = std::env::var("ARCA_SERVICES_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/arca-services",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let python = format!("{dir}/moto/bin/python");
    Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e}"))
}

const BOTO3_SETUP: &str = r#"
import sys, boto3, botocore
endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
"#;

#[test]
fn object_lock_bucket_keeps_backups_and_refuses_deletion() {
    let Some(base) = s3_base() else { return };
    let endpoint = base
        .trim_start_matches("s3:")
        .rsplit_once('/')
        .map(|(e, _)| e.to_string())
        .unwrap();
    let bucket = format!("arca-lock-{}", std::process::id());
    let create = format!(
        "{BOTO3_SETUP}
s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={{'Status': 'Enabled'}})
s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={{
    'ObjectLockEnabled': 'Enabled',
    'Rule': {{'DefaultRetention': {{'Mode': 'COMPLIANCE', 'Days': 1}}}}}})
"
    );
    let o = boto3(&create, &[&endpoint, &bucket]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let env = Env::new();
    let repo = format!("s3:{endpoint}/{bucket}/repo");
    // Object Lock needs Content-MD5 on uploads: arca switches to it at the first refusal
    // (no ARCA_S3_CHECKSUM needed).
    let arca = |env: &Env, repo: &str, args: &[&str]| {
        let mut c = env.cmd();
        c.env("ARCA_INSECURE_TEST_KDF", "1")
            .env("ARCA_CACHE_DIR", env.path("cache"))
            .arg("-r")
            .arg(repo)
            .args(args);
        run_cmd(c, None)
    };
    let src = env.path("src");
    make_tree(&src, 3, 3, 13);
    arca(&env, &repo, &["init"]).ok();
    arca(
        &env,
        &repo,
        &["--append-only", "backup", src.to_str().unwrap(), "-q"],
    )
    .ok();
    arca(
        &env,
        &repo,
        &["--append-only", "backup", src.to_str().unwrap(), "-q"],
    )
    .ok();
    arca(&env, &repo, &["--append-only", "prune"])
        .fails()
        .says("prune is refused");
    let target = env.path("out");
    arca(
        &env,
        &repo,
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "-q",
        ],
    )
    .ok();
    assert_same_tree(&src, &restored_path(&target, &src));

    // Whoever holds the keys cannot destroy a locked version: deleting it is refused, and
    // a plain delete only hides the object behind a delete marker.
    let destroy = format!(
        "{BOTO3_SETUP}
key = [o['Key'] for o in s3.list_objects_v2(Bucket=bucket, Prefix='repo/snapshots/')['Contents']][0]
versions = s3.list_object_versions(Bucket=bucket, Prefix=key)['Versions']
try:
    s3.delete_object(Bucket=bucket, Key=key, VersionId=versions[0]['VersionId'])
    print('DELETED')
except botocore.exceptions.ClientError as e:
    print('REFUSED', e.response['Error']['Code'])
s3.delete_object(Bucket=bucket, Key=key)
left = s3.list_object_versions(Bucket=bucket, Prefix=key)
print('VERSIONS', len(left.get('Versions', [])), 'MARKERS', len(left.get('DeleteMarkers', [])))
"
    );
    let o = boto3(&destroy, &[&endpoint, &bucket]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("REFUSED AccessDenied"), "{text}");
    assert!(text.contains("VERSIONS 1 MARKERS 1"), "{text}");
}
