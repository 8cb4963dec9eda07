//! The CLI and a job run are one application layer (arca-ops): each test runs the same
//! operation from `arca` and from `arca job run` and compares them. Reads on S3 (the cache
//! is used by both), client-side append-only (refused by both, nothing deleted), a job's
//! prune (removes abandoned temporary files, as `arca prune` does), the metadata of the
//! snapshots they write, and a command source stopped while it writes nothing (both kill
//! the command with what it started, and write no snapshot).

use crate::common;

use std::path::Path;

use crate::common::daemon::job_history;
use crate::common::*;

/// Reads (whole and ranged) in the lines `ARCA_DEBUG_REQUESTS_FILE` got from one run.
fn reads_in(lines: &str) -> u64 {
    lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            u(&v, "reads") + u(&v, "range_reads")
        })
        .sum()
}

/// A tree of 40 directories of small files: an incremental backup of it reads the
/// parent's trees, which the cache serves locally.
fn make_tree(dir: &Path) {
    for d in 0..40 {
        small_tree(&dir.join(format!("d{d:02}")), 15, d);
    }
}

fn job_config(
    path: &Path,
    location: &str,
    repo_keys: &str,
    src: &Path,
    job_keys: &str,
) -> std::path::PathBuf {
    let config = path.join("arca.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
state = "{state}"

[repositories.r]
location = "{location}"
password_env = "ARCA_TEST_DAEMON_PW"
{repo_keys}

[jobs.j]
sources = ["{src}"]
repositories = ["r"]
schedule = "every 1h"
{job_keys}
"#,
            state = path.join("history.db").display(),
            src = src.display()
        ),
    )
    .unwrap();
    config
}

/// `arca job run j` with the request counts going to `requests`; the run's record.
fn job_run(config: &Path, requests: &Path) -> serde_json::Value {
    let mut c = common::daemon::arca_with_config(config);
    c.args(["job", "run", "j", "--json"])
        .env("ARCA_DEBUG_REQUESTS_FILE", requests);
    run_cmd(c, None).json()
}

fn s3_base() -> Option<String> {
    match std::env::var("ARCA_TEST_S3") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "ARCA_TEST_S3 is not set: the S3 server is missing (scripts/test starts it)"
            );
            eprintln!("skipping: ARCA_TEST_S3 not set (run scripts/services/s3.sh start)");
            None
        }
    }
}

#[test]
fn an_unchanged_job_run_on_s3_reads_no_more_than_an_unchanged_arca_backup() {
    let Some(base) = s3_base() else { return };
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    let location = format!(
        "{base}/drift-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    let cli = |requests: &Path, args: &[&str]| {
        let mut c = bare_cmd();
        c.env("ARCA_PASSWORD", PASSWORD)
            .env("ARCA_INSECURE_TEST_KDF", "1")
            .env("ARCA_CACHE_DIR", env.path("cli-cache"))
            .env("ARCA_DEBUG_REQUESTS_FILE", requests)
            .arg("-r")
            .arg(&location)
            .args(args);
        run_cmd(c, None).ok()
    };
    let cli_requests = env.path("cli.jsonl");
    cli(&env.path("init.jsonl"), &["init"]);
    let src_s = src.to_str().unwrap();
    cli(&env.path("first.jsonl"), &["backup", "-q", src_s]);
    cli(&cli_requests, &["backup", "-q", src_s]);
    let cli_reads = reads_in(&std::fs::read_to_string(&cli_requests).unwrap());

    let cached_dir = env.path("cached");
    std::fs::create_dir_all(&cached_dir).unwrap();
    let cache_key = format!("cache_dir = \"{}\"", env.path("job-cache").display());
    let config = job_config(&cached_dir, &location, &cache_key, &src, "");
    // Both runs find a parent (the first one arca backup's snapshot) and read no file
    // again. (Bytes added are no test of "unchanged": the source's ancestors, such as
    // /tmp, are recorded too and change whenever other programs create files in them.)
    for i in 0..2 {
        let rec = job_run(&config, &cached_dir.join(format!("run{i}.jsonl")));
        assert_eq!(rec["status"], "success", "{rec}");
        assert_eq!(u(&rec, "files"), 600, "{rec}");
        assert_eq!(u(&rec, "bytes_read"), 0, "{rec}");
    }
    let job_reads = reads_in(&std::fs::read_to_string(cached_dir.join("run1.jsonl")).unwrap());

    // The same job without a cache reads the parent's trees from S3 again: the
    // comparison above can tell a cached run from an uncached one.
    let uncached_dir = env.path("uncached");
    std::fs::create_dir_all(&uncached_dir).unwrap();
    let config = job_config(&uncached_dir, &location, "cache = false", &src, "");
    let rec = job_run(&config, &uncached_dir.join("run.jsonl"));
    assert_eq!(rec["status"], "success", "{rec}");
    let uncached_reads =
        reads_in(&std::fs::read_to_string(uncached_dir.join("run.jsonl")).unwrap());
    eprintln!(
        "reads of an unchanged backup on S3: arca backup {cli_reads}, job run {job_reads}, \
         job run without cache {uncached_reads}"
    );
    assert!(
        job_reads <= cli_reads,
        "the job run read {job_reads} objects, arca backup {cli_reads}"
    );
    assert!(
        uncached_reads > job_reads,
        "without a cache the job read {uncached_reads}, with it {job_reads}"
    );
}

