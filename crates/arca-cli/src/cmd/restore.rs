//! `arca restore`: restore a snapshot or part of it into a directory.

use std::path::PathBuf;

use anyhow::Result;
use arca_core::restore::{Overwrite, RestoreOptions, find_path, restore};

use crate::cli::{GlobalArgs, OverwriteArg, RestoreArgs};
use crate::common;
use crate::output::CliProgress;

/// Skipped entries listed by path in the text summary.
const SKIPPED_SHOWN: usize = 20;

pub fn run(g: &GlobalArgs, a: RestoreArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let (r, sub) = common::split_ref(&a.snapshot);
    let (id, snap) = common::resolve(&snaps, r, None)?;
    let sub_path = PathBuf::from("/").join(sub.unwrap_or("").trim_start_matches('/'));
    let node = find_path(&repo, &index, &snap.tree, &sub_path)?;
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
    let result = restore(&repo, &index, &node, &sub_path, &a.target, &opts, &progress);
    progress.finish();
    let s = result?;
    if g.json {
        let mut v = serde_json::to_value(&s)?;
        v["message_type"] = serde_json::json!("summary");
        v["snapshot_id"] = serde_json::json!(id);
        common::print_json(&v)?;
    } else if !g.quiet {
        println!(
            "{}restored snapshot {} to {}: {} files ({} written, {} unchanged), {} dirs, {} other; {} written in {:.2}s",
            if a.dry_run {
                "dry run: would have "
            } else {
                ""
            },
            id.short(),
            a.target.display(),
            s.files,
            s.files_written,
            s.files_unchanged,
            s.dirs,
            s.other_entries,
            common::human_bytes(s.bytes_written),
            s.duration_secs
        );
        if a.verify {
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
                println!("  skipped: {}", crate::output::terminal_safe(p.as_bytes()));
            }
            if s.skipped > SKIPPED_SHOWN as u64 {
                println!(
                    "  (and {} more; --json lists up to 1,000)",
                    s.skipped - SKIPPED_SHOWN as u64
                );
            }
        }
    }
    if g.quiet && !g.json {
        // Without --quiet each error was already shown as it happened.
        for e in &s.errors {
            eprintln!("error: {}: {}", e.path, e.reason);
        }
    }
    if !s.errors.is_empty() {
        if !g.json {
            eprintln!("{} errors: restore is incomplete", s.errors.len());
        }
        return Ok(crate::exit::FAILURE);
    }
    Ok(crate::exit::OK)
}
