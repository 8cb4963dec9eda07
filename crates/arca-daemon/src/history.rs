//! The run history: one SQLite row per run (backup or prune) with its job, type, times,
//! status, counts, snapshot id, error, log (steps and hook output) and where copies went.
//! The daemon and `arca job run` write it; `arca history` and `arca status` read it.
//! The schema version lives in `PRAGMA user_version` so later issues can migrate it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

/// 1: runs; 2: runs.report (drill reports, JSON), runs.pid_start (the start time of the
/// process that ran it, so a reused pid is not taken for it) and the `state` table (the
/// daemon's alert tracker and when it first saw each job).
const SCHEMA_VERSION: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("run history {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("run history {path}: creating its directory: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "run history {path} has schema version {found}; this arca knows up to {SCHEMA_VERSION}: upgrade arca"
    )]
    NewerSchema { path: PathBuf, found: i64 },
}

/// How a run ended (or that it is still going).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Success,
    /// A snapshot was written but some entries could not be read.
    Incomplete,
    Failed,
    /// Stopped at a checkpoint (SIGTERM, window closed): no snapshot.
    Interrupted,
    /// Left "running" by a process that no longer exists.
    Abandoned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Incomplete => "incomplete",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> RunStatus {
        match s {
            "running" => RunStatus::Running,
            "success" => RunStatus::Success,
            "incomplete" => RunStatus::Incomplete,
            "interrupted" => RunStatus::Interrupted,
            "abandoned" => RunStatus::Abandoned,
            _ => RunStatus::Failed,
        }
    }

    /// A run that produced a usable snapshot.
    pub fn is_good(self) -> bool {
        matches!(self, RunStatus::Success | RunStatus::Incomplete)
    }
}

/// One row of the history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    /// `backup`, `prune` or `drill`.
    pub kind: String,
    /// full, incremental or differential (backups).
    #[serde(rename = "type")]
    pub backup_type: Option<String>,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// The schedule slot the run served (scheduled runs).
    pub slot: Option<Timestamp>,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub status: RunStatus,
    pub files: Option<u64>,
    pub bytes_read: Option<u64>,
    pub bytes_added: Option<u64>,
    pub snapshot_id: Option<String>,
    pub error: Option<String>,
    /// Steps and hook output.
    pub log: String,
    /// Copies and the 3-2-1 state after the run (JSON).
    pub copies: Option<serde_json::Value>,
    pub pid: u32,
    /// The drill report (drills; JSON of [`arca_ops::drill::DrillReport`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub status: Option<RunStatus>,
    pub files: Option<u64>,
    pub bytes_read: Option<u64>,
    pub bytes_added: Option<u64>,
    pub snapshot_id: Option<String>,
    pub error: Option<String>,
    pub log: String,
    pub copies: Option<serde_json::Value>,
    /// The drill report (drills).
    pub report: Option<serde_json::Value>,
}

