//! `arca check` and `arca repair`.

use anyhow::Result;
use arca_core::check::{ReadData, repair_index};

use crate::cli::{CheckArgs, GlobalArgs, RepairCommand};
use crate::common;
use crate::output::CliProgress;
use crate::render;

pub fn run(g: &GlobalArgs, a: CheckArgs) -> Result<i32> {
    let session = common::session_uncached(g)?;
    let read_data = match (a.read_data_subset, a.read_data) {
        (Some(subset), _) => subset,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let progress = CliProgress::new(g, "check");
    let report = arca_ops::check::check(&session, read_data, &common::interrupted, &progress);
    progress.finish();
    let report = report?;
    render::check(g, &report)?;
    Ok(if report.is_ok() {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    })
}

pub fn repair(g: &GlobalArgs, c: RepairCommand) -> Result<i32> {
    let repo = common::open_uncached(g)?;
    match c {
        RepairCommand::Index => {
            let _lock = common::lock(g, &repo, true, "repair index")?;
            let (n, bad) = repair_index(&repo)?;
            for (id, e) in &bad {
                eprintln!("warning: pack {id} is unreadable and was left out: {e}");
            }
            if g.json {
                common::print_json(
                    &serde_json::json!({"packs_indexed": n, "packs_unreadable": bad.len()}),
                )?;
            } else if !g.quiet {
                println!(
                    "rebuilt the index from {n} packs ({} unreadable)",
                    bad.len()
                );
            }
        }
        RepairCommand::Snapshots {
            read_data,
            forget,
            dry_run,
        } => {
            let _lock = common::lock(g, &repo, forget && !dry_run, "repair snapshots")?;
            let done = arca_core::check::repair_snapshots(&repo, read_data, forget, dry_run)?;
            if g.json {
                common::print_json(&done)?;
            } else if !g.quiet {
                for r in &done {
                    println!(
                        "snapshot {} -> {}: left out {}",
                        r.snapshot.short(),
                        r.new_snapshot.map_or("(dry run)".into(), |n| n.short()),
                        r.removed.join(", ")
                    );
                }
                println!("{} snapshots repaired", done.len());
            }
        }
    }
    Ok(crate::exit::OK)
}
