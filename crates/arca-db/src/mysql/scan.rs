//! Reading what the tools tell about the backup: binlog coordinates and GTIDs from a dump's
//! comment lines (head and tail of the stream) and from mariadb-backup's log.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

/// Where the binary log stood at the backup's consistent point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinlogCoordinates {
    pub file: Option<String>,
    pub position: Option<u64>,
    /// MariaDB GTID position (`0-1-42`) or MySQL executed GTID set.
    pub gtid: Option<String>,
}

impl BinlogCoordinates {
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.position.is_none() && self.gtid.is_none()
    }

    /// Adds `binlog_file`, `binlog_position` and `gtid` (those known) to snapshot metadata.
    pub fn add_to(&self, meta: &mut BTreeMap<String, String>) {
        if let Some(f) = &self.file {
            meta.insert("binlog_file".into(), f.clone());
        }
        if let Some(p) = self.position {
            meta.insert("binlog_position".into(), p.to_string());
        }
        if let Some(g) = &self.gtid {
            meta.insert("gtid".into(), g.clone());
        }
    }

    fn merge(&mut self, other: BinlogCoordinates) {
        if other.file.is_some() {
            self.file = other.file;
        }
        if other.position.is_some() {
            self.position = other.position;
        }
        if other.gtid.is_some() {
            self.gtid = other.gtid;
        }
    }
}

/// The text between `start` (after `key`) and the next `'`.
fn quoted_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    let rest = &line[at..];
    let end = rest.find('\'')?;
    Some(&rest[..end])
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits: String = line[at..]
        .chars()
        .skip_while(|c| *c == '\'' || *c == ' ')
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Reads binlog coordinates from one line of a dump made with `--master-data`/
/// `--source-data` (commented or not): `CHANGE MASTER TO MASTER_LOG_FILE='f',
/// MASTER_LOG_POS=n`, `CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE=...`, MariaDB's
/// `SET GLOBAL gtid_slave_pos='...'` and MySQL's `SET @@GLOBAL.GTID_PURGED=... '...'`.
pub fn parse_dump_comment_line(line: &str, coordinates: &mut BinlogCoordinates) {
    let statement = line.trim_start_matches("-- ").trim();
    let upper = statement.to_ascii_uppercase();
    if upper.starts_with("CHANGE MASTER TO") || upper.starts_with("CHANGE REPLICATION SOURCE TO") {
        let mut c = BinlogCoordinates::default();
        for key in ["MASTER_LOG_FILE='", "SOURCE_LOG_FILE='"] {
            if let Some(f) = quoted_after(statement, key) {
                c.file = Some(f.to_string());
            }
        }
        for key in ["MASTER_LOG_POS=", "SOURCE_LOG_POS="] {
            if let Some(p) = number_after(statement, key) {
                c.position = Some(p);
            }
        }
        coordinates.merge(c);
    } else if upper.starts_with("SET GLOBAL GTID_SLAVE_POS=") {
        if let Some(g) = quoted_after(statement, "='") {
            coordinates.gtid = Some(g.to_string());
        }
    } else if upper.starts_with("SET @@GLOBAL.GTID_PURGED=") {
        // SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'uuid:1-5';
        let quoted: Vec<&str> = statement.split('\'').collect();
        if quoted.len() >= 3 {
            let g = quoted[quoted.len() - 2].trim();
            if !g.is_empty() && g != "+" {
                coordinates.gtid = Some(g.to_string());
            }
        }
    }
}

/// Reads binlog coordinates from one line of mariadb-backup/xtrabackup's log:
/// `MySQL binlog position: filename 'f', position 'n', GTID of the last change 'g'`.
pub fn parse_backup_log_line(line: &str) -> Option<BinlogCoordinates> {
    let at = line.find("binlog position:")?;
    let rest = &line[at..];
    let c = BinlogCoordinates {
        file: quoted_after(rest, "filename '").map(String::from),
        position: number_after(rest, "position '"),
        gtid: quoted_after(rest, "GTID of the last change '")
            .filter(|g| !g.is_empty())
            .map(String::from),
    };
    (!c.is_empty()).then_some(c)
}

/// Reads `xtrabackup_binlog_info` (or `mariadb_backup_binlog_info`): `file<TAB>pos[<TAB>gtid]`.
pub(crate) fn parse_binlog_info(text: &str) -> Option<BinlogCoordinates> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let mut fields = line.split('\t').map(str::trim);
    let c = BinlogCoordinates {
        file: fields.next().filter(|f| !f.is_empty()).map(String::from),
        position: fields.next().and_then(|p| p.parse().ok()),
        gtid: fields.next().filter(|g| !g.is_empty()).map(String::from),
    };
    (!c.is_empty()).then_some(c)
}

/// Bytes of a dump kept from its start (the replication header comes before any data).
const HEAD_WINDOW: usize = 1 << 20;
/// Bytes kept from its end (MariaDB writes the GTID position last).
const TAIL_WINDOW: usize = 64 << 10;

#[derive(Debug, Default)]
struct Windows {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Windows {
    fn push(&mut self, buf: &[u8]) {
        if self.head.len() < HEAD_WINDOW {
            let n = (HEAD_WINDOW - self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..n]);
        }
        if buf.len() >= TAIL_WINDOW {
            self.tail.clear();
            self.tail.extend_from_slice(&buf[buf.len() - TAIL_WINDOW..]);
        } else {
            self.tail.extend_from_slice(buf);
            if self.tail.len() > 2 * TAIL_WINDOW {
                let cut = self.tail.len() - TAIL_WINDOW;
                self.tail.drain(..cut);
            }
        }
    }

