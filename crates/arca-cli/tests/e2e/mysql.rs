//! End-to-end tests of `arca mysql` against real throwaway MariaDB servers: dump and restore
//! round trips (one database, all databases), physical backup and restore-physical, the
//! password never reaching a command line or a child's environment, and clear errors
//! (wrong password, server down, missing tools, failing dump) that leave no snapshot.
//!
//! Each test starts its own `mariadbd` on a private unix socket under a temporary
//! directory, from a data directory template made once by `mariadb-install-db`, and kills
//! it by pid in a Drop guard. Without MariaDB the tests skip with a note, or fail when
//! CI=true.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::*;

/// The server's root password: quotes, a backslash, `#` and a space exercise the option
/// file quoting.
const DB_PASSWORD: &str = r#"s3cr"et'pa\ss #word"#;

fn mariadb_installed() -> bool {
    [
        "mariadbd",
        "mariadb-install-db",
        "mariadb",
        "mariadb-dump",
        "mariadb-admin",
    ]
    .iter()
    .all(|t| have_tool(t) || Path::new("/usr/sbin").join(t).exists())
}

/// True when MariaDB can be used; false (after a note) to skip. Panics under CI=true.
fn need_mariadb(test: &str) -> bool {
    if mariadb_installed() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: MariaDB (mariadbd, mariadb-install-db, mariadb-dump) is not installed");
    }
    eprintln!(
        "skipping {test}: MariaDB is not installed (apt-get install mariadb-server mariadb-client mariadb-backup)"
    );
    false
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// uid/gid of the `mysql` user when running as root (the server refuses to run as root).
fn mysql_owner() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let u = nix::unistd::User::from_name("mysql")
        .ok()
        .flatten()
        .expect("user mysql exists (created by the mariadb-server package)");
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

fn chown_r(path: &Path) {
    if let Some((uid, gid)) = mysql_owner() {
        sh(Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(path));
    }
}

fn mariadbd() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join("mariadbd");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("mariadbd")
}

const SERVER_OPTIONS: [&str; 4] = [
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=32M",
    "--innodb-flush-log-at-trx-commit=2",
    "--skip-name-resolve",
];

/// A data directory made by `mariadb-install-db`, shared by the tests of this run.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("arca-mariadb-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        chown_r(&dir);
        let datadir = dir.join("data");
        let mut c = Command::new("mariadb-install-db");
        c.arg(format!("--datadir={}", datadir.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--innodb-log-file-size=8M");
        if is_root() {
            c.arg("--user=mysql");
        }
        sh(&mut c);
        datadir
    })
}

/// Removes this run's template when the test process exits.
fn remove_template_at_exit() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        extern "C" fn remove_template() {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("arca-mariadb-template-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(dir);
        }
        at_exit(remove_template);
    });
}

#[allow(unsafe_code)]
fn at_exit(f: extern "C" fn()) {
    // SAFETY: registers a function without arguments that only removes a directory; the
    // test harness ends with process::exit, which runs it.
    unsafe {
        libc::atexit(f);
    }
}

/// A throwaway MariaDB server on a private socket; killed (by pid) when dropped.
struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// A client option file with the root password (for the test's own queries).
    client_cnf: PathBuf,
}

