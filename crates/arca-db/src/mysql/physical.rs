//! Physical backups: `mariadb-backup --backup --stream=xbstream` (or `xtrabackup`) streamed
//! into a snapshot (source `mysql-backup`), and `restore-physical`: the stream unpacked
//! with `mbstream`/`xbstream` into an empty data directory and prepared with `--prepare`,
//! so the server starts on it.

use arca_core::confined::{Confined, EntryKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arca_core::backup::{BackupOptions, BackupResult, ChildStreamHooks, StreamName, backup_child};
use arca_core::child::{ChildOptions, StderrTail};
use arca_core::format::Snapshot;
use arca_core::index::Index;
use arca_core::progress::Progress;
use arca_core::{Id, Repository};

use super::connection::{Connection, scrub_environment};
use super::dump::{ChildReader, StreamCheck, child_ended, feed_child, spawn_tool, stream_node};
use super::scan::{BinlogCoordinates, parse_binlog_info, watch_backup_log};
use super::server::{add_server_meta, server_info_with};
use super::tools::{Tool, extractor_for, find_named, find_tool, tool_name};
use super::xbstream::{StreamError, StreamNames};
use super::{Error, Result, SOURCE_BACKUP};

/// Streams a physical backup of the server into a new snapshot with source
/// `mysql-backup`. Metadata: `server_version`, `server_flavor`, `binlog`, `backup_tool`,
/// `datadir`, and `binlog_file`, `binlog_position`, `gtid` as the backup tool logged them.
/// The backup tool must be able to read the server's data directory (run as root or as
/// the server's user, on the server's host).
pub fn backup_physical(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    conn: &Connection,
    extra_args: &[String],
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let client = find_tool(Tool::Client)?;
    let backup_tool = find_tool(Tool::Backup)?;
    let option_file = conn.option_file()?;
    let info = server_info_with(&client, conn, option_file.as_ref())?;
    let tool = tool_name(&backup_tool);
    let mut meta = opts.meta.clone();
    add_server_meta(&info, &mut meta);
    meta.insert("backup_tool".into(), tool.clone());
    if let Some(d) = &info.datadir {
        meta.insert("datadir".into(), d.clone());
    }

    let mut command = conn.command(&backup_tool, option_file.as_ref());
    command
        .args(["--backup", "--stream=xbstream"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The binary log position is in mariadb-backup's log, not in its stream.
    let (on_stderr_line, coordinates) = watch_backup_log();
    let options = ChildOptions {
        own_group: false,
        on_stderr_line: Some(on_stderr_line),
    };
    let child = spawn_tool(&tool, &mut command, options)?;
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let mut stream_opts = opts.clone();
    stream_opts.meta = meta;
    let target = conn.describe();
    let accept = |ended| -> arca_core::Result<BTreeMap<String, String>> {
        child_ended(ended, &target, &failure)?;
        let mut extra = BTreeMap::new();
        coordinates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add_to(&mut extra);
        Ok(extra)
    };
    let file = format!("{tool}.xbstream");
    let name = StreamName {
        file: &file,
        source: SOURCE_BACKUP,
    };
    let hooks = ChildStreamHooks {
        wrap: |out| out,
        accept,
    };
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

/// The names of the stream checked on their way to the extractor (see [`super::xbstream`]).
struct CheckedNames<'a> {
    names: StreamNames,
    snapshot: String,
    datadir: &'a Path,
}

impl CheckedNames<'_> {
    fn refuse(&self, source: StreamError) -> Error {
        Error::HostileStream {
            snapshot: self.snapshot.clone(),
            datadir: self.datadir.to_path_buf(),
            source,
        }
    }
}

impl StreamCheck for CheckedNames<'_> {
    fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.names.feed(data).map_err(|e| self.refuse(e))
    }
    fn finish(&mut self) -> Result<()> {
        self.names.finish().map_err(|e| self.refuse(e))
    }
}

/// What `restore_physical` did.
#[derive(Debug, Clone, PartialEq)]
pub struct PhysicalRestore {
    pub datadir: PathBuf,
    pub bytes: u64,
    /// Binlog coordinates of the backup (from `xtrabackup_binlog_info`), when recorded.
    pub coordinates: BinlogCoordinates,
    pub duration_secs: f64,
}