    fn coordinates(&self) -> BinlogCoordinates {
        let mut c = BinlogCoordinates::default();
        for window in [&self.head, &self.tail] {
            for line in window.split(|b| *b == b'\n') {
                if line.len() > 4096 {
                    continue;
                }
                if let Ok(s) = std::str::from_utf8(line) {
                    parse_dump_comment_line(s, &mut c);
                }
            }
        }
        c
    }
}

/// A reader that passes a dump through and remembers its head and tail.
pub(crate) struct DumpScanner<R> {
    inner: R,
    windows: Arc<Mutex<Windows>>,
}

/// The other end of a [`DumpScanner`]: reads the coordinates once the dump has ended.
#[derive(Clone)]
pub(crate) struct DumpScanResult(Arc<Mutex<Windows>>);

impl DumpScanResult {
    pub(crate) fn coordinates(&self) -> BinlogCoordinates {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .coordinates()
    }
}

impl<R: Read> DumpScanner<R> {
    pub(crate) fn new(inner: R) -> (DumpScanner<R>, DumpScanResult) {
        let windows = Arc::new(Mutex::new(Windows::default()));
        (
            DumpScanner {
                inner,
                windows: windows.clone(),
            },
            DumpScanResult(windows),
        )
    }
}

impl<R: Read> Read for DumpScanner<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(&buf[..n]);
        Ok(n)
    }
}

/// Watches a tool's error output for the binary log position mariadb-backup reports
/// there; the coordinates found so far are in the returned cell.
pub(crate) fn watch_backup_log() -> (
    arca_core::child::LineObserver,
    Arc<Mutex<BinlogCoordinates>>,
) {
    let found = Arc::new(Mutex::new(BinlogCoordinates::default()));
    let cell = found.clone();
    let observer = Box::new(move |line: &str| {
        if let Some(c) = parse_backup_log_line(line) {
            cell.lock().unwrap_or_else(PoisonError::into_inner).merge(c);
        }
    });
    (observer, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_dump_header_and_tail() {
        let dump = "-- MariaDB dump 10.19\n\
            -- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n\
            -- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000003', MASTER_LOG_POS=978;\n\
            INSERT INTO t VALUES (1,'-- CHANGE MASTER TO MASTER_LOG_FILE=\\'x\\'');\n\
            -- SET GLOBAL gtid_slave_pos='0-1-4';\n";
        let (mut r, result) = DumpScanner::new(dump.as_bytes());
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, dump.as_bytes());
        assert_eq!(
            result.coordinates(),
            BinlogCoordinates {
                file: Some("binlog.000003".into()),
                position: Some(978),
                gtid: Some("0-1-4".into()),
            }
        );
    }

    #[test]
    fn mysql8_source_data_and_gtid_purged() {
        let mut c = BinlogCoordinates::default();
        parse_dump_comment_line(
            "-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000002', SOURCE_LOG_POS=157;",
            &mut c,
        );
        parse_dump_comment_line(
            "SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5';",
            &mut c,
        );
        assert_eq!(c.file.as_deref(), Some("binlog.000002"));
        assert_eq!(c.position, Some(157));
        assert_eq!(
            c.gtid.as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")
        );
    }

    #[test]
    fn tail_window_survives_a_long_stream() {
        let mut w = Windows::default();
        w.push(b"-- CHANGE MASTER TO MASTER_LOG_FILE='b.000001', MASTER_LOG_POS=4;\n");
        let filler = vec![b'x'; 3000];
        for _ in 0..2000 {
            w.push(&filler);
            w.push(b"\n");
        }
        w.push(b"-- SET GLOBAL gtid_slave_pos='0-1-99';\n");
        assert_eq!(w.head.len(), HEAD_WINDOW);
        assert!(w.tail.len() <= 2 * TAIL_WINDOW);
        let c = w.coordinates();
        assert_eq!(c.position, Some(4));
        assert_eq!(c.gtid.as_deref(), Some("0-1-99"));
    }

    #[test]
    fn backup_log_and_info_file() {
        let c = parse_backup_log_line(
            "[00] 2026-11-25 22:00:30 MySQL binlog position: filename 'binlog.000001', position '978', GTID of the last change '0-1-4'",
        )
        .unwrap();
        assert_eq!(c.file.as_deref(), Some("binlog.000001"));
        assert_eq!(c.position, Some(978));
        assert_eq!(c.gtid.as_deref(), Some("0-1-4"));
        assert!(parse_backup_log_line("[00] Streaming ./mysql/gtid_slave_pos.ibd").is_none());
        let c = parse_binlog_info("binlog.000001\t978\t0-1-4\n").unwrap();
        assert_eq!(c.position, Some(978));
        assert_eq!(parse_binlog_info("b.000002\t10\n").unwrap().gtid, None);
    }

    #[test]
    fn the_backup_log_watcher_finds_the_position() {
        let (mut observe, found) = watch_backup_log();
        observe("[00] Streaming ./mysql/gtid_slave_pos.ibd");
        observe(
            "[00] 2026-11-25 22:00:30 MySQL binlog position: filename 'binlog.000001', \
             position '978', GTID of the last change '0-1-4'",
        );
        assert_eq!(found.lock().unwrap().position, Some(978));
    }
}
