//! `arca daemon`, `arca job`, `arca status`, `arca history`, `arca config`: the job
//! configuration file and the scheduler that runs it.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct DaemonArgs {}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List the configured jobs
    List,
}

#[derive(Debug, Args)]
pub struct StatusArgs {}

#[derive(Debug, Args)]
pub struct HistoryArgs {}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file
    Check,
}

pub fn daemon(_g: &GlobalArgs, _a: DaemonArgs) -> Result<i32> {
    bail!("arca daemon is not implemented yet")
}

pub fn job(_g: &GlobalArgs, _c: JobCommand) -> Result<i32> {
    bail!("arca job is not implemented yet")
}

pub fn status(_g: &GlobalArgs, _a: StatusArgs) -> Result<i32> {
    bail!("arca status is not implemented yet")
}

pub fn history(_g: &GlobalArgs, _a: HistoryArgs) -> Result<i32> {
    bail!("arca history is not implemented yet")
}

pub fn config(_g: &GlobalArgs, _c: ConfigCommand) -> Result<i32> {
    bail!("arca config is not implemented yet")
}
