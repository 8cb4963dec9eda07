//! The PostgreSQL client tools arca runs (psql, pg_dump, pg_dumpall, pg_restore,
//! pg_basebackup): finding them, running them with their error output captured, and the
//! server facts asked through psql.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use arca_core::backup::ChildResult;
use arca_core::child::{ChildError, ChildOptions, ChildProcess};

use super::{Error, Result};

/// Where the client tools are: an explicit directory, or PATH.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub bindir: Option<PathBuf>,
    /// The default of `PGCONNECT_TIMEOUT` ([`CONNECT_TIMEOUT_SECS`] when unset); a
    /// `PGCONNECT_TIMEOUT` in arca's environment wins.
    pub connect_timeout: Option<Duration>,
}

impl Tools {
    pub fn new(bindir: Option<PathBuf>) -> Tools {
        Tools {
            bindir,
            connect_timeout: None,
        }
    }

    /// The same tools with a connection timeout.
    pub fn with_connect_timeout(mut self, limit: Option<Duration>) -> Tools {
        self.connect_timeout = limit;
        self
    }

    /// The connection timeout the tools get, in whole seconds (at least 1), and where it
    /// comes from.
    pub fn effective_connect_timeout(&self) -> (String, &'static str) {
        if let Some(v) = std::env::var_os("PGCONNECT_TIMEOUT") {
            return (v.to_string_lossy().into_owned(), "PGCONNECT_TIMEOUT");
        }
        let secs = self.connect_timeout.map_or_else(
            || CONNECT_TIMEOUT_SECS.to_string(),
            |d| d.as_secs().max(1).to_string(),
        );
        (secs, "--db-connect-timeout, ARCA_DB_CONNECT_TIMEOUT")
    }

    /// The path of `tool`, or a clear error naming where it was looked for.
    pub fn find(&self, tool: &str) -> Result<PathBuf> {
        if let Some(dir) = &self.bindir {
            let p = dir.join(tool);
            if is_executable(&p) {
                return Ok(p);
            }
            return Err(Error::ToolMissing {
                tool: tool.into(),
                looked: dir.display().to_string(),
            });
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        for dir in std::env::split_paths(&path) {
            let p = dir.join(tool);
            if is_executable(&p) {
                return Ok(p);
            }
        }
        Err(Error::ToolMissing {
            tool: tool.into(),
            looked: "PATH".into(),
        })
    }

    pub fn command(&self, tool: &str) -> Result<Command> {
        let mut c = Command::new(self.find(tool)?);
        c.stdin(Stdio::null());
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            c.env("PGCONNECT_TIMEOUT", self.effective_connect_timeout().0);
        }
        Ok(c)
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Seconds libpq waits for a connection to the server by default (`PGCONNECT_TIMEOUT`).
pub const CONNECT_TIMEOUT_SECS: &str = "30";

/// A running tool (an [`arca_core::child::ChildProcess`]: its error output kept, killed
/// when dropped unfinished) and the connection timeout it was given.
pub(crate) struct Running {
    pub child: ChildProcess,
    /// The connection timeout the tool got, in seconds, and where it came from.
    connect_timeout: (String, &'static str),
}

impl Running {
    /// Spawns `cmd` with stderr captured; stdout as the caller configured it. A server
    /// that does not answer fails the connection after [`CONNECT_TIMEOUT_SECS`] unless
    /// `PGCONNECT_TIMEOUT` is set (in arca's environment or by the caller).
    pub fn spawn(tool: &str, mut cmd: Command) -> Result<Running> {
        let given = cmd
            .get_envs()
            .find(|(k, _)| *k == "PGCONNECT_TIMEOUT")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
        let connect_timeout = match (std::env::var("PGCONNECT_TIMEOUT"), given) {
            (Ok(v), _) => (v, "PGCONNECT_TIMEOUT"),
            (Err(_), Some(v)) => (v, "--db-connect-timeout, ARCA_DB_CONNECT_TIMEOUT"),
            (Err(_), None) => {
                cmd.env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS);
                (
                    CONNECT_TIMEOUT_SECS.to_string(),
                    "--db-connect-timeout, ARCA_DB_CONNECT_TIMEOUT",
                )
            }
        };
        // Database tools stay in arca's process group: they may ask for a password.
        let child =
            ChildProcess::spawn(tool, &mut cmd, ChildOptions::default()).map_err(|e| match e {
                ChildError::Spawn { tool, source } => Error::Spawn {
                    tool,
                    error: source,
                },
                e => Error::Child(e),
            })?;
        Ok(Running {
            child,
            connect_timeout,
        })
    }

    /// The tool's standard input (piped by the caller).
    pub fn take_stdin(&self) -> Result<ChildStdin> {
        Ok(self.child.take_stdin()?)
    }

    /// The tool's standard output (piped by the caller).
    pub fn take_stdout(&self) -> Result<ChildStdout> {
        Ok(self.child.take_stdout()?)
    }

    /// Waits; returns the status and the error output.
    pub fn wait(&self) -> Result<(ExitStatus, String)> {
        let status = self.child.wait()?;
        Ok((status, self.child.stderr_tail().text()))
    }

    /// Waits and fails unless the tool succeeded; returns its error output (notices).
    pub fn finish(&self, target: &str) -> Result<String> {
        self.ended(self.child.finish(), target)
    }

    /// How the tool ended ([`ChildProcess::finish`]) as this crate's error: a failure
    /// names what it worked on, and a connection timeout says which setting gave it.
    pub fn ended(&self, ended: ChildResult, target: &str) -> Result<String> {
        match ended {
            Ok(tail) => Ok(tail.text()),
            Err(ChildError::Failed { tool, status, .. }) => {
                let err = self.child.stderr_tail().text();
                let (secs, from) = &self.connect_timeout;
                Err(Error::ToolFailed {
                    status,
                    target: target.into(),
                    message: if err.is_empty() {
                        "no error output".into()
                    } else if err.contains("timeout expired") {
                        format!("{tool}: no answer within {secs}s ({from}): {err}")
                    } else {
                        err
                    },
                    tool,
                })
            }
            Err(e) => Err(Error::Child(e)),
        }
    }

    /// [`Running::ended`] for a backup's accept step: the error as the engine's, with
    /// the note that no snapshot was written.
    pub fn accepted(&self, ended: ChildResult, target: &str) -> arca_core::Result<String> {
        self.ended(ended, target).map_err(|e| match e {
            Error::Child(e) => arca_core::Error::from(e),
            e => arca_core::Error::Invalid(format!("{e}; no snapshot was written")),
        })
    }
}

/// Runs a tool to completion and returns its standard output.
pub(crate) fn output(tool: &str, mut cmd: Command, target: &str) -> Result<String> {
    cmd.stdout(Stdio::piped());
    let r = Running::spawn(tool, cmd)?;
    let mut out = String::new();
    r.take_stdout()?
        .read_to_string(&mut out)
        .map_err(|error| Error::Spawn {
            tool: tool.into(),
            error,
        })?;
    r.finish(target)?;
    Ok(out)
}

/// Runs one query through psql; returns the rows, fields split on `|`.
pub(crate) fn query(tools: &Tools, dbname: &str, sql: &str) -> Result<Vec<Vec<String>>> {
    let mut c = tools.command("psql")?;
    c.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "|"])
        .connection(dbname)
        .arg("-c")
        .arg(sql);
    let out = output("psql", c, &describe_target(dbname))?;
    Ok(out
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect())
}

