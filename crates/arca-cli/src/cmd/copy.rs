//! `arca copy`: copy snapshots from another repository into this one.

use anyhow::{Context, Result, bail};
use arca_core::Repository;
use arca_core::copy::copy_snapshots;

use crate::cli::{CopyArgs, FromRepoArgs, GlobalArgs};
use crate::common;
use crate::output::CliProgress;

/// Opens the source repository named by --from-repo with its own password source.
pub fn open_source(g: &GlobalArgs, f: &FromRepoArgs) -> Result<Repository> {
    let loc = f
        .from_repo
        .as_deref()
        .context("no source repository: use --from-repo or ARCA_FROM_REPOSITORY")?;
    let storage = arca_storage::open_location(loc)?;
    let src_args = GlobalArgs {
        repo: Some(loc.to_string()),
        password_file: f.from_password_file.clone(),
        password_command: f.from_password_command.clone(),
        ..g.clone()
    };
    let password = match std::env::var("ARCA_FROM_PASSWORD") {
        Ok(p) if f.from_password_file.is_none() && f.from_password_command.is_none() => {
            p.into_bytes()
        }
        _ => crate::password::get(&src_args, false).context("password of the source repository")?,
    };
    Repository::open(storage, &password).with_context(|| format!("opening source repository {loc}"))
}

pub fn run(g: &GlobalArgs, a: CopyArgs) -> Result<i32> {
    let src = open_source(g, &a.from)?;
    let dst = common::open(g)?;
    if src.config().id == dst.config().id {
        bail!("source and destination are the same repository");
    }
    let _dst_lock = common::lock(g, &dst, false, "copy")?;
    let snaps = common::all_snapshots(&src)?;
    let selected = common::select(&snaps, &a.snapshots, Some(&a.filter))?;
    let progress = CliProgress::new(g, "copy");
    let result = copy_snapshots(&src, &dst, &selected, &progress);
    progress.finish();
    let s = result?;
    if g.json {
        common::print_json(&s)?;
    } else if !g.quiet {
        for (from, to) in &s.copied {
            println!("copied snapshot {} -> {}", from.short(), to.short());
        }
        println!(
            "{} copied, {} already present; added {} blobs ({})",
            s.copied.len(),
            s.skipped.len(),
            s.blobs_added,
            common::human_bytes(s.bytes_added)
        );
    }
    Ok(crate::exit::OK)
}
