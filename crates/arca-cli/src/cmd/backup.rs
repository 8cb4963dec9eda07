//! `arca backup`: paths, stdin or a command's output into a new snapshot (the backup
//! operation of arca-ops, as a job run calls it).

use std::process::Command;

use anyhow::{Context, Result, bail};
use arca_core::backup::BackupOptions;
use arca_core::format::BackupType;
use arca_ops::backup::BackupSource;

use crate::cli::{BackupArgs, BackupTypeArg, GlobalArgs};
use crate::common;
use crate::output::CliProgress;
use crate::render;

fn parse_time(s: &str) -> Result<jiff::Timestamp> {
    let civil: jiff::civil::DateTime = s
        .parse()
        .with_context(|| format!("invalid --time {s:?}: expected \"YYYY-MM-DD HH:MM:SS\""))?;
    Ok(civil
        .to_zoned_datetime(jiff::tz::TimeZone::system())
        .with_context(|| format!("invalid --time {s:?}"))?
        .timestamp())
}

pub fn run(g: &GlobalArgs, a: BackupArgs) -> Result<i32> {
    if !a.stdin && !a.stdin_from_command && a.paths.is_empty() {
        bail!("nothing to back up: give paths, --stdin or --stdin-from-command -- CMD");
    }
    if a.stdin_from_command && a.command.is_empty() {
        bail!("--stdin-from-command needs a command after `--`");
    }
    let mut excludes = a.excludes.clone();
    for f in &a.exclude_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading exclude file {}", f.display()))?;
        excludes.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    let opts = BackupOptions {
        backup_type: match a.backup_type {
            BackupTypeArg::Full => BackupType::Full,
            BackupTypeArg::Incremental => BackupType::Incremental,
            BackupTypeArg::Differential => BackupType::Differential,
        },
        checksum: a.checksum,
        tags: a
            .tags
            .iter()
            .flat_map(|t| t.split(','))
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        host: a.host.clone(),
        time: a.time.as_deref().map(parse_time).transpose()?,
        excludes,
        exclude_if_present: a.exclude_if_present.clone(),
        one_file_system: a.one_file_system,
        dry_run: a.dry_run,
        threads: g.threads,
        parent: None,
        meta: Default::default(),
    };
    let session = common::session(g)?;
    let progress = CliProgress::new(g, "backup");
    let source = if a.stdin {
        BackupSource::Stream {
            reader: Box::new(std::io::stdin().lock()),
            file: &a.stdin_filename,
        }
    } else if a.stdin_from_command {
        let mut command = Command::new(&a.command[0]);
        command.args(&a.command[1..]);
        BackupSource::Command {
            command,
            tool: a.command[0].clone(),
            file: &a.stdin_filename,
            // The command's error output still reaches the terminal, and its end is
            // kept for the message when it fails.
            on_stderr_line: Some(Box::new(|line| eprintln!("{line}"))),
        }
    } else {
        BackupSource::Paths(&a.paths)
    };
    // A scan beside a backup of paths gives the progress bar its totals.
    let scan = !a.stdin
        && !a.stdin_from_command
        && !g.json
        && !g.quiet
        && !g.no_progress
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = if scan {
        let ex = arca_core::backup::Excludes::new(&opts.excludes, &opts.exclude_if_present)?;
        let (paths, p) = (&a.paths, &progress);
        std::thread::scope(|s| {
            s.spawn(move || {
                let (files, bytes) = arca_core::backup::scan_totals(paths, &ex);
                arca_core::progress::Progress::set_total(p, files, bytes);
            });
            arca_ops::backup::backup(&session, source, &opts, &progress)
        })
    } else {
        arca_ops::backup::backup(&session, source, &opts, &progress)
    };
    progress.finish();
    let report = result?;
    render::backup(g, &report)?;
    let snapshot = &report.snapshot;
    Ok(if snapshot.is_incomplete() {
        crate::exit::INCOMPLETE
    } else {
        crate::exit::OK
    })
}
