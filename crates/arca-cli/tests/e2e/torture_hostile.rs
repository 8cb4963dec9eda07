//! Torture: hostile source trees. Files that grow, shrink, vanish or are replaced while
//! they are read; files and directories the backup may not read (as a non-root user);
//! a directory bind-mounted inside itself (a real loop: the walker meets its ancestor);
//! every awkward name and file kind. A backup
//! either records the errors (exit 3, snapshot marked incomplete) or captures a
//! consistent version; it never crashes or hangs.
//!
//! Rounds of the changing-files test: ARCA_TORTURE_MUTATION_ROUNDS (short 6, long 40).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::torture_support::*;

/// Runs `arca` with a deadline: a hang fails the test.
fn run_limited(mut c: Command, limit: Duration, what: &str) -> (i32, String, String) {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "{what} died from a signal: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn arca_cmd(env: &Env) -> Command {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1");
    c
}

/// Contents a file may legitimately have been captured with.
fn versions(seed: u64, n: u64, len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|v| random_bytes(seed ^ (v << 20), len))
        .collect()
}

#[test]
fn files_changing_while_read() {
    let test = "files_changing_while_read";
    let seed = seed(test, 0x3C);
    let rounds = count("ARCA_TORTURE_MUTATION_ROUNDS", 6, 40);
    let env = Env::new();
    run(&env, &["init"]).ok();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    const LEN: usize = 600_000;
    // Growing: appended to in place; shrinking: truncated in place; vanishing: deleted and
    // recreated; replaced: a new version renamed over it (atomic); steady: never changes.
    let grow_data = random_bytes(seed ^ 1, 8 * LEN);
    let shrink_data = random_bytes(seed ^ 2, LEN);
    let replaced = versions(seed ^ 3, 64, LEN);
    let vanish = random_bytes(seed ^ 4, LEN);
    let steady = random_bytes(seed ^ 5, LEN);
    fs::write(src.join("steady.bin"), &steady).unwrap();
    let (mut clean, mut incomplete) = (0, 0);
    for round in 0..rounds {
        fs::write(src.join("grow.bin"), &grow_data[..LEN / 4]).unwrap();
        fs::write(src.join("shrink.bin"), &shrink_data).unwrap();
        fs::write(src.join("replaced.bin"), &replaced[0]).unwrap();
        fs::write(src.join("vanish.bin"), &vanish).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mutator = {
            let (stop, src) = (stop.clone(), src.clone());
            let grow_data = grow_data.clone();
            let replaced = replaced.clone();
            let vanish = vanish.clone();
            std::thread::spawn(move || {
                let mut i = 0usize;
                let mut grown = LEN / 4;
                let mut shrunk = LEN;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    if grown + 4096 <= grow_data.len() {
                        use std::io::Write;
                        if let Ok(mut f) = fs::OpenOptions::new()
                            .append(true)
                            .open(src.join("grow.bin"))
                        {
                            let _ = f.write_all(&grow_data[grown..grown + 4096]);
                            grown += 4096;
                        }
                    }
                    if shrunk > 4096 {
                        shrunk -= 4096;
                        if let Ok(f) = fs::OpenOptions::new()
                            .write(true)
                            .open(src.join("shrink.bin"))
                        {
                            let _ = f.set_len(shrunk as u64);
                        }
                    }
                    let tmp = src.join(".replaced.tmp");
                    if fs::write(&tmp, &replaced[i % replaced.len()]).is_ok() {
                        let _ = fs::rename(&tmp, src.join("replaced.bin"));
                    }
                    if i.is_multiple_of(2) {
                        let _ = fs::remove_file(src.join("vanish.bin"));
                    } else {
                        // Appears whole (a plain write would show an empty file first,
                        // a state the assertions below do not expect).
                        let tmp = src.join(".vanish.tmp");
                        if fs::write(&tmp, &vanish).is_ok() {
                            let _ = fs::rename(&tmp, src.join("vanish.bin"));
                        }
                    }
                    std::thread::sleep(Duration::from_micros(300));
                }
            })
        };
        let mut c = arca_cmd(&env);
        c.args([OsStr::new("backup"), OsStr::new("--json")])
            .arg(&src)
            .args(["--exclude", "*.tmp"]);
        let (code, stdout, stderr) = run_limited(c, Duration::from_secs(120), "backup");
        stop.store(true, Ordering::SeqCst);
        mutator.join().unwrap();
        let ctx = format!("round {round}");
        assert!(
            code == 0 || code == 3,
            "{ctx}: backup exited {code}: {stderr}"
        );
        let sum = summary_line(&stdout).unwrap_or_else(|| panic!("{ctx}: no summary: {stderr}"));
        let id = s(&sum, "snapshot_id").to_string();
        let errors: BTreeSet<PathBuf> = sum["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["path"].as_str().map(PathBuf::from))
            .collect();
        assert_eq!(code == 3, !errors.is_empty(), "{ctx}: exit {code}, {sum}");
        assert_eq!(sum["incomplete"], code == 3, "{ctx}: {sum}");
        if code == 3 {
            incomplete += 1;
        } else {
            clean += 1;
        }
        // Every file is restored as a version it really had, or is listed among the errors.
        let target = env.path("restore");
        let _ = fs::remove_dir_all(&target);
        let t = target.to_string_lossy().into_owned();
        let out = run(&env, &["restore", &id, "--target", &t]);
        assert!(out.code == 0, "{ctx}: restore: {}", out.stderr);
        let got = digest(&restored_path(&target, &src));
        let ok = |name: &str, data: &[u8]| -> bool {
            match name {
                "steady.bin" => data == steady,
                "grow.bin" => data.len() >= LEN / 4 && grow_data.starts_with(data),
                "shrink.bin" => shrink_data.starts_with(data),
                "replaced.bin" => replaced.iter().any(|v| v == data),
                "vanish.bin" => data == vanish,
                _ => false,
            }
        };
        for (rel, data) in &got {
            let name = rel.to_string_lossy().into_owned();
            let listed = errors.contains(&src.join(rel));
            assert!(
                listed || ok(&name, data),
                "{ctx}: {name} restored as {} bytes that it never held, and the snapshot \
                 does not list it as an error ({sum})",
                data.len()
            );
        }
        assert!(got.contains_key(Path::new("steady.bin")), "{ctx}");
        assert!(
            got.contains_key(Path::new("replaced.bin")),
            "{ctx}: an atomically replaced file is missing"
        );
        let _ = fs::remove_dir_all(&target);
    }
    assert_check(&env, PASSWORD, true, "end");
    figure(
        test,
        &format!(
            "{rounds} backups while files grew, shrank, vanished and were replaced: {clean} \
             consistent snapshots, {incomplete} marked incomplete with the files named, \
             crashes 0, hangs 0, inconsistent files 0"
        ),
    );
}

