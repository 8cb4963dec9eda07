//! Helpers of the tests that run a real `arca daemon`: the process (killed on drop, also
//! when a test panics; its stderr log kept in a file), and an HTTP receiver on loopback
//! that records what webhooks post to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Env, PASSWORD, bare_cmd};

/// `arca --config FILE` with a clean environment, the test KDF and the password variable
/// `ARCA_TEST_DAEMON_PW`.
pub fn arca_with_config(config: &Path) -> Command {
    let mut c = bare_cmd();
    c.arg("--config").arg(config);
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_TEST_DAEMON_PW", PASSWORD);
    c
}

/// Runs `arca --config CONFIG ARGS` (see [`arca_with_config`]).
pub fn run_with_config(config: &Path, args: &[&str]) -> super::Out {
    let mut c = arca_with_config(config);
    c.args(args);
    super::run_cmd(c, None)
}

/// Every run of `job` in the history, newest first (`arca history --json`).
pub fn job_history(config: &Path, job: &str) -> Vec<serde_json::Value> {
    let out = run_with_config(config, &["history", "--job", job, "--limit", "0", "--json"]).ok();
    out.json().as_array().cloned().unwrap_or_default()
}

/// A running `arca daemon`; killed on drop.
pub struct DaemonProcess {
    child: Option<Child>,
    pub stderr: PathBuf,
}

impl DaemonProcess {
    /// Starts `arca --config CONFIG daemon` with extra environment variables.
    pub fn start(env: &Env, config: &Path, vars: &[(&str, &str)]) -> DaemonProcess {
        let stderr = env.path(&format!(
            "daemon-{}.err",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut c = arca_with_config(config);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.arg("daemon")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let child = c.spawn().expect("start arca daemon");
        DaemonProcess {
            child: Some(child),
            stderr,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < within,
                "the daemon did not log {needle:?} within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Sends signal `sig` (a name such as `HUP`) to the daemon.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} failed");
    }

    /// The address to reach the daemon at (from "listening on http://ADDR/" in its log;
    /// an unspecified address such as 0.0.0.0 is reached on 127.0.0.1).
    pub fn addr(&self) -> String {
        self.wait_log("listening on http://", Duration::from_secs(15));
        let log = self.log();
        let at = log.find("listening on http://").unwrap() + "listening on http://".len();
        let addr = log[at..].split('/').next().unwrap().to_string();
        match addr.strip_prefix("0.0.0.0:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => addr,
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn stop(mut self, within: Duration) -> i32 {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if start.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon did not stop within {within:?} of SIGTERM\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One request a [`WebhookReceiver`] got: path, headers (lower-case names), body.
pub type Received = Arc<Mutex<Vec<(String, Vec<(String, String)>, Vec<u8>)>>>;

/// An HTTP server on loopback that answers every request with `status` and `answer`, and
/// records it.
pub struct WebhookReceiver {
    pub url: String,
    pub got: Received,
}

impl WebhookReceiver {
    pub fn start(status: u16, answer: &'static str) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got: Received = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = serve(conn, &sink, status, answer);
            }
        });
        WebhookReceiver { url, got }
    }

    /// The JSON bodies received so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, _, b)| serde_json::from_slice(b).ok())
            .collect()
    }
}

fn serve(conn: TcpStream, sink: &Received, status: u16, answer: &str) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut length = 0usize;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    sink.lock().unwrap().push((path, headers, body));
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    conn.flush()
}

/// Polls `f` every 200 ms until it holds, failing after `within`.
pub fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