#[test]
fn a_client_side_append_only_job_refuses_retention_and_prune_and_deletes_nothing() {
    let env = Env::init();
    let src = env.path("src");
    small_tree(&src, 20, 3);
    let repo = env.repo.to_str().unwrap();
    let config = job_config(
        env.dir.path(),
        repo,
        "append_only = true",
        &src,
        "retention = { keep_last = 1 }\nprune = { schedule = \"every 1s\", max_unused = \"0%\" }",
    );
    let requests = env.path("requests.jsonl");
    let first = job_run(&config, &requests);
    std::fs::write(src.join("new"), "x".repeat(10_000)).unwrap();
    let before = list_files(&env.repo);
    let second = job_run(&config, &requests);
    for rec in [&first, &second] {
        assert_eq!(rec["status"], "failed", "{rec}");
        let e = rec["error"].as_str().unwrap_or_default();
        assert!(
            e.contains("append-only") && e.contains("append_only = true"),
            "{e}"
        );
    }
    // Both runs saved their snapshot, and nothing that was there went away.
    assert_eq!(env.snapshots().len(), 2);
    let after = list_files(&env.repo);
    for f in &before {
        assert!(after.contains(f), "{} was deleted", f.display());
    }
    for p in job_history(&config, "j")
        .iter()
        .filter(|r| r["kind"] == "prune")
    {
        assert_eq!(p["status"], "failed", "{p}");
        assert!(
            p["error"]
                .as_str()
                .unwrap_or_default()
                .contains("append-only")
        );
    }
    // The CLI refuses the same way.
    for args in [
        &["--append-only", "forget", "--keep-last", "1"][..],
        &["--append-only", "prune"],
    ] {
        env.run(args)
            .fails()
            .says("append-only")
            .says("--append-only");
    }
    assert_eq!(env.snapshots().len(), 2);
    // Every run's requests were counted (job runs included).
    let counted = std::fs::read_to_string(&requests).unwrap();
    assert!(counted.lines().count() >= 2, "{counted}");
}

#[test]
fn a_job_prune_removes_abandoned_temporary_files_as_arca_prune_does() {
    let env = Env::init();
    let src = env.path("src");
    small_tree(&src, 20, 4);
    let plant = |name: &str| {
        let p = env.repo.join("data").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "half a pack").unwrap();
        let secs = jiff::Timestamp::now().as_second() - 2 * 24 * 3600;
        set_mtime(&p, secs, 0);
        p
    };
    let config = job_config(
        env.dir.path(),
        env.repo.to_str().unwrap(),
        "",
        &src,
        "prune = { schedule = \"every 1s\" }",
    );
    let job_planted = plant(".tmp-0000000000000000-12345-678-00000000000000bb");
    let rec = job_run(&config, &env.path("requests.jsonl"));
    assert_eq!(rec["status"], "success", "{rec}");
    assert!(
        !job_planted.exists(),
        "the job's prune left the temporary file"
    );
    let prune = job_history(&config, "j")
        .into_iter()
        .find(|r| r["kind"] == "prune")
        .expect("a prune run");
    assert_eq!(prune["status"], "success", "{prune}");
    assert!(
        prune["log"]
            .as_str()
            .unwrap_or_default()
            .contains("removed 1 temporary files"),
        "{prune}"
    );
    let cli_planted = plant(".tmp-0000000000000000-12345-678-00000000000000cc");
    let out = env.run(&["prune", "--json"]).ok().json();
    assert_eq!(out["temporary_files_removed"], 1, "{out}");
    assert!(!cli_planted.exists());
}

