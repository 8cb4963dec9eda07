//! Renderers of the operations' reports: one function per report type, text on a terminal
//! or in a log, one JSON object with `--json`, nothing with `--quiet`.

use anyhow::Result;
use arca_ops::forget::ForgetReport;
use arca_ops::prune::PruneReport;

use crate::cli::GlobalArgs;
use crate::common::{human_bytes, local_time, print_json};
use crate::output::terminal_safe;

/// `arca forget`: each group's decisions, then how many snapshots went.
pub fn forget(g: &GlobalArgs, r: &ForgetReport) -> Result<()> {
    if g.json {
        return print_json(r);
    }
    if g.quiet {
        return Ok(());
    }
    for group in &r.groups {
        let key = if group.group.is_empty() {
            "(all)".into()
        } else {
            terminal_safe(group.group.as_bytes()).into_owned()
        };
        println!("snapshots of {key}:");
        println!("  {:<8}  {:<19}  {:<6}  reasons", "id", "time", "action");
        for d in &group.decisions {
            println!(
                "  {:<8}  {:<19}  {:<6}  {}",
                d.id.short(),
                local_time(d.time),
                if d.keep { "keep" } else { "remove" },
                terminal_safe(d.reasons.join(", ").as_bytes())
            );
        }
        let kept = group.decisions.iter().filter(|d| d.keep).count();
        println!(
            "  {} kept, {} removed\n",
            kept,
            group.decisions.len() - kept
        );
    }
    println!(
        "{} {} snapshots",
        if r.dry_run { "would remove" } else { "removed" },
        r.removed.len()
    );
    Ok(())
}

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
