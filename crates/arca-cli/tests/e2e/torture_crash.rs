//! Torture: `kill -9` at seeded random moments during backup, forget+prune, copy and key
//! changes on a local repository. After the kills `check` passes, every snapshot that was
//! completed restores byte for byte, and the next backup succeeds and stores only what is
//! new.
//!
//! Short form (CI): about 220 kill points. Long form: `scripts/torture` (ARCA_TORTURE=long),
//! or set the counts: ARCA_TORTURE_BACKUP_ROUNDS, ARCA_TORTURE_PRUNE_ROUNDS,
//! ARCA_TORTURE_COPY_ROUNDS, ARCA_TORTURE_KEY_KILLS; ARCA_TORTURE_SEED replays a schedule.

use crate::common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;

use crate::common::*;
use crate::torture_support::*;

const FILES: u64 = 8;
const FILE_SIZE: usize = 300 * 1024;

#[test]
fn backup_killed_at_random_points() {
    let test = "backup_killed_at_random_points";
    let seed = seed(test, 0xB4C0);
    let rounds = count("ARCA_TORTURE_BACKUP_ROUNDS", 50, 250);
    let kills_per_round = 2;
    let mut rng = Rng::new(seed);
    let env = Env::new();
    run(&env, &["init"]).ok();
    let src = env.path("src");
    write_generation(&src, seed, 0, FILES, FILE_SIZE);
    let backup = args_with_path(&["backup", "--json"], &src);
    let first = run_os(&env, &backup).ok().summary();
    let mut known: BTreeMap<String, Digest> = BTreeMap::new();
    register_new_snapshot(&env, &mut known, &src, "first backup");
    let span = probe(|| {
        write_generation(&src, seed, 1, FILES, FILE_SIZE);
        run_os(&env, &backup).ok();
    });
    register_new_snapshot(&env, &mut known, &src, "probe backup");
    eprintln!("{test}: full backup {first}; one changed generation takes {span:?}");

    let mut schedule = Schedule::new(seed, span);
    let (mut kills, mut finished, mut reused) = (0u64, 0u64, 0u64);
    for round in 0..rounds {
        let g = round + 2;
        let delta = write_generation(&src, seed, g, FILES, FILE_SIZE);
        for k in 0..kills_per_round {
            let delay = schedule.next();
            let ctx = format!("round {round} kill {k} at {delay:?}");
            let end = kill_after(&env, PASSWORD, &arg_refs(&backup), delay);
            schedule.observe(end);
            match end {
                Killed::Killed => kills += 1,
                Killed::Finished(0) => finished += 1,
                Killed::Finished(c) => panic!("{ctx}: backup exited {c} before the kill"),
            }
            register_new_snapshot(&env, &mut known, &src, &ctx);
            assert_check(&env, PASSWORD, false, &ctx);
        }
        // The next backup succeeds and stores at most what this generation changed: what
        // the killed runs stored is reused, nothing older is stored again.
        let ctx = format!("round {round}: backup after the kills");
        let sum = run_os(&env, &backup).ok().summary();
        let added = u(&sum, "bytes_added");
        assert!(
            added <= delta + 64 * 1024,
            "{ctx}: bytes_added {added} > the {delta} bytes that changed: {sum}"
        );
        reused += delta.saturating_sub(added);
        register_new_snapshot(&env, &mut known, &src, &ctx);
        // Snapshots made in this round restore byte for byte.
        let latest = snapshots(&env, PASSWORD)
            .last()
            .map(|(id, _)| id.clone())
            .unwrap();
        assert_restores(&env, PASSWORD, &latest, &src, &known[&latest], &ctx);
        if round % 10 == 9 {
            assert_check(&env, PASSWORD, true, &ctx);
        }
    }
    // At the end: every byte of every pack verified, every snapshot present, a sample of
    // the older ones restored.
    assert_check(&env, PASSWORD, true, "end");
    let ids: Vec<String> = snapshots(&env, PASSWORD).into_iter().map(|s| s.0).collect();
    assert_eq!(ids.len(), known.len(), "snapshots lost or invented");
    let sample = if long_form() { ids.len() } else { 6 };
    for i in 0..sample.min(ids.len()) {
        let id = &ids[(rng.next_u64() as usize) % ids.len()];
        assert_restores(
            &env,
            PASSWORD,
            id,
            &src,
            &known[id],
            &format!("end sample {i}"),
        );
    }
    // Killed runs leave their (stale) locks; `unlock` removes them.
    let stale = files_in(&env.repo.join("locks"));
    assert!(stale as u64 <= kills, "{stale} locks after {kills} kills");
    unlock_after_kills(&env, PASSWORD, "end");
    figure(
        test,
        &format!(
            "kill points {}, killed {kills}, finished before the kill {finished}, snapshots {} \
             all present and checked (--read-data), snapshots lost 0, bytes reused from \
             killed runs {reused}, stale locks removed by unlock {stale}, temporary files \
             left by killed writes {}",
            rounds * kills_per_round,
            known.len(),
            temp_files(&env.repo)
        ),
    );
    total("kills", &[rounds * kills_per_round, 0]);
}

