//! Renderers of the operations' reports: one function per report type, text on a terminal
//! or in a log, one JSON object with `--json`, nothing with `--quiet`.

use anyhow::Result;
use arca_ops::prune::PruneReport;

use crate::cli::GlobalArgs;
use crate::common::{human_bytes, print_json};

/// `arca prune`, `arca forget --prune`.
pub fn prune(g: &GlobalArgs, r: &PruneReport) -> Result<()> {
    if g.json {
        return print_json(r);
    }
    if g.quiet {
        return Ok(());
    }
    let plan = &r.plan;
    if r.temporary_files_removed > 0 {
        println!(
            "removed {} temporary files of interrupted writes",
            r.temporary_files_removed
        );
    }
    println!(
        "used: {} blobs, {}; unused: {} blobs, {}",
        plan.blobs_used,
        human_bytes(plan.bytes_used),
        plan.blobs_unused,
        human_bytes(plan.bytes_unused)
    );
    println!(
        "plan: delete {} packs, repack {} packs ({}), delete {} unindexed packs, keep {} packs; frees {}",
        plan.delete_packs.len(),
        plan.repack_packs.len(),
        human_bytes(plan.bytes_repacked),
        plan.delete_unindexed.len(),
        plan.packs_kept,
        human_bytes(plan.bytes_freed)
    );
    println!(
        "{}",
        if r.dry_run {
            "dry run: nothing changed"
        } else if r.executed {
            "prune done"
        } else {
            "nothing to prune"
        }
    );
    Ok(())
}
