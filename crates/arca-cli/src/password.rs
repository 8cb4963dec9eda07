//! Where passwords come from: ARCA_PASSWORD, a file, a command, or a terminal prompt. A
//! password command is killed after `--password-command-timeout` (60 s by default). The
//! rules are arca-ops' ([`PasswordSource`]); this module maps the flags to a source.

use std::io::IsTerminal;
use std::path::Path;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arca_ops::{PasswordError, PasswordSource};

use crate::cli::GlobalArgs;

/// The first line of a password file (for `key add --new-password-file`).
pub fn from_file(path: &Path) -> Result<Vec<u8>> {
    Ok(PasswordSource::File(path.to_path_buf()).read()?)
}

/// The password source that the flags and `ARCA_*` variables name, in order of
/// precedence: a command, a file, `ARCA_PASSWORD`, the terminal. `confirm` asks twice on a
/// terminal (for new passwords).
pub fn source(g: &GlobalArgs, confirm: bool) -> Result<PasswordSource> {
    let given = Given {
        command: g.password_command.as_deref(),
        file: g.password_file.as_deref(),
        env: &["ARCA_PASSWORD"],
        prompt: "repository password",
    };
    source_of(g, &given, confirm)
}

/// Where one repository's password may come from.
pub struct Given<'a> {
    pub command: Option<&'a str>,
    pub file: Option<&'a Path>,
    /// Environment variables, the first that is set wins.
    pub env: &'a [&'static str],
    /// What the terminal prompt asks for.
    pub prompt: &'static str,
}

/// The source `given` names, in order of precedence: the command (killed after
/// `--password-command-timeout`), the file, the variables, the terminal.
pub fn source_of(g: &GlobalArgs, given: &Given<'_>, confirm: bool) -> Result<PasswordSource> {
    if let Some(command) = given.command {
        let timeout = arca_core::units::parse_elapsed(&g.password_command_timeout)
            .context("--password-command-timeout (ARCA_PASSWORD_COMMAND_TIMEOUT)")?;
        return Ok(PasswordSource::Command {
            command: command.to_string(),
            timeout,
        });
    }
    if let Some(p) = given.file {
        return Ok(PasswordSource::File(p.to_path_buf()));
    }
    if let Some(var) = given.env.iter().find(|v| std::env::var_os(v).is_some()) {
        return Ok(PasswordSource::Env(var.to_string()));
    }
    let what = given.prompt;
    Ok(PasswordSource::Prompt(Arc::new(move || {
        prompt(confirm, what).map_err(|e| PasswordError::Prompt(e.to_string()))
    })))
}

/// The repository password from the sources in order of precedence.
pub fn get(g: &GlobalArgs, confirm: bool) -> Result<Vec<u8>> {
    Ok(source(g, confirm)?.read()?)
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
