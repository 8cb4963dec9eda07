//! Object stores (S3, OSS, Azure Blob, GCS, SFTP, ...) through Apache OpenDAL.
//!
//! [`OpendalStorage`] implements the synchronous [`Storage`] trait over an
//! [`opendal::Operator`]. It owns a small multi-threaded tokio runtime (2 worker threads) and
//! blocks the calling thread on each request, so the engines keep many requests in flight by
//! calling from several threads at once. It does not retry: wrap it in
//! [`RetryStorage`](crate::RetryStorage) (as [`open_location`](crate::open_location) does).
//!
//! - `write` sends objects up to 16 MiB in one request and larger ones as multipart uploads
//!   of 8 MiB parts; an object store makes the object visible only when complete.
//! - `read_range` is a ranged GET; a range past the end of the object is an error.
//! - `list` lists recursively (OpenDAL follows the pagination of the service).
//! - On filesystem-like services (SFTP, fs) `write` goes to a temporary file beside the
//!   object (`.tmp-*`, skipped by `list`) and renames it into place.
//! - `delete` asks for the object first, because object stores accept deleting a missing
//!   object and the trait reports that as `NotFound`.
//! - Requests time out (60 s without progress for each step of a transfer, 60 s for the
//!   others); a timeout is transient.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use ::opendal::layers::TimeoutLayer;
use ::opendal::{Buffer, ErrorKind as OdKind, Operator};
use tokio::runtime::{Handle, Runtime};

use crate::{ErrorKind, ObjectInfo, Properties, Result, Storage, StorageError};

/// Size of the parts of a multipart upload.
pub const PART_SIZE: usize = 8 << 20;
/// The largest object sent in one request. Packs fill up to a little over 8 MiB (the pack
/// size plus the last blob), so they all go up in one request each: a multipart upload
/// would cost four requests and a server-side assembly per pack.
pub const SINGLE_REQUEST_MAX: usize = 16 << 20;
/// Parts of one object uploaded at once.
const PART_CONCURRENCY: usize = 2;
/// Requests worth keeping in flight against an object store, unless configured.
pub const DEFAULT_CONNECTIONS: usize = 8;
/// Worker threads of the private runtime.
const RUNTIME_THREADS: usize = 2;
/// Timeout of a request without a body (stat, delete, a listing page).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of each step of a transfer (a part, a chunk of a read).
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Services whose writes are atomic (an object appears whole or not at all) and whose
/// namespace is flat, so `create` only checks the bucket instead of creating a directory.
const OBJECT_STORES: &[&str] = &[
    "s3", "oss", "azblob", "gcs", "cos", "obs", "b2", "swift", "upyun", "tos",
];

/// The bucket or container a storage lives in, for messages.
#[derive(Debug, Clone)]
pub struct Container {
    /// "bucket" or "container".
    pub noun: &'static str,
    pub name: String,
    /// Where the service answers, e.g. `http://127.0.0.1:9000` or `AWS S3 (us-east-1)`.
    pub endpoint: String,
}

/// A storage over an OpenDAL operator, with a private tokio runtime.
pub struct OpendalStorage {
    op: Operator,
    /// Taken in `drop` to shut down without blocking (dropping a runtime blocks, which panics
    /// inside another runtime).
    runtime: Option<Runtime>,
    handle: Handle,
    location: String,
    connections: usize,
    container: Option<Container>,
    credentials: String,
    object_store: bool,
    /// Never use multipart uploads (the service needs Content-MD5, which OpenDAL cannot send
    /// on parts).
    single_request_writes: bool,
    /// The same service sending Content-MD5 with every upload (S3 without a chosen
    /// checksum): used from the first upload the bucket refuses for want of it (Object Lock
    /// retention), with single-request writes.
    md5_fallback: Option<Operator>,
    use_md5: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for OpendalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpendalStorage")
            .field("location", &self.location)
            .field("scheme", &self.op.info().scheme())
            .field("connections", &self.connections)
            .finish()
    }
}

