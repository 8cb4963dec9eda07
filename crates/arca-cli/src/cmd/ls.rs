//! `arca ls`: list files in a snapshot.

use std::path::{Path, PathBuf};

use anyhow::Result;
use arca_core::format::{Node, NodeKind};
use arca_core::restore::find_path;
use arca_core::walk::walk_tree;

use crate::cli::{GlobalArgs, LsArgs};
use crate::common;
use crate::output::{json_bytes, json_path, safe_path, terminal_safe};

pub fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
    }
}

pub fn mode_string(n: &Node) -> String {
    let m = n.mode;
    let mut s = String::new();
    s.push(kind_char(n.kind));
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (b, c)) in bits.iter().enumerate() {
        let mut ch = if m & b != 0 { *c } else { '-' };
        if i == 2 && m & 0o4000 != 0 {
            ch = if m & 0o100 != 0 { 's' } else { 'S' };
        }
        if i == 5 && m & 0o2000 != 0 {
            ch = if m & 0o010 != 0 { 's' } else { 'S' };
        }
        if i == 8 && m & 0o1000 != 0 {
            ch = if m & 0o001 != 0 { 't' } else { 'T' };
        }
        s.push(ch);
    }
    s
}

pub fn node_json(path: &Path, n: &Node) -> serde_json::Value {
    serde_json::json!({
        "path": json_path(path),
        "name": json_bytes(&n.name),
        "type": n.kind,
        "mode": n.mode,
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "size": n.size,
        "mtime": jiff::Timestamp::from_nanosecond(n.mtime_ns as i128).ok(),
        "link_target": n.link_target.as_deref().map(json_bytes),
    })
}

pub fn run(g: &GlobalArgs, a: LsArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let (r, sub) = common::split_ref(&a.snapshot);
    let (_, snap) = common::resolve(&snaps, r, None)?;
    let start = PathBuf::from("/").join(
        sub.or(a.path.as_deref())
            .unwrap_or("")
            .trim_start_matches('/'),
    );
    let node = find_path(&repo, &index, &snap.tree, &start)?;
    let mut print = |path: &Path, n: &Node| -> arca_core::Result<bool> {
        if g.json {
            println!("{}", node_json(path, n));
        } else if a.long {
            println!(
                "{} {:>8} {:>8} {:>12} {} {}{}",
                mode_string(n),
                n.user
                    .as_deref()
                    .map_or_else(|| n.uid.to_string(), |u| terminal_safe(u.as_bytes()).into()),
                n.group
                    .as_deref()
                    .map_or_else(|| n.gid.to_string(), |g| terminal_safe(g.as_bytes()).into()),
                n.size,
                jiff::Timestamp::from_nanosecond(n.mtime_ns as i128)
                    .map(common::local_time)
                    .unwrap_or_default(),
                safe_path(path),
                n.link_target
                    .as_ref()
                    .map(|t| format!(" -> {}", terminal_safe(t)))
                    .unwrap_or_default()
            );
        } else {
            println!("{}", safe_path(path));
        }
        Ok(!a.no_recursive)
    };
    match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(t)) => walk_tree(&repo, &index, &t, &start, &mut print)?,
        _ => {
            print(&start, &node)?;
        }
    }
    Ok(crate::exit::OK)
}
