//! The one way arca runs a program whose output becomes a snapshot (a user's command,
//! pg_dump, pg_dumpall, pg_basebackup, mysqldump, mariadb-backup) or whose input is a
//! restore (psql, pg_restore, mysql, xbstream): spawn it, hand out its pipes, keep a
//! bounded tail of its error output for the message, and make sure it ends. A
//! [`ChildProcess`] is killed and reaped when it is dropped unfinished, and
//! [`ChildProcess::stop_when`] kills it as soon as the run is told to stop, even while a
//! read of its output blocks; a child stopped that way reports [`ChildError::Stopped`],
//! which the engines turn into [`crate::Error::Interrupted`].
//!
//! A child started with [`ChildOptions::own_group`] runs in a process group of its own and
//! is killed with its whole group (a `sh -c` pipeline and what it started). Database tools
//! stay in arca's group so that they can still ask for a password on the terminal.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// Called with each line the child writes to its error output (e.g. to find the binary
/// log position mariadb-backup reports there, or to show the lines on a terminal).
pub type LineObserver = Box<dyn FnMut(&str) + Send>;

/// Lines of error output kept for a message (the last ones, and the last that say error).
const KEPT_LINES: usize = 40;
/// Longest line kept; the rest of a longer line is dropped.
const LINE_LIMIT: usize = 8192;
/// How often [`ChildProcess::stop_when`] asks whether to stop.
const STOP_POLL: Duration = Duration::from_millis(50);

/// The end of what a child wrote to its error output: at most 40 lines of at most 8 KiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StderrTail {
    lines: VecDeque<String>,
    errors: VecDeque<String>,
}

impl StderrTail {
    /// Adds a line (the oldest ones go beyond 40).
    pub fn push(&mut self, line: String) {
        let lower = line.to_ascii_lowercase();
        if lower.contains("error") || lower.contains("fatal") || lower.contains("denied") {
            if self.errors.len() == KEPT_LINES {
                self.errors.pop_front();
            }
            self.errors.push_back(line.clone());
        }
        if self.lines.len() == KEPT_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The tail of output already collected (e.g. of a tool run to completion).
    pub fn from_text(text: &str) -> StderrTail {
        let mut tail = StderrTail::default();
        for line in text.lines() {
            tail.push(line.chars().take(LINE_LIMIT).collect());
        }
        tail
    }

    /// Nothing was written.
    pub fn is_empty(&self) -> bool {
        self.lines.iter().all(|l| l.trim().is_empty())
    }

    /// The kept lines, one per line.
    pub fn text(&self) -> String {
        let lines: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        lines.join("\n").trim().to_string()
    }

    /// One line for an error message: the last four lines that say error (or fatal, or
    /// denied), else the last four lines, joined by ` | `.
    pub fn message(&self) -> String {
        let source = if self.errors.is_empty() {
            &self.lines
        } else {
            &self.errors
        };
        let lines: Vec<&str> = source
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        let last = &lines[lines.len().saturating_sub(4)..];
        if last.is_empty() {
            "no error output".to_string()
        } else {
            last.join(" | ")
        }
    }
}

/// Why a child could not be run, or how it ended badly. Each names the program.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("starting {tool}: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("waiting for {tool}: {source}")]
    Wait {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool}: its {pipe} is not available")]
    Pipe { tool: String, pipe: &'static str },
    #[error("{tool} failed ({status}): {message}")]
    Failed {
        tool: String,
        status: String,
        /// [`StderrTail::message`] of its error output.
        message: String,
    },
    #[error("{tool} was stopped because the run was told to stop")]
    Stopped { tool: String },
}

/// How a child is started.
#[derive(Default)]
pub struct ChildOptions {
    /// A process group of its own, killed as a whole (for shell commands).
    pub own_group: bool,
    /// Sees each line of the child's error output.
    pub on_stderr_line: Option<LineObserver>,
}

struct State {
    child: Child,
    status: Option<ExitStatus>,
}

/// A running program with its error output read on a thread. Killed and reaped on drop
/// unless it was waited for.
pub struct ChildProcess {
    tool: String,
    pid: Pid,
    own_group: bool,
    state: Mutex<State>,
    stopped: AtomicBool,
    stderr: Mutex<Option<JoinHandle<StderrTail>>>,
    tail: Mutex<Option<StderrTail>>,
}

impl ChildProcess {
    /// Starts `cmd` (named `tool` in messages) with its error output captured. Standard
    /// input and output are as the caller set them (input defaults to nothing).
    pub fn spawn(
        tool: impl Into<String>,
        cmd: &mut Command,
        options: ChildOptions,
    ) -> Result<ChildProcess, ChildError> {
        let tool = tool.into();
        if options.own_group {
            cmd.process_group(0);
        }
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| ChildError::Spawn {
            tool: tool.clone(),
            source,
        })?;
        let stderr = child
            .stderr
            .take()
            .map(|e| read_stderr(e, options.on_stderr_line));
        Ok(ChildProcess {
            pid: Pid::from_raw(child.id() as i32),
            tool,
            own_group: options.own_group,
            state: Mutex::new(State {
                child,
                status: None,
            }),
            stopped: AtomicBool::new(false),
            stderr: Mutex::new(stderr),
            tail: Mutex::new(None),
        })
    }

