//! Logical dumps: `pg_dump` of one database streamed into a snapshot (custom or plain
//! format; directory format with `--jobs`, tarred into the stream), `--all` as a dump set
//! (one snapshot per database plus a globals snapshot written last, which lists them),
//! and the way back through `pg_restore` or `psql`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use arca_core::backup::{
    BackupOptions, BackupResult, ChildStreamHooks, StreamName, backup_child, backup_stream,
};
use arca_core::format::{NodeKind, Snapshot};
use arca_core::index::Index;
use arca_core::progress::Progress;
use arca_core::walk::ContentReader;
use arca_core::{Id, Repository};

use super::tools::{
    ConnectionArg, Running, Tools, describe_target, query, server_info, with_dbname,
};
use super::{Error, Result, SOURCE_DUMP, SOURCE_DUMPALL};

/// pg_dump's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// `-Fc`: compressed-by-us archive for pg_restore (selective, parallel restore).
    Custom,
    /// `-Fp`: SQL for psql.
    Plain,
    /// `-Fd -j N`: the directory tarred into the stream.
    Directory,
}

impl DumpFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DumpFormat::Custom => "custom",
            DumpFormat::Plain => "plain",
            DumpFormat::Directory => "directory",
        }
    }

    fn parse(s: &str) -> Option<DumpFormat> {
        match s {
            "custom" => Some(DumpFormat::Custom),
            "plain" => Some(DumpFormat::Plain),
            "directory" => Some(DumpFormat::Directory),
            _ => None,
        }
    }
}

/// How to dump.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub dbname: String,
    pub tools: Tools,
    pub format: DumpFormat,
    /// Parallel pg_dump jobs (directory format).
    pub jobs: usize,
    pub backup: BackupOptions,
}

fn file_name_for(db: &str, format: DumpFormat) -> String {
    let safe: String = db
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    let safe = if safe.is_empty() || safe == "." || safe == ".." {
        format!("db-{safe}")
    } else {
        safe
    };
    match format {
        DumpFormat::Custom => format!("{safe}.dump"),
        DumpFormat::Plain => format!("{safe}.sql"),
        DumpFormat::Directory => format!("{safe}.dir.tar"),
    }
}

/// Dumps one database into a snapshot.
pub fn dump(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    o: &DumpOptions,
    extra_meta: &BTreeMap<String, String>,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let target = describe_target(&o.dbname);
    // Fails early, with psql's message, when the server is down or refuses us.
    let info = server_info(&o.tools, &o.dbname)?;
    let pg_dump = o.tools.find("pg_dump")?;
    let mut meta = extra_meta.clone();
    meta.insert("pg.server_version".into(), info.version.clone());
    meta.insert("pg.server_version_num".into(), info.version_num.clone());
    meta.insert("pg.database".into(), info.database.clone());
    meta.insert("pg.format".into(), o.format.as_str().into());
    let mut opts = o.backup.clone();
    opts.meta.extend(meta);
    let name = file_name_for(&info.database, o.format);
    if o.format == DumpFormat::Directory {
        return dump_directory(repo, index, o, &pg_dump, &name, &opts, progress);
    }
    let mut cmd = std::process::Command::new(&pg_dump);
    cmd.stdin(Stdio::null())
        .arg(if o.format == DumpFormat::Custom {
            "-Fc"
        } else {
            "-Fp"
        })
        // We compress; pg_dump's own compression would defeat deduplication.
        .args(if o.format == DumpFormat::Custom {
            &["-Z", "0"][..]
        } else {
            &[][..]
        })
        .connection(&o.dbname)
        .stdout(Stdio::piped());
    let running = Running::spawn("pg_dump", cmd)?;
    let name = StreamName {
        file: &name,
        source: SOURCE_DUMP,
    };
    let hooks = ChildStreamHooks {
        wrap: |out| out,
        accept: |ended| {
            running.accepted(ended, &target)?;
            Ok(BTreeMap::new())
        },
    };
    let r = backup_child(repo, index, &running.child, name, &opts, progress, hooks)?;
    Ok(r)
}

