//! Headless Chromium through chromedriver (WebDriver over HTTP), Debian's `chromium` and
//! `chromium-driver`: the dashboard tests load pages, click and type in a real browser.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http::request;

/// Whether Chromium and chromedriver are installed: false (after saying the test skips)
/// when not, except under CI=true, where their absence fails the test.
pub fn have_chromium() -> bool {
    let found =
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium or chromedriver is missing (scripts/test installs Debian's chromium and chromium-driver)"
        );
        eprintln!(
            "skipping: /usr/bin/chromium or /usr/bin/chromedriver missing (apt-get install chromium chromium-driver)"
        );
    }
    found
}

/// chromedriver in a process group of its own (the browsers it starts join it); the group
/// is killed on drop.
pub struct Driver {
    child: Child,
    addr: String,
    session: Option<String>,
}

impl Driver {
    pub fn start(log: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver {
            child,
            addr,
            session: None,
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let body = body.map(|b| b.to_string());
        let r = request(
            &self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_deref().map(str::as_bytes),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| panic!("{method} {path}: {}", r.text()));
        assert_eq!(r.code, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    pub fn new_session(&mut self, profile: &Path) {
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-breakpad",
                    "--disable-crash-reporter", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = self.call("POST", "/session", Some(caps));
        self.session = Some(v["sessionId"].as_str().unwrap().to_string());
    }

    pub fn s(&self) -> String {
        format!("/session/{}", self.session.as_deref().unwrap())
    }

    pub fn go(&self, url: &str) {
        self.call(
            "POST",
            &format!("{}/url", self.s()),
            Some(serde_json::json!({"url": url})),
        );
    }

    pub fn dom(&self) -> String {
        self.call("GET", &format!("{}/source", self.s()), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn url(&self) -> String {
        self.call("GET", &format!("{}/url", self.s()), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn click(&self, css: &str) {
        let e = self.call(
            "POST",
            &format!("{}/element", self.s()),
            Some(serde_json::json!({"using": "css selector", "value": css})),
        );
        let id = e["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_string();
        self.call(
            "POST",
            &format!("{}/element/{id}/click", self.s()),
            Some(serde_json::json!({})),
        );
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.call(
            "POST",
            &format!("{}/element", self.s()),
            Some(serde_json::json!({"using": "css selector", "value": css})),
        );
        let id = e["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_string();
        self.call(
            "POST",
            &format!("{}/element/{id}/value", self.s()),
            Some(serde_json::json!({ "text": text })),
        );
    }

    /// Saves a screenshot when ARCA_TEST_SCREENSHOT_DIR is set (to look at the page).
    pub fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("ARCA_TEST_SCREENSHOT_DIR") else {
            return;
        };
        let b64 = self.call("GET", &format!("{}/screenshot", self.s()), None);
        let png = base64_decode(b64.as_str().unwrap());
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                request(&self.addr, "DELETE", &self.s(), &[], None)
            }));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--"])
            .arg(format!("-{}", self.child.id()))
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::new();
    for quad in clean.chunks(4) {
        let pad = quad.iter().filter(|&&c| c == b'=').count();
        let n = quad.iter().fold(0u32, |acc, &c| {
            (acc << 6) | if c == b'=' { 0 } else { value(c) }
        });
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}