impl Server {
    /// A fresh server (copy of the template) with DB_PASSWORD for root@localhost.
    fn start() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("arca-mysql-")
            .tempdir()
            .expect("tempdir");
        chown_r(dir.path());
        let datadir = dir.path().join("data");
        sh(Command::new("cp").arg("-a").arg(template()).arg(&datadir));
        remove_template_at_exit();
        let server = Server::start_on(dir, datadir, None);
        // Set the password over the socket, then use the option file from here on.
        let escaped = DB_PASSWORD.replace('\\', "\\\\").replace('\'', "\\'");
        sh(Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", server.socket.display()))
            .arg("--user=root")
            .arg("-e")
            .arg(format!(
                "ALTER USER root@localhost IDENTIFIED BY '{escaped}'"
            )));
        server
    }

    /// Starts mariadbd on an existing data directory inside `dir`.
    fn start_on(dir: tempfile::TempDir, datadir: PathBuf, name: Option<&str>) -> Server {
        let name = name.unwrap_or("server");
        let socket = dir.path().join(format!("{name}.sock"));
        let mut c = Command::new(mariadbd());
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                dir.path().join(format!("{name}.pid")).display()
            ))
            .arg(format!(
                "--log-error={}",
                dir.path().join(format!("{name}.err")).display()
            ))
            .arg("--skip-networking")
            .arg(format!("--log-bin={}", datadir.join("binlog").display()))
            .arg("--server-id=1")
            .args(SERVER_OPTIONS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            c.arg("--user=mysql");
        }
        let child = c.spawn().expect("start mariadbd");
        let client_cnf = dir.path().join("client.cnf");
        let escaped = DB_PASSWORD.replace('\\', "\\\\").replace('"', "\\\"");
        std::fs::write(
            &client_cnf,
            format!(
                "[client]\nuser=root\npassword=\"{escaped}\"\nsocket={}\n",
                socket.display()
            ),
        )
        .unwrap();
        let mut server = Server {
            child: Some(child),
            dir,
            socket,
            client_cnf,
        };
        server.wait_ready(name);
        server
    }

    fn wait_ready(&mut self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ping = Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket.display()))
                .arg("--user=nobody-pings")
                .arg("ping")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            // `ping` succeeds even when access is denied: the server answered.
            if ping.is_ok_and(|s| s.success()) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.err")))
                    .unwrap_or_default();
                panic!("mariadbd exited ({status}) before it was ready:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd on {} not ready after 60 s",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs SQL as root; returns stdout (tab-separated rows, no column names).
    #[track_caller]
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .arg(format!("--defaults-file={}", self.client_cnf.display()))
            .args(["--batch", "--skip-column-names", "-e", sql])
            .output()
            .expect("run mariadb");
        assert!(
            out.status.success(),
            "SQL failed: {sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `arca mysql ...` connection flags for this server.
    fn flags(&self) -> Vec<String> {
        vec![
            "--socket".into(),
            self.socket.display().to_string(),
            "--user".into(),
            "root".into(),
        ]
    }

    /// Kills the server and waits for it.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `arca` with the sandbox repository and the server password in ARCA_MYSQL_PASSWORD.
fn arca(env: &Env, args: &[String]) -> Out {
    let mut c = env.cmd();
    c.env("ARCA_MYSQL_PASSWORD", DB_PASSWORD).args(args);
    run_cmd(c, None)
}

fn args(list: &[&str], extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.extend(extra.iter().cloned());
    v
}

/// A database with a few thousand rows in three tables, a trigger, a function, a
/// procedure and an event.
fn seed_shop(server: &Server, db: &str, rows: u32) {
    server.sql(&format!(
        "CREATE DATABASE {db}; USE {db};
         CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64), balance DECIMAL(12,2),
                                 note TEXT) ENGINE=InnoDB;
         INSERT INTO customers SELECT seq, CONCAT('customer ', seq, ' \\'q\\' \\\\ é'),
                seq * 1.25, REPEAT(CHAR(65 + seq % 26), seq % 300) FROM seq_1_to_{rows};
         CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT, amount INT,
                              created DATETIME, digest VARBINARY(32)) ENGINE=InnoDB;
         CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT,
                             at DATETIME) ENGINE=InnoDB;
         CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
                INSERT INTO audit (order_id, at) VALUES (NEW.id, NEW.created);
         INSERT INTO orders (customer_id, amount, created, digest)
                SELECT seq % {rows} + 1, seq * 7 % 1000, '2024-01-01' + INTERVAL seq MINUTE,
                       UNHEX(SHA2(seq, 256)) FROM seq_1_to_{orders};
         CREATE FUNCTION order_total(c INT) RETURNS INT DETERMINISTIC READS SQL DATA
                RETURN (SELECT COALESCE(SUM(amount), 0) FROM orders WHERE customer_id = c);
         CREATE PROCEDURE add_order(c INT, a INT)
                INSERT INTO orders (customer_id, amount, created) VALUES (c, a, NOW());
         CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00'
                DO DELETE FROM audit WHERE at < '2000-01-01';",
        orders = rows + rows / 2
    ));
}

