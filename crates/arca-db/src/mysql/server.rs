//! Asking the server about itself through the SQL client: version, binary logging, GTID
//! position, databases. The first query doubles as the connection check that turns wrong
//! credentials or a stopped server into a clear error before any snapshot work starts.

use std::path::Path;
use std::process::Stdio;

use super::connection::{Connection, OptionFile};
use super::tools::{Tool, find_tool, tool_name};
use super::{Error, Result};

/// What the server says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// `@@version`, e.g. `10.11.19-MariaDB-0+deb12u1-log`.
    pub version: String,
    /// `@@version_comment`.
    pub version_comment: String,
    /// "mariadb" or "mysql".
    pub flavor: String,
    /// Whether binary logging is on (`@@log_bin`).
    pub log_bin: bool,
    /// MariaDB `@@gtid_binlog_pos` or MySQL `@@gtid_executed`, when not empty.
    pub gtid: Option<String>,
    /// `@@datadir`.
    pub datadir: Option<String>,
}

/// Runs one SQL statement through the client; rows of tab-separated columns.
pub(crate) fn query(
    client: &Path,
    conn: &Connection,
    option_file: Option<&OptionFile>,
    sql: &str,
) -> Result<Vec<Vec<String>>> {
    let mut c = conn.command(client, option_file);
    c.args(["--batch", "--skip-column-names", "--raw"])
        .arg(format!("--connect-timeout={}", conn.connect_timeout_secs()))
        .args(["-e", sql])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let tool = tool_name(client);
    let out = c.output().map_err(|source| Error::Spawn {
        tool: tool.clone(),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(Error::ToolFailed {
            tool,
            status: out.status.to_string(),
            target: conn.describe(),
            message: if message.is_empty() {
                "no error output".into()
            } else {
                message
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(String::from).collect())
        .collect())
}

/// Whether the client's error says the server did not answer in time (errno 110,
/// ETIMEDOUT: "Lost connection to server at 'handshake: reading initial communication
/// packet', system error: 110", or "Can't connect to server on 'h' (110)").
fn is_timeout(message: &str) -> bool {
    message.contains("system error: 110")
        || message.contains("(110)")
        || message.to_ascii_lowercase().contains("timed out")
}

/// Connects and reads the server's version, binary logging state and GTID position.
/// A failure here is reported as [`Error::Connect`].
pub(crate) fn server_info_with(
    client: &Path,
    conn: &Connection,
    option_file: Option<&OptionFile>,
) -> Result<ServerInfo> {
    let rows = query(
        client,
        conn,
        option_file,
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
         ('version','version_comment','log_bin','gtid_binlog_pos','gtid_executed','datadir')",
    )
    .map_err(|e| match e {
        Error::ToolFailed { tool, message, .. } => Error::Connect {
            server: conn.describe(),
            message: if is_timeout(&message) {
                format!(
                    "{tool}: no answer within {}s (--db-connect-timeout, ARCA_DB_CONNECT_TIMEOUT): {message}",
                    conn.connect_timeout_secs()
                )
            } else {
                message
            },
        },
        other => other,
    })?;
    let mut info = ServerInfo::default();
    for row in rows {
        let (Some(name), value) = (row.first(), row.get(1).cloned().unwrap_or_default()) else {
            continue;
        };
        match name.as_str() {
            "version" => info.version = value,
            "version_comment" => info.version_comment = value,
            "log_bin" => info.log_bin = value.eq_ignore_ascii_case("ON") || value == "1",
            "gtid_binlog_pos" | "gtid_executed" if !value.trim().is_empty() => {
                info.gtid = Some(value.trim().to_string())
            }
            "datadir" => info.datadir = Some(value),
            _ => {}
        }
    }
    info.flavor = if info.version.to_ascii_lowercase().contains("mariadb")
        || info
            .version_comment
            .to_ascii_lowercase()
            .contains("mariadb")
    {
        "mariadb".into()
    } else {
        "mysql".into()
    };
    if info.version.is_empty() {
        return Err(Error::Connect {
            server: conn.describe(),
            message: "the server did not report its version".into(),
        });
    }
    Ok(info)
}

/// Connects to the server described by `conn` and reads what it says about itself.
pub fn server_info(conn: &Connection) -> Result<ServerInfo> {
    let client = find_tool(Tool::Client)?;
    let option_file = conn.option_file()?;
    server_info_with(&client, conn, option_file.as_ref())
}

/// The databases a dump of everything covers (without the virtual schemas).
pub(crate) fn list_databases(
    client: &Path,
    conn: &Connection,
    option_file: Option<&OptionFile>,
) -> Result<Vec<String>> {
    Ok(query(client, conn, option_file, "SHOW DATABASES")?
        .into_iter()
        .filter_map(|row| row.into_iter().next())
        .filter(|d| {
            !matches!(
                d.as_str(),
                "information_schema" | "performance_schema" | "sys"
            )
        })
        .collect())
}

/// The server's metadata keys: `server_version`, `server_flavor`, `binlog`.
pub(crate) fn add_server_meta(
    info: &ServerInfo,
    meta: &mut std::collections::BTreeMap<String, String>,
) {
    meta.insert("server_version".into(), info.version.clone());
    meta.insert("server_flavor".into(), info.flavor.clone());
    meta.insert(
        "binlog".into(),
        if info.log_bin { "on" } else { "off" }.into(),
    );
}
