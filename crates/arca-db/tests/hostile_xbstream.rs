//! `mysql restore-physical` of a hostile snapshot: a physical backup stream whose chunks
//! name `../escaped` and an absolute path. The server's own extractor (`mbstream` of MariaDB
//! 10.11) writes such chunks where they point; arca refuses the stream at the first of them.
//!
//! The snapshot is written through arca-core's stream backup with the source a physical
//! backup records, as a host sharing the repository could write it.

use std::path::Path;
use std::sync::Arc;

use arca_core::Repository;
use arca_core::backup::{BackupOptions, backup_stream};
use arca_core::progress::NoProgress;
use arca_core::repo::InitOptions;
use arca_db::mysql::{self, Error};
use arca_storage::LocalStorage;

/// One xbstream chunk: magic, flags, type, path, and for payloads length, offset, CRC.
fn chunk(kind: u8, path: &str, payload: &[u8]) -> Vec<u8> {
    let mut c = b"XBSTCK01".to_vec();
    c.push(0);
    c.push(kind);
    c.extend_from_slice(&(path.len() as u32).to_le_bytes());
    c.extend_from_slice(path.as_bytes());
    if kind == b'P' {
        c.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        c.extend_from_slice(&0u64.to_le_bytes());
        c.extend_from_slice(&crc32(payload).to_le_bytes());
        c.extend_from_slice(payload);
    }
    c
}

/// CRC-32 (IEEE), as the extractor checks it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn file(path: &str, content: &[u8]) -> Vec<u8> {
    let mut c = chunk(b'P', path, content);
    c.extend(chunk(b'E', path, b""));
    c
}

fn extractor() -> Option<std::path::PathBuf> {
    let found = ["mbstream", "xbstream"].iter().find_map(|name| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var("CI").as_deref() == Ok("true") {
        panic!("mbstream is missing (apt-get install mariadb-backup); CI runs this test");
    }
    found
}

#[test]
fn a_hostile_physical_backup_cannot_write_outside_the_data_directory() {
    let Some(mbstream) = extractor() else {
        eprintln!("skipped: no mbstream or xbstream in PATH");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let absolute = tmp.path().join("absolute-victim");
    let mut stream = file("ibdata1", b"pages");
    stream.extend(file("../escaped", b"written outside"));
    stream.extend(file(absolute.to_str().unwrap(), b"written anywhere"));

    // What the extractor alone does with it depends on its version: MariaDB 10.11's
    // mbstream writes both chunks where they point, others refuse. arca must refuse either way.
    let alone = tmp.path().join("alone/datadir");
    std::fs::create_dir_all(&alone).unwrap();
    let mut child = std::process::Command::new(&mbstream)
        .arg("-x")
        .arg("-C")
        .arg(&alone)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    // A refusing extractor may close its input early.
    let _ = child.stdin.take().unwrap().write_all(&stream);
    child.wait().unwrap();
    let escaped_alone = tmp.path().join("alone/escaped").exists() || absolute.exists();
    eprintln!(
        "{} on its own {} the hostile names",
        mbstream.display(),
        if escaped_alone { "follows" } else { "refuses" }
    );
    let _ = std::fs::remove_file(&absolute);
    let _ = std::fs::remove_file(tmp.path().join("alone/escaped"));

    let storage = Arc::new(LocalStorage::new(tmp.path().join("repo")));
    let opts = InitOptions {
        kdf: Some(arca_core::crypto::test_kdf_params()),
        ..InitOptions::default()
    };
    let repo = Arc::new(Repository::init(storage, b"pw", opts).unwrap());
    let index = Arc::new(repo.load_index().unwrap());
    let backed = backup_stream(
        &repo,
        index,
        stream.as_slice(),
        "mariadb-backup.xbstream",
        mysql::SOURCE_BACKUP,
        &BackupOptions::default(),
        &NoProgress,
        || Ok(Default::default()),
    )
    .unwrap();
    let id = backed.snapshot_id.unwrap();
    let snapshot = repo.load_snapshot(&id).unwrap();
    let index = repo.load_index().unwrap();

    let datadir = tmp.path().join("restore/datadir");
    let e = mysql::restore_physical(&repo, &index, &id, &snapshot, &datadir, None, &NoProgress)
        .unwrap_err();
    assert!(matches!(e, Error::HostileStream { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("\"../escaped\"") && text.contains(&id.to_string()),
        "{text}"
    );
    assert!(!tmp.path().join("restore/escaped").exists());
    assert!(!absolute.exists());
}
