//! `arca init`: create a repository.

use anyhow::Result;
use arca_core::Repository;
use arca_core::repo::InitOptions;

use crate::cli::{GlobalArgs, InitArgs};
use crate::common;

pub fn run(g: &GlobalArgs, a: InitArgs) -> Result<i32> {
    let storage = common::storage(g)?;
    let password = crate::password::get(g, true)?;
    let shared_from = if a.copy_chunker_params {
        let src = crate::cmd::copy::open_source(g, &a.from)?;
        Some(src.repository().shared_secrets())
    } else {
        None
    };
    let opts = InitOptions {
        compression_level: a.compression.clamp(0, 22),
        shared_from,
        kdf: common::kdf_params(),
        append_only: g.append_only,
        ..Default::default()
    };
    let repo = Repository::init(storage, &password, opts)?;
    if g.json {
        common::print_json(&serde_json::json!({
            "message_type": "initialized",
            "id": repo.config().id,
            "repository": repo.location(),
        }))?;
    } else if !g.quiet {
        println!(
            "created arca repository {} at {}",
            repo.config().id.short(),
            repo.location()
        );
        if repo.config().append_only {
            println!("append-only: forget and prune will be refused by every client");
        }
        println!("keep the password safe: without it the data cannot be restored");
    }
    Ok(crate::exit::OK)
}
