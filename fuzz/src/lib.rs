//! Shared helpers of the fuzz targets: a fixed key for the process, and seed inputs.
//!
//! Seeds are generated, not stored: when a target starts, [`write_seeds`] puts a few valid
//! inputs (made with the real encoders) into the corpus directory that libFuzzer is about
//! to read, so the fuzzer starts past the magic numbers, zstd frames and JSON shapes.
//! Set `ARCA_FUZZ_NO_SEEDS=1` to turn that off.

use std::path::PathBuf;
use std::sync::OnceLock;

use arca_core::crypto::{Crypto, MasterKey, default_kdf_params, test_kdf_params};
use arca_core::format::{
    BackupType, BlobEntry, BlobKind, ChunkerParams, Config, EntryError, FORMAT_VERSION, IndexFile,
    IndexPack, KeyFile, KeyKind, Node, NodeKind, Snapshot, SnapshotSummary, Tree, Xattr,
};
use arca_core::id::Id;
use arca_core::pack::{BlobCompressor, PackWriter, seal_blob};

pub use arca_core::pack::HEADER_AAD as PACK_HEADER_AAD;

/// One random master key for the whole process.
pub fn crypto() -> &'static Crypto {
    static C: OnceLock<Crypto> = OnceLock::new();
    C.get_or_init(|| Crypto::new(MasterKey::generate()))
}

/// Splits `n` bytes off the front of `data`, padding with zeros when it is shorter.
pub fn take<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut out = [0u8; N];
    let n = data.len().min(N);
    out[..n].copy_from_slice(&data[..n]);
    (out, &data[n..])
}

pub use arca_core::pack::encode_header;

