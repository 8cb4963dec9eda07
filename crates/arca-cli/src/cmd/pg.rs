//! `arca pg ...`: PostgreSQL dumps, base backups, point-in-time restore and WAL checks.

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::cli::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum PgCommand {
    /// Stream pg_dump into a snapshot
    Dump,
}

pub fn run(_g: &GlobalArgs, _c: PgCommand) -> Result<i32> {
    bail!("arca pg is not implemented yet")
}
