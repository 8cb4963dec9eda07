//! Where passwords come from: ARCA_PASSWORD, a file, a command, or a terminal prompt. A
//! password command is killed after `--password-command-timeout` (60 s by default).

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::GlobalArgs;

fn first_line(bytes: &[u8]) -> Vec<u8> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(bytes.len());
    bytes[..end].to_vec()
}

pub fn from_file(path: &Path) -> Result<Vec<u8>> {
    let raw =
        std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?;
    non_empty(first_line(&raw), &format!("file {}", path.display()))
}

fn non_empty(p: Vec<u8>, source: &str) -> Result<Vec<u8>> {
    if p.is_empty() {
        bail!("the password from {source} is empty; an empty password is not allowed");
    }
    Ok(p)
}

/// The repository password from the sources in order of precedence. `confirm` asks twice
/// on a terminal (for new passwords).
pub fn get(g: &GlobalArgs, confirm: bool) -> Result<Vec<u8>> {
    if let Some(cmd) = &g.password_command {
        let limit = arca_daemon::schedule::parse_duration(&g.password_command_timeout)
            .map_err(anyhow::Error::msg)
            .context("--password-command-timeout (ARCA_PASSWORD_COMMAND_TIMEOUT)")?;
        let out = arca_daemon::child::output_within("password command", cmd, limit)?;
        return non_empty(first_line(&out), &format!("command {cmd:?}"));
    }
    if let Some(p) = &g.password_file {
        return from_file(p);
    }
    if let Ok(p) = std::env::var("ARCA_PASSWORD") {
        return non_empty(p.into_bytes(), "ARCA_PASSWORD");
    }
    prompt(confirm, "repository password")
}

/// Asks on the terminal; fails when there is none.
pub fn prompt(confirm: bool, what: &str) -> Result<Vec<u8>> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password given: set ARCA_PASSWORD, ARCA_PASSWORD_FILE or ARCA_PASSWORD_COMMAND, or run on a terminal"
        );
    }
    let p = rpassword::prompt_password(format!("enter {what}: "))?;
    if confirm {
        let again = rpassword::prompt_password(format!("enter {what} again: "))?;
        if again != p {
            bail!("the passwords do not match");
        }
    }
    if p.is_empty() {
        bail!("an empty password is not allowed");
    }
    Ok(p.into_bytes())
}
