//! Shell commands with a timeout (drill checks, recovery hooks, alert commands): the
//! process group is killed when it overruns, and output is kept bounded.

use super::*;

/// Bytes of stdout and of stderr kept from a command (the last ones).
pub const OUTPUT_LIMIT: usize = 8 * 1024;

/// What a command did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CommandOutcome {
    pub command: String,
    /// Exit code; None when killed by a signal or not started.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Killed because the run was stopped (Ctrl-C, SIGTERM).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    pub duration_secs: f64,
    /// The last [`OUTPUT_LIMIT`] bytes of stdout and stderr (lossy UTF-8).
    pub stdout: String,
    pub stderr: String,
    /// Whether output beyond the limit was dropped.
    pub truncated: bool,
    /// Why it could not be started, if it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.interrupted && self.error.is_none()
    }

    /// One line saying why it failed (empty when it succeeded).
    pub fn failure_reason(&self) -> String {
        if let Some(e) = &self.error {
            return format!("could not start: {e}");
        }
        if self.interrupted {
            return "stopped: the run was interrupted".into();
        }
        if self.timed_out {
            return format!("timed out after {:.1}s and was killed", self.duration_secs);
        }
        match self.exit_code {
            Some(0) => String::new(),
            Some(c) => {
                let tail = last_line(&self.stderr).or_else(|| last_line(&self.stdout));
                match tail {
                    Some(t) => format!("exited with code {c}: {t}"),
                    None => format!("exited with code {c}"),
                }
            }
            None => "killed by a signal".into(),
        }
    }
}

pub(super) fn last_line(s: &str) -> Option<String> {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().chars().take(300).collect())
}

/// Keeps the last `limit` bytes read from a pipe.
pub(super) fn read_tail(mut r: impl Read, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > limit {
                    let cut = kept.len() - limit;
                    kept.drain(..cut);
                    truncated = true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    (kept, truncated)
}

/// Runs `command` with `sh -c` in `cwd` with extra `env`, feeding `stdin` (or nothing), and
/// kills its whole process group when it runs longer than `timeout`.
pub fn run_command(
    command: &str,
    cwd: Option<&Path>,
    env: &[(&str, &OsStr)],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> CommandOutcome {
    run_command_until(command, cwd, env, stdin, timeout, &|| false)
}

/// [`run_command`] that also kills the command when `stop()` turns true (the outcome
/// then says `interrupted`).
pub fn run_command_until(
    command: &str,
    cwd: Option<&Path>,
    env: &[(&str, &OsStr)],
    stdin: Option<&[u8]>,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> CommandOutcome {
    let start = Instant::now();
    let mut outcome = CommandOutcome {
        command: command.to_string(),
        ..Default::default()
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            outcome.error = Some(e.to_string());
            return outcome;
        }
    };
    let pid = child.id() as i32;
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                use std::io::Write;
                // A command that does not read its input closes the pipe: not an error.
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let out_reader = child
        .stdout
        .take()
        .map(|p| std::thread::spawn(move || read_tail(p, OUTPUT_LIMIT)));
    let err_reader = child
        .stderr
        .take()
        .map(|p| std::thread::spawn(move || read_tail(p, OUTPUT_LIMIT)));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                outcome.error = Some(format!("wait: {e}"));
                break None;
            }
        }
        if start.elapsed() >= timeout {
            outcome.timed_out = true;
            kill_group(pid);
            break child.wait().ok();
        }
        if stop() {
            outcome.interrupted = true;
            kill_group(pid);
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Whatever the command left running in its group must not hold the pipes open.
    kill_group(pid);
    if let Some(w) = writer {
        let _ = w.join();
    }
    for (reader, field) in [
        (out_reader, &mut outcome.stdout),
        (err_reader, &mut outcome.stderr),
    ] {
        if let Some(r) = reader
            && let Ok((bytes, truncated)) = r.join()
        {
            *field = String::from_utf8_lossy(&bytes).into_owned();
            outcome.truncated |= truncated;
        }
    }
    outcome.exit_code = status.and_then(|s| s.code());
    outcome.duration_secs = start.elapsed().as_secs_f64();
    outcome
}

pub(super) fn kill_group(pid: i32) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
}
