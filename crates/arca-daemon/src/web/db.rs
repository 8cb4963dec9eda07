//! Read-only aggregate queries on the run history for the dashboard and `/metrics`: runs
//! counted by job, kind and status; the series the charts draw; the runs that ended since
//! a point (the refresher's trigger). A connection of its own (SQLite in WAL mode lets it
//! read while the daemon writes), so none of this loads run logs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, params};

use super::WebError;

pub struct HistoryReader {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

/// One finished backup run, for the charts.
#[derive(Debug, Clone)]
pub struct RunPoint {
    pub start: Timestamp,
    pub end: Timestamp,
    pub status: String,
    pub bytes_added: Option<u64>,
}

/// A run that ended (the refresher's view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: i64,
    pub job: String,
    pub end_ms: i64,
}

fn from_ms(v: i64) -> Timestamp {
    Timestamp::from_millisecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl HistoryReader {
    pub fn new(path: &Path) -> HistoryReader {
        HistoryReader {
            path: path.to_path_buf(),
            conn: Mutex::new(None),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, WebError> {
        let err = |e: rusqlite::Error| {
            WebError::Internal(format!("run history {}: {e}", self.path.display()))
        };
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let c = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(err)?;
            c.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(err)?;
            *guard = Some(c);
        }
        match guard.as_ref() {
            Some(c) => f(c).map_err(err),
            None => Err(WebError::Internal("run history not open".into())),
        }
    }

    /// `(job, kind, status, count)` over the whole history.
    pub fn counts(&self) -> Result<Vec<(String, String, String, u64)>, WebError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT job, kind, status, COUNT(*) FROM runs GROUP BY job, kind, status \
                 ORDER BY job, kind, status",
            )?;
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64))
            })?
            .collect()
        })
    }

    /// The newest `limit` finished backup runs of `job`, oldest first.
    pub fn backup_points(&self, job: &str, limit: usize) -> Result<Vec<RunPoint>, WebError> {
        let mut points = self.with(|c| {
            let mut st = c.prepare(
                "SELECT start_ms, end_ms, status, bytes_added FROM runs \
                 WHERE job = ?1 AND kind = 'backup' AND end_ms IS NOT NULL \
                 ORDER BY start_ms DESC, id DESC LIMIT ?2",
            )?;
            st.query_map(params![job, limit as i64], |r| {
                Ok(RunPoint {
                    start: from_ms(r.get(0)?),
                    end: from_ms(r.get(1)?),
                    status: r.get(2)?,
                    bytes_added: r.get::<_, Option<i64>>(3)?.map(|v| v.max(0) as u64),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        points.reverse();
        Ok(points)
    }

    /// The end of the newest finished run (milliseconds), if any.
    pub fn newest_end_ms(&self) -> Result<Option<i64>, WebError> {
        self.with(|c| c.query_row("SELECT MAX(end_ms) FROM runs", [], |r| r.get(0)))
    }

    /// Runs that ended at or after `since_ms`.
    pub fn ended_since(&self, since_ms: i64) -> Result<Vec<Ended>, WebError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, job, end_ms FROM runs WHERE end_ms IS NOT NULL AND end_ms >= ?1",
            )?;
            st.query_map(params![since_ms], |r| {
                Ok(Ended {
                    id: r.get(0)?,
                    job: r.get(1)?,
                    end_ms: r.get(2)?,
                })
            })?
            .collect()
        })
    }
}
