//! Short commands arca waits for before it can go on (password commands of the CLI and of
//! the daemon's repositories), bounded in time: the command runs as `sh -c` in a process
//! group of its own, and when it has not finished after its limit the whole group is
//! killed (SIGKILL) and the caller gets [`ChildError::TimedOut`], which names the command
//! and the limit. What the command leaves running in its group when it ends is killed
//! too, so nothing holds its output open. The daemon's hooks and alert commands have their
//! own runners with the same rule.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arca_core::units::format_elapsed as format_duration;

/// Why a bounded command gave no output.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{what} {command:?} could not be run: {source}")]
    Spawn {
        what: String,
        command: String,
        source: std::io::Error,
    },
    #[error("{what} {command:?} timed out after {} and was killed", format_duration(*after))]
    TimedOut {
        what: String,
        command: String,
        after: Duration,
    },
    #[error("{what} {command:?} failed with {status}")]
    Failed {
        what: String,
        command: String,
        status: ExitStatus,
    },
}

impl ChildError {
    /// Whether the command was killed for running past its limit.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ChildError::TimedOut { .. })
    }
}

/// Runs `sh -c command` without input, its error output passed through to ours, and
/// returns its standard output once it exits successfully. After `limit` its process
/// group is killed and the result is [`ChildError::TimedOut`]; `what` names the command
/// in errors ("password command").
pub fn output_within(what: &str, command: &str, limit: Duration) -> Result<Vec<u8>, ChildError> {
    let timed_out = || ChildError::TimedOut {
        what: what.to_string(),
        command: command.to_string(),
        after: limit,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(|source| ChildError::Spawn {
            what: what.to_string(),
            command: command.to_string(),
            source,
        })?;
    let (tx, rx) = mpsc::channel();
    if let Some(mut out) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = tx.send(out.read_to_end(&mut buf).map(|_| buf));
        });
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if Instant::now() >= deadline => break Err(timed_out()),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(source) => {
                break Err(ChildError::Spawn {
                    what: what.to_string(),
                    command: command.to_string(),
                    source,
                });
            }
        }
    };
    // Whatever is left in the group (all of it after a timeout) must not outlive the
    // command or hold its output open.
    kill_group(&child);
    let _ = child.wait();
    let status = status?;
    // Output still held open by a process that left the group counts against the limit.
    let left = deadline.saturating_duration_since(Instant::now());
    let out = match rx.recv_timeout(left.max(Duration::from_millis(100))) {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(ChildError::Spawn {
                what: what.to_string(),
                command: command.to_string(),
                source,
            });
        }
        Err(_) => return Err(timed_out()),
    };
    if !status.success() {
        return Err(ChildError::Failed {
            what: what.to_string(),
            command: command.to_string(),
            status,
        });
    }
    Ok(out)
}

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_failure_and_timeout() {
        let out = output_within(
            "test command",
            "echo secret; echo more",
            Duration::from_secs(5),
        );
        assert_eq!(out.ok().as_deref(), Some(&b"secret\nmore\n"[..]));
        let failed = output_within("test command", "exit 3", Duration::from_secs(5));
        assert!(matches!(failed, Err(ChildError::Failed { .. })));
        let start = Instant::now();
        let Err(e) = output_within(
            "test command",
            "sleep 30; echo late",
            Duration::from_millis(300),
        ) else {
            panic!("a sleeping command must time out");
        };
        assert!(e.is_timeout());
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("timed out after 300ms"), "{e}");
    }
}