/// The uid/gid of `nobody`, and a command prefix that runs as it.
fn as_nobody() -> Option<(u32, u32, Vec<String>)> {
    if !have_tool("setpriv") || !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("nobody").ok().flatten()?;
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    Some((
        uid,
        gid,
        vec![
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
            "--".into(),
        ],
    ))
}

#[test]
fn permission_denied_files_and_dirs() {
    let test = "permission_denied_files_and_dirs";
    let Some((uid, gid, prefix)) = as_nobody() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true")
                || !nix::unistd::Uid::effective().is_root(),
            "root without setpriv under CI"
        );
        eprintln!("{test}: skipped: needs root and setpriv to act as nobody");
        return;
    };
    let env = Env::new();
    // nobody must reach the sandbox, own the repository, and read the readable sources.
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let chown = |p: &Path| nix::unistd::chown(p, Some(uid.into()), Some(gid.into())).unwrap();
    fs::create_dir(&env.repo).unwrap();
    chown(&env.repo);
    let src = env.path("src");
    fs::create_dir_all(src.join("open")).unwrap();
    fs::create_dir_all(src.join("closed")).unwrap();
    fs::write(src.join("open/readable.txt"), "readable\n").unwrap();
    fs::write(src.join("closed/inside.txt"), "hidden\n").unwrap();
    fs::write(src.join("secret.txt"), "secret\n").unwrap();
    fs::write(src.join("plain.txt"), "plain\n").unwrap();
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(src.join("closed"), fs::Permissions::from_mode(0o000)).unwrap();
    let nobody = |args: &[&OsStr]| {
        let mut c = Command::new(&prefix[0]);
        c.args(&prefix[1..]).arg(bin()).args(args);
        c.env("ARCA_PASSWORD", PASSWORD)
            .env("ARCA_REPOSITORY", &env.repo)
            .env("ARCA_INSECURE_TEST_KDF", "1")
            .env("HOME", "/nonexistent")
            .env_remove("ARCA_CACHE_DIR")
            .stdin(Stdio::null());
        c
    };
    let (code, _, err) = run_limited(
        nobody(&[OsStr::new("init")]),
        Duration::from_secs(60),
        "init",
    );
    assert_eq!(code, 0, "init as nobody: {err}");
    let (code, stdout, err) = run_limited(
        nobody(&[OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]),
        Duration::from_secs(60),
        "backup",
    );
    assert_eq!(
        code, 3,
        "backup with unreadable entries must be incomplete: {err}"
    );
    let sum = summary_line(&stdout).expect("summary");
    let errors = sum["errors"].to_string();
    for denied in ["secret.txt", "closed"] {
        assert!(
            errors.contains(&*src.join(denied).to_string_lossy()),
            "{denied} not listed: {errors}"
        );
    }
    assert!(err.contains("secret.txt"), "not reported on stderr: {err}");
    // What could be read restores (as root, for the comparison).
    let id = s(&sum, "snapshot_id").to_string();
    let target = env.path("restore");
    let t = target.to_string_lossy().into_owned();
    let out = run(&env, &["restore", &id, "--target", &t]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = digest(&restored_path(&target, &src));
    assert_eq!(got[Path::new("plain.txt")], b"plain\n");
    assert_eq!(got[Path::new("open/readable.txt")], b"readable\n");
    assert!(!got.contains_key(Path::new("closed/inside.txt")));
    fs::set_permissions(src.join("closed"), fs::Permissions::from_mode(0o755)).unwrap();
    figure(
        test,
        &format!(
            "backup as nobody of a tree with an unreadable file and directory: exit 3, both \
             named in the snapshot's errors, the rest restored ({} files)",
            got.len()
        ),
    );
}