#[test]
fn forget_prune_killed_at_random_points() {
    let test = "forget_prune_killed_at_random_points";
    let seed = seed(test, 0x9E0E);
    let rounds = count("ARCA_TORTURE_PRUNE_ROUNDS", 20, 100);
    let kills_per_round = 3;
    let keep = 3;
    let mut rng = Rng::new(seed);
    let env = Env::new();
    run(&env, &["init"]).ok();
    let src = env.path("src");
    let backup = args_with_path(&["backup", "-q"], &src);
    let mut known: BTreeMap<String, Digest> = BTreeMap::new();
    for g in 0..5 {
        write_generation(&src, seed, g, FILES, FILE_SIZE);
        run_os(&env, &backup).ok();
        register_new_snapshot(&env, &mut known, &src, "fixture");
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
        run_os(&env, &forget).ok();
    });
    eprintln!("{test}: forget --prune takes {span:?}");
    let mut schedule = Schedule::new(seed, span);
    let (mut kills, mut finished) = (0u64, 0u64);
    for round in 0..rounds {
        write_generation(&src, seed, round + 5, FILES, FILE_SIZE);
        run_os(&env, &backup).ok();
        register_new_snapshot(&env, &mut known, &src, "round backup");
        let order: Vec<String> = snapshots(&env, PASSWORD).into_iter().map(|s| s.0).collect();
        let must_keep: Vec<String> = order[order.len().saturating_sub(keep)..].to_vec();
        for k in 0..kills_per_round {
            let delay = schedule.next();
            let ctx = format!("round {round} kill {k} at {delay:?}");
            let end = kill_after(&env, PASSWORD, &forget, delay);
            schedule.observe(end);
            match end {
                Killed::Killed => kills += 1,
                Killed::Finished(0) => finished += 1,
                Killed::Finished(c) => panic!("{ctx}: forget --prune exited {c}"),
            }
            // The killed process's lock is stale (its pid is gone); remove it like an
            // operator would, so a reused pid cannot make it look alive.
            unlock_after_kills(&env, PASSWORD, &ctx);
            assert_check(&env, PASSWORD, false, &ctx);
            let now: Vec<String> = snapshots(&env, PASSWORD).into_iter().map(|s| s.0).collect();
            for id in &now {
                assert!(known.contains_key(id), "{ctx}: unknown snapshot {id}");
            }
            for id in &must_keep {
                assert!(now.contains(id), "{ctx}: kept snapshot {id} is gone");
            }
        }
        let ctx = format!("round {round} after the kills");
        for id in &must_keep {
            if id == must_keep.last().unwrap() || rng.next_u64().is_multiple_of(3) {
                assert_restores(&env, PASSWORD, id, &src, &known[id], &ctx);
            }
        }
        if round % 10 == 9 {
            assert_check(&env, PASSWORD, true, &ctx);
        }
        let now: Vec<String> = snapshots(&env, PASSWORD).into_iter().map(|s| s.0).collect();
        known.retain(|id, _| now.contains(id));
    }
    // Finishing the work leaves a clean repository with exactly the kept snapshots.
    run_os(&env, &forget).ok();
    let warnings = assert_check(&env, PASSWORD, true, "end");
    assert!(warnings.is_empty(), "prune left garbage: {warnings:?}");
    let now: Vec<String> = snapshots(&env, PASSWORD).into_iter().map(|s| s.0).collect();
    assert_eq!(now.len(), keep);
    for id in &now {
        assert_restores(&env, PASSWORD, id, &src, &known[id], "end");
    }
    unlock_after_kills(&env, PASSWORD, "end");
    figure(
        test,
        &format!(
            "kill points {}, killed {kills}, finished before the kill {finished}, kept \
             snapshots lost 0, temporary files left by killed writes {}",
            rounds * kills_per_round,
            temp_files(&env.repo)
        ),
    );
    total("kills", &[rounds * kills_per_round, 0]);
}

