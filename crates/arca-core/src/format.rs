//! On-disk types of the repository format, version 1 (see docs/FORMAT.md).
//!
//! Every type that is stored carries or sits under a version field so later formats can be
//! read. Binary encodings (trees, index files, pack headers) are postcard or fixed layouts;
//! the small objects people may want to read (config, key files, snapshots, locks) are JSON.

use serde::{Deserialize, Serialize};

use crate::id::Id;

/// The repository format version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Version byte in front of encoded trees, index files and pack headers.
pub const BINARY_VERSION: u8 = 1;

/// Content-defined chunking parameters (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min_size: 256 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
        }
    }
}

/// The plaintext `config` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    /// Random repository id; key files and the encrypted part of the config name it.
    pub id: Id,
    pub created: jiff::Timestamp,
    pub chunker: ChunkerParams,
    /// zstd level for blobs; 0 stores blobs uncompressed.
    pub compression_level: i32,
    /// Target size of data packs in bytes.
    pub pack_size: u32,
    /// Whether the repository refuses deletion (append-only); enforced by clients.
    #[serde(default)]
    pub append_only: bool,
}

/// What a key file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// The master key wrapped with a key derived from a password (Argon2id).
    Password,
    /// Reserved: master secrets for write-only clients wrapped to a public key.
    PublicKey,
}

/// Argon2id parameters of a password key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// 32 random bytes, hex.
    pub salt: String,
}

/// A `keys/ID` object (plaintext JSON; the secret part is `wrapped`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub kind: KeyKind,
    /// The repository this key belongs to.
    pub repository: Id,
    pub created: jiff::Timestamp,
    pub host: String,
    pub username: String,
    pub kdf: KdfParams,
    /// nonce || ciphertext || tag of the master key JSON, hex.
    pub wrapped: String,
}

/// Kind of a blob in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Data,
    Tree,
}

impl BlobKind {
    pub fn to_byte(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }
    pub fn from_byte(b: u8) -> Option<BlobKind> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// One blob as listed in a pack header or an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    pub kind: BlobKind,
    pub id: Id,
    /// Offset of the sealed blob in its pack.
    pub offset: u32,
    /// Stored (sealed) length in bytes.
    pub length: u32,
    /// Plaintext length when the blob is compressed; 0 when stored uncompressed.
    pub raw_length: u32,
}

/// One pack as listed in an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: Id,
    pub blobs: Vec<BlobEntry>,
}

/// An `index/ID` object (encrypted; postcard after a version byte, zstd-compressed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    pub packs: Vec<IndexPack>,
    /// Index files this one replaces (written by compaction and prune).
    pub supersedes: Vec<Id>,
}

/// Backup type of a snapshot: which parent its change detection uses (docs/FORMAT.md,
/// Snapshots). Every snapshot's tree is complete, whatever its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Full,
    #[default]
    Incremental,
    Differential,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
            BackupType::Differential => "differential",
        }
    }
}

/// What a backup run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub files_removed: u64,
    pub dirs: u64,
    pub other_entries: u64,
    /// Bytes of file content read from the source.
    pub bytes_read: u64,
    /// Total size of the files in the snapshot.
    pub total_bytes: u64,
    /// Blobs and bytes (stored, after compression and encryption) new to the repository.
    pub blobs_added: u64,
    pub bytes_added: u64,
    pub bytes_added_raw: u64,
    pub start: Option<jiff::Timestamp>,
    pub end: Option<jiff::Timestamp>,
    pub duration_secs: f64,
}

/// A file or directory that could not be backed up as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryError {
    pub path: String,
    pub reason: String,
}

/// A `snapshots/ID` object (encrypted JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub time: jiff::Timestamp,
    /// The offset from UTC of the host's local time when the snapshot was taken, seconds.
    #[serde(default)]
    pub utc_offset_secs: i32,
    pub host: String,
    pub username: String,
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub tree: Id,
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    #[serde(default)]
    pub parent: Option<Id>,
    /// What was read: "files", "stdin", "command", or a database source later.
    #[serde(default = "default_source")]
    pub source: String,
    pub program_version: String,
    pub summary: SnapshotSummary,
    /// Entries that could not be read; a non-empty list marks the snapshot incomplete.
    #[serde(default)]
    pub errors: Vec<EntryError>,
    /// Set when `repair snapshots` wrote this snapshot from a damaged one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_from: Option<Id>,
    /// Set when `copy` wrote this snapshot from another repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// What the source tells about itself: for databases the server version, database,
    /// WAL positions, timeline, binlog position and the like (keys documented in FORMAT.md).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meta: std::collections::BTreeMap<String, String>,
}

fn default_source() -> String {
    "files".to_string()
}

