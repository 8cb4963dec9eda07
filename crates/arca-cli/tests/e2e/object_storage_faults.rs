//! Object storage through a fault-injecting HTTP proxy on loopback, between `arca` and the
//! moto S3 server of scripts/services/s3.sh: a share of requests is answered 500/503, dropped
//! without an answer or delayed. Backups, restores and prunes must complete with correct
//! data; a server that stays down past the retry budget must give a clear error and leave a
//! valid repository.
//!
//! The proxy can also refuse every delete with 403 AccessDenied, the answer S3 gives a
//! credential whose policy denies `s3:DeleteObject` (a backup host's credential): backups
//! must go on, `forget`/`prune`/`key passwd` must refuse before removing anything.
//!
//! The proxy forwards each request on a fresh upstream connection (`Connection: close`) and
//! relays the answer; it understands requests with a `Content-Length` body, which is what
//! OpenDAL sends.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{Env, Out, assert_same_tree, restored_path, run_cmd, write_random};

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

/// What the proxy does to requests.
#[derive(Default)]
struct ProxyState {
    stop: AtomicBool,
    /// Per mille of requests answered 500 or 503.
    error_per_mille: AtomicU32,
    /// Per mille of requests whose connection is dropped without an answer.
    drop_per_mille: AtomicU32,
    /// Per mille of requests delayed by [`SLOW`] before they are forwarded.
    slow_per_mille: AtomicU32,
    /// Requests seen after which every request is dropped (the server is down).
    down_after: AtomicU64,
    requests: AtomicU64,
    /// Requests being served now, and the most at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Delay of every request in milliseconds (0: none).
    delay_ms: AtomicU64,
    /// Answer every delete (DELETE, and POST ?delete batches) 403 AccessDenied.
    deny_deletes: AtomicBool,
    denied: AtomicU64,
    errors: AtomicU64,
    drops: AtomicU64,
    slows: AtomicU64,
    rng: Mutex<u64>,
}

const SLOW: Duration = Duration::from_millis(700);

impl ProxyState {
    fn roll(&self) -> u32 {
        let mut x = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x % 1000) as u32
    }
}

/// A fault-injecting proxy in front of `upstream`; stopped (and its thread joined) on drop.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            down_after: AtomicU64::new(u64::MAX),
            rng: Mutex::new(0x2545_f491_4f6c_dd1d),
            ..Default::default()
        });
        let st = state.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, upstream, &st));
            }
        });
        Proxy {
            addr,
            state,
            accept: Some(accept),
        }
    }

    fn faults(&self, errors: u32, drops: u32, slow: u32) {
        self.state.error_per_mille.store(errors, Ordering::SeqCst);
        self.state.drop_per_mille.store(drops, Ordering::SeqCst);
        self.state.slow_per_mille.store(slow, Ordering::SeqCst);
    }

    fn injected(&self) -> (u64, u64, u64) {
        let s = &self.state;
        (
            s.errors.load(Ordering::SeqCst),
            s.drops.load(Ordering::SeqCst),
            s.slows.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// One request: the head (request line and headers, CRLF-terminated) and the body.
struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length = head
        .iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    assert!(
        !head
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding:")),
        "the proxy handles only Content-Length bodies: {head:?}"
    );
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).ok()?;
    Some(Request { head, body })
}

