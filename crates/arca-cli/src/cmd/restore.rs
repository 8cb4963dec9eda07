//! `arca restore`: restore a snapshot or part of it into a directory (the restore
//! operation of arca-ops).

use std::path::PathBuf;

use anyhow::Result;
use arca_core::restore::{Overwrite, RestoreOptions};

use crate::cli::{GlobalArgs, OverwriteArg, RestoreArgs};
use crate::common;
use crate::output::CliProgress;
use crate::render;

pub fn run(g: &GlobalArgs, a: RestoreArgs) -> Result<i32> {
    let session = common::session(g)?;
    let snaps = common::all_snapshots(session.repository())?;
    let (r, sub) = common::split_ref(&a.snapshot);
    let (id, snap) = common::resolve(&snaps, r, None)?;
    let sub_path = PathBuf::from("/").join(sub.unwrap_or("").trim_start_matches('/'));
    let opts = RestoreOptions {
        includes: a.includes.clone(),
        excludes: a.excludes.clone(),
        overwrite: match a.overwrite {
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::Never => Overwrite::Never,
        },
        delete: a.delete,
        dry_run: a.dry_run,
        verify: a.verify,
        threads: g.threads,
        ownership: None,
        sync: a.sync,
    };
    let progress = CliProgress::new(g, "restore");
    let result = arca_ops::restore::restore(
        &session,
        (&id, &snap),
        &sub_path,
        &a.target,
        &opts,
        &progress,
    );
    progress.finish();
    let report = result?;
    render::restore(g, &report)?;
    Ok(if report.summary.errors.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    })
}
