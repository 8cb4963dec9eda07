//! The daemon end to end through the `arca` binary: a real `arca daemon` process runs jobs
//! every two seconds against a local repository and a secondary S3 (moto) repository,
//! copies, applies retention, prunes, records history, serves /api/status, reloads on
//! SIGHUP (refusing a bad file), and stops cleanly on SIGTERM, also in the middle of a
//! backup (the repository stays valid and the next run reuses what was stored).
//! `arca job run`, `arca status --json`, `arca history --json`, and `arca config check`
//! rejecting every kind of bad configuration with file, line and reason.

use crate::common;

use std::io::{Read, Write};
use std::path::Path;

use std::time::Duration;

use crate::common::daemon::{
    DaemonProcess, arca_with_config, job_history, run_with_config, wait_for,
};
use crate::common::{Env, PASSWORD, bare_cmd, run_cmd, small_tree, write_random};

fn s3_base() -> Option<String> {
    match std::env::var("ARCA_TEST_S3") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "ARCA_TEST_S3 is not set: the S3 server is missing (scripts/test starts it)"
            );
            eprintln!(
                "skipping the S3 part: ARCA_TEST_S3 not set (run scripts/services/s3.sh start)"
            );
            None
        }
    }
}

fn backups_with(config: &Path, job: &str, status: &str) -> Vec<serde_json::Value> {
    job_history(config, job)
        .into_iter()
        .filter(|r| r["kind"] == "backup" && r["status"] == status)
        .collect()
}

/// `arca -r LOCATION ARGS` with the test password.
fn repo_cmd(location: &str, args: &[&str]) -> common::Out {
    let mut c = bare_cmd();
    c.arg("-r")
        .arg(location)
        .args(args)
        .env("ARCA_PASSWORD", PASSWORD)
        .env("ARCA_FROM_PASSWORD", PASSWORD)
        .env("ARCA_INSECURE_TEST_KDF", "1");
    run_cmd(c, None)
}

