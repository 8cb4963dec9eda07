//! The daemon's web server: `GET /api/status` (JSON). (The dashboard and `/metrics` are
//! being built here.)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::history::History;
use crate::live::Live;

/// What the web server reads (and where it queues requests).
#[derive(Clone)]
pub struct WebState {
    /// The running configuration (replaced on reload).
    pub config: Arc<RwLock<Arc<Config>>>,
    pub history: Arc<History>,
    pub clock: Arc<dyn Clock>,
    pub live: Arc<Live>,
}

/// Serves requests on `listener` until `stopped` turns true.
pub fn serve(listener: TcpListener, state: WebState, stopped: Arc<AtomicBool>) {
    let _ = listener.set_nonblocking(true);
    while !stopped.load(Ordering::SeqCst) {
        let (stream, _) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(_) => continue,
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(&stream);
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            continue;
        }
        // Skip the headers.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let mut parts = request.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (code, body) = if method == "GET" && path == "/api/status" {
            let cfg = state
                .config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            match crate::status::all_status(&cfg, &state.history, state.clock.now()) {
                Ok(s) => ("200 OK", serde_json::json!({ "jobs": s }).to_string()),
                Err(e) => (
                    "500 Internal Server Error",
                    serde_json::json!({ "error": e.to_string() }).to_string(),
                ),
            }
        } else {
            (
                "404 Not Found",
                serde_json::json!({ "error": "not found; try GET /api/status" }).to_string(),
            )
        };
        let mut w = &stream;
        let _ = write!(
            w,
            "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
