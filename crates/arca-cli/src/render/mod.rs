//! Renderers of the operations' reports: one function per report type, text on a terminal
//! or in a log, one JSON object with `--json`, nothing with `--quiet`.

use anyhow::Result;
use arca_core::Id;
use arca_core::check::CheckReport;
use arca_core::format::Snapshot;
use arca_ops::backup::BackupReport;
use arca_ops::copy::CopyReport;
use arca_ops::forget::ForgetReport;
use arca_ops::prune::PruneReport;
use arca_ops::restore::RestoreReport;

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

/// `arca check`: every problem with what it affects (on stderr, also with `--quiet`),
/// then the totals; JSON: the report with `ok`.
pub fn check(g: &GlobalArgs, r: &CheckReport) -> Result<()> {
    if g.json {
        let mut v = serde_json::to_value(r)?;
        v["ok"] = serde_json::json!(r.is_ok());
        return print_json(&v);
    }
    if !g.quiet {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
    }
    for p in &r.problems {
        eprintln!("error: {}: {}", p.object, p.message);
        for a in &p.affects {
            eprintln!(
                "  affects snapshot {}: {}",
                a.snapshot.short(),
                terminal_safe(a.paths.join(", ").as_bytes())
            );
        }
    }
    if !g.quiet {
        println!(
            "checked {} snapshots, {} trees, {} index files, {} packs; read {} packs ({} blobs, {})",
            r.snapshots,
            r.trees,
            r.index_files,
            r.packs,
            r.packs_read,
            r.blobs_read,
            human_bytes(r.bytes_read)
        );
        if r.is_ok() {
            println!("no errors were found");
        }
    }
    if !r.is_ok() {
        eprintln!("{} problems found", r.problems.len());
    }
    Ok(())
}

/// `arca copy`: each copied snapshot and the totals; JSON: the report.
pub fn copy(g: &GlobalArgs, r: &CopyReport) -> Result<()> {
    if g.json {
        return print_json(r);
    }
    if g.quiet {
        return Ok(());
    }
    for (from, to) in &r.copied {
        println!("copied snapshot {} -> {}", from.short(), to.short());
    }
    println!(
        "{} copied, {} already present; added {} blobs ({})",
        r.copied.len(),
        r.skipped.len(),
        r.blobs_added,
        human_bytes(r.bytes_added)
    );
    Ok(())
}

/// `arca backup`: the counts, the new snapshot and what could not be read; JSON: one
/// `summary` message.
pub fn backup(g: &GlobalArgs, r: &BackupReport) -> Result<()> {
    let (snapshot, s) = (&r.snapshot, &r.snapshot.summary);
    if g.json {
        return print_json(&serde_json::json!({
            "message_type": "summary",
            "dry_run": r.dry_run,
            "snapshot_id": r.snapshot_id,
            "type": snapshot.backup_type,
            "parent": snapshot.parent,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unmodified": s.files_unmodified,
            "files_removed": s.files_removed,
            "dirs": s.dirs,
            "other_entries": s.other_entries,
            "bytes_read": s.bytes_read,
            "total_bytes": s.total_bytes,
            "blobs_added": s.blobs_added,
            "bytes_added": s.bytes_added,
            "bytes_added_raw": s.bytes_added_raw,
            "duration_secs": s.duration_secs,
            "errors": snapshot.errors,
            "incomplete": snapshot.is_incomplete(),
            "adopted_packs": r.adopted_packs,
        }));
    }
    if g.quiet {
        return Ok(());
    }
    if r.adopted_packs > 0 {
        eprintln!(
            "indexed {} packs left by an interrupted backup",
            r.adopted_packs
        );
    }
    println!(
        "files: {} new, {} changed, {} unmodified, {} removed; {} dirs",
        s.files_new, s.files_changed, s.files_unmodified, s.files_removed, s.dirs
    );
    println!(
        "read {} of {}, added {} ({} before compression) in {:.2}s",
        human_bytes(s.bytes_read),
        human_bytes(s.total_bytes),
        human_bytes(s.bytes_added),
        human_bytes(s.bytes_added_raw),
        s.duration_secs
    );
    match r.snapshot_id {
        Some(id) => println!(
            "snapshot {} saved ({}{})",
            id.short(),
            snapshot.backup_type.as_str(),
            snapshot
                .parent
                .map(|p| format!(", parent {}", p.short()))
                .unwrap_or_default()
        ),
        None => println!("dry run: no snapshot saved"),
    }
    if snapshot.is_incomplete() {
        eprintln!(
            "warning: {} entries could not be read; the snapshot is incomplete:",
            snapshot.errors.len()
        );
        for e in &snapshot.errors {
            eprintln!(
                "  {}: {}",
                terminal_safe(e.path.as_bytes()),
                crate::output::safe_lines(&e.reason)
            );
        }
    }
    Ok(())
}

