//! Torture: `kill -9` at seeded random moments during backup, forget+prune, copy (local to
//! S3, S3 to local, S3 to S3) and key changes on an S3 repository, served by s3s-fs (real
//! SigV4 checks, objects as files on its disk; scripts/services/s3s.sh). Each test works in
//! a bucket of its own. After every kill `check` passes (warnings about packs no index
//! lists are the designed leftovers; with `--read-data` after every kill in the short form,
//! after every fifth in the long form, see [`read_data_after_kill`], and at the end of
//! each test), every snapshot completed before a kill restores byte for byte (each one
//! after its round, a seeded sample again at the end, all of them in the long form), the
//! next backup succeeds and stores only what is new, and `unlock` removes every lock and
//! delete probe the killed runs left.
//!
//! Short form (CI): 102 kill points in about 100 s (the local ones of torture_crash.rs add
//! 260). Long form (510 kill points): `scripts/torture long` (ARCA_TORTURE=long), or the
//! counts of torture_crash.rs:
//! ARCA_TORTURE_BACKUP_ROUNDS, ARCA_TORTURE_PRUNE_ROUNDS, ARCA_TORTURE_COPY_ROUNDS,
//! ARCA_TORTURE_KEY_KILLS; ARCA_TORTURE_SEED replays a schedule.
//!
//! Needs `ARCA_TEST_S3S` (and the keys and data directory that `scripts/services/s3s.sh
//! start` exports); without it the tests skip, except under CI=true where they fail.

use crate::common;

use std::collections::BTreeMap;
use std::ffi::OsStr;

use crate::common::*;
use crate::torture_support::s3s::*;
use crate::torture_support::*;

/// Smaller than the local test's files: every object crosses HTTP, and the debug build
/// signs and checks every request.
const FILES: u64 = 6;
const FILE_SIZE: usize = 200 * 1024;

/// Ids of the snapshots present now, oldest first.
fn snapshot_ids<T: Target + ?Sized>(t: &T, password: &str) -> Vec<String> {
    snapshots(t, password).into_iter().map(|s| s.0).collect()
}

#[test]
fn s3_backup_killed_at_random_points() {
    let Some(s3) = s3s() else { return };
    let test = "s3_backup_killed_at_random_points";
    let seed = seed(test, 0x53B4);
    let rounds = count("ARCA_TORTURE_BACKUP_ROUNDS", 15, 75);
    let kills_per_round = 2;
    let mut rng = Rng::new(seed);
    let bucket = Bucket::new(&s3, "crash-backup");
    let repo = bucket.repo("repo");
    run(&repo, &["init"]).ok();
    let src = repo.path("src");
    write_generation(&src, seed, 0, FILES, FILE_SIZE);
    let backup = args_with_path(&["backup", "--json"], &src);
    let first = run_os(&repo, &backup).ok().summary();
    let mut known: BTreeMap<String, Digest> = BTreeMap::new();
    register_new_snapshot(&repo, &mut known, &src, "first backup");
    let span = probe(|| {
        write_generation(&src, seed, 1, FILES, FILE_SIZE);
        run_os(&repo, &backup).ok();
    });
    register_new_snapshot(&repo, &mut known, &src, "probe backup");
    eprintln!("{test}: full backup {first}; one changed generation takes {span:?}");

    let mut schedule = Schedule::new(seed, span);
    let (mut kills, mut finished, mut reused, mut stale) = (0u64, 0u64, 0u64, 0usize);
    for round in 0..rounds {
        let g = round + 2;
        let delta = write_generation(&src, seed, g, FILES, FILE_SIZE);
        for k in 0..kills_per_round {
            let delay = schedule.next();
            let ctx = format!("round {round} kill {k} at {delay:?}");
            let end = kill_after(&repo, PASSWORD, &arg_refs(&backup), delay);
            schedule.observe(end);
            match end {
                Killed::Killed => kills += 1,
                Killed::Finished(0) => finished += 1,
                Killed::Finished(c) => panic!("{ctx}: backup exited {c} before the kill"),
            }
            register_new_snapshot(&repo, &mut known, &src, &ctx);
            let n = round * kills_per_round + k;
            assert_check(&repo, PASSWORD, read_data_after_kill(n), &ctx);
        }
        // The next backup succeeds and stores at most what this generation changed.
        let ctx = format!("round {round}: backup after the kills");
        let sum = run_os(&repo, &backup).ok().summary();
        let added = u(&sum, "bytes_added");
        assert!(
            added <= delta + 64 * 1024,
            "{ctx}: bytes_added {added} > the {delta} bytes that changed: {sum}"
        );
        reused += delta.saturating_sub(added);
        register_new_snapshot(&repo, &mut known, &src, &ctx);
        let latest = snapshot_ids(&repo, PASSWORD).pop().expect("a snapshot");
        assert_restores(&repo, PASSWORD, &latest, &src, &known[&latest], &ctx);
        if round % 5 == 4 {
            // The killed runs' locks: their processes are gone, `unlock` removes them all.
            stale += files_in(&repo.objects().join("locks"));
            unlock_after_kills(&repo, PASSWORD, &ctx);
        }
    }
    assert_check(&repo, PASSWORD, true, "end");
    let ids = snapshot_ids(&repo, PASSWORD);
    assert_eq!(ids.len(), known.len(), "snapshots lost or invented");
    let sample = if long_form() { ids.len() } else { 4 };
    for i in 0..sample.min(ids.len()) {
        let id = &ids[(rng.next_u64() as usize) % ids.len()];
        let ctx = format!("end sample {i}");
        assert_restores(&repo, PASSWORD, id, &src, &known[id], &ctx);
    }
    stale += files_in(&repo.objects().join("locks"));
    assert!(stale as u64 <= kills, "{stale} locks after {kills} kills");
    unlock_after_kills(&repo, PASSWORD, "end");
    figure(
        test,
        &format!(
            "kill points {}, killed {kills}, finished before the kill {finished}, snapshots {} \
             all present and checked (--read-data), snapshots lost 0, bytes reused from \
             killed runs {reused}, stale locks removed by unlock {stale}, locks and delete \
             probes left after unlock 0",
            rounds * kills_per_round,
            known.len(),
        ),
    );
    total("kills", &[rounds * kills_per_round, 0]);
}

