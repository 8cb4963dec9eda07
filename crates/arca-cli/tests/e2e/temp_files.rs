//! Temporary files of interrupted writes in a local repository (`.tmp-HOST-PID-START-RANDOM`
//! beside the object being written): `unlock` and `prune` remove those whose writer process
//! is gone from this host and any older than a day, and keep those of live writers and of
//! other hosts' recent writes.
//!
//! The writes are interrupted for real: `strace` kills (or holds) `arca` at the rename that
//! would put an object in place, after its temporary file was written and synced. Without
//! strace the test skips, except under CI=true where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const RENAMES: &str = "rename,renameat,renameat2";

fn temp_files(repo: &Path) -> Vec<PathBuf> {
    list_files(repo)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect()
}

/// `arca ARGS` under strace, which applies `inject` (e.g. `signal=KILL:when=2`) to the
/// rename syscalls.
fn under_strace(env: &Env, inject: &str, args: &[&std::ffi::OsStr]) -> Command {
    let c = env.cmd();
    let program = c.get_program().to_owned();
    let mut s = Command::new("strace");
    s.args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={RENAMES}"))
        .arg("-e")
        .arg(format!("inject={RENAMES}:{inject}"))
        .arg(program)
        .args(args);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    s.env("ARCA_INSECURE_TEST_KDF", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    s
}

/// Sets the mtime of `path` to two days ago.
fn age_two_days(path: &Path) {
    let secs = jiff::Timestamp::now().as_second() - 2 * 24 * 3600;
    set_mtime(path, secs, 0);
}

#[test]
fn unlock_and_prune_remove_temp_files_of_gone_writers() {
    if !tool_or_skip(
        "strace",
        "unlock_and_prune_remove_temp_files_of_gone_writers",
    ) {
        return;
    }
    let env = Env::init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 1, 300_000);
    small_tree(&src.join("small"), 5, 2);
    let backup: Vec<&std::ffi::OsStr> = vec!["backup".as_ref(), "-q".as_ref(), src.as_os_str()];

    // Killed at the first, second and third rename of a backup: the lock, then objects.
    for n in 1..=3 {
        let status = under_strace(&env, &format!("signal=KILL:when={n}"), &backup)
            .status()
            .expect("run strace");
        assert!(!status.success(), "the backup was killed at rename {n}");
    }
    // At least one temporary file per killed write (another thread may have been writing
    // too when the kill came).
    let killed = temp_files(&env.repo);
    assert!(
        killed.len() >= 3,
        "temporary files of killed writes: {killed:?}"
    );

    // Planted: another host's recent write (kept), another host's write of two days ago
    // (removed), a recent one of the older name form without host (kept), an old one of
    // that form (removed).
    let data_dir = list_files(&env.repo.join("data"))
        .first()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| env.repo.join("index"));
    let other_recent = data_dir.join(".tmp-0000000000000000-12345-678-00000000000000aa");
    let other_old = data_dir.join(".tmp-0000000000000000-12345-678-00000000000000bb");
    let older_form_recent = env.repo.join("index/.tmp-12345-00000000000000cc");
    let older_form_old = env.repo.join("index/.tmp-12345-00000000000000dd");
    for p in [
        &other_recent,
        &other_old,
        &older_form_recent,
        &older_form_old,
    ] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"partial").unwrap();
    }
    age_two_days(&other_old);
    age_two_days(&older_form_old);

    // A live writer: held for a minute at its second rename, its temporary file written.
    let mut held = under_strace(&env, "delay_enter=60000000:when=2", &backup)
        .spawn()
        .expect("run strace");
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let now: Vec<PathBuf> = temp_files(&env.repo)
            .into_iter()
            .filter(|p| {
                !killed.contains(p)
                    && ![
                        &other_recent,
                        &other_old,
                        &older_form_recent,
                        &older_form_old,
                    ]
                    .contains(&p)
            })
            .collect();
        if let Some(p) = now.into_iter().next() {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the held backup wrote no temporary file"
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    let out = env.run(&["unlock", "--json"]).ok();
    // The killed writes' and the two planted ones older than a day.
    assert_eq!(
        out.json()["temporary_files_removed"],
        killed.len() + 2,
        "{}",
        out.stdout_str()
    );
    let left = temp_files(&env.repo);
    for p in &killed {
        assert!(
            !left.contains(p),
            "{} of a killed write is left",
            p.display()
        );
    }
    for p in [&live, &other_recent, &older_form_recent] {
        assert!(left.contains(p), "{} was removed", p.display());
    }

    // The held writer is killed: now its temporary file is abandoned too, and `unlock`
    // removes it.
    let writer_pid: i32 = live
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('-')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    // Killed while strace holds it (killing strace first would let it finish the rename),
    // then gone once reaped (a zombie still has its /proc entry and start time).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(writer_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the held arca");
    // strace would sleep out its delay before reaping it; the dead arca is reaped by init.
    let _ = held.kill();
    let _ = held.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{writer_pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the held arca {writer_pid} did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    env.run(&["unlock"]).ok();
    let killed_temp_before_prune = temp_files(&env.repo).contains(&live);
    assert!(
        !killed_temp_before_prune,
        "unlock removes the temporary file once its writer is gone"
    );
    // A fresh killed write, removed by prune (which keeps the other host's recent write
    // and the recent one of the older form).
    under_strace(&env, "signal=KILL:when=2", &backup)
        .status()
        .expect("run strace");
    let fresh = temp_files(&env.repo).len() - 2;
    assert!(fresh >= 1, "the killed write left its temporary file");
    let out = env.run(&["prune", "--json"]).ok();
    let report = out
        .json_lines()
        .into_iter()
        .find(|v| v.get("temporary_files_removed").is_some())
        .unwrap_or_default();
    assert_eq!(
        report["temporary_files_removed"],
        fresh,
        "{}",
        out.stdout_str()
    );
    let left = temp_files(&env.repo);
    assert_eq!(left, {
        let mut v = vec![other_recent.clone(), older_form_recent.clone()];
        v.sort();
        v
    });
    // Nothing a finished write made was touched: the repository is whole.
    env.backup(&[&src], &[]);
    env.run(&["check", "--read-data"]).ok();
}
