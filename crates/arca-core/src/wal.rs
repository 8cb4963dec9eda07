//! The archived-file catalog: files archived one by one outside snapshots (PostgreSQL WAL
//! segments, history, backup and partial files), one small sealed record per file.
//!
//! A record lives at `wal/NAME` (NAME is the archived file's name), sealed with
//! `"wal/NAME"` as associated data so a record cannot be passed off under another name.
//! It lists the data blobs holding the file's content (stored in packs and indexed like
//! any blob) and a keyed hash of the whole content. Records are roots for prune and
//! check, like snapshot trees. What the names mean (segments, timelines) is the
//! database layer's business, not this module's.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::FORMAT_VERSION;
use crate::id::Id;
use crate::repo::Repository;

/// Object directory of the catalog.
pub const WAL_DIR: &str = "wal";

/// One archived file (`wal/NAME`, sealed JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRecord {
    pub version: u32,
    /// The archived file's name (also the object name's last component).
    pub name: String,
    /// Content length in bytes.
    pub size: u64,
    /// `BLAKE3-keyed(id key, whole content)`, like a blob id of the whole file.
    pub hash: Id,
    /// Data blobs of the content, in order.
    pub blobs: Vec<Id>,
    /// When the file was archived.
    pub time: jiff::Timestamp,
    pub host: String,
    /// What the source tells about the file (documented in FORMAT.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

impl WalRecord {
    pub fn new(name: &str, size: u64, hash: Id, blobs: Vec<Id>) -> WalRecord {
        WalRecord {
            version: FORMAT_VERSION,
            name: name.to_string(),
            size,
            hash,
            blobs,
            time: jiff::Timestamp::now(),
            host: crate::repo::hostname(),
            meta: BTreeMap::new(),
        }
    }
}

/// Whether `name` may name a catalog entry: 1 to 128 of `[0-9A-Za-z._-]`, not `.`/`..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The object name of a record.
pub fn object_name(name: &str) -> String {
    format!("{WAL_DIR}/{name}")
}

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid archived file name {name:?} (expected a WAL file name)"
        )))
    }
}

/// Names of every record, sorted.
pub fn list(repo: &Repository) -> Result<Vec<String>> {
    let mut names: Vec<String> = repo
        .storage()
        .list(&format!("{WAL_DIR}/"))?
        .into_iter()
        .filter_map(|o| {
            let n = o.name.strip_prefix(&format!("{WAL_DIR}/"))?.to_string();
            valid_name(&n).then_some(n)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Writes a record (replacing one of the same name: callers check first).
pub fn save(repo: &Repository, record: &WalRecord) -> Result<()> {
    check_name(&record.name)?;
    let object = object_name(&record.name);
    let json = serde_json::to_vec(record).map_err(|e| Error::Invalid(e.to_string()))?;
    let sealed = repo.crypto().seal(&json, object.as_bytes());
    repo.storage().write(&object, &sealed)?;
    Ok(())
}

/// Reads a record; `None` when there is none of that name.
pub fn load(repo: &Repository, name: &str) -> Result<Option<WalRecord>> {
    check_name(name)?;
    let object = object_name(name);
    let sealed = match repo.storage().read(&object) {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let plain = repo
        .crypto()
        .open(&sealed, object.as_bytes())
        .map_err(|e| Error::corrupt(&object, e))?;
    let record: WalRecord =
        serde_json::from_slice(&plain).map_err(|e| Error::corrupt(&object, e))?;
    if record.name != name {
        return Err(Error::corrupt(
            &object,
            format!("the record names {:?}", record.name),
        ));
    }
    Ok(Some(record))
}

/// Removes a record (its blobs are freed by the next prune).
pub fn delete(repo: &Repository, name: &str) -> Result<()> {
    check_name(name)?;
    match repo.storage().delete(&object_name(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Every blob a record references (roots for prune). Fails when a record cannot be read,
/// so prune never frees what a damaged record might need.
pub fn used_blobs(repo: &Repository) -> Result<HashSet<Id>> {
    let names = list(repo)?;
    let records = crate::parallel::map(names, 8, |n| {
        load(repo, &n).map(|r| r.map(|r| r.blobs).unwrap_or_default())
    });
    let mut used = HashSet::new();
    for r in records {
        used.extend(r?);
    }
    Ok(used)
}
