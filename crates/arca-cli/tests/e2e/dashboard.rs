//! The daemon's web server end to end through the `arca` binary: `/metrics` scraped and
//! parsed strictly as Prometheus text format (values from a real run, snapshot count from
//! the background refresh), the snapshot browser and single-file downloads (right bytes,
//! names escaped), the token (always required; 401 without it, bearer and login session
//! with it, cross-site and token-less POSTs refused), and the dashboard in headless Chromium
//! (Debian's `chromium` and `chromedriver`): it loads, shows the job list and a chart, and
//! its "Run now" button starts a run that appears in the history.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::browser::{Driver, have_chromium};
use crate::common::daemon::{
    DaemonProcess, arca_with_config, job_history, run_with_config, wait_for,
};
use crate::common::http::{encode, get, request};
use crate::common::{Env, PASSWORD, bare_cmd, run_cmd, small_tree, write_random};

/// A repository at `location` with the test password.
fn init_repo(location: &Path) {
    let mut c = bare_cmd();
    c.arg("-r")
        .arg(location)
        .arg("init")
        .env("ARCA_PASSWORD", PASSWORD)
        .env("ARCA_INSECURE_TEST_KDF", "1");
    run_cmd(c, None).ok();
}

/// A job `docs` backing up `src` into the local repository `repo`, never scheduled
/// (runs come from `arca job run` or the dashboard's button).
fn write_config(env: &Env, daemon_section: &str, src: &Path, repo: &Path, extra: &str) -> PathBuf {
    std::fs::write(env.path("pw"), format!("{PASSWORD}\n")).unwrap();
    let config = env.path("arca.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
{daemon_section}
state = "state/history.db"

[repositories.local]
location = "{repo}"
password_file = "pw"
media = "disk"

[jobs.docs]
sources = ["{src}"]
repositories = ["local"]
schedule = "0 0 1 1 *"
rpo = "1h"
rto = "1h"
{extra}"#,
            repo = repo.display(),
            src = src.display(),
        ),
    )
    .unwrap();
    config
}

// ---------------------------------------------------------------------------------------
// A strict parser of the Prometheus text format (0.0.4)

#[derive(Debug, Clone)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Metric families by name: every sample line must follow a `# TYPE` of its family, names
/// and label names must be valid, label values properly quoted and escaped, values
/// numbers; anything else fails the test.
fn parse_prometheus(text: &str) -> BTreeMap<String, (String, Vec<Sample>)> {
    fn valid_name(s: &str) -> bool {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut families: BTreeMap<String, (String, Vec<Sample>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap();
            let name = parts.next().unwrap_or("");
            match kw {
                "HELP" => assert!(valid_name(name), "{at}"),
                "TYPE" => {
                    let ty = parts.next().unwrap_or("");
                    assert!(valid_name(name), "{at}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                        "{at}"
                    );
                    assert!(!families.contains_key(name), "{at}: TYPE given twice");
                    families.insert(name.to_string(), (ty.to_string(), Vec::new()));
                    current = Some(name.to_string());
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#'), "{at}");
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => panic!("{at}: no value"),
        };
        assert!(valid_name(name), "{at}: bad metric name");
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut i = 0;
            loop {
                if body[i..].starts_with('}') {
                    i += 1;
                    break;
                }
                let eq = i + body[i..].find('=').unwrap_or_else(|| panic!("{at}: no ="));
                let lname = &body[i..eq];
                assert!(valid_name(lname), "{at}: bad label name {lname:?}");
                assert!(
                    body[eq + 1..].starts_with('"'),
                    "{at}: unquoted label value"
                );
                let mut value = String::new();
                let mut chars = body[eq + 2..].char_indices();
                let close = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            other => panic!("{at}: bad escape {other:?}"),
                        },
                        Some((j, '"')) => break eq + 2 + j,
                        Some((_, c)) => value.push(c),
                        None => panic!("{at}: unterminated label value"),
                    }
                };
                assert!(
                    labels.insert(lname.to_string(), value).is_none(),
                    "{at}: label twice"
                );
                i = close + 1;
                match body[i..].chars().next() {
                    Some(',') => i += 1,
                    Some('}') => {
                        i += 1;
                        break;
                    }
                    other => panic!("{at}: expected , or }} after a label, got {other:?}"),
                }
            }
            &body[i..]
        } else {
            rest
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        assert!(
            fields.len() == 1 || fields.len() == 2,
            "{at}: expected a value (and a timestamp)"
        );
        let value: f64 = match fields[0] {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("{at}: bad value")),
        };
        let family = current.clone().expect("a sample before any TYPE");
        let (ty, samples) = families.get_mut(&family).unwrap();
        let base_ok = name == family
            || (ty == "counter" && name == format!("{family}_total"))
            || name
                .strip_prefix(family.as_str())
                .is_some_and(|s| ["_total", "_created", "_sum", "_count", "_bucket"].contains(&s));
        assert!(base_ok, "{at}: sample of {name} under TYPE {family}");
        samples.push(Sample { labels, value });
    }
    families
}

