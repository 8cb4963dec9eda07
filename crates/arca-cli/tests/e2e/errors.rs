//! End-to-end: exit codes, password sources, damaged repositories, `--time`.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::*;

#[test]
fn wrong_password_exits_12() {
    let env = Env::init();
    let mut c = env.cmd();
    c.env("ARCA_PASSWORD", "not the password")
        .args(["snapshots"]);
    run_cmd(c, None).code(12).says("wrong password");
}

#[test]
fn missing_repository_exits_10() {
    let env = Env::new();
    env.run(&["snapshots"]).code(10).says("does not exist");
    assert!(
        !env.repo.exists(),
        "a read command created the repository dir"
    );
    // -r overrides ARCA_REPOSITORY.
    let mut c = env.cmd();
    c.args(["-r"]).arg(env.path("elsewhere")).arg("snapshots");
    run_cmd(c, None).code(10);
}

#[test]
fn non_repository_dir_exits_10() {
    let env = Env::new();
    fs::create_dir(&env.repo).unwrap();
    fs::write(env.repo.join("notes.txt"), b"just a file").unwrap();
    env.run(&["snapshots"])
        .code(10)
        .says("not an arca repository");
    // init refuses it as well, and leaves it alone.
    env.run(&["init"]).code(1).says("not empty");
    assert_eq!(list_files(&env.repo), [env.repo.join("notes.txt")]);
}

#[test]
fn unlistable_location_says_permission_denied_not_not_a_repository() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // As root, permission bits do not stop a listing: run arca as nobody.
    if !nix::unistd::getuid().is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test runs arca as nobody and needs root"
        );
        eprintln!("skipping: needs root to run arca as nobody");
        return;
    }
    let env = Env::new();
    // Traversable but not listable by others: `config` is simply absent, but the listing
    // that would tell an empty place from a foreign one is refused.
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::create_dir(&env.repo).unwrap();
    fs::write(env.repo.join("notes.txt"), b"not for everyone").unwrap();
    fs::set_permissions(&env.repo, fs::Permissions::from_mode(0o711)).unwrap();
    let mut c = bare_cmd();
    c.arg("-r")
        .arg(&env.repo)
        .arg("snapshots")
        .env("ARCA_PASSWORD", PASSWORD)
        .env("ARCA_INSECURE_TEST_KDF", "1")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .uid(65534)
        .gid(65534);
    let out = run_cmd(c, None);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.to_lowercase().contains("permission denied"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("not an arca repository"),
        "{}",
        out.stderr
    );
}

#[test]
fn init_on_existing_repository_fails_and_changes_nothing() {
    let env = Env::init();
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        list_files(dir)
            .into_iter()
            .map(|p| {
                let d = fs::read(&p).unwrap();
                (p, d)
            })
            .collect()
    };
    let before = snapshot(&env.repo);
    env.run(&["init"]).code(1).says("already exists");
    let mut c = env.cmd();
    c.env("ARCA_PASSWORD", "another password").arg("init");
    run_cmd(c, None).code(1);
    assert_eq!(
        snapshot(&env.repo),
        before,
        "init changed an existing repository"
    );
    env.run(&["snapshots"]).ok();
}

#[test]
fn newer_config_version_is_refused() {
    let env = Env::init();
    let cfg_path = env.repo.join("config");
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
    assert_eq!(cfg["version"], 1);
    cfg["version"] = serde_json::json!(99);
    fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    env.run(&["snapshots"])
        .code(1)
        .says("version 99")
        .says("upgrade");
}

#[test]
fn password_sources() {
    let env = Env::new();
    let pwfile = env.path("pw.txt");
    fs::write(&pwfile, b"file password\nsecond line ignored\n").unwrap();

    // init with --password-file (only the first line counts).
    let mut c = bare_cmd();
    c.arg("-r")
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&pwfile)
        .arg("init");
    run_cmd(c, None).ok();

    // ARCA_PASSWORD with the first line works.
    let mut c = bare_cmd();
    c.env("ARCA_REPOSITORY", &env.repo)
        .env("ARCA_PASSWORD", "file password")
        .arg("snapshots");
    run_cmd(c, None).ok();

    // ARCA_PASSWORD_FILE.
    let mut c = bare_cmd();
    c.env("ARCA_REPOSITORY", &env.repo)
        .env("ARCA_PASSWORD_FILE", &pwfile)
        .arg("snapshots");
    run_cmd(c, None).ok();

    // ARCA_PASSWORD_COMMAND, and it wins over a wrong ARCA_PASSWORD.
    let mut c = bare_cmd();
    c.env("ARCA_REPOSITORY", &env.repo)
        .env("ARCA_PASSWORD", "wrong")
        .env("ARCA_PASSWORD_COMMAND", "printf 'file password\\n'")
        .arg("snapshots");
    run_cmd(c, None).ok();

    // --password-file wins over a wrong ARCA_PASSWORD.
    let mut c = bare_cmd();
    c.env("ARCA_REPOSITORY", &env.repo)
        .env("ARCA_PASSWORD", "wrong")
        .arg("--password-file")
        .arg(&pwfile)
        .arg("snapshots");
    run_cmd(c, None).ok();

    // A wrong password from a command: 12. A failing command: 1, naming it.
    let mut c = bare_cmd();
    c.env("ARCA_REPOSITORY", &env.repo)
        .env("ARCA_PASSWORD_COMMAND", "echo nope")
        .arg("snapshots");
    run_cmd(c, None).code(12);
    let mut c = bare_cmd();
    c.env("ARCA_REPOSITORY", &env.repo)
        .env("ARCA_PASSWORD_COMMAND", "exit 7")
        .arg("snapshots");
    run_cmd(c, None).code(1).says("password command");

    // A missing password file: 1, naming the file.
    let mut c = bare_cmd();
    c.arg("-r")
        .arg(&env.repo)
        .arg("--password-file")
        .arg(env.path("missing.txt"))
        .arg("snapshots");
    run_cmd(c, None).code(1).says("missing.txt");

    // No password at all and no terminal: 1 with a hint.
    let mut c = bare_cmd();
    c.arg("-r").arg(&env.repo).arg("snapshots");
    run_cmd(c, None).code(1).says("ARCA_PASSWORD");
}

