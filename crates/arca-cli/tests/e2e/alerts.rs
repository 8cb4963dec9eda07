//! `arca alert test` end to end against real receivers on loopback: an HTTP server (a
//! thread on std's TcpListener) records the webhook bodies of every template; a command
//! gets the alert as JSON on stdin; aiosmtpd (PyPI, installed by
//! scripts/services/smtp.sh) receives email over STARTTLS (a test CA made with openssl,
//! trusted through SSL_CERT_FILE) and over plain SMTP. Without aiosmtpd or openssl the SMTP
//! test fails under CI=true and is skipped otherwise.

use crate::common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Received, WebhookReceiver};
use crate::common::{Out, bare_cmd, run_cmd};
use serde_json::Value;

fn arca(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = bare_cmd();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run_cmd(c, None)
}

/// A webhook receiver on loopback answering every request with `status` and `answer`: its
/// URL and what it got (common::daemon::WebhookReceiver).
fn webhook_receiver(status: u16, answer: &'static str) -> (String, Received) {
    let r = WebhookReceiver::start(status, answer);
    (r.url, r.got)
}

fn bodies(got: &Received) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .map(|(_, _, b)| serde_json::from_slice(b).unwrap())
        .collect()
}

#[test]
fn webhook_templates_reach_a_real_http_server() {
    let (url, got) = webhook_receiver(200, r#"{"errcode":0,"code":0,"ok":true}"#);
    let hook = format!("{url}/hooks/secret-token");
    for template in ["generic", "slack", "dingtalk", "feishu"] {
        let out = arca(
            &["alert", "test", "--webhook", &hook, "--template", template],
            &[],
        )
        .ok();
        assert!(out.stdout_str().contains("sent a test alert"));
        // The token in the URL's path is not printed.
        assert!(
            !out.stdout_str().contains("secret-token"),
            "{}",
            out.stdout_str()
        );
    }
    let b = bodies(&got);
    assert_eq!(b.len(), 4);
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .all(|(p, _, _)| p == "/hooks/secret-token")
    );
    // generic: the alert itself.
    assert_eq!(b[0]["source"], "arca");
    assert_eq!(b[0]["rule"], "test");
    assert_eq!(b[0]["state"], "firing");
    assert_eq!(b[0]["severity"], "info");
    assert!(b[0]["summary"].as_str().unwrap().contains("test message"));
    assert!(b[0]["details"]["host"].is_string());
    assert!(b[0]["time"].as_str().unwrap().ends_with('Z'));
    // slack: text + an attachment.
    assert!(
        b[1]["text"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING] info test test")
    );
    assert!(b[1]["attachments"][0]["fields"].as_array().unwrap().len() >= 4);
    // dingtalk: markdown.
    assert_eq!(b[2]["msgtype"], "markdown");
    assert!(
        b[2]["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("- job: test")
    );
    // feishu: text.
    assert_eq!(b[3]["msg_type"], "text");
    assert!(
        b[3]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("test message")
    );

    // --resolve sends the resolve after the firing message; headers are passed.
    let out = arca(
        &[
            "alert",
            "test",
            "--webhook",
            &hook,
            "--resolve",
            "--json",
            "--header",
            "X-Token: abc",
        ],
        &[],
    )
    .ok();
    assert_eq!(out.json_lines().len(), 2);
    let b = bodies(&got);
    assert_eq!(b.len(), 6);
    assert_eq!(b[4]["state"], "firing");
    assert_eq!(b[5]["state"], "resolved");
    assert!(b[5]["summary"].as_str().unwrap().starts_with("resolved: "));
}

#[test]
fn signed_webhooks_carry_the_robots_signatures() {
    let (url, got) = webhook_receiver(200, r#"{"errcode":0,"code":0}"#);
    let hook = format!("{url}/robot/send?access_token=abc");
    let secret = [("ARCA_TEST_HOOK_SECRET", "SEC123abc")];
    for template in ["dingtalk", "feishu", "generic"] {
        arca(
            &[
                "alert",
                "test",
                "--webhook",
                &hook,
                "--template",
                template,
                "--secret-env",
                "ARCA_TEST_HOOK_SECRET",
            ],
            &secret,
        )
        .ok();
    }
    let got = got.lock().unwrap().clone();
    // DingTalk: timestamp (ms) and the URL-encoded sign appended to the query.
    let (path, _, _) = &got[0];
    assert!(
        path.starts_with("/robot/send?access_token=abc&timestamp="),
        "{path}"
    );
    let sign = path.split("&sign=").nth(1).unwrap();
    assert!(sign.ends_with("%3D"), "base64 padding URL-encoded: {sign}");
    // Feishu: timestamp (s) and sign in the body.
    let feishu: Value = serde_json::from_slice(&got[1].2).unwrap();
    assert_eq!(feishu["timestamp"].as_str().unwrap().len(), 10);
    assert_eq!(feishu["sign"].as_str().unwrap().len(), 44);
    // Generic: HMAC-SHA256 of the body in a header.
    let header = got[2]
        .1
        .iter()
        .find(|(k, _)| k == "x-arca-signature")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        header.starts_with("sha256=") && header.len() == 7 + 64,
        "{header}"
    );
    // A missing secret variable and a secret for Slack are refused.
    arca(
        &[
            "alert",
            "test",
            "--webhook",
            &hook,
            "--secret-env",
            "ARCA_TEST_NO_SUCH_VAR",
        ],
        &[],
    )
    .code(1)
    .says("ARCA_TEST_NO_SUCH_VAR");
    arca(
        &[
            "alert",
            "test",
            "--webhook",
            &hook,
            "--template",
            "slack",
            "--secret-env",
            "ARCA_TEST_HOOK_SECRET",
        ],
        &secret,
    )
    .code(1)
    .says("no signing secret");
}

#[test]
fn webhook_errors_are_reported() {
    let (url, _got) = webhook_receiver(500, "broken");
    arca(&["alert", "test", "--webhook", &url], &[])
        .code(1)
        .says("answered 500");
    // DingTalk answers 200 with an error code in the body.
    let (url, _got) = webhook_receiver(
        200,
        r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
    );
    arca(
        &["alert", "test", "--webhook", &url, "--template", "dingtalk"],
        &[],
    )
    .code(1)
    .says("keywords not in content");
    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    arca(
        &[
            "alert",
            "test",
            "--webhook",
            &format!("http://127.0.0.1:{port}/x"),
            "--timeout",
            "3s",
        ],
        &[],
    )
    .code(1)
    .says("webhook http://127.0.0.1");
}

#[test]
fn command_channel_gets_the_alert_as_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alert.json");
    let cmd = format!(
        "cat > '{}'; test \"$ARCA_ALERT_STATE\" = firing",
        file.display()
    );
    arca(&["alert", "test", "--command", &cmd], &[]).ok();
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(v["rule"], "test");
    assert_eq!(v["state"], "firing");
    assert_eq!(v["job"], "test");
    // A failing command and a command that hangs fail the test message.
    arca(
        &["alert", "test", "--command", "echo nope >&2; exit 3"],
        &[],
    )
    .code(1)
    .says("exited with code 3: nope");
    let start = Instant::now();
    arca(
        &[
            "alert",
            "test",
            "--command",
            "sleep 60",
            "--timeout",
            "300ms",
        ],
        &[],
    )
    .code(1)
    .says("timed out");
    assert!(start.elapsed() < Duration::from_secs(20));
    // No channel given.
    arca(&["alert", "test"], &[]).fails();
}

