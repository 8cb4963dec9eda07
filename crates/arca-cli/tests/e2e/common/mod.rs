//! Shared helpers of the end-to-end tests: running the `arca` binary with a password and a
//! repository, parsing its JSON output, generating deterministic data, and comparing trees.
#![allow(dead_code)]

pub mod browser;
pub mod daemon;
pub mod http;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const PASSWORD: &str = "correct horse battery staple";

/// The `arca` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_arca")
}

/// A test sandbox: a temporary directory holding the repository and the sources.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
}

impl Env {
    /// A fresh sandbox (no repository yet).
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("arca-e2e-")
            .tempdir()
            .expect("create tempdir");
        let repo = dir.path().join("repo");
        Env { dir, repo }
    }

    /// A sandbox with an initialized repository.
    pub fn init() -> Env {
        let env = Env::new();
        env.run(&["init"]).ok();
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `arca` with ARCA_PASSWORD and ARCA_REPOSITORY set (and other ARCA_* cleared).
    pub fn cmd(&self) -> Command {
        let mut c = bare_cmd();
        c.env("ARCA_PASSWORD", PASSWORD)
            .env("ARCA_REPOSITORY", &self.repo);
        c
    }

    /// Runs `arca ARGS` with the sandbox's password and repository.
    pub fn run(&self, args: &[&str]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        run_cmd(c, None)
    }

    /// Like [`Env::run`] with OsStr arguments (paths).
    pub fn run_os<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        run_cmd(c, None)
    }

    /// Runs `arca ARGS` feeding `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        run_cmd(c, Some(input))
    }

    /// `backup --json PATHS EXTRA...`: must succeed; returns the summary line.
    pub fn backup(&self, paths: &[&Path], extra: &[&str]) -> serde_json::Value {
        let mut args: Vec<&OsStr> = vec![OsStr::new("backup"), OsStr::new("--json")];
        args.extend(extra.iter().map(OsStr::new));
        args.extend(paths.iter().map(|p| p.as_os_str()));
        self.run_os(&args).ok().summary()
    }

    /// `snapshots --json`: the list.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["snapshots", "--json"]).ok();
        match out.json() {
            serde_json::Value::Array(v) => v,
            other => panic!("snapshots --json is not an array: {other}"),
        }
    }

    /// Number of files below `repo/<sub>` (e.g. "data", "index", "snapshots").
    pub fn count_objects(&self, sub: &str) -> usize {
        list_files(&self.repo.join(sub)).len()
    }
}

/// `arca` without any ARCA_* variable from the environment of the test run.
pub fn bare_cmd() -> Command {
    let mut c = Command::new(bin());
    for v in [
        "ARCA_PASSWORD",
        "ARCA_PASSWORD_FILE",
        "ARCA_PASSWORD_COMMAND",
        "ARCA_REPOSITORY",
        "ARCA_CACHE_DIR",
    ] {
        c.env_remove(v);
    }
    c.env("TZ", "UTC");
    c.stdin(Stdio::null());
    c
}

/// The result of one `arca` run.
pub struct Out {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub cmdline: String,
}

pub fn run_cmd(mut c: Command, input: Option<&[u8]>) -> Out {
    let cmdline = format!(
        "{} {}",
        c.get_program().to_string_lossy(),
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output: Output = match input {
        None => c.output().expect("run arca"),
        Some(data) => {
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn().expect("spawn arca");
            let mut stdin = child.stdin.take().unwrap();
            let data = data.to_vec();
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
            let out = child.wait_with_output().expect("wait for arca");
            writer.join().unwrap();
            out
        }
    };
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        cmdline,
    }
}

impl Out {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\nstdout:\n{}\nstderr:\n{}",
            self.cmdline,
            self.code,
            truncate(&self.stdout_str(), 4000),
            truncate(&self.stderr, 4000)
        )
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "arca failed\n{}", self.describe());
        self
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Out {
        assert_eq!(self.code, code, "unexpected exit code\n{}", self.describe());
        self
    }

    /// Asserts a non-zero exit code.
    #[track_caller]
    pub fn fails(self) -> Out {
        assert_ne!(
            self.code,
            0,
            "arca unexpectedly succeeded\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that stdout+stderr contain `needle` (case-insensitive).
    #[track_caller]
    pub fn says(self, needle: &str) -> Out {
        let all = format!("{}\n{}", self.stdout_str(), self.stderr).to_lowercase();
        assert!(
            all.contains(&needle.to_lowercase()),
            "output does not mention {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// The whole stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.describe()))
    }

    /// Every stdout line that parses as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout_str()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The last stdout line that is a JSON object with `"message_type":"summary"`.
    #[track_caller]
    pub fn summary(&self) -> serde_json::Value {
        summary_line(&self.stdout_str())
            .unwrap_or_else(|| panic!("no JSON summary line\n{}", self.describe()))
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes more)", &s[..end], s.len() - end)
    }
}

/// The last line of `stdout` that parses as a JSON object with message_type "summary".
pub fn summary_line(stdout: &str) -> Option<serde_json::Value> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find(|v| v.get("message_type").and_then(|m| m.as_str()) == Some("summary"))
}