#[test]
fn a_job_and_arca_backup_write_the_same_snapshot_metadata() {
    let env = Env::new();
    let src = env.path("src");
    small_tree(&src, 30, 5);
    let cli_repo = env.path("cli-repo");
    let job_repo = env.path("job-repo");
    let src_s = src.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut c = env.cmd();
        c.env("ARCA_INSECURE_TEST_KDF", "1")
            .env("ARCA_REPOSITORY", &cli_repo)
            .args(args);
        run_cmd(c, None).ok()
    };
    cli(&["init"]);
    {
        let mut c = env.cmd();
        c.env("ARCA_INSECURE_TEST_KDF", "1")
            .env("ARCA_REPOSITORY", &job_repo)
            .arg("init");
        run_cmd(c, None).ok();
    }
    let config = job_config(
        env.dir.path(),
        job_repo.to_str().unwrap(),
        "",
        &src,
        "host = \"db-7\"\ntags = [\"nightly\"]",
    );
    for round in 0..2 {
        if round == 1 {
            std::fs::write(src.join("changed"), "new content").unwrap();
        }
        cli(&["backup", "-q", "--host", "db-7", "--tag", "nightly", src_s]);
        let rec = job_run(&config, &env.path("requests.jsonl"));
        assert_eq!(rec["status"], "success", "{rec}");
    }
    let list = |repo: &Path| -> Vec<serde_json::Value> {
        let mut c = env.cmd();
        c.env("ARCA_REPOSITORY", repo).args(["snapshots", "--json"]);
        run_cmd(c, None).ok().json().as_array().cloned().unwrap()
    };
    let (from_cli, from_job) = (list(&cli_repo), list(&job_repo));
    assert_eq!(from_cli.len(), 2);
    assert_eq!(from_job.len(), 2);
    for (c, j) in from_cli.iter().zip(&from_job) {
        for field in ["paths", "host", "type", "source", "username"] {
            assert_eq!(c[field], j[field], "{field}: {c} / {j}");
        }
        // The job adds the tag that names it.
        let mut job_tags: Vec<&str> = j["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t.as_str())
            .filter(|t| *t != "job:j")
            .collect();
        job_tags.sort();
        assert_eq!(job_tags, ["nightly"], "{j}");
        assert_eq!(c["tags"], serde_json::json!(["nightly"]));
        assert_eq!(c["parent"].is_null(), j["parent"].is_null(), "{c} / {j}");
        for count in [
            "files_new",
            "files_changed",
            "files_unmodified",
            "dirs",
            "total_bytes",
        ] {
            assert_eq!(
                c["summary"][count], j["summary"][count],
                "{count}: {c} / {j}"
            );
        }
    }
    assert_eq!(from_job[1]["parent"], from_job[0]["id"]);
}

/// Waits until `file` holds a pid, and returns it.
fn pid_in(file: &Path) -> i32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never got a pid",
            file.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether `pid` is gone (or a zombie no one reaped yet: it runs no more).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
}

/// Starts `c`, waits for the command's grandchild to write its pid, stops arca with
/// SIGTERM, and returns arca's exit code and the grandchild's pid.
fn stop_while_the_command_is_silent(mut c: std::process::Command, pidfile: &Path) -> (i32, i32) {
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut arca = c.spawn().unwrap();
    let pid = pid_in(pidfile);
    assert!(!gone(pid), "the command's child {pid} is not running");
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(arca.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = arca.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = arca.kill();
            panic!("arca did not stop within 30 s of SIGTERM while its command wrote nothing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gone(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (status.code().unwrap_or(-1), pid)
}

#[test]
fn a_stopped_command_source_kills_its_child_from_the_cli_and_from_a_job() {
    let env = Env::init();
    // The command starts a child that holds the output open and writes nothing: only
    // killing the command's whole process group ends the read.
    let script = |pidfile: &Path| {
        format!(
            "echo header; sleep 600 & echo $! > {}; wait",
            pidfile.display()
        )
    };

    let cli_pidfile = env.path("cli.pid");
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1").args([
        "backup",
        "-q",
        "--stdin-from-command",
        "--",
        "sh",
        "-c",
        &script(&cli_pidfile),
    ]);
    let (cli_code, cli_child) = stop_while_the_command_is_silent(c, &cli_pidfile);
    assert_eq!(cli_code, 130, "arca backup exits as interrupted");
    assert!(
        gone(cli_child),
        "arca backup left its command's child {cli_child} running"
    );

    let job_pidfile = env.path("job.pid");
    let config = env.path("arca.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate = \"{state}\"\n\n[repositories.r]\nlocation = \"{repo}\"\n\
             password_env = \"ARCA_TEST_DAEMON_PW\"\n\n[jobs.j]\ncommand = \"{command}\"\n\
             repositories = [\"r\"]\nschedule = \"every 1h\"\n",
            state = env.path("history.db").display(),
            repo = env.repo.display(),
            command = script(&job_pidfile),
        ),
    )
    .unwrap();
    let mut c = common::daemon::arca_with_config(&config);
    c.args(["job", "run", "j", "--json"]);
    let (job_code, job_child) = stop_while_the_command_is_silent(c, &job_pidfile);
    assert!(
        gone(job_child),
        "arca job run left its command's child {job_child} running"
    );
    assert_ne!(job_code, 0, "a stopped job run does not report success");
    let runs = job_history(&config, "j");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_ne!(runs[0]["status"], "success", "{}", runs[0]);
    assert!(runs[0]["snapshot_id"].is_null(), "{}", runs[0]);

    assert!(
        env.snapshots().is_empty(),
        "a stopped command wrote a snapshot"
    );
}