// ---------------------------------------------------------------------------------------
// SMTP

/// Fails under CI=true, otherwise prints why and returns false.
fn missing(what: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} (required under CI=true)");
    }
    eprintln!("skipping: {what}");
    false
}

/// The python of a virtualenv with aiosmtpd (installed by scripts/services/smtp.sh).
fn aiosmtpd_python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ARCA_TEST_AIOSMTPD") {
        return Some(PathBuf::from(p));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/smtp.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("install")
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim()
        .strip_prefix("export ARCA_TEST_AIOSMTPD=")
        .map(PathBuf::from)
}

/// A running aiosmtpd, killed (by pid) when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_smtp(python: &Path, dir: &Path, name: &str, tls: Option<(&Path, &Path)>) -> SmtpServer {
    let port = free_port();
    let maildir = dir.join(name);
    let mut c = Command::new(python);
    c.args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"]);
    if let Some((cert, key)) = tls {
        c.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
    }
    c.arg(&maildir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join(format!("{name}.log"))).unwrap(),
        ));
    let child = c.spawn().expect("start aiosmtpd");
    let server = SmtpServer {
        child,
        port,
        maildir,
    };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "aiosmtpd did not listen on {port}: {}",
            std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn messages(maildir: &Path) -> Vec<String> {
    common::list_files(&maildir.join("new"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// A CA and a certificate for localhost signed by it: (ca.pem, server.pem, server.key).
fn make_certs(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=arca test CA",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let _ = (&ca_key, &csr);
    ok.then_some((ca, cert, key))
}

#[test]
fn email_over_starttls_and_plain_smtp_reaches_a_real_server() {
    let Some(python) = aiosmtpd_python() else {
        missing("aiosmtpd could not be installed (scripts/services/smtp.sh install)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = make_certs(dir.path()) else {
        missing("openssl could not make a test certificate");
        return;
    };
    let tls = start_smtp(&python, dir.path(), "tls", Some((&cert, &key)));
    let plain = start_smtp(&python, dir.path(), "plain", None);

    // STARTTLS, the certificate checked against the test CA.
    let ca_env = ca.to_str().unwrap();
    arca(
        &[
            "alert",
            "test",
            "--smtp",
            &format!("localhost:{}", tls.port),
            "--from",
            "arca@example.com",
            "--to",
            "ops@example.com",
            "--to",
            "dba@example.com",
        ],
        &[("SSL_CERT_FILE", ca_env)],
    )
    .ok()
    .says("sent a test alert");
    let got = messages(&tls.maildir);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("Subject: [FIRING] info test test"),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains("To: ops@example.com, dba@example.com"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("test message from arca"));

    // Without trusting the CA, STARTTLS refuses the server's certificate.
    arca(
        &[
            "alert",
            "test",
            "--smtp",
            &format!("localhost:{}", tls.port),
            "--to",
            "ops@example.com",
            "--timeout",
            "5s",
        ],
        &[("SSL_CERT_FILE", "/dev/null")],
    )
    .code(1)
    .says("email via localhost");
    assert_eq!(messages(&tls.maildir).len(), 1);

    // Plain SMTP to a loopback server, firing and resolved.
    arca(
        &[
            "alert",
            "test",
            "--smtp",
            &format!("127.0.0.1:{}", plain.port),
            "--smtp-security",
            "plain",
            "--to",
            "ops@example.com",
            "--resolve",
        ],
        &[],
    )
    .ok();
    let got = messages(&plain.maildir);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().any(|m| m.contains("Subject: [RESOLVED]")));
    // Plain SMTP is refused to anything but loopback.
    arca(
        &[
            "alert",
            "test",
            "--smtp",
            "mail.example.com:25",
            "--smtp-security",
            "plain",
            "--to",
            "ops@example.com",
        ],
        &[],
    )
    .code(1)
    .says("only to a loopback server");
}
