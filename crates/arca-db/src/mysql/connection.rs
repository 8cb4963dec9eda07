//! Connection options for the MySQL/MariaDB tools, and the temporary option file that
//! carries the password to them.
//!
//! Host, port, socket and user go on the command line (they are not secret, and command-
//! line options beat option files, as a user giving a flag expects). The password goes
//! into a fresh option file with mode 0600 that is removed when the run ends; it is named
//! by the first argument (`--defaults-extra-file=`, or `--defaults-file=` when the user
//! chose an option file: the temporary file then `!include`s it and overrides only the
//! password). The children's environment loses `MYSQL_PWD` and arca's own password
//! variables.

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Error, Result};

/// Environment variables holding secrets that no child tool receives.
const SECRET_ENV: [&str; 4] = [
    "MYSQL_PWD",
    "ARCA_MYSQL_PASSWORD",
    "ARCA_PASSWORD",
    "ARCA_PASSWORD_COMMAND",
];

/// How to reach a server. Every field is optional: what is not given comes from the
/// tools' own option files (or `defaults_file`) and their defaults.
#[derive(Clone, Default)]
pub struct Connection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub socket: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// An option file used instead of the global ones (`--defaults-file`).
    pub defaults_file: Option<PathBuf>,
    /// How long the connection check waits for the server to answer
    /// ([`DEFAULT_CONNECT_TIMEOUT_SECS`] when unset).
    pub connect_timeout: Option<Duration>,
}

/// Seconds the SQL client waits for a server to answer by default (`--connect-timeout`).
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 30;

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("defaults_file", &self.defaults_file)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Which leading option names the temporary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptionFileRole {
    /// Read after the global option files (`--defaults-extra-file`).
    Extra,
    /// Read instead of them (`--defaults-file`); it includes the user's file.
    Defaults,
}

/// A temporary option file holding the password; removed when dropped.
#[derive(Debug)]
pub struct OptionFile {
    path: tempfile::TempPath,
    role: OptionFileRole,
}

impl OptionFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first argument that makes a tool read this file.
    fn argument(&self) -> OsString {
        let mut arg = OsString::from(match self.role {
            OptionFileRole::Extra => "--defaults-extra-file=",
            OptionFileRole::Defaults => "--defaults-file=",
        });
        arg.push(self.path.as_os_str());
        arg
    }
}

