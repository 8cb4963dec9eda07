//! Regression tests of issue 15, item 5: nothing hangs without end. A password command, a
//! hook and a webhook that never answer are given up after their timeout, with a message
//! that names what timed out and after how long, a documented exit code and no process
//! left behind; a second daemon on a state database that a live daemon holds refuses to
//! start and names that daemon's pid.

use crate::common;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::daemon::{DaemonProcess, arca_with_config, job_history, run_with_config};
use crate::common::{Env, run_cmd};

/// Whether a process whose command line is `sleep SECONDS` exists (the marker argument
/// of each test is unique, so other processes do not match).
fn sleep_running(seconds: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| c == format!("sleep\0{seconds}\0").as_bytes())
    })
}

/// Waits up to two seconds for `sleep SECONDS` to be gone (the kernel reaps killed
/// processes asynchronously).
#[track_caller]
fn assert_no_sleep_left(seconds: &str) {
    let start = Instant::now();
    while sleep_running(seconds) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "`sleep {seconds}` outlived the timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_password_command_that_never_returns_times_out() {
    let env = Env::init();
    let mut c = env.cmd();
    c.args(["snapshots"])
        .env("ARCA_PASSWORD_COMMAND", "sleep 987651")
        .env("ARCA_PASSWORD_COMMAND_TIMEOUT", "1s");
    let start = Instant::now();
    let out = run_cmd(c, None).code(124);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.stderr
            .contains("password command \"sleep 987651\" timed out after 1s and was killed"),
        "{}",
        out.stderr
    );
    assert_no_sleep_left("987651");

    // The flag too, and a command that answers in time still works.
    let mut c = env.cmd();
    c.args(["snapshots", "--password-command-timeout", "5s"])
        .env(
            "ARCA_PASSWORD_COMMAND",
            format!("sleep 0.2; echo '{}'", common::PASSWORD),
        )
        .env_remove("ARCA_PASSWORD");
    run_cmd(c, None).ok();
}

fn write_config(env: &Env, extra: &str) -> std::path::PathBuf {
    let repo = env.path("repo");
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("create src");
    std::fs::write(src.join("f"), b"data").expect("write src");
    let config = env.path("arca.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
state = "state/history.db"

[repositories.local]
location = "{repo}"
password_env = "ARCA_TEST_DAEMON_PW"

[jobs.docs]
sources = ["{src}"]
repositories = ["local"]
schedule = "every 1h"
{extra}
"#,
            repo = repo.display(),
            src = src.display(),
        ),
    )
    .expect("write config");
    config
}

#[test]
fn a_hook_that_hangs_times_out() {
    let env = Env::init();
    let config = write_config(
        &env,
        r#"hooks = { pre = ["sleep 987652"], timeout = "1s" }"#,
    );
    let start = Instant::now();
    let out = run_with_config(&config, &["job", "run", "docs"]).fails();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_no_sleep_left("987652");
    let runs = job_history(&config, "docs");
    let log = runs
        .first()
        .map(|r| format!("{} {}", r["error"], r["log"]))
        .unwrap_or_default();
    let all = format!("{}\n{}\n{log}", out.stdout_str(), out.stderr);
    assert!(
        all.contains("pre hook \"sleep 987652\" timed out after 1s and was killed"),
        "{all}"
    );
}

/// A TCP listener that accepts connections and never answers; its port.
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

#[test]
fn a_database_server_that_never_answers_times_out() {
    if !common::tool_or_skip("pg_dump", "a_database_server_that_never_answers_times_out") {
        return;
    }
    let env = Env::init();
    let dbname = format!("host=127.0.0.1 port={} dbname=x user=x", silent_server());
    // arca's default is 30 s (PGCONNECT_TIMEOUT); a value in the environment wins.
    let mut c = env.cmd();
    c.args(["pg", "dump", "-d", &dbname])
        .env("PGCONNECT_TIMEOUT", "2");
    let start = Instant::now();
    let out = run_cmd(c, None).fails();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.stderr.to_lowercase().contains("timeout"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_webhook_that_never_answers_times_out() {
    let url = format!("http://127.0.0.1:{}/hook", silent_server());
    let mut c = common::bare_cmd();
    c.args(["alert", "test", "--webhook", &url, "--timeout", "1s"]);
    let start = Instant::now();
    let out = run_cmd(c, None).fails();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.stderr.contains("timed out: no answer within 1s"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_second_daemon_on_the_same_state_refuses_and_names_the_pid() {
    let env = Env::init();
    let config = write_config(&env, "");
    let first = DaemonProcess::start(&env, &config, &[]);
    first.wait_log("daemon started", Duration::from_secs(20));

    let mut second = arca_with_config(&config);
    second.arg("daemon");
    let start = Instant::now();
    let out = run_cmd(second, None).code(11);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.stderr.contains(&format!(
            "another arca daemon (pid {}) is running",
            first.pid()
        )),
        "{}",
        out.stderr
    );
    let lock = Path::new(&env.path("state")).join("history.db.daemon.lock");
    let held = std::fs::read_to_string(&lock).expect("the lock file");
    assert_eq!(held.trim(), first.pid().to_string());
    assert_eq!(first.stop(Duration::from_secs(20)), 0);

    // The file the stopped daemon left is taken over by the next one.
    let next = DaemonProcess::start(&env, &config, &[]);
    next.wait_log("daemon started", Duration::from_secs(20));
    let held = std::fs::read_to_string(&lock).expect("the lock file");
    assert_eq!(held.trim(), next.pid().to_string());
}
