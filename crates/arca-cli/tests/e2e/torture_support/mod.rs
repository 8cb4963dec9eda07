//! Helpers shared by the torture tests (`torture_*.rs`): sizing from the environment
//! (short form in CI, long form from `scripts/torture`), the seed, running `arca` with the
//! fast test KDF, killing it at a chosen moment, and comparing restores with the source.
//! They run against any [`Target`]: a local sandbox ([`Env`]) or a repository on an object
//! store (torture_crash_s3.rs).
#![allow(dead_code)]

pub mod s3s;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, Out, Rng, list_files, restored_path, run_cmd};

/// Relative path -> content of every regular file below a directory.
pub type Digest = BTreeMap<PathBuf, Vec<u8>>;

/// A repository the helpers run `arca` against, with the sandbox around it.
pub trait Target {
    /// `arca` with the test password, the repository location and whatever environment
    /// reaching the repository needs (credentials of an object store, a cache directory).
    fn cmd(&self) -> Command;
    /// A path in the sandbox (sources, restore targets).
    fn path(&self, rel: &str) -> PathBuf;
    /// The directory holding the repository's objects as files: the repository directory
    /// of a local repository, the prefix's directory on an s3s-fs server's disk.
    fn objects(&self) -> PathBuf;
}

impl<T: Target + ?Sized> Target for &T {
    fn cmd(&self) -> Command {
        (**self).cmd()
    }
    fn path(&self, rel: &str) -> PathBuf {
        (**self).path(rel)
    }
    fn objects(&self) -> PathBuf {
        (**self).objects()
    }
}

impl Target for Env {
    fn cmd(&self) -> Command {
        Env::cmd(self)
    }
    fn path(&self, rel: &str) -> PathBuf {
        Env::path(self, rel)
    }
    fn objects(&self) -> PathBuf {
        self.repo.clone()
    }
}

/// Whether the long form was asked for (`ARCA_TORTURE=long`).
pub fn long_form() -> bool {
    std::env::var("ARCA_TORTURE").as_deref() == Ok("long")
}

/// A count from the environment variable `var`, else `short` (or `long` in the long form).
pub fn count(var: &str, short: u64, long: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long_form() { long } else { short })
}

/// Whether the `n`-th check after a kill (counted from 0) reads every pack
/// (`check --read-data`): every one in the short form; every fifth in the long form, whose
/// repositories on an object store grow to tens of MB (the others check the structure, and
/// the check at the end of each round or test reads everything).
pub fn read_data_after_kill(n: u64) -> bool {
    !long_form() || n.is_multiple_of(5)
}

/// The seed of a test: `ARCA_TORTURE_SEED` or `default`; printed so a failure can be rerun.
pub fn seed(test: &str, default: u64) -> u64 {
    let s = std::env::var("ARCA_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("{test}: seed {s} (rerun with ARCA_TORTURE_SEED={s})");
    s
}

/// A figure for docs/RELIABILITY.md: one greppable line on stderr.
pub fn figure(test: &str, what: &str) {
    eprintln!("TORTURE-FIGURE {test}: {what}");
}

/// A count for the summary table of docs/RELIABILITY.md, summed by `scripts/torture` over
/// every test of the run: `kind` is `kills` (kill points, snapshots lost), `power-cuts`
/// (states after a cut, snapshots lost), `corruptions` (injected, detected), `writers`
/// (concurrent writer processes, blobs lost) or `faults` (requests, requests failed or
/// dropped on purpose, bytes differing after restore).
pub fn total(kind: &str, counts: &[u64]) {
    let counts: Vec<String> = counts.iter().map(u64::to_string).collect();
    eprintln!("TORTURE-TOTAL {kind} {}", counts.join(" "));
}

/// Runs `arca ARGS` in `env` with the fast KDF and the password `password`.
pub fn run_pw<T: Target + ?Sized>(env: &T, password: &str, args: &[&str]) -> Out {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_PASSWORD", password)
        .args(args);
    run_cmd(c, None)
}

/// Runs `arca ARGS` in `env` with the fast KDF.
pub fn run<T: Target + ?Sized>(env: &T, args: &[&str]) -> Out {
    run_pw(env, crate::common::PASSWORD, args)
}

/// Like [`run`] with path arguments.
pub fn run_os<T: Target + ?Sized, S: AsRef<OsStr>>(env: &T, args: &[S]) -> Out {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1").args(args);
    run_cmd(c, None)
}

/// How a killed run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// SIGKILL arrived while it ran.
    Killed,
    /// It had already exited (with this code) when the kill came.
    Finished(i32),
}

