//! `arca copy`: copy snapshots from another repository into this one (the copy operation
//! of arca-ops; the source is opened as a session like the destination, with the same
//! connection, bandwidth and cache settings).

use std::sync::Arc;

use anyhow::{Context, Result};
use arca_ops::{PasswordError, PasswordSource, Session};

use crate::cli::{CopyArgs, FromRepoArgs, GlobalArgs};
use crate::common;
use crate::output::CliProgress;
use crate::render;

/// The password source of the repository named by --from-repo: its own command or file,
/// else ARCA_FROM_PASSWORD, else ARCA_PASSWORD, else a prompt.
fn source_password(g: &GlobalArgs, f: &FromRepoArgs) -> Result<PasswordSource> {
    if let Some(command) = &f.from_password_command {
        let timeout = arca_core::units::parse_elapsed(&g.password_command_timeout)
            .context("--password-command-timeout (ARCA_PASSWORD_COMMAND_TIMEOUT)")?;
        return Ok(PasswordSource::Command {
            command: command.clone(),
            timeout,
        });
    }
    if let Some(p) = &f.from_password_file {
        return Ok(PasswordSource::File(p.clone()));
    }
    for var in ["ARCA_FROM_PASSWORD", "ARCA_PASSWORD"] {
        if std::env::var_os(var).is_some() {
            return Ok(PasswordSource::Env(var.into()));
        }
    }
    Ok(PasswordSource::Prompt(Arc::new(|| {
        crate::password::prompt(false, "password of the source repository")
            .map_err(|e| PasswordError::Prompt(e.to_string()))
    })))
}

/// Opens the source repository named by --from-repo with its own password source.
pub fn open_source(g: &GlobalArgs, f: &FromRepoArgs) -> Result<Session> {
    let location = f
        .from_repo
        .as_deref()
        .context("no source repository: use --from-repo or ARCA_FROM_REPOSITORY")?;
    let mut spec = common::spec_without_password(g)?;
    spec.location = location.to_string();
    spec.password = source_password(g, f)?;
    // The source is only read: the client-side append-only layer is the destination's.
    spec.append_only = false;
    Session::open(&spec, arca_ops::Access::Cached)
        .map_err(common::open_error)
        .with_context(|| format!("opening source repository {location}"))
}

pub fn run(g: &GlobalArgs, a: CopyArgs) -> Result<i32> {
    let source = open_source(g, &a.from)?;
    let destination = common::session(g)?;
    let snaps = common::all_snapshots(source.repository())?;
    let selected = common::select(&snaps, &a.snapshots, Some(&a.filter))?;
    let progress = CliProgress::new(g, "copy");
    let result = arca_ops::copy::copy(
        &source,
        &destination,
        &selected,
        &common::interrupted,
        &progress,
    );
    progress.finish();
    render::copy(g, &result?)?;
    Ok(crate::exit::OK)
}
