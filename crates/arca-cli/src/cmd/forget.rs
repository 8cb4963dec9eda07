//! `arca forget` (retention) and `arca prune`.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use arca_core::Id;
use arca_core::format::Snapshot;
use arca_core::prune::PruneOptions;
use arca_core::retention::{
    Candidate, RetentionPolicy, apply_policy, parse_duration, parse_tag_list,
};

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
    let d = |v: &Option<String>| -> Result<_> {
        v.as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let p = RetentionPolicy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: d(&a.keep_within)?,
        keep_within_hourly: d(&a.keep_within_hourly)?,
        keep_within_daily: d(&a.keep_within_daily)?,
        keep_within_weekly: d(&a.keep_within_weekly)?,
        keep_within_monthly: d(&a.keep_within_monthly)?,
        keep_within_yearly: d(&a.keep_within_yearly)?,
        keep_tags: a.keep_tags.iter().map(|t| parse_tag_list(t)).collect(),
    };
    p.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(p)
}

fn group_key(s: &Snapshot, by: &str) -> String {
    let mut parts = Vec::new();
    for f in by.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match f {
            "host" => parts.push(format!("host [{}]", s.host)),
            "paths" => parts.push(format!("paths [{}]", s.paths.join(", "))),
            "tags" => {
                let mut t = s.tags.clone();
                t.sort();
                parts.push(format!("tags [{}]", t.join(", ")));
            }
            _ => {}
        }
    }
    parts.join(", ")
}

pub fn run(g: &GlobalArgs, a: ForgetArgs) -> Result<i32> {
    for f in a
        .group_by
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        if !["host", "paths", "tags"].contains(&f) {
            bail!("bad --group-by field {f:?}: use host, paths and/or tags");
        }
    }
    let repo = common::open(g)?;
    common::ensure_may_delete(&repo, "forget")?;
    let _lock = if a.dry_run {
        None
    } else {
        Some(common::lock(g, &repo, true, "forget")?)
    };
    let snaps = common::all_snapshots(&repo)?;
    let mut remove: Vec<Id> = Vec::new();
    let mut report = Vec::new();
    if !a.snapshots.is_empty() {
        for r in &a.snapshots {
            match common::resolve(&snaps, r, None) {
                Ok((id, _)) => remove.push(id),
                // A damaged snapshot cannot be read, so only its full id names it.
                Err(e) => match r.parse::<Id>() {
                    Ok(id) if repo.storage().stat(&format!("snapshots/{id}")).is_ok() => {
                        eprintln!("warning: snapshot {id} cannot be read; removing its object");
                        remove.push(id);
                    }
                    _ => return Err(e),
                },
            }
        }
    } else {
        let policy = policy(&a)?;
        if policy.is_empty() {
            bail!(
                "no retention policy given (e.g. --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-yearly 7): refusing to remove every snapshot"
            );
        }
        let mut groups: BTreeMap<String, Vec<&(Id, Snapshot)>> = BTreeMap::new();
        for s in snaps
            .iter()
            .filter(|(_, s)| common::matches_filter(s, &a.filter))
        {
            groups
                .entry(group_key(&s.1, &a.group_by))
                .or_default()
                .push(s);
        }
        for (key, members) in groups {
            let cands: Vec<Candidate> = members
                .iter()
                .map(|(id, s)| Candidate {
                    id: *id,
                    time: s.time,
                    utc_offset_secs: s.utc_offset_secs,
                    tags: s.tags.clone(),
                })
                .collect();
            let decisions = apply_policy(&policy, &cands);
            if !g.json && !g.quiet {
                println!(
                    "snapshots of {}:",
                    if key.is_empty() {
                        "(all)".into()
                    } else {
                        crate::output::terminal_safe(key.as_bytes()).into_owned()
                    }
                );
                println!("  {:<8}  {:<19}  {:<6}  reasons", "id", "time", "action");
                for d in &decisions {
                    println!(
                        "  {:<8}  {:<19}  {:<6}  {}",
                        d.id.short(),
                        common::local_time(d.time),
                        if d.keep { "keep" } else { "remove" },
                        crate::output::terminal_safe(d.reasons.join(", ").as_bytes())
                    );
                }
                let kept = decisions.iter().filter(|d| d.keep).count();
                println!("  {} kept, {} removed\n", kept, decisions.len() - kept);
            }
            remove.extend(decisions.iter().filter(|d| !d.keep).map(|d| d.id));
            report.push(serde_json::json!({"group": key, "decisions": decisions}));
        }
    }
    if !a.dry_run {
        for id in &remove {
            repo.storage().delete(&format!("snapshots/{id}"))?;
        }
    }
    if g.json {
        common::print_json(&serde_json::json!({
            "dry_run": a.dry_run, "groups": report, "removed": remove,
        }))?;
    } else if !g.quiet {
        println!(
            "{} {} snapshots",
            if a.dry_run { "would remove" } else { "removed" },
            remove.len()
        );
    }
    if a.prune && !a.dry_run {
        drop(_lock);
        drop(repo);
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