fn ts(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(s).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn sample_entries() -> Vec<BlobEntry> {
    let c = crypto();
    let mut w = PackWriter::new(BlobKind::Data, 0);
    let mut comp = BlobCompressor::new(3);
    for b in [&b"hello"[..], &b"abc".repeat(100), &[0u8; 70]] {
        let id = c.blob_id(b);
        let (sealed, raw) = seal_blob(c, &mut comp, &id, b);
        w.add(id, &sealed, raw);
    }
    w.finish(c).2
}

fn sample_tree() -> Tree {
    let mut file = Node::new(b"file.txt".to_vec(), NodeKind::File);
    file.size = 1234;
    file.mode = 0o644;
    file.user = Some("user".into());
    file.content = vec![Id([1; 32]), Id([2; 32])];
    file.xattrs = vec![Xattr {
        name: b"user.comment".to_vec(),
        value: vec![0xff, 0, 1],
    }];
    let mut dir = Node::new(vec![b'd', 0xe9], NodeKind::Dir);
    dir.subtree = Some(Id([3; 32]));
    dir.mode = 0o755;
    let mut link = Node::new(b"link".to_vec(), NodeKind::Symlink);
    link.link_target = Some(b"../target".to_vec());
    Tree {
        nodes: vec![
            dir,
            file,
            link,
            Node::new(b"dev".to_vec(), NodeKind::CharDevice),
        ],
    }
}

fn sample_snapshot() -> Snapshot {
    Snapshot {
        version: FORMAT_VERSION,
        time: ts(1_700_000_000),
        utc_offset_secs: 3600,
        host: "host".into(),
        username: "user".into(),
        paths: vec!["/home/user".into()],
        tags: vec!["daily".into()],
        tree: Id([4; 32]),
        backup_type: BackupType::Incremental,
        parent: Some(Id([5; 32])),
        source: "files".into(),
        program_version: "0.1.0".into(),
        summary: SnapshotSummary {
            files_new: 3,
            bytes_read: 100,
            start: Some(ts(1_700_000_000)),
            end: Some(ts(1_700_000_010)),
            duration_secs: 10.5,
            ..Default::default()
        },
        errors: vec![EntryError {
            path: "/x".into(),
            reason: "permission denied".into(),
        }],
        repaired_from: None,
        original: Some(Id([6; 32])),
        meta: [("pg.timeline".to_string(), "1".to_string())].into(),
    }
}

fn sample_config() -> Config {
    Config {
        version: FORMAT_VERSION,
        id: Id([7; 32]),
        created: ts(1_700_000_000),
        chunker: ChunkerParams::default(),
        compression_level: 3,
        pack_size: 16 << 20,
        append_only: true,
    }
}

fn sample_key_file(kdf: arca_core::format::KdfParams) -> KeyFile {
    KeyFile {
        version: FORMAT_VERSION,
        kind: KeyKind::Password,
        repository: Id([7; 32]),
        created: ts(1_700_000_000),
        host: "host".into(),
        username: "user".into(),
        kdf,
        wrapped: "00".repeat(40),
    }
}

/// Valid inputs for `target`, in that target's input layout.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "pack_header" => {
            let entries = sample_entries();
            let area: u64 = entries.iter().map(|e| e.length as u64).sum();
            let mut s = area.to_le_bytes().to_vec();
            s.extend(encode_header(&entries));
            let mut empty = 0u64.to_le_bytes().to_vec();
            empty.extend(encode_header(&[]));
            vec![s, empty]
        }
        "blob" => {
            let c = crypto();
            let data = b"blob ".repeat(40);
            let id = c.blob_id(&data);
            let (sealed, raw) = seal_blob(c, &mut BlobCompressor::new(3), &id, &data);
            let mut s = vec![0];
            s.extend(raw.to_le_bytes());
            s.extend(id.0);
            s.extend(sealed);
            vec![s]
        }
        "blob_sealed" => {
            let data = b"some compressible text ".repeat(20);
            let z = zstd::bulk::compress(&data, 3).unwrap_or_default();
            let mut s = vec![0b11];
            s.extend((data.len() as u32).to_le_bytes());
            s.extend(&z);
            let mut plain = vec![0b10];
            plain.extend(0u32.to_le_bytes());
            plain.extend(&data);
            vec![s, plain]
        }
        "index" => {
            let f = IndexFile {
                packs: vec![IndexPack {
                    id: Id([8; 32]),
                    blobs: sample_entries(),
                }],
                supersedes: vec![Id([9; 32])],
            };
            let enc = arca_core::index::encode_index(&f);
            let body = zstd::stream::decode_all(&enc[1..]).unwrap_or_default();
            let mut a = vec![0];
            a.extend(&enc);
            let mut b = vec![1];
            b.extend(body);
            vec![a, b]
        }
        "tree" => vec![
            arca_core::repo::encode_tree(&sample_tree()),
            arca_core::repo::encode_tree(&Tree::default()),
        ],
        "snapshot_json" => vec![serde_json::to_vec_pretty(&sample_snapshot()).unwrap_or_default()],
        "config_json" => vec![serde_json::to_vec_pretty(&sample_config()).unwrap_or_default()],
        "daemon_config" => vec![
            include_bytes!("../../examples/arca.toml").to_vec(),
            b"[daemon]\n[repositories.r]\nlocation = \"/tmp/r\"\npassword_env = \"X\"\n\
              [jobs.j]\nsources = [\"/tmp/s\"]\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n\
              rpo = \"2h\"\n[jobs.j.drill]\nschedule = \"0 4 * * 0\"\n"
                .to_vec(),
        ],
        "keyfile_json" => vec![
            serde_json::to_vec_pretty(&sample_key_file(test_kdf_params())).unwrap_or_default(),
            serde_json::to_vec_pretty(&sample_key_file(default_kdf_params())).unwrap_or_default(),
        ],
        _ => Vec::new(),
    }
}

/// Writes the seeds of `target` into the corpus directory given on the command line (the
/// first argument that is an existing directory), unless `ARCA_FUZZ_NO_SEEDS` is set.
pub fn write_seeds(target: &str) {
    if std::env::var_os("ARCA_FUZZ_NO_SEEDS").is_some() {
        return;
    }
    let Some(dir) = std::env::args_os()
        .skip(1)
        .map(PathBuf::from)
        .find(|p| !p.to_string_lossy().starts_with('-') && p.is_dir())
    else {
        return;
    };
    for (i, s) in seeds(target).iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("seed-{i}")), s);
    }
}