/// An option-file value in double quotes with the escapes the MySQL option-file parser
/// understands, so any password (with `#`, quotes, backslashes, spaces) survives.
pub(crate) fn quote_option_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Connection {
    /// The connection timeout in whole seconds, at least 1 (the tools take no fractions).
    pub fn connect_timeout_secs(&self) -> u64 {
        self.connect_timeout
            .map_or(DEFAULT_CONNECT_TIMEOUT_SECS, |d| d.as_secs().max(1))
    }

    /// Where the tools will connect, for messages ("socket /run/mysqld/mysqld.sock").
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.socket {
            parts.push(format!("socket {}", s.display()));
        }
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = self.port {
            parts.push(format!("port {p}"));
        }
        if let Some(u) = &self.user {
            parts.push(format!("user {u}"));
        }
        if let Some(f) = &self.defaults_file {
            parts.push(format!("option file {}", f.display()));
        }
        if parts.is_empty() {
            for (var, what) in [("MYSQL_UNIX_PORT", "socket"), ("MYSQL_HOST", "host")] {
                if let Some(v) = std::env::var_os(var) {
                    parts.push(format!("{what} {} from {var}", v.to_string_lossy()));
                }
            }
        }
        if parts.is_empty() {
            "the default server of the client option files".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// Writes the temporary option file of one run: `None` when there is no password to
    /// pass (the tools then read `defaults_file` or their usual option files).
    pub fn option_file(&self) -> Result<Option<OptionFile>> {
        let Some(password) = &self.password else {
            return Ok(None);
        };
        if password.contains('\0') {
            return Err(Error::Invalid(
                "the MySQL password contains a NUL byte".to_string(),
            ));
        }
        let mut text = String::from("# written by arca for one run; removed when it ends\n");
        let role = match &self.defaults_file {
            Some(f) => {
                let abs = std::fs::canonicalize(f)
                    .map_err(|e| Error::io(format!("option file {}", f.display()), e))?;
                let abs = abs.to_str().filter(|s| !s.contains('\n')).ok_or_else(|| {
                    Error::Invalid(format!(
                        "option file path {} cannot be included (not UTF-8 or has a newline)",
                        f.display()
                    ))
                })?;
                text.push_str(&format!("!include {abs}\n"));
                OptionFileRole::Defaults
            }
            None => OptionFileRole::Extra,
        };
        text.push_str("[client]\npassword=");
        text.push_str(&quote_option_value(password));
        text.push('\n');
        let mut file = tempfile::Builder::new()
            .prefix("arca-mysql-")
            .suffix(".cnf")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile()
            .map_err(|e| Error::io("creating a temporary MySQL option file", e))?;
        let shown = file.path().display().to_string();
        let context = || format!("writing {shown}");
        // tempfile creates it 0600 already; say so explicitly against a changed umask policy.
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(context(), e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| Error::io(context(), e))?;
        file.flush().map_err(|e| Error::io(context(), e))?;
        Ok(Some(OptionFile {
            path: file.into_temp_path(),
            role,
        }))
    }

    /// The connection arguments of a tool, option-file argument first (the tools only
    /// honour it there).
    pub fn arguments(&self, option_file: Option<&OptionFile>) -> Vec<OsString> {
        let mut args = Vec::new();
        match (option_file, &self.defaults_file) {
            (Some(f), _) => args.push(f.argument()),
            (None, Some(d)) => {
                let mut a = OsString::from("--defaults-file=");
                a.push(d.as_os_str());
                args.push(a);
            }
            (None, None) => {}
        }
        if let Some(h) = &self.host {
            args.push(format!("--host={h}").into());
        }
        if let Some(p) = self.port {
            args.push(format!("--port={p}").into());
        }
        if let Some(s) = &self.socket {
            let mut a = OsString::from("--socket=");
            a.push(s.as_os_str());
            args.push(a);
        }
        if let Some(u) = &self.user {
            args.push(format!("--user={u}").into());
        }
        args
    }

    /// `program` with the connection arguments and an environment without secrets.
    pub(crate) fn command(&self, program: &Path, option_file: Option<&OptionFile>) -> Command {
        let mut c = Command::new(program);
        c.args(self.arguments(option_file));
        scrub_environment(&mut c);
        c
    }
}

/// Removes secret variables from a child's environment.
pub(crate) fn scrub_environment(c: &mut Command) {
    for v in SECRET_ENV {
        c.env_remove(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(password: Option<&str>) -> Connection {
        Connection {
            host: Some("db.example".into()),
            port: Some(3307),
            socket: None,
            user: Some("backup".into()),
            password: password.map(String::from),
            defaults_file: None,
            connect_timeout: None,
        }
    }

    #[test]
    fn password_only_in_a_private_file_named_first() {
        let secret = "s3cr#t \"quoted\" back\\slash";
        let c = conn(Some(secret));
        let file = c.option_file().unwrap().expect("an option file");
        let args = c.arguments(Some(&file));
        let first = args[0].to_string_lossy().into_owned();
        assert!(first.starts_with("--defaults-extra-file="), "{first}");
        assert!(first.ends_with(&*file.path().to_string_lossy()));
        for a in &args {
            assert!(
                !a.to_string_lossy().contains("s3cr"),
                "{a:?} leaks the password"
            );
            assert!(!a.to_string_lossy().starts_with("-p"));
            assert!(!a.to_string_lossy().starts_with("--password"));
        }
        assert_eq!(
            args[1..],
            [
                OsString::from("--host=db.example"),
                "--port=3307".into(),
                "--user=backup".into()
            ]
        );
        let md = std::fs::metadata(file.path()).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(
            text.contains("[client]\npassword=\"s3cr#t \\\"quoted\\\" back\\\\slash\"\n"),
            "{text}"
        );
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists(), "the option file outlives its run");
    }

    #[test]
    fn no_password_no_file() {
        let c = conn(None);
        assert!(c.option_file().unwrap().is_none());
        assert_eq!(c.arguments(None).len(), 3);
    }

    #[test]
    fn user_option_file_is_included_by_the_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let user_file = dir.path().join("my.cnf");
        std::fs::write(&user_file, "[client]\nuser=me\n").unwrap();
        let mut c = conn(Some("pw"));
        c.defaults_file = Some(user_file.clone());
        let file = c.option_file().unwrap().unwrap();
        let args = c.arguments(Some(&file));
        assert!(args[0].to_string_lossy().starts_with("--defaults-file=/"));
        let text = std::fs::read_to_string(file.path()).unwrap();
        let abs = std::fs::canonicalize(&user_file).unwrap();
        assert!(
            text.contains(&format!("!include {}\n", abs.display())),
            "{text}"
        );
        // Without a password the user's file is named directly.
        c.password = None;
        assert!(c.option_file().unwrap().is_none());
        assert_eq!(
            c.arguments(None)[0],
            OsString::from(format!("--defaults-file={}", user_file.display()))
        );
    }

    #[test]
    fn debug_redacts_the_password() {
        let shown = format!("{:?}", conn(Some("hunter2")));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote_option_value("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
