//! Logical dumps: `mariadb-dump`/`mysqldump` streamed into a snapshot (source
//! `mysql-dump`), and a dump snapshot piped back into `mariadb`/`mysql`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arca_core::backup::{
    BackupOptions, BackupResult, ChildResult, ChildStreamHooks, StreamName, backup_child,
};
use arca_core::child::{ChildError, ChildOptions, ChildProcess, StderrTail};
use arca_core::format::{NodeKind, Snapshot};
use arca_core::index::Index;
use arca_core::progress::Progress;
use arca_core::restore::find_path;
use arca_core::{Id, Repository};
use crossbeam_channel::{Receiver, Sender, bounded};

use super::connection::{Connection, scrub_environment};
use super::scan::DumpScanner;
use super::server::{add_server_meta, list_databases, query, server_info_with};
use super::tools::{Tool, find_tool, tool_name};
use super::{Error, Result, SOURCE_DUMP};

/// What a dump covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpSelection {
    /// These databases (`--databases`: the dump creates and selects each one).
    Databases(Vec<String>),
    /// Every database (`--all-databases`).
    AllDatabases,
}

impl DumpSelection {
    /// The file name of the dump inside the snapshot.
    fn stream_name(&self) -> String {
        match self {
            DumpSelection::Databases(d) if d.len() == 1 => format!("{}.sql", d[0]),
            DumpSelection::Databases(_) => "databases.sql".into(),
            DumpSelection::AllDatabases => "all-databases.sql".into(),
        }
    }
}

/// The dump tool's arguments after the connection arguments. `binlog_flag` is
/// `--master-data=2` or `--source-data=2` when binary logging is on (records the binlog
/// coordinates of the consistent snapshot as a comment).
pub fn dump_arguments(
    selection: &DumpSelection,
    binlog_flag: Option<&str>,
    extra: &[String],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    if let Some(f) = binlog_flag {
        args.push(f.into());
    }
    args.extend(extra.iter().map(OsString::from));
    match selection {
        DumpSelection::Databases(dbs) => {
            args.push("--databases".into());
            args.extend(dbs.iter().map(OsString::from));
        }
        DumpSelection::AllDatabases => args.push("--all-databases".into()),
    }
    args
}

