//! Torture: power loss on local disk.
//!
//! Two halves. (1) The engines (init, backups, forget, prune) run on a storage that records
//! every change ([`arca_storage::powercut::PowerCutStorage`]); for every moment between two
//! changes, the state a power cut would leave is rebuilt (finished changes kept, changes in
//! flight kept or dropped at random, later ones lost) and must open, pass
//! `check --read-data` and restore byte for byte every snapshot whose write had finished
//! and whose forget had not started. (2) `strace` shows that `LocalStorage` really delivers
//! the contract the replay assumes: each object is fsynced before it is renamed into place,
//! its directory is fsynced before the write returns, and a snapshot is renamed into place
//! only after every pack and index file it needs is durable.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::*;
use crate::torture_support::*;
use arca_core::backup::{BackupOptions, backup_paths};
use arca_core::check::{ReadData, check};
use arca_core::format::ChunkerParams;
use arca_core::progress::NoProgress;
use arca_core::prune::{MaxUnused, PruneOptions};
use arca_core::repo::InitOptions;
use arca_core::restore::{RestoreOptions, find_path, restore};
use arca_core::{Id, Repository};
use arca_storage::powercut::{Change, PowerCutStorage};
use arca_storage::{LocalStorage, Storage};

const PW: &[u8] = b"power cut";

fn open_index(repo: &Repository) -> Arc<arca_core::index::Index> {
    let mut index = repo.load_index().expect("load index");
    repo.adopt_unindexed_packs(&mut index).expect("adopt");
    Arc::new(index)
}

fn backup(repo: &Arc<Repository>, src: &Path) -> Id {
    let _lock = arca_core::lock::acquire(repo, false, "backup").expect("lock");
    let opts = BackupOptions {
        threads: Some(2),
        ..Default::default()
    };
    let r = backup_paths(
        repo,
        open_index(repo),
        &[src.to_path_buf()],
        &opts,
        &NoProgress,
    )
    .expect("backup");
    r.snapshot_id.expect("a snapshot")
}

/// Writes generation `g`: six files of 40-120 KiB, two of which change per generation.
fn write_generation(src: &Path, seed: u64, g: u64) {
    std::fs::create_dir_all(src.join("d")).unwrap();
    for f in 0..6u64 {
        let version = if f % 3 == g % 3 { g } else { 0 };
        let p = if f % 2 == 0 {
            src.join(format!("f{f}"))
        } else {
            src.join("d").join(format!("f{f}"))
        };
        let len = 40 * 1024 + ((seed ^ f) % 80) as usize * 1024;
        write_random(&p, seed ^ (f << 32) ^ version, len);
    }
}

fn restore_digest(repo: &Repository, snapshot: &Id, target: &Path, src: &Path) -> Digest {
    let _ = std::fs::remove_dir_all(target);
    let index = repo.load_index().expect("index");
    let snap = repo.load_snapshot(snapshot).expect("snapshot");
    let node = find_path(repo, &index, &snap.tree, Path::new("/")).expect("root");
    let opts = RestoreOptions {
        ownership: Some(false),
        ..Default::default()
    };
    let s = restore(
        repo,
        &index,
        &node,
        Path::new("/"),
        target,
        &opts,
        &NoProgress,
    )
    .expect("restore");
    assert!(s.errors.is_empty(), "restore errors: {:?}", s.errors);
    digest(&restored_path(target, src))
}