/// The value of `name` with exactly `labels` (None when absent).
fn metric(
    m: &BTreeMap<String, (String, Vec<Sample>)>,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let family = m
        .get(name)
        .or_else(|| m.get(name.trim_end_matches("_total")))?;
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    family.1.iter().find(|s| s.labels == want).map(|s| s.value)
}

fn scrape(addr: &str, auth: &[(&str, &str)]) -> BTreeMap<String, (String, Vec<Sample>)> {
    let r = get(addr, "/metrics", auth);
    assert_eq!(r.code, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.headers
    );
    parse_prometheus(&r.text())
}

fn timestamp_secs(v: &serde_json::Value) -> f64 {
    let t: jiff::Timestamp = v.as_str().unwrap().parse().unwrap();
    t.as_millisecond() as f64 / 1000.0
}

#[test]
fn metrics_browse_and_download_after_a_run() {
    let env = Env::new();
    let src = env.path("src");
    small_tree(&src, 12, 3);
    // A file of several chunks (downloaded blob by blob) and a name that needs escaping.
    let big = write_random(&src.join("big.bin"), 77, 5 * 1024 * 1024 + 123);
    std::fs::write(src.join("<b>x&y.txt"), b"escaped name\n").unwrap();
    let repo = env.path("repo");
    init_repo(&repo);
    let config = write_config(&env, "listen = \"127.0.0.1:0\"", &src, &repo, "");
    run_with_config(&config, &["config", "check"]).ok();

    let daemon = DaemonProcess::start(&env, &config, &[("ARCA_WEB_REFRESH_SECS", "3600")]);
    let addr = daemon.addr();
    // No token in the configuration: the daemon made one beside the state database.
    let bearer = format!("Bearer {}", generated_token(&env));
    let auth = [("Authorization", bearer.as_str())];
    // Before any run: no snapshot, no last success, runs in progress 0.
    let m = scrape(&addr, &auth);
    assert_eq!(
        metric(
            &m,
            "arca_job_last_success_timestamp_seconds",
            &[("job", "docs")]
        ),
        None
    );
    assert_eq!(
        metric(
            &m,
            "arca_job_running",
            &[("job", "docs"), ("kind", "backup")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "arca_job_rpo_target_seconds", &[("job", "docs")]),
        Some(3600.0)
    );

    // One run (the CLI writes the same history the daemon reads).
    run_with_config(&config, &["job", "run", "docs"]).ok();
    let runs = job_history(&config, "docs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let r = &runs[0];
    assert_eq!(r["status"], "success", "{r}");
    let (start, end) = (timestamp_secs(&r["start"]), timestamp_secs(&r["end"]));
    let snapshot = r["snapshot_id"].as_str().unwrap().to_string();

    // The refresher notices the finished run and counts the snapshot.
    let mut m = scrape(&addr, &auth);
    wait_for(
        "the snapshot count after the refresh",
        Duration::from_secs(30),
        || {
            m = scrape(&addr, &auth);
            metric(
                &m,
                "arca_job_snapshots",
                &[("job", "docs"), ("repository", "local")],
            ) == Some(1.0)
        },
    );
    let last_success = metric(
        &m,
        "arca_job_last_success_timestamp_seconds",
        &[("job", "docs")],
    )
    .unwrap();
    assert!(
        last_success >= start && last_success <= end + 0.001,
        "last success {last_success} outside the run {start}..{end}"
    );
    let added = metric(&m, "arca_job_last_run_added_bytes", &[("job", "docs")]).unwrap();
    assert!(added > 0.0, "bytes added {added}");
    assert_eq!(Some(added), r["bytes_added"].as_f64());
    let read = metric(&m, "arca_job_last_run_read_bytes", &[("job", "docs")]).unwrap();
    assert!(read >= big.len() as f64, "bytes read {read}");
    let duration = metric(&m, "arca_job_last_run_duration_seconds", &[("job", "docs")]).unwrap();
    assert!(
        (duration - (end - start)).abs() < 0.01,
        "duration {duration} vs {}",
        end - start
    );
    assert_eq!(
        metric(&m, "arca_job_last_run_success", &[("job", "docs")]),
        Some(1.0)
    );
    let age = metric(&m, "arca_job_rpo_age_seconds", &[("job", "docs")]).unwrap();
    assert!((0.0..120.0).contains(&age), "rpo age {age}");
    assert_eq!(m["arca_runs_total"].0, "counter");
    assert_eq!(
        metric(
            &m,
            "arca_runs_total",
            &[("job", "docs"), ("kind", "backup"), ("status", "success")]
        ),
        Some(1.0)
    );
    let size = metric(&m, "arca_repository_size_bytes", &[("repository", "local")]).unwrap();
    let on_disk: u64 = common::list_files(&repo)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        size > added && size <= on_disk as f64,
        "repository size {size}, added {added}, files {on_disk}"
    );
    assert_eq!(
        metric(
            &m,
            "arca_job_repository_size_bytes",
            &[("job", "docs"), ("repository", "local")]
        ),
        Some(size)
    );
    assert_eq!(
        metric(&m, "arca_repository_snapshots", &[("repository", "local")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "arca_repository_up", &[("repository", "local")]),
        Some(1.0)
    );
    let capacity = metric(
        &m,
        "arca_repository_storage_capacity_bytes",
        &[("repository", "local")],
    )
    .unwrap();
    let free = metric(
        &m,
        "arca_repository_storage_free_bytes",
        &[("repository", "local")],
    )
    .unwrap();
    let used = metric(
        &m,
        "arca_repository_storage_used_bytes",
        &[("repository", "local")],
    )
    .unwrap();
    assert!(capacity > 0.0 && (used + free - capacity).abs() < 1.0);

    // /api/status is still there, same shape.
    let status = get(&addr, "/api/status", &auth);
    assert_eq!(status.code, 200);
    let api: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(api["jobs"][0]["job"], "docs", "{api}");
    assert_eq!(
        api["jobs"][0]["last_good"]["snapshot_id"],
        snapshot.as_str()
    );

    // Pages: the job's runs and charts; unknown jobs are 404.
    let page = get(&addr, "/jobs/docs", &auth);
    assert_eq!(page.code, 200);
    // Not to be framed (the buttons), no scripts allowed in.
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{:?}",
        page.headers
    );
    let text = page.text();
    assert!(text.contains("class=\"chart growth\""), "{text}");
    assert!(text.contains("class=\"chart duration\""));
    assert!(text.contains(&snapshot[..8]));
    assert_eq!(get(&addr, "/jobs/nope", &auth).code, 404);

    // Snapshots: the list, a directory, the escaped name, two downloads.
    let list = get(&addr, "/repositories/local/snapshots", &auth);
    assert_eq!(list.code, 200, "{}", list.text());
    assert!(list.text().contains(&snapshot[..8]), "{}", list.text());
    let src_s = src.display().to_string();
    let dir = get(
        &addr,
        &format!(
            "/repositories/local/snapshots/{snapshot}/browse?path={}",
            encode(&src_s)
        ),
        &auth,
    );
    assert_eq!(dir.code, 200, "{}", dir.text());
    let dir = dir.text();
    for name in ["big.bin", "f001.txt", "sub/"] {
        assert!(dir.contains(name), "{name} missing from\n{dir}");
    }
    assert!(dir.contains("&lt;b&gt;x&amp;y.txt"), "{dir}");
    assert!(!dir.contains("<b>x&y"), "an unescaped name in\n{dir}");
    let short = &snapshot[..10];
    let file = get(
        &addr,
        &format!(
            "/repositories/local/snapshots/{short}/download?path={}",
            encode(&format!("{src_s}/big.bin"))
        ),
        &auth,
    );
    assert_eq!(file.code, 200, "{}", file.text());
    assert_eq!(
        file.header("content-length"),
        Some(big.len().to_string().as_str())
    );
    assert!(file.body == big, "the downloaded big.bin differs");
    let odd = get(
        &addr,
        &format!(
            "/repositories/local/snapshots/latest/download?path={}",
            encode(&format!("{src_s}/<b>x&y.txt"))
        ),
        &auth,
    );
    assert_eq!(odd.code, 200, "{}", odd.text());
    assert_eq!(odd.body, b"escaped name\n");
    let sub = get(
        &addr,
        &format!(
            "/repositories/local/snapshots/{snapshot}/download?path={}",
            encode(&format!("{src_s}/sub/f000.txt"))
        ),
        &auth,
    );
    assert_eq!(sub.body, std::fs::read(src.join("sub/f000.txt")).unwrap());
    // A directory is not downloadable; a missing file is 404.
    let not_file = get(
        &addr,
        &format!(
            "/repositories/local/snapshots/{snapshot}/download?path={}",
            encode(&src_s)
        ),
        &auth,
    );
    assert_eq!(not_file.code, 400);
    let missing = get(
        &addr,
        &format!(
            "/repositories/local/snapshots/{snapshot}/download?path={}",
            encode(&format!("{src_s}/nope"))
        ),
        &auth,
    );
    assert_eq!(missing.code, 404);
    // A drill: its result, time and RTO in the metrics, its steps on the pages.
    run_with_config(&config, &["drill", "run", "docs"]).ok();
    let m = scrape(&addr, &auth);
    assert_eq!(
        metric(&m, "arca_job_drill_success", &[("job", "docs")]),
        Some(1.0)
    );
    let drill_secs = metric(&m, "arca_job_drill_duration_seconds", &[("job", "docs")]).unwrap();
    assert!(drill_secs > 0.0 && drill_secs < 60.0, "{drill_secs}");
    let drill_time = metric(&m, "arca_job_drill_timestamp_seconds", &[("job", "docs")]).unwrap();
    assert!(drill_time >= end, "drill at {drill_time}, run ended {end}");
    assert_eq!(
        metric(&m, "arca_job_rto_target_seconds", &[("job", "docs")]),
        Some(3600.0)
    );
    assert!(
        metric(
            &m,
            "arca_job_drill_projected_restore_seconds",
            &[("job", "docs")]
        )
        .unwrap()
            > 0.0
    );
    let page = get(&addr, "/jobs/docs", &auth).text();
    assert!(page.contains("<div class=\"drill\">"), "{page}");
    for step in ["integrity", "function", "performance", "security"] {
        assert!(
            page.contains(&format!("<td>{step}</td>")),
            "{step} missing:\n{page}"
        );
    }
    let overview = get(&addr, "/", &auth).text();
    assert!(
        overview.contains("<span class=\"ok\">ok</span> projected restore"),
        "{overview}"
    );

    // Without the token nothing is served, whatever the Host (a page whose name was
    // rebound to 127.0.0.1 has no session and no token).
    assert_eq!(get(&addr, "/api/status", &[]).code, 401);
    let rebound = get(&addr, "/api/status", &[("Host", "attacker.example")]);
    assert_eq!(rebound.code, 401);

    daemon.stop(Duration::from_secs(30));
}

/// The token the daemon made in `state/dashboard.token` (no token_file or token_env).
fn generated_token(env: &Env) -> String {
    std::fs::read_to_string(env.path("state/dashboard.token"))
        .expect("dashboard.token beside the state database")
        .trim()
        .to_string()
}

/// The form token in the first POST form of `page`.
fn form_token(page: &str) -> String {
    let at = page
        .find("name=\"form_token\" value=\"")
        .expect("a form token");
    let rest = &page[at + "name=\"form_token\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[test]
fn token_is_required_off_loopback() {
    let env = Env::new();
    let src = env.path("src");
    small_tree(&src, 3, 5);
    let repo = env.path("repo");
    init_repo(&repo);
    let token = "t0ken-for-the-dashboard-test";
    let config = write_config(
        &env,
        "listen = \"0.0.0.0:0\"\ntoken_env = \"ARCA_TEST_WEB_TOKEN\"",
        &src,
        &repo,
        "",
    );
    // Without the token in its environment the configuration is refused.
    run_with_config(&config, &["config", "check"])
        .fails()
        .says("ARCA_TEST_WEB_TOKEN");
    let mut check = arca_with_config(&config);
    check
        .args(["config", "check"])
        .env("ARCA_TEST_WEB_TOKEN", token);
    run_cmd(check, None).ok();
    let daemon = DaemonProcess::start(&env, &config, &[("ARCA_TEST_WEB_TOKEN", token)]);
    let addr = daemon.addr();
    let bearer = format!("Bearer {token}");
    for (i, path) in [
        "/",
        "/api/status",
        "/metrics",
        "/jobs/docs",
        "/repositories/local/snapshots",
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(get(&addr, path, &[]).code, 401, "{path} without the token");
        // Not on every path: five wrong tokens lock the address out (429), see
        // tests/dashboard_access.rs.
        if i < 3 {
            assert_eq!(
                get(&addr, path, &[("Authorization", "Bearer wrong")]).code,
                401,
                "{path} with a wrong token"
            );
        }
        let ok = get(&addr, path, &[("Authorization", &bearer)]);
        assert_eq!(ok.code, 200, "{path} with the token: {}", ok.text());
    }
    let m = scrape(&addr, &[("Authorization", &bearer)]);
    assert!(m.contains_key("arca_job_running"));
    // A browser gets the login form with its 401.
    let login = get(&addr, "/", &[("Accept", "text/html")]);
    assert_eq!(login.code, 401);
    assert!(login.text().contains("action=\"/login\""));
    let origin = format!("http://{addr}");
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", origin.as_str()),
    ];
    let wrong = request(&addr, "POST", "/login", &form, Some(b"token=nope"));
    assert_eq!(wrong.code, 401);
    assert!(wrong.header("set-cookie").is_none());
    let body = format!("token={token}");
    let logged = request(&addr, "POST", "/login", &form, Some(body.as_bytes()));
    assert_eq!(logged.code, 303, "{}", logged.text());
    let cookie = logged
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(logged.header("set-cookie").unwrap().contains("HttpOnly"));
    assert!(
        !cookie.contains(token),
        "the cookie carries the token itself"
    );
    let page = get(&addr, "/", &[("Cookie", &cookie)]);
    assert_eq!(page.code, 200);
    let page = page.text();
    assert!(page.contains("data-job=\"docs\""), "{page}");
    let token_field = form_token(&page);

    // POSTs: the form token and the same origin are required (cookie), or the bearer.
    let with_cookie = |origin: &str, body: &str| {
        request(
            &addr,
            "POST",
            "/jobs/docs/run",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", origin),
                ("Cookie", &cookie),
            ],
            Some(body.as_bytes()),
        )
    };
    assert_eq!(with_cookie(&origin, "back=/").code, 403, "no form token");
    assert_eq!(
        with_cookie("http://evil.example", &format!("form_token={token_field}")).code,
        403,
        "another site"
    );
    let queued = with_cookie(
        &origin,
        &format!("form_token={token_field}&back=/jobs/docs"),
    );
    assert_eq!(queued.code, 303, "{}", queued.text());
    assert_eq!(
        queued.header("location"),
        Some("/jobs/docs?queued=run:docs")
    );
    let no_auth = request(&addr, "POST", "/jobs/docs/drill", &[], Some(b""));
    assert_eq!(no_auth.code, 401);
    let api = request(
        &addr,
        "POST",
        "/jobs/docs/drill",
        &[("Authorization", &bearer)],
        Some(b""),
    );
    assert_eq!(api.code, 303, "{}", api.text());
    let unknown = request(
        &addr,
        "POST",
        "/jobs/nope/run",
        &[("Authorization", &bearer)],
        Some(b""),
    );
    assert_eq!(unknown.code, 404);
    // Logging out clears the cookie.
    assert!(page.contains("action=\"/logout\""));
    let out = request(
        &addr,
        "POST",
        "/logout",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &origin),
            ("Cookie", &cookie),
        ],
        Some(format!("form_token={token_field}").as_bytes()),
    );
    assert_eq!(out.code, 303, "{}", out.text());
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    // ... and ends the session on the server.
    assert_eq!(get(&addr, "/", &[("Cookie", &cookie)]).code, 401);
    daemon.stop(Duration::from_secs(30));
}

