//! `arca mysql ...`: MySQL/MariaDB logical dumps and physical backups.

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::cli::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum MysqlCommand {
    /// Stream mysqldump/mariadb-dump into a snapshot
    Dump,
}

pub fn run(_g: &GlobalArgs, _c: MysqlCommand) -> Result<i32> {
    bail!("arca mysql is not implemented yet")
}