#[test]
fn power_cut_at_every_write_boundary() {
    let test = "power_cut_at_every_write_boundary";
    let seed = seed(test, 0x90E7);
    let variants = count("ARCA_TORTURE_POWER_VARIANTS", 4, 16);
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let rec = Arc::new(PowerCutStorage::new(LocalStorage::new(
        base.path().join("live"),
    )));
    let storage: Arc<dyn Storage> = rec.clone();
    let opts = InitOptions {
        chunker: ChunkerParams {
            min_size: 8 * 1024,
            avg_size: 16 * 1024,
            max_size: 32 * 1024,
        },
        pack_size: 48 * 1024,
        kdf: Some(arca_core::crypto::test_kdf_params()),
        ..Default::default()
    };
    let repo = Arc::new(Repository::init(storage, PW, opts).expect("init"));

    // Snapshot -> (content, when its write finished, when its forget started).
    let mut snaps: BTreeMap<Id, (Digest, u64, Option<u64>)> = BTreeMap::new();
    for g in 0..4 {
        write_generation(&src, seed, g);
        let id = backup(&repo, &src);
        snaps.insert(id, (digest(&src), rec.now(), None));
    }
    // forget the two oldest, prune (repacks and deletes), then one more backup.
    let oldest: Vec<Id> = snaps.keys().copied().collect();
    let (all, _) = repo.list_snapshots().unwrap();
    for (id, _) in all.iter().take(2) {
        let started = rec.now();
        repo.storage()
            .delete(&format!("snapshots/{id}"))
            .expect("forget");
        snaps.get_mut(id).unwrap().2 = Some(started);
    }
    {
        let _lock = arca_core::lock::acquire(&repo, true, "prune").expect("lock");
        let plan = arca_core::prune::plan(
            &repo,
            &PruneOptions {
                max_unused: MaxUnused::Percent(0.0),
                ..Default::default()
            },
        )
        .expect("plan");
        assert!(
            !plan.delete_packs.is_empty() || !plan.repack_packs.is_empty(),
            "the prune has nothing to do: {plan:?}"
        );
        arca_core::prune::execute(&repo, &plan).expect("prune");
    }
    write_generation(&src, seed, 4);
    let id = backup(&repo, &src);
    snaps.insert(id, (digest(&src), rec.now(), None));
    drop(oldest);

    let events = rec.events();
    let cuts = rec.cut_points();
    let in_flight_moments: usize = cuts.iter().map(|c| rec.in_flight(*c).len()).sum();
    eprintln!(
        "{test}: {} changes recorded ({} writes, {} deletes), {} cut points, {} changes in \
         flight at them",
        events.len(),
        events
            .iter()
            .filter(|e| matches!(e.change, Change::Write { .. }))
            .count(),
        events
            .iter()
            .filter(|e| matches!(e.change, Change::Delete { .. }))
            .count(),
        cuts.len(),
        in_flight_moments
    );

    let mut rng = Rng::new(seed);
    let mut states = 0u64;
    let mut restores = 0u64;
    // Also cut in the middle of every change that overlapped another one (for a change
    // alone in flight, its middle is the same state as the cut before or after it).
    let mut moments: Vec<u64> = cuts.clone();
    moments.extend(
        events
            .iter()
            .filter(|e| {
                events.iter().any(|o| {
                    o.started != e.started && o.started < e.finished && o.finished > e.started
                })
            })
            .map(|e| e.started + 1),
    );
    moments.sort();
    moments.dedup();
    for (i, &cut) in moments.iter().enumerate() {
        // Coin tosses only matter where changes were in flight.
        let n_variants = if rec.in_flight(cut).is_empty() {
            1
        } else {
            variants
        };
        for v in 0..n_variants {
            let dir = base.path().join(format!("cut-{i}-{v}"));
            let target = LocalStorage::new(&dir);
            target.create().unwrap();
            let mut survivors = HashSet::new();
            rec.replay(cut, &target, &mut |e| {
                // Variant 0 drops every change in flight, the others toss a coin per change.
                let keep = v > 0 && rng.next_u64().is_multiple_of(2);
                if keep {
                    survivors.insert(e.finished);
                }
                keep
            })
            .expect("replay");
            states += 1;
            let ctx = format!("power cut at moment {cut} (#{i}, variant {v})");
            if target.stat("config").is_err() {
                // Cut during init: not a repository yet, and no snapshot could exist.
                assert!(
                    snaps.values().all(|(_, done, _)| *done > cut),
                    "{ctx}: no config"
                );
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(&dir));
            let cut_repo = Repository::open(storage, PW)
                .unwrap_or_else(|e| panic!("{ctx}: the repository does not open: {e}"));
            let report = check(&cut_repo, ReadData::All, &NoProgress)
                .unwrap_or_else(|e| panic!("{ctx}: check fails: {e}"));
            assert!(
                report.is_ok(),
                "{ctx}: check finds problems: {:?}",
                report.problems
            );
            let (present, bad) = cut_repo.list_snapshots().expect("list");
            assert!(bad.is_empty(), "{ctx}: unreadable snapshots: {bad:?}");
            let present: HashMap<Id, ()> = present.into_iter().map(|(i, _)| (i, ())).collect();
            for (id, (want, done, forgotten)) in &snaps {
                let must = *done <= cut && forgotten.is_none_or(|f| f >= cut);
                if must {
                    assert!(present.contains_key(id), "{ctx}: snapshot {id} is lost");
                }
                if present.contains_key(id) {
                    let got = restore_digest(&cut_repo, id, &dir.join("restore"), &src);
                    let d = digest_diff(want, &got);
                    assert!(
                        d.is_empty(),
                        "{ctx}: snapshot {id} differs:\n{}",
                        d.join("\n")
                    );
                    restores += 1;
                }
            }
            for id in present.keys() {
                assert!(snaps.contains_key(id), "{ctx}: unknown snapshot {id}");
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    figure(
        test,
        &format!(
            "{} recorded changes, {} cut moments ({} with changes in flight, up to {variants} \
             variants each) = {states} states after a power cut, {restores} snapshot restores \
             byte for byte, snapshots lost 0",
            events.len(),
            moments.len(),
            moments
                .iter()
                .filter(|c| !rec.in_flight(**c).is_empty())
                .count()
        ),
    );
    total("power-cuts", &[states, 0]);
}

/// One completed syscall from strace: (pid, name, first argument path, second path).
#[derive(Debug, Clone)]
struct Call {
    pid: String,
    name: String,
    a: String,
    b: String,
}

/// Parses `strace -f -y` output into completed fsync/rename calls in completion order.
fn parse_strace(text: &str) -> Vec<Call> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        let full = if rest.contains("<unfinished ...>") {
            pending.insert(pid.to_string(), rest.replace("<unfinished ...>", ""));
            continue;
        } else if let Some(r) = rest.strip_prefix("<... ") {
            let Some(start) = pending.remove(pid) else {
                continue;
            };
            let tail = r.split_once("resumed>").map_or("", |x| x.1);
            format!("{start}{tail}")
        } else {
            rest.to_string()
        };
        if !full.contains("= 0") {
            continue;
        }
        let name: String = full.chars().take_while(|c| *c != '(').collect();
        let paths: Vec<String> = full
            .split(['<', '"'])
            .skip(1)
            .step_by(2)
            .map(|s| s.split(['>', '"']).next().unwrap_or("").to_string())
            .collect();
        let (a, b) = match name.as_str() {
            "fsync" | "fdatasync" => (paths.first().cloned().unwrap_or_default(), String::new()),
            "rename" => (
                paths.first().cloned().unwrap_or_default(),
                paths.get(1).cloned().unwrap_or_default(),
            ),
            // renameat(AT_FDCWD, "old", AT_FDCWD, "new") / renameat2(...)
            "renameat" | "renameat2" => {
                let quoted: Vec<&str> = full.split('"').skip(1).step_by(2).collect();
                (
                    quoted.first().unwrap_or(&"").to_string(),
                    quoted.get(1).unwrap_or(&"").to_string(),
                )
            }
            _ => continue,
        };
        out.push(Call {
            pid: pid.to_string(),
            name,
            a,
            b,
        });
    }
    out
}

#[test]
fn local_storage_syncs_in_the_order_the_format_needs() {
    let test = "local_storage_syncs_in_the_order_the_format_needs";
    if !tool_or_skip("strace", test) {
        return;
    }
    let env = common::Env::new();
    run(&env, &["init"]).ok();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..6 {
        write_random(&src.join(format!("f{i}")), 77 + i, 3 << 20);
    }
    let trace = env.path("trace");
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1");
    let program = c.get_program().to_os_string();
    let mut st = std::process::Command::new("strace");
    st.args([
        "-f",
        "-y",
        "-qq",
        "-e",
        "trace=fsync,fdatasync,rename,renameat,renameat2",
    ])
    .arg("-o")
    .arg(&trace)
    .arg(&program)
    .args(["backup", "-q"])
    .arg(&src);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => st.env(k, v),
            None => st.env_remove(k),
        };
    }
    let out = run_cmd(st, None);
    if out.code != 0 && out.stderr.contains("PTRACE") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ptrace is not permitted: {}",
            out.stderr
        );
        eprintln!("{test}: skipped, ptrace not permitted");
        return;
    }
    let out = out.ok();
    drop(out);
    let calls = parse_strace(&std::fs::read_to_string(&trace).unwrap());
    let repo = env.repo.canonicalize().unwrap();
    let mut objects = 0;
    let mut durable_at: BTreeMap<String, usize> = BTreeMap::new();
    for (i, c) in calls.iter().enumerate() {
        if !c.name.starts_with("rename") || !c.b.contains(&*repo.to_string_lossy()) {
            continue;
        }
        let (tmp, fin) = (PathBuf::from(&c.a), PathBuf::from(&c.b));
        let rel = fin
            .strip_prefix(&repo)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let synced_before = calls[..i]
            .iter()
            .any(|x| x.pid == c.pid && x.name.contains("sync") && Path::new(&x.a) == tmp);
        assert!(
            synced_before,
            "{rel}: renamed into place before its data was fsynced"
        );
        let dir = fin.parent().unwrap();
        let dir_sync = calls[i + 1..]
            .iter()
            .position(|x| x.pid == c.pid && x.name == "fsync" && Path::new(&x.a) == dir)
            .map(|p| p + i + 1);
        let Some(dir_sync) = dir_sync else {
            panic!("{rel}: its directory was never fsynced after the rename");
        };
        let next_rename = calls[i + 1..]
            .iter()
            .position(|x| x.pid == c.pid && x.name.starts_with("rename"))
            .map(|p| p + i + 1);
        assert!(
            next_rename.is_none_or(|n| n > dir_sync),
            "{rel}: the same thread renamed another object before fsyncing the directory"
        );
        objects += 1;
        durable_at.insert(rel, dir_sync);
    }
    let snapshot_rename = calls
        .iter()
        .position(|c| c.name.starts_with("rename") && c.b.contains("/snapshots/"))
        .expect("the snapshot was written");
    for (rel, at) in &durable_at {
        if rel.starts_with("data/") || rel.starts_with("index/") {
            assert!(
                *at < snapshot_rename,
                "{rel} became durable only after the snapshot was renamed into place"
            );
        }
    }
    let packs = durable_at.keys().filter(|r| r.starts_with("data/")).count();
    let indexes = durable_at
        .keys()
        .filter(|r| r.starts_with("index/"))
        .count();
    assert!(packs >= 2 && indexes >= 1, "{durable_at:?}");
    figure(
        test,
        &format!(
            "strace of one backup: {objects} objects ({packs} packs, {indexes} index files) each \
             fsync(file) -> rename -> fsync(dir); the snapshot renamed after all of them"
        ),
    );
}