#[test]
fn s3_forget_prune_killed_at_random_points() {
    let Some(s3) = s3s() else { return };
    let test = "s3_forget_prune_killed_at_random_points";
    let seed = seed(test, 0x53E0);
    let rounds = count("ARCA_TORTURE_PRUNE_ROUNDS", 8, 40);
    let kills_per_round = 3;
    let keep = 3;
    let mut rng = Rng::new(seed);
    let bucket = Bucket::new(&s3, "crash-prune");
    let repo = bucket.repo("repo");
    run(&repo, &["init"]).ok();
    let src = repo.path("src");
    let backup = args_with_path(&["backup", "-q"], &src);
    let mut known: BTreeMap<String, Digest> = BTreeMap::new();
    for g in 0..5 {
        write_generation(&src, seed, g, FILES, FILE_SIZE);
        run_os(&repo, &backup).ok();
        register_new_snapshot(&repo, &mut known, &src, "fixture");
    }
    let keep_s = keep.to_string();
    let forget: Vec<&OsStr> = [
        "forget",
        "--keep-last",
        &keep_s,
        "--prune",
        "--max-unused",
        "0%",
    ]
    .into_iter()
    .map(OsStr::new)
    .collect();
    let span = probe(|| {
        run_os(&repo, &forget).ok();
    });
    eprintln!("{test}: forget --prune takes {span:?}");
    let mut schedule = Schedule::new(seed, span);
    let (mut kills, mut finished) = (0u64, 0u64);
    for round in 0..rounds {
        write_generation(&src, seed, round + 5, FILES, FILE_SIZE);
        run_os(&repo, &backup).ok();
        register_new_snapshot(&repo, &mut known, &src, "round backup");
        let order = snapshot_ids(&repo, PASSWORD);
        let must_keep: Vec<String> = order[order.len().saturating_sub(keep)..].to_vec();
        for k in 0..kills_per_round {
            let delay = schedule.next();
            let ctx = format!("round {round} kill {k} at {delay:?}");
            let end = kill_after(&repo, PASSWORD, &forget, delay);
            schedule.observe(end);
            match end {
                Killed::Killed => kills += 1,
                Killed::Finished(0) => finished += 1,
                Killed::Finished(c) => panic!("{ctx}: forget --prune exited {c}"),
            }
            // The killed run's exclusive lock and delete probe: `unlock` removes both.
            unlock_after_kills(&repo, PASSWORD, &ctx);
            let n = round * kills_per_round + k;
            assert_check(&repo, PASSWORD, read_data_after_kill(n), &ctx);
            let now = snapshot_ids(&repo, PASSWORD);
            for id in &now {
                assert!(known.contains_key(id), "{ctx}: unknown snapshot {id}");
            }
            for id in &must_keep {
                assert!(now.contains(id), "{ctx}: kept snapshot {id} is gone");
            }
        }
        let ctx = format!("round {round} after the kills");
        for id in &must_keep {
            if Some(id) == must_keep.last() || rng.next_u64().is_multiple_of(3) {
                assert_restores(&repo, PASSWORD, id, &src, &known[id], &ctx);
            }
        }
        let now = snapshot_ids(&repo, PASSWORD);
        known.retain(|id, _| now.contains(id));
    }
    // Finishing the work leaves a clean repository with exactly the kept snapshots.
    run_os(&repo, &forget).ok();
    let warnings = assert_check(&repo, PASSWORD, true, "end");
    assert!(warnings.is_empty(), "prune left garbage: {warnings:?}");
    let now = snapshot_ids(&repo, PASSWORD);
    assert_eq!(now.len(), keep);
    for id in &now {
        assert_restores(&repo, PASSWORD, id, &src, &known[id], "end");
    }
    unlock_after_kills(&repo, PASSWORD, "end");
    figure(
        test,
        &format!(
            "kill points {}, killed {kills}, finished before the kill {finished}, kept \
             snapshots lost 0, locks and delete probes left after unlock 0",
            rounds * kills_per_round
        ),
    );
    total("kills", &[rounds * kills_per_round, 0]);
}