pub struct History {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn from_ms(v: i64) -> Timestamp {
    Timestamp::from_millisecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Whether the process that ran a run is gone: procfs tells (also a reused pid, by the
/// start time recorded with the run); without procfs, a pid no process has.
fn process_gone(pid: u32, start: Option<u64>) -> bool {
    if arca_storage::process::process_start(std::process::id()).is_some() {
        return arca_storage::process::process_gone(pid, start);
    }
    let Ok(pid) = i32::try_from(pid) else {
        return true;
    };
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

const COLUMNS: &str = "id, job, kind, backup_type, trigger, slot_ms, start_ms, end_ms, status, \
     files, bytes_read, bytes_added, snapshot_id, error, log, copies, pid, report";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let copies: Option<String> = r.get(15)?;
    Ok(RunRecord {
        id: r.get(0)?,
        job: r.get(1)?,
        kind: r.get(2)?,
        backup_type: r.get(3)?,
        trigger: r.get(4)?,
        slot: r.get::<_, Option<i64>>(5)?.map(from_ms),
        start: from_ms(r.get(6)?),
        end: r.get::<_, Option<i64>>(7)?.map(from_ms),
        status: RunStatus::parse(&r.get::<_, String>(8)?),
        files: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        bytes_read: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        bytes_added: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        snapshot_id: r.get(12)?,
        error: r.get(13)?,
        log: r.get::<_, Option<String>>(14)?.unwrap_or_default(),
        copies: copies.and_then(|c| serde_json::from_str(&c).ok()),
        pid: r.get::<_, i64>(16)? as u32,
        report: r
            .get::<_, Option<String>>(17)?
            .and_then(|c| serde_json::from_str(&c).ok()),
    })
}

impl History {
    /// Opens (creating when missing) the history at `path`.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let err = |source| HistoryError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        let _ = conn.pragma_update(None, "journal_mode", "WAL");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(HistoryError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
            });
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS runs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                job TEXT NOT NULL,
                kind TEXT NOT NULL,
                backup_type TEXT,
                trigger TEXT NOT NULL,
                slot_ms INTEGER,
                start_ms INTEGER NOT NULL,
                end_ms INTEGER,
                status TEXT NOT NULL,
                files INTEGER,
                bytes_read INTEGER,
                bytes_added INTEGER,
                snapshot_id TEXT,
                error TEXT,
                log TEXT,
                copies TEXT,
                pid INTEGER NOT NULL,
                report TEXT,
                pid_start INTEGER
            );
            CREATE INDEX IF NOT EXISTS runs_by_job ON runs(job, start_ms);
            CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .map_err(err)?;
        for (column, kind) in [("report", "TEXT"), ("pid_start", "INTEGER")] {
            let present = conn
                .prepare(&format!("SELECT {column} FROM runs LIMIT 0"))
                .is_ok();
            if !present {
                // Another process opening the same history may add it at the same moment.
                match conn.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {column} {kind};")) {
                    Err(e) if e.to_string().contains("duplicate column") => {}
                    other => other.map_err(err)?,
                }
            }
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
        Ok(History {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HistoryError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| HistoryError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Records the start of a run; returns its id.
    pub fn start_run(
        &self,
        job: &str,
        kind: &str,
        backup_type: Option<&str>,
        trigger: &str,
        slot: Option<Timestamp>,
        start: Timestamp,
    ) -> Result<i64, HistoryError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (job, kind, backup_type, trigger, slot_ms, start_ms, status, pid,
                 pid_start)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8)",
                params![
                    job,
                    kind,
                    backup_type,
                    trigger,
                    slot.map(ms),
                    ms(start),
                    std::process::id(),
                    arca_storage::process::process_start(std::process::id()).map(|t| t as i64)
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records how a run ended.
    pub fn finish_run(&self, id: i64, end: Timestamp, o: &RunOutcome) -> Result<(), HistoryError> {
        let status = o.status.unwrap_or(RunStatus::Failed);
        let copies = o.copies.as_ref().map(|c| c.to_string());
        let report = o.report.as_ref().map(|c| c.to_string());
        self.with(|c| {
            c.execute(
                "UPDATE runs SET end_ms = ?2, status = ?3, files = ?4, bytes_read = ?5,
                 bytes_added = ?6, snapshot_id = ?7, error = ?8, log = ?9, copies = ?10,
                 report = ?11
                 WHERE id = ?1",
                params![
                    id,
                    ms(end),
                    status.as_str(),
                    o.files.map(|v| v as i64),
                    o.bytes_read.map(|v| v as i64),
                    o.bytes_added.map(|v| v as i64),
                    o.snapshot_id,
                    o.error,
                    o.log,
                    copies,
                    report
                ],
            )?;
            Ok(())
        })
    }

    /// Marks runs left "running" by processes that no longer exist as abandoned.
    pub fn close_abandoned(&self) -> Result<usize, HistoryError> {
        let running = self.with(|c| {
            let mut st =
                c.prepare("SELECT id, pid, pid_start FROM runs WHERE status = 'running'")?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        let mut n = 0;
        for (id, pid, start) in running {
            let pid = pid as u32;
            let start = start.map(|s| s as u64);
            if pid == std::process::id() || !process_gone(pid, start) {
                continue;
            }
            self.with(|c| {
                c.execute(
                    "UPDATE runs SET status = 'abandoned', error = 'the process running it ended' WHERE id = ?1",
                    params![id],
                )
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// The newest runs first; `job` filters; `limit` 0 means all.
    pub fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, HistoryError> {
        let lim = if limit == 0 { -1 } else { limit as i64 };
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM runs WHERE (?1 IS NULL OR job = ?1)
                 ORDER BY start_ms DESC, id DESC LIMIT ?2"
            );
            let mut st = c.prepare(&sql)?;
            let rows = st
                .query_map(params![job, lim], row_to_record)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// The newest run of `job` and `kind` matching `status_filter` (SQL list of statuses).
    fn newest(
        &self,
        job: &str,
        kind: &str,
        statuses: &[&str],
    ) -> Result<Option<RunRecord>, HistoryError> {
        let list = statuses
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM runs WHERE job = ?1 AND kind = ?2 AND status IN ({list})
                 ORDER BY start_ms DESC, id DESC LIMIT 1"
            );
            c.query_row(&sql, params![job, kind], row_to_record)
                .optional()
        })
    }

    pub fn last_run(&self, job: &str) -> Result<Option<RunRecord>, HistoryError> {
        self.newest(
            job,
            "backup",
            &[
                "running",
                "success",
                "incomplete",
                "failed",
                "interrupted",
                "abandoned",
            ],
        )
    }

    /// The newest finished run that wrote a snapshot to the primary repository (also when a
    /// later step, such as a copy, failed: the snapshot exists and counts for the RPO; the
    /// run's 3-2-1 state and error tell what is missing).
    pub fn last_good(&self, job: &str) -> Result<Option<RunRecord>, HistoryError> {
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM runs WHERE job = ?1 AND kind = 'backup'
                 AND snapshot_id IS NOT NULL AND status != 'running'
                 ORDER BY start_ms DESC, id DESC LIMIT 1"
            );
            c.query_row(&sql, params![job], row_to_record).optional()
        })
    }

    pub fn last_prune(&self, job: &str) -> Result<Option<RunRecord>, HistoryError> {
        self.newest(job, "prune", &["success"])
    }

    /// A value the daemon keeps across restarts (`None` when never set).
    pub fn state(&self, key: &str) -> Result<Option<String>, HistoryError> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM state WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Sets a value kept across restarts.
    pub fn set_state(&self, key: &str, value: &str) -> Result<(), HistoryError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO state (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
    }

    /// The newest finished drill of `job`.
    pub fn last_drill(&self, job: &str) -> Result<Option<RunRecord>, HistoryError> {
        self.newest(job, "drill", &["success", "failed"])
    }

    /// The newest runs of `kind` (`backup`, `prune`, `drill`) first; `job` filters; `limit`
    /// 0 means all.
    pub fn runs_of_kind(
        &self,
        job: Option<&str>,
        kind: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        let lim = if limit == 0 { -1 } else { limit as i64 };
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM runs WHERE (?1 IS NULL OR job = ?1) AND kind = ?2
                 ORDER BY start_ms DESC, id DESC LIMIT ?3"
            );
            let mut st = c.prepare(&sql)?;
            let rows = st
                .query_map(params![job, kind, lim], row_to_record)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// The newest schedule slot a run of `job` served (to catch up after downtime once).
    pub fn last_slot(&self, job: &str) -> Result<Option<Timestamp>, HistoryError> {
        self.with(|c| {
            c.query_row(
                "SELECT MAX(slot_ms) FROM runs WHERE job = ?1 AND kind = 'backup'",
                params![job],
                |r| r.get::<_, Option<i64>>(0),
            )
        })
        .map(|v| v.map(from_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_recorded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("sub/state.db")).unwrap();
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let id = h
            .start_run("docs", "backup", Some("full"), "schedule", Some(t0), t0)
            .unwrap();
        assert_eq!(
            h.last_run("docs").unwrap().unwrap().status,
            RunStatus::Running
        );
        h.finish_run(
            id,
            Timestamp::from_second(1_700_000_010).unwrap(),
            &RunOutcome {
                status: Some(RunStatus::Success),
                files: Some(3),
                bytes_read: Some(100),
                bytes_added: Some(50),
                snapshot_id: Some("abcd".into()),
                log: "pre: ok\n".into(),
                copies: Some(serde_json::json!({"copies": 2})),
                ..Default::default()
            },
        )
        .unwrap();
        let id2 = h
            .start_run("docs", "backup", Some("incremental"), "manual", None, t0)
            .unwrap();
        h.finish_run(
            id2,
            t0,
            &RunOutcome {
                status: Some(RunStatus::Failed),
                error: Some("boom".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let good = h.last_good("docs").unwrap().unwrap();
        assert_eq!(good.snapshot_id.as_deref(), Some("abcd"));
        // A run whose backup worked but whose copy failed still wrote a snapshot.
        let id3 = h
            .start_run("docs", "backup", Some("incremental"), "schedule", None, t0)
            .unwrap();
        assert_eq!(h.last_good("docs").unwrap().unwrap().id, id);
        h.finish_run(
            id3,
            t0,
            &RunOutcome {
                status: Some(RunStatus::Failed),
                snapshot_id: Some("ef01".into()),
                error: Some("copy to s3: unreachable".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(h.last_good("docs").unwrap().unwrap().id, id3);
        assert_eq!(
            h.last_run("docs").unwrap().unwrap().error.as_deref(),
            Some("copy to s3: unreachable")
        );
        assert_eq!(good.files, Some(3));
        assert_eq!(good.copies.unwrap()["copies"], 2);
        assert_eq!(h.runs(Some("docs"), 0).unwrap().len(), 3);
        assert_eq!(h.runs(Some("other"), 0).unwrap().len(), 0);
        assert_eq!(h.last_slot("docs").unwrap(), Some(t0));
        drop(h);
        // Reopening keeps everything.
        let h = History::open(&dir.path().join("sub/state.db")).unwrap();
        assert_eq!(h.runs(None, 1).unwrap().len(), 1);
        // Drills keep their report.
        let d = h
            .start_run("docs", "drill", None, "manual", None, t0)
            .unwrap();
        h.finish_run(
            d,
            t0,
            &RunOutcome {
                status: Some(RunStatus::Success),
                report: Some(serde_json::json!({"passed": true})),
                ..Default::default()
            },
        )
        .unwrap();
        let drill = h.last_drill("docs").unwrap().unwrap();
        assert_eq!(drill.report.unwrap()["passed"], true);
        assert_eq!(h.runs_of_kind(None, "drill", 0).unwrap().len(), 1);
        assert_eq!(h.last_run("docs").unwrap().unwrap().kind, "backup");
    }

    #[test]
    fn processes_opening_one_old_history_at_once_all_succeed() {
        // A daemon and `arca history` may open (and migrate) the same file together.
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            Connection::open(&path)
                .unwrap()
                .execute_batch(
                    "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL,
                     kind TEXT NOT NULL, backup_type TEXT, trigger TEXT NOT NULL,
                     slot_ms INTEGER, start_ms INTEGER NOT NULL, end_ms INTEGER,
                     status TEXT NOT NULL, files INTEGER, bytes_read INTEGER,
                     bytes_added INTEGER, snapshot_id TEXT, error TEXT, log TEXT, copies TEXT,
                     pid INTEGER NOT NULL);
                     PRAGMA user_version = 1;",
                )
                .unwrap();
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || History::open(&path).map(|_| ()))
                })
                .collect();
            for o in openers {
                o.join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
    }

    #[test]
    fn a_version_1_history_gains_the_report_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL,
                 kind TEXT NOT NULL, backup_type TEXT, trigger TEXT NOT NULL, slot_ms INTEGER,
                 start_ms INTEGER NOT NULL, end_ms INTEGER, status TEXT NOT NULL,
                 files INTEGER, bytes_read INTEGER, bytes_added INTEGER, snapshot_id TEXT,
                 error TEXT, log TEXT, copies TEXT, pid INTEGER NOT NULL);
                 INSERT INTO runs (job, kind, trigger, start_ms, status, pid)
                 VALUES ('docs', 'backup', 'manual', 1, 'success', 1);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let h = History::open(&path).unwrap();
        let runs = h.runs(None, 0).unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].report.is_none());
        // A run left "running" by a process whose pid now belongs to another one (pid 1,
        // which started at another time) is abandoned; one of the live process is not.
        let init_start = arca_storage::process::process_start(1).unwrap() as i64;
        let c = Connection::open(&path).unwrap();
        for start in [init_start + 1, init_start] {
            c.execute(
                "INSERT INTO runs (job, kind, trigger, start_ms, status, pid, pid_start)
                 VALUES ('docs', 'backup', 'manual', 2, 'running', 1, ?1)",
                params![start],
            )
            .unwrap();
        }
        drop(c);
        assert_eq!(h.close_abandoned().unwrap(), 1);
        let statuses: Vec<RunStatus> = h.runs(None, 0).unwrap().iter().map(|r| r.status).collect();
        assert!(statuses.contains(&RunStatus::Abandoned), "{statuses:?}");
        assert!(statuses.contains(&RunStatus::Running), "{statuses:?}");
        assert_eq!(h.state("k").unwrap(), None);
        h.set_state("k", "1").unwrap();
        h.set_state("k", "2").unwrap();
        assert_eq!(h.state("k").unwrap().as_deref(), Some("2"));
    }
}
