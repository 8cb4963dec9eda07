//! A backup and a prune running at the same moment: the prune never deletes what the
//! backup relies on. Backups hold shared locks and prune an exclusive one; without
//! `--retry-lock` the second one refuses at once (exit 11), with it the second one waits
//! and then runs. Either way both snapshots restore afterwards.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

/// A repository with garbage: two generations of `src`, the first forgotten.
fn repo_with_garbage(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        write_random(&src.join(format!("f{i}")), 10 + i, 1 << 20);
    }
    env.backup(&[&src], &[]);
    let first = s(&env.snapshots()[0], "id").to_string();
    for i in 0..3 {
        write_random(&src.join(format!("f{i}")), 100 + i, 1 << 20);
    }
    env.backup(&[&src], &[]);
    env.run(&["forget", &first]).ok();
    src
}

/// Starts `arca backup --stdin-from-command` of `data` that takes `secs` seconds.
fn slow_stream_backup(env: &Env, data: &std::path::Path, secs: u32) -> std::process::Child {
    let script = format!("cat '{}'; sleep {secs}", data.display());
    let mut c = env.cmd();
    c.args([
        "backup",
        "--json",
        "--stdin-filename",
        "stream.bin",
        "--stdin-from-command",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn wait_for_lock(env: &Env) {
    let t = Instant::now();
    while env.count_objects("locks") == 0 {
        assert!(t.elapsed() < Duration::from_secs(30), "backup never locked");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_all_restore(env: &Env, src: &std::path::Path, stream: &[u8]) {
    env.run(&["check", "--read-data"]).ok();
    let snaps = env.snapshots();
    for snap in &snaps {
        let id = s(snap, "id");
        if snap["source"] == "command" {
            let out = env.run(&["dump", id, "stream.bin"]).ok();
            assert!(out.stdout == stream, "stream snapshot {id} differs");
        } else {
            let target = env.path(&format!("restore-{id}"));
            env.run_os(&[
                "restore".as_ref(),
                id.as_ref(),
                "--target".as_ref(),
                target.as_os_str(),
            ])
            .ok();
            assert_same_tree(src, &restored_path(&target, src));
        }
    }
    assert_eq!(env.count_objects("locks"), 0, "a lock was left behind");
}

#[test]
fn prune_waits_for_a_running_backup_then_both_snapshots_restore() {
    let env = Env::init();
    let src = repo_with_garbage(&env);
    let data = env.path("stream-data");
    let stream = write_random(&data, 7, 12 << 20);

    let backup = slow_stream_backup(&env, &data, 3);
    wait_for_lock(&env);
    let started = Instant::now();
    let prune = env.run(&["prune", "--retry-lock", "2m", "--json"]).ok();
    let waited = started.elapsed();
    let out = backup.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        waited >= Duration::from_secs(1),
        "prune ran while the backup held its lock (waited {waited:?})"
    );
    let plan = prune.json();
    assert!(
        plan.to_string().contains("deleted") || plan.to_string().contains("repack"),
        "{plan}"
    );
    assert_eq!(env.snapshots().len(), 2);
    assert_all_restore(&env, &src, &stream);
}

#[test]
fn prune_refuses_while_a_backup_runs_and_the_backup_completes() {
    let env = Env::init();
    let src = repo_with_garbage(&env);
    let data = env.path("stream-data");
    let stream = write_random(&data, 8, 4 << 20);

    let backup = slow_stream_backup(&env, &data, 2);
    wait_for_lock(&env);
    env.run(&["prune"]).code(11).says("locked");
    let out = backup.wait_with_output().unwrap();
    assert!(out.status.success());
    // Now nothing holds a lock: prune runs, and everything still restores.
    env.run(&["prune"]).ok();
    assert_all_restore(&env, &src, &stream);
}

#[test]
fn repair_waits_for_a_running_backup_and_a_bad_duration_is_refused() {
    let env = Env::init();
    let src = repo_with_garbage(&env);
    let data = env.path("stream-data");
    let stream = write_random(&data, 9, 1 << 20);
    // The backup holds a shared lock; `repair index` needs the exclusive one and waits.
    let backup = slow_stream_backup(&env, &data, 2);
    wait_for_lock(&env);
    let repair = env.run(&["repair", "index", "--retry-lock", "1m"]).ok();
    assert!(repair.stdout_str().contains("rebuilt the index"));
    assert!(backup.wait_with_output().unwrap().status.success());
    env.run(&["prune", "--retry-lock", "bogus"])
        .code(1)
        .says("--retry-lock");
    assert_all_restore(&env, &src, &stream);
}