/// Where a copy round reads and writes.
#[derive(Debug, Clone, Copy)]
enum CopyWay {
    LocalToS3,
    S3ToLocal,
    S3ToS3,
}

#[test]
fn s3_copy_killed_at_random_points() {
    let Some(s3) = s3s() else { return };
    let test = "s3_copy_killed_at_random_points";
    let seed = seed(test, 0x53C0);
    let rounds = count("ARCA_TORTURE_COPY_ROUNDS", 6, 30);
    let kills_per_round = 4;
    let mut rng = Rng::new(seed);
    let bucket = Bucket::new(&s3, "crash-copy");
    // The same five snapshots in a local repository and in an S3 one.
    let local_from = Env::new();
    run(&local_from, &["init"]).ok();
    let src = local_from.path("src");
    for g in 0..5u64 {
        write_generation(&src, seed, g, FILES, FILE_SIZE);
        let t = format!("2026-01-{:02} 12:00:00", g + 1);
        run_os(
            &local_from,
            &args_with_path(&["backup", "-q", "--time", &t], &src),
        )
        .ok();
    }
    let local_location = local_from.repo.to_string_lossy().into_owned();
    let s3_from = bucket.repo("from");
    run(&s3_from, &["init"]).ok();
    let mut c = s3_from.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_FROM_PASSWORD", PASSWORD)
        .args(["copy", "-q", "--from-repo", &local_location]);
    run_cmd(c, None).ok();
    // Snapshot time -> content, for matching copies with their originals.
    let mut by_time: BTreeMap<String, Digest> = BTreeMap::new();
    for (g, (_, s)) in snapshots(&local_from, PASSWORD).iter().enumerate() {
        let tmp = local_from.path(&format!("gen{g}"));
        for gg in 0..=g as u64 {
            write_generation(&tmp, seed, gg, FILES, FILE_SIZE);
        }
        by_time.insert(common::s(s, "time").to_string(), digest(&tmp));
        std::fs::remove_dir_all(&tmp).expect("remove a generation");
    }
    assert_eq!(snapshots(&s3_from, PASSWORD).len(), 5, "the S3 source");

    let (mut kills, mut finished) = (0u64, 0u64);
    let mut by_way: BTreeMap<String, u64> = BTreeMap::new();
    let mut schedule: Option<Schedule> = None;
    for round in 0..rounds {
        let way = [CopyWay::LocalToS3, CopyWay::S3ToLocal, CopyWay::S3ToS3][round as usize % 3];
        let from_location = match way {
            CopyWay::LocalToS3 => local_location.clone(),
            CopyWay::S3ToLocal | CopyWay::S3ToS3 => s3_from.location.clone(),
        };
        let dst: Box<dyn Target> = match way {
            CopyWay::LocalToS3 | CopyWay::S3ToS3 => Box::new(bucket.repo(&format!("to-{round}"))),
            CopyWay::S3ToLocal => Box::new(Env::new()),
        };
        // The command of the destination, able to read an S3 source.
        let dst_cmd = |args: &[&str]| {
            let mut c = dst.cmd();
            with_credentials(&mut c, &s3);
            c.env("ARCA_INSECURE_TEST_KDF", "1")
                .env("ARCA_FROM_PASSWORD", PASSWORD)
                .args(args);
            c
        };
        // Rounds 0, 2 and 4 (mod 6) share the chunker secrets (copy sends blobs as they
        // are), the others do not (copy re-chunks and re-identifies every file).
        let init = if round % 2 == 0 {
            dst_cmd(&[
                "init",
                "--copy-chunker-params",
                "--from-repo",
                &from_location,
            ])
        } else {
            dst_cmd(&["init"])
        };
        run_cmd(init, None).ok();
        let copy = ["copy", "--from-repo", from_location.as_str()];
        let schedule = schedule.get_or_insert_with(|| {
            let probe_dst = bucket.repo("probe");
            run(&probe_dst, &["init"]).ok();
            let mut c = probe_dst.cmd();
            c.env("ARCA_INSECURE_TEST_KDF", "1")
                .env("ARCA_FROM_PASSWORD", PASSWORD)
                .args(copy);
            let span = probe(|| {
                run_cmd(c, None).ok();
            });
            eprintln!("{test}: a copy of 5 snapshots takes {span:?}");
            Schedule::new(seed, span)
        });
        for k in 0..kills_per_round {
            let delay = schedule.next();
            let ctx = format!("round {round} ({way:?}) kill {k} at {delay:?}");
            let end = kill_command_after(dst_cmd(&copy), delay);
            schedule.observe(end);
            match end {
                Killed::Killed => kills += 1,
                Killed::Finished(0) => finished += 1,
                Killed::Finished(c) => panic!("{ctx}: copy exited {c}"),
            }
            *by_way.entry(format!("{way:?}")).or_default() += 1;
            let n = round * kills_per_round + k;
            assert_check(dst.as_ref(), PASSWORD, read_data_after_kill(n), &ctx);
            // A snapshot already copied restores like its original.
            let copied = snapshots(dst.as_ref(), PASSWORD);
            if !copied.is_empty() {
                let (id, s) = &copied[(rng.next_u64() as usize) % copied.len()];
                let want = &by_time[common::s(s, "time")];
                assert_restores(dst.as_ref(), PASSWORD, id, &src, want, &ctx);
            }
        }
        run_cmd(dst_cmd(&copy), None).ok();
        run_cmd(dst_cmd(&copy), None).ok();
        let ctx = format!("round {round} ({way:?}) completed");
        assert_check(dst.as_ref(), PASSWORD, true, &ctx);
        let copied = snapshots(dst.as_ref(), PASSWORD);
        assert_eq!(copied.len(), 5, "{ctx}: every snapshot copied exactly once");
        let all = round + 1 == rounds || long_form();
        for (id, s) in &copied {
            if all || rng.next_u64().is_multiple_of(5) {
                let want = &by_time[common::s(s, "time")];
                assert_restores(dst.as_ref(), PASSWORD, id, &src, want, &ctx);
            }
        }
        unlock_after_kills(dst.as_ref(), PASSWORD, &ctx);
    }
    let ways: Vec<String> = by_way.iter().map(|(w, n)| format!("{w} {n}")).collect();
    figure(
        test,
        &format!(
            "kill points {} ({}), killed {kills}, finished before the kill {finished}, \
             snapshots lost 0",
            rounds * kills_per_round,
            ways.join(", ")
        ),
    );
    total("kills", &[rounds * kills_per_round, 0]);
}

#[test]
fn s3_key_add_and_passwd_killed_at_random_points() {
    let Some(s3) = s3s() else { return };
    let bucket = Bucket::new(&s3, "crash-key");
    let repo = bucket.repo("repo");
    run(&repo, &["init"]).ok();
    key_changes_killed_at_random_points(
        &repo,
        "s3_key_add_and_passwd_killed_at_random_points",
        0x53E1,
        count("ARCA_TORTURE_KEY_KILLS", 24, 120),
        KeyKillChecks {
            check_every: 1,
            read_data: true,
            unlock_every: Some(4),
        },
        |src| {
            write_generation(src, 0x53E1, 0, FILES, FILE_SIZE);
        },
    );
}

/// The helper that names s3s-fs's files agrees with base64.
#[test]
fn base64_matches_the_server_names() {
    assert_eq!(base64(b"mybucket"), "bXlidWNrZXQ");
    assert_eq!(base64(b"r1/config"), "cjEvY29uZmln");
    assert_eq!(base64(b""), "");
}