/// Row counts, table checksums and the stored function's answers of a seeded database.
fn fingerprint(server: &Server, db: &str) -> String {
    server.sql(&format!(
        "USE {db};
         SELECT COUNT(*) FROM customers; SELECT COUNT(*) FROM orders; SELECT COUNT(*) FROM audit;
         CHECKSUM TABLE customers, orders, audit EXTENDED;
         SELECT order_total(17), order_total(123);
         SELECT MD5(GROUP_CONCAT(id, name, balance, note ORDER BY id SEPARATOR '|'))
                FROM customers;
         SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}';
         SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{db}';
         SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{db}';"
    ))
}

/// The trigger and procedure work after a restore.
fn assert_routines_work(server: &Server, db: &str) {
    let before: u64 = server
        .sql(&format!("SELECT COUNT(*) FROM {db}.audit"))
        .parse()
        .unwrap();
    server.sql(&format!("CALL {db}.add_order(5, 42)"));
    let after: u64 = server
        .sql(&format!("SELECT COUNT(*) FROM {db}.audit"))
        .parse()
        .unwrap();
    assert_eq!(after, before + 1, "the restored trigger did not fire");
}

/// (binlog file, position, gtid) as the server reports them now.
fn master_status(server: &Server) -> (String, u64, String) {
    let status = server.sql("SHOW MASTER STATUS");
    let cols: Vec<&str> = status.split('\t').collect();
    let gtid = server.sql("SELECT @@gtid_binlog_pos");
    (cols[0].to_string(), cols[1].parse().unwrap(), gtid)
}

fn meta<'a>(snapshot: &'a serde_json::Value, key: &str) -> &'a str {
    snapshot["meta"][key]
        .as_str()
        .unwrap_or_else(|| panic!("meta {key:?} missing in {snapshot}"))
}

#[test]
fn dump_drop_restore_round_trip() {
    if !need_mariadb("dump_drop_restore_round_trip") {
        return;
    }
    let server = Server::start();
    let env = Env::init();
    seed_shop(&server, "shop", 3000);
    let before = fingerprint(&server, "shop");
    let (file, position, gtid) = master_status(&server);
    assert!(position > 0 && !gtid.is_empty());

    let out = arca(
        &env,
        &args(
            &[
                "mysql",
                "dump",
                "--json",
                "--databases",
                "shop",
                "--tag",
                "nightly",
            ],
            &server.flags(),
        ),
    )
    .ok();
    let summary = out.summary();
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    let snap = &snaps[0];
    assert_eq!(s(snap, "source"), "mysql-dump");
    assert_eq!(snap["paths"][0], "/shop.sql");
    assert_eq!(snap["tags"][0], "nightly");
    assert_eq!(summary["snapshot_id"], snap["id"]);
    assert!(meta(snap, "server_version").contains("MariaDB"), "{snap}");
    assert_eq!(meta(snap, "server_flavor"), "mariadb");
    assert_eq!(meta(snap, "databases"), "shop");
    assert_eq!(meta(snap, "binlog"), "on");
    // Nothing was written between SHOW MASTER STATUS and the dump: same coordinates.
    assert_eq!(meta(snap, "binlog_file"), file);
    assert_eq!(meta(snap, "binlog_position"), position.to_string());
    assert_eq!(meta(snap, "gtid"), gtid);

    // The stored dump is the tool's SQL.
    let sql = env.run(&["dump", "latest", "/shop.sql"]).ok().stdout_str();
    assert!(sql.contains("CREATE TABLE `customers`"));
    assert!(sql.contains("CHANGE MASTER TO MASTER_LOG_FILE"));

    server.sql("DROP DATABASE shop");
    arca(
        &env,
        &args(&["mysql", "restore", "latest"], &server.flags()),
    )
    .ok();
    assert_eq!(fingerprint(&server, "shop"), before);
    assert_routines_work(&server, "shop");

    // A restore of a snapshot that is not a dump is refused.
    let files = env.path("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a"), b"x").unwrap();
    let id = env.backup(&[&files], &[])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    arca(&env, &args(&["mysql", "restore", &id], &server.flags()))
        .fails()
        .says("not a \"mysql-dump\"");
}