fn dump_directory(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    o: &DumpOptions,
    pg_dump: &Path,
    name: &str,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let target = describe_target(&o.dbname);
    let tmp = std::env::temp_dir().join(format!(
        "arca-pgdump-{}-{}",
        std::process::id(),
        Id::random().short()
    ));
    let out_dir = tmp.join("dump");
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = (|| {
        let mut cmd = std::process::Command::new(pg_dump);
        cmd.stdin(Stdio::null())
            .args(["-Fd", "-Z", "0", "-j"])
            .arg(o.jobs.max(1).to_string())
            .arg("-f")
            .arg(&out_dir)
            .connection(&o.dbname)
            .stdout(Stdio::null());
        Running::spawn("pg_dump", cmd)?.finish(&target)?;
        // Tar the directory into the stream from a thread.
        let (reader, mut writer) = std::io::pipe().map_err(|e| Error::io(&tmp, e))?;
        let dir = out_dir.clone();
        let tarrer = std::thread::spawn(move || -> std::io::Result<()> {
            let mut b = tar::Builder::new(&mut writer);
            b.append_dir_all(".", &dir)?;
            b.finish()?;
            drop(b);
            writer.flush()
        });
        let r = backup_stream(
            repo,
            index,
            reader,
            name,
            SOURCE_DUMP,
            opts,
            progress,
            move || match tarrer.join() {
                Ok(Ok(())) => Ok(BTreeMap::new()),
                Ok(Err(e)) => Err(arca_core::Error::Invalid(format!(
                    "tarring pg_dump's directory: {e}; no snapshot was written"
                ))),
                Err(_) => Err(arca_core::Error::Invalid(
                    "tarring pg_dump's directory failed; no snapshot was written".into(),
                )),
            },
        )?;
        Ok(r)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Dumps every database (one snapshot each) and then the globals (roles, tablespaces)
/// as the snapshot that names the set: `pg.dump_set` ties them together, and the globals
/// snapshot's `pg.databases` lists the databases (JSON array).
pub fn dump_all(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    o: &DumpOptions,
    progress: &dyn Progress,
) -> Result<Vec<BackupResult>> {
    let target = describe_target(&o.dbname);
    let info = server_info(&o.tools, &o.dbname)?;
    let pg_dumpall = o.tools.find("pg_dumpall")?;
    o.tools.find("pg_dump")?;
    let dbs: Vec<String> = query(
        &o.tools,
        &o.dbname,
        "select datname from pg_database where datallowconn and not datistemplate order by 1",
    )?
    .into_iter()
    .filter_map(|r| r.into_iter().next())
    .collect();
    let set = Id::random().to_hex()[..16].to_string();
    let mut set_meta = BTreeMap::new();
    set_meta.insert("pg.dump_set".to_string(), set.clone());
    let mut results = Vec::new();
    for db in &dbs {
        let mut od = o.clone();
        od.dbname = with_dbname(&o.dbname, db);
        results.push(dump(repo, index.clone(), &od, &set_meta, progress)?);
    }
    let mut opts = o.backup.clone();
    opts.meta.extend(set_meta);
    opts.meta
        .insert("pg.server_version".into(), info.version.clone());
    opts.meta
        .insert("pg.server_version_num".into(), info.version_num.clone());
    opts.meta.insert(
        "pg.databases".into(),
        serde_json::to_string(&dbs).unwrap_or_default(),
    );
    opts.meta.insert("pg.format".into(), "plain".into());
    let mut cmd = std::process::Command::new(&pg_dumpall);
    cmd.stdin(Stdio::null())
        .arg("--globals-only")
        .connection(&o.dbname)
        .stdout(Stdio::piped());
    let running = Running::spawn("pg_dumpall", cmd)?;
    let name = StreamName {
        file: "globals.sql",
        source: SOURCE_DUMPALL,
    };
    let hooks = ChildStreamHooks {
        wrap: |out| out,
        accept: |ended| {
            running.accepted(ended, &target)?;
            Ok(BTreeMap::new())
        },
    };
    let r = backup_child(repo, index, &running.child, name, &opts, progress, hooks)?;
    results.push(r);
    Ok(results)
}

/// The one file of a dump snapshot.
fn dump_file(repo: &Repository, index: &Index, snap: &Snapshot) -> Result<arca_core::format::Node> {
    let tree = repo.load_tree(index, &snap.tree)?;
    tree.nodes
        .into_iter()
        .find(|n| n.kind == NodeKind::File)
        .ok_or_else(|| Error::Invalid("the snapshot holds no dump file".into()))
}

/// Restores one dump snapshot into the database `dbname` (which must exist).
pub fn restore_dump(
    repo: &Repository,
    index: &Index,
    snap: &(Id, Snapshot),
    dbname: &str,
    tools: &Tools,
    jobs: usize,
) -> Result<()> {
    let (id, s) = snap;
    if s.source != SOURCE_DUMP && s.source != SOURCE_DUMPALL {
        return Err(Error::Invalid(format!(
            "snapshot {} is not a PostgreSQL dump (its source is {:?})",
            id.short(),
            s.source
        )));
    }
    let target = describe_target(dbname);
    let node = dump_file(repo, index, s)?;
    let format = s
        .meta
        .get("pg.format")
        .and_then(|f| DumpFormat::parse(f))
        .unwrap_or(DumpFormat::Custom);
    let mut content = ContentReader::new(repo, index, &node);
    match format {
        DumpFormat::Directory => {
            let tmp = std::env::temp_dir().join(format!(
                "arca-pgrestore-{}-{}",
                std::process::id(),
                Id::random().short()
            ));
            let r = (|| {
                tar::Archive::new(&mut content)
                    .unpack(&tmp)
                    .map_err(|e| Error::io(&tmp, e))?;
                let mut cmd = tools.command("pg_restore")?;
                cmd.arg("-j")
                    .arg(jobs.max(1).to_string())
                    .connection(dbname)
                    .arg(&tmp)
                    .stdout(Stdio::null());
                Running::spawn("pg_restore", cmd)?.finish(&target)?;
                Ok(())
            })();
            let _ = std::fs::remove_dir_all(&tmp);
            r
        }
        DumpFormat::Custom | DumpFormat::Plain => {
            let (tool, mut cmd) = if format == DumpFormat::Custom {
                let mut c = tools.command("pg_restore")?;
                c.connection(dbname);
                ("pg_restore", c)
            } else {
                let mut c = tools.command("psql")?;
                c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
                    .connection(dbname)
                    .arg("-f")
                    .arg("-");
                ("psql", c)
            };
            cmd.stdin(Stdio::piped()).stdout(Stdio::null());
            let running = Running::spawn(tool, cmd)?;
            let copied = {
                let mut stdin = running.take_stdin()?;
                std::io::copy(&mut content, &mut stdin).map(|_| ())
            };
            let finished = running.finish(&target);
            if let Err(e) = copied {
                // A tool that stopped early shows up as a broken pipe: its message wins.
                finished?;
                return Err(Error::Invalid(format!(
                    "reading snapshot {}: {e}",
                    id.short()
                )));
            }
            finished.map(|_| ())
        }
    }
}

/// Restores a whole dump set (from `dump_all`) given its globals snapshot: the globals
/// first (errors such as "role already exists" are expected and ignored), then every
/// database of the set, created when missing. `dbname` connects to a maintenance
/// database of the target server.
pub fn restore_dump_set(
    repo: &Repository,
    index: &Index,
    snaps: &[(Id, Snapshot)],
    globals: &(Id, Snapshot),
    dbname: &str,
    tools: &Tools,
    jobs: usize,
) -> Result<Vec<String>> {
    let set = globals
        .1
        .meta
        .get("pg.dump_set")
        .ok_or_else(|| {
            Error::Invalid(format!(
                "snapshot {} is not the globals snapshot of a dump set",
                globals.0.short()
            ))
        })?
        .clone();
    let dbs: Vec<String> = globals
        .1
        .meta
        .get("pg.databases")
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let target = describe_target(dbname);
    // Globals: plain SQL without ON_ERROR_STOP.
    let node = dump_file(repo, index, &globals.1)?;
    let mut cmd = tools.command("psql")?;
    cmd.args(["-X", "-q"])
        .connection(dbname)
        .arg("-f")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let running = Running::spawn("psql", cmd)?;
    {
        let mut stdin = running.take_stdin()?;
        std::io::copy(&mut ContentReader::new(repo, index, &node), &mut stdin)
            .map_err(|e| Error::Invalid(format!("restoring globals: {e}")))?;
    }
    running.finish(&target)?;
    let existing: Vec<String> = query(tools, dbname, "select datname from pg_database")?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    let mut restored = Vec::new();
    for db in dbs {
        let snap = snaps
            .iter()
            .rev()
            .find(|(_, s)| {
                s.source == SOURCE_DUMP
                    && s.meta.get("pg.dump_set") == Some(&set)
                    && s.meta.get("pg.database") == Some(&db)
            })
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "the dump set {set} has no snapshot of database {db:?} (forgotten?)"
                ))
            })?;
        if !existing.contains(&db) {
            query(
                tools,
                dbname,
                &format!("create database \"{}\"", db.replace('"', "\"\"")),
            )?;
        }
        restore_dump(repo, index, snap, &with_dbname(dbname, &db), tools, jobs)?;
        restored.push(db);
    }
    Ok(restored)
}
