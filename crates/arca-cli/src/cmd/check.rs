//! `arca check` and `arca repair`.

use anyhow::{Context, Result, bail};
use arca_core::check::{ReadData, check, repair_index};

use crate::cli::{CheckArgs, GlobalArgs, RepairCommand};
use crate::common;
use crate::output::CliProgress;

fn parse_subset(s: &str) -> Result<ReadData> {
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.parse().with_context(|| format!("bad percentage {s:?}"))?;
        if !(0.0..=100.0).contains(&p) {
            bail!("percentage must be between 0 and 100");
        }
        return Ok(ReadData::Percent(p));
    }
    let (n, m) = s
        .split_once('/')
        .with_context(|| format!("bad subset {s:?}: use n/m or P%"))?;
    let n: u32 = n.parse()?;
    let m: u32 = m.parse()?;
    if n == 0 || m == 0 || n > m {
        bail!("bad subset {s:?}: need 1 <= n <= m");
    }
    Ok(ReadData::Subset(n, m))
}

pub fn run(g: &GlobalArgs, a: CheckArgs) -> Result<i32> {
    let repo = common::open_uncached(g)?;
    let _lock = common::lock(g, &repo, false, "check")?;
    let rd = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => parse_subset(s)?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let progress = CliProgress::new(g, "check");
    let report = check(&repo, rd, &progress);
    progress.finish();
    let report = report?;
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["ok"] = serde_json::json!(report.is_ok());
        common::print_json(&v)?;
    } else {
        for w in &report.warnings {
            if !g.quiet {
                eprintln!("warning: {w}");
            }
        }
        for p in &report.problems {
            eprintln!("error: {}: {}", p.object, p.message);
            for a in &p.affects {
                eprintln!(
                    "  affects snapshot {}: {}",
                    a.snapshot.short(),
                    a.paths.join(", ")
                );
            }
        }
        if !g.quiet {
            println!(
                "checked {} snapshots, {} trees, {} index files, {} packs; read {} packs ({} blobs, {})",
                report.snapshots,
                report.trees,
                report.index_files,
                report.packs,
                report.packs_read,
                report.blobs_read,
                common::human_bytes(report.bytes_read)
            );
            if report.is_ok() {
                println!("no errors were found");
            }
        }
    }
    if report.is_ok() {
        Ok(crate::exit::OK)
    } else {
        if !g.json {
            eprintln!("{} problems found", report.problems.len());
        }
        Ok(crate::exit::FAILURE)
    }
}

pub fn repair(g: &GlobalArgs, c: RepairCommand) -> Result<i32> {
    let repo = common::open_uncached(g)?;
    match c {
        RepairCommand::Index => {
            let _lock = common::lock(g, &repo, true, "repair index")?;
            let (n, bad) = repair_index(&repo)?;
            for (id, e) in &bad {
                eprintln!("warning: pack {id} is unreadable and was left out: {e}");
            }
            if g.json {
                common::print_json(
                    &serde_json::json!({"packs_indexed": n, "packs_unreadable": bad.len()}),
                )?;
            } else if !g.quiet {
                println!(
                    "rebuilt the index from {n} packs ({} unreadable)",
                    bad.len()
                );
            }
        }
        RepairCommand::Snapshots {
            read_data,
            forget,
            dry_run,
        } => {
            let _lock = common::lock(g, &repo, forget && !dry_run, "repair snapshots")?;
            let done = arca_core::check::repair_snapshots(&repo, read_data, forget, dry_run)?;
            if g.json {
                common::print_json(&done)?;
            } else if !g.quiet {
                for r in &done {
                    println!(
                        "snapshot {} -> {}: left out {}",
                        r.snapshot.short(),
                        r.new_snapshot.map_or("(dry run)".into(), |n| n.short()),
                        r.removed.join(", ")
                    );
                }
                println!("{} snapshots repaired", done.len());
            }
        }
    }
    Ok(crate::exit::OK)
}