/// Removes the locks (and delete probes) that killed runs left, with a plain `unlock`:
/// their processes are gone, so every one of them must go, even when the kernel has since
/// given a killed run's pid to another process (locks record the process start time).
#[track_caller]
pub fn unlock_after_kills<T: Target + ?Sized>(env: &T, password: &str, ctx: &str) {
    let out = run_pw(env, password, &["unlock"]);
    assert_eq!(out.code, 0, "{ctx}: unlock failed: {}", out.stderr);
    let left: Vec<_> = list_files(&env.objects().join("locks"))
        .into_iter()
        .filter(|p| !is_temp(p))
        .collect();
    assert!(left.is_empty(), "{ctx}: unlock keeps {left:?}");
}

/// Starts `arca ARGS` (password `password`), sends SIGKILL after `delay`, waits for it.
pub fn kill_after<T: Target + ?Sized>(
    env: &T,
    password: &str,
    args: &[&OsStr],
    delay: Duration,
) -> Killed {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_PASSWORD", password)
        .args(args);
    kill_command_after(c, delay)
}

/// Spawns a prepared `arca` command, sends SIGKILL after `delay`, waits for it.
pub fn kill_command_after(mut c: Command, delay: Duration) -> Killed {
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn arca");
    let deadline = Instant::now() + delay;
    // Poll so a run that ends early is reported as finished, not as killed.
    loop {
        if let Some(status) = child.try_wait().expect("wait for arca") {
            return Killed::Finished(status.code().unwrap_or(-1));
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
    let _ = child.kill();
    let status = child.wait().expect("wait for killed arca");
    match status.code() {
        Some(code) => Killed::Finished(code),
        None => Killed::Killed,
    }
}

/// Time of one uninterrupted run of `f` (at least 20 ms).
pub fn probe<F: FnOnce()>(f: F) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed().max(Duration::from_millis(20))
}

/// A delay uniformly drawn from [0, 1.25 x `span`).
pub fn delay_in(rng: &mut Rng, span: Duration) -> Duration {
    let max = (span.as_micros() as u64 * 5 / 4).max(1);
    Duration::from_micros(rng.next_u64() % max)
}

/// Kill delays: drawn from a seeded generator, scaled to how long the killed operation
/// runs. The span adapts as runs go (an operation often has less to do after a kill):
/// it shrinks when a run finished before its kill and grows when it was killed, so most
/// kill points land inside the run.
pub struct Schedule {
    rng: Rng,
    span: Duration,
}

impl Schedule {
    pub fn new(seed: u64, span: Duration) -> Schedule {
        Schedule {
            rng: Rng::new(seed),
            span,
        }
    }

    /// The next delay, uniform in [0, span).
    pub fn next(&mut self) -> Duration {
        let max = (self.span.as_micros() as u64).max(1);
        Duration::from_micros(self.rng.next_u64() % max)
    }

    /// Tells the schedule how the last run ended.
    pub fn observe(&mut self, killed: Killed) {
        self.span = match killed {
            Killed::Killed => self.span * 21 / 20,
            Killed::Finished(_) => (self.span * 4 / 5).max(Duration::from_millis(5)),
        };
    }
}

/// Content of every regular file below `dir`, by relative path.
pub fn digest(dir: &Path) -> Digest {
    list_files(dir)
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p.strip_prefix(dir).unwrap_or(&p).to_path_buf(), data)
        })
        .collect()
}

/// What differs between two digests (first few differences), empty when equal.
pub fn digest_diff(want: &Digest, got: &Digest) -> Vec<String> {
    let mut out = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => out.push(format!("{}: missing", p.display())),
            Some(g) if g != w => out.push(format!(
                "{}: content differs ({} vs {} bytes)",
                p.display(),
                w.len(),
                g.len()
            )),
            _ => {}
        }
    }
    for p in got.keys() {
        if !want.contains_key(p) {
            out.push(format!("{}: extra", p.display()));
        }
    }
    out.truncate(10);
    out
}

