//! A job with a PostgreSQL source, against a real throwaway cluster: `arca job run` makes
//! the same dump as `arca pg dump` (restorable with `arca pg restore-dump`), records it in
//! the history, and a stopped server fails the run with the server named and the failure
//! hook told why.
//!
//! The server runs as user `postgres`; without root, that user or the PostgreSQL binaries
//! the test skips, unless CI=true, where it fails.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{Env, PASSWORD, bare_cmd, run_cmd};

fn pg_bin() -> PathBuf {
    std::env::var_os("ARCA_TEST_PG_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn can_run_postgres() -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        "not running as root".to_string()
    } else if !pg_bin().join("initdb").exists() {
        format!("no PostgreSQL binaries in {}", pg_bin().display())
    } else if !matches!(nix::unistd::User::from_name("postgres"), Ok(Some(_))) {
        "no postgres user".to_string()
    } else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the PostgreSQL job test cannot run: {why}"
    );
    eprintln!("skipping the PostgreSQL job test: {why}");
    false
}

/// A cluster run by `postgres` on a unix socket; stopped on drop.
struct Cluster {
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    running: bool,
}

fn as_postgres(tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"])
        .arg(pg_bin().join(tool))
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    c
}

fn sh_ok(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let pg = dir.join("pg");
        std::fs::create_dir_all(&pg).unwrap();
        sh_ok(Command::new("chown").arg("postgres:postgres").arg(&pg));
        let data = pg.join("data");
        sh_ok(
            as_postgres("initdb")
                .args(["--no-sync", "-U", "postgres", "-A", "trust", "-D"])
                .arg(&data),
        );
        let port = 21000 + (std::process::id() % 4000) as u16;
        let c = Cluster {
            data,
            socket_dir: pg.clone(),
            port,
            running: true,
        };
        sh_ok(
            as_postgres("pg_ctl")
                .args(["-w", "-D"])
                .arg(&c.data)
                .arg("-l")
                .arg(pg.join("log"))
                .arg("-o")
                .arg(format!(
                    "-c listen_addresses='' -c port={port} -c unix_socket_directories='{}' -c fsync=off",
                    pg.display()
                ))
                .arg("start"),
        );
        c
    }

    fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.socket_dir.display(),
            self.port
        )
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        sh_ok(
            as_postgres("psql")
                .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(self.conninfo(db))
                .arg("-c")
                .arg(sql),
        )
        .trim()
        .to_string()
    }

    fn stop(&mut self) {
        if self.running {
            let _ = as_postgres("pg_ctl")
                .args(["-w", "-m", "immediate", "-D"])
                .arg(&self.data)
                .arg("stop")
                .output();
            self.running = false;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn arca(config: &Path, args: &[&str]) -> common::Out {
    let mut c = bare_cmd();
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("ARCA_INSECURE_TEST_KDF", "1");
    run_cmd(c, None)
}

#[test]
fn postgres_job_dumps_restores_and_reports_a_stopped_server() {
    if !can_run_postgres() {
        return;
    }
    let env = Env::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut pg = Cluster::start(env.dir.path());
    pg.psql(
        "postgres",
        "create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 5000) g",
    );
    let repo = env.path("repo");
    let mut init = bare_cmd();
    init.arg("-r")
        .arg(&repo)
        .arg("init")
        .env("ARCA_PASSWORD", PASSWORD)
        .env("ARCA_INSECURE_TEST_KDF", "1");
    run_cmd(init, None).ok();
    std::fs::write(env.path("pw"), format!("{PASSWORD}\n")).unwrap();
    let config = env.path("arca.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
state = "state.db"

[repositories.local]
location = "{repo}"
password_file = "pw"

[jobs.pg]
postgres = {{ dbname = "{conninfo}", format = "custom", bindir = "{bindir}" }}
repositories = ["local"]
schedule = "0 3 * * *"
hooks = {{ failure = ["echo failure-hook: $ARCA_ERROR"] }}
"#,
            repo = repo.display(),
            conninfo = pg.conninfo("postgres"),
            bindir = pg_bin().display(),
        ),
    )
    .unwrap();
    arca(&config, &["config", "check"]).ok();
    arca(&config, &["job", "list"]).ok().says("postgres: host=");

    let rec = arca(&config, &["job", "run", "pg", "--json"]).ok().json();
    assert_eq!(rec["status"], "success", "{rec}");
    let snap = rec["snapshot_id"].as_str().unwrap().to_string();
    assert!(rec["bytes_read"].as_u64().unwrap() > 10_000, "{rec}");

    // The same snapshot `arca pg dump` makes: restore it into a new database.
    pg.psql("postgres", "create database copy");
    let mut restore = bare_cmd();
    restore
        .arg("-r")
        .arg(&repo)
        .args(["pg", "restore-dump", &snap[..8], "--pg-bindir"])
        .arg(pg_bin())
        .arg("-d")
        .arg(pg.conninfo("copy"))
        .env("ARCA_PASSWORD", PASSWORD)
        .env("ARCA_INSECURE_TEST_KDF", "1");
    run_cmd(restore, None).ok();
    assert_eq!(pg.psql("copy", "select count(*) from t"), "5000");

    // A stopped server: the run fails, says which server, and the failure hook hears it.
    pg.stop();
    let out = arca(&config, &["job", "run", "pg", "--json"]).code(1);
    let rec = out.json();
    assert_eq!(rec["status"], "failed", "{rec}");
    let err = rec["error"].as_str().unwrap();
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(
        rec["log"].as_str().unwrap().contains("failure-hook: "),
        "{rec}"
    );
    let st = arca(&config, &["status", "--json"]).ok().json();
    assert_eq!(st["jobs"][0]["last_good"]["snapshot_id"], snap.as_str());
    assert!(
        st["jobs"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL")
    );
}

fn can_run_mariadb() -> bool {
    let have = |t: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "command -v {t} >/dev/null 2>&1 || test -x /usr/sbin/{t}"
            ))
            .status()
            .is_ok_and(|s| s.success())
    };
    let why = if !nix::unistd::geteuid().is_root() {
        "not running as root".to_string()
    } else if !["mariadbd", "mariadb-install-db", "mariadb-dump", "mariadb"]
        .iter()
        .all(|t| have(t))
    {
        "MariaDB is not installed".to_string()
    } else if !matches!(nix::unistd::User::from_name("mysql"), Ok(Some(_))) {
        "no mysql user".to_string()
    } else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the MySQL job test cannot run: {why}"
    );
    eprintln!("skipping the MySQL job test: {why}");
    false
}