#[test]
fn all_databases_round_trip() {
    if !need_mariadb("all_databases_round_trip") {
        return;
    }
    let server = Server::start();
    let env = Env::init();
    seed_shop(&server, "shop", 2000);
    seed_shop(&server, "crm", 1000);
    let (shop, crm) = (fingerprint(&server, "shop"), fingerprint(&server, "crm"));
    arca(
        &env,
        &args(&["mysql", "dump", "--all-databases"], &server.flags()),
    )
    .ok()
    .says("snapshot")
    .says("binlog position");
    let snaps = env.snapshots();
    let snap = &snaps[0];
    assert_eq!(snap["paths"][0], "/all-databases.sql");
    assert_eq!(meta(snap, "all_databases"), "true");
    let dbs: Vec<&str> = meta(snap, "databases").split(',').collect();
    assert!(
        dbs.contains(&"shop") && dbs.contains(&"crm") && dbs.contains(&"mysql"),
        "{dbs:?}"
    );

    server.sql("DROP DATABASE shop; DROP DATABASE crm");
    // Connection from the user's option file (socket and user, no password): arca's
    // temporary option file includes it and adds the password from ARCA_MYSQL_PASSWORD.
    let cnf = env.path("my.cnf");
    std::fs::write(
        &cnf,
        format!("[client]\nuser=root\nsocket={}\n", server.socket.display()),
    )
    .unwrap();
    arca(
        &env,
        &[
            "mysql".into(),
            "restore".into(),
            "latest".into(),
            "--defaults-file".into(),
            cnf.display().to_string(),
        ],
    )
    .ok();
    assert_eq!(fingerprint(&server, "shop"), shop);
    assert_eq!(fingerprint(&server, "crm"), crm);
    assert_routines_work(&server, "crm");
}

#[test]
fn physical_backup_and_restore_physical() {
    if !need_mariadb("physical_backup_and_restore_physical") {
        return;
    }
    if !have_tool("mariadb-backup") || !have_tool("mbstream") {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("mariadb-backup is not installed");
        }
        eprintln!("skipping: mariadb-backup is not installed");
        return;
    }
    let server = Server::start();
    let env = Env::init();
    seed_shop(&server, "shop", 3000);
    let before = fingerprint(&server, "shop");
    let (file, position, gtid) = master_status(&server);

    let out = arca(&env, &args(&["mysql", "backup", "--json"], &server.flags())).ok();
    let summary = out.summary();
    assert_eq!(summary["source"], "mysql-backup");
    // Written after the backup: must not be in the restore.
    server.sql("INSERT INTO shop.customers VALUES (999999, 'late', 0, '')");

    let snaps = env.snapshots();
    let snap = &snaps[0];
    assert_eq!(s(snap, "source"), "mysql-backup");
    assert_eq!(snap["paths"][0], "/mariadb-backup.xbstream");
    assert_eq!(meta(snap, "backup_tool"), "mariadb-backup");
    assert_eq!(meta(snap, "binlog_file"), file);
    assert_eq!(meta(snap, "binlog_position"), position.to_string());
    assert_eq!(meta(snap, "gtid"), gtid);

    // A non-empty target is refused and left alone.
    let busy = server.path("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep"), b"mine").unwrap();
    env.run(&[
        "mysql",
        "restore-physical",
        "latest",
        "--datadir",
        busy.to_str().unwrap(),
    ])
    .fails()
    .says("not empty");
    assert_eq!(std::fs::read(busy.join("keep")).unwrap(), b"mine");

    let restored = server.path("restored");
    let mut restore = vec![
        "mysql".to_string(),
        "restore-physical".into(),
        "latest".into(),
        "--datadir".into(),
        restored.display().to_string(),
    ];
    if is_root() {
        restore.extend(["--owner".into(), "mysql".into()]);
    }
    let out = arca(&env, &restore).ok();
    assert!(out.stdout_str().contains(&format!("{file}:{position}")));
    assert!(restored.join("xtrabackup_binlog_info").exists());

    // A second server on the restored directory has exactly the backed-up data.
    let dir2 = tempfile::Builder::new()
        .prefix("arca-mysql-restored-")
        .tempdir()
        .unwrap();
    chown_r(dir2.path());
    let second = Server::start_on(dir2, restored, Some("restored"));
    assert_eq!(fingerprint(&second, "shop"), before);
    assert_eq!(
        second.sql("SELECT COUNT(*) FROM shop.customers WHERE id = 999999"),
        "0"
    );
    assert_routines_work(&second, "shop");
}