fn error_response(status: u16) -> Vec<u8> {
    let (reason, code) = match status {
        503 => ("Slow Down", "SlowDown"),
        403 => ("Forbidden", "AccessDenied"),
        _ => ("Internal Server Error", "InternalError"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>injected by the test proxy</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Forwards `req` on a new upstream connection and returns the whole answer.
fn forward(req: &Request, upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream)?;
    let mut out = Vec::with_capacity(req.body.len() + 1024);
    for (i, h) in req.head.iter().enumerate() {
        if i > 0 && h.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&req.body);
    up.write_all(&out)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    Ok(answer)
}

/// Serves one request of a client connection, then closes it (the upstream closed after its
/// answer too; the client reconnects for the next request).
fn serve(conn: TcpStream, upstream: SocketAddr, st: &ProxyState) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let Some(req) = read_request(&mut reader) else {
        return;
    };
    if st.stop.load(Ordering::SeqCst) {
        return;
    }
    let n = st.requests.fetch_add(1, Ordering::SeqCst);
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    struct Done<'a>(&'a AtomicU64);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _done = Done(&st.in_flight);
    let delay = st.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    let line = req
        .head
        .first()
        .map(|l| l.to_ascii_uppercase())
        .unwrap_or_default();
    let is_delete =
        line.starts_with("DELETE ") || (line.starts_with("POST ") && line.contains("?DELETE"));
    if is_delete && st.deny_deletes.load(Ordering::SeqCst) {
        st.denied.fetch_add(1, Ordering::SeqCst);
        let _ = writer.write_all(&error_response(403));
        let _ = writer.shutdown(Shutdown::Both);
        return;
    }
    let roll = st.roll();
    let errors = st.error_per_mille.load(Ordering::SeqCst);
    let drops = errors + st.drop_per_mille.load(Ordering::SeqCst);
    let slow = drops + st.slow_per_mille.load(Ordering::SeqCst);
    if n >= st.down_after.load(Ordering::SeqCst) || (roll >= errors && roll < drops) {
        st.drops.fetch_add(1, Ordering::SeqCst);
    } else if roll < errors {
        st.errors.fetch_add(1, Ordering::SeqCst);
        let status = if roll.is_multiple_of(2) { 503 } else { 500 };
        let _ = writer.write_all(&error_response(status));
    } else {
        if roll < slow {
            st.slows.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(SLOW);
        }
        if let Ok(answer) = forward(&req, upstream) {
            let _ = writer.write_all(&answer);
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// The moto endpoint's address and the bucket, from `s3:http://HOST:PORT/BUCKET`.
fn upstream(base: &str) -> (SocketAddr, String) {
    let rest = base.trim_start_matches("s3:http://");
    let (host, bucket) = rest.split_once('/').expect("s3:http://HOST:PORT/BUCKET");
    (host.parse().expect("HOST:PORT"), bucket.to_string())
}

fn arca(env: &Env, repo: &str, extra_env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .env("ARCA_CACHE_DIR", env.path("cache"))
        .envs(extra_env.iter().copied())
        .arg("-r")
        .arg(repo)
        .args(args);
    run_cmd(c, None)
}

fn make_source(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    for d in 0..4 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..5 {
            write_random(
                &dir.join(format!("f{f}")),
                (d * 10 + f) as u64,
                50_000 * (f + 1),
            );
        }
    }
    write_random(&src.join("large"), 99, 9 << 20);
    src
}

#[test]
fn backup_restore_prune_through_a_faulty_proxy() {
    let Some(base) = s3_base() else { return };
    let (up, bucket) = upstream(&base);
    let proxy = Proxy::start(up);
    let env = Env::new();
    let repo = format!(
        "s3:http://{}/{bucket}/faults-{}-{}",
        proxy.addr,
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    let src = make_source(&env);
    // A generous budget: at 20% faults, 12 failures in a row are out of reach.
    let retry = [("ARCA_RETRY_ATTEMPTS", "12"), ("ARCA_RETRY_BASE_MS", "20")];
    proxy.faults(100, 50, 50);
    arca(&env, &repo, &retry, &["init"]).ok();
    arca(
        &env,
        &repo,
        &retry,
        &["backup", "-q", src.to_str().unwrap()],
    )
    .ok();
    std::fs::write(src.join("d0/new"), "a new file\n").unwrap();
    std::fs::remove_file(src.join("d1/f0")).unwrap();
    arca(
        &env,
        &repo,
        &retry,
        &["backup", "-q", src.to_str().unwrap()],
    )
    .ok();
    let target = env.path("out");
    arca(
        &env,
        &repo,
        &retry,
        &[
            "--no-cache",
            "restore",
            "latest",
            "--verify",
            "-q",
            "--target",
            target.to_str().unwrap(),
        ],
    )
    .ok();
    assert_same_tree(&src, &restored_path(&target, &src));
    arca(
        &env,
        &repo,
        &retry,
        &[
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--max-unused",
            "0%",
            "-q",
        ],
    )
    .ok();
    let (errors, drops, slows) = proxy.injected();
    let requests = proxy.state.requests.load(Ordering::SeqCst);
    eprintln!("{requests} requests: {errors} answered 500/503, {drops} dropped, {slows} slow");
    assert!(
        errors >= 5 && drops >= 2,
        "faults were injected: {errors} {drops}"
    );
    // Judge the result without faults.
    proxy.faults(0, 0, 0);
    arca(&env, &repo, &[], &["check", "--read-data"]).ok();
    let target = env.path("out2");
    arca(
        &env,
        &repo,
        &[],
        &[
            "restore",
            "latest",
            "-q",
            "--target",
            target.to_str().unwrap(),
        ],
    )
    .ok();
    assert_same_tree(&src, &restored_path(&target, &src));
    let bytes: u64 = common::list_files(&src)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let faulted = errors + drops + slows;
    // Figures for docs/RELIABILITY.md (scripts/torture runs this test too); the byte
    // comparisons above would have failed the test on any difference.
    eprintln!(
        "TORTURE-FIGURE backup_restore_prune_through_a_faulty_proxy: {requests} S3 requests \
         through the proxy, {faulted} of them faulted on purpose ({}%: {errors} answered \
         500/503, {drops} dropped, {slows} delayed 0.7 s); two backups, restore --verify and \
         forget --prune completed, check --read-data passed, both restores byte for byte \
         ({bytes} bytes each), bytes differing 0",
        faulted * 100 / requests.max(1)
    );
    eprintln!("TORTURE-TOTAL faults {requests} {faulted} 0");
}

#[test]
fn server_down_past_the_retry_budget_fails_clearly_and_leaves_a_valid_repository() {
    let Some(base) = s3_base() else { return };
    let (up, bucket) = upstream(&base);
    let proxy = Proxy::start(up);
    let env = Env::new();
    let repo = format!(
        "s3:http://{}/{bucket}/down-{}-{}",
        proxy.addr,
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    let src = make_source(&env);
    arca(&env, &repo, &[], &["init"]).ok();
    arca(&env, &repo, &[], &["backup", "-q", src.to_str().unwrap()]).ok();
    std::fs::write(src.join("d2/changed"), "x".repeat(100_000)).unwrap();
    // The server goes away a few requests into the next backup.
    let seen = proxy.state.requests.load(Ordering::SeqCst);
    proxy.state.down_after.store(seen + 8, Ordering::SeqCst);
    let start = Instant::now();
    let out = arca(
        &env,
        &repo,
        &[("ARCA_RETRY_ATTEMPTS", "3"), ("ARCA_RETRY_BASE_MS", "50")],
        &["backup", "-q", src.to_str().unwrap()],
    )
    .fails()
    .says("gave up after 3 attempts")
    .says(&proxy.addr.to_string());
    eprintln!("{}", out.stderr);
    let gave_up = start.elapsed();
    assert!(gave_up < Duration::from_secs(60), "gave up in {gave_up:?}");
    // Back up: the repository is valid, holds the first snapshot, and takes new ones.
    proxy.state.down_after.store(u64::MAX, Ordering::SeqCst);
    arca(&env, &repo, &[], &["check"]).ok();
    let snaps = arca(&env, &repo, &[], &["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
    arca(&env, &repo, &[], &["backup", "-q", src.to_str().unwrap()]).ok();
    let target = env.path("out");
    arca(
        &env,
        &repo,
        &[],
        &[
            "restore",
            "latest",
            "-q",
            "--target",
            target.to_str().unwrap(),
        ],
    )
    .ok();
    assert_same_tree(&src, &restored_path(&target, &src));
    let said = out
        .stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    eprintln!(
        "TORTURE-FIGURE server_down_past_the_retry_budget: a backup whose server went away \
         mid-run gave up after {:.1} s (3 attempts) saying \"{said}\"; the repository checked \
         valid with its earlier snapshot, and the next backup restored byte for byte",
        gave_up.as_secs_f64()
    );
}

#[test]
fn a_credential_that_may_not_delete_keeps_backing_up_and_refuses_to_remove() {
    let Some(base) = s3_base() else { return };
    let (up, bucket) = upstream(&base);
    let proxy = Proxy::start(up);
    let env = Env::new();
    let name = format!(
        "nodelete-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    let through_proxy = format!("s3:http://{}/{bucket}/{name}", proxy.addr);
    let direct = format!("{base}/{name}");
    let src = make_source(&env);
    arca(&env, &direct, &[], &["init"]).ok();
    arca(&env, &direct, &[], &["backup", "-q", src.to_str().unwrap()]).ok();
    proxy.state.deny_deletes.store(true, Ordering::SeqCst);
    // Backups work (their locks stay behind, harmlessly).
    std::fs::write(src.join("d1/new"), "y".repeat(200_000)).unwrap();
    arca(
        &env,
        &through_proxy,
        &[],
        &["backup", "-q", src.to_str().unwrap()],
    )
    .ok();
    // Deleting commands notice the refusal before removing anything.
    for args in [
        &["forget", "--keep-last", "1", "--prune"][..],
        &["prune"][..],
    ] {
        arca(&env, &through_proxy, &[], args)
            .fails()
            .says("append-only")
            .says("the storage refuses deletes");
    }
    // A job's retention and prune are the same operations: refused before anything goes.
    let config = env.path("arca.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
state = "history.db"

[repositories.nodelete]
location = "{through_proxy}"
password_env = "ARCA_TEST_DAEMON_PW"
cache_dir = "{cache}"

[jobs.j]
sources = ["{src}"]
repositories = ["nodelete"]
schedule = "every 1h"
retention = {{ keep_last = 1 }}
prune = {{ schedule = "every 1s" }}
"#,
            cache = env.path("job-cache").display(),
            src = src.display()
        ),
    )
    .unwrap();
    let run = common::daemon::run_with_config(&config, &["job", "run", "j", "--json"]);
    let rec = run.json();
    assert_eq!(rec["status"], "failed", "{rec}");
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the storage refuses deletes"),
        "retention of the job: {error}"
    );
    let prunes: Vec<serde_json::Value> = common::daemon::job_history(&config, "j")
        .into_iter()
        .filter(|r| r["kind"] == "prune")
        .collect();
    assert_eq!(prunes.len(), 1, "{prunes:?}");
    assert_eq!(prunes[0]["status"], "failed", "{}", prunes[0]);
    assert!(
        prunes[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("the storage refuses deletes")),
        "prune of the job: {}",
        prunes[0]
    );
    let pw = env.path("newpw");
    std::fs::write(&pw, "another password\n").unwrap();
    arca(
        &env,
        &through_proxy,
        &[],
        &["key", "passwd", "--new-password-file", pw.to_str().unwrap()],
    )
    .fails()
    .says("key passwd");
    assert!(
        proxy.state.denied.load(Ordering::SeqCst) > 0,
        "deletes were tried and denied"
    );
    // From a host that may delete: both snapshots are there and the repository is sound.
    let snaps = arca(&env, &direct, &[], &["snapshots", "--json"])
        .ok()
        .json();
    // Two of `arca backup`, one of the job: nothing was removed.
    assert_eq!(snaps.as_array().map(Vec::len), Some(3), "{snaps}");
    arca(&env, &direct, &[], &["check", "--read-data"]).ok();
    let keys = arca(&env, &direct, &[], &["key", "list", "--json"])
        .ok()
        .json();
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "{keys}");
    // And it can run retention; the probes and locks the denied host left are cleaned up.
    arca(
        &env,
        &direct,
        &[],
        &["forget", "--keep-last", "1", "--prune"],
    )
    .ok();
    arca(&env, &direct, &[], &["unlock"]).ok();
    arca(&env, &direct, &[], &["check"]).ok();
}

#[test]
fn connections_set_how_many_uploads_are_in_flight() {
    let Some(base) = s3_base() else { return };
    let (up, bucket) = upstream(&base);
    let proxy = Proxy::start(up);
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Incompressible: about five 8 MiB packs.
    write_random(&src.join("big"), 5, 40 << 20);
    // Every request takes 300 ms: packs queue up for the uploaders.
    proxy.state.delay_ms.store(300, Ordering::SeqCst);
    let mut most = Vec::new();
    for connections in ["1", "4"] {
        let repo = format!(
            "s3:http://{}/{bucket}/conn{connections}-{}-{}",
            proxy.addr,
            std::process::id(),
            jiff::Timestamp::now().as_millisecond()
        );
        arca(&env, &repo, &[], &["init"]).ok();
        proxy.state.max_in_flight.store(0, Ordering::SeqCst);
        arca(
            &env,
            &repo,
            &[("ARCA_CONNECTIONS", connections)],
            &["backup", "-q", src.to_str().unwrap()],
        )
        .ok();
        most.push(proxy.state.max_in_flight.load(Ordering::SeqCst));
    }
    eprintln!("most requests in flight: {most:?} with 1 and 4 connections");
    // One uploader; an index or lock request may run beside it.
    assert!(most[0] <= 2, "{most:?}");
    assert!(most[1] >= 3, "{most:?}");
}