/// mariadbd on a private socket; killed by pid on drop.
struct Mariadb {
    child: std::process::Child,
    socket: PathBuf,
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mariadb {
    fn start(dir: &Path) -> Mariadb {
        let base = dir.join("my");
        std::fs::create_dir_all(&base).unwrap();
        let datadir = base.join("data");
        sh_ok(
            Command::new("mariadb-install-db")
                .arg(format!("--datadir={}", datadir.display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                .arg("--user=mysql"),
        );
        sh_ok(
            Command::new("chown")
                .arg("-R")
                .arg("mysql:mysql")
                .arg(&base),
        );
        let socket = base.join("server.sock");
        let mariadbd = if Path::new("/usr/sbin/mariadbd").exists() {
            PathBuf::from("/usr/sbin/mariadbd")
        } else {
            PathBuf::from("mariadbd")
        };
        let child = Command::new(mariadbd)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", base.join("server.pid").display()))
            .arg(format!("--log-error={}", base.join("server.err").display()))
            .arg("--skip-networking")
            .arg(format!("--log-bin={}", datadir.join("binlog").display()))
            .arg("--server-id=1")
            .arg("--innodb-log-file-size=8M")
            .arg("--innodb-buffer-pool-size=32M")
            .arg("--user=mysql")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let m = Mariadb { child, socket };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !Command::new("mariadb-admin")
            .arg("--no-defaults")
            .arg(format!("--socket={}", m.socket.display()))
            .args(["--user=nobody-pings", "ping"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(std::time::Instant::now() < deadline, "mariadbd not ready");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        m
    }

    fn sql(&self, password: &str, sql: &str) -> String {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .arg("--user=root")
            .args(["--batch", "--skip-column-names"]);
        if !password.is_empty() {
            c.arg(format!("--password={password}"));
        }
        sh_ok(c.arg("-e").arg(sql)).trim().to_string()
    }
}

#[test]
fn mysql_job_dumps_with_the_binlog_position() {
    if !can_run_mariadb() {
        return;
    }
    let env = Env::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = Mariadb::start(env.dir.path());
    db.sql("", "ALTER USER root@localhost IDENTIFIED BY 'db-secret'");
    db.sql(
        "db-secret",
        "CREATE DATABASE shop; USE shop; CREATE TABLE items (id INT PRIMARY KEY, name TEXT); INSERT INTO items SELECT seq, CONCAT('item ', seq) FROM seq_1_to_2000",
    );
    let repo = env.path("repo");
    let mut init = bare_cmd();
    init.arg("-r")
        .arg(&repo)
        .arg("init")
        .env("ARCA_PASSWORD", PASSWORD)
        .env("ARCA_INSECURE_TEST_KDF", "1");
    run_cmd(init, None).ok();
    std::fs::write(env.path("pw"), format!("{PASSWORD}\n")).unwrap();
    let config = env.path("arca.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
state = "state.db"

[repositories.local]
location = "{repo}"
password_file = "pw"

[jobs.shop]
mysql = {{ databases = ["shop"], socket = "{socket}", user = "root", password_env = "ARCA_TEST_MYSQL_PW" }}
repositories = ["local"]
schedule = "every 1d"
"#,
            repo = repo.display(),
            socket = db.socket.display(),
        ),
    )
    .unwrap();
    let mut c = bare_cmd();
    c.arg("--config")
        .arg(&config)
        .args(["job", "run", "shop", "--json"])
        .env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_TEST_MYSQL_PW", "db-secret");
    let rec = run_cmd(c, None).ok().json();
    assert_eq!(rec["status"], "success", "{rec}");
    let mut c = bare_cmd();
    c.arg("-r")
        .arg(&repo)
        .args(["snapshots", "--json"])
        .env("ARCA_PASSWORD", PASSWORD);
    let snaps = run_cmd(c, None).ok().json();
    let s = &snaps[0];
    assert_eq!(s["source"], "mysql-dump", "{s}");
    assert!(
        s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "job:shop"),
        "{s}"
    );
    let text = s.to_string();
    assert!(
        text.contains("binlog"),
        "the dump records the binlog position: {s}"
    );
    assert!(!text.contains("db-secret"));
    // Without the password variable the check refuses the file.
    arca(&config, &["config", "check"])
        .code(1)
        .says("ARCA_TEST_MYSQL_PW is not set");
}