/// Ids of the snapshots in the repository, with their JSON.
pub fn snapshots<T: Target + ?Sized>(env: &T, password: &str) -> Vec<(String, serde_json::Value)> {
    let out = run_pw(env, password, &["snapshots", "--json"]).ok();
    match out.json() {
        serde_json::Value::Array(v) => v
            .into_iter()
            .map(|s| (crate::common::s(&s, "id").to_string(), s))
            .collect(),
        other => panic!("snapshots --json is not an array: {other}"),
    }
}

/// Restores snapshot `id` and asserts that the copy of `src` in it equals `want`.
#[track_caller]
pub fn assert_restores<T: Target + ?Sized>(
    env: &T,
    password: &str,
    id: &str,
    src: &Path,
    want: &Digest,
    ctx: &str,
) {
    let target = env.path(&format!("restore-{}", &id[..8.min(id.len())]));
    let _ = std::fs::remove_dir_all(&target);
    let t = target.to_string_lossy().into_owned();
    run_pw(env, password, &["restore", id, "--target", &t, "-q"]).ok();
    let got = digest(&restored_path(&target, src));
    let d = digest_diff(want, &got);
    assert!(
        d.is_empty(),
        "{ctx}: snapshot {id} does not restore byte for byte:\n{}",
        d.join("\n")
    );
    let _ = std::fs::remove_dir_all(&target);
}

/// `check` (optionally `--read-data`) as JSON: asserts no problems, returns the warnings.
#[track_caller]
pub fn assert_check<T: Target + ?Sized>(
    env: &T,
    password: &str,
    read_data: bool,
    ctx: &str,
) -> Vec<String> {
    let mut args = vec!["check", "--json"];
    if read_data {
        args.push("--read-data");
    }
    let out = run_pw(env, password, &args);
    // The report is the last JSON line (status lines may come before it).
    let v: serde_json::Value = out
        .stdout_str()
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("ok").is_some())
        .unwrap_or_default();
    assert!(
        out.code == 0 && v["ok"] == true,
        "{ctx}: check{} failed (exit {}):\n{}\n{}",
        if read_data { " --read-data" } else { "" },
        out.code,
        out.stdout_str(),
        out.stderr
    );
    v["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Number of objects below `dir` (e.g. `repo/locks`): regular files except the
/// temporary files (`.tmp-*`) of writes that never finished.
pub fn files_in(dir: &Path) -> usize {
    list_files(dir).iter().filter(|p| !is_temp(p)).count()
}

/// Whether `path` is a temporary file of an unfinished write.
pub fn is_temp(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
}

/// Number of temporary files (`.tmp-*`) anywhere below `dir`.
pub fn temp_files(dir: &Path) -> usize {
    list_files(dir).iter().filter(|p| is_temp(p)).count()
}

/// Writes generation `g` of a source tree of `files` files of `file_size` bytes. File `f`
/// gets a new version in generations where `g % (f + 1) == 0`; `sub/` holds small files that
/// change every generation. Returns the bytes of file content that are new in this
/// generation (versus `g - 1`).
pub fn write_generation(src: &Path, seed: u64, g: u64, files: u64, file_size: usize) -> u64 {
    std::fs::create_dir_all(src.join("sub")).expect("create the source tree");
    let mut new_bytes = 0;
    for f in 0..files {
        let version = g - g % (f + 1);
        let path = src.join(format!("f{f}.bin"));
        let changed = g == 0 || g.is_multiple_of(f + 1);
        if changed || !path.exists() {
            crate::common::write_random(
                &path,
                seed ^ (f << 40) ^ version.wrapping_mul(0x9e37),
                file_size,
            );
            new_bytes += file_size as u64;
        }
    }
    for i in 0..3u64 {
        let data = format!("generation {g} small file {i}\n").repeat(20);
        new_bytes += data.len() as u64;
        std::fs::write(src.join("sub").join(format!("s{i}.txt")), data)
            .expect("write a small source file");
    }
    new_bytes
}

/// `args` followed by the path `src`, as owned arguments.
pub fn args_with_path(args: &[&str], src: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = args.iter().map(|a| a.into()).collect();
    v.push(src.as_os_str().to_owned());
    v
}

/// Borrowed views of owned arguments.
pub fn arg_refs(v: &[std::ffi::OsString]) -> Vec<&OsStr> {
    v.iter().map(|a| a.as_os_str()).collect()
}

/// Registers snapshots that appeared since the last look: at most one, taken of the source
/// in `src` now (the source does not change while a backup runs).
#[track_caller]
pub fn register_new_snapshot<T: Target + ?Sized>(
    env: &T,
    known: &mut BTreeMap<String, Digest>,
    src: &Path,
    ctx: &str,
) {
    let new: Vec<String> = snapshots(env, crate::common::PASSWORD)
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !known.contains_key(id))
        .collect();
    assert!(new.len() <= 1, "{ctx}: several new snapshots {new:?}");
    if let Some(id) = new.into_iter().next() {
        known.insert(id, digest(src));
    }
}

