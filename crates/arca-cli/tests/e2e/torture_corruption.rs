//! Torture: the corruption matrix. One byte flipped, a truncation, a zeroed range, or a
//! deletion, for every kind of object (config, key, index, snapshot, tree pack, data pack,
//! lock) at seeded positions. `check` detects each and names the object; files the damage
//! does not touch still restore byte for byte; files it touches fail loudly with their
//! path; `repair index` / `repair snapshots` + `prune` recover what can be recovered.
//!
//! Extends corruption.rs (one damage per kind) with many positions and the restore and
//! repair halves. Positions per case: ARCA_TORTURE_POSITIONS (short 2, long 10).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::*;
use crate::torture_support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Config,
    Key,
    Index,
    Snapshot,
    TreePack,
    DataPack,
    Lock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Flip,
    Truncate,
    Zero,
    Delete,
}

const DAMAGES: [Damage; 4] = [Damage::Flip, Damage::Truncate, Damage::Zero, Damage::Delete];

/// A repository with three snapshots, each adding files (so each has its own data pack),
/// a leftover lock, and what every snapshot holds.
struct Fixture {
    env: Env,
    src: PathBuf,
    /// Snapshot id -> relative path -> content.
    snaps: BTreeMap<String, Digest>,
    /// Pack name -> "data" or "tree".
    packs: BTreeMap<String, String>,
}

