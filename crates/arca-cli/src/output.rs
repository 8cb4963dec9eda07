//! Progress display: a progress bar on a terminal, JSON status lines with --json, nothing
//! otherwise. Implements the core's `Progress` trait. Also what happens when the reader of
//! stdout or stderr goes away (`arca ls latest | head`): [`install_closed_output_exit`].

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arca_core::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::GlobalArgs;

pub struct CliProgress {
    bar: Option<ProgressBar>,
    json: bool,
    quiet: bool,
    files: AtomicU64,
    bytes: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    current: Mutex<String>,
    last_json: Mutex<Instant>,
    start: Instant,
    pub warnings: AtomicU64,
}

impl CliProgress {
    pub fn new(g: &GlobalArgs, verb: &str) -> CliProgress {
        let show_bar = !g.json && !g.quiet && !g.no_progress && std::io::stderr().is_terminal();
        let bar = show_bar.then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
            b.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {verb} [{{elapsed_precise}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}} {{msg}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        CliProgress {
            bar,
            json: g.json,
            quiet: g.quiet,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total_files: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            current: Mutex::new(String::new()),
            last_json: Mutex::new(Instant::now()),
            start: Instant::now(),
            warnings: AtomicU64::new(0),
        }
    }

    fn tick_json(&self) {
        if !self.json {
            return;
        }
        let mut last = self.last_json.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        let bytes = self.bytes.load(Ordering::Relaxed);
        let total = self.total_bytes.load(Ordering::Relaxed);
        let elapsed = self.start.elapsed().as_secs_f64();
        let line = serde_json::json!({
            "message_type": "status",
            "seconds_elapsed": elapsed as u64,
            "files_done": self.files.load(Ordering::Relaxed),
            "bytes_done": bytes,
            "total_files": self.total_files.load(Ordering::Relaxed),
            "total_bytes": total,
            "percent_done": if total > 0 { (bytes as f64 / total as f64).min(1.0) } else { 0.0 },
            "current_file": *self.current.lock().unwrap_or_else(|p| p.into_inner()),
        });
        println!("{line}");
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn update_msg(&self) {
        if let Some(b) = &self.bar {
            let f = self.files.load(Ordering::Relaxed);
            let tf = self.total_files.load(Ordering::Relaxed);
            let cur = self
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let cur: String = if cur.chars().count() > 40 {
                let tail: String = cur
                    .chars()
                    .rev()
                    .take(39)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("…{tail}")
            } else {
                cur
            };
            b.set_message(format!("{f}/{tf} files {cur}"));
        }
    }
}

impl Progress for CliProgress {
    fn set_total(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(bytes);
        }
    }
    fn file_started(&self, path: &Path) {
        if self.bar.is_some() || self.json {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = path.display().to_string();
            self.update_msg();
        }
    }
    fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        self.tick_json();
    }
    fn add_files(&self, n: u64) {
        self.files.fetch_add(n, Ordering::Relaxed);
        self.update_msg();
        self.tick_json();
    }
    fn warning(&self, path: &Path, message: &str) {
        self.warnings.fetch_add(1, Ordering::Relaxed);
        if self.json {
            let line = serde_json::json!({
                "message_type": "error",
                "item": path.display().to_string(),
                "error": message,
            });
            eprintln!("{line}");
        } else if !self.quiet {
            let text = format!("warning: {}: {message}", path.display());
            match &self.bar {
                Some(b) => b.println(text),
                None => eprintln!("{text}"),
            }
        }
    }
    fn should_stop(&self) -> bool {
        crate::common::interrupted()
    }
}

/// Whether the reader of `fd` has gone: a pipe without readers or a socket whose peer
/// closed it (poll reports an error or a hang-up on the write end).
#[allow(unsafe_code)]
fn reader_gone(fd: libc::c_int) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout; poll only reads and writes that struct.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    n == 1 && poll.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Whether the reader of stdout or of stderr has gone.
pub fn output_closed() -> bool {
    reader_gone(libc::STDOUT_FILENO) || reader_gone(libc::STDERR_FILENO)
}

/// Ends the process the way Unix tools end when their reader goes away: killed by SIGPIPE,
/// silently (exit status 141 in a shell).
#[allow(unsafe_code)]
pub fn exit_by_sigpipe() -> ! {
    // SAFETY: restoring the default disposition of SIGPIPE and raising it only ends the
    // process; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

/// Whether `err` comes from writing to a stdout or stderr whose reader has gone.
pub fn is_closed_output(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }) && output_closed()
}

/// `println!` panics when stdout's reader has gone (`arca ls latest | head -1`). The Rust
/// runtime ignores SIGPIPE, and arca keeps it ignored: a broken pipe to a child process (a
/// database tool) or a socket must be an error the command reports, not a silent death.
/// Instead, a panic of a write to stdout or stderr whose reader has gone ends the process
/// by SIGPIPE, without a panic message, like any Unix tool; other panics are reported as
/// before. (Errors returned by writes, as in `dump`, are handled in `main` through
/// [`is_closed_output`].)
pub fn install_closed_output_exit() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std")
            && message.contains("Broken pipe")
            && output_closed()
        {
            exit_by_sigpipe();
        }
        default_hook(info);
    }));
}