// ---------------------------------------------------------------------------------------
#[test]
fn dashboard_in_headless_chromium_runs_a_job() {
    if !have_chromium() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    small_tree(&src, 10, 9);
    let repo = env.path("repo");
    init_repo(&repo);
    // A drill whose check fails (with output that needs escaping).
    let config = write_config(
        &env,
        "listen = \"127.0.0.1:0\"",
        &src,
        &repo,
        "[jobs.docs.drill]\nchecks = [\"echo '<b>check-output</b>' >&2; exit 3\"]\n",
    );
    run_with_config(&config, &["config", "check"]).ok();
    // One run so that the charts have a point.
    run_with_config(&config, &["job", "run", "docs"]).ok();
    let daemon = DaemonProcess::start(&env, &config, &[]);
    let addr = daemon.addr();

    let mut driver = Driver::start(&env.path("chromedriver.log"));
    driver.new_session(&env.path("chromium-profile"));
    // The dashboard always needs its token: log in first (the daemon made the token).
    driver.go(&format!("http://{addr}/"));
    assert!(driver.dom().contains("action=\"/login\""));
    driver.type_into("input[name=\"token\"]", &generated_token(&env));
    driver.click("form[action=\"/login\"] button");
    wait_for("the overview after login", Duration::from_secs(15), || {
        driver.dom().contains("<table id=\"jobs\"")
    });
    let dom = driver.dom();
    driver.screenshot("overview");
    assert!(dom.contains("<table id=\"jobs\""), "{dom}");
    assert!(
        dom.contains("<tr data-job=\"docs\">"),
        "the job list lacks docs:\n{dom}"
    );
    assert!(
        dom.contains("<svg class=\"sparkline\""),
        "no chart on the overview:\n{dom}"
    );
    driver.go(&format!("http://{addr}/jobs/docs"));
    let dom = driver.dom();
    driver.screenshot("job");
    assert!(
        dom.contains("<svg class=\"chart growth\""),
        "no growth chart:\n{dom}"
    );
    assert!(
        dom.contains("<polyline") || dom.contains("<circle"),
        "an empty chart:\n{dom}"
    );

    // The button: a real form POST from the browser (Origin, form token), then back.
    driver.go(&format!("http://{addr}/"));
    let newest_before = job_history(&config, "docs")
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .max();
    driver.click("form[action=\"/jobs/docs/run\"] button");
    wait_for("the page after Run now", Duration::from_secs(15), || {
        driver.url().contains("queued=run:docs")
    });
    let dom = driver.dom();
    driver.screenshot("after-run-now");
    assert!(dom.contains("id=\"notice\""), "{dom}");
    // NOTE: this part needs the daemon loop to take the dashboard's requests
    // (Live::take_requests, wired by the daemon side of issue 7).
    wait_for(
        "the run requested by the button in the history",
        Duration::from_secs(60),
        || {
            job_history(&config, "docs").iter().any(|r| {
                r["id"].as_i64() > newest_before
                    && r["kind"] == "backup"
                    && r["status"] == "success"
            })
        },
    );

    // "Drill now" on the job's page: the daemon runs the drill, the page shows it failed,
    // step by step, with the check's output escaped.
    driver.go(&format!("http://{addr}/jobs/docs"));
    driver.click("form[action=\"/jobs/docs/drill\"] button");
    wait_for("the page after Drill now", Duration::from_secs(15), || {
        driver.url().contains("/jobs/docs?queued=drill:docs")
    });
    wait_for("the drill in the history", Duration::from_secs(60), || {
        job_history(&config, "docs")
            .iter()
            .any(|r| r["kind"] == "drill" && r["status"] == "failed")
    });
    driver.go(&format!("http://{addr}/jobs/docs"));
    let dom = driver.dom();
    driver.screenshot("after-drill-now");
    assert!(dom.contains("<div class=\"drill\">"), "{dom}");
    assert!(
        dom.contains("<td>function</td><td><span class=\"bad\">failed</span>"),
        "{dom}"
    );
    assert!(dom.contains("&lt;b&gt;check-output&lt;/b&gt;"), "{dom}");
    assert!(!dom.contains("<b>check-output"), "unescaped check output");
    drop(driver);
    daemon.stop(Duration::from_secs(30));
}
