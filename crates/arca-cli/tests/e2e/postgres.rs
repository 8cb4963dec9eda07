//! PostgreSQL end to end, against real throwaway clusters: point-in-time restore (time,
//! restore point, latest) from streamed and file-level base backups, file-level base
//! backups under pgbench load, of an unchanged cluster and of a standby (waiting for its
//! primary's archive), the fall back to the stream when arca cannot read the data
//! directory, a cluster with a tablespace (backed up with the data directory, restored to
//! its original, a mapped or a `--tablespace-map-all` location; refused by the stream and
//! over a non-empty location), WAL archiving under pgbench load without loss, wal-push
//! idempotence and wal-fetch exit codes, gap detection, WAL retention, logical dumps
//! (custom, plain, parallel, --all) and the errors of bad input.
//!
//! Servers run as user `postgres` (so do the arca commands: the repository must be
//! readable by the archive and restore commands). Without root, a `postgres` user or
//! PostgreSQL binaries the tests skip, unless CI=true, where they fail.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Env, Out, run_cmd};

const PG_BIN_DEFAULT: &str = "/usr/lib/postgresql/15/bin";

fn pg_bin() -> PathBuf {
    std::env::var_os("ARCA_TEST_PG_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PG_BIN_DEFAULT))
}

/// uid/gid of `postgres`, when the tests can run servers.
fn postgres_ids() -> Option<(u32, u32)> {
    let why = if !nix::unistd::geteuid().is_root() {
        "not running as root".to_string()
    } else if !pg_bin().join("initdb").exists() {
        format!("no PostgreSQL binaries in {}", pg_bin().display())
    } else {
        match nix::unistd::User::from_name("postgres") {
            Ok(Some(u)) => return Some((u.uid.as_raw(), u.gid.as_raw())),
            _ => "no postgres user".to_string(),
        }
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("PostgreSQL tests cannot run: {why}");
    }
    eprintln!("skipping PostgreSQL test: {why}");
    None
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

fn free_port() -> u16 {
    let base = 20000 + (std::process::id() % 2000) as u16 * 10;
    base + NEXT_PORT.fetch_add(1, Ordering::SeqCst)
}

/// A sandbox owned by postgres: repository, password file, clusters.
struct Sandbox {
    env: Env,
    uid: u32,
    gid: u32,
    password_file: PathBuf,
}

impl Sandbox {
    fn new() -> Option<Sandbox> {
        let (uid, gid) = postgres_ids()?;
        let env = Env::new();
        let dir = env.dir.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
        let password_file = dir.join("password");
        std::fs::write(&password_file, format!("{}\n", common::PASSWORD)).unwrap();
        std::os::unix::fs::chown(&password_file, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let sb = Sandbox {
            env,
            uid,
            gid,
            password_file,
        };
        sb.arca(&["init"]).ok();
        Some(sb)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.env.path(rel)
    }

    fn search_path(&self) -> String {
        format!("{}:/usr/bin:/bin", pg_bin().display())
    }

    /// `arca ARGS` as postgres with the sandbox's repository and password file.
    fn arca_cmd(&self) -> Command {
        let mut c = common::bare_cmd();
        c.env("ARCA_REPOSITORY", &self.env.repo)
            .env("ARCA_PASSWORD_FILE", &self.password_file)
            .env("ARCA_INSECURE_TEST_KDF", "1")
            .env("PATH", self.search_path())
            .current_dir(self.env.dir.path())
            .uid(self.uid)
            .gid(self.gid);
        c
    }

    fn arca(&self, args: &[&str]) -> Out {
        let mut c = self.arca_cmd();
        c.args(args);
        run_cmd(c, None)
    }

    /// A PostgreSQL tool (psql, pgbench, ...) as postgres.
    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(pg_bin().join(name));
        c.env("PATH", self.search_path())
            .env("ARCA_REPOSITORY", &self.env.repo)
            .env("ARCA_PASSWORD_FILE", &self.password_file)
            .env("ARCA_INSECURE_TEST_KDF", "1")
            .env("LC_ALL", "C")
            .env_remove("ARCA_PASSWORD")
            .current_dir(self.env.dir.path())
            .stdin(Stdio::null())
            .uid(self.uid)
            .gid(self.gid);
        c
    }

    /// A new cluster with WAL archiving into the sandbox's repository (not started).
    fn cluster(&self, name: &str) -> Cluster {
        let data = self.path(name);
        let out = self
            .tool("initdb")
            .args(["--no-sync", "-U", "postgres", "-A", "trust", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let conf = format!(
            "listen_addresses = ''\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nwal_level = replica\narchive_mode = on\n\
             archive_command = '{} wal-push %p'\nmax_wal_senders = 4\n",
            self.env.dir.path().display(),
            common::bin()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        Cluster {
            sandbox_dir: self.env.dir.path().to_path_buf(),
            data,
            port,
            running: false,
            pg_ctl: self.tool("pg_ctl").get_program().to_owned(),
            uid: self.uid,
            gid: self.gid,
            env: vec![
                ("PATH".into(), self.search_path()),
                (
                    "ARCA_REPOSITORY".into(),
                    self.env.repo.display().to_string(),
                ),
                (
                    "ARCA_PASSWORD_FILE".into(),
                    self.password_file.display().to_string(),
                ),
                ("ARCA_INSECURE_TEST_KDF".into(), "1".into()),
            ],
        }
    }

    /// A cluster over a data directory laid down by `arca pg restore` (no archiving).
    fn restored(&self, data: &Path) -> Cluster {
        Cluster {
            sandbox_dir: self.env.dir.path().to_path_buf(),
            data: data.to_path_buf(),
            port: free_port(),
            running: false,
            pg_ctl: pg_bin().join("pg_ctl").into_os_string(),
            uid: self.uid,
            gid: self.gid,
            env: vec![
                ("PATH".into(), self.search_path()),
                ("ARCA_INSECURE_TEST_KDF".into(), "1".into()),
            ],
        }
    }

    fn psql(&self, c: &Cluster, db: &str, sql: &str) -> String {
        let out = self
            .tool("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(c.uri(db))
            .arg("-c")
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Switches WAL and waits until the finished segment is archived.
    fn switch_and_wait(&self, c: &Cluster) -> String {
        let seg = self.psql(c, "postgres", "select pg_walfile_name(pg_switch_wal())");
        let start = Instant::now();
        loop {
            let last = self.psql(
                c,
                "postgres",
                "select coalesce(last_archived_wal, '') from pg_stat_archiver",
            );
            if last.len() == 24 && last >= seg {
                return seg;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "segment {seg} not archived in 60 s (last archived {last:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn snapshot_count(&self) -> usize {
        let out = self.arca(&["snapshots", "--json"]).ok();
        out.json().as_array().map_or(0, |a| a.len())
    }
}

/// A throwaway cluster, stopped (immediate) on drop.
struct Cluster {
    sandbox_dir: PathBuf,
    data: PathBuf,
    port: u16,
    running: bool,
    pg_ctl: std::ffi::OsString,
    uid: u32,
    gid: u32,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn uri(&self, db: &str) -> String {
        format!(
            "postgresql:///{db}?host={}&port={}&user=postgres",
            self.sandbox_dir.display(),
            self.port
        )
    }

    fn ctl(&self) -> Command {
        let mut c = Command::new(&self.pg_ctl);
        c.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LC_ALL", "C")
            .current_dir(&self.sandbox_dir)
            .stdin(Stdio::null())
            .uid(self.uid)
            .gid(self.gid);
        c
    }

    fn start(&mut self, extra: &str) {
        let opts = format!(
            "-c port={} -c unix_socket_directories='{}' -c listen_addresses='' {extra}",
            self.port,
            self.sandbox_dir.display()
        );
        let log = self.data.with_extension("log");
        let out = self
            .ctl()
            .args(["-w", "-t", "120", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(&opts)
            .arg("start")
            .output()
            .unwrap();
        self.running = true;
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        if self.running {
            let _ = self
                .ctl()
                .args(["-w", "-m", "immediate", "-D"])
                .arg(&self.data)
                .arg("stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        // pg_ctl may have failed: kill the postmaster by its pid file.
        if let Ok(pid) = std::fs::read_to_string(self.data.join("postmaster.pid"))
            && let Some(pid) = pid
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
    }
}

/// Starts a restored cluster and waits until recovery ended (promoted).
fn start_recovered(sb: &Sandbox, c: &mut Cluster) {
    c.start("-c archive_mode=off");
    let start = Instant::now();
    loop {
        if sb.psql(c, "postgres", "select pg_is_in_recovery()") == "f" {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "recovery did not finish in 90 s\nlog:\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts PostgreSQL on a restored data directory, waits for the end of recovery, and
/// returns the running cluster and its `marks` rows matching `filter` (in order,
/// comma-separated).
fn recovered_marks(sb: &Sandbox, data: &Path, filter: &str) -> (Cluster, String) {
    let mut r = sb.restored(data);
    start_recovered(sb, &mut r);
    let sql = format!("select string_agg(v, ',' order by v) from marks {filter}");
    let got = sb.psql(&r, "postgres", &sql);
    (r, got)
}

fn restore(sb: &Sandbox, dir: &str, target: &[&str]) -> PathBuf {
    let data = sb.path(dir);
    let mut args = vec!["pg", "restore", "--pgdata"];
    let d = data.to_string_lossy().into_owned();
    args.push(&d);
    args.extend_from_slice(target);
    sb.arca(&args).ok();
    data
}

#[test]
fn pitr_to_time_restore_point_and_latest() {
    let Some(sb) = Sandbox::new() else { return };
    let c = primary_with_marks(&sb, 1);
    // The pg_basebackup stream (the file-level method has its own tests below).
    let bb = sb
        .arca(&[
            "pg",
            "basebackup",
            "--json",
            "--method",
            "stream",
            "-d",
            &c.uri("postgres"),
        ])
        .ok()
        .summary();
    let meta = &bb["meta"];
    assert_eq!(meta["pg.method"], "stream", "{meta}");
    for k in [
        "pg.start_lsn",
        "pg.stop_lsn",
        "pg.timeline",
        "pg.backup_label",
        "pg.server_version",
        "pg.system_identifier",
        "pg.start_wal",
    ] {
        assert!(meta.get(k).is_some(), "base backup meta lacks {k}: {meta}");
    }
    sb.psql(&c, "postgres", "insert into marks values ('A')");
    sb.psql(&c, "postgres", "select pg_create_restore_point('before_b')");
    std::thread::sleep(Duration::from_millis(300));
    let t = sb.psql(&c, "postgres", "select now()");
    std::thread::sleep(Duration::from_millis(300));
    sb.psql(&c, "postgres", "insert into marks values ('B')");
    sb.switch_and_wait(&c);
    sb.arca(&["pg", "check"]).ok().says("no gaps");

    let cases: [(&str, Vec<&str>, &str); 3] = [
        ("r_time", vec!["--target-time", &t], "A"),
        ("r_name", vec!["--target-name", "before_b"], "A"),
        ("r_latest", vec!["--target", "latest"], "A,B"),
    ];
    for (dir, target, want) in cases {
        let data = restore(&sb, dir, &target);
        let md = std::fs::metadata(&data).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), sb.uid);
        assert!(data.join("recovery.signal").exists());
        let (mut r, got) = recovered_marks(&sb, &data, "");
        assert_eq!(got, want, "restore {dir} to {target:?}\nlog:\n{}", r.log());
        r.stop();
    }
    // A restore that archives into the same repository from its start: promoted to
    // timeline 2, and pg check follows the new timeline from its history file.
    let data = restore(&sb, "r_tl2", &["--target", "latest"]);
    let mut r = sb.restored(&data);
    r.env
        .push(("ARCA_REPOSITORY".into(), sb.env.repo.display().to_string()));
    r.env.push((
        "ARCA_PASSWORD_FILE".into(),
        sb.password_file.display().to_string(),
    ));
    r.start("");
    let start = Instant::now();
    while sb.psql(&r, "postgres", "select pg_is_in_recovery()") != "f" {
        assert!(start.elapsed() < Duration::from_secs(90), "{}", r.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    sb.psql(&r, "postgres", "insert into marks values ('C')");
    let seg = sb.switch_and_wait(&r);
    assert!(seg.starts_with("00000002"), "{seg}");
    let check = sb.arca(&["pg", "check", "--json"]).ok().json();
    assert_eq!(check["timelines"], serde_json::json!([1, 2]), "{check}");
    assert_eq!(
        check["missing"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );
    assert!(sb.env.repo.join("wal/00000002.history").exists());
    // A target before every base backup is refused clearly.
    sb.arca(&[
        "pg",
        "restore",
        "--pgdata",
        &sb.path("r_early").to_string_lossy(),
        "--target-time",
        "2000-01-01 00:00:00+00",
    ])
    .fails()
    .says("no base backup ends before the target");
}

#[test]
fn wal_push_under_load_loses_no_segment() {
    let Some(sb) = Sandbox::new() else { return };
    let secs: u64 = std::env::var("ARCA_PG_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut c = sb.cluster("primary");
    // Small segments: many of them under a short load.
    c.start("-c max_wal_size=64MB -c checkpoint_timeout=30s");
    pgbench_init(&sb, &c, 1);
    sb.arca(&["pg", "basebackup", "-d", &c.uri("postgres")])
        .ok();
    let out = sb
        .tool("pgbench")
        .args(["-c", "4", "-j", "2", "-T", &secs.to_string(), "-n"])
        .arg(c.uri("postgres"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = sb.psql(
        &c,
        "postgres",
        "select count(*) || ':' || sum(delta) || ':' || (select sum(abalance) from pgbench_accounts) from pgbench_history",
    );
    let last = sb.switch_and_wait(&c);
    let failed = sb.psql(&c, "postgres", "select failed_count from pg_stat_archiver");
    let check = sb.arca(&["pg", "check", "--json"]).ok().json();
    assert_eq!(
        check["missing"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );
    assert!(
        check["segments_checked"].as_u64().unwrap_or(0) >= 3,
        "only {check} (last {last}, failed pushes {failed})"
    );
    let data = restore(&sb, "restored", &["--target", "latest"]);
    let mut r = sb.restored(&data);
    start_recovered(&sb, &mut r);
    let got = sb.psql(
        &r,
        "postgres",
        "select count(*) || ':' || sum(delta) || ':' || (select sum(abalance) from pgbench_accounts) from pgbench_history",
    );
    assert_eq!(got, expected, "restored rows differ\nlog:\n{}", r.log());
    // The repository as a whole is sound, WAL records included.
    sb.arca(&["check"]).ok();
}

#[test]
fn wal_archive_idempotence_exit_codes_gaps_and_retention() {
    let Some(sb) = Sandbox::new() else { return };
    let mut c = sb.cluster("primary");
    c.start("");
    sb.psql(
        &c,
        "postgres",
        "create table t as select g from generate_series(1, 1000) g",
    );
    let s1 = sb.switch_and_wait(&c);
    sb.psql(
        &c,
        "postgres",
        "insert into t select g from generate_series(1, 1000) g",
    );
    let s2 = sb.switch_and_wait(&c);
    sb.arca(&["pg", "basebackup", "-d", &c.uri("postgres")])
        .ok();
    for _ in 0..3 {
        sb.psql(
            &c,
            "postgres",
            "insert into t select g from generate_series(1, 1000) g",
        );
        sb.switch_and_wait(&c);
    }

    // wal-fetch: 0 found (content as archived), 1 not archived, 255 on real errors.
    let dest = sb.path("fetched");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::chown(&dest, Some(sb.uid), Some(sb.gid)).unwrap();
    let got = dest.join(&s2);
    sb.arca(&["wal-fetch", "--prefetch", "0", &s2, &got.to_string_lossy()])
        .code(0);
    assert_eq!(std::fs::metadata(&got).unwrap().len(), 16 << 20);
    sb.arca(&[
        "wal-fetch",
        "0000000100000000000000EE",
        &dest.join("x").to_string_lossy(),
    ])
    .code(1);
    assert!(!dest.join("x").exists());
    let wrong = sb.path("wrong-password");
    std::fs::write(&wrong, "not the password\n").unwrap();
    let mut cmd = sb.arca_cmd();
    cmd.env("ARCA_PASSWORD_FILE", &wrong).args([
        "wal-fetch",
        &s2,
        &dest.join("y").to_string_lossy(),
    ]);
    run_cmd(cmd, None).code(255).says("wrong password");
    let mut cmd = sb.arca_cmd();
    cmd.env("ARCA_REPOSITORY", sb.path("no-such-repo")).args([
        "wal-fetch",
        &s2,
        &dest.join("y").to_string_lossy(),
    ]);
    run_cmd(cmd, None).code(255).says("does not exist");

    // wal-push: the same content again succeeds, other content under the name fails.
    sb.arca(&["wal-push", "--batch", "1", &got.to_string_lossy()])
        .code(0);
    let mut bytes = std::fs::read(&got).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&got, &bytes).unwrap();
    sb.arca(&["wal-push", "--batch", "1", &got.to_string_lossy()])
        .fails()
        .says("different content");

    // A segment missing in the middle of the needed range: check names it.
    let names = sb.arca(&["pg", "check", "--json"]).ok().json();
    assert_eq!(
        names["missing"].as_array().map(Vec::len),
        Some(0),
        "{names}"
    );
    let first = names["first_needed"].as_str().unwrap().to_string();
    let newest = names["newest"].as_str().unwrap().to_string();
    assert!(first < newest);
    let middle = {
        let n = u64::from_str_radix(&first[16..], 16).unwrap() + 1;
        format!("{}{:08X}", &first[..16], n)
    };
    assert!(middle < newest, "{middle} {newest}");
    let record = sb.env.repo.join("wal").join(&middle);
    let saved = std::fs::read(&record).unwrap();
    std::fs::remove_file(&record).unwrap();
    sb.arca(&["pg", "check"]).fails().says(&middle);
    std::fs::write(&record, &saved).unwrap();
    // A damaged record is named by pg check and by check.
    let mut bad = saved.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&record, &bad).unwrap();
    sb.arca(&["pg", "check"]).fails().says(&middle);
    sb.arca(&["check"]).fails().says(&format!("wal/{middle}"));
    std::fs::write(&record, &saved).unwrap();
    sb.arca(&["pg", "check"]).ok();

    // Retention: WAL before the base backup goes, what it needs stays; prune then keeps
    // every needed segment restorable.
    let out = sb.arca(&["pg", "forget-wal", "--json"]).ok().summary();
    let removed: Vec<String> = out["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(removed.contains(&s1), "{removed:?}");
    assert!(
        removed.iter().all(|n| n.as_str() < first.as_str()),
        "{removed:?} vs {first}"
    );
    sb.arca(&["prune"]).ok();
    sb.arca(&["check", "--read-data"]).ok();
    sb.arca(&["pg", "check", "--read-data"]).ok();
    let again = dest.join("again");
    sb.arca(&["wal-fetch", &newest, &again.to_string_lossy()])
        .code(0);
    sb.arca(&["wal-fetch", &s1, &dest.join("gone").to_string_lossy()])
        .code(1);
}

fn table_digest(sb: &Sandbox, c: &Cluster, db: &str) -> String {
    sb.psql(
        c,
        db,
        "select count(*) || ':' || md5(coalesce(string_agg(t::text, ',' order by id), '')) from items t",
    )
}

#[test]
fn dump_and_restore_dump_round_trips() {
    let Some(sb) = Sandbox::new() else { return };
    let mut c = sb.cluster("primary");
    c.start("");
    sb.psql(&c, "postgres", "create database shop");
    sb.psql(&c, "postgres", "create role clerk login");
    sb.psql(
        &c,
        "shop",
        "create table items(id int primary key, name text, price numeric); \
         insert into items select g, 'item ' || g, g * 1.5 from generate_series(1, 5000) g",
    );
    sb.psql(
        &c,
        "postgres",
        "create table items(id int primary key, v text); \
         insert into items select g, md5(g::text) from generate_series(1, 300) g",
    );
    let want_shop = table_digest(&sb, &c, "shop");
    let want_pg = table_digest(&sb, &c, "postgres");

    let custom = sb
        .arca(&["pg", "dump", "--json", "-d", &c.uri("shop")])
        .ok()
        .summary();
    assert_eq!(custom["source"], "pg-dump");
    assert_eq!(custom["meta"]["pg.database"], "shop");
    assert_eq!(custom["meta"]["pg.format"], "custom");
    assert!(
        custom["meta"]["pg.server_version"]
            .as_str()
            .unwrap()
            .starts_with("15")
    );
    let plain = sb
        .arca(&[
            "pg",
            "dump",
            "--json",
            "--format",
            "plain",
            "-d",
            &c.uri("shop"),
        ])
        .ok()
        .summary();
    let parallel = sb
        .arca(&["pg", "dump", "--json", "--jobs", "2", "-d", &c.uri("shop")])
        .ok()
        .summary();
    assert_eq!(parallel["meta"]["pg.format"], "directory");
    for (i, snap) in [&custom, &plain, &parallel].iter().enumerate() {
        let db = format!("copy{i}");
        sb.psql(&c, "postgres", &format!("create database {db}"));
        sb.arca(&[
            "pg",
            "restore-dump",
            snap["snapshot_id"].as_str().unwrap(),
            "-j",
            "2",
            "-d",
            &c.uri(&db),
        ])
        .ok();
        assert_eq!(
            table_digest(&sb, &c, &db),
            want_shop,
            "format {}",
            snap["meta"]["pg.format"]
        );
    }

    // --all: every database plus globals, restored into a fresh cluster.
    let lines = sb
        .arca(&["pg", "dump", "--all", "--json", "-d", &c.uri("postgres")])
        .ok();
    let sums = lines.json_lines();
    let globals = sums
        .iter()
        .find(|s| s["source"] == "pg-dumpall")
        .expect("a globals snapshot");
    let mut other = sb.cluster("other");
    other.start("-c archive_mode=off");
    sb.arca(&[
        "pg",
        "restore-dump",
        globals["snapshot_id"].as_str().unwrap(),
        "-d",
        &other.uri("postgres"),
    ])
    .ok()
    .says("shop");
    assert_eq!(table_digest(&sb, &other, "shop"), want_shop);
    assert_eq!(table_digest(&sb, &other, "postgres"), want_pg);
    assert_eq!(
        sb.psql(
            &other,
            "postgres",
            "select count(*) from pg_roles where rolname = 'clerk'"
        ),
        "1"
    );
}

#[test]
fn bad_input_fails_clearly_without_snapshots() {
    let Some(sb) = Sandbox::new() else { return };
    let mut c = sb.cluster("primary");
    c.start("");
    sb.psql(&c, "postgres", "create role alice login password 'right'");
    sb.psql(&c, "postgres", "create table secret(x int)");
    // alice needs a password over the socket.
    let hba = c.data.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("local all alice scram-sha-256\n{old}")).unwrap();
    sb.psql(&c, "postgres", "select pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(300));
    let before = sb.snapshot_count();
    let alice = |pw: &str| {
        format!(
            "postgresql:///postgres?host={}&port={}&user=alice&password={pw}",
            sb.env.dir.path().display(),
            c.port
        )
    };

    // Wrong credentials: the password is not repeated in the message.
    let out = sb.arca(&["pg", "dump", "-d", &alice("wrong")]).fails();
    let out = out.says("password authentication failed");
    assert!(!out.stderr.contains("password=wrong"), "{}", out.stderr);
    // A dump that fails after it started (no right to read a table): no snapshot.
    sb.arca(&["pg", "dump", "-d", &alice("right")])
        .fails()
        .says("permission denied")
        .says("no snapshot was written");
    // Server down.
    let down = format!(
        "postgresql:///postgres?host={}&port=1&user=postgres",
        sb.env.dir.path().display()
    );
    sb.arca(&["pg", "dump", "-d", &down])
        .fails()
        .says("cannot connect");
    sb.arca(&["pg", "basebackup", "-d", &down]).fails();
    // pg_dump missing from PATH (psql present).
    let bin = sb.path("bin-without-pg_dump");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(pg_bin().join("psql"), bin.join("psql")).unwrap();
    let mut cmd = sb.arca_cmd();
    cmd.env("PATH", &bin)
        .args(["pg", "dump", "-d", &c.uri("postgres")]);
    run_cmd(cmd, None).fails().says("pg_dump not found");
    // The pg_basebackup stream of a cluster with a tablespace outside its data directory
    // is refused by name (the file method backs it up).
    let ts = sb.path("tablespace");
    std::fs::create_dir(&ts).unwrap();
    std::os::unix::fs::chown(&ts, Some(sb.uid), Some(sb.gid)).unwrap();
    sb.psql(
        &c,
        "postgres",
        &format!("create tablespace extra location '{}'", ts.display()),
    );
    sb.arca(&[
        "pg",
        "basebackup",
        "--method",
        "stream",
        "-d",
        &c.uri("postgres"),
    ])
    .fails()
    .says("has tablespace outside the data directory: extra (OID");
    // A data directory that is not empty is refused.
    sb.arca(&[
        "pg",
        "restore",
        "--pgdata",
        &c.data.to_string_lossy(),
        "--target",
        "latest",
    ])
    .fails();
    assert_eq!(sb.snapshot_count(), before, "a failed dump left a snapshot");
}

/// The cluster "primary", started, with pgbench tables of `scale` and an empty `marks`
/// table (the rows a test commits to find them, or not, after a restore).
fn primary_with_marks(sb: &Sandbox, scale: u32) -> Cluster {
    let mut c = sb.cluster("primary");
    c.start("");
    pgbench_init(sb, &c, scale);
    sb.psql(&c, "postgres", "create table marks(v text)");
    c
}

fn pgbench_init(sb: &Sandbox, c: &Cluster, scale: u32) {
    let out = sb
        .tool("pgbench")
        .args(["-i", "-s", &scale.to_string(), "-q"])
        .arg(c.uri("postgres"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn file_level_base_backup_restores_to_a_time_and_skips_unchanged_files() {
    let Some(sb) = Sandbox::new() else { return };
    let c = primary_with_marks(&sb, 2);
    sb.psql(&c, "postgres", "checkpoint");
    // Files written in the second before a base backup are read again by the next one
    // (a write in the same timestamp tick would not show): let them age.
    std::thread::sleep(Duration::from_millis(1200));
    let first = sb
        .arca(&["pg", "basebackup", "--json", "-d", &c.uri("postgres")])
        .ok()
        .summary();
    assert_eq!(first["meta"]["pg.method"], "files", "{first}");
    assert_eq!(
        first["meta"]["pg.pgdata"].as_str(),
        Some(c.data.to_string_lossy().as_ref())
    );
    for k in [
        "pg.start_lsn",
        "pg.stop_lsn",
        "pg.timeline",
        "pg.backup_label",
    ] {
        assert!(first["meta"].get(k).is_some(), "no {k}: {first}");
    }
    // The snapshot holds backup_label itself, WAL and runtime files stay out.
    let listing = sb
        .arca(&["ls", first["snapshot_id"].as_str().unwrap()])
        .ok()
        .stdout_str();
    let data_s = c.data.to_string_lossy().into_owned();
    assert!(
        listing.contains(&format!("{data_s}/backup_label\n")),
        "{listing}"
    );
    assert!(listing.contains(&format!("{data_s}/base/")), "{listing}");
    // pg_control, read last on its own, is in the tree once, as the file it was.
    assert_eq!(
        listing
            .matches(&format!("{data_s}/global/pg_control\n"))
            .count(),
        1,
        "{listing}"
    );
    assert!(!listing.contains("postmaster.pid"), "{listing}");
    assert!(
        !listing.contains(&format!("{data_s}/pg_wal/0")),
        "{listing}"
    );
    // An unchanged cluster: the second base backup reads and adds almost nothing.
    let second = sb
        .arca(&["pg", "basebackup", "--json", "-d", &c.uri("postgres")])
        .ok()
        .summary();
    let added = |v: &serde_json::Value| v["bytes_added"].as_u64().unwrap();
    let read = |v: &serde_json::Value| v["bytes_read"].as_u64().unwrap();
    assert!(
        added(&second) * 20 < added(&first),
        "second base backup added {} bytes, the first {}",
        added(&second),
        added(&first)
    );
    assert!(
        read(&second) * 20 < read(&first),
        "second base backup read {} bytes, the first {}",
        read(&second),
        read(&first)
    );
    assert_ne!(
        first["meta"]["pg.start_lsn"],
        second["meta"]["pg.start_lsn"]
    );

    sb.psql(&c, "postgres", "insert into marks values ('A')");
    std::thread::sleep(Duration::from_millis(300));
    let t = sb.psql(&c, "postgres", "select now()");
    std::thread::sleep(Duration::from_millis(300));
    sb.psql(&c, "postgres", "insert into marks values ('B')");
    sb.switch_and_wait(&c);
    sb.arca(&["pg", "check"]).ok().says("no gaps");
    for (dir, target, want) in [
        ("r_time", vec!["--target-time", t.as_str()], "A"),
        ("r_latest", vec!["--target", "latest"], "A,B"),
    ] {
        let data = restore(&sb, dir, &target);
        assert!(data.join("backup_label").exists());
        assert!(data.join("pg_wal/archive_status").is_dir());
        assert!(!data.join("postmaster.pid").exists());
        let md = std::fs::metadata(&data).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        let (mut r, got) = recovered_marks(&sb, &data, "");
        assert_eq!(got, want, "restore {dir} to {target:?}\nlog:\n{}", r.log());
        assert_eq!(
            sb.psql(&r, "postgres", "select count(*) from pgbench_accounts"),
            "200000"
        );
        r.stop();
    }
    // --method stream still works beside file-level backups.
    let stream = sb
        .arca(&[
            "pg",
            "basebackup",
            "--method",
            "stream",
            "--json",
            "-d",
            &c.uri("postgres"),
        ])
        .ok()
        .summary();
    assert_eq!(stream["meta"]["pg.method"], "stream");
}

#[test]
fn auto_streams_when_the_data_directory_is_not_readable_and_files_says_why() {
    let Some(sb) = Sandbox::new() else { return };
    let mut c = sb.cluster("primary");
    c.start("");
    sb.psql(&c, "postgres", "create table marks(v text)");
    // arca as `nobody`, with a repository of its own: the server (socket, trust) is
    // reachable, its data directory (0700 postgres) is not readable.
    assert!(
        std::fs::read(c.data.join("global/pg_control")).is_ok(),
        "the test itself reads the data directory"
    );
    let as_nobody = nobody_arca(&sb);
    as_nobody(&["init"]).ok();
    let out = as_nobody(&["pg", "basebackup", "--json", "-d", &c.uri("postgres")]).ok();
    let out = out.says(&format!(
        "streaming with pg_basebackup instead of reading the data directory: its data \
         directory {} is not readable by this user",
        c.data.display()
    ));
    let bb = out.summary();
    assert_eq!(bb["meta"]["pg.method"], "stream", "{bb}");
    let listing = as_nobody(&["ls", bb["snapshot_id"].as_str().unwrap()])
        .ok()
        .stdout_str();
    assert!(listing.contains("/base.tar"), "{listing}");
    // --method files refuses, naming the directory and why.
    let data = c.data.to_string_lossy().into_owned();
    as_nobody(&[
        "pg",
        "basebackup",
        "--method",
        "files",
        "-d",
        &c.uri("postgres"),
    ])
    .fails()
    .says(&format!(
        "data directory {data} is not readable by this user"
    ))
    .says("Permission denied")
    .says("--method stream");
    let snaps = as_nobody(&["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
}

/// `arca ARGS` as `nobody`, with a repository of its own (not initialised) in
/// `SANDBOX/nobody`: it reaches servers through their socket but cannot read their data
/// directories.
fn nobody_arca(sb: &Sandbox) -> impl Fn(&[&str]) -> Out {
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("a nobody user");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let home = sb.path("nobody");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    let password_file = home.join("password");
    std::fs::write(&password_file, format!("{}\n", common::PASSWORD)).unwrap();
    std::os::unix::fs::chown(&password_file, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let search_path = sb.search_path();
    move |args: &[&str]| {
        let mut cmd = common::bare_cmd();
        cmd.env("ARCA_REPOSITORY", home.join("repo"))
            .env("ARCA_PASSWORD_FILE", &password_file)
            .env("ARCA_INSECURE_TEST_KDF", "1")
            .env("PATH", &search_path)
            .env("HOME", &home)
            .current_dir(&home)
            .uid(uid)
            .gid(gid)
            .args(args);
        run_cmd(cmd, None)
    }
}

/// Waits until `c` (a standby) has replayed the primary's row `mark` into `marks`.
fn wait_replayed(sb: &Sandbox, c: &Cluster, mark: &str) {
    let start = Instant::now();
    let sql = format!("select count(*) from marks where v = '{mark}'");
    while sb.psql(c, "postgres", &sql) != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the standby did not replay {mark} in 60 s\nlog:\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn file_level_base_backup_of_a_standby_waits_for_the_primary_archive_and_restores() {
    let Some(sb) = Sandbox::new() else { return };
    let primary = primary_with_marks(&sb, 1);
    sb.psql(&primary, "postgres", "insert into marks values ('A')");
    // A streaming replica (archive_mode = on, copied from the primary: it archives
    // nothing itself; the primary archives into the repository).
    let standby_data = sb.path("standby");
    let out = sb
        .tool("pg_basebackup")
        .args(["-R", "-X", "stream", "-c", "fast", "-D"])
        .arg(&standby_data)
        .arg("-d")
        .arg(primary.uri("postgres"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_basebackup -R: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(standby_data.join("standby.signal").exists());
    let mut standby = sb.restored(&standby_data);
    standby.start("");
    assert_eq!(
        sb.psql(&standby, "postgres", "select pg_is_in_recovery()"),
        "t"
    );
    sb.psql(&primary, "postgres", "insert into marks values ('B')");
    wait_replayed(&sb, &standby, "B");

    // The primary does not finish its current segment: the backup's last WAL never
    // reaches the archive, and the backup fails clearly after --archive-timeout.
    let before = sb.snapshot_count();
    sb.arca(&[
        "pg",
        "basebackup",
        "--archive-timeout",
        "1",
        "-d",
        &standby.uri("postgres"),
    ])
    .fails()
    .says("has not archived into this repository within 1 s")
    .says("pg_switch_wal()")
    .says("no snapshot was written");
    // pg_basebackup from a standby does not wait for the archive either: the same.
    sb.arca(&[
        "pg",
        "basebackup",
        "--method",
        "stream",
        "--archive-timeout",
        "1",
        "-d",
        &standby.uri("postgres"),
    ])
    .fails()
    .says("has not archived into this repository within 1 s")
    .says("no snapshot was written");
    assert_eq!(sb.snapshot_count(), before);

    // The same while the primary switches WAL: the backup waits for its segments and
    // is written once they are archived.
    let mut cmd = sb.arca_cmd();
    cmd.args(["pg", "basebackup", "--json", "-d", &standby.uri("postgres")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    /// Kills and reaps arca if the test fails while it runs.
    struct Reap(Option<std::process::Child>);
    impl Drop for Reap {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut arca = Reap(Some(child));
    let start = Instant::now();
    while arca.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "arca still waits"
        );
        std::thread::sleep(Duration::from_millis(300));
        sb.psql(&primary, "postgres", "insert into marks values ('tick')");
        sb.psql(&primary, "postgres", "select pg_switch_wal()");
    }
    let out = arca.0.take().unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "arca pg basebackup of the standby: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bb["meta"]["pg.method"], "files", "{bb}");
    assert_eq!(
        bb["meta"]["pg.pgdata"].as_str(),
        Some(standby_data.to_string_lossy().as_ref())
    );
    assert!(
        bb["meta"]["pg.backup_label"]
            .as_str()
            .unwrap()
            .contains("BACKUP FROM: standby"),
        "{bb}"
    );
    sb.psql(&primary, "postgres", "delete from marks where v = 'tick'");
    sb.psql(&primary, "postgres", "insert into marks values ('C')");
    sb.switch_and_wait(&primary);
    sb.arca(&["pg", "check"]).ok().says("no gaps");

    // Restored to the end of the backup and to the end of the archive: the cluster
    // starts (pg_control verifies), ends recovery, and has the data.
    let stop = bb["meta"]["pg.stop_lsn"].as_str().unwrap().to_string();
    for (dir, target, want) in [
        (
            "r_end_of_backup",
            vec!["--target-lsn", stop.as_str()],
            "A,B",
        ),
        ("r_latest", vec!["--target", "latest"], "A,B,C"),
    ] {
        let data = restore(&sb, dir, &target);
        assert!(!data.join("standby.signal").exists());
        let (mut r, got) = recovered_marks(&sb, &data, "where v <> 'tick'");
        assert_eq!(got, want, "restore {dir}\nlog:\n{}", r.log());
        assert_eq!(
            sb.psql(&r, "postgres", "select count(*) from pgbench_accounts"),
            "100000"
        );
        r.stop();
    }
}

#[test]
fn file_level_base_backups_under_pgbench_load_recover_consistently() {
    let Some(sb) = Sandbox::new() else { return };
    let mut c = sb.cluster("primary");
    c.start("-c max_wal_size=64MB");
    pgbench_init(&sb, &c, 5);
    sb.psql(&c, "postgres", "create extension amcheck");
    sb.arca(&["pg", "basebackup", "-d", &c.uri("postgres")])
        .ok();
    // Writes run through two more base backups (the second reuses unchanged files of
    // the first).
    /// Kills and reaps pgbench if the test fails before it ends.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut load = Reap(
        sb.tool("pgbench")
            .args(["-c", "4", "-j", "2", "-T", "12", "-n"])
            .arg(c.uri("postgres"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let during = sb
        .arca(&["pg", "basebackup", "--json", "-d", &c.uri("postgres")])
        .ok()
        .summary();
    assert_eq!(during["meta"]["pg.method"], "files");
    std::thread::sleep(Duration::from_secs(2));
    let again = sb
        .arca(&["pg", "basebackup", "--json", "-d", &c.uri("postgres")])
        .ok()
        .summary();
    assert!(load.0.wait().unwrap().success(), "pgbench failed");
    let expected = sb.psql(
        &c,
        "postgres",
        "select count(*) || ':' || sum(delta) || ':' || (select sum(abalance) from pgbench_accounts) from pgbench_history",
    );
    sb.switch_and_wait(&c);
    // Recovery to the end of the newest base backup (the data as it was copied, made
    // consistent by its WAL) and to the end of the archive.
    let stop = again["meta"]["pg.stop_lsn"].as_str().unwrap().to_string();
    for (dir, target) in [
        ("r_end_of_backup", vec!["--target-lsn", stop.as_str()]),
        ("r_latest", vec!["--target", "latest"]),
    ] {
        let data = restore(&sb, dir, &target);
        let mut r = sb.restored(&data);
        start_recovered(&sb, &mut r);
        for index in [
            "pgbench_accounts_pkey",
            "pgbench_branches_pkey",
            "pgbench_tellers_pkey",
        ] {
            sb.psql(
                &r,
                "postgres",
                &format!("select bt_index_check('{index}', true)"),
            );
        }
        assert_eq!(
            sb.psql(&r, "postgres", "select count(*) from pgbench_accounts"),
            "500000"
        );
        // Every transaction's history row matches its balance change.
        assert_eq!(
            sb.psql(
                &r,
                "postgres",
                "select (select sum(abalance) from pgbench_accounts) = \
                 (select coalesce(sum(delta), 0) from pgbench_history)"
            ),
            "t",
            "{dir}: balances and history disagree\nlog:\n{}",
            r.log()
        );
        if dir == "r_latest" {
            let got = sb.psql(
                &r,
                "postgres",
                "select count(*) || ':' || sum(delta) || ':' || (select sum(abalance) from pgbench_accounts) from pgbench_history",
            );
            assert_eq!(got, expected, "restored rows differ\nlog:\n{}", r.log());
        }
        r.stop();
    }
}

/// Names, sizes and mtimes of everything below `dir` (to show it was not written).
fn tree_state(dir: &Path) -> Vec<String> {
    common::walk(dir)
        .into_iter()
        .map(|(rel, md)| {
            format!(
                "{} {} {}",
                common::show(&rel),
                md.len(),
                std::os::unix::fs::MetadataExt::mtime_nsec(&md)
                    + std::os::unix::fs::MetadataExt::mtime(&md) * 1_000_000_000
            )
        })
        .collect()
}

#[test]
fn file_level_base_backup_with_a_tablespace_restores_it_where_mapped() {
    let Some(sb) = Sandbox::new() else { return };
    let mut c = sb.cluster("primary");
    c.start("");
    let space = sb.path("space1");
    std::fs::create_dir(&space).unwrap();
    std::os::unix::fs::chown(&space, Some(sb.uid), Some(sb.gid)).unwrap();
    sb.psql(
        &c,
        "postgres",
        &format!("create tablespace ts1 location '{}'", space.display()),
    );
    let oid = sb.psql(
        &c,
        "postgres",
        "select oid from pg_tablespace where spcname = 'ts1'",
    );
    // About 7 MB in the tablespace: a second backup that read it again would show.
    sb.psql(
        &c,
        "postgres",
        "create table t tablespace ts1 as \
         select g as id, md5(g::text) as v from generate_series(1, 100000) g",
    );
    sb.psql(&c, "postgres", "checkpoint");
    std::thread::sleep(Duration::from_millis(1200));

    // The pg_basebackup stream cannot carry it: a clear error and no snapshot.
    sb.arca(&[
        "pg",
        "basebackup",
        "--method",
        "stream",
        "-d",
        &c.uri("postgres"),
    ])
    .fails()
    .says(&format!("ts1 (OID {oid}) at {}", space.display()))
    .says("--method files");
    assert_eq!(sb.snapshot_count(), 0);
    // Nor can --method auto fall back to it when the data directory is not readable.
    let as_nobody = nobody_arca(&sb);
    as_nobody(&["init"]).ok();
    as_nobody(&["pg", "basebackup", "-d", &c.uri("postgres")])
        .fails()
        .says(&format!("ts1 (OID {oid}) at {}", space.display()))
        .says(&format!(
            "arca cannot use it here because its data directory {} is not readable by this user",
            c.data.display()
        ));
    let snaps = as_nobody(&["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");

    let first = sb
        .arca(&["pg", "basebackup", "--json", "-d", &c.uri("postgres")])
        .ok()
        .summary();
    let meta = &first["meta"];
    assert_eq!(meta["pg.method"], "files", "{first}");
    let listed: serde_json::Value =
        serde_json::from_str(meta["pg.tablespaces"].as_str().unwrap()).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([{"oid": oid.parse::<u32>().unwrap(), "name": "ts1",
                            "location": space.to_string_lossy()}])
    );
    assert!(
        meta["pg.tablespace_map"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("{oid} {}", space.display()))),
        "{meta}"
    );
    // The tablespace is stored as pg_tblspc/OID, a directory holding its version directory.
    let listing = sb
        .arca(&["ls", first["snapshot_id"].as_str().unwrap()])
        .ok()
        .stdout_str();
    let in_tree = format!("{}/pg_tblspc/{oid}/PG_15_", c.data.display());
    assert!(listing.contains(&in_tree), "{listing}");
    assert!(!listing.contains("/tablespace_map\n"), "{listing}");
    // Unchanged, the tablespace's files are taken from the first backup, not read again.
    let second = sb
        .arca(&["pg", "basebackup", "--json", "-d", &c.uri("postgres")])
        .ok()
        .summary();
    let read = |v: &serde_json::Value| v["bytes_read"].as_u64().unwrap();
    assert!(
        read(&second) < 3 << 20 && read(&first) > 25 << 20,
        "second base backup read {} bytes, the first {}",
        read(&second),
        read(&first)
    );

    sb.psql(
        &c,
        "postgres",
        "insert into t select g, md5(g::text) from generate_series(100001, 100100) g",
    );
    sb.switch_and_wait(&c);
    sb.arca(&["pg", "check"]).ok().says("no gaps");
    c.stop();
    let original = tree_state(&space);
    assert!(original.len() > 2, "{original:?}");

    // No map while the original location holds the original tablespace: refused before
    // anything is written.
    let refused = sb.path("r_refused");
    sb.arca(&[
        "pg",
        "restore",
        "--pgdata",
        &refused.to_string_lossy(),
        "--target",
        "latest",
    ])
    .fails()
    .says(&format!(
        "tablespace ts1 (OID {oid}) would be restored into {}, which exists and is not empty",
        space.display()
    ));
    assert!(!refused.exists());
    // An unknown tablespace in a map is an error too.
    sb.arca(&[
        "pg",
        "restore",
        "--pgdata",
        &refused.to_string_lossy(),
        "--target",
        "latest",
        "--tablespace-map",
        &format!("nope={}", sb.path("nope").display()),
    ])
    .fails()
    .says("has no tablespace with that OID or name (it has ts1");
    assert!(!refused.exists() && !sb.path("nope").exists());
    assert_eq!(tree_state(&space), original);

    // Mapped by name: every row, before and after the backup, from the new location.
    let moved = sb.path("space1_moved");
    let data = restore(
        &sb,
        "r_ts",
        &[
            "--target",
            "latest",
            "--tablespace-map",
            &format!("ts1={}", moved.display()),
        ],
    );
    let link = data.join("pg_tblspc").join(&oid);
    assert_eq!(std::fs::read_link(&link).unwrap(), moved);
    let md = std::fs::metadata(&moved).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), sb.uid);
    assert_eq!(
        std::fs::read_to_string(data.join("tablespace_map")).unwrap(),
        format!("{oid} {}\n", moved.display())
    );
    let mut r = sb.restored(&data);
    start_recovered(&sb, &mut r);
    assert_eq!(
        sb.psql(&r, "postgres", "select count(*), max(id) from t"),
        "100100|100100",
        "log:\n{}",
        r.log()
    );
    assert_eq!(
        sb.psql(
            &r,
            "postgres",
            "select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts1'"
        ),
        moved.to_string_lossy()
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), moved);
    r.stop();
    assert_eq!(
        tree_state(&space),
        original,
        "the original tablespace changed"
    );

    // --tablespace-map-all puts it below DIR, by name, OID maps work as well.
    let data = restore(
        &sb,
        "r_all",
        &[
            "--target",
            "latest",
            "--tablespace-map-all",
            &sb.path("all").to_string_lossy(),
        ],
    );
    assert_eq!(
        std::fs::read_link(data.join("pg_tblspc").join(&oid)).unwrap(),
        sb.path("all/ts1")
    );
    assert!(std::fs::read_dir(sb.path("all/ts1")).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("PG_15_")
    }));
    let data = restore(
        &sb,
        "r_oid",
        &[
            "--target",
            "latest",
            "--tablespace-map",
            &format!("{oid}={}", sb.path("by_oid").display()),
        ],
    );
    assert_eq!(
        std::fs::read_link(data.join("pg_tblspc").join(&oid)).unwrap(),
        sb.path("by_oid")
    );
    // Without a map, into the original location once that is free.
    std::fs::rename(&space, sb.path("space1_old")).unwrap();
    let data = restore(&sb, "r_orig", &["--target", "latest"]);
    assert_eq!(
        std::fs::read_link(data.join("pg_tblspc").join(&oid)).unwrap(),
        space
    );
    // (The same content below the top directory, which the restore made.)
    assert_eq!(
        tree_state(&space)[1..],
        tree_state(&sb.path("all/ts1"))[1..]
    );
}
