//! `arca wal-push` / `arca wal-fetch`: PostgreSQL's archive_command and restore_command.

use anyhow::{Result, bail};
use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// Path of the WAL file to archive (%p)
    pub path: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    /// Name of the WAL file wanted (%f)
    pub name: String,
    /// Where to write it (%p)
    pub dest: std::path::PathBuf,
}

pub fn push(_g: &GlobalArgs, _a: WalPushArgs) -> Result<i32> {
    bail!("arca wal-push is not implemented yet")
}

pub fn fetch(_g: &GlobalArgs, _a: WalFetchArgs) -> Result<i32> {
    bail!("arca wal-fetch is not implemented yet")
}
