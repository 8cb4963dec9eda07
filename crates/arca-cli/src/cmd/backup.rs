//! `arca backup`: paths, stdin or a command's output into a new snapshot.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use arca_core::backup::{
    BackupOptions, BackupResult, StreamName, backup_child, backup_paths, backup_stream,
    plain_stream,
};
use arca_core::child::{ChildOptions, ChildProcess};
use arca_core::format::BackupType;

use crate::cli::{BackupArgs, BackupTypeArg, GlobalArgs};
use crate::common;
use crate::output::CliProgress;

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
    let repo = common::open(g)?;
    let _lock = if a.dry_run {
        None
    } else {
        Some(common::lock(g, &repo, false, "backup")?)
    };
    let mut index = repo.load_index().context("loading the index")?;
    common::cache_tree_packs(&index);
    if !a.dry_run {
        let adopted = repo.adopt_unindexed_packs(&mut index)?;
        if adopted > 0 && !g.quiet && !g.json {
            eprintln!("indexed {adopted} packs left by an interrupted backup");
        }
    }
    let index = std::sync::Arc::new(index);
    let progress = CliProgress::new(g, "backup");
    let result = if a.stdin {
        let stdin = std::io::stdin().lock();
        backup_stream(
            &repo,
            index,
            stdin,
            &a.stdin_filename,
            "stdin",
            &opts,
            &progress,
            || Ok(Default::default()),
        )
    } else if a.stdin_from_command {
        let mut command = Command::new(&a.command[0]);
        command
            .args(&a.command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        // The command's error output still reaches the terminal, and its end is kept
        // for the message when it fails.
        let options = ChildOptions {
            own_group: true,
            on_stderr_line: Some(Box::new(|line| eprintln!("{line}"))),
        };
        let child = ChildProcess::spawn(a.command[0].clone(), &mut command, options)?;
        let name = StreamName {
            file: &a.stdin_filename,
            source: "command",
        };
        backup_child(&repo, index, &child, name, &opts, &progress, plain_stream())
    } else {
        // A scan beside the backup gives the progress bar its totals.
        if !g.json
            && !g.quiet
            && !g.no_progress
            && std::io::IsTerminal::is_terminal(&std::io::stderr())
        {
            let paths = a.paths.clone();
            let ex = arca_core::backup::Excludes::new(&opts.excludes, &opts.exclude_if_present)?;
            let p = &progress;
            std::thread::scope(|s| {
                s.spawn(move || {
                    let (files, bytes) = arca_core::backup::scan_totals(&paths, &ex);
                    arca_core::progress::Progress::set_total(p, files, bytes);
                });
                backup_paths(&repo, index, &a.paths, &opts, &progress)
            })
        } else {
            backup_paths(&repo, index, &a.paths, &opts, &progress)
        }
    };
    progress.finish();
    let BackupResult {
        snapshot_id,
        snapshot,
    } = result?;
    let s = &snapshot.summary;
    if g.json {
        common::print_json(&serde_json::json!({
            "message_type": "summary",
            "dry_run": a.dry_run,
            "snapshot_id": snapshot_id,
            "type": snapshot.backup_type,
            "parent": snapshot.parent,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unmodified": s.files_unmodified,
            "files_removed": s.files_removed,
            "dirs": s.dirs,
            "other_entries": s.other_entries,
            "bytes_read": s.bytes_read,
            "total_bytes": s.total_bytes,
            "blobs_added": s.blobs_added,
            "bytes_added": s.bytes_added,
            "bytes_added_raw": s.bytes_added_raw,
            "duration_secs": s.duration_secs,
            "errors": snapshot.errors,
            "incomplete": snapshot.is_incomplete(),
        }))?;
    } else if !g.quiet {
        println!(
            "files: {} new, {} changed, {} unmodified, {} removed; {} dirs",
            s.files_new, s.files_changed, s.files_unmodified, s.files_removed, s.dirs
        );
        println!(
            "read {} of {}, added {} ({} before compression) in {:.2}s",
            common::human_bytes(s.bytes_read),
            common::human_bytes(s.total_bytes),
            common::human_bytes(s.bytes_added),
            common::human_bytes(s.bytes_added_raw),
            s.duration_secs
        );
        match snapshot_id {
            Some(id) => println!(
                "snapshot {} saved ({}{})",
                id.short(),
                snapshot.backup_type.as_str(),
                snapshot
                    .parent
                    .map(|p| format!(", parent {}", p.short()))
                    .unwrap_or_default()
            ),
            None => println!("dry run: no snapshot saved"),
        }
        if snapshot.is_incomplete() {
            eprintln!(
                "warning: {} entries could not be read; the snapshot is incomplete:",
                snapshot.errors.len()
            );
            for e in &snapshot.errors {
                eprintln!(
                    "  {}: {}",
                    crate::output::terminal_safe(e.path.as_bytes()),
                    crate::output::safe_lines(&e.reason)
                );
            }
        }
    }
    Ok(if snapshot.is_incomplete() {
        crate::exit::INCOMPLETE
    } else {
        crate::exit::OK
    })
}