fn fixture() -> Fixture {
    let env = Env::new();
    run(&env, &["init"]).ok();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    let mut snaps = BTreeMap::new();
    let gens: [&[(&str, u64, usize)]; 3] = [
        &[("a.bin", 1, 90_000), ("d/b.bin", 2, 40_000)],
        &[("c.bin", 3, 70_000), ("d/e.bin", 4, 30_000)],
        &[("f.bin", 5, 50_000)],
    ];
    for (g, files) in gens.iter().enumerate() {
        for (name, seed, len) in files.iter() {
            write_random(&src.join(name), *seed, *len);
        }
        fs::write(
            src.join("d/notes.txt"),
            format!("generation {g}\n").repeat(300),
        )
        .unwrap();
        run_os(
            &env,
            &[
                std::ffi::OsStr::new("backup"),
                OsStr::new("-q"),
                src.as_os_str(),
            ],
        )
        .ok();
        let id = snapshots(&env, PASSWORD).last().unwrap().0.clone();
        snaps.insert(id, digest(&src));
    }
    let mut packs = BTreeMap::new();
    for f in list_files(&env.repo.join("index")) {
        let id = f.file_name().unwrap().to_string_lossy().into_owned();
        let v = run(&env, &["cat", "index", &id]).ok().json();
        for p in v["packs"].as_array().unwrap() {
            let pid = p["id"].as_str().unwrap();
            let kind = p["blobs"][0]["kind"].as_str().unwrap().to_string();
            packs.insert(format!("data/{}/{pid}", &pid[..2]), kind);
        }
    }
    // A lock left behind: a backup reading stdin holds its lock while it waits.
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .args(["backup", "--stdin", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let start = std::time::Instant::now();
    let real_locks = |repo: &Path| {
        list_files(&repo.join("locks"))
            .iter()
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
            .count()
    };
    while real_locks(&env.repo) == 0 {
        assert!(start.elapsed().as_secs() < 30, "no lock appeared");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(real_locks(&env.repo), 1);
    Fixture {
        env,
        src,
        snaps,
        packs,
    }
}

use std::ffi::OsStr;

fn objects_of(fx: &Fixture, repo: &Path, kind: Object) -> Vec<String> {
    let rel = |p: PathBuf| p.strip_prefix(repo).unwrap().to_string_lossy().into_owned();
    let objects = |dir: &str| -> Vec<String> {
        list_files(&repo.join(dir))
            .into_iter()
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
            .map(rel)
            .collect()
    };
    match kind {
        Object::Config => vec!["config".into()],
        Object::Key => objects("keys"),
        Object::Index => objects("index"),
        Object::Snapshot => objects("snapshots"),
        Object::Lock => objects("locks"),
        Object::TreePack | Object::DataPack => {
            let want = if kind == Object::TreePack {
                "tree"
            } else {
                "data"
            };
            fx.packs
                .iter()
                .filter(|(_, k)| *k == want)
                .map(|(n, _)| n.clone())
                .collect()
        }
    }
}

/// Damages `path`; false when the damage would change nothing (drawn again by the caller).
fn damage(path: &Path, how: Damage, rng: &mut Rng) -> bool {
    let mut b = fs::read(path).unwrap();
    let before = b.clone();
    let n = b.len().max(1);
    match how {
        Damage::Delete => {
            fs::remove_file(path).unwrap();
            return true;
        }
        Damage::Flip => {
            let i = rng.next_u64() as usize % n;
            b[i] ^= 1 + (rng.next_u64() % 255) as u8;
        }
        Damage::Truncate => b.truncate(rng.next_u64() as usize % n),
        Damage::Zero => {
            let i = rng.next_u64() as usize % n;
            let len = 1 + rng.next_u64() as usize % 256;
            let end = (i + len).min(b.len());
            b[i..end].fill(0);
        }
    }
    if b == before {
        return false;
    }
    fs::write(path, b).unwrap();
    true
}

fn copy_repo(from: &Path, to: &Path) {
    sh(std::process::Command::new("cp").arg("-a").arg(from).arg(to));
}

/// An environment sharing the fixture's sources with a copy of its repository.
fn damaged_copy(fx: &Fixture, name: &str) -> Env {
    let env = Env::new();
    copy_repo(&fx.env.repo, &env.repo);
    let _ = name;
    env
}

/// Restores snapshot `id` and sorts its files: identical, or failed loudly (the restore
/// exits non-zero and names the path). Returns the failed paths. Panics on a file restored
/// with wrong content, or missing without a word.
fn restore_sorted(env: &Env, fx: &Fixture, id: &str, ctx: &str) -> BTreeSet<PathBuf> {
    let target = env.path("restore");
    let _ = fs::remove_dir_all(&target);
    let t = target.to_string_lossy().into_owned();
    let out = run(env, &["restore", id, "--target", &t]);
    let got = digest(&restored_path(&target, &fx.src));
    let mut failed = BTreeSet::new();
    for (p, want) in &fx.snaps[id] {
        if got.get(p) == Some(want) {
            continue;
        }
        // The failure names the file, or the directory whose listing was lost (up to the
        // snapshot's root, which is the target itself).
        let named = fx.src.join(p).ancestors().any(|a| {
            let shown = if a == Path::new("/") {
                target.clone()
            } else {
                restored_path(&target, a)
            };
            out.stderr.contains(&format!("{}:", shown.display()))
        });
        assert!(
            out.code != 0 && named,
            "{ctx}: {} restored wrong ({} bytes) without a loud failure naming it (exit {}):\n{}",
            p.display(),
            got.get(p).map_or(0, |g| g.len()),
            out.code,
            out.stderr
        );
        failed.insert(p.clone());
    }
    let _ = fs::remove_dir_all(&target);
    failed
}

/// `check --read-data --json` as (exit code, report).
fn check_json(env: &Env) -> (i32, serde_json::Value, String) {
    let out = run(env, &["check", "--read-data", "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out.code, v, out.stderr)
}

/// Absolute paths that check says are affected, per snapshot id.
fn affected(report: &serde_json::Value) -> BTreeMap<String, BTreeSet<PathBuf>> {
    let mut out: BTreeMap<String, BTreeSet<PathBuf>> = BTreeMap::new();
    for p in report["problems"].as_array().into_iter().flatten() {
        for a in p["affects"].as_array().into_iter().flatten() {
            let snap = a["snapshot"].as_str().unwrap_or_default().to_string();
            for path in a["paths"].as_array().into_iter().flatten() {
                let path = PathBuf::from(path.as_str().unwrap_or_default());
                out.entry(snap.clone()).or_default().insert(path);
            }
        }
    }
    out
}

#[derive(Default, Debug)]
struct Tally {
    injected: u64,
    detected: u64,
    /// Key damage that reads as a wrong password (AEAD cannot tell them apart).
    wrong_password: u64,
    files_failed_loudly: u64,
    files_restored_beside_damage: u64,
    files_recovered_by_repair: u64,
    restores_refused_naming_index: u64,
    /// Config changes that leave a valid config (not detectable, nothing lost).
    undetected_valid_config: u64,
    not_applicable: Vec<String>,
}

fn run_matrix(kind: Object, seed_default: u64) -> Tally {
    let test = format!("corruption {kind:?}");
    let seed = seed(&test, seed_default);
    let positions = count("ARCA_TORTURE_POSITIONS", 2, 10);
    let mut rng = Rng::new(seed);
    let fx = fixture();
    let mut t = Tally::default();
    for how in DAMAGES {
        if how == Damage::Delete && matches!(kind, Object::Snapshot | Object::Lock) {
            // Deleting a snapshot is what `forget` does, deleting a lock what `unlock`
            // does: nothing can tell such a deletion from a legitimate one.
            t.not_applicable.push(format!("{kind:?} {how:?}"));
            continue;
        }
        let reps = if how == Damage::Delete { 1 } else { positions };
        for rep in 0..reps {
            let env = damaged_copy(&fx, "x");
            let names = objects_of(&fx, &env.repo, kind);
            let name = names[rng.next_u64() as usize % names.len()].clone();
            let path = env.repo.join(&name);
            while !damage(&path, how, &mut rng) {}
            t.injected += 1;
            let ctx = format!("{test}: {how:?} #{rep} of {name}");
            let files_before = list_files(&env.repo).len();
            match kind {
                Object::Config => {
                    if run(&env, &["snapshots"]).code == 0 {
                        // The config is plaintext JSON without a checksum (format v1): a
                        // change that leaves valid values (a digit of `created`, of a size,
                        // whitespace) goes unnoticed. It must at least lose nothing.
                        let (code, report, err) = check_json(&env);
                        assert_eq!(
                            code, 0,
                            "{ctx}: undetected, and check fails: {report} {err}"
                        );
                        for id in fx.snaps.keys() {
                            let failed = restore_sorted(&env, &fx, id, &ctx);
                            assert!(failed.is_empty(), "{ctx}: undetected, and {failed:?} lost");
                        }
                        t.undetected_valid_config += 1;
                        continue;
                    }
                    for args in [&["snapshots"][..], &["check"][..], &["backup", "--stdin"]] {
                        let out = run(&env, args);
                        assert!(out.code != 0, "{ctx}: {args:?} succeeded");
                        assert!(
                            out.stderr.contains("config"),
                            "{ctx}: {args:?} does not name the config: {}",
                            out.stderr
                        );
                    }
                    assert_eq!(list_files(&env.repo).len(), files_before, "{ctx}: wrote");
                    t.detected += 1;
                }
                Object::Key => {
                    let out = run(&env, &["check"]);
                    assert!(out.code != 0, "{ctx}: check passed");
                    let named = out.stderr.contains(&name)
                        || (how == Damage::Delete && out.stderr.contains("keys/"));
                    if !named && out.code == 12 {
                        t.wrong_password += 1;
                    } else {
                        assert!(named, "{ctx}: the key file is not named: {}", out.stderr);
                    }
                    assert_eq!(list_files(&env.repo).len(), files_before, "{ctx}: wrote");
                    t.detected += 1;
                }
                Object::Lock => {
                    // A damaged lock protects nothing: it counts as stale, work goes on,
                    // and `unlock` removes it.
                    let (code, report, err) = check_json(&env);
                    assert_eq!(code, 0, "{ctx}: check fails: {report} {err}");
                    assert!(
                        report["warnings"].to_string().contains(&name),
                        "{ctx}: check does not name the damaged lock: {report}"
                    );
                    run(&env, &["unlock"]).ok();
                    assert_eq!(files_in(&env.repo.join("locks")), 0, "{ctx}: lock kept");
                    let (code, _, _) = check_json(&env);
                    assert_eq!(code, 0);
                    t.detected += 1;
                }
                Object::Index | Object::Snapshot | Object::TreePack | Object::DataPack => {
                    let (code, report, err) = check_json(&env);
                    assert_eq!(code, 1, "{ctx}: check passed: {report} {err}");
                    let objects: Vec<&str> = report["problems"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["object"].as_str())
                        .collect();
                    let named = objects.contains(&name.as_str());
                    if how == Damage::Delete && kind == Object::Index {
                        // The index file is gone; check names the packs and blobs that
                        // nothing indexes any more.
                        assert!(!objects.is_empty(), "{ctx}: {report}");
                    } else {
                        assert!(named, "{ctx}: check does not name {name}: {report}");
                    }
                    t.detected += 1;
                    let claimed = affected(&report);
                    // Restores: untouched files identical, touched ones fail loudly.
                    for id in fx.snaps.keys() {
                        let snap_obj = format!("snapshots/{id}");
                        if kind == Object::Snapshot && name == snap_obj {
                            let t2 = env.path("r").to_string_lossy().into_owned();
                            let out = run(&env, &["restore", id, "--target", &t2]);
                            assert!(
                                out.code != 0 && out.stderr.contains(id.as_str()),
                                "{ctx}: restore of the damaged snapshot: {}",
                                out.stderr
                            );
                            continue;
                        }
                        if kind == Object::Index && how != Damage::Delete {
                            // Restore refuses to start on a damaged index file (it cannot
                            // know what the file held) and names it; `repair index` below.
                            let t2 = env.path("r").to_string_lossy().into_owned();
                            let out = run(&env, &["restore", id, "--target", &t2]);
                            if out.code != 0 && out.stderr.contains(&name) {
                                t.restores_refused_naming_index += 1;
                                continue;
                            }
                        }
                        let failed = restore_sorted(&env, &fx, id, &ctx);
                        let claim = claimed.get(id).cloned().unwrap_or_default();
                        for f in &failed {
                            assert!(
                                fx.src.join(f).ancestors().any(|a| claim.contains(a)),
                                "{ctx}: restore of {id} failed on {} which check did not \
                                 report",
                                f.display()
                            );
                        }
                        t.files_failed_loudly += failed.len() as u64;
                        t.files_restored_beside_damage +=
                            (fx.snaps[id].len() - failed.len()) as u64;
                    }
                    // Repair.
                    match kind {
                        Object::Index => {
                            run(&env, &["repair", "index"]).ok();
                            let (code, report, _) = check_json(&env);
                            assert_eq!(code, 0, "{ctx}: after repair index: {report}");
                            for id in fx.snaps.keys() {
                                let failed = restore_sorted(&env, &fx, id, &ctx);
                                assert!(failed.is_empty(), "{ctx}: after repair: {failed:?}");
                                t.files_recovered_by_repair += fx.snaps[id].len() as u64;
                            }
                        }
                        Object::TreePack | Object::DataPack => {
                            run(&env, &["repair", "index"]).ok();
                            run(&env, &["repair", "snapshots", "--read-data", "--forget"]).ok();
                            run(&env, &["prune", "--max-unused", "0%"]).ok();
                            let (code, report, _) = check_json(&env);
                            assert_eq!(code, 0, "{ctx}: after repair + prune: {report}");
                            // Every remaining snapshot restores what it still lists.
                            for (id, s) in snapshots(&env, PASSWORD) {
                                let t2 = env.path("r2");
                                let _ = fs::remove_dir_all(&t2);
                                let ts = t2.to_string_lossy().into_owned();
                                run(&env, &["restore", &id, "--target", &ts, "-q"]).ok();
                                let got = digest(&restored_path(&t2, &fx.src));
                                let orig = s["repaired_from"].as_str().unwrap_or(&id).to_string();
                                let want = &fx.snaps[&orig];
                                for (p, data) in &got {
                                    assert_eq!(
                                        Some(data),
                                        want.get(p),
                                        "{ctx}: repaired {id} restores {} wrong",
                                        p.display()
                                    );
                                }
                                t.files_recovered_by_repair += got.len() as u64;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    figure(
        &test,
        &format!(
            "injected {}, detected and named {} (key damage read as a wrong password: {}), \
             files restored beside the damage {}, files failing loudly {}, files restored \
             after repair {}, restores refused naming a damaged index {}, config changes \
             that left a valid config (undetected, nothing lost) {}, not applicable: {:?}",
            t.injected,
            t.detected,
            t.wrong_password,
            t.files_restored_beside_damage,
            t.files_failed_loudly,
            t.files_recovered_by_repair,
            t.restores_refused_naming_index,
            t.undetected_valid_config,
            t.not_applicable
        ),
    );
    total("corruptions", &[t.injected, t.detected]);
    t
}

#[test]
fn config_damage() {
    let t = run_matrix(Object::Config, 0xC0F1);
    assert_eq!(t.injected, t.detected + t.undetected_valid_config);
}

#[test]
fn key_damage() {
    let t = run_matrix(Object::Key, 0x4E1);
    assert_eq!(t.injected, t.detected);
}

#[test]
fn index_damage() {
    let t = run_matrix(Object::Index, 0x1D3);
    assert_eq!(t.injected, t.detected);
}

#[test]
fn snapshot_damage() {
    let t = run_matrix(Object::Snapshot, 0x5A9);
    assert_eq!(t.injected, t.detected);
}

#[test]
fn tree_pack_damage() {
    let t = run_matrix(Object::TreePack, 0x7EE);
    assert_eq!(t.injected, t.detected);
}

#[test]
fn data_pack_damage() {
    let t = run_matrix(Object::DataPack, 0xDA7);
    assert_eq!(t.injected, t.detected);
}

#[test]
fn lock_damage() {
    let t = run_matrix(Object::Lock, 0x10C);
    assert_eq!(t.injected, t.detected);
}

/// check --read-data blames only the files whose blobs are damaged: a file in the same
/// pack whose own blob verifies is not reported as affected.
#[test]
fn damaged_pack_blames_only_damaged_blobs() {
    let fx = fixture();
    let env = damaged_copy(&fx, "blame");
    // The first snapshot's data pack holds a.bin and d/b.bin (and notes.txt); damage the
    // last bytes of the first blob only.
    let data_packs: Vec<String> = fx
        .packs
        .iter()
        .filter(|(_, k)| *k == "data")
        .map(|(n, _)| n.clone())
        .collect();
    let first = fx.snaps.keys().next().unwrap().clone();
    let mut blamed_total = 0;
    let mut failed_total = 0;
    for pack in &data_packs {
        let env2 = damaged_copy(&fx, "blame2");
        let path = env2.repo.join(pack);
        let mut b = fs::read(&path).unwrap();
        b[10] ^= 0x40;
        fs::write(&path, b).unwrap();
        let (_, report, _) = check_json(&env2);
        let claimed = affected(&report);
        for id in fx.snaps.keys() {
            let failed = restore_sorted(&env2, &fx, id, "blame");
            let claim: BTreeSet<PathBuf> = claimed
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|p| p.strip_prefix(&fx.src).ok().map(Path::to_path_buf))
                .collect();
            blamed_total += claim.len();
            failed_total += failed.len();
            assert_eq!(
                claim, failed,
                "snapshot {id}: check blames {claim:?}, but only {failed:?} fail to restore"
            );
        }
    }
    let _ = (env, first);
    eprintln!("blamed {blamed_total}, failed {failed_total}");
}

/// A damaged snapshot object can be removed with arca itself (`forget` with its full id),
/// not only by hand.
#[test]
fn damaged_snapshot_can_be_removed() {
    let fx = fixture();
    let env = damaged_copy(&fx, "rm");
    let id = fx.snaps.keys().next().unwrap().clone();
    let path = env.repo.join(format!("snapshots/{id}"));
    let mut b = fs::read(&path).unwrap();
    b[30] ^= 1;
    fs::write(&path, b).unwrap();
    assert_eq!(check_json(&env).0, 1);
    let forget = run(&env, &["forget", &id]);
    let repair = run(&env, &["repair", "snapshots", "--forget"]);
    assert_eq!(
        check_json(&env).0,
        0,
        "neither `forget {id}` (exit {}: {}) nor `repair snapshots --forget` (exit {}: {}) \
         removes the damaged snapshot object",
        forget.code,
        forget.stderr.trim(),
        repair.code,
        repair.stderr.trim()
    );
}

/// A key file whose wrapped key is not hex: opening names the key file.
#[test]
fn key_file_with_malformed_wrapped_key_is_named() {
    let env = Env::new();
    run(&env, &["init"]).ok();
    let key = list_files(&env.repo.join("keys")).remove(0);
    let name = format!("keys/{}", key.file_name().unwrap().to_string_lossy());
    let text = fs::read_to_string(&key).unwrap();
    let at = text.find("\"wrapped\": \"").unwrap() + 20;
    let mut b = text.into_bytes();
    b[at] = b'K';
    fs::write(&key, b).unwrap();
    let out = run(&env, &["snapshots"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&name),
        "the key file is not named: {}",
        out.stderr
    );
}
