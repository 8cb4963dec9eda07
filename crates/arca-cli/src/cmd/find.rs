//! `arca find`: find files by name or path in snapshots.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arca_core::format::Node;
use arca_core::walk::walk_tree;

use crate::cli::{FindArgs, GlobalArgs};
use crate::common;
use crate::output::safe_path;

pub fn run(g: &GlobalArgs, a: FindArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let on_path = a.pattern.contains('/');
    let glob = globset::GlobBuilder::new(&a.pattern)
        .literal_separator(on_path)
        .build()
        .with_context(|| format!("bad pattern {:?}", a.pattern))?
        .compile_matcher();
    let selected = common::select(&snaps, &a.snapshots, Some(&a.filter))?;
    let mut found = 0u64;
    let mut out = Vec::new();
    for (id, snap) in &selected {
        let mut visit = |path: &Path, n: &Node| -> arca_core::Result<bool> {
            let hit = if on_path {
                glob.is_match(path)
            } else {
                glob.is_match(std::ffi::OsStr::from_bytes(&n.name))
            };
            if hit {
                found += 1;
                if g.json {
                    let mut v = super::ls::node_json(path, n);
                    v["snapshot"] = serde_json::json!(id);
                    out.push(v);
                } else {
                    println!("{} {}", id.short(), safe_path(path));
                }
            }
            Ok(true)
        };
        walk_tree(&repo, &index, &snap.tree, &PathBuf::from("/"), &mut visit)?;
    }
    if g.json {
        common::print_json(&out)?;
    } else if !g.quiet {
        eprintln!("{found} matches in {} snapshots", selected.len());
    }
    Ok(crate::exit::OK)
}
