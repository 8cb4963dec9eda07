//! `arca completions` and `arca man`: generated from the clap definitions.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{CompletionsArgs, ManArgs};
use crate::cmd::Cli;

pub fn completions(a: CompletionsArgs) -> Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "arca", &mut std::io::stdout());
    Ok(crate::exit::OK)
}

pub fn man(a: ManArgs) -> Result<i32> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, &a.dir).context("writing man pages")?;
    Ok(crate::exit::OK)
}
