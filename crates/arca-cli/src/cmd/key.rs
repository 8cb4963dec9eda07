//! `arca key` (list, add, remove, passwd) and `arca unlock`.

use std::sync::Arc;

use anyhow::{Context, Result};
use arca_core::Id;

use crate::cli::{GlobalArgs, KeyCommand, NewPasswordArgs, UnlockArgs};
use crate::common;

fn new_password(a: &NewPasswordArgs) -> Result<Vec<u8>> {
    match &a.new_password_file {
        Some(p) => crate::password::from_file(p),
        None => crate::password::prompt(true, "new password"),
    }
}

pub fn run(g: &GlobalArgs, c: KeyCommand) -> Result<i32> {
    let repo = common::open(g)?;
    match c {
        KeyCommand::List => {
            let keys = repo.list_keys()?;
            if g.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|(id, k)| {
                        serde_json::json!({
                            "id": id, "current": *id == repo.key_id(), "kind": k.kind,
                            "host": k.host, "username": k.username, "created": k.created,
                        })
                    })
                    .collect();
                common::print_json(&v)?;
            } else {
                println!(
                    " {:<8}  {:<10}  {:<12}  {:<19}",
                    "id", "user", "host", "created"
                );
                for (id, k) in &keys {
                    println!(
                        "{}{:<8}  {:<10}  {:<12}  {:<19}",
                        if *id == repo.key_id() { "*" } else { " " },
                        id.short(),
                        k.username,
                        k.host,
                        common::local_time(k.created)
                    );
                }
            }
        }
        KeyCommand::Add(a) => {
            let pw = new_password(&a)?;
            let id = repo.add_key(&pw, common::kdf_params())?;
            if g.json {
                common::print_json(&serde_json::json!({"added": id}))?;
            } else if !g.quiet {
                println!("added key {}", id.short());
            }
        }
        KeyCommand::Remove { id } => {
            let keys = repo.list_keys()?;
            let matches: Vec<Id> = keys
                .iter()
                .map(|(i, _)| *i)
                .filter(|i| i.to_hex().starts_with(&id.to_ascii_lowercase()))
                .collect();
            let target = match matches.as_slice() {
                [one] => *one,
                [] => anyhow::bail!("no key matches {id:?}"),
                _ => anyhow::bail!("{id:?} matches several keys"),
            };
            common::ensure_may_delete(&repo, "key remove")?;
            repo.remove_key(&target)?;
            if !g.quiet && !g.json {
                println!("removed key {}", target.short());
            }
        }
        KeyCommand::Passwd(a) => {
            // The old key could not be removed, and the old password would go on working.
            common::ensure_may_delete(&repo, "key passwd (the old key could not be removed)")?;
            let pw = new_password(&a)?;
            let mut repo = Arc::try_unwrap(repo)
                .map_err(|_| anyhow::anyhow!("repository in use"))
                .context("changing the password")?;
            let id = repo.change_password(&pw, common::kdf_params())?;
            if g.json {
                common::print_json(&serde_json::json!({"new_key": id}))?;
            } else if !g.quiet {
                println!("password changed (new key {})", id.short());
            }
        }
    }
    Ok(crate::exit::OK)
}

pub fn unlock(g: &GlobalArgs, a: UnlockArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let n = arca_core::lock::remove_locks(&repo, a.remove_all)?;
    let temp_files = remove_abandoned_temp_files(g)?;
    if g.json {
        common::print_json(&serde_json::json!({
            "removed": n, "temporary_files_removed": temp_files,
        }))?;
    } else if !g.quiet {
        println!("removed {n} locks");
        if temp_files > 0 {
            println!("removed {temp_files} temporary files of interrupted writes");
        }
    }
    Ok(crate::exit::OK)
}

/// Removes the temporary files that interrupted writes left in a local repository (those
/// whose writer is gone from this host, or older than a day; object stores have none).
/// Returns how many were removed.
pub(crate) fn remove_abandoned_temp_files(g: &GlobalArgs) -> Result<usize> {
    Ok(arca_ops::prune::remove_abandoned_temp_files(
        &common::location(g)?,
    )?)
}
