//! `arca cat`: print a decoded repository object as JSON.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use arca_core::Id;

use crate::cli::{CatArgs, GlobalArgs};
use crate::common;

fn parse_id(s: Option<&String>, what: &str) -> Result<Id> {
    let s = s.with_context(|| format!("`cat {what}` needs an id"))?;
    s.parse().with_context(|| format!("bad {what} id"))
}

pub fn run(g: &GlobalArgs, a: CatArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let value = match a.kind.as_str() {
        "config" => serde_json::to_value(repo.config())?,
        "snapshot" => {
            let snaps = common::all_snapshots(&repo)?;
            let r = a.id.as_deref().context("`cat snapshot` needs an id")?;
            let (id, s) = common::resolve(&snaps, r, None)?;
            let mut v = serde_json::to_value(s)?;
            v["id"] = serde_json::json!(id);
            v
        }
        "tree" => {
            let index = common::load_index(&repo)?;
            let r =
                a.id.as_deref()
                    .context("`cat tree` needs an id or SNAP:path")?;
            let id = match r.parse::<Id>() {
                Ok(id) => id,
                Err(_) => {
                    let snaps = common::all_snapshots(&repo)?;
                    let (sref, sub) = common::split_ref(r);
                    let (_, s) = common::resolve(&snaps, sref, None)?;
                    let p = PathBuf::from("/").join(sub.unwrap_or("").trim_start_matches('/'));
                    let n = arca_core::restore::find_path(&repo, &index, &s.tree, &p)?;
                    n.subtree.context("not a directory")?
                }
            };
            serde_json::to_value(repo.load_tree(&index, &id)?)?
        }
        "index" => serde_json::to_value(repo.load_index_file(&parse_id(a.id.as_ref(), "index")?)?)?,
        "key" => {
            let id = parse_id(a.id.as_ref(), "key")?;
            let keys = repo.list_keys()?;
            let (_, k) = keys
                .into_iter()
                .find(|(i, _)| *i == id)
                .context("no such key")?;
            serde_json::to_value(k)?
        }
        "pack" => {
            serde_json::to_value(repo.read_pack_header(&parse_id(a.id.as_ref(), "pack")?, None)?)?
        }
        "masterkey" => bail!("the master key is never printed"),
        other => {
            bail!("unknown object kind {other:?}: use config, snapshot, tree, index, key or pack")
        }
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(crate::exit::OK)
}