/// Reads a u64 field of a JSON object, panicking with the object when missing.
#[track_caller]
pub fn u(v: &serde_json::Value, field: &str) -> u64 {
    v.get(field)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("field {field:?} missing or not a number in {v}"))
}

#[track_caller]
pub fn s<'a>(v: &'a serde_json::Value, field: &str) -> &'a str {
    v.get(field)
        .and_then(|x| x.as_str())
        .unwrap_or_else(|| panic!("field {field:?} missing or not a string in {v}"))
}

// ---------------------------------------------------------------------------------------
// Deterministic data

/// xorshift64* PRNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Writes `len` pseudo-random bytes from `seed` to `path`.
pub fn write_random(path: &Path, seed: u64, len: usize) -> Vec<u8> {
    let data = random_bytes(seed, len);
    fs::write(path, &data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    data
}

// ---------------------------------------------------------------------------------------
// External tools

/// Runs a helper command and asserts success.
#[track_caller]
pub fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn have_tool(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name} >/dev/null 2>&1"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a tool a test needs is installed: false (after saying the test skips) when it is
/// not, except under CI=true, where a missing tool fails the test (scripts/test installs
/// every tool the tests need).
pub fn tool_or_skip(name: &str, test: &str) -> bool {
    if have_tool(name) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {name} is missing (scripts/test installs it)"
    );
    eprintln!("{test}: skipped, {name} is not installed");
    false
}

/// Sets the mtime (and atime) of `path` without following symlinks, with nanoseconds.
pub fn set_mtime(path: &Path, secs: i64, nsec: u32) {
    sh(Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{secs}.{nsec:09}"))
        .arg(path));
}

/// Sets a user xattr (setfattr, else python3). False when no tool can or the filesystem
/// refuses.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    if have_tool("setfattr") {
        return Command::new("setfattr")
            .arg("-h")
            .arg("-n")
            .arg(name)
            .arg("-v")
            .arg(format!("0x{}", hex(value)))
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
    }
    if have_tool("python3") {
        return Command::new("python3")
            .arg("-c")
            .arg(
                "import os,sys; os.setxattr(os.fsencode(sys.argv[1]), sys.argv[2], \
                 bytes.fromhex(sys.argv[3]), follow_symlinks=False)",
            )
            .arg(path)
            .arg(name)
            .arg(hex(value))
            .status()
            .is_ok_and(|s| s.success());
    }
    false
}

/// Reads a xattr (getfattr, else python3); None when absent or no tool.
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    if have_tool("getfattr") {
        let out = Command::new("getfattr")
            .arg("-h")
            .arg("--only-values")
            .arg("-n")
            .arg(name)
            .arg(path)
            .output()
            .ok()?;
        return out.status.success().then_some(out.stdout);
    }
    if have_tool("python3") {
        let out = Command::new("python3")
            .arg("-c")
            .arg(
                "import os,sys; sys.stdout.write(os.getxattr(os.fsencode(sys.argv[1]), \
                 sys.argv[2], follow_symlinks=False).hex())",
            )
            .arg(path)
            .arg(name)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        return Some(unhex(std::str::from_utf8(&out.stdout).ok()?.trim()));
    }
    None
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Trees

/// All regular files below `dir`, recursively (empty when `dir` does not exist).
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(list_files(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out.sort();
    out
}

/// Where `restore --target T` puts the source path `src`: `T/<src without leading />`.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap_or(src))
}

/// Kind of a directory entry, from lstat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

pub fn kind(md: &fs::Metadata) -> Kind {
    let t = md.file_type();
    if t.is_symlink() {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else if t.is_fifo() {
        Kind::Fifo
    } else if t.is_socket() {
        Kind::Socket
    } else if t.is_char_device() {
        Kind::CharDev
    } else {
        Kind::BlockDev
    }
}

/// Every entry below `root` (relative path bytes -> lstat metadata), root itself as "".
pub fn walk(root: &Path) -> BTreeMap<Vec<u8>, fs::Metadata> {
    let mut out = BTreeMap::new();
    let md = fs::symlink_metadata(root).unwrap_or_else(|e| panic!("lstat {}: {e}", root.display()));
    out.insert(Vec::new(), md);
    walk_into(root, &mut Vec::new(), &mut out);
    out
}

fn walk_into(dir: &Path, rel: &mut Vec<u8>, out: &mut BTreeMap<Vec<u8>, fs::Metadata>) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for e in rd {
        let e = e.unwrap();
        let p = e.path();
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(e.file_name().as_bytes());
        let is_dir = md.is_dir();
        out.insert(rel.clone(), md);
        if is_dir {
            walk_into(&p, rel, out);
        }
        rel.truncate(len);
    }
}

pub fn show(rel: &[u8]) -> String {
    format!("{:?}", OsStr::from_bytes(rel))
}