#[test]
fn copy_killed_at_random_points() {
    let test = "copy_killed_at_random_points";
    let seed = seed(test, 0xC0B1);
    let rounds = count("ARCA_TORTURE_COPY_ROUNDS", 10, 50);
    let kills_per_round = 4;
    let mut rng = Rng::new(seed);
    let from = Env::new();
    run(&from, &["init"]).ok();
    let src = from.path("src");
    // Snapshot time -> content, for matching copies with their originals.
    let mut by_time: BTreeMap<String, Digest> = BTreeMap::new();
    for g in 0..5u64 {
        write_generation(&src, seed, g, FILES, FILE_SIZE);
        let t = format!("2026-01-{:02} 12:00:00", g + 1);
        run_os(
            &from,
            &args_with_path(&["backup", "-q", "--time", &t], &src),
        )
        .ok();
    }
    let mut digests = Vec::new();
    for g in 0..5u64 {
        // Regenerate each generation to record its digest in time order.
        let tmp = from.path(&format!("gen{g}"));
        for gg in 0..=g {
            write_generation(&tmp, seed, gg, FILES, FILE_SIZE);
        }
        digests.push(digest(&tmp));
        fs::remove_dir_all(&tmp).unwrap();
    }
    for ((_, s), d) in snapshots(&from, PASSWORD).iter().zip(digests) {
        by_time.insert(common::s(s, "time").to_string(), d);
    }
    let from_repo = from.repo.to_string_lossy().into_owned();
    let copy: Vec<&OsStr> = ["copy", "--from-repo", &from_repo]
        .into_iter()
        .map(OsStr::new)
        .collect();

    let (mut kills, mut finished) = (0u64, 0u64);
    let mut span = None;
    let mut schedule: Option<Schedule> = None;
    for round in 0..rounds {
        let dst = Env::new();
        // Even rounds share the chunker secrets (copy sends blobs as they are), odd rounds
        // do not (copy re-chunks and re-identifies every file).
        let mut init = dst.cmd();
        init.env("ARCA_INSECURE_TEST_KDF", "1")
            .env("ARCA_FROM_PASSWORD", PASSWORD)
            .arg("init");
        if round % 2 == 0 {
            init.args(["--copy-chunker-params", "--from-repo", &from_repo]);
        }
        run_cmd(init, None).ok();
        let copy_cmd = |delay: Option<std::time::Duration>| {
            let mut c = dst.cmd();
            c.env("ARCA_INSECURE_TEST_KDF", "1")
                .env("ARCA_FROM_PASSWORD", PASSWORD)
                .args(&copy);
            match delay {
                None => {
                    run_cmd(c, None).ok();
                    None
                }
                Some(d) => Some(kill_command_after(c, d)),
            }
        };
        let span = *span.get_or_insert_with(|| {
            let probe_dst = Env::new();
            let mut i = probe_dst.cmd();
            i.env("ARCA_INSECURE_TEST_KDF", "1").arg("init");
            run_cmd(i, None).ok();
            probe(|| {
                let mut c = probe_dst.cmd();
                c.env("ARCA_INSECURE_TEST_KDF", "1")
                    .env("ARCA_FROM_PASSWORD", PASSWORD)
                    .args(&copy);
                run_cmd(c, None).ok();
            })
        });
        for k in 0..kills_per_round {
            let schedule = schedule.get_or_insert_with(|| Schedule::new(seed, span));
            let delay = schedule.next();
            let ctx = format!("round {round} kill {k} at {delay:?}");
            let end = copy_cmd(Some(delay));
            if let Some(end) = end {
                schedule.observe(end);
            }
            match end {
                Some(Killed::Killed) => kills += 1,
                Some(Killed::Finished(0)) => finished += 1,
                other => panic!("{ctx}: copy ended {other:?}"),
            }
            assert_check(&dst, PASSWORD, false, &ctx);
            // A snapshot already copied restores like its original.
            let copied = snapshots(&dst, PASSWORD);
            if !copied.is_empty() {
                let (id, s) = &copied[(rng.next_u64() as usize) % copied.len()];
                let want = &by_time[common::s(s, "time")];
                assert_restores(&dst, PASSWORD, id, &src, want, &ctx);
            }
        }
        copy_cmd(None);
        copy_cmd(None);
        let ctx = format!("round {round} completed");
        assert_check(&dst, PASSWORD, true, &ctx);
        let copied = snapshots(&dst, PASSWORD);
        assert_eq!(copied.len(), 5, "{ctx}: every snapshot copied exactly once");
        let all = round + 1 == rounds || long_form();
        for (id, s) in &copied {
            if all || rng.next_u64().is_multiple_of(5) {
                let want = &by_time[common::s(s, "time")];
                assert_restores(&dst, PASSWORD, id, &src, want, &ctx);
            }
        }
        unlock_after_kills(&dst, PASSWORD, &ctx);
        assert_eq!(files_in(&dst.repo.join("locks")), 0, "{ctx}: locks left");
    }
    figure(
        test,
        &format!(
            "kill points {}, killed {kills}, finished before the kill {finished}, snapshots \
             lost 0",
            rounds * kills_per_round
        ),
    );
    total("kills", &[rounds * kills_per_round, 0]);
}

#[test]
fn key_add_and_passwd_killed_at_random_points() {
    let env = Env::new();
    run(&env, &["init"]).ok();
    key_changes_killed_at_random_points(
        &env,
        "key_add_and_passwd_killed_at_random_points",
        0x4E15,
        count("ARCA_TORTURE_KEY_KILLS", 60, 300),
        KeyKillChecks {
            check_every: 5,
            read_data: false,
            unlock_every: None,
        },
        |src| {
            write_generation(src, 0x4E15, 0, FILES, FILE_SIZE);
        },
    );
}
