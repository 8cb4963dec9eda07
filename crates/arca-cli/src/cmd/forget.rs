//! `arca forget` (retention) and `arca prune`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arca_core::format::Snapshot;
use arca_core::prune::{MaxUnused, PruneOptions};
use arca_core::retention::{
    Candidate, RetentionPolicy, apply_policy, parse_duration, parse_tag_list,
};
use arca_core::{Id, Repository};

use crate::cli::{ForgetArgs, GlobalArgs, PruneArgs, PruneOpts};
use crate::common;

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        Some('t' | 'T') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    Ok((n * mult as f64) as u64)
}

fn prune_options(o: &PruneOpts) -> Result<PruneOptions> {
    let max_unused = if o.max_unused == "unlimited" {
        MaxUnused::Unlimited
    } else if let Some(p) = o.max_unused.strip_suffix('%') {
        MaxUnused::Percent(
            p.parse()
                .with_context(|| format!("bad --max-unused {:?}", o.max_unused))?,
        )
    } else {
        MaxUnused::Bytes(parse_size(&o.max_unused)?)
    };
    Ok(PruneOptions {
        max_unused,
        max_repack_bytes: o.max_repack_size.as_deref().map(parse_size).transpose()?,
        repack_cacheable_only: o.repack_cacheable_only,
    })
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
        return do_prune(g, &repo, &a.prune_opts, false);
    }
    Ok(crate::exit::OK)
}

pub fn prune(g: &GlobalArgs, a: PruneArgs) -> Result<i32> {
    let repo = common::open(g)?;
    do_prune(g, &repo, &a.opts, a.dry_run)
}

fn do_prune(g: &GlobalArgs, repo: &Arc<Repository>, o: &PruneOpts, dry_run: bool) -> Result<i32> {
    common::ensure_may_delete(repo, "prune")?;
    let opts = prune_options(o)?;
    let _lock = common::lock(g, repo, true, "prune")?;
    let temp_files = if dry_run {
        0
    } else {
        crate::cmd::key::remove_abandoned_temp_files(g)?
    };
    let plan = arca_core::prune::plan(repo, &opts)?;
    if g.json {
        let mut v = serde_json::to_value(&plan)?;
        v["dry_run"] = serde_json::json!(dry_run);
        v["temporary_files_removed"] = serde_json::json!(temp_files);
        common::print_json(&v)?;
    } else if !g.quiet {
        if temp_files > 0 {
            println!("removed {temp_files} temporary files of interrupted writes");
        }
        println!(
            "used: {} blobs, {}; unused: {} blobs, {}",
            plan.blobs_used,
            common::human_bytes(plan.bytes_used),
            plan.blobs_unused,
            common::human_bytes(plan.bytes_unused)
        );
        println!(
            "plan: delete {} packs, repack {} packs ({}), delete {} unindexed packs, keep {} packs; frees {}",
            plan.delete_packs.len(),
            plan.repack_packs.len(),
            common::human_bytes(plan.bytes_repacked),
            plan.delete_unindexed.len(),
            plan.packs_kept,
            common::human_bytes(plan.bytes_freed)
        );
    }
    if dry_run || plan.is_noop() {
        if !g.quiet && !g.json {
            println!(
                "{}",
                if dry_run {
                    "dry run: nothing changed"
                } else {
                    "nothing to prune"
                }
            );
        }
        return Ok(crate::exit::OK);
    }
    arca_core::prune::execute(repo, plan)?;
    if !g.quiet && !g.json {
        println!("prune done");
    }
    Ok(crate::exit::OK)
}