/// A bind mount, unmounted when the test ends (also on panic).
struct BindMount(PathBuf);

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// (device, inode) of a path.
fn identity(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (md.dev(), md.ino())
}

/// A real directory loop: `mount --bind src src/deep/er/loop` makes `loop` the very
/// directory `src` (same device and inode), so a walker that follows it meets its own
/// ancestor. The backup must end, report the loop (exit 3, the loop's path in the snapshot's
/// errors), and store everything else once: the restore holds each file once, byte for
/// byte, and the loop as an empty directory. With -x the same: a bind mount of the same
/// filesystem has the same device, so -x does not stop it.
#[test]
fn directory_bind_mounted_inside_itself() {
    let test = "directory_bind_mounted_inside_itself";
    let env = Env::new();
    run(&env, &["init"]).ok();
    let src = env.path("src");
    let looped = src.join("deep/er/loop");
    fs::create_dir_all(&looped).unwrap();
    write_random(&src.join("data.bin"), 5, 100_000);
    fs::write(src.join("deep/er/inner.txt"), b"inner\n").unwrap();
    let want = digest(&src);
    let mount = Command::new("mount")
        .arg("--bind")
        .arg(&src)
        .arg(&looped)
        .output()
        .expect("run mount");
    if !mount.status.success() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "mount --bind is not permitted: {}",
            String::from_utf8_lossy(&mount.stderr)
        );
        eprintln!(
            "{test}: skipped: mount --bind is not permitted here ({})",
            String::from_utf8_lossy(&mount.stderr).trim()
        );
        return;
    }
    let _guard = BindMount(looped.clone());
    assert_eq!(
        identity(&looped),
        identity(&src),
        "the bind mount makes a loop"
    );

    let mut runs = Vec::new();
    for extra in [None, Some("-x")] {
        let what = format!(
            "backup{}",
            extra.map(|x| format!(" {x}")).unwrap_or_default()
        );
        let mut c = arca_cmd(&env);
        c.args(["backup", "--json"]).args(extra).arg(&src);
        let (code, stdout, err) = run_limited(c, Duration::from_secs(120), &what);
        assert_eq!(
            code, 3,
            "{what}: exit {code} (the loop makes it incomplete): {err}"
        );
        let sum = summary_line(&stdout).expect("summary");
        let errors = sum["errors"].as_array().cloned().unwrap_or_default();
        let loop_path = looped.to_string_lossy().into_owned();
        assert!(
            errors.iter().any(|e| {
                e["path"].as_str() == Some(loop_path.as_str())
                    && e["reason"].as_str().is_some_and(|r| r.contains("loop"))
            }),
            "{what}: the loop at {loop_path} is not reported: {errors:?}"
        );
        assert_eq!(
            errors.len(),
            1,
            "{what}: only the loop is an error: {errors:?}"
        );
        let id = s(&sum, "snapshot_id").to_string();
        let target = env.path(&format!("restore-{}", runs.len()));
        let t = target.to_string_lossy().into_owned();
        let out = run(&env, &["restore", &id, "--target", &t]);
        assert_eq!(out.code, 0, "{what}: restore: {}", out.stderr);
        let root = restored_path(&target, &src);
        let d = digest_diff(&want, &digest(&root));
        assert!(d.is_empty(), "{what}: restore differs:\n{}", d.join("\n"));
        let restored_loop = restored_path(&target, &looped);
        assert!(
            restored_loop.is_dir(),
            "{what}: the loop's directory is restored"
        );
        assert_eq!(
            fs::read_dir(&restored_loop).unwrap().count(),
            0,
            "{what}: the loop's directory is restored empty"
        );
        runs.push((
            what,
            errors[0]["reason"].as_str().unwrap_or_default().to_string(),
        ));
    }
    figure(
        test,
        &format!(
            "backup (and backup -x) of a directory bind-mounted 3 levels inside itself: ended \
             with exit 3, the loop reported ({:?}), every file restored once byte for byte, \
             the loop restored as an empty directory",
            runs[0].1.replace(src.to_string_lossy().as_ref(), "SRC")
        ),
    );
}

