//! An S3 repository for the torture tests: the s3s-fs server of scripts/services/s3s.sh
//! (real SigV4 checks, objects as files on its disk), a bucket per test (removed with the
//! server's sidecar files when the test ends, also on panic), and [`S3Repo`], a [`Target`]
//! whose objects the tests can damage or count on the server's disk.

use std::path::PathBuf;
use std::process::Command;

use super::Target;
use crate::common::Env;

/// The s3s-fs server the tests use.
#[derive(Clone)]
pub struct S3s {
    /// `http://HOST:PORT`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// The server's data directory: one directory per bucket.
    pub data: PathBuf,
}

pub fn s3s() -> Option<S3s> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("ARCA_TEST_S3S"),
        var("ARCA_TEST_S3S_ACCESS_KEY"),
        var("ARCA_TEST_S3S_SECRET_KEY"),
        var("ARCA_TEST_S3S_DATA"),
    ) {
        (Some(base), Some(access_key), Some(secret_key), Some(data)) => {
            // s3:http://HOST:PORT/BUCKET
            let url = base.strip_prefix("s3:").unwrap_or(&base);
            let (scheme, rest) = url.split_once("://").expect("ARCA_TEST_S3S is s3:URL");
            let host = rest.split('/').next().unwrap_or_default();
            Some(S3s {
                endpoint: format!("{scheme}://{host}"),
                access_key,
                secret_key,
                data: PathBuf::from(data),
            })
        }
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "ARCA_TEST_S3S is not set: s3s-fs is missing (scripts/services/s3s.sh start)"
            );
            eprintln!("skipping: ARCA_TEST_S3S not set (run scripts/services/s3s.sh start)");
            None
        }
    }
}

/// Base64 (standard alphabet, no padding): how s3s-fs names the files it keeps beside a
/// bucket's objects (`.bucket-B64.object-B64.*.json` in its data directory).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A bucket of one test on the s3s-fs server (a directory of its data directory); removed
/// with the files the server keeps beside its objects when the test ends, also on panic.
pub struct Bucket {
    pub s3: S3s,
    pub name: String,
}

impl Bucket {
    pub fn new(s3: &S3s, test: &str) -> Bucket {
        let name = format!(
            "{test}-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_millisecond() % 1_000_000_000
        );
        std::fs::create_dir_all(s3.data.join(&name)).expect("create the bucket directory");
        Bucket {
            s3: s3.clone(),
            name,
        }
    }

    /// A repository under `prefix` in this bucket, with a sandbox of its own.
    pub fn repo(&self, prefix: &str) -> S3Repo {
        S3Repo {
            env: Env::new(),
            location: format!("s3:{}/{}/{prefix}", self.s3.endpoint, self.name),
            dir: self.s3.data.join(&self.name).join(prefix),
            s3: self.s3.clone(),
        }
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.s3.data.join(&self.name));
        let sidecar = format!(".bucket-{}.", base64(self.name.as_bytes()));
        if let Ok(entries) = std::fs::read_dir(&self.s3.data) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&sidecar) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Gives `c` the credentials of the s3s-fs server.
pub fn with_credentials(c: &mut Command, s3: &S3s) {
    c.env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
}

/// An S3 repository: the location, where its objects are on the server's disk, and a local
/// sandbox (sources, restore targets, the cache).
pub struct S3Repo {
    pub env: Env,
    pub location: String,
    pub dir: PathBuf,
    pub s3: S3s,
}

impl Target for S3Repo {
    fn cmd(&self) -> Command {
        let mut c = self.env.cmd();
        c.env("ARCA_REPOSITORY", &self.location)
            .env("ARCA_CACHE_DIR", self.env.path("cache"));
        with_credentials(&mut c, &self.s3);
        c
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.env.path(rel)
    }
    fn objects(&self) -> PathBuf {
        self.dir.clone()
    }
}
