//! `arca snapshots`: list snapshots.

use anyhow::Result;

use crate::cli::{GlobalArgs, SnapshotsArgs};
use crate::common;
use crate::output::terminal_safe;

pub fn run(g: &GlobalArgs, a: SnapshotsArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let snaps = common::all_snapshots(&repo)?;
    let mut shown = Vec::new();
    let filter = common::ops_filter(&a.filter);
    for (id, s) in &snaps {
        if !filter.matches(s) {
            continue;
        }
        if !a.ids.is_empty()
            && !a
                .ids
                .iter()
                .any(|r| common::resolve(&snaps, r, None).is_ok_and(|(rid, _)| rid == *id))
        {
            continue;
        }
        shown.push((id, s));
    }
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
        common::print_json(&list)?;
        return Ok(crate::exit::OK);
    }
    println!(
        "{:<8}  {:<19}  {:<12}  {:<12}  {:<10}  {:>10}  paths",
        "id", "time", "host", "type", "tags", "size"
    );
    for (id, s) in &shown {
        println!(
            "{:<8}  {:<19}  {:<12}  {:<12}  {:<10}  {:>10}  {}{}",
            id.short(),
            common::local_time(s.time),
            terminal_safe(s.host.as_bytes()),
            s.backup_type.as_str(),
            terminal_safe(s.tags.join(",").as_bytes()),
            common::human_bytes(s.summary.total_bytes),
            terminal_safe(s.paths.join(" ").as_bytes()),
            if s.is_incomplete() {
                "  (incomplete)"
            } else {
                ""
            }
        );
    }
    println!("{} snapshots", shown.len());
    Ok(crate::exit::OK)
}
