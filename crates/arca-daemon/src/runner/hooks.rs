//! Pre, post and failure hooks: a shell command in a process group of its own, killed
//! when it overruns its timeout, with its output kept.

use super::*;

/// The output of a hook, and whether it succeeded.
pub struct HookResult {
    pub ok: bool,
    pub output: String,
    pub detail: String,
}

/// Runs `sh -c cmd` with stdout and stderr captured together, killed (its whole process
/// group) after `timeout`.
pub fn run_hook(cmd: &str, timeout: Duration, env: &[(&str, String)]) -> HookResult {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("exec 2>&1\n{cmd}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            return HookResult {
                ok: false,
                output: String::new(),
                detail: format!("could not start: {e}"),
            };
        }
    };
    let reader = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        })
    });
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if started.elapsed() >= timeout {
            timed_out = true;
            kill_group(&child, nix::sys::signal::Signal::SIGTERM);
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(2) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_group(&child, nix::sys::signal::Signal::SIGKILL);
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The group is gone (or finished): the pipe closes once every member exited.
    kill_group(&child, nix::sys::signal::Signal::SIGKILL);
    let output = reader
        .and_then(|r| r.join().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (ok, detail) = match (timed_out, status) {
        (true, _) => (
            false,
            format!(
                "timed out after {} and was killed",
                arca_ops::drill::format_duration(timeout)
            ),
        ),
        (false, Some(s)) if s.success() => (true, "ok".to_string()),
        (false, Some(s)) => (false, format!("failed ({s})")),
        (false, None) => (false, "could not be waited for".to_string()),
    };
    HookResult { ok, output, detail }
}

pub(super) fn kill_group(child: &Child, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    }
}
