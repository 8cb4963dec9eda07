//! `arca drill run` end to end: a good snapshot passes every step (with a `sha256sum -c`
//! manifest check), a damaged pack fails integrity naming the file, failing and timed-out
//! checks fail the function step, an RTO of 1ms fails performance, a mode changed behind
//! the drill's back (by a warm-tier configure hook) fails security, and the scratch space
//! is left empty every time. With PostgreSQL: a drill of a data directory starts the
//! server on the restored copy and passes a query; a drill of a base backup unpacks it,
//! recovers through `arca wal-fetch` (a row written after the backup must be there) and
//! passes its query. Without root, a postgres user or PostgreSQL those two skip, unless
//! CI=true, where they fail.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Env, Out, list_files, run_cmd, write_random};
use serde_json::Value;

fn arca(env: &Env, args: &[&str]) -> Out {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1").args(args);
    run_cmd(c, None)
}

/// A repository with one snapshot of a tree holding a manifest of its files; returns the
/// sandbox and the source directory.
fn setup() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    arca(&env, &["init"]).ok();
    let src = env.path("src");
    fs::create_dir_all(src.join("db/base")).unwrap();
    write_random(&src.join("big.bin"), 1, 3 << 20);
    write_random(&src.join("db/base/table"), 2, 300_000);
    fs::write(
        src.join("notes.txt"),
        "the restore drill reads this plaintext line\n".repeat(50),
    )
    .unwrap();
    fs::set_permissions(src.join("notes.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(src.join("db"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("notes.txt", src.join("link")).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("sha256sum big.bin db/base/table notes.txt > MANIFEST")
        .current_dir(&src)
        .status()
        .unwrap();
    assert!(out.success());
    arca(&env, &["backup", "-q", src.to_str().unwrap()]).ok();
    (env, src)
}

fn drill(env: &Env, scratch: &Path, extra: &[&str]) -> (Out, Value) {
    let mut args = vec![
        "drill",
        "run",
        "--json",
        "--scratch",
        scratch.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = arca(env, &args);
    let v = out
        .json_lines()
        .into_iter()
        .rev()
        .find(|v| v["message_type"] == "drill")
        .unwrap_or_else(|| {
            panic!(
                "no drill report\nstdout: {}\nstderr: {}",
                out.stdout_str(),
                out.stderr
            )
        });
    (out, v)
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}

fn status(report: &Value, name: &str) -> String {
    step(report, name)["status"].as_str().unwrap().to_string()
}

fn reasons(report: &Value, name: &str) -> String {
    step(report, name)["reasons"].to_string()
}

#[track_caller]
fn assert_scratch_empty(scratch: &Path) {
    let left: Vec<_> = fs::read_dir(scratch).unwrap().flatten().collect();
    assert!(left.is_empty(), "scratch space not cleaned up: {left:?}");
}

#[test]
fn good_snapshot_passes_every_step_in_every_tier() {
    let (env, _src) = setup();
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    for tier in ["cold", "warm", "hot"] {
        let (out, r) = drill(
            &env,
            &scratch,
            &[
                "--check",
                "sha256sum -c MANIFEST",
                "--check",
                "test \"$ARCA_DRILL_DIR\" = \"$PWD\" && test -d \"$ARCA_DRILL_ROOT\"",
                "--rto",
                "1h",
                "--tier",
                tier,
            ],
        );
        assert_eq!(out.code, 0, "{tier}: {r:#}");
        assert_eq!(r["passed"], true);
        assert_eq!(r["tier"], tier);
        for s in ["integrity", "function", "performance", "security"] {
            assert_eq!(status(&r, s), "passed", "{tier} {s}: {r:#}");
        }
        let checks = r["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 2);
        assert!(
            checks[0]["stdout"]
                .as_str()
                .unwrap()
                .contains("big.bin: OK")
        );
        let perf = &r["performance"];
        assert!(perf["bytes"].as_u64().unwrap() > 3 << 20);
        assert!(perf["throughput_bytes_per_sec"].as_f64().unwrap() > 0.0);
        assert_eq!(perf["rto_secs"].as_f64(), Some(3600.0));
        assert!(perf["projected_full_restore_secs"].as_f64().unwrap() > 0.0);
        assert_eq!(r["cleaned_up"], true);
        assert_scratch_empty(&scratch);
    }

    // A projection for a much larger job over the RTO fails performance.
    let (out, r) = drill(
        &env,
        &scratch,
        &["--rto", "1h", "--full-size", "1000000000000000"],
    );
    assert_eq!(out.code, 1);
    assert_eq!(status(&r, "performance"), "failed");
    assert!(reasons(&r, "performance").contains("projected"), "{r:#}");

    // The text report, and without --scratch a private scratch directory.
    let out = arca(&env, &["drill", "run", "--check", "sha256sum -c MANIFEST"]).ok();
    let text = out.stdout_str();
    assert!(text.contains("PASSED"), "{text}");
    assert!(text.contains("scratch space removed"), "{text}");
}

#[test]
fn damaged_pack_fails_integrity_naming_the_file() {
    let (env, src) = setup();
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    // The largest pack holds big.bin's data.
    let pack_rel = common::damage_largest_pack(&env.repo, |_| 1000, 64, 0x55);

    let (out, r) = drill(&env, &scratch, &["--check", "sha256sum -c MANIFEST"]);
    assert_eq!(out.code, 1, "{r:#}");
    assert_eq!(r["passed"], false);
    assert_eq!(status(&r, "integrity"), "failed");
    let why = reasons(&r, "integrity");
    // The pack holds big.bin's and db/base/table's data; the damage hits whichever was
    // packed first.
    assert!(
        why.contains(&format!("{}/big.bin:", src.display()))
            || why.contains(&format!("{}/db/base/table:", src.display())),
        "names the file as in the snapshot: {why}"
    );
    assert!(why.contains(&pack_rel), "names the pack: {why}");
    // The restored file is wrong, so the manifest check fails too.
    assert_eq!(status(&r, "function"), "failed");
    assert!(reasons(&r, "function").contains("sha256sum -c MANIFEST"));
    assert_scratch_empty(&scratch);

    // The text report names them as well.
    let out = arca(
        &env,
        &["drill", "run", "--scratch", scratch.to_str().unwrap()],
    )
    .code(1);
    assert!(out.stdout_str().contains("integrity    FAILED"));
    assert!(out.stdout_str().contains(&pack_rel));
}

#[test]
fn failing_or_timed_out_checks_fail_the_function_step() {
    let (env, _src) = setup();
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    let start = Instant::now();
    let (out, r) = drill(
        &env,
        &scratch,
        &[
            "--check",
            "echo checking; echo broken >&2; exit 7",
            "--check",
            "sleep 60",
            "--check",
            "true",
            "--check-timeout",
            "500ms",
        ],
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the timed-out check was not killed"
    );
    assert_eq!(out.code, 1);
    assert_eq!(status(&r, "function"), "failed");
    assert_eq!(status(&r, "integrity"), "passed");
    assert_eq!(status(&r, "performance"), "passed");
    assert_eq!(status(&r, "security"), "passed");
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks[0]["passed"], false);
    assert_eq!(checks[0]["exit_code"], 7);
    assert_eq!(checks[0]["stdout"], "checking\n");
    assert_eq!(checks[1]["timed_out"], true);
    assert_eq!(checks[2]["passed"], true);
    let why = reasons(&r, "function");
    assert!(why.contains("exited with code 7: broken"), "{why}");
    assert!(why.contains("timed out"), "{why}");
    assert_scratch_empty(&scratch);
}

#[test]
fn rto_of_one_millisecond_fails_performance() {
    let (env, _src) = setup();
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    let (out, r) = drill(&env, &scratch, &["--rto", "1ms"]);
    assert_eq!(out.code, 1);
    assert_eq!(status(&r, "performance"), "failed");
    assert!(
        reasons(&r, "performance").contains("over the RTO of 1ms"),
        "{r:#}"
    );
    assert_eq!(status(&r, "integrity"), "passed");
    assert_eq!(status(&r, "function"), "skipped");
    assert_eq!(status(&r, "security"), "passed");
    assert_scratch_empty(&scratch);

    // --keep leaves the restored copy for a look.
    let (out, r) = drill(&env, &scratch, &["--keep"]);
    assert_eq!(out.code, 0, "{r:#}");
    assert_eq!(r["cleaned_up"], false);
    let kept = Path::new(r["restore_dir"].as_str().unwrap());
    assert!(kept.starts_with(&scratch));
    assert_eq!(list_files(kept).len(), 4, "{:?}", list_files(kept));
}

#[test]
fn mode_changed_behind_the_drills_back_fails_security() {
    let (env, src) = setup();
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    // The warm tier's configure hook runs on the staged data before the switch.
    let rel = src.join("notes.txt");
    let hook = format!("chmod 666 \"$ARCA_RECOVER_DIR{}\"", rel.display());
    let (out, r) = drill(&env, &scratch, &["--tier", "warm", "--configure", &hook]);
    assert_eq!(out.code, 1, "{r:#}");
    assert_eq!(status(&r, "security"), "failed");
    let why = reasons(&r, "security");
    assert!(
        why.contains("notes.txt: mode 0666, the snapshot has 0640"),
        "{why}"
    );
    assert_eq!(r["hooks"][0]["exit_code"], 0);

    // A file appearing beside the drill's directory is reported as written outside.
    let hook = format!("touch \"{}/intruder\"", scratch.display());
    let (out, r) = drill(&env, &scratch, &["--tier", "cold", "--provision", &hook]);
    assert_eq!(out.code, 1, "{r:#}");
    assert!(reasons(&r, "security").contains("intruder"), "{r:#}");
    fs::remove_file(scratch.join("intruder")).unwrap();

    // A failing hook stops the recovery: integrity fails, the rest is skipped.
    let (out, r) = drill(&env, &scratch, &["--tier", "cold", "--provision", "exit 9"]);
    assert_eq!(out.code, 1);
    assert_eq!(status(&r, "integrity"), "failed");
    assert_eq!(status(&r, "security"), "skipped");
    assert!(
        r["error"].as_str().unwrap().contains("provision hook"),
        "{r:#}"
    );
    assert_scratch_empty(&scratch);
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: a drill starts the server on the restored data directory

const PG_BIN_DEFAULT: &str = "/usr/lib/postgresql/15/bin";

fn pg_bin() -> std::path::PathBuf {
    std::env::var_os("ARCA_TEST_PG_BINDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(PG_BIN_DEFAULT))
}

/// uid/gid of `postgres` when a server can run here; fails under CI=true otherwise.
fn postgres_ids() -> Option<(u32, u32)> {
    let why = if !nix::unistd::geteuid().is_root() {
        "not running as root".to_string()
    } else if !pg_bin().join("initdb").exists() {
        format!("no PostgreSQL binaries in {}", pg_bin().display())
    } else if !common::have_tool("runuser") {
        "no runuser".to_string()
    } else {
        match nix::unistd::User::from_name("postgres") {
            Ok(Some(u)) => return Some((u.uid.as_raw(), u.gid.as_raw())),
            _ => "no postgres user".to_string(),
        }
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("PostgreSQL drill test cannot run: {why}");
    }
    eprintln!("skipping PostgreSQL drill test: {why}");
    None
}

/// Stops (immediate) the server of a data directory when dropped, also on panic.
struct PgStop {
    data: std::path::PathBuf,
    uid: u32,
    gid: u32,
}

impl Drop for PgStop {
    fn drop(&mut self) {
        use std::os::unix::process::CommandExt;
        if self.data.join("postmaster.pid").exists() {
            let _ = Command::new(pg_bin().join("pg_ctl"))
                .args(["-w", "-m", "immediate", "-D"])
                .arg(&self.data)
                .arg("stop")
                .uid(self.uid)
                .gid(self.gid)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn as_postgres(uid: u32, gid: u32, program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(pg_bin().join(program));
    c.uid(uid)
        .gid(gid)
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(std::process::Stdio::null());
    c
}

#[test]
fn postgres_data_directory_drill_starts_the_server_and_passes_a_query() {
    let Some((uid, gid)) = postgres_ids() else {
        return;
    };
    let env = Env::new();
    arca(&env, &["init"]).ok();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let pg = env.path("pg");
    let sock = pg.join("sock");
    fs::create_dir_all(&sock).unwrap();
    for d in [&pg, &sock] {
        std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
    }
    let data = pg.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = format!(
        "-c port={port} -c unix_socket_directories='{}' -c listen_addresses='' -c fsync=off",
        sock.display()
    );
    common::sh(
        as_postgres(uid, gid, "initdb")
            .args(["--no-sync", "-A", "trust", "-U", "postgres", "-D"])
            .arg(&data),
    );
    let _stop = PgStop {
        data: data.clone(),
        uid,
        gid,
    };
    common::sh(
        as_postgres(uid, gid, "pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(pg.join("server.log"))
            .arg("-o")
            .arg(&opts)
            .arg("start"),
    );
    let sock_s = sock.to_str().unwrap().to_string();
    let port_s = port.to_string();
    let psql = |sql: &str| {
        common::sh(as_postgres(uid, gid, "psql").args([
            "-X", "-q", "-h", &sock_s, "-p", &port_s, "-d", "postgres", "-c", sql,
        ]))
    };
    psql("create table marks(v int)");
    psql("insert into marks values (1), (2), (3)");
    // A cleanly stopped data directory is what a file-level backup of it should hold.
    common::sh(
        as_postgres(uid, gid, "pg_ctl")
            .args(["-w", "-m", "fast", "-D"])
            .arg(&data)
            .arg("stop"),
    );
    arca(&env, &["backup", "-q", data.to_str().unwrap()]).ok();

    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    let bin = pg_bin();
    let check = format!(
        "B={bin}; O=\"{opts}\"; \
         runuser -u postgres -- $B/pg_ctl -D \"$ARCA_DRILL_DIR\" -w -t 60 -l {log} -o \"$O\" start || exit 1; \
         n=$(runuser -u postgres -- $B/psql -X -h {sock} -p {port} -d postgres -tAc 'select sum(v) from marks'); r=$?; \
         runuser -u postgres -- $B/pg_ctl -D \"$ARCA_DRILL_DIR\" -w -m fast stop; \
         echo \"sum=$n\"; test $r = 0 && test \"$n\" = 6",
        bin = bin.display(),
        opts = opts.replace(['\'', '"'], ""),
        log = pg.join("drill.log").display(),
        sock = sock.display(),
    );
    let (out, r) = drill(
        &env,
        &scratch,
        &["--check", &check, "--check-timeout", "2m", "--rto", "10m"],
    );
    assert_eq!(
        out.code,
        0,
        "{r:#}\nserver log:\n{}",
        fs::read_to_string(pg.join("drill.log")).unwrap_or_default()
    );
    for s in ["integrity", "function", "performance", "security"] {
        assert_eq!(status(&r, s), "passed", "{s}: {r:#}");
    }
    assert!(r["checks"][0]["stdout"].as_str().unwrap().contains("sum=6"));
    // Owners were compared (root restores them): the data directory belongs to postgres.
    assert!(
        !step(&r, "security")["notes"]
            .to_string()
            .contains("owners not compared")
    );
    assert_scratch_empty(&scratch);

    // The same drill against a damaged pack fails and names the damage.
    let pack_rel = common::damage_largest_pack(&env.repo, |size| size / 2, 32, 0xff);
    let (out, r) = drill(
        &env,
        &scratch,
        &["--check", &check, "--check-timeout", "2m"],
    );
    assert_eq!(out.code, 1, "{r:#}");
    assert_eq!(status(&r, "integrity"), "failed");
    assert!(reasons(&r, "integrity").contains(&pack_rel), "{r:#}");
    assert_scratch_empty(&scratch);
}

/// `arca` as postgres with a password file (the archive and restore commands run as
/// postgres and use the same repository).
fn arca_as(uid: u32, gid: u32, env: &Env, password_file: &Path, args: &[&str]) -> Out {
    use std::os::unix::process::CommandExt;
    let mut c = common::bare_cmd();
    c.env("ARCA_REPOSITORY", &env.repo)
        .env("ARCA_PASSWORD_FILE", password_file)
        .env("ARCA_INSECURE_TEST_KDF", "1")
        .current_dir(env.dir.path())
        .uid(uid)
        .gid(gid)
        .args(args);
    run_cmd(c, None)
}

#[test]
fn postgres_base_backup_drill_replays_the_wal_archive_and_passes_a_query() {
    let Some((uid, gid)) = postgres_ids() else {
        return;
    };
    let env = Env::new();
    let dir = env.dir.path().to_path_buf();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    let password_file = dir.join("password");
    fs::write(&password_file, format!("{}\n", common::PASSWORD)).unwrap();
    std::os::unix::fs::chown(&password_file, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600)).unwrap();
    arca_as(uid, gid, &env, &password_file, &["init"]).ok();

    let data = dir.join("data");
    common::sh(
        as_postgres(uid, gid, "initdb")
            .args(["--no-sync", "-A", "trust", "-U", "postgres", "-D"])
            .arg(&data),
    );
    let _stop = PgStop {
        data: data.clone(),
        uid,
        gid,
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let archive = format!(
        "{} -r {} --password-file {} wal-push %p",
        common::bin(),
        env.repo.display(),
        password_file.display()
    );
    let conf = format!(
        "listen_addresses = ''\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\n\
         wal_level = replica\narchive_mode = on\narchive_command = '{archive}'\n",
        dir.display()
    );
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
    drop(f);
    common::sh(
        as_postgres(uid, gid, "pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .arg("start"),
    );
    let dir_s = dir.to_str().unwrap().to_string();
    let port_s = port.to_string();
    let psql = |sql: &str| -> String {
        let out = as_postgres(uid, gid, "psql")
            .args([
                "-X", "-A", "-t", "-q", "-h", &dir_s, "-p", &port_s, "-d", "postgres", "-c", sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    psql("create table marks(v int)");
    psql("insert into marks values (1), (2), (3)");
    let uri = format!("postgresql:///postgres?host={dir_s}&port={port}&user=postgres");
    arca_as(
        uid,
        gid,
        &env,
        &password_file,
        &["pg", "basebackup", "--method", "stream", "-d", &uri],
    )
    .ok();
    // A row after the base backup: only the WAL archive has it.
    psql("insert into marks values (10)");
    let seg = psql("select pg_walfile_name(pg_switch_wal())");
    let start = Instant::now();
    loop {
        let last = psql("select coalesce(last_archived_wal, '') from pg_stat_archiver");
        if last.len() == 24 && last >= seg {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "segment {seg} not archived (last {last:?}): {}",
            fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    common::sh(
        as_postgres(uid, gid, "pg_ctl")
            .args(["-w", "-m", "fast", "-D"])
            .arg(&data)
            .arg("stop"),
    );

    // The check: unpack base.tar, recover from the WAL archive through arca wal-fetch,
    // start, query, stop.
    let restore_line = dir.join("restore_command.conf");
    fs::write(
        &restore_line,
        format!(
            "restore_command = '{} -r {} --password-file {} wal-fetch %f %p'\n",
            common::bin(),
            env.repo.display(),
            password_file.display()
        ),
    )
    .unwrap();
    let port2 = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let check = format!(
        "set -e; B={bin}; mkdir -m 700 pgdata; tar -xf base.tar -C pgdata; \
         touch pgdata/recovery.signal; cat {restore} >> pgdata/postgresql.auto.conf; \
         $B/pg_ctl -D pgdata -w -t 60 -l {log} \
           -o \"-c port={port2} -c unix_socket_directories={dir} -c listen_addresses= -c archive_mode=off\" start; \
         n=$($B/psql -X -h {dir} -p {port2} -d postgres -tAc 'select sum(v) from marks') || n=error; \
         $B/pg_ctl -D pgdata -w -m fast stop; echo \"sum=$n\"; test \"$n\" = 16",
        bin = pg_bin().display(),
        restore = restore_line.display(),
        log = dir.join("drill.log").display(),
        dir = dir_s,
    );
    let scratch = dir.join("scratch");
    fs::create_dir(&scratch).unwrap();
    std::os::unix::fs::chown(&scratch, Some(uid), Some(gid)).unwrap();
    let scratch_s = scratch.to_str().unwrap().to_string();
    let out = arca_as(
        uid,
        gid,
        &env,
        &password_file,
        &[
            "drill",
            "run",
            "--json",
            "--scratch",
            &scratch_s,
            "--check",
            &check,
            "--check-timeout",
            "2m",
            "--rto",
            "10m",
        ],
    );
    let r = out
        .json_lines()
        .into_iter()
        .find(|v| v["message_type"] == "drill")
        .unwrap_or_else(|| panic!("no report: {}\n{}", out.stdout_str(), out.stderr));
    assert_eq!(
        out.code,
        0,
        "{r:#}\ndrill server log:\n{}",
        fs::read_to_string(dir.join("drill.log")).unwrap_or_default()
    );
    for s in ["integrity", "function", "performance", "security"] {
        assert_eq!(status(&r, s), "passed", "{s}: {r:#}");
    }
    assert!(
        r["checks"][0]["stdout"]
            .as_str()
            .unwrap()
            .contains("sum=16"),
        "{r:#}"
    );
    assert_scratch_empty(&scratch);
}

#[test]
fn interrupted_drill_stops_its_check_and_cleans_up() {
    let (env, _src) = setup();
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    let marker = env.path("check-started");
    let check = format!("touch '{}'; sleep 60", marker.display());
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1").args([
        "drill",
        "run",
        "-q",
        "--scratch",
        scratch.to_str().unwrap(),
        "--check",
        &check,
        "--check-timeout",
        "2m",
    ]);
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the check never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the check was not stopped"
    );
    assert_scratch_empty(&scratch);
}