/// `--source-data=2` for dump tools that know it (MySQL 8.0.26+), else `--master-data=2`.
fn binlog_flag(dump_tool: &Path) -> &'static str {
    let mut command = std::process::Command::new(dump_tool);
    scrub_environment(&mut command);
    let help = command
        .args(["--no-defaults", "--help"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match help {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("--source-data") => {
            "--source-data=2"
        }
        _ => "--master-data=2",
    }
}

/// Kills and reaps a child that is still running (after a failed stream).
/// How the tool that fed a snapshot's stream ended, for `backup_child`'s accept step.
/// When it failed, the error (with its last log lines) is kept in `failure` for the
/// caller and returned to the engine, which then writes no snapshot.
pub(crate) fn child_ended(
    ended: ChildResult,
    target: &str,
    failure: &Mutex<Option<Error>>,
) -> arca_core::Result<StderrTail> {
    let error = match ended {
        Ok(tail) => return Ok(tail),
        Err(ChildError::Failed {
            tool,
            status,
            message,
        }) => Error::ToolFailed {
            tool,
            status,
            target: target.to_string(),
            message: format!("{message}; no snapshot was written"),
        },
        Err(e) => return Err(arca_core::Error::from(e)),
    };
    let msg = error.to_string();
    *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    Err(arca_core::Error::Invalid(msg))
}

/// Starts a database tool (in arca's process group, so it may ask for a password).
pub(crate) fn spawn_tool(
    tool: &str,
    command: &mut std::process::Command,
    options: ChildOptions,
) -> Result<ChildProcess> {
    ChildProcess::spawn(tool, command, options).map_err(|e| match e {
        ChildError::Spawn { tool, source } => Error::Spawn { tool, source },
        e => Error::Core(arca_core::Error::from(e)),
    })
}

/// Streams a dump of `selection` into a new snapshot with source `mysql-dump`.
///
/// Metadata: `server_version`, `server_flavor`, `binlog`, `databases`, `dump_tool`, and
/// with binary logging on `binlog_file`, `binlog_position`, `gtid`. A dump tool that exits
/// non-zero leaves no snapshot (its data blobs stay as garbage for `prune`).
pub fn dump(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    conn: &Connection,
    selection: &DumpSelection,
    extra_args: &[String],
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    if let DumpSelection::Databases(d) = selection
        && d.is_empty()
    {
        return Err(Error::Invalid(
            "no database to dump: give --databases DB... or --all-databases".into(),
        ));
    }
    let client = find_tool(Tool::Client)?;
    let dump_tool = find_tool(Tool::Dump)?;
    let option_file = conn.option_file()?;
    let info = server_info_with(&client, conn, option_file.as_ref())?;
    let databases = match selection {
        DumpSelection::Databases(d) => d.clone(),
        DumpSelection::AllDatabases => list_databases(&client, conn, option_file.as_ref())?,
    };
    let mut meta = opts.meta.clone();
    add_server_meta(&info, &mut meta);
    meta.insert("databases".into(), databases.join(","));
    if *selection == DumpSelection::AllDatabases {
        meta.insert("all_databases".into(), "true".into());
    }
    let tool = tool_name(&dump_tool);
    meta.insert("dump_tool".into(), tool.clone());
    let flag = info.log_bin.then(|| binlog_flag(&dump_tool));

    let mut command = conn.command(&dump_tool, option_file.as_ref());
    command
        .args(dump_arguments(selection, flag, extra_args))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = spawn_tool(&tool, &mut command, ChildOptions::default())?;
    let scan = std::cell::OnceCell::new();
    let wrap = |stdout| {
        let (reader, found) = DumpScanner::new(stdout);
        let _ = scan.set(found);
        reader
    };
    let failure: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));

    let mut stream_opts = opts.clone();
    stream_opts.meta = meta;
    let accept = {
        let failure = failure.clone();
        let target = conn.describe();
        let client = client.clone();
        let log_bin = info.log_bin;
        let flavor = info.flavor.clone();
        let option_file = option_file.as_ref();
        let scan = &scan;
        move |ended| -> arca_core::Result<BTreeMap<String, String>> {
            child_ended(ended, &target, &failure)?;
            let mut extra = BTreeMap::new();
            if log_bin && let Some(scan) = scan.get() {
                let mut c = scan.coordinates();
                if c.gtid.is_none()
                    && flavor == "mariadb"
                    && let (Some(f), Some(p)) = (&c.file, c.position)
                    && let Ok(rows) = query(
                        &client,
                        conn,
                        option_file,
                        &format!("SELECT BINLOG_GTID_POS('{}', {p})", f.replace('\'', "''")),
                    )
                {
                    c.gtid = rows
                        .first()
                        .and_then(|r| r.first())
                        .filter(|g| !g.is_empty() && *g != "NULL")
                        .cloned();
                }
                c.add_to(&mut extra);
            }
            Ok(extra)
        }
    };
    let file = selection.stream_name();
    let name = StreamName {
        file: &file,
        source: SOURCE_DUMP,
    };
    let hooks = ChildStreamHooks { wrap, accept };
    let result = backup_child(repo, index, &child, name, &stream_opts, progress, hooks);
    match result {
        Ok(r) => Ok(r),
        Err(e) => Err(failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or(Error::Core(e))),
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreSummary {
    pub bytes: u64,
    pub duration_secs: f64,
    pub tool: String,
    pub stream: String,
}

/// The single stream file of a database snapshot: its path and node.
pub(crate) fn stream_node(
    repo: &Repository,
    index: &Index,
    snapshot_id: &Id,
    snapshot: &Snapshot,
    expected_source: &str,
) -> Result<(PathBuf, arca_core::format::Node)> {
    if snapshot.source != expected_source {
        return Err(Error::WrongSnapshotSource {
            snapshot: snapshot_id.short(),
            found: snapshot.source.clone(),
            expected: expected_source.into(),
        });
    }
    let [path] = snapshot.paths.as_slice() else {
        return Err(Error::NoStream(snapshot_id.short()));
    };
    let path = PathBuf::from(path);
    let node = find_path(repo, index, &snapshot.tree, &path)?;
    if node.kind != NodeKind::File {
        return Err(Error::NoStream(snapshot_id.short()));
    }
    Ok((path, node))
}

/// Blobs fetched, decrypted and decompressed ahead of the child, in order, by `threads`
/// workers; each item is one blob's plaintext or the error reading it.
fn read_ahead<'s, 'a: 's>(
    scope: &'s std::thread::Scope<'s, 'a>,
    repo: &'a Repository,
    index: &'a Index,
    node: &'a arca_core::format::Node,
    threads: usize,
) -> Receiver<Receiver<arca_core::Result<Vec<u8>>>> {
    let (job_tx, job_rx) = bounded::<(Id, Sender<arca_core::Result<Vec<u8>>>)>(threads * 2);
    let (order_tx, order_rx) = bounded(threads * 4);
    scope.spawn(move || {
        for id in &node.content {
            let (tx, rx) = bounded(1);
            if job_tx.send((*id, tx)).is_err() || order_tx.send(rx).is_err() {
                break;
            }
        }
    });
    for _ in 0..threads {
        let job_rx = job_rx.clone();
        scope.spawn(move || {
            for (id, tx) in job_rx {
                let _ = tx.send(repo.read_blob(index, &id));
            }
        });
    }
    order_rx
}

