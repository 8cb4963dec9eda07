//! Where a repository's password comes from: a command (bounded in time), a file, an
//! environment variable, or a prompt that the front end supplies (a terminal). The first
//! line counts; an empty password is refused. The CLI and the daemon's repositories read
//! passwords through [`PasswordSource::read`], so both follow the same rules.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::command::{ChildError, output_within};

/// Asks a person for the password (the CLI's terminal prompt).
pub type Prompt = Arc<dyn Fn() -> Result<Vec<u8>, PasswordError> + Send + Sync>;

/// One source of a password.
#[derive(Clone)]
pub enum PasswordSource {
    /// `sh -c COMMAND`, killed after `timeout`; its first output line.
    Command { command: String, timeout: Duration },
    /// The first line of a file.
    File(PathBuf),
    /// The value of an environment variable.
    Env(String),
    /// Asked when it is needed (after the repository's config was found).
    Prompt(Prompt),
}

impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::Command { command, timeout } => f
                .debug_struct("Command")
                .field("command", command)
                .field("timeout", timeout)
                .finish(),
            PasswordSource::File(p) => f.debug_tuple("File").field(p).finish(),
            PasswordSource::Env(v) => f.debug_tuple("Env").field(v).finish(),
            PasswordSource::Prompt(_) => f.write_str("Prompt"),
        }
    }
}

/// Why no password could be had.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("reading password file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error(transparent)]
    Command(#[from] ChildError),
    #[error("the password from {0} is empty; an empty password is not allowed")]
    Empty(String),
    /// The prompt could not ask (no terminal) or the answers differ.
    #[error("{0}")]
    Prompt(String),
}

impl PasswordError {
    /// Whether a password command ran past its limit.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PasswordError::Command(e) if e.is_timeout())
    }
}

fn first_line(bytes: &[u8]) -> Vec<u8> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(bytes.len());
    bytes[..end].to_vec()
}

fn non_empty(p: Vec<u8>, from: String) -> Result<Vec<u8>, PasswordError> {
    if p.is_empty() {
        return Err(PasswordError::Empty(from));
    }
    Ok(p)
}

impl PasswordSource {
    /// Reads the password.
    pub fn read(&self) -> Result<Vec<u8>, PasswordError> {
        match self {
            PasswordSource::Command { command, timeout } => {
                let out = output_within("password command", command, *timeout)?;
                non_empty(first_line(&out), format!("command {command:?}"))
            }
            PasswordSource::File(path) => {
                let raw = std::fs::read(path).map_err(|source| PasswordError::File {
                    path: path.clone(),
                    source,
                })?;
                non_empty(first_line(&raw), format!("file {}", path.display()))
            }
            PasswordSource::Env(var) => {
                let v =
                    std::env::var_os(var).ok_or_else(|| PasswordError::EnvMissing(var.clone()))?;
                non_empty(
                    std::os::unix::ffi::OsStringExt::into_vec(v),
                    format!("environment variable {var}"),
                )
            }
            PasswordSource::Prompt(ask) => {
                let p = ask()?;
                non_empty(p, "the prompt".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_give_their_first_line_and_refuse_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "secret\nsecond line\n").unwrap();
        assert_eq!(
            PasswordSource::File(file.clone()).read().unwrap(),
            b"secret"
        );
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            PasswordSource::File(file).read(),
            Err(PasswordError::Empty(_))
        ));
        let cmd = PasswordSource::Command {
            command: "printf 'from-cmd\\r\\n'".into(),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(cmd.read().unwrap(), b"from-cmd");
        let slow = PasswordSource::Command {
            command: "sleep 30".into(),
            timeout: Duration::from_millis(200),
        };
        assert!(slow.read().unwrap_err().is_timeout());
        assert!(matches!(
            PasswordSource::Env("ARCA_OPS_TEST_SURELY_UNSET".into()).read(),
            Err(PasswordError::EnvMissing(_))
        ));
        let prompt = PasswordSource::Prompt(Arc::new(|| Ok(b"typed".to_vec())));
        assert_eq!(prompt.read().unwrap(), b"typed");
    }
}