/// Splits the password out of a connection string, so it reaches the tools through
/// `PGPASSWORD` instead of their command line (visible in the process list).
pub(crate) fn split_password(dbname: &str) -> (String, Option<String>) {
    if let Some(rest) = dbname
        .strip_prefix("postgresql://")
        .or_else(|| dbname.strip_prefix("postgres://"))
    {
        let scheme = &dbname[..dbname.len() - rest.len()];
        let mut password = None;
        let (auth, rest) = match rest.split_once('@') {
            Some((userinfo, after)) if !userinfo.contains('/') => match userinfo.split_once(':') {
                Some((user, pw)) => {
                    password = Some(percent_decode(pw));
                    (format!("{user}@"), after)
                }
                None => (format!("{userinfo}@"), after),
            },
            _ => (String::new(), rest),
        };
        let rest = match rest.split_once('?') {
            Some((path, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| match kv.strip_prefix("password=") {
                        Some(pw) => {
                            password = Some(percent_decode(pw));
                            false
                        }
                        None => true,
                    })
                    .collect();
                if kept.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{}", kept.join("&"))
                }
            }
            None => rest.to_string(),
        };
        return (format!("{scheme}{auth}{rest}"), password);
    }
    if !dbname.contains('=') {
        return (dbname.to_string(), None);
    }
    let mut password = None;
    let kept: Vec<&str> = dbname
        .split_whitespace()
        .filter(|kv| match kv.strip_prefix("password=") {
            Some(pw) => {
                password = Some(pw.trim_matches('\'').to_string());
                false
            }
            None => true,
        })
        .collect();
    (kept.join(" "), password)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Adds `-d CONNECTION` to a tool's command line, the password moved to `PGPASSWORD`.
pub(crate) trait ConnectionArg {
    fn connection(&mut self, dbname: &str) -> &mut Self;
}

impl ConnectionArg for Command {
    fn connection(&mut self, dbname: &str) -> &mut Self {
        let (conn, password) = split_password(dbname);
        self.arg("-d").arg(conn);
        if let Some(pw) = password {
            self.env("PGPASSWORD", pw);
        }
        self
    }
}