impl OpendalStorage {
    /// Wraps `op` (a timeout layer is added); `location` names it in messages.
    pub fn new(op: Operator, location: impl Into<String>) -> Result<Self> {
        let location = location.into();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("arca-storage-io")
            .enable_all()
            .build()
            .map_err(|e| {
                StorageError::new(
                    ErrorKind::Other,
                    "open",
                    &location,
                    format!("cannot start the I/O runtime: {e}"),
                )
            })?;
        let handle = runtime.handle().clone();
        let scheme = op.info().scheme();
        let object_store = OBJECT_STORES.contains(&scheme);
        let op = op.layer(
            TimeoutLayer::new()
                .with_timeout(REQUEST_TIMEOUT)
                .with_io_timeout(IO_TIMEOUT),
        );
        Ok(OpendalStorage {
            op,
            runtime: Some(runtime),
            handle,
            location,
            connections: DEFAULT_CONNECTIONS,
            container: None,
            credentials: "the service's default credential sources".to_string(),
            object_store,
            single_request_writes: false,
            md5_fallback: None,
            use_md5: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sets the operator that sends Content-MD5, for buckets that turn out to need it.
    pub fn with_md5_fallback(mut self, op: Option<Operator>) -> Self {
        self.md5_fallback = op.map(|o| {
            o.layer(
                TimeoutLayer::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_io_timeout(IO_TIMEOUT),
            )
        });
        self
    }

    /// Writes `data` to `name` through `op` (in one request when `single_request`).
    fn write_with(
        &self,
        op: &Operator,
        single_request: bool,
        name: &str,
        data: &[u8],
    ) -> Result<()> {
        let op = op.clone();
        let m = self.mapper();
        let path = name.to_string();
        let buf = Buffer::from(data.to_vec());
        let cap = op.info().capability();
        let multipart = data.len() > SINGLE_REQUEST_MAX && cap.write_can_multi && !single_request;
        // Filesystem-like services (SFTP, fs) write in place: write a temporary file beside
        // the object and rename it into place, so that readers never see half an object.
        let temp = (!self.object_store && cap.rename).then(|| temp_path(name));
        self.block("write", name, async move {
            let target = temp.as_deref().unwrap_or(&path);
            let w = op.write_with(target, buf);
            let w = if multipart {
                w.chunk(PART_SIZE).concurrent(PART_CONCURRENCY)
            } else {
                w
            };
            let written = w.await.map(|_| ());
            let done = match (&temp, written) {
                (Some(tmp), Ok(())) => op.rename(tmp, &path).await,
                (_, r) => r,
            };
            if let (Some(tmp), Err(_)) = (&temp, &done) {
                let _ = op.delete(tmp).await;
            }
            done.map_err(|e| m.map("write", &path, &e))
        })
    }

    /// Sets how many requests are worth keeping in flight (`properties().connections`).
    pub fn with_connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// Sends every object in one request, however large (no multipart).
    pub fn with_single_request_writes(mut self, single: bool) -> Self {
        self.single_request_writes = single;
        self
    }

    /// Names the bucket or container, so that a missing one is reported as such.
    pub fn with_container(mut self, container: Container) -> Self {
        self.container = Some(container);
        self
    }

    /// Says where credentials came from, for messages when they are refused.
    pub fn with_credentials_source(mut self, source: impl Into<String>) -> Self {
        self.credentials = source.into();
        self
    }

    pub fn operator(&self) -> &Operator {
        &self.op
    }

    /// Runs `fut` on the private runtime and waits for it. From a plain thread this is
    /// `Handle::block_on` (many threads may do so at once); from inside an async context
    /// (where blocking on a runtime panics) the future is spawned and its answer awaited
    /// through a channel.
    fn block<T, F>(&self, op: &'static str, path: &str, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        if Handle::try_current().is_err() {
            return self.handle.block_on(fut);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StorageError::new(
                ErrorKind::Other,
                op,
                path,
                "the storage request ended without an answer (panicked or shut down)",
            ))
        })
    }

    fn mapper(&self) -> ErrorMapper {
        ErrorMapper {
            location: self.location.clone(),
            container: self.container.clone(),
            credentials: self.credentials.clone(),
        }
    }
}