/// A check of the bytes `feed_child` passes to a child, each block before the child gets
/// it: an error stops the feed and kills the child.
pub(crate) trait StreamCheck {
    fn feed(&mut self, data: &[u8]) -> Result<()>;
    /// The stream is complete.
    fn finish(&mut self) -> Result<()>;
}

/// Passes every byte (a logical dump is SQL the server checks itself).
pub(crate) struct NoCheck;

impl StreamCheck for NoCheck {
    fn feed(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The child `feed_child` writes to: the tool (for messages), what it restores into, and
/// the check its input passes first.
pub(crate) struct ChildReader<'a> {
    pub(crate) child: ChildProcess,
    pub(crate) tool: &'a str,
    pub(crate) target: &'a str,
    pub(crate) check: &'a mut dyn StreamCheck,
}

/// Copies a snapshot file into a child's stdin (blobs read ahead in parallel), then waits
/// for the child. A child that exits early (broken pipe) or non-zero is reported with its
/// stderr.
pub(crate) fn feed_child(
    repo: &Repository,
    index: &Index,
    node: &arca_core::format::Node,
    reader: ChildReader<'_>,
    progress: &dyn Progress,
) -> Result<u64> {
    let ChildReader {
        child,
        tool,
        target,
        check,
    } = reader;
    let mut stdin = child.take_stdin().map_err(arca_core::Error::from)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let mut bytes = 0u64;
    let copied: std::result::Result<(), Error> = std::thread::scope(|scope| {
        let blobs = read_ahead(scope, repo, index, node, threads);
        // Returning drops `blobs`, which stops the feeder and the workers.
        for pending in &blobs {
            if progress.should_stop() {
                return Err(Error::Core(arca_core::Error::Interrupted));
            }
            let data = pending
                .recv()
                .map_err(|_| Error::Invalid("a blob reader stopped".into()))??;
            check.feed(&data)?;
            match stdin.write_all(&data) {
                Ok(()) => {}
                // The child stopped reading: its exit status and stderr say why.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(Error::io(format!("writing to {tool}"), e)),
            }
            bytes += data.len() as u64;
            progress.add_bytes(data.len() as u64);
        }
        check.finish()
    });
    drop(stdin);
    if let Err(e) = copied {
        child.kill();
        return Err(e);
    }
    let status = child.wait().map_err(arca_core::Error::from)?;
    if !status.success() {
        return Err(Error::ToolFailed {
            tool: tool.into(),
            status: status.to_string(),
            target: target.into(),
            message: child.stderr_tail().message(),
        });
    }
    if bytes != node.size {
        return Err(Error::ToolFailed {
            tool: tool.into(),
            status: status.to_string(),
            target: target.into(),
            message: format!(
                "it stopped reading after {bytes} of {} bytes without an error",
                node.size
            ),
        });
    }
    Ok(bytes)
}

/// Pipes the dump of snapshot `snapshot_id` into the SQL client connected by `conn`.
pub fn restore_dump(
    repo: &Repository,
    index: &Index,
    snapshot_id: &Id,
    snapshot: &Snapshot,
    conn: &Connection,
    extra_args: &[String],
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let start = Instant::now();
    let (path, node) = stream_node(repo, index, snapshot_id, snapshot, SOURCE_DUMP)?;
    let client = find_tool(Tool::Client)?;
    let option_file = conn.option_file()?;
    server_info_with(&client, conn, option_file.as_ref())?;
    let tool = tool_name(&client);
    let mut command = conn.command(&client, option_file.as_ref());
    command
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = spawn_tool(&tool, &mut command, ChildOptions::default())?;
    progress.set_total(1, node.size);
    progress.file_started(&path);
    let target = conn.describe();
    let reader = ChildReader {
        child,
        tool: &tool,
        target: &target,
        check: &mut NoCheck,
    };
    let bytes = feed_child(repo, index, &node, reader, progress)?;
    progress.add_files(1);
    Ok(RestoreSummary {
        bytes,
        duration_secs: start.elapsed().as_secs_f64(),
        tool,
        stream: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_arguments_are_consistent_and_complete() {
        let args = dump_arguments(
            &DumpSelection::Databases(vec!["shop".into(), "crm".into()]),
            Some("--master-data=2"),
            &[],
        );
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--master-data=2",
                "--databases",
                "shop",
                "crm"
            ]
        );
        let all = dump_arguments(&DumpSelection::AllDatabases, None, &["--hex-blob".into()]);
        assert_eq!(all.last().unwrap(), "--all-databases");
        assert!(all.contains(&OsString::from("--hex-blob")));
    }

    #[test]
    fn stream_names() {
        assert_eq!(
            DumpSelection::Databases(vec!["shop".into()]).stream_name(),
            "shop.sql"
        );
        assert_eq!(
            DumpSelection::AllDatabases.stream_name(),
            "all-databases.sql"
        );
    }
}