/// A connection string for messages: the password (if any) is hidden.
pub(crate) fn describe_target(dbname: &str) -> String {
    if let Some(rest) = dbname
        .strip_prefix("postgresql://")
        .or_else(|| dbname.strip_prefix("postgres://"))
    {
        let scheme = &dbname[..dbname.len() - rest.len()];
        // userinfo: postgresql://user:secret@host/db
        let (auth, rest) = match rest.split_once('@') {
            Some((userinfo, after)) if !userinfo.contains('/') => match userinfo.split_once(':') {
                Some((user, _)) => (format!("{user}:***@"), after),
                None => (format!("{userinfo}@"), after),
            },
            _ => (String::new(), rest),
        };
        // query parameter: ...?password=secret&...
        let rest = match rest.split_once('?') {
            Some((path, query)) => {
                let q: Vec<String> = query
                    .split('&')
                    .map(|kv| {
                        if kv.starts_with("password=") {
                            "password=***".to_string()
                        } else {
                            kv.to_string()
                        }
                    })
                    .collect();
                format!("{path}?{}", q.join("&"))
            }
            None => rest.to_string(),
        };
        return format!("{scheme}{auth}{rest}");
    }
    dbname
        .split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `dbname` (a URI, a `key=value` string or a plain database name) connecting to the
/// database `db` instead.
pub fn with_dbname(dbname: &str, db: &str) -> String {
    if dbname.starts_with("postgresql://") || dbname.starts_with("postgres://") {
        let enc: String = db
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        // Later parameters win in libpq URIs.
        let sep = if dbname.contains('?') { '&' } else { '?' };
        format!("{dbname}{sep}dbname={enc}")
    } else if dbname.contains('=') {
        // Later keywords win in key=value strings.
        format!(
            "{dbname} dbname='{}'",
            db.replace('\\', "\\\\").replace('\'', "\\'")
        )
    } else {
        format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Facts about the server, asked before a backup (a failed connection fails here, with
/// psql's message).
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    pub version: String,
    pub version_num: String,
    pub database: String,
}

pub fn server_info(tools: &Tools, dbname: &str) -> Result<ServerInfo> {
    let rows = query(
        tools,
        dbname,
        "select current_setting('server_version'), current_setting('server_version_num'), current_database()",
    )
    .map_err(|e| match e {
        Error::ToolFailed {
            target, message, ..
        } => Error::Connect { target, message },
        other => other,
    })?;
    let row = rows.into_iter().next().unwrap_or_default();
    let get = |i: usize| row.get(i).cloned().unwrap_or_default();
    Ok(ServerInfo {
        version: get(0),
        version_num: get(1),
        database: get(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_get_a_connect_timeout_unless_one_is_set() {
        let mut c = Command::new("sh");
        c.args(["-c", "printf %s \"$PGCONNECT_TIMEOUT\""])
            .stdout(Stdio::piped());
        let expected =
            std::env::var("PGCONNECT_TIMEOUT").unwrap_or_else(|_| CONNECT_TIMEOUT_SECS.to_string());
        assert_eq!(output("sh", c, "test").ok(), Some(expected));
        let mut c = Command::new("sh");
        c.args(["-c", "printf %s \"$PGCONNECT_TIMEOUT\""])
            .env("PGCONNECT_TIMEOUT", "7")
            .stdout(Stdio::piped());
        assert_eq!(output("sh", c, "test").ok().as_deref(), Some("7"));
    }

    #[test]
    fn dbname_rewriting_and_hiding() {
        assert_eq!(
            with_dbname("postgresql:///postgres?host=/tmp&port=5433", "my db"),
            "postgresql:///postgres?host=/tmp&port=5433&dbname=my%20db"
        );
        assert_eq!(
            with_dbname("host=/tmp port=5433", "x"),
            "host=/tmp port=5433 dbname='x'"
        );
        assert_eq!(
            describe_target("postgresql://u:secret@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(
            describe_target("postgresql:///db?host=/s&password=secret&port=1"),
            "postgresql:///db?host=/s&password=***&port=1"
        );
        assert_eq!(
            split_password("postgresql://u:p%40ss@h/db?password=x&port=1"),
            (
                "postgresql://u@h/db?port=1".to_string(),
                Some("x".to_string())
            )
        );
        assert_eq!(
            split_password("postgresql://u:p%40ss@h/db"),
            ("postgresql://u@h/db".to_string(), Some("p@ss".to_string()))
        );
        assert_eq!(
            split_password("host=h password='pw' port=1"),
            ("host=h port=1".to_string(), Some("pw".to_string()))
        );
        assert_eq!(split_password("mydb"), ("mydb".to_string(), None));
        assert_eq!(
            describe_target("host=h password=secret"),
            "host=h password=***"
        );
    }
}