#[test]
fn awkward_names_and_file_kinds() {
    let test = "awkward_names_and_file_kinds";
    let env = Env::new();
    run(&env, &["init"]).ok();
    let src = env.path("src");
    let d = src.join("d");
    fs::create_dir_all(&d).unwrap();
    let names: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b"new\nline".to_vec(),
        b"tab\there".to_vec(),
        b"\xff\xfe not utf-8".to_vec(),
        b"-leading-dash".to_vec(),
        b"--".to_vec(),
        b"*?[glob]{a,b}".to_vec(),
        b"back\\slash".to_vec(),
        "ünïcödé 日本語 🙂".as_bytes().to_vec(),
        b".hidden".to_vec(),
        b"...".to_vec(),
        b"trailing space ".to_vec(),
        b"colon:semi;".to_vec(),
        b"quote\"'`$(x)".to_vec(),
        vec![b'n'; 255],
    ];
    for (i, n) in names.iter().enumerate() {
        let p = d.join(OsStr::from_bytes(n));
        write_random(&p, 100 + i as u64, 10 + i * 97);
        let sub = d.join(format!("dir-{i}")).join(OsStr::from_bytes(n));
        fs::create_dir_all(sub.parent().unwrap()).unwrap();
        fs::write(&sub, n).unwrap();
    }
    // Kinds: empty file, sparse file, hardlinks, symlinks (dangling, looping, absolute,
    // relative), fifo, socket, character device.
    fs::write(src.join("empty"), b"").unwrap();
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(50_000_000).unwrap();
    drop(f);
    fs::write(src.join("hard1"), b"linked").unwrap();
    fs::hard_link(src.join("hard1"), src.join("hard2")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", src.join("dangling")).unwrap();
    std::os::unix::fs::symlink("loop-b", src.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", src.join("loop-b")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("absolute")).unwrap();
    std::os::unix::fs::symlink("../src/hard1", src.join("relative")).unwrap();
    sh(Command::new("mkfifo").arg(src.join("fifo")));
    let _sock = std::os::unix::net::UnixListener::bind(src.join("socket")).unwrap();
    let dev = Command::new("mknod")
        .arg(src.join("null-dev"))
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    let mut c = arca_cmd(&env);
    c.args([OsStr::new("backup"), OsStr::new("--json")])
        .arg(&src);
    let (code, stdout, err) = run_limited(c, Duration::from_secs(120), "backup");
    assert_eq!(code, 0, "{err}");
    let sum = summary_line(&stdout).expect("summary");
    let id = s(&sum, "snapshot_id").to_string();
    let target = env.path("restore");
    let t = target.to_string_lossy().into_owned();
    let mut c = arca_cmd(&env);
    c.args(["restore", &id, "--target", &t]);
    let (code, _, err) = run_limited(c, Duration::from_secs(120), "restore");
    assert_eq!(code, 0, "{err}");
    drop(_sock);
    let diffs = compare_trees(&src, &restored_path(&target, &src), &[]);
    // The directory holding the socket changed when the listener closed; content matters.
    let diffs: Vec<&String> = diffs.iter().filter(|l| !l.contains("mtime")).collect();
    assert!(diffs.is_empty(), "restore differs:\n{diffs:#?}");
    figure(
        test,
        &format!(
            "{} awkward names (in files and directories) and 10 file kinds{}: backed up and \
             restored identically",
            names.len(),
            if dev { " incl. a device" } else { "" }
        ),
    );
}