impl Snapshot {
    pub fn is_incomplete(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// Kind of a tree node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(with = "bytes_or_str")]
    pub name: Vec<u8>,
    #[serde(with = "bytes_or_str")]
    pub value: Vec<u8>,
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name bytes (not necessarily UTF-8); never contains `/` or NUL, never `.`/`..`.
    #[serde(with = "bytes_or_str")]
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Times in nanoseconds since the epoch.
    pub mtime_ns: i64,
    pub atime_ns: i64,
    pub ctime_ns: i64,
    /// File size in bytes (files), 0 otherwise.
    pub size: u64,
    pub dev: u64,
    pub inode: u64,
    pub nlink: u64,
    /// Device number for character and block devices.
    pub rdev: u64,
    /// Symlink target bytes.
    #[serde(with = "opt_bytes_or_str")]
    pub link_target: Option<Vec<u8>>,
    pub xattrs: Vec<Xattr>,
    /// Content blob ids of a file, in order.
    pub content: Vec<Id>,
    /// Tree blob id of a directory.
    pub subtree: Option<Id>,
}

impl Node {
    /// A node of `kind` with everything else empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime_ns: 0,
            atime_ns: 0,
            ctime_ns: 0,
            size: 0,
            dev: 0,
            inode: 0,
            nlink: 1,
            rdev: 0,
            link_target: None,
            xattrs: Vec::new(),
            content: Vec::new(),
            subtree: None,
        }
    }

    /// Whether the name is safe to join to a restore target (one plain component).
    pub fn has_safe_name(&self) -> bool {
        !self.name.is_empty()
            && self.name != b"."
            && self.name != b".."
            && !self.name.contains(&b'/')
            && !self.name.contains(&0)
    }

    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A directory listing: nodes sorted by name bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// A `locks/ID` object (encrypted JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lock {
    pub version: u32,
    pub exclusive: bool,
    pub time: jiff::Timestamp,
    pub host: String,
    pub pid: u32,
    /// When the process started (Linux: clock ticks since boot, from `/proc/PID/stat`), so a
    /// lock whose pid was reused by a later process is still known stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    pub username: String,
    pub operation: String,
}

/// Serde helper: bytes as a string in JSON when they are UTF-8 (else `{"hex": ...}`), as
/// bytes in binary encodings.
pub mod bytes_or_str {
    use serde::de::Error as _;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            match std::str::from_utf8(v) {
                Ok(text) => s.serialize_str(text),
                Err(_) => {
                    let mut m = s.serialize_map(Some(1))?;
                    m.serialize_entry("hex", &hex::encode(v))?;
                    m.end()
                }
            }
        } else {
            s.serialize_bytes(v)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Human {
        Text(String),
        Hex { hex: String },
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            match Human::deserialize(d)? {
                Human::Text(t) => Ok(t.into_bytes()),
                Human::Hex { hex } => hex::decode(hex).map_err(D::Error::custom),
            }
        } else {
            Ok(serde_bytes_vec(d)?)
        }
    }

    fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// [`bytes_or_str`] for optional byte strings.
pub mod opt_bytes_or_str {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct W(#[serde(with = "super::bytes_or_str")] Vec<u8>);

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|b| W(b.clone())).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `snapshot_json` fuzz target (10-minute run of 2026-11-26): a snapshot
    /// whose `duration_secs` is a long decimal parsed to a float one step off its shortest
    /// representation, so writing it again changed its JSON (and a copied snapshot's id).
    /// serde_json's `float_roundtrip` parser makes every float read back exactly.
    #[test]
    fn snapshot_json_round_trips_floats_exactly() {
        let input = r#"{
  "version": 1,
  "time": "2023-11-14T22:13:20Z",
  "utc_offset_secs": 3600,
  "host": "host",
  "username": "user",
  "paths": [
    "/home/user"
  ],
  "tegs": [
    "daily"
  ],
  "tree": "2e232e0404040404040404040404040404040404040404040404040404040404",
  "type": "incremental",
  "pa:rent": "050505050505050505",
  "source": "flise",
  "program_version": "0.1.0",
  "summary": {
    "files_new": 3,
    "files_changed": 0,
    "files_unmodified": 0,
    "files_removed": 0,
    "dirs": 0,
    "other_entries": 0,
    "bytes_read": 100,
    "total_bytes": 0,
    "blobs_added": 0,
    "bytes_added": 0,
    "bytes_added_raw": 0,
"duration_secs": 16666666666666666666666666660.5
  },
  "parenterrors": [
    {
      "path": "/x",
      "reason": "permission denied"
    }
  ],
  "original": "0606060606060606060606060606060606060606060606060606060606060606",
  "meta": {
    "pg.timeline": "1"
  }
}"#;
        let s: Snapshot = serde_json::from_str(input).unwrap();
        let once = serde_json::to_vec(&s).unwrap();
        let again: Snapshot = serde_json::from_slice(&once).unwrap();
        assert_eq!(serde_json::to_vec(&again).unwrap(), once);
        for x in [16666666666666666666666666660.5f64, 0.1, 1e-300, 123.456e200] {
            let v: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
            assert_eq!(v.to_bits(), x.to_bits(), "{x}");
        }
    }
}