    /// The program's name as messages give it.
    pub fn tool(&self) -> &str {
        &self.tool
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The child's standard output (once; piped by the caller).
    pub fn take_stdout(&self) -> Result<ChildStdout, ChildError> {
        self.state().child.stdout.take().ok_or(ChildError::Pipe {
            tool: self.tool.clone(),
            pipe: "output",
        })
    }

    /// The child's standard input (once; piped by the caller).
    pub fn take_stdin(&self) -> Result<ChildStdin, ChildError> {
        self.state().child.stdin.take().ok_or(ChildError::Pipe {
            tool: self.tool.clone(),
            pipe: "input",
        })
    }

    /// Kills the child (with its group when it has one) unless it has been reaped, and
    /// reaps it.
    pub fn kill(&self) {
        let mut state = self.state();
        if state.status.is_some() {
            return;
        }
        // Not reaped yet, so the pid is still this child's: no other process is hit.
        let _ = if self.own_group {
            killpg(self.pid, Signal::SIGKILL)
        } else {
            kill(self.pid, Signal::SIGKILL)
        };
        if let Ok(status) = state.child.wait() {
            state.status = Some(status);
        }
    }

    /// Waits for the child to end and reaps it; the same status on every call.
    pub fn wait(&self) -> Result<ExitStatus, ChildError> {
        if let Some(status) = self.state().status {
            return Ok(status);
        }
        // Block until it exits without reaping it, so that `kill` from another thread
        // never signals a pid the kernel gave to someone else.
        // ECHILD: `kill` reaped it meanwhile.
        while let Err(nix::errno::Errno::EINTR) = waitid(
            Id::Pid(self.pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {}
        let mut state = self.state();
        if let Some(status) = state.status {
            return Ok(status);
        }
        let status = state.child.wait().map_err(|source| ChildError::Wait {
            tool: self.tool.clone(),
            source,
        })?;
        state.status = Some(status);
        Ok(status)
    }

    /// The end of the child's error output; complete once the child has ended.
    pub fn stderr_tail(&self) -> StderrTail {
        let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.is_none() {
            let handle = self
                .stderr
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            *tail = Some(handle.and_then(|h| h.join().ok()).unwrap_or_default());
        }
        tail.clone().unwrap_or_default()
    }

    /// Waits for the child; fails unless it exited with status 0. Returns its error
    /// output (notices a successful tool printed).
    pub fn finish(&self) -> Result<StderrTail, ChildError> {
        let status = self.wait()?;
        let tail = self.stderr_tail();
        if self.stopped.load(Ordering::Relaxed) {
            return Err(ChildError::Stopped {
                tool: self.tool.clone(),
            });
        }
        if status.success() {
            Ok(tail)
        } else {
            Err(ChildError::Failed {
                tool: self.tool.clone(),
                status: status.to_string(),
                message: tail.message(),
            })
        }
    }

    /// Runs `body` while a watcher kills the child as soon as `stop()` is true: a read of
    /// its output then ends instead of waiting for output that may never come.
    pub fn stop_when<T>(&self, stop: &(dyn Fn() -> bool + Sync), body: impl FnOnce() -> T) -> T {
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    if stop() {
                        self.stopped.store(true, Ordering::Relaxed);
                        self.kill();
                        return;
                    }
                    std::thread::park_timeout(STOP_POLL);
                }
            });
            let _done = SetOnDrop(&done);
            body()
        })
    }
}

