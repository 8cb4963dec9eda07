//! Progress display: a progress bar on a terminal, JSON status lines with --json, nothing
//! otherwise. Implements the core's `Progress` trait. Also what happens when the reader of
//! stdout or stderr goes away (`arca ls latest | head`): [`install_closed_output_exit`].
//!
//! Every repository string that text output prints (file names, link targets, hosts,
//! tags, paths, error messages quoting them) goes through [`terminal_safe`]: a hostile
//! file name must not reach a terminal as escape sequences. `--json` keeps the exact
//! bytes instead ([`json_bytes`]).

use std::borrow::Cow;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arca_core::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::GlobalArgs;

/// Whether `c` must not reach a terminal as it is: C0 controls, DEL, C1 controls, the
/// backslash (the escape character itself), line and paragraph separators and the
/// bidirectional overrides and isolates (which reorder what a terminal shows).
fn needs_escape(c: char) -> bool {
    matches!(c, '\\' | '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}'..='\u{2029}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Repository bytes as text safe for a terminal, the way `ls -b` (GNU escape quoting)
/// shows them: `\\` for a backslash, `\n`, `\t`, `\r`, `\a`, `\b`, `\v`, `\f`, and
/// `\xNN` for every other byte of a character [`needs_escape`] names (ESC is `\x1b`, the
/// C1 control U+009B is `\xc2\x9b`) and for each byte that is not valid UTF-8. The result
/// holds no byte below 0x20, no DEL and no C1 control, and [`unescape`] gives back the
/// exact bytes. Used by every text renderer, whether or not stdout is a terminal (a pager
/// or `watch` renders it too).
pub fn terminal_safe(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes)
        && !text.chars().any(needs_escape)
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    let hex = |out: &mut String, b: u8| out.push_str(&format!("\\x{b:02x}"));
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{b}' => out.push_str("\\v"),
                '\u{c}' => out.push_str("\\f"),
                c if needs_escape(c) => {
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        hex(&mut out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            hex(&mut out, b);
        }
    }
    Cow::Owned(out)
}

/// [`terminal_safe`] of a path.
pub fn safe_path(path: &Path) -> Cow<'_, str> {
    terminal_safe(path.as_os_str().as_bytes())
}

/// [`terminal_safe`] of each line of `text`, the line breaks kept (an error message of
/// several lines stays several lines; a name inside it cannot add any).
pub fn safe_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| terminal_safe(l.as_bytes()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The inverse of [`terminal_safe`]: the exact bytes back from the escaped text. `None`
/// when `text` holds an escape [`terminal_safe`] never writes. (What the tests check
/// against; `tests/terminal_escapes.rs` has its own copy.)
#[cfg(test)]
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, len) = match *b.get(i + 1)? {
            b'\\' => (b'\\', 2),
            b'n' => (b'\n', 2),
            b't' => (b'\t', 2),
            b'r' => (b'\r', 2),
            b'a' => (7, 2),
            b'b' => (8, 2),
            b'v' => (11, 2),
            b'f' => (12, 2),
            b'x' => {
                let digits = b.get(i + 2..i + 4)?;
                if !digits.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let digits = std::str::from_utf8(digits).ok()?;
                (u8::from_str_radix(digits, 16).ok()?, 4)
            }
            _ => return None,
        };
        out.push(byte);
        i += len;
    }
    Some(out)
}

/// Repository bytes (a name, a path, a link target) in `--json` output, exactly: a JSON
/// string when they are UTF-8 (control characters as JSON escapes such as `\u001b`),
/// otherwise `{"hex": "..."}` with every byte, the encoding of the repository's own JSON
/// objects (docs/FORMAT.md).
pub fn json_bytes(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::Value::String(text.to_string()),
        Err(_) => serde_json::json!({ "hex": hex::encode(bytes) }),
    }
}

/// [`json_bytes`] of a path.
pub fn json_path(path: &Path) -> serde_json::Value {
    json_bytes(path.as_os_str().as_bytes())
}

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
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = if self.json {
                path.display().to_string()
            } else {
                safe_path(path).into_owned()
            };
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
                "item": json_path(path),
                "error": message,
            });
            eprintln!("{line}");
        } else if !self.quiet {
            let text = format!("warning: {}: {}", safe_path(path), safe_lines(message));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether `text` holds a byte a terminal would act on: C0 controls, DEL, or a C1
    /// control (U+0080..U+009F, encoded in UTF-8 as 0xC2 0x80..0x9F).
    fn has_control(text: &str) -> bool {
        text.bytes().any(|b| b < 0x20 || b == 0x7f)
            || text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c))
    }

    #[test]
    fn the_names_of_the_finding_are_escaped() {
        let name = b"a\x1b]0;PWNED\x07\x1b[2J\n\tb\\c\xff\xc2\x9b";
        let safe = terminal_safe(name);
        assert_eq!(safe, "a\\x1b]0;PWNED\\a\\x1b[2J\\n\\tb\\\\c\\xff\\xc2\\x9b");
        assert_eq!(unescape(&safe).as_deref(), Some(&name[..]));
        assert!(matches!(
            terminal_safe("plain ü name".as_bytes()),
            Cow::Borrowed(_)
        ));
        assert_eq!(terminal_safe("x\u{202e}y".as_bytes()), "x\\xe2\\x80\\xaey");
        assert_eq!(safe_lines("one \x1b\ntwo"), "one \\x1b\ntwo");
        assert_eq!(json_bytes(b"\xff\x1b"), serde_json::json!({"hex": "ff1b"}));
        assert_eq!(json_bytes(b"\x1b]0"), serde_json::json!("\u{1b}]0"));
    }

    proptest! {
        #[test]
        fn escaped_names_hold_no_control_and_unescape_to_the_name(
            name in proptest::collection::vec(any::<u8>(), 0..64),
            text in "\\PC*|[\\x00-\\x{9f}\\\\]*",
        ) {
            for bytes in [&name[..], text.as_bytes()] {
                let safe = terminal_safe(bytes);
                prop_assert!(!has_control(&safe), "{safe:?}");
                prop_assert_eq!(unescape(&safe), Some(bytes.to_vec()));
                // A renderer's line: fields joined by its own tabs and newlines only.
                let line = format!("{}\t{}\n", safe, safe_path(Path::new(std::ffi::OsStr::from_bytes(bytes))));
                prop_assert_eq!(line.bytes().filter(|&b| b < 0x20).count(), 2);
            }
        }
    }
}