/// Wrapper scripts in front of the real tools record their command line, environment and
/// the mode of the option file named first.
fn spy_tools(dir: &Path, tools: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for tool in tools {
        let real = String::from_utf8(
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let script = format!(
            "#!/bin/sh\n\
             log='{log}'\n\
             {{\n\
               printf 'CMDLINE: '; tr '\\0' ' ' < /proc/$$/cmdline; echo\n\
               f=$(printf '%s' \"$1\" | sed -n 's/^--defaults-extra-file=//p')\n\
               if [ -n \"$f\" ]; then echo \"OPTFILE: $f\"; echo \"MODE: $(stat -c %a \"$f\")\"; fi\n\
               echo \"MYSQL_PWD: ${{MYSQL_PWD:-unset}}\"\n\
               echo \"ARCA_MYSQL_PASSWORD: ${{ARCA_MYSQL_PASSWORD:-unset}}\"\n\
             }} >> \"$log\"\n\
             exec {real} \"$@\"\n",
            log = dir.join("spy.log").display(),
            real = real.trim()
        );
        let p = dir.join(tool);
        std::fs::write(&p, script).unwrap();
        sh(Command::new("chmod").arg("755").arg(&p));
    }
}

#[test]
fn password_never_on_a_command_line_or_in_the_environment() {
    if !need_mariadb("password_never_on_a_command_line_or_in_the_environment") {
        return;
    }
    let server = Server::start();
    let env = Env::init();
    seed_shop(&server, "shop", 200);
    let spy = env.path("spy");
    let physical = have_tool("mariadb-backup");
    let mut spied = vec!["mariadb", "mariadb-dump"];
    if physical {
        spied.push("mariadb-backup");
    }
    spy_tools(&spy, &spied);
    let path = format!(
        "{}:{}",
        spy.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let password_file = env.path("db-password");
    std::fs::write(&password_file, format!("{DB_PASSWORD}\n")).unwrap();

    // Password from MYSQL_PWD, then from --mysql-password-file.
    let mut c = env.cmd();
    c.env("PATH", &path)
        .env("MYSQL_PWD", DB_PASSWORD)
        .args(args(
            &["mysql", "dump", "--databases", "shop"],
            &server.flags(),
        ));
    run_cmd(c, None).ok();
    let mut c = env.cmd();
    c.env("PATH", &path)
        .env_remove("MYSQL_PWD")
        .arg("mysql")
        .arg("restore")
        .arg("latest")
        .arg("--mysql-password-file")
        .arg(&password_file)
        .args(server.flags());
    run_cmd(c, None).ok();
    // And from ARCA_MYSQL_PASSWORD for a physical backup.
    if physical {
        let mut c = env.cmd();
        c.env("PATH", &path)
            .env("ARCA_MYSQL_PASSWORD", DB_PASSWORD)
            .args(args(&["mysql", "backup"], &server.flags()));
        run_cmd(c, None).ok();
    }

    let log = std::fs::read_to_string(spy.join("spy.log")).unwrap();
    // `--no-defaults --help` asks the dump tool which binlog option it knows.
    let cmdlines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("CMDLINE:") && !l.contains(" --help"))
        .collect();
    assert!(cmdlines.len() >= 4, "the tools ran: {log}");
    assert!(cmdlines.iter().any(|l| l.contains("mariadb-dump")), "{log}");
    if physical {
        assert!(
            cmdlines.iter().any(|l| l.contains("mariadb-backup")),
            "{log}"
        );
    }
    assert!(!log.contains("s3cr"), "the password leaked:\n{log}");
    for l in &cmdlines {
        let first = l.split(' ').nth(3).unwrap_or_default();
        assert!(
            first.starts_with("--defaults-extra-file="),
            "option file not first: {l}"
        );
    }
    assert!(
        log.lines()
            .filter(|l| l.starts_with("MODE:"))
            .all(|l| l == "MODE: 600")
    );
    assert!(
        log.lines()
            .filter(|l| l.starts_with("MYSQL_PWD:"))
            .all(|l| l == "MYSQL_PWD: unset")
    );
    for f in log.lines().filter_map(|l| l.strip_prefix("OPTFILE: ")) {
        assert!(!Path::new(f).exists(), "{f} outlived the run");
    }
    assert_eq!(env.snapshots().len(), if physical { 2 } else { 1 });
}

#[test]
fn errors_are_clear_and_leave_no_snapshot() {
    if !need_mariadb("errors_are_clear_and_leave_no_snapshot") {
        return;
    }
    let mut server = Server::start();
    let env = Env::init();
    seed_shop(&server, "shop", 100);

    // Wrong password.
    let mut c = env.cmd();
    c.env("ARCA_MYSQL_PASSWORD", "not the password").args(args(
        &["mysql", "dump", "--databases", "shop"],
        &server.flags(),
    ));
    run_cmd(c, None)
        .fails()
        .says("cannot connect")
        .says("access denied");

    // The dump tool itself fails (unknown database): its error, no snapshot.
    arca(
        &env,
        &args(
            &["mysql", "dump", "--databases", "nosuchdb"],
            &server.flags(),
        ),
    )
    .fails()
    .says("mariadb-dump failed")
    .says("nosuchdb")
    .says("no snapshot was written");

    // Nothing selected.
    arca(&env, &args(&["mysql", "dump"], &server.flags()))
        .fails()
        .says("--all-databases");

    // Tools missing from PATH: only the client is there, no dump or backup tool.
    let only_client = env.path("only-client");
    std::fs::create_dir_all(&only_client).unwrap();
    let client = String::from_utf8(
        Command::new("sh")
            .arg("-c")
            .arg("command -v mariadb")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(client.trim(), only_client.join("mariadb")).unwrap();
    for sub in ["dump", "backup"] {
        let mut c = env.cmd();
        c.env("PATH", &only_client)
            .env("ARCA_MYSQL_PASSWORD", DB_PASSWORD)
            .args(args(&["mysql", sub], &server.flags()));
        if sub == "dump" {
            c.args(["--databases", "shop"]);
        }
        let out = run_cmd(c, None).fails().says("not found in PATH");
        let wanted = if sub == "dump" {
            "mariadb-dump"
        } else {
            "mariadb-backup"
        };
        out.says(wanted);
    }

    // Server down.
    server.stop();
    arca(
        &env,
        &args(&["mysql", "dump", "--databases", "shop"], &server.flags()),
    )
    .fails()
    .says("cannot connect")
    .says(&server.socket.display().to_string());
    arca(&env, &args(&["mysql", "backup"], &server.flags()))
        .fails()
        .says("cannot connect");

    assert!(env.snapshots().is_empty(), "a failed run left a snapshot");
}
