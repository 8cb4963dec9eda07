//! A job with a PostgreSQL source, against a real throwaway cluster: `arca job run` makes
//! the same dump as `arca pg dump` (restorable with `arca pg restore-dump`), records it in
//! the history, and a stopped server fails the run with the server named and the failure
//! hook told why.
//!
//! The server runs as user `postgres`; without root, that user or the PostgreSQL binaries
//! the test skips, unless CI=true, where it fails.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Env, PASSWORD, bare_cmd, run_cmd};

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