/// Paths of the packs (data/XX/ID) with their sizes.
fn packs(repo: &Path) -> Vec<(PathBuf, u64)> {
    list_files(&repo.join("data"))
        .into_iter()
        .map(|p| {
            let len = fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect()
}

fn pack_id(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn flipped_byte_in_pack_is_found_and_restore_keeps_going() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let big = write_random(&src.join("big.bin"), 10, 6 * 1024 * 1024);
    let small = small_tree(&src.join("small"), 12, 11);
    assert!(small > 0);
    env.backup(&[&src], &[]);
    env.run(&["check", "--read-data"]).ok();

    // Flip one byte in the middle of the largest pack (the data pack).
    let (largest, len) = packs(&env.repo)
        .into_iter()
        .max_by_key(|(_, l)| *l)
        .unwrap();
    let mut bytes = fs::read(&largest).unwrap();
    bytes[len as usize / 2] ^= 0x01;
    fs::write(&largest, &bytes).unwrap();
    let id = pack_id(&largest);

    let out = env.run(&["check", "--read-data"]).code(1);
    let short = &id[..8];
    let all = format!("{}{}", out.stdout_str(), out.stderr);
    assert!(
        all.contains(&id) || all.contains(short),
        "check does not name the damaged pack {id}:\n{all}"
    );
    out.says("big.bin");

    let target = env.path("t");
    let out = env.run_os(&[
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    out.fails().says("big.bin");
    let restored = restored_path(&target, &src);
    // Everything else is restored intact.
    assert_same_tree(&src.join("small"), &restored.join("small"));
    // The damaged file is not silently restored with the original content claimed.
    if let Ok(d) = fs::read(restored.join("big.bin")) {
        assert_ne!(d, big, "big.bin restored intact from a damaged pack?");
    }
}

#[test]
fn deleted_pack_is_found_and_only_its_files_fail() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    write_random(&src.join("first.bin"), 20, 2 * 1024 * 1024);
    small_tree(&src.join("small"), 8, 21);
    env.backup(&[&src], &[]);
    let before: Vec<PathBuf> = packs(&env.repo).into_iter().map(|(p, _)| p).collect();

    write_random(&src.join("second.bin"), 22, 2 * 1024 * 1024);
    env.backup(&[&src], &[]);
    // The new data pack holds only second.bin's blobs: the largest new pack.
    let (victim, _) = packs(&env.repo)
        .into_iter()
        .filter(|(p, _)| !before.contains(p))
        .max_by_key(|(_, l)| *l)
        .unwrap();
    fs::remove_file(&victim).unwrap();
    let id = pack_id(&victim);

    let out = env.run(&["check"]).code(1);
    let all = format!("{}{}", out.stdout_str(), out.stderr);
    assert!(
        all.contains(&id) || all.contains(&id[..8]),
        "check does not name the missing pack {id}:\n{all}"
    );
    out.says("second.bin");

    let target = env.path("t");
    let out = env
        .run_os(&[
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            target.as_os_str(),
        ])
        .fails()
        .says("second.bin");
    assert!(
        !out.stderr.contains("first.bin"),
        "restore reports an unaffected file:\n{}",
        out.stderr
    );
    let restored = restored_path(&target, &src);
    assert_eq!(
        fs::read(restored.join("first.bin")).unwrap(),
        fs::read(src.join("first.bin")).unwrap()
    );
    assert_same_tree(&src.join("small"), &restored.join("small"));
}

#[test]
fn snapshot_time_option() {
    let env = Env::init();
    let src = env.path("src");
    small_tree(&src, 3, 30);
    env.backup(&[&src], &["--time", "2020-01-02 03:04:05"]);
    let snaps = env.snapshots();
    let t = s(&snaps[0], "time");
    // The tests run arca with TZ=UTC.
    assert!(t.starts_with("2020-01-02T03:04:05"), "time {t}");

    let bad = env.run_os(&[
        OsStr::new("backup"),
        OsStr::new("--time"),
        OsStr::new("2020-13-45 99:00:00"),
        src.as_os_str(),
    ]);
    bad.code(1).says("--time");
    let bad = env.run_os(&[
        OsStr::new("backup"),
        OsStr::new("--time"),
        OsStr::new("yesterday"),
        src.as_os_str(),
    ]);
    bad.code(1);
    assert_eq!(env.snapshots().len(), 1);
}

/// A backup waiting on stdin holds its lock; `repair index` needs an exclusive one: 11.
#[test]
fn locked_repository_exits_11() {
    let env = Env::init();
    let mut c = env.cmd();
    c.args(["backup", "--stdin", "--stdin-filename", "x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    // Wait until its lock exists.
    let start = std::time::Instant::now();
    while env.count_objects("locks") == 0 {
        assert!(start.elapsed().as_secs() < 20, "backup never took a lock");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    env.run(&["repair", "index"]).code(11).says("locked");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"some data").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    env.run(&["repair", "index"]).ok();
    assert_eq!(env.count_objects("locks"), 0, "locks left behind");
}