/// Sets its flag when dropped, also when the body panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a child's error output on a thread, line by line, into a [`StderrTail`].
fn read_stderr(
    stderr: impl Read + Send + 'static,
    mut observer: Option<LineObserver>,
) -> JoinHandle<StderrTail> {
    std::thread::spawn(move || {
        let mut tail = StderrTail::default();
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    buf.truncate(LINE_LIMIT);
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if let Some(o) = observer.as_mut() {
                        o(&line);
                    }
                    tail.push(line);
                }
            }
        }
        tail
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script).stdin(Stdio::null());
        c
    }

    #[test]
    fn output_and_a_failure_with_its_error_lines() {
        let mut c = sh("echo out; echo warning >&2; echo 'ERROR: no such table' >&2; exit 3");
        c.stdout(Stdio::piped());
        let child = ChildProcess::spawn("demo", &mut c, ChildOptions::default()).unwrap();
        let mut out = String::new();
        child
            .take_stdout()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "out\n");
        let err = child.finish().unwrap_err().to_string();
        assert_eq!(
            err, "demo failed (exit status: 3): ERROR: no such table",
            "{err}"
        );
        assert_eq!(child.stderr_tail().text(), "warning\nERROR: no such table");
        assert!(
            child.take_stdout().is_err(),
            "the output is handed out once"
        );
    }

    #[test]
    fn the_tail_is_bounded_and_observed_line_by_line() {
        let seen = std::sync::Arc::new(Mutex::new(0usize));
        let counter = seen.clone();
        let options = ChildOptions {
            own_group: false,
            on_stderr_line: Some(Box::new(move |_| *counter.lock().unwrap() += 1)),
        };
        let mut c = sh("i=0; while [ $i -lt 500 ]; do echo line $i >&2; i=$((i+1)); done");
        let child = ChildProcess::spawn("noisy", &mut c, options).unwrap();
        let tail = child.finish().unwrap();
        assert_eq!(*seen.lock().unwrap(), 500);
        assert_eq!(tail.lines.len(), KEPT_LINES);
        assert_eq!(tail.lines.back().map(String::as_str), Some("line 499"));
        assert_eq!(tail.message(), "line 496 | line 497 | line 498 | line 499");
    }

    #[test]
    fn a_stop_kills_a_silent_child_and_its_group() {
        // The shell starts a grandchild that holds the output open and writes nothing.
        let mut c = sh("sleep 600 & echo $! >&2; wait");
        c.stdout(Stdio::piped());
        let options = ChildOptions {
            own_group: true,
            on_stderr_line: None,
        };
        let child = ChildProcess::spawn("silent", &mut c, options).unwrap();
        let mut stdout = child.take_stdout().unwrap();
        let asked = Instant::now();
        let stop = move || asked.elapsed() > Duration::from_millis(200);
        let read = child.stop_when(&stop, || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).map(|_| out)
        });
        assert_eq!(read.unwrap(), b"");
        assert!(asked.elapsed() < Duration::from_secs(10));
        assert!(matches!(child.finish(), Err(ChildError::Stopped { .. })));
        let grandchild: i32 = child.stderr_tail().text().trim().parse().unwrap();
        // Killed with the group: soon gone, or a zombie until init reaps it.
        let gone = || {
            let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat"));
            stat.map_or(true, |s| s.contains(") Z"))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(), "the grandchild {grandchild} still runs");
    }

    #[test]
    fn dropping_an_unfinished_child_kills_and_reaps_it() {
        let mut c = sh("exec sleep 600");
        let child = ChildProcess::spawn("sleeper", &mut c, ChildOptions::default()).unwrap();
        let pid = child.pid.as_raw();
        drop(child);
        // Reaped: no zombie is left under this process.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn the_message_prefers_error_lines() {
        let tail = StderrTail::from_text(
            "[00] connecting\nERROR 1045 (28000): Access denied for user 'x'@'localhost'\n\
             [00] shutting down\n",
        );
        assert_eq!(
            tail.message(),
            "ERROR 1045 (28000): Access denied for user 'x'@'localhost'"
        );
        assert_eq!(StderrTail::from_text("").message(), "no error output");
    }

    #[test]
    fn a_missing_program_is_named() {
        let mut c = Command::new("/nonexistent/arca-tool");
        let err = ChildProcess::spawn("arca-tool", &mut c, ChildOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("starting arca-tool: "), "{err}");
    }

    #[test]
    fn wait_is_repeatable_and_kill_after_it_does_nothing() {
        let child =
            ChildProcess::spawn("true", &mut sh("exit 0"), ChildOptions::default()).unwrap();
        assert!(child.wait().unwrap().success());
        child.kill();
        assert!(child.wait().unwrap().success());
        assert!(child.finish().unwrap().is_empty());
    }
}