impl Drop for OpendalStorage {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Converts OpenDAL errors into storage errors; cloned into each request's future.
#[derive(Clone)]
struct ErrorMapper {
    location: String,
    container: Option<Container>,
    credentials: String,
}

impl ErrorMapper {
    fn map(&self, op: &'static str, path: &str, e: &::opendal::Error) -> StorageError {
        let status = http_status(e);
        let detail = describe(e, status);
        if let Some(c) = &self.container
            && container_missing(e)
        {
            return StorageError::new(
                ErrorKind::NotFound,
                op,
                path,
                format!(
                    "{} {} does not exist at {} ({detail})",
                    c.noun, c.name, c.endpoint
                ),
            );
        }
        let kind = match e.kind() {
            OdKind::NotFound => ErrorKind::NotFound,
            OdKind::AlreadyExists => ErrorKind::AlreadyExists,
            OdKind::PermissionDenied => ErrorKind::PermissionDenied,
            OdKind::RateLimited => ErrorKind::Transient,
            _ if matches!(status, Some(401 | 403)) => ErrorKind::PermissionDenied,
            _ if e.is_temporary() => ErrorKind::Transient,
            _ if matches!(status, Some(408 | 429 | 500..=599)) => ErrorKind::Transient,
            // SSH refusing the key ("Permission denied (publickey)").
            _ if detail.contains("Permission denied") => ErrorKind::PermissionDenied,
            _ => ErrorKind::Other,
        };
        let message = match kind {
            ErrorKind::PermissionDenied => format!(
                "access denied by {} ({detail}); credentials came from {}",
                self.location, self.credentials
            ),
            ErrorKind::Transient => match &self.container {
                Some(c) => format!("{detail} (at {})", c.endpoint),
                None => format!("{detail} (at {})", self.location),
            },
            _ => detail,
        };
        StorageError::new(kind, op, path, message)
    }
}

/// Whether `e` says the bucket or container itself is missing.
fn container_missing(e: &::opendal::Error) -> bool {
    let m = e.message();
    m.contains("NoSuchBucket")
        || m.contains("ContainerNotFound")
        || m.contains("The specified bucket does not exist")
}

/// The HTTP status of the response behind `e`, if any. OpenDAL keeps it only in the
/// formatted context (`response: Parts { status: 403, ... }`).
fn http_status(e: &::opendal::Error) -> Option<u16> {
    let text = e.to_string();
    let at = text.find("Parts { status: ")? + "Parts { status: ".len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// A one-line description of `e`: its message, the HTTP status and the chain of causes,
/// without the response headers OpenDAL adds to its own display.
fn describe(e: &::opendal::Error, status: Option<u16>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let msg = e.message().trim();
    parts.push(if msg.is_empty() {
        e.kind().to_string()
    } else if let Some(short) = service_error(msg) {
        short
    } else {
        msg.to_string()
    });
    if let Some(s) = status {
        parts.push(format!("HTTP {s}"));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Shortens the debug form of a service's error document (`S3Error { code: "NoSuchKey",
/// message: "...", ... }`) to `NoSuchKey: ...`.
fn service_error(msg: &str) -> Option<String> {
    let field = |name: &str| -> Option<String> {
        let key = format!("{name}: \"");
        let start = msg.find(&key)? + key.len();
        let end = msg[start..].find('"')? + start;
        Some(msg[start..end].to_string()).filter(|v| !v.is_empty())
    };
    if !msg.contains("Error {") {
        return None;
    }
    let code = field("code")?;
    Some(match field("message") {
        Some(m) => format!("{code}: {m}"),
        None => code,
    })
}

/// Prefix of temporary objects of filesystem-like services; listing skips them.
const TEMP_PREFIX: &str = ".tmp-";

/// A temporary name beside `name` (same directory, so the rename stays within it).
fn temp_path(name: &str) -> String {
    let mut b = [0u8; 8];
    // A failure of the OS random source leaves zeros; the pid still separates processes.
    let _ = getrandom::fill(&mut b);
    let file = format!(
        "{TEMP_PREFIX}{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(b)
    );
    match name.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{file}"),
        None => file,
    }
}

fn is_temp(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|f| f.starts_with(TEMP_PREFIX))
}

fn range_error(name: &str, offset: u64, length: u64, size: u64) -> StorageError {
    StorageError::new(
        ErrorKind::Other,
        "read",
        name,
        format!("range {offset}+{length} is past the end of the object ({size} bytes)"),
    )
}

/// Whether an upload was refused because the bucket wants Content-MD5 (S3 Object Lock
/// retention: "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object
/// requests with Object Lock parameters"; moto: MissingUploadObjectWithObjectLockHeaders).
fn needs_content_md5(e: &crate::StorageError) -> bool {
    let m = e.message.to_ascii_lowercase();
    (m.contains("object lock") || m.contains("objectlock")) && m.contains("content-md5")
}

impl Storage for OpendalStorage {
    fn properties(&self) -> Properties {
        Properties {
            connections: self.connections,
            location: self.location.clone(),
            local: false,
            append_only: false,
        }
    }

    fn create(&self) -> Result<()> {
        let op = self.op.clone();
        let m = self.mapper();
        let make_dir = !self.object_store && op.info().capability().create_dir;
        let root = self.location.clone();
        self.block("create", &self.location, async move {
            if make_dir {
                op.create_dir("/")
                    .await
                    .map_err(|e| m.map("create", &root, &e))?;
            }
            // One listing request for one entry: fails clearly when the bucket is missing
            // or the credentials are refused; an empty or missing root is fine.
            match op.check().await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == OdKind::NotFound && !container_missing(&e) => Ok(()),
                Err(e) => Err(m.map("create", &root, &e)),
            }
        })
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        crate::check_name("read", name)?;
        let op = self.op.clone();
        let m = self.mapper();
        let path = name.to_string();
        self.block("read", name, async move {
            op.read(&path)
                .await
                .map(|b| b.to_vec())
                .map_err(|e| m.map("read", &path, &e))
        })
    }

    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        crate::check_name("read", name)?;
        let Some(end) = offset.checked_add(length) else {
            return Err(range_error(name, offset, length, u64::MAX));
        };
        if length == 0 {
            // An empty range cannot be asked for in HTTP; check the object instead.
            let size = self.stat(name)?.size;
            if offset > size {
                return Err(range_error(name, offset, length, size));
            }
            buf.clear();
            return Ok(());
        }
        let op = self.op.clone();
        let m = self.mapper();
        let path = name.to_string();
        let data = self.block("read", name, async move {
            match op.read_with(&path).range(offset..end).await {
                Ok(b) => Ok(b),
                Err(e) if e.kind() == OdKind::RangeNotSatisfied => {
                    let size = op.stat(&path).await.map(|m| m.content_length()).ok();
                    Err(range_error(&path, offset, length, size.unwrap_or(0)))
                }
                Err(e) => Err(m.map("read", &path, &e)),
            }
        })?;
        if data.len() as u64 != length {
            return Err(range_error(
                name,
                offset,
                length,
                offset + data.len() as u64,
            ));
        }
        // The response arrives in many chunks; they are copied into the caller's buffer.
        buf.clear();
        buf.reserve(data.len());
        for chunk in data {
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        crate::check_name("write", name)?;
        let md5 = self.use_md5.load(std::sync::atomic::Ordering::Relaxed);
        match (&self.md5_fallback, md5) {
            (Some(fallback), true) => self.write_with(fallback, true, name, data),
            (Some(fallback), false) => match self.write_with(&self.op, false, name, data) {
                Err(e) if needs_content_md5(&e) => {
                    self.use_md5
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    self.write_with(fallback, true, name, data)
                }
                other => other,
            },
            (None, _) => self.write_with(&self.op, self.single_request_writes, name, data),
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        crate::check_name("delete", name)?;
        let op = self.op.clone();
        let m = self.mapper();
        let path = name.to_string();
        self.block("delete", name, async move {
            // Object stores accept deleting a missing object; the trait reports it.
            let meta = op
                .stat(&path)
                .await
                .map_err(|e| m.map("delete", &path, &e))?;
            if meta.is_dir() {
                return Err(StorageError::new(
                    ErrorKind::NotFound,
                    "delete",
                    &path,
                    "no such object (a directory)",
                ));
            }
            op.delete(&path)
                .await
                .map_err(|e| m.map("delete", &path, &e))
        })
    }

    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        crate::check_name("stat", name)?;
        let op = self.op.clone();
        let m = self.mapper();
        let path = name.to_string();
        self.block("stat", name, async move {
            let meta = op.stat(&path).await.map_err(|e| m.map("stat", &path, &e))?;
            if meta.is_dir() {
                return Err(StorageError::new(
                    ErrorKind::NotFound,
                    "stat",
                    &path,
                    "no such object (a directory)",
                ));
            }
            Ok(ObjectInfo {
                name: path,
                size: meta.content_length(),
            })
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let trimmed = prefix.trim_end_matches('/');
        let dir = if trimmed.is_empty() {
            "/".to_string()
        } else {
            crate::check_name("list", trimmed)?;
            format!("{trimmed}/")
        };
        let op = self.op.clone();
        let m = self.mapper();
        let shown = prefix.to_string();
        self.block("list", prefix, async move {
            let entries = match op.list_with(&dir).recursive(true).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == OdKind::NotFound && !container_missing(&e) => Vec::new(),
                Err(e) => return Err(m.map("list", &shown, &e)),
            };
            let mut out: Vec<ObjectInfo> = entries
                .into_iter()
                .filter(|e| {
                    !e.path().ends_with('/') && !e.metadata().is_dir() && !is_temp(e.path())
                })
                .map(|e| {
                    let (path, meta) = e.into_parts();
                    ObjectInfo {
                        name: path.trim_start_matches('/').to_string(),
                        size: meta.content_length(),
                    }
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OpenOptions, open_location_with};

    fn memory() -> OpendalStorage {
        ::opendal::install_default();
        let op = Operator::via_iter("memory", Vec::new()).unwrap();
        OpendalStorage::new(op, "opendal:memory").unwrap()
    }

    #[test]
    fn filesystem_service_writes_through_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let location = format!("opendal:fs?root={}", root.display());
        let s = open_location_with(&location, &OpenOptions::default()).unwrap();
        crate::suite::run_all(&s);
        s.write("data/ab/x", b"content").unwrap();
        std::fs::write(root.join("data/ab/.tmp-left-over"), b"half").unwrap();
        let names: Vec<_> = s
            .list("data/")
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["data/ab/x"]);
        let on_disk: Vec<_> = std::fs::read_dir(root.join("data/ab"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(on_disk.len(), 2, "{on_disk:?}");
    }

    #[test]
    fn works_from_inside_an_async_runtime() {
        let s = memory();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            s.create().unwrap();
            s.write("keys/a", b"key").unwrap();
            assert_eq!(s.read("keys/a").unwrap(), b"key");
            assert_eq!(s.list("keys").unwrap().len(), 1);
            // Dropping the storage (and its runtime) inside a runtime does not panic.
            drop(s);
        });
    }

    #[test]
    fn many_threads_share_the_runtime() {
        let s = memory();
        s.create().unwrap();
        std::thread::scope(|scope| {
            for t in 0..16 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..50 {
                        let name = format!("locks/{t}/{i}");
                        s.write(&name, name.as_bytes()).unwrap();
                        assert_eq!(s.read_range(&name, 6, 2).unwrap(), &name.as_bytes()[6..8]);
                    }
                });
            }
        });
        assert_eq!(s.list("locks/").unwrap().len(), 800);
        assert_eq!(s.properties().connections, DEFAULT_CONNECTIONS);
        assert_eq!(s.with_connections(3).properties().connections, 3);
    }

    #[test]
    fn error_details() {
        let e = ::opendal::Error::new(
            OdKind::Unexpected,
            "S3Error { code: \"SlowDown\", message: \"Please reduce\", resource: \"\" }",
        )
        .with_context(
            "response",
            "Parts { status: 503, version: HTTP/1.1, headers: {} }",
        )
        .set_temporary();
        assert_eq!(http_status(&e), Some(503));
        assert_eq!(describe(&e, Some(503)), "SlowDown: Please reduce: HTTP 503");
        let m = ErrorMapper {
            location: "s3:http://h/b".into(),
            container: Some(Container {
                noun: "bucket",
                name: "b".into(),
                endpoint: "http://h".into(),
            }),
            credentials: "the environment".into(),
        };
        let se = m.map("read", "config", &e);
        assert_eq!(se.kind, ErrorKind::Transient);
        assert_eq!(
            se.message,
            "SlowDown: Please reduce: HTTP 503 (at http://h)"
        );
        let e = ::opendal::Error::new(OdKind::Unexpected, "x")
            .with_context("response", "Parts { status: 401, version: HTTP/1.1 }");
        let se = m.map("read", "config", &e);
        assert_eq!(se.kind, ErrorKind::PermissionDenied);
        assert!(se.message.contains("credentials came from the environment"));
        let e = ::opendal::Error::new(OdKind::ConfigInvalid, "S3Error { code: \"NoSuchBucket\" }");
        let se = m.map("write", "config", &e);
        assert_eq!(se.kind, ErrorKind::NotFound);
        assert!(
            se.message
                .starts_with("bucket b does not exist at http://h")
        );
        assert_eq!(
            m.map("stat", "x", &::opendal::Error::new(OdKind::NotFound, ""))
                .kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            m.map(
                "stat",
                "x",
                &::opendal::Error::new(OdKind::Unsupported, "no")
            )
            .kind,
            ErrorKind::Other
        );
        assert!(is_temp("data/ab/.tmp-1-2") && is_temp(".tmp-x") && !is_temp("data/.tmpx/a"));
        assert!(temp_path("data/ab/cd").starts_with("data/ab/.tmp-"));
    }
}