/// Skipped entries listed by path in the text summary of a restore.
const SKIPPED_SHOWN: usize = 20;

/// `arca restore`: the counts, what was verified, deleted and skipped, the errors (on
/// stderr; without `--quiet` they were already shown as they happened); JSON: one
/// `summary` message.
pub fn restore(g: &GlobalArgs, r: &RestoreReport) -> Result<()> {
    let s = &r.summary;
    if g.json {
        let mut v = serde_json::to_value(s)?;
        v["message_type"] = serde_json::json!("summary");
        v["snapshot_id"] = serde_json::json!(r.snapshot_id);
        return print_json(&v);
    }
    if !g.quiet {
        println!(
            "{}restored snapshot {} to {}: {} files ({} written, {} unchanged), {} dirs, {} other; {} written in {:.2}s",
            if r.dry_run {
                "dry run: would have "
            } else {
                ""
            },
            r.snapshot_id.short(),
            r.target.display(),
            s.files,
            s.files_written,
            s.files_unchanged,
            s.dirs,
            s.other_entries,
            human_bytes(s.bytes_written),
            s.duration_secs
        );
        if r.verify {
            println!("verified {} files", s.verified_files);
        }
        if s.deleted > 0 {
            println!("deleted {} entries not in the snapshot", s.deleted);
        }
        if s.skipped > 0 {
            println!(
                "skipped {} existing entries, left as they were (--overwrite never)",
                s.skipped
            );
            for p in s.skipped_paths.iter().take(SKIPPED_SHOWN) {
                println!("  skipped: {}", terminal_safe(p.as_bytes()));
            }
            if s.skipped > SKIPPED_SHOWN as u64 {
                println!(
                    "  (and {} more; --json lists up to 1,000)",
                    s.skipped - SKIPPED_SHOWN as u64
                );
            }
        }
    } else {
        for e in &s.errors {
            eprintln!("error: {}: {}", e.path, e.reason);
        }
    }
    if !s.errors.is_empty() {
        eprintln!("{} errors: restore is incomplete", s.errors.len());
    }
    Ok(())
}

/// `arca snapshots`: a table, oldest first; JSON: a list of snapshots with `id`,
/// `short_id` and `incomplete`.
pub fn snapshots(g: &GlobalArgs, shown: &[(&Id, &Snapshot)]) -> Result<()> {
    if g.json {
        let list: Vec<_> = shown
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("id".into(), serde_json::json!(id));
                    o.insert("short_id".into(), serde_json::json!(id.short()));
                    o.insert("incomplete".into(), serde_json::json!(s.is_incomplete()));
                }
                v
            })
            .collect();
        return print_json(&list);
    }
    println!(
        "{:<8}  {:<19}  {:<12}  {:<12}  {:<10}  {:>10}  paths",
        "id", "time", "host", "type", "tags", "size"
    );
    for (id, s) in shown {
        println!(
            "{:<8}  {:<19}  {:<12}  {:<12}  {:<10}  {:>10}  {}{}",
            id.short(),
            local_time(s.time),
            terminal_safe(s.host.as_bytes()),
            s.backup_type.as_str(),
            terminal_safe(s.tags.join(",").as_bytes()),
            human_bytes(s.summary.total_bytes),
            terminal_safe(s.paths.join(" ").as_bytes()),
            if s.is_incomplete() {
                "  (incomplete)"
            } else {
                ""
            }
        );
    }
    println!("{} snapshots", shown.len());
    Ok(())
}