/// Refuses a data directory that exists and is not empty; creates a missing one.
fn prepare_target(datadir: &Path) -> Result<()> {
    match std::fs::read_dir(datadir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::DirectoryNotEmpty(datadir.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(datadir)
            .map_err(|e| Error::io(format!("creating {}", datadir.display()), e)),
        Err(e) => Err(Error::io(format!("reading {}", datadir.display()), e)),
    }
}

/// Changes the owner of `dir` and everything below it, through a confined walk: symlinks
/// are changed themselves and never followed, and nothing outside `dir` is reached even
/// if the extracted backup holds links.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
        .map_err(|e| Error::io(format!("changing the owner of {}", dir.display()), e))?;
    let conf =
        Confined::open(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    chown_below(&conf, Path::new(""), uid, gid)
}

fn chown_below(conf: &Confined, rel: &Path, uid: u32, gid: u32) -> Result<()> {
    let shown = |p: &Path| conf.display(p).display().to_string();
    let names = conf
        .list(rel)
        .map_err(|e| Error::io(format!("reading {}", shown(rel)), e))?;
    for name in names {
        let child = rel.join(name);
        conf.set_owner(&child, uid, gid)
            .map_err(|e| Error::io(format!("changing the owner of {}", shown(&child)), e))?;
        let entry = conf
            .lstat(&child)
            .map_err(|e| Error::io(format!("reading {}", shown(&child)), e))?;
        if entry.is_some_and(|e| e.kind == EntryKind::Dir) {
            chown_below(conf, &child, uid, gid)?;
        }
    }
    Ok(())
}

/// Runs a tool to completion; its stderr (and stdout) become the error message.
fn run_tool(program: &Path, args: &[std::ffi::OsString], target: &Path) -> Result<()> {
    let tool = tool_name(program);
    let mut c = std::process::Command::new(program);
    scrub_environment(&mut c);
    let out = c
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            tool: tool.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut log = String::from_utf8_lossy(&out.stderr).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stdout));
    Err(Error::ToolFailed {
        tool,
        status: out.status.to_string(),
        target: target.display().to_string(),
        message: StderrTail::from_text(&log).message(),
    })
}

/// Unpacks physical backup `snapshot_id` into `datadir` (which must be empty or missing)
/// and prepares it (`--prepare`), so the server starts on it. `owner` (uid, gid), when
/// given, becomes the owner of every file (the server's user, usually `mysql`).
pub fn restore_physical(
    repo: &Repository,
    index: &Index,
    snapshot_id: &Id,
    snapshot: &Snapshot,
    datadir: &Path,
    owner: Option<(u32, u32)>,
    progress: &dyn Progress,
) -> Result<PhysicalRestore> {
    let start = Instant::now();
    let (path, node) = stream_node(repo, index, snapshot_id, snapshot, SOURCE_BACKUP)?;
    let recorded_tool = snapshot
        .meta
        .get("backup_tool")
        .cloned()
        .unwrap_or_else(|| "mariadb-backup".into());
    let extractor = find_named(extractor_for(&recorded_tool), "the xbstream extractor")?;
    let mut backup_tools: Vec<&str> = vec![recorded_tool.as_str()];
    backup_tools.extend(Tool::Backup.candidates());
    let backup_tool = find_named(&backup_tools, "a physical backup tool")?;
    prepare_target(datadir)?;

    let tool = tool_name(&extractor);
    let mut command = std::process::Command::new(&extractor);
    scrub_environment(&mut command);
    command
        .arg("-x")
        .arg("-C")
        .arg(datadir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = spawn_tool(&tool, &mut command, ChildOptions::default())?;
    progress.set_total(1, node.size);
    progress.file_started(&path);
    let target = datadir.display().to_string();
    let mut names = CheckedNames {
        names: StreamNames::default(),
        snapshot: snapshot_id.to_string(),
        datadir,
    };
    let reader = ChildReader {
        child,
        tool: &tool,
        target: &target,
        check: &mut names,
    };
    let bytes = feed_child(repo, index, &node, reader, progress)?;
    progress.add_files(1);

    let mut target_arg = std::ffi::OsString::from("--target-dir=");
    target_arg.push(datadir.as_os_str());
    run_tool(&backup_tool, &["--prepare".into(), target_arg], datadir)?;
    if let Some((uid, gid)) = owner {
        chown_tree(datadir, uid, gid)?;
    }
    // Read through the confined directory: a link there is not followed.
    let conf = Confined::open(datadir).ok();
    let coordinates = ["xtrabackup_binlog_info", "mariadb_backup_binlog_info"]
        .iter()
        .filter_map(|f| conf.as_ref()?.read_file(Path::new(f)).ok().flatten())
        .filter_map(|b| String::from_utf8(b).ok())
        .find_map(|t| parse_binlog_info(&t))
        .unwrap_or_default();
    Ok(PhysicalRestore {
        datadir: datadir.to_path_buf(),
        bytes,
        coordinates,
        duration_secs: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_empty_target_is_refused_and_missing_one_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("new/datadir");
        prepare_target(&missing).unwrap();
        assert!(missing.is_dir());
        prepare_target(&missing).unwrap();
        std::fs::write(missing.join("ibdata1"), b"x").unwrap();
        assert!(matches!(
            prepare_target(&missing),
            Err(Error::DirectoryNotEmpty(_))
        ));
    }
}
