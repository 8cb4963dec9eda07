//! `arca stats`: restore size, stored size, compression and deduplication ratios.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Result;
use arca_core::format::NodeKind;
use arca_core::restore::plain_length;
use arca_core::walk::walk_tree;

use crate::cli::{GlobalArgs, StatsArgs};
use crate::common;

pub fn run(g: &GlobalArgs, a: StatsArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let selected = common::select(&snaps, &a.snapshots, None)?;
    let mut restore_size = 0u64;
    let mut files = 0u64;
    let mut blobs = HashSet::new();
    let mut seen_trees = HashSet::new();
    for (_, s) in &selected {
        seen_trees.insert(s.tree);
        walk_tree(&repo, &index, &s.tree, &PathBuf::from("/"), &mut |_, n| {
            if n.kind == NodeKind::File {
                restore_size += n.size;
                files += 1;
                blobs.extend(n.content.iter().copied());
            }
            if let Some(t) = n.subtree {
                seen_trees.insert(t);
            }
            Ok(true)
        })?;
    }
    let mut unique_raw = 0u64;
    let mut unique_stored = 0u64;
    for b in blobs.iter().chain(seen_trees.iter()) {
        if let Some(loc) = index.get(b) {
            unique_raw += plain_length(&loc.entry);
            unique_stored += loc.entry.length as u64;
        }
    }
    let packs = repo.list_ids("data")?;
    let repo_size: u64 = packs.iter().map(|(_, s)| s).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let v = serde_json::json!({
        "snapshots": selected.len(),
        "files": files,
        "restore_size": restore_size,
        "unique_blobs": blobs.len() + seen_trees.len(),
        "unique_size_raw": unique_raw,
        "unique_size_stored": unique_stored,
        "repository_size": repo_size,
        "packs": packs.len(),
        "index_blobs": index.len(),
        "index_memory_bytes": index.memory_bytes(),
        "compression_ratio": ratio(unique_raw, unique_stored),
        "dedup_ratio": ratio(restore_size, unique_raw),
        "total_ratio": ratio(restore_size, repo_size),
    });
    if g.json {
        common::print_json(&v)?;
    } else {
        println!("snapshots:          {}", selected.len());
        println!("files:              {files}");
        println!("restore size:       {}", common::human_bytes(restore_size));
        println!(
            "unique data:        {} ({} stored)",
            common::human_bytes(unique_raw),
            common::human_bytes(unique_stored)
        );
        println!(
            "repository size:    {} in {} packs",
            common::human_bytes(repo_size),
            packs.len()
        );
        println!(
            "compression ratio:  {:.2}x",
            ratio(unique_raw, unique_stored)
        );
        println!(
            "dedup ratio:        {:.2}x",
            ratio(restore_size, unique_raw)
        );
        println!("overall:            {:.2}x", ratio(restore_size, repo_size));
    }
    Ok(crate::exit::OK)
}
