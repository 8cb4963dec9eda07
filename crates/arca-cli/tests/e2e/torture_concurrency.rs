//! Torture: concurrency on one repository, local and on S3 (s3s-fs). Eight backups, a prune
//! and a check run at once: every snapshot restores byte for byte, `check --read-data` finds
//! every blob, no lock is left behind. Two hosts backing up the same data deduplicate
//! against each other.
//!
//! Rounds: ARCA_TORTURE_CONCURRENT_ROUNDS (short 2, long 10; on S3 short 1, long 5);
//! writers per round: ARCA_TORTURE_WRITERS (8).

use crate::torture_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::torture_support::*;

fn spawn<T: Target + ?Sized>(env: &T, args: &[&std::ffi::OsStr]) -> Child {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_RETRY_LOCK", "120s")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().expect("spawn arca")
}

/// Waits for a child with a deadline (a hang fails the test instead of blocking CI).
fn finish(mut child: Child, what: &str, limit: Duration) -> (i32, String) {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eight_backups_a_prune_and_a_check_at_once() {
    let test = "eight_backups_a_prune_and_a_check_at_once";
    let rounds = count("ARCA_TORTURE_CONCURRENT_ROUNDS", 2, 10);
    let env = Env::new();
    writers_prune_and_check_at_once(&env, test, rounds);
}

#[test]
fn eight_backups_a_prune_and_a_check_at_once_on_s3() {
    let Some(s3) = torture_support::s3s::s3s() else {
        return;
    };
    let test = "eight_backups_a_prune_and_a_check_at_once_on_s3";
    let rounds = count("ARCA_TORTURE_CONCURRENT_ROUNDS", 1, 5);
    let bucket = torture_support::s3s::Bucket::new(&s3, "concurrency");
    let repo = bucket.repo("repo");
    writers_prune_and_check_at_once(&repo, test, rounds);
}

/// `rounds` rounds of ARCA_TORTURE_WRITERS (8) backups, a prune and a check at once on
/// `env`'s repository; everything is checked after each round and at the end.
fn writers_prune_and_check_at_once<T: Target>(env: &T, test: &str, rounds: u64) {
    let seed = seed(test, 0x8B);
    let writers = count("ARCA_TORTURE_WRITERS", 8, 8);
    run(env, &["init"]).ok();
    // Garbage for the prune: a snapshot that is forgotten before each round.
    let junk = env.path("junk");
    let mut known: BTreeMap<String, (PathBuf, Digest)> = BTreeMap::new();
    let (mut snapshots_made, mut prunes_ran) = (0u64, 0u64);
    for round in 0..rounds {
        fs::create_dir_all(&junk).unwrap();
        write_random(&junk.join("junk.bin"), seed ^ round ^ 0xAAAA, 400_000);
        run_os(
            &env,
            &[
                std::ffi::OsStr::new("backup"),
                "-q".as_ref(),
                "--tag".as_ref(),
                "junk".as_ref(),
                junk.as_os_str(),
            ],
        )
        .ok();
        let junk_left: Vec<String> = snapshots(&env, PASSWORD)
            .into_iter()
            .filter(|(_, s)| s["tags"].to_string().contains("junk"))
            .map(|(id, _)| id)
            .collect();
        for id in junk_left {
            run(&env, &["forget", &id]).ok();
        }
        // Each writer: its own files, plus one file every writer shares.
        let mut sources = Vec::new();
        for w in 0..writers {
            let dir = env.path(&format!("w{w}"));
            fs::create_dir_all(&dir).unwrap();
            write_random(&dir.join("own.bin"), seed ^ (round << 8) ^ w, 250_000);
            write_random(&dir.join("shared.bin"), seed ^ round, 300_000);
            fs::write(dir.join("round.txt"), format!("round {round} writer {w}\n")).unwrap();
            sources.push(dir);
        }
        let mut children = Vec::new();
        for (w, dir) in sources.iter().enumerate() {
            let host = format!("host{w}");
            let args = [
                std::ffi::OsStr::new("backup"),
                "-q".as_ref(),
                "--host".as_ref(),
                host.as_ref(),
                dir.as_os_str(),
            ];
            children.push((format!("backup {w}"), spawn(&env, &args)));
        }
        let prune = spawn(
            &env,
            &["prune".as_ref(), "--max-unused".as_ref(), "0%".as_ref()],
        );
        let check = spawn(&env, &["check".as_ref()]);
        for (what, c) in children {
            let (code, err) = finish(c, &what, Duration::from_secs(300));
            assert_eq!(code, 0, "round {round}: {what} failed: {err}");
        }
        let (code, err) = finish(prune, "prune", Duration::from_secs(300));
        assert_eq!(code, 0, "round {round}: prune failed: {err}");
        prunes_ran += 1;
        let (code, err) = finish(check, "check", Duration::from_secs(300));
        assert_eq!(code, 0, "round {round}: concurrent check failed: {err}");
        for (id, s) in snapshots(&env, PASSWORD) {
            if known.contains_key(&id) {
                continue;
            }
            let path = PathBuf::from(s["paths"][0].as_str().unwrap());
            assert!(path.starts_with(env.path("")), "{path:?}");
            known.insert(id, (path.clone(), digest(&path)));
            snapshots_made += 1;
        }
        assert_eq!(
            known.len() as u64,
            (round + 1) * writers,
            "round {round}: a snapshot is missing"
        );
        // The next round changes every source; snapshots of this round must still restore.
        let ctx = format!("round {round}");
        assert_check(&env, PASSWORD, true, &ctx);
        for (id, (path, want)) in &known {
            assert_restores(&env, PASSWORD, id, path, want, &ctx);
        }
        assert_eq!(
            files_in(&env.objects().join("locks")),
            0,
            "{ctx}: locks left behind"
        );
    }
    // A final prune after everything: nothing is lost, nothing unused is left.
    run(&env, &["prune", "--max-unused", "0%"]).ok();
    let warnings = assert_check(&env, PASSWORD, true, "end");
    assert!(warnings.is_empty(), "{warnings:?}");
    for (id, (path, want)) in &known {
        assert_restores(&env, PASSWORD, id, path, want, "end");
    }
    assert_eq!(
        files_in(&env.objects().join("locks")),
        0,
        "locks left behind"
    );
    figure(
        test,
        &format!(
            "{rounds} rounds of {writers} concurrent backups + prune + check: {snapshots_made} \
             snapshots, {prunes_ran} prunes, blobs lost 0, locks left 0"
        ),
    );
    total("writers", &[rounds * writers, 0]);
}

#[test]
fn two_hosts_deduplicate_against_each_other() {
    let test = "two_hosts_deduplicate_against_each_other";
    let env = Env::new();
    run(&env, &["init"]).ok();
    let src = env.path("data");
    fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..6 {
        write_random(&src.join(format!("f{i}.bin")), 500 + i, 700_000);
    }
    small_tree(&src.join("sub"), 20, 9);
    let backup = |host: &str, path: &std::path::Path| {
        run_os(
            &env,
            &[
                std::ffi::OsStr::new("backup"),
                "--json".as_ref(),
                "--host".as_ref(),
                host.as_ref(),
                path.as_os_str(),
            ],
        )
        .ok()
        .summary()
    };
    let a = backup("alpha", &src);
    let b = backup("beta", &src);
    let total = u(&a, "total_bytes");
    let (added_a, added_b) = (u(&a, "bytes_added"), u(&b, "bytes_added"));
    assert!(added_a >= total / 2, "{a}");
    assert!(
        added_b * 100 < total,
        "the second host stored {added_b} of {total} bytes again: {b}"
    );
    // The same content under another path on a third host: only trees are new.
    let copy = env.path("elsewhere");
    sh(std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&copy));
    let c = backup("gamma", &copy);
    let added_c = u(&c, "bytes_added");
    assert!(added_c * 100 < total, "{c}");
    // The three snapshots are separate (no parent across hosts) and all restore.
    let snaps = snapshots(&env, PASSWORD);
    assert_eq!(snaps.len(), 3);
    for (id, s) in &snaps {
        let p = PathBuf::from(s["paths"][0].as_str().unwrap());
        assert_restores(&env, PASSWORD, id, &p, &digest(&p), test);
    }
    figure(
        test,
        &format!(
            "{total} bytes: first host stored {added_a}, second host {added_b}, a third \
             host with a copy under another path {added_c}"
        ),
    );
}
