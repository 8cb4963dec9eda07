//! The options every database command shares, declared once and flattened into the
//! PostgreSQL (`arca pg`) and MySQL/MariaDB (`arca mysql`) connection options.

use std::time::Duration;

use anyhow::Result;
use clap::Args;

/// How long a database tool may wait for its server to answer.
#[derive(Debug, Args, Clone)]
pub struct DbConnectArgs {
    /// How long a database client tool waits for the server to answer before it gives up
    /// (whole seconds, at least 1; PostgreSQL: the default of PGCONNECT_TIMEOUT, which wins
    /// when set; MySQL/MariaDB: the client's --connect-timeout)
    #[arg(
        long,
        env = "ARCA_DB_CONNECT_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub db_connect_timeout: arca_core::units::Elapsed,
}

impl DbConnectArgs {
    /// The limit, parsed by the duration parser of every other timeout.
    pub fn limit(&self) -> Result<Duration> {
        let limit = self.db_connect_timeout.0;
        if limit.is_zero() {
            anyhow::bail!("--db-connect-timeout (ARCA_DB_CONNECT_TIMEOUT) must be longer than 0s");
        }
        Ok(limit)
    }
}
