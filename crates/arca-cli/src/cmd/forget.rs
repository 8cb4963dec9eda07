//! `arca forget` (retention) and `arca prune`: the flags mapped to arca-ops' forget and
//! prune operations, whose reports `crate::render` shows.

use anyhow::Result;
use arca_core::Id;
use arca_core::prune::PruneOptions;
use arca_core::retention::{RetentionPolicy, parse_tag_list};
use arca_ops::forget::{Selection, forget, parse_group_by};

use crate::cli::{ForgetArgs, GlobalArgs, PruneArgs, PruneOpts};
use crate::common;

fn prune_options(o: &PruneOpts) -> PruneOptions {
    PruneOptions {
        max_unused: o.max_unused,
        max_repack_bytes: o.max_repack_size.map(|s| s.0),
        repack_cacheable_only: o.repack_cacheable_only,
    }
}

fn policy(a: &ForgetArgs) -> Result<RetentionPolicy> {
    let p = RetentionPolicy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: a.keep_within,
        keep_within_hourly: a.keep_within_hourly,
        keep_within_daily: a.keep_within_daily,
        keep_within_weekly: a.keep_within_weekly,
        keep_within_monthly: a.keep_within_monthly,
        keep_within_yearly: a.keep_within_yearly,
        keep_tags: a.keep_tags.iter().map(|t| parse_tag_list(t)).collect(),
    };
    p.validate()?;
    Ok(p)
}

pub fn run(g: &GlobalArgs, a: ForgetArgs) -> Result<i32> {
    let group_by = parse_group_by(&a.group_by)?;
    let session = common::session(g)?;
    let selection = if a.snapshots.is_empty() {
        Selection::Policy {
            policy: Box::new(policy(&a)?),
            filter: common::ops_filter(&a.filter),
            group_by,
        }
    } else {
        let repo = session.repository();
        let snaps = common::all_snapshots(repo)?;
        let mut ids = Vec::new();
        for r in &a.snapshots {
            match common::resolve(&snaps, r, None) {
                Ok((id, _)) => ids.push(id),
                // A damaged snapshot cannot be read, so only its full id names it.
                Err(e) => match r.parse::<Id>() {
                    Ok(id) if repo.storage().stat(&format!("snapshots/{id}")).is_ok() => {
                        eprintln!("warning: snapshot {id} cannot be read; removing its object");
                        ids.push(id);
                    }
                    _ => return Err(e),
                },
            }
        }
        Selection::Ids(ids)
    };
    let report = forget(&session, &selection, a.dry_run, &common::interrupted)?;
    crate::render::forget(g, &report)?;
    if a.prune && !a.dry_run {
        drop(session);
        return do_prune(g, &a.prune_opts, false);
    }
    Ok(crate::exit::OK)
}

pub fn prune(g: &GlobalArgs, a: PruneArgs) -> Result<i32> {
    do_prune(g, &a.opts, a.dry_run)
}

fn do_prune(g: &GlobalArgs, o: &PruneOpts, dry_run: bool) -> Result<i32> {
    let session = common::session(g)?;
    let report =
        arca_ops::prune::prune(&session, &prune_options(o), dry_run, &common::interrupted)?;
    crate::render::prune(g, &report)?;
    Ok(crate::exit::OK)
}