/// GET `path` with `Authorization: Bearer TOKEN` (the dashboard always needs its token).
fn http_get(addr: &str, path: &str, token: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

#[test]
fn daemon_runs_jobs_copies_to_s3_applies_retention_and_reloads() {
    let env = Env::new();
    let src = env.path("src");
    small_tree(&src, 20, 7);
    let local = env.path("local");
    let local_s = local.to_str().unwrap();
    repo_cmd(local_s, &["init"]).ok();
    std::fs::write(env.path("pw"), format!("{PASSWORD}\n")).unwrap();

    // The secondary: S3 when the server runs, else a second local directory.
    let s3 = s3_base();
    let unique = format!(
        "{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    let (second, media, offsite) = match &s3 {
        Some(base) => (format!("{base}/daemon-{unique}"), "s3", true),
        None => (env.path("second").display().to_string(), "usb", true),
    };
    repo_cmd(
        &second,
        &["init", "--copy-chunker-params", "--from-repo", local_s],
    )
    .ok();

    let config = env.path("arca.toml");
    let write_config = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                r#"[daemon]
listen = "127.0.0.1:0"
state = "state/history.db"

[repositories.local]
location = "{local}"
password_file = "pw"
media = "disk"

[repositories.second]
location = "{second}"
password_env = "ARCA_TEST_DAEMON_PW"
media = "{media}"
offsite = {offsite}

[jobs.docs]
sources = ["{src}"]
repositories = ["local", "second"]
schedule = "every 2s"
rpo = "1m"
retention = {{ keep_last = 2 }}
prune = {{ schedule = "every 4s", max_unused = "0%" }}
hooks = {{ pre = ["echo pre-hook-output $ARCA_JOB"], post = ["echo post-hook-output $ARCA_SNAPSHOT"], timeout = "10s" }}
limits = {{ nice = 5, ionice = "idle", threads = 2 }}

[jobs.dump]
command = "echo partial; echo dump: out of tape >&2; exit 3"
repositories = ["local"]
schedule = "every 2s"
hooks = {{ failure = ["echo failure-hook-output: $ARCA_ERROR"] }}
{extra}"#,
                local = local.display(),
                src = src.display(),
            ),
        )
        .unwrap()
    };
    write_config("");
    run_with_config(&config, &["config", "check"])
        .ok()
        .says("ok (2 repositories, 2 jobs)");

    let daemon = DaemonProcess::start(&env, &config, &[]);
    let addr = daemon.addr();
    // Runs happen: at least four good runs of docs (the data changes between them).
    let mut changed = 0;
    wait_for("four good runs of docs", Duration::from_secs(120), || {
        let good = backups_with(&config, "docs", "success").len();
        if good > changed {
            changed = good;
            std::fs::write(src.join(format!("new-{good}.txt")), format!("run {good}\n")).unwrap();
        }
        good >= 4
    });
    wait_for("two failed runs of dump", Duration::from_secs(30), || {
        backups_with(&config, "dump", "failed").len() >= 2
    });

    // /api/status answers while the daemon runs, with the token the daemon made (no
    // token_file or token_env in this configuration).
    let token = std::fs::read_to_string(env.path("state/dashboard.token")).unwrap();
    let token = token.trim();
    assert_eq!(http_get(&addr, "/api/status", "wrong").0, 401);
    let (code, body) = http_get(&addr, "/api/status", token);
    assert_eq!(code, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api["jobs"].as_array().unwrap().len(), 2, "{api}");
    assert_eq!(http_get(&addr, "/nothing", token).0, 404);

    // SIGHUP with a bad file: refused, the old configuration stays.
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + "\n[jobs.docs2]\nsources = [\"/x\"]\nrepositories = [\"nowhere\"]\nschedule = \"every 2s\"\n").unwrap();
    daemon.signal("HUP");
    daemon.wait_log("reload refused", Duration::from_secs(10));
    assert!(
        daemon
            .log()
            .contains("repository \"nowhere\", which is not defined"),
        "{}",
        daemon.log()
    );
    // A good file is taken.
    write_config(
        "\n[jobs.more]\nsources = [\"/nonexistent-but-checked-at-run-time\"]\nrepositories = [\"local\"]\nschedule = \"0 0 1 1 *\"\n",
    );
    daemon.signal("HUP");
    daemon.wait_log("configuration reloaded: 3 jobs", Duration::from_secs(10));

    let code = daemon.stop(Duration::from_secs(60));
    assert_eq!(code, 0, "exit code of the daemon after SIGTERM");

    // History: every docs run recorded with its numbers and the hooks' output.
    let runs = job_history(&config, "docs");
    let good: Vec<_> = runs
        .iter()
        .filter(|r| r["kind"] == "backup" && r["status"] == "success")
        .collect();
    assert!(good.len() >= 4);
    for r in &good {
        assert_eq!(r["job"], "docs");
        assert_eq!(r["trigger"], "schedule");
        assert_eq!(r["type"], "incremental");
        assert!(
            r["snapshot_id"].as_str().is_some_and(|s| s.len() == 64),
            "{r}"
        );
        assert!(r["files"].as_u64().unwrap() >= 20, "{r}");
        assert!(r["start"].is_string() && r["end"].is_string(), "{r}");
        let log = r["log"].as_str().unwrap();
        assert!(log.contains("pre-hook-output docs"), "{log}");
        assert!(log.contains("post-hook-output"), "{log}");
        assert!(log.contains("copy to second"), "{log}");
        assert!(
            log.contains("3-2-1: 3 copies, 2 media, 1 offsite (met)"),
            "{log}"
        );
    }
    assert!(
        good.iter().any(|r| r["bytes_read"].as_u64().unwrap() > 0),
        "the first run read the files"
    );
    assert!(
        runs.iter()
            .any(|r| r["kind"] == "prune" && r["status"] == "success"),
        "prune ran on its own schedule"
    );
    // One run at a time: no two docs backups overlap.
    let mut spans: Vec<(String, String)> = runs
        .iter()
        .filter(|r| r["kind"] == "backup")
        .map(|r| {
            (
                r["start"].as_str().unwrap().to_string(),
                r["end"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        let a_end: jiff::Timestamp = w[0].1.parse().unwrap();
        let b_start: jiff::Timestamp = w[1].0.parse().unwrap();
        assert!(a_end <= b_start, "overlapping runs {w:?}");
    }
    // The failing job: status failed, error kept, failure hook output in its log.
    let failed = &backups_with(&config, "dump", "failed")[0];
    assert!(
        failed["error"].as_str().unwrap().contains("failed"),
        "{failed}"
    );
    // The command's error output: its end in the error, its lines in the run's log.
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("dump: out of tape"),
        "{failed}"
    );
    assert!(
        failed["log"]
            .as_str()
            .unwrap()
            .contains("command stderr:\ndump: out of tape"),
        "{failed}"
    );
    assert!(
        failed["log"]
            .as_str()
            .unwrap()
            .contains("failure-hook-output: command"),
        "{failed}"
    );

    // Retention: keep_last = 2 in both repositories; copies landed on the secondary.
    let local_snaps = repo_cmd(local_s, &["snapshots", "--json", "--tag", "job:docs"])
        .ok()
        .json();
    assert_eq!(local_snaps.as_array().unwrap().len(), 2, "{local_snaps}");
    let second_snaps = repo_cmd(&second, &["snapshots", "--json", "--tag", "job:docs"])
        .ok()
        .json();
    assert_eq!(second_snaps.as_array().unwrap().len(), 2, "{second_snaps}");
    repo_cmd(local_s, &["check", "--read-data"])
        .ok()
        .says("no errors");
    repo_cmd(&second, &["check", "--read-data"])
        .ok()
        .says("no errors");

    // Status: last good snapshot within the RPO, 3-2-1 met, the failing job's error.
    let st = run_with_config(&config, &["status", "--json"]).ok().json();
    let jobs = st["jobs"].as_array().unwrap();
    let docs = jobs.iter().find(|j| j["job"] == "docs").unwrap();
    assert_eq!(docs["rpo_ok"], true, "{docs}");
    // The last good snapshot is the newest one written; its run may have been cut short
    // by the SIGTERM (then its copy is missing and 3-2-1 shows it).
    let newest = runs
        .iter()
        .find(|r| r["kind"] == "backup" && r["snapshot_id"].is_string())
        .unwrap();
    assert_eq!(
        docs["last_good"]["snapshot_id"], newest["snapshot_id"],
        "{docs}"
    );
    if newest["status"] == "success" {
        assert_eq!(docs["three_two_one"]["ok"], true, "{docs}");
        assert_eq!(docs["three_two_one"]["copies"], 3, "{docs}");
        assert_eq!(docs["three_two_one"]["media"], 2, "{docs}");
        assert_eq!(docs["three_two_one"]["offsite"], 1, "{docs}");
    } else {
        assert_eq!(newest["status"], "interrupted", "{newest}");
        assert_eq!(
            docs["three_two_one"], newest["copies"]["three_two_one"],
            "{docs}"
        );
        assert!(docs["last_error"].is_string(), "{docs}");
    }
    for r in &good {
        let t = &r["copies"]["three_two_one"];
        assert_eq!(
            (
                t["copies"].as_u64(),
                t["media"].as_u64(),
                t["offsite"].as_u64(),
                t["ok"].as_bool()
            ),
            (Some(3), Some(2), Some(1), Some(true)),
            "{r}"
        );
    }
    assert!(docs["next_run"].is_string(), "{docs}");
    assert_eq!(docs["window"]["state"], "always");
    let dump = jobs.iter().find(|j| j["job"] == "dump").unwrap();
    // Its last run failed, or was stopped by the SIGTERM: either way an error is shown.
    assert!(dump["last_error"].as_str().is_some(), "{dump}");
    assert_eq!(dump["rpo_ok"], serde_json::Value::Null);
    // The text forms work too.
    run_with_config(&config, &["status"])
        .ok()
        .says("3-2-1               ");
    run_with_config(&config, &["history", "--job", "docs"])
        .ok()
        .says("success");
    run_with_config(&config, &["job", "list"])
        .ok()
        .says("every 2s");

    // After a restart, missed slots are caught up by one run, not one per slot.
    // Runs that ended either way are counted before and after (the first daemon's last
    // run may have been interrupted by its SIGTERM).
    let before = backups_with(&config, "docs", "success").len()
        + backups_with(&config, "docs", "interrupted").len();
    std::thread::sleep(Duration::from_secs(5));
    let daemon = DaemonProcess::start(&env, &config, &[]);
    daemon.wait_log("[docs] run", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    let code = daemon.stop(Duration::from_secs(60));
    assert_eq!(code, 0);
    let after = backups_with(&config, "docs", "success").len()
        + backups_with(&config, "docs", "interrupted").len();
    assert!(
        after - before <= 2,
        "caught up {} runs after the restart",
        after - before
    );
}

#[test]
fn sigterm_mid_backup_leaves_a_valid_repository_and_the_next_run_reuses_its_data() {
    let env = Env::new();
    let src = env.path("big");
    std::fs::create_dir_all(&src).unwrap();
    // 48 MiB of incompressible data, uploaded at 4 MiB/s: a run takes about 12 s, and the
    // data is larger than what the pipeline holds in memory, so the readers are still
    // going when the signal comes.
    for i in 0..12 {
        write_random(&src.join(format!("part{i}")), 100 + i, 4 << 20);
    }
    let repo = env.path("repo");
    let repo_s = repo.to_str().unwrap();
    repo_cmd(repo_s, &["init"]).ok();
    let config = env.path("arca.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
state = "history.db"

[repositories.local]
location = "{repo_s}"
password_env = "ARCA_TEST_DAEMON_PW"

[jobs.big]
sources = ["{src}"]
repositories = ["local"]
schedule = "every 1s"
on_window_close = "stop"
limits = {{ upload_limit_kib = 4096 }}
"#,
            src = src.display()
        ),
    )
    .unwrap();

    let daemon = DaemonProcess::start(&env, &config, &[]);
    // Wait until the run stored at least one pack, then stop the daemon mid-run.
    wait_for(
        "a pack stored by the running backup",
        Duration::from_secs(60),
        || !common::list_files(&repo.join("data")).is_empty(),
    );
    let code = daemon.stop(Duration::from_secs(30));
    assert_eq!(code, 0);

    let interrupted = backups_with(&config, "big", "interrupted");
    assert_eq!(interrupted.len(), 1, "{:#?}", job_history(&config, "big"));
    assert!(interrupted[0]["snapshot_id"].is_null());
    assert!(
        interrupted[0]["error"]
            .as_str()
            .unwrap()
            .contains("next run reuses"),
        "{}",
        interrupted[0]
    );
    // No snapshot, and a valid repository.
    let snaps = repo_cmd(repo_s, &["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().unwrap().len(), 0);
    repo_cmd(repo_s, &["check"]).ok();
    let stored = common::list_files(&repo.join("data")).len();
    assert!(stored >= 1);

    // The next run (arca job run: the same code path) completes and does not upload the
    // stored packs again.
    let out = run_with_config(&config, &["job", "run", "big", "--json"]).ok();
    let rec = out.json();
    assert_eq!(rec["status"], "success", "{rec}");
    assert_eq!(rec["trigger"], "manual");
    // At least one 8 MiB pack was stored before the signal (indexed then, or adopted now)
    // and is not uploaded again.
    let added = rec["bytes_added"].as_u64().unwrap();
    assert!(
        added < 41 << 20,
        "added {added} bytes: the stored packs were uploaded again"
    );
    repo_cmd(repo_s, &["check", "--read-data"])
        .ok()
        .says("no errors");
    let target = env.path("restored");
    repo_cmd(
        repo_s,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    )
    .ok();
    common::assert_same_tree(&src, &common::restored_path(&target, &src));
    // Status shows the manual run as the last one.
    let status = run_with_config(&config, &["status", "--json"]).ok().json();
    assert_eq!(status["jobs"][0]["last_run"]["status"], "success");
}

#[test]
fn every_kind_of_bad_config_is_rejected_with_file_line_and_reason() {
    let env = Env::new();
    std::fs::write(env.path("pw"), "x\n").unwrap();
    let good_repo = "[repositories.r]\nlocation = \"/tmp/r\"\npassword_file = \"pw\"\n";
    let good_job =
        "[jobs.j]\nsources = [\"/data\"]\nrepositories = [\"r\"]\nschedule = \"*/5 * * * *\"\n";
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "unknown key",
            format!("{good_repo}{good_job}colour = \"red\"\n"),
            8,
            "unknown field `colour`",
        ),
        (
            "unknown section",
            format!("{good_repo}{good_job}[tapes]\nx = 1\n"),
            8,
            "unknown key \"tapes\"",
        ),
        (
            "bad cron",
            format!(
                "{good_repo}[jobs.j]\nsources = [\"/data\"]\nrepositories = [\"r\"]\nschedule = \"*/5 * * *\"\n"
            ),
            7,
            "invalid cron expression",
        ),
        (
            "window without an end",
            format!("{good_repo}{good_job}window = \"22:00\"\n"),
            8,
            "has no end",
        ),
        (
            "exclusion without an end",
            format!("{good_repo}{good_job}exclusions = [{{ from = \"2026-12-24 00:00\" }}]\n"),
            8,
            "has no end",
        ),
        (
            "missing password source",
            format!("[repositories.r]\nlocation = \"/tmp/r\"\n{good_job}"),
            1,
            "no password source",
        ),
        (
            "unknown repository",
            format!(
                "{good_repo}[jobs.j]\nsources = [\"/data\"]\nrepositories = [\"r\", \"offsite\"]\nschedule = \"every 1h\"\n"
            ),
            6,
            "repository \"offsite\", which is not defined",
        ),
        (
            "auto without rpo",
            format!(
                "{good_repo}[jobs.j]\nsources = [\"/data\"]\nrepositories = [\"r\"]\nschedule = \"auto\"\n"
            ),
            7,
            "needs an rpo",
        ),
        (
            "bad duration",
            format!("{good_repo}{good_job}rpo = \"soon\"\n"),
            8,
            "invalid duration",
        ),
        (
            "invalid TOML",
            format!("{good_repo}[jobs.j\n"),
            4,
            "invalid TOML",
        ),
        (
            "no source",
            format!("{good_repo}[jobs.j]\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n"),
            4,
            "has no source",
        ),
    ];
    for (what, text, line, reason) in &cases {
        let file = env.path(&format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(&file, text).unwrap();
        let out = run_with_config(&file, &["config", "check"]).code(1);
        let expected = format!("{}:{line}:", file.display());
        assert!(
            out.stderr.contains(&expected) && out.stderr.contains(reason),
            "{what}: expected {expected}... {reason}\n{}",
            out.stderr
        );
        // JSON too, with line and column.
        let j = run_with_config(&file, &["config", "check", "--json"])
            .code(1)
            .json();
        assert_eq!(j["ok"], false);
        let p = &j["problems"][0];
        assert_eq!(p["line"], *line as u64, "{what}: {j}");
        assert!(p["column"].as_u64().unwrap() >= 1);
        // The daemon does not start with it.
        let mut c = arca_with_config(&file);
        c.arg("daemon");
        let d = run_cmd(c, None).code(1);
        assert!(d.stderr.contains(reason), "{what}: {}", d.stderr);
    }
    // All problems at once.
    let file = env.path("many.toml");
    std::fs::write(
        &file,
        "[repositories.r]\nlocation = \"/tmp/r\"\n\n[jobs.a]\nsources = [\"/d\"]\nrepositories = [\"x\"]\nschedule = \"every 5q\"\nwindow = \"22:00-\"\n",
    )
    .unwrap();
    let out = run_with_config(&file, &["config", "check"]).code(1);
    for (line, reason) in [
        (1, "no password source"),
        (6, "not defined"),
        (7, "unknown unit"),
        (8, "has no end"),
    ] {
        assert!(
            out.stderr.contains(&format!("{}:{line}:", file.display()))
                && out.stderr.contains(reason),
            "{line} {reason}\n{}",
            out.stderr
        );
    }
    assert!(out.stderr.contains("4 problems"), "{}", out.stderr);
    // And the issue's minimal file, as written (its paths do not exist here: only the
    // password file is reported).
    let minimal = r#"[daemon]
listen = "127.0.0.1:9898"          # dashboard, API and /metrics
state = "/var/lib/arca/state.db"   # run history (SQLite)

[repositories.local]
location = "/srv/backup/repo"
password_file = "/etc/arca/pw"     # or password_command, password_env
media = "disk"
offsite = false

[jobs.docs]
sources = ["/home/me/docs"]
repositories = ["local"]
schedule = "*/5 * * * *"           # or "every 10m", or "auto" (from rpo)
rpo = "1h"
"#;
    let file = env.path("minimal.toml");
    std::fs::write(
        &file,
        minimal.replace("/etc/arca/pw", env.path("pw").to_str().unwrap()),
    )
    .unwrap();
    run_with_config(&file, &["config", "check"])
        .ok()
        .says("ok (1 repositories, 1 jobs)");
}
