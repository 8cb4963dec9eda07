//! Progress display: a progress bar on a terminal, JSON status lines with --json, nothing
//! otherwise. Implements the core's `Progress` trait.

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
