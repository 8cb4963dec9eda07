//! Regression tests of issue 15, item 5, for database tools: a database server that
//! accepts a connection and never answers is given up after `--db-connect-timeout`
//! (`ARCA_DB_CONNECT_TIMEOUT`, 30 s by default), with the real MariaDB and PostgreSQL
//! client tools, exit code 1 (as every other failed database connection) and a message
//! that names the tool, the server and the limit. Without the tools the tests skip with a
//! note, or fail under CI=true.

use crate::common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::{Env, run_cmd};

/// A TCP server that accepts connections and never sends a byte.
fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for conn in listener.incoming().flatten() {
            kept.push(conn);
        }
    });
    port
}

/// Well under the 30 s default, well over the 2 s limit the tests give.
const BOUND: Duration = Duration::from_secs(12);

#[test]
fn mysql_backup_against_a_silent_server_times_out() {
    let test = "mysql_backup_against_a_silent_server_times_out";
    if !common::tool_or_skip("mariadb", test) || !common::tool_or_skip("mariadb-dump", test) {
        return;
    }
    let env = Env::init();
    let port = silent_server().to_string();
    for sub in [
        &["dump", "--all-databases"][..],
        &["backup"][..],
        &["restore", "latest"][..],
    ] {
        let mut c = env.cmd();
        c.arg("mysql")
            .args(sub)
            .args(["--host", "127.0.0.1", "--port", &port, "--user", "x"])
            .args(["--db-connect-timeout", "2s"]);
        let start = Instant::now();
        let out = run_cmd(c, None);
        let took = start.elapsed();
        if sub[0] == "restore" {
            // No dump in the repository: the restore fails before it connects.
            out.fails();
            continue;
        }
        let out = out.code(1);
        assert!(took < BOUND, "mysql {sub:?} took {took:?}");
        for part in [
            "mariadb: no answer within 2s",
            "ARCA_DB_CONNECT_TIMEOUT",
            "host 127.0.0.1",
            &format!("port {port}"),
        ] {
            assert!(
                out.stderr.contains(part),
                "{part:?} missing: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn pg_backup_against_a_silent_server_times_out() {
    let test = "pg_backup_against_a_silent_server_times_out";
    if !common::tool_or_skip("psql", test) || !common::tool_or_skip("pg_dump", test) {
        return;
    }
    let env = Env::init();
    let port = silent_server();
    let dbname = format!("host=127.0.0.1 port={port} dbname=x user=x");
    for sub in [&["dump"][..], &["basebackup", "--method", "stream"][..]] {
        let mut c = env.cmd();
        c.arg("pg")
            .args(sub)
            .args(["-d", &dbname, "--db-connect-timeout", "2s"])
            .env_remove("PGCONNECT_TIMEOUT");
        let start = Instant::now();
        let out = run_cmd(c, None).code(1);
        let took = start.elapsed();
        assert!(took < BOUND, "pg {sub:?} took {took:?}");
        for part in [
            "psql: no answer within 2s",
            "ARCA_DB_CONNECT_TIMEOUT",
            &format!("port={port}"),
            "timeout expired",
        ] {
            assert!(
                out.stderr.contains(part),
                "{part:?} missing: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn pg_connect_timeout_of_the_user_wins() {
    if !common::tool_or_skip("psql", "pg_connect_timeout_of_the_user_wins") {
        return;
    }
    let env = Env::init();
    let dbname = format!("host=127.0.0.1 port={} dbname=x user=x", silent_server());
    let mut c = env.cmd();
    c.args(["pg", "dump", "-d", &dbname, "--db-connect-timeout", "1m"])
        .env("PGCONNECT_TIMEOUT", "1");
    let start = Instant::now();
    let out = run_cmd(c, None).code(1);
    assert!(start.elapsed() < BOUND, "{:?}", start.elapsed());
    assert!(
        out.stderr
            .contains("no answer within 1s (PGCONNECT_TIMEOUT)"),
        "{}",
        out.stderr
    );
}
