//! `arca snapshots`: list snapshots.

use anyhow::Result;

use crate::cli::{GlobalArgs, SnapshotsArgs};
use crate::common;
use crate::render;

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
    render::snapshots(g, &shown)?;
    Ok(crate::exit::OK)
}