/// How often [`key_changes_killed_at_random_points`] checks the repository between kills.
pub struct KeyKillChecks {
    /// `check` after every this many kills.
    pub check_every: u64,
    /// Whether those checks read every pack (`--read-data`).
    pub read_data: bool,
    /// `unlock` (which must remove every lock the killed runs left) after every this many.
    pub unlock_every: Option<u64>,
}

/// Kills `key passwd` and `key add` (alternating) at seeded random moments in an
/// initialised repository, `kills_wanted` times. After every kill the old password opens
/// the repository, or (a passwd that got as far as removing the old key) the new one does:
/// nobody is ever locked out. At the end the repository checks with `--read-data` and the
/// snapshot taken of `write_source`'s tree before the kills restores byte for byte.
pub fn key_changes_killed_at_random_points<T: Target + ?Sized>(
    target: &T,
    test: &str,
    default_seed: u64,
    kills_wanted: u64,
    checks: KeyKillChecks,
    write_source: impl FnOnce(&Path),
) {
    let seed = seed(test, default_seed);
    let src = target.path("src");
    write_source(&src);
    run_os(target, &args_with_path(&["backup", "-q"], &src)).ok();
    let want = digest(&src);
    let mut current = crate::common::PASSWORD.to_string();
    let pwfile = target.path("newpw");
    let pf = pwfile.to_string_lossy().into_owned();
    let span = probe(|| {
        std::fs::write(&pwfile, "probe").expect("write the password file");
        run_pw(
            target,
            &current,
            &["key", "add", "--new-password-file", &pf],
        )
        .ok();
    });
    let mut schedule = Schedule::new(seed, span);
    let (mut kills, mut finished, mut changed) = (0u64, 0u64, 0u64);
    for n in 0..kills_wanted {
        let new = format!("password {n}");
        std::fs::write(&pwfile, &new).expect("write the password file");
        let op = if n % 2 == 0 { "passwd" } else { "add" };
        let args: Vec<&OsStr> = ["key", op, "--new-password-file", &pf]
            .into_iter()
            .map(OsStr::new)
            .collect();
        let delay = schedule.next();
        let ctx = format!("kill {n} (key {op}) at {delay:?}");
        let end = kill_after(target, &current, &args, delay);
        schedule.observe(end);
        match end {
            Killed::Killed => kills += 1,
            Killed::Finished(0) => finished += 1,
            Killed::Finished(c) => panic!("{ctx}: key {op} exited {c}"),
        }
        let old_ok = run_pw(target, &current, &["snapshots", "-q"]).code == 0;
        let new_ok = run_pw(target, &new, &["snapshots", "-q"]).code == 0;
        assert!(
            old_ok || (op == "passwd" && new_ok),
            "{ctx}: locked out (old password opens: {old_ok}, new: {new_ok})"
        );
        if !old_ok {
            current = new;
            changed += 1;
        }
        if (n + 1).is_multiple_of(checks.check_every) {
            assert_check(target, &current, checks.read_data, &ctx);
        }
        if checks
            .unlock_every
            .is_some_and(|k| (n + 1).is_multiple_of(k))
        {
            unlock_after_kills(target, &current, &ctx);
        }
    }
    assert_check(target, &current, true, "end");
    let id = snapshots(target, &current)
        .pop()
        .expect("the snapshot taken before the kills")
        .0;
    assert_restores(target, &current, &id, &src, &want, "end");
    if checks.unlock_every.is_some() {
        unlock_after_kills(target, &current, "end");
    }
    figure(
        test,
        &format!(
            "kill points {kills_wanted}, killed {kills}, finished before the kill {finished} \
             (passwords changed {changed}), lock-outs 0"
        ),
    );
    total("kills", &[kills_wanted, 0]);
}