/// What differs between two trees, one line per difference (empty: identical).
///
/// Compares, entry by entry: kind, mode & 0o7777, uid, gid, mtime (s + ns), nlink, size and
/// content (files), symlink target, rdev (devices), hardlink identity (names sharing an
/// inode in `a` share one in `b`, and only those), and the xattrs named in `xattr_names`.
pub fn compare_trees(a: &Path, b: &Path, xattr_names: &[&str]) -> Vec<String> {
    let ta = walk(a);
    let tb = walk(b);
    let mut diffs = Vec::new();
    for rel in ta.keys() {
        if !tb.contains_key(rel) {
            diffs.push(format!("{}: missing in the restore", show(rel)));
        }
    }
    for rel in tb.keys() {
        if !ta.contains_key(rel) {
            diffs.push(format!("{}: extra in the restore", show(rel)));
        }
    }
    let mut inode_map: HashMap<u64, u64> = HashMap::new();
    let mut inode_map_rev: HashMap<u64, u64> = HashMap::new();
    for (rel, ma) in &ta {
        let Some(mb) = tb.get(rel) else { continue };
        let pa = if rel.is_empty() {
            a.to_path_buf()
        } else {
            a.join(OsStr::from_bytes(rel))
        };
        let pb = if rel.is_empty() {
            b.to_path_buf()
        } else {
            b.join(OsStr::from_bytes(rel))
        };
        let name = show(rel);
        let (ka, kb) = (kind(ma), kind(mb));
        if ka != kb {
            diffs.push(format!("{name}: kind {ka:?} vs {kb:?}"));
            continue;
        }
        let mut field = |what: &str, x: String, y: String| {
            if x != y {
                diffs.push(format!("{name}: {what} {x} vs {y}"));
            }
        };
        field(
            "mode",
            format!("{:o}", ma.mode() & 0o7777),
            format!("{:o}", mb.mode() & 0o7777),
        );
        field("uid", ma.uid().to_string(), mb.uid().to_string());
        field("gid", ma.gid().to_string(), mb.gid().to_string());
        field(
            "mtime",
            format!("{}.{:09}", ma.mtime(), ma.mtime_nsec()),
            format!("{}.{:09}", mb.mtime(), mb.mtime_nsec()),
        );
        field("nlink", ma.nlink().to_string(), mb.nlink().to_string());
        match ka {
            Kind::File => {
                field("size", ma.len().to_string(), mb.len().to_string());
                if ma.len() == mb.len() {
                    let (da, db) = (fs::read(&pa).unwrap(), fs::read(&pb).unwrap());
                    if da != db {
                        let at = da.iter().zip(&db).position(|(x, y)| x != y);
                        diffs.push(format!("{name}: content differs (first at {at:?})"));
                    }
                }
                if ma.nlink() > 1 {
                    let (ia, ib) = (ma.ino(), mb.ino());
                    if *inode_map.entry(ia).or_insert(ib) != ib {
                        diffs.push(format!("{name}: hardlink identity lost (own inode)"));
                    }
                    if *inode_map_rev.entry(ib).or_insert(ia) != ia {
                        diffs.push(format!("{name}: joined to a foreign hardlink group"));
                    }
                }
            }
            Kind::Symlink => {
                let (la, lb) = (fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
                if la != lb {
                    diffs.push(format!("{name}: link target {la:?} vs {lb:?}"));
                }
            }
            Kind::CharDev | Kind::BlockDev => {
                field("rdev", ma.rdev().to_string(), mb.rdev().to_string())
            }
            _ => {}
        }
        for x in xattr_names {
            let (xa, xb) = (get_xattr(&pa, x), get_xattr(&pb, x));
            if xa != xb {
                diffs.push(format!("{name}: xattr {x} {xa:?} vs {xb:?}"));
            }
        }
    }
    diffs
}

/// Asserts that two trees are identical (see [`compare_trees`]).
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    let d = compare_trees(a, b, &[]);
    assert!(
        d.is_empty(),
        "{} and {} differ:\n{}",
        a.display(),
        b.display(),
        d.join("\n")
    );
}

/// A small source tree: `n` files of a few hundred bytes in `dir`, plus a subdirectory.
/// Returns the total size.
pub fn small_tree(dir: &Path, n: usize, seed: u64) -> u64 {
    fs::create_dir_all(dir.join("sub")).unwrap();
    let mut total = 0;
    for i in 0..n {
        let p = if i % 3 == 0 {
            dir.join("sub").join(format!("f{i:03}.txt"))
        } else {
            dir.join(format!("f{i:03}.txt"))
        };
        let len = 100 + (i * 37) % 900;
        write_random(&p, seed + i as u64, len);
        total += len as u64;
    }
    total
}

/// XORs `len` bytes at `offset(size)` of the largest pack of the local repository `repo`
/// with `mask` (damage the data of the largest file backed up); returns the pack's path
/// relative to the repository (as arca names it, e.g. `data/ab/ab12...`).
pub fn damage_largest_pack(
    repo: &Path,
    offset: impl Fn(usize) -> usize,
    len: usize,
    mask: u8,
) -> String {
    let pack = list_files(&repo.join("data"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("the repository has a pack");
    let mut bytes = fs::read(&pack).unwrap();
    let at = offset(bytes.len());
    for b in &mut bytes[at..at + len] {
        *b ^= mask;
    }
    fs::write(&pack, bytes).unwrap();
    pack.strip_prefix(repo)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}
