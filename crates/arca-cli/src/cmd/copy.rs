//! `arca copy`: copy snapshots from another repository into this one (the copy operation
//! of arca-ops; the source is opened as a session like the destination, with the same
//! connection, bandwidth and cache settings).

use anyhow::{Context, Result};
use arca_ops::Session;

use crate::cli::{CopyArgs, FromRepoArgs, GlobalArgs};
use crate::common;
use crate::output::CliProgress;
use crate::render;

/// Opens the source repository named by --from-repo with its own password source.
pub fn open_source(g: &GlobalArgs, f: &FromRepoArgs) -> Result<Session> {
    let location = f
        .from_repo
        .as_deref()
        .context("no source repository: use --from-repo or ARCA_FROM_REPOSITORY")?;
    // Its own command or file, else ARCA_FROM_PASSWORD, else ARCA_PASSWORD, else a prompt.
    let given = crate::password::Given {
        command: f.from_password_command.as_deref(),
        file: f.from_password_file.as_deref(),
        env: &["ARCA_FROM_PASSWORD", "ARCA_PASSWORD"],
        prompt: "password of the source repository",
    };
    let password = crate::password::source_of(g, &given, false)?;
    let mut spec = common::spec_with(g, location.to_string(), password)?;
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
