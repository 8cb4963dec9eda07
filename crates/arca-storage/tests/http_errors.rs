//! How HTTP failures of an S3 server map to storage errors, and which are retried, against a
//! tiny fake server on 127.0.0.1 that answers every request with one canned response.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arca_storage::location::open_parsed;
use arca_storage::{ErrorKind, OpenOptions, RetryBudget, Storage, parse_location};

struct FakeServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    /// Answers every request with `status` and an S3 error document of `code`.
    fn start(status: u16, code: &'static str) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded: stops when dropped, and after 60 s in any case.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                let (stream, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                r.fetch_add(1, Ordering::SeqCst);
                let doc = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                     <Message>fake {code}</Message><RequestId>1</RequestId></Error>"
                );
                let answer = format!(
                    "HTTP/1.1 {status} Fake\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                    doc.len()
                );
                let mut stream = reader.into_inner();
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        FakeServer {
            port,
            requests,
            stop,
        }
    }

    fn open(&self, attempts: u32) -> Arc<dyn Storage> {
        let location = format!("s3:http://127.0.0.1:{}/bucket/repo", self.port);
        let options = OpenOptions {
            connections: None,
            retry: RetryBudget::new(attempts, Duration::from_millis(5)),
        };
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKFAKE".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
            _ => None,
        };
        open_parsed(
            &location,
            &parse_location(&location).unwrap(),
            &options,
            &env,
        )
        .unwrap()
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn forbidden_is_permission_denied_naming_the_credentials() {
    let server = FakeServer::start(403, "AccessDenied");
    let s = server.open(4);
    let err = s.create().unwrap_err();
    eprintln!("403: {err}");
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("access denied by s3:http://127.0.0.1:"),
        "{msg}"
    );
    assert!(msg.contains("AccessDenied: fake AccessDenied"), "{msg}");
    assert!(
        msg.contains(
            "credentials came from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        ),
        "{msg}"
    );
    assert_eq!(server.requests(), 1, "refused credentials are not retried");
}

#[test]
fn unauthorized_is_permission_denied() {
    let server = FakeServer::start(401, "Unauthorized");
    let err = server.open(4).write("config", b"x").unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert_eq!(server.requests(), 1);
}

#[test]
fn service_unavailable_is_retried_then_given_up() {
    let server = FakeServer::start(503, "SlowDown");
    let err = server.open(3).read("config").unwrap_err();
    eprintln!("503: {err}");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("SlowDown"), "{msg}");
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
    assert_eq!(server.requests(), 3);
}

#[test]
fn too_many_requests_is_transient() {
    let server = FakeServer::start(429, "TooManyRequests");
    let err = server.open(2).stat("config").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert_eq!(server.requests(), 2);
}

#[test]
fn other_client_errors_are_not_retried() {
    let server = FakeServer::start(400, "InvalidRequest");
    let err = server.open(5).read("config").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Other, "{err}");
    assert!(err.to_string().contains("InvalidRequest"), "{err}");
    assert_eq!(server.requests(), 1);
}
