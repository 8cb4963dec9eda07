//! Who the dashboard lets in (issue 15, part 3), against a real `arca daemon` on loopback
//! with two real local users: root (the daemon's user, and the tests') and `nobody`
//! (curl run through `setpriv`). One regression test per finding and per promise of
//! docs/SECURITY-dashboard.md: a local user without the token gets nothing, logout and
//! token rotation end sessions on the server, idle sessions expire, failed logins are
//! rate-limited and logged, and a browser (headless Chromium) logs in and out.
//!
//! curl, setpriv and Chromium are services of these tests: missing, a test skips on a
//! developer's machine and fails under CI=true (scripts/test installs them).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::daemon::{DaemonProcess, job_history, run_with_config, wait_for};
use crate::common::{Env, PASSWORD, bare_cmd, run_cmd, small_tree, tool_or_skip};

/// The content of the root-only file of the backed-up tree.
const SECRET: &str = "root-only secret content 5e1f\n";

/// Who runs curl.
#[derive(Clone, Copy)]
enum As {
    Root,
    Nobody,
}

struct Reply {
    code: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// `curl -s -i ARGS` as `who`; the status, head and body of the (last) response.
fn curl(who: As, args: &[&str]) -> Reply {
    let mut c = match who {
        As::Root => Command::new("curl"),
        As::Nobody => {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "curl",
            ]);
            c
        }
    };
    c.args(["-s", "-i", "--max-time", "30"])
        .args(args)
        .stdin(Stdio::null());
    let out = c.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("curl {args:?}: no response: {text:?}"));
    Reply {
        code,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Whether the services of these tests are here (see the module doc).
fn tools(test: &str) -> bool {
    tool_or_skip("curl", test) && tool_or_skip("setpriv", test)
}

/// A sandbox where `nobody` may walk every directory: only file modes keep it out.
struct Site {
    env: Env,
    config: PathBuf,
    daemon: DaemonProcess,
    addr: String,
    snapshot: String,
    secret_path: String,
}

impl Site {
    /// A daemon on 127.0.0.1 with `daemon_extra` in `[daemon]` and one finished run of the
    /// job `docs` over a tree holding a root-only 0600 file.
    fn start(daemon_extra: &str) -> Site {
        let env = Env::new();
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let src = env.path("src");
        small_tree(&src, 3, 15);
        let secret = src.join("secret.txt");
        std::fs::write(&secret, SECRET).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let repo = env.path("repo");
        let mut init = bare_cmd();
        init.arg("-r")
            .arg(&repo)
            .arg("init")
            .env("ARCA_PASSWORD", PASSWORD)
            .env("ARCA_INSECURE_TEST_KDF", "1");
        run_cmd(init, None).ok();
        std::fs::write(env.path("pw"), format!("{PASSWORD}\n")).unwrap();
        std::fs::set_permissions(env.path("pw"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = env.path("arca.toml");
        std::fs::write(
            &config,
            format!(
                "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"state/history.db\"\n\
                 {daemon_extra}\n\n[repositories.local]\nlocation = \"{}\"\n\
                 password_file = \"pw\"\n\n[jobs.docs]\nsources = [\"{}\"]\n\
                 repositories = [\"local\"]\nschedule = \"0 0 1 1 *\"\n",
                repo.display(),
                src.display()
            ),
        )
        .unwrap();
        run_with_config(&config, &["job", "run", "docs"]).ok();
        let runs = job_history(&config, "docs");
        let snapshot = runs[0]["snapshot_id"].as_str().unwrap().to_string();
        std::fs::set_permissions(env.path("state"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let daemon = DaemonProcess::start(&env, &config, &[("ARCA_WEB_REFRESH_SECS", "3600")]);
        let addr = daemon.addr();
        let secret_path = secret.to_str().unwrap().to_string();
        Site {
            env,
            config,
            daemon,
            addr,
            snapshot,
            secret_path,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn token_path(&self) -> PathBuf {
        self.env.path("state/dashboard.token")
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.token_path())
            .unwrap()
            .trim()
            .to_string()
    }

    fn download_url(&self) -> String {
        self.url(&format!(
            "/repositories/local/snapshots/{}/download?path={}",
            self.snapshot,
            self.secret_path.replace('/', "%2F")
        ))
    }

    /// POST /login with `token` from root's curl.
    fn login_with(&self, token: &str) -> Reply {
        let origin = format!("Origin: http://{}", self.addr);
        let body = format!("token={token}");
        curl(
            As::Root,
            &[
                "-H",
                &origin,
                "--data-urlencode",
                &body,
                &self.url("/login"),
            ],
        )
    }

    /// Logs in with the right token; the `arca_session=ID` pair of its cookie.
    fn login(&self) -> String {
        let r = self.login_with(&self.token());
        assert_eq!(r.code, 303, "login: {}{}", r.head, r.body);
        let set = r.header("set-cookie").expect("a session cookie");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "cookie without {attr}: {set}");
        }
        assert!(!set.contains(&self.token()), "the cookie carries the token");
        set.split(';').next().unwrap().to_string()
    }

    /// GET `path` with the session cookie `cookie`.
    fn get_with(&self, cookie: &str, path: &str) -> Reply {
        curl(
            As::Root,
            &["-H", &format!("Cookie: {cookie}"), &self.url(path)],
        )
    }

    fn bearer(&self, token: &str, path: &str) -> Reply {
        curl(
            As::Root,
            &[
                "-H",
                &format!("Authorization: Bearer {token}"),
                &self.url(path),
            ],
        )
    }
}

/// The form token in the first POST form of `page`.
fn form_token(page: &str) -> String {
    let key = "name=\"form_token\" value=\"";
    let at = page.find(key).expect("a form token") + key.len();
    page[at..].split('"').next().unwrap().to_string()
}

#[test]
fn a_local_user_without_the_token_gets_nothing() {
    if !tools("a_local_user_without_the_token_gets_nothing") {
        return;
    }
    // No token_file, no token_env: the daemon makes one and logs only where it is.
    let site = Site::start("");
    let token = site.token();
    assert_eq!(token.len(), 64, "a 32-byte hex token");
    let md = std::fs::symlink_metadata(site.token_path()).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    let log = site.daemon.log();
    assert!(
        log.contains(&format!(
            "dashboard token in {} (made now)",
            site.token_path().display()
        )),
        "{log}"
    );
    assert!(!log.contains(&token), "the daemon logged its token:\n{log}");
    // nobody cannot read the token (nor, as the issue found, the backed-up file).
    for path in [site.token_path().to_str().unwrap(), &site.secret_path] {
        let cat = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"])
            .arg(path)
            .output()
            .unwrap();
        assert!(!cat.status.success(), "nobody read {path}");
    }
    // The page: a login form (401) without any form token.
    let page = curl(As::Nobody, &["-H", "Accept: text/html", &site.url("/")]);
    assert_eq!(page.code, 401, "{}", page.body);
    assert!(page.body.contains("action=\"/login\""), "{}", page.body);
    assert!(!page.body.contains("form_token"), "{}", page.body);
    for path in ["/", "/api/status", "/metrics", "/jobs/docs"] {
        assert_eq!(curl(As::Nobody, &[&site.url(path)]).code, 401, "{path}");
    }
    // The snapshot browser's download of the root-only file.
    let download = curl(As::Nobody, &[&site.download_url()]);
    assert_eq!(download.code, 401);
    assert!(!download.body.contains(SECRET.trim()));
    // Starting a run, with every header a genuine dashboard POST could carry.
    let origin = format!("Origin: http://{}", site.addr);
    let runs_before = job_history(&site.config, "docs").len();
    for extra in [
        &["-H", "X-Arca-Request: 1"][..],
        &["-d", "form_token=00&back=/"],
    ] {
        let mut args = vec!["-X", "POST", "-H", &origin];
        args.extend_from_slice(extra);
        let url = site.url("/jobs/docs/run");
        args.push(&url);
        let r = curl(As::Nobody, &args);
        assert_eq!(r.code, 401, "{}", r.body);
    }
    // A cookie made up by nobody is no session either.
    let fake = curl(
        As::Nobody,
        &[
            "-H",
            &format!("Cookie: arca_session={}", "0".repeat(64)),
            &site.url("/"),
        ],
    );
    assert_eq!(fake.code, 401);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        job_history(&site.config, "docs").len(),
        runs_before,
        "a run was started"
    );
    // Root, with the token, gets all of it (the same URLs work: the 401s were the token).
    let ok = site.bearer(&token, "/metrics");
    assert_eq!(ok.code, 200, "{}", ok.body);
    assert!(ok.body.contains("arca_job_running"));
    assert_eq!(site.bearer(&token, "/api/status").code, 200);
    let got = curl(
        As::Root,
        &[
            "-H",
            &format!("Authorization: Bearer {token}"),
            &site.download_url(),
        ],
    );
    assert_eq!(got.code, 200, "{}", got.body);
    assert_eq!(got.body, SECRET);
    // A restart keeps the token file (sound: ours, 0600) and makes no new one.
    let token_path = site.token_path();
    let Site {
        env,
        config,
        daemon,
        ..
    } = site;
    daemon.stop(Duration::from_secs(30));
    let again = DaemonProcess::start(&env, &config, &[]);
    again.addr();
    assert!(again.log().contains("(kept)"), "{}", again.log());
    assert_eq!(std::fs::read_to_string(token_path).unwrap().trim(), token);
    again.stop(Duration::from_secs(30));
}

#[test]
fn logout_ends_the_session() {
    if !tools("logout_ends_the_session") {
        return;
    }
    let site = Site::start("");
    let cookie = site.login();
    let page = site.get_with(&cookie, "/");
    assert_eq!(page.code, 200, "{}", page.body);
    assert!(page.body.contains("action=\"/logout\""), "{}", page.body);
    let form = form_token(&page.body);
    assert_ne!(form, site.token(), "the form token is the token");
    // Another session has another form token.
    let other = site.login();
    assert_ne!(form, form_token(&site.get_with(&other, "/").body));
    let origin = format!("Origin: http://{}", site.addr);
    let out = curl(
        As::Root,
        &[
            "-H",
            &format!("Cookie: {cookie}"),
            "-H",
            &origin,
            "-d",
            &format!("form_token={form}"),
            &site.url("/logout"),
        ],
    );
    assert_eq!(out.code, 303, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    // The old cookie, kept by whoever copied it, is refused everywhere.
    assert_eq!(site.get_with(&cookie, "/").code, 401);
    assert_eq!(site.get_with(&cookie, "/api/status").code, 401);
    let run = curl(
        As::Root,
        &[
            "-H",
            &format!("Cookie: {cookie}"),
            "-H",
            &origin,
            "-d",
            &format!("form_token={form}"),
            &site.url("/jobs/docs/run"),
        ],
    );
    assert_eq!(run.code, 401);
    // The other session lives on.
    assert_eq!(site.get_with(&other, "/").code, 200);
}

#[test]
fn idle_sessions_expire() {
    if !tools("idle_sessions_expire") {
        return;
    }
    let site = Site::start("session_idle = \"2s\"");
    let cookie = site.login();
    // Used every second, it stays (each use counts).
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(site.get_with(&cookie, "/api/status").code, 200);
    }
    // Unused for longer than session_idle, it is gone.
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(site.get_with(&cookie, "/api/status").code, 401);
    assert_eq!(site.get_with(&cookie, "/").code, 401);
    // The bearer token is no session: it does not expire.
    assert_eq!(site.bearer(&site.token(), "/api/status").code, 200);
}

#[test]
fn token_rotation_ends_sessions() {
    if !tools("token_rotation_ends_sessions") {
        return;
    }
    let site = Site::start("");
    let old = site.token();
    let cookie = site.login();
    assert_eq!(site.get_with(&cookie, "/").code, 200);
    // A new token written into the file (as an operator would: new file, renamed).
    let new = "f".repeat(64);
    let tmp = site.env.path("state/new.token");
    std::fs::write(&tmp, format!("{new}\n")).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, site.token_path()).unwrap();
    assert_eq!(
        site.get_with(&cookie, "/").code,
        401,
        "a session outlived the token"
    );
    assert_eq!(site.bearer(&old, "/api/status").code, 401);
    assert_eq!(site.bearer(&new, "/api/status").code, 200);
    let fresh = site.login();
    assert_eq!(site.get_with(&fresh, "/").code, 200);
    // A configured token_file rotates the same way.
    let file = site.env.path("web.token");
    std::fs::write(&file, "first-configured-token\n").unwrap();
    let text = std::fs::read_to_string(&site.config).unwrap();
    let text = text.replace("[daemon]\n", "[daemon]\ntoken_file = \"web.token\"\n");
    std::fs::write(&site.config, text).unwrap();
    site.daemon.signal("HUP");
    site.daemon
        .wait_log("configuration reloaded", Duration::from_secs(15));
    // The reload changed the token: the session made with the generated one is gone.
    assert_eq!(site.get_with(&fresh, "/").code, 401);
    let configured = site.login_with("first-configured-token");
    assert_eq!(configured.code, 303);
    let cookie = configured.header("set-cookie").unwrap();
    let cookie = cookie.split(';').next().unwrap();
    assert_eq!(site.get_with(cookie, "/").code, 200);
    std::fs::write(&file, "second-configured-token\n").unwrap();
    assert_eq!(site.get_with(cookie, "/").code, 401);
    assert_eq!(
        site.bearer("second-configured-token", "/api/status").code,
        200
    );
    // A restart ends every session, also with an unchanged token.
    let last = site.login_with("second-configured-token");
    let last = last.header("set-cookie").unwrap();
    let last = last.split(';').next().unwrap().to_string();
    assert_eq!(site.get_with(&last, "/").code, 200);
    let Site {
        env,
        config,
        daemon,
        ..
    } = site;
    daemon.stop(Duration::from_secs(30));
    let again = DaemonProcess::start(&env, &config, &[]);
    let addr = again.addr();
    let r = curl(
        As::Root,
        &["-H", &format!("Cookie: {last}"), &format!("http://{addr}/")],
    );
    assert_eq!(r.code, 401, "a session outlived the restart");
    again.stop(Duration::from_secs(30));
}

#[test]
fn failed_logins_are_rate_limited_and_logged() {
    if !tools("failed_logins_are_rate_limited_and_logged") {
        return;
    }
    let site = Site::start("");
    let wrong = "wrong-guess-7c41d9";
    for i in 1..=4 {
        let r = site.login_with(wrong);
        assert_eq!(r.code, 401, "attempt {i}");
        assert!(r.header("set-cookie").is_none());
    }
    // The fifth wrong token within a minute locks the address.
    let locked = site.login_with(wrong);
    assert_eq!(locked.code, 429, "{}", locked.body);
    let retry: u64 = locked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // While locked even the right token is refused (not even compared), and so is a
    // bearer token from that address.
    assert_eq!(site.login_with(&site.token()).code, 429);
    let bearer = site.bearer(&site.token(), "/api/status");
    assert_eq!(bearer.code, 429);
    assert!(bearer.header("retry-after").is_some());
    // Logged with the client's address, never with the token tried.
    let log = site.daemon.log();
    assert!(
        log.contains("dashboard: wrong token peer=127.0.0.1 via=login form"),
        "{log}"
    );
    assert!(log.contains("address locked out peer=127.0.0.1"), "{log}");
    assert!(!log.contains(wrong), "the log has the token tried:\n{log}");
    assert!(
        !log.contains(&site.token()),
        "the log has the token:\n{log}"
    );
    // After the lock, the right token gets in; a wrong bearer is counted too.
    std::thread::sleep(Duration::from_secs(retry + 1));
    site.login();
    assert_eq!(site.bearer(wrong, "/metrics").code, 401);
    wait_for(
        "the bearer failure in the log",
        Duration::from_secs(5),
        || site.daemon.log().contains("via=bearer"),
    );
    assert!(!site.daemon.log().contains(wrong));
}

// ---------------------------------------------------------------------------------------
// Headless Chromium through chromedriver (WebDriver over HTTP, spoken with curl)

struct Browser {
    driver: std::process::Child,
    base: String,
}

impl Browser {
    fn start(env: &Env) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = std::process::Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.path("chromedriver.log")).unwrap())
            .spawn()
            .expect("start chromedriver");
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_for("chromedriver", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let profile = env.path("chromium-profile");
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-breakpad", "--disable-crash-reporter",
                    format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.base = format!("{}/session/{}", b.base, v["sessionId"].as_str().unwrap());
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let url = format!("{}{path}", self.base);
        let body = body.map(|b| b.to_string());
        let mut args = vec!["-X", method, "-H", "Content-Type: application/json"];
        if let Some(b) = &body {
            args.extend(["-d", b.as_str()]);
        }
        args.push(&url);
        let r = curl(As::Root, &args);
        let v: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{method} {path}: {}", r.body));
        assert_eq!(r.code, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(serde_json::json!({ "url": url })));
    }

    fn dom(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn element(&self, css: &str) -> String {
        let e = self.call(
            "POST",
            "/element",
            Some(serde_json::json!({"using": "css selector", "value": css})),
        );
        e["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/click"),
            Some(serde_json::json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(serde_json::json!({ "text": text })),
        );
    }

    /// The `name=value` of the browser's cookie `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        let all = self.call("GET", "/cookie", None);
        all.as_array()?.iter().find_map(|c| {
            (c["name"] == name).then(|| format!("{name}={}", c["value"].as_str().unwrap_or("")))
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = self.base.clone();
        let _ = Command::new("curl")
            .args(["-s", "-X", "DELETE", "--max-time", "10", &url])
            .stdout(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn have_chromium(test: &str) -> bool {
    let found =
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: chromium or chromedriver is missing (scripts/test installs them)"
        );
        eprintln!("{test}: skipped, /usr/bin/chromium or /usr/bin/chromedriver is missing");
    }
    found
}

#[test]
fn a_browser_logs_in_and_logging_out_ends_its_session() {
    let test = "a_browser_logs_in_and_logging_out_ends_its_session";
    if !tools(test) || !have_chromium(test) {
        return;
    }
    let site = Site::start("");
    let b = Browser::start(&site.env);
    b.go(&site.url("/"));
    let dom = b.dom();
    assert!(dom.contains("action=\"/login\""), "{dom}");
    assert!(!dom.contains("data-job=\"docs\""), "{dom}");
    b.type_into("input[name=\"token\"]", &site.token());
    b.click("form[action=\"/login\"] button");
    wait_for("the overview after login", Duration::from_secs(15), || {
        b.dom().contains("data-job=\"docs\"")
    });
    let cookie = b.cookie("arca_session").expect("the session cookie");
    assert_eq!(site.get_with(&cookie, "/").code, 200);
    b.click("form[action=\"/logout\"] button");
    wait_for(
        "the login page after logout",
        Duration::from_secs(15),
        || b.dom().contains("action=\"/login\""),
    );
    b.go(&site.url("/"));
    let dom = b.dom();
    assert!(dom.contains("action=\"/login\""), "{dom}");
    assert!(!dom.contains("data-job=\"docs\""), "{dom}");
    // The cookie the browser had is dead on the server too.
    assert_eq!(site.get_with(&cookie, "/").code, 401);
}
