//! Location strings: where a repository lives.
//!
//! | location | storage |
//! | --- | --- |
//! | `PATH`, `local:PATH` | a directory on local disk |
//! | `s3:https://HOST[:PORT]/BUCKET[/PREFIX]`, `s3:http://...` | an S3-compatible server (path-style requests) |
//! | `s3:BUCKET[/PREFIX]` | AWS S3 (endpoint from `AWS_ENDPOINT_URL` if set) |
//! | `oss:BUCKET[/PREFIX]` | Aliyun OSS; `OSS_ENDPOINT`, `OSS_ACCESS_KEY_ID`, `OSS_ACCESS_KEY_SECRET` |
//! | `azure:CONTAINER[/PREFIX]` | Azure Blob; `AZURE_STORAGE_ACCOUNT`, `AZURE_STORAGE_KEY` (or `AZURE_STORAGE_SAS_TOKEN`), optional `AZURE_STORAGE_ENDPOINT` |
//! | `gs:BUCKET[/PREFIX]` | Google Cloud Storage; `GOOGLE_APPLICATION_CREDENTIALS` or the default credentials |
//! | `sftp:[USER@]HOST:/PATH`, `sftp://[USER@]HOST[:PORT]/PATH` | SFTP through the `ssh` binary (keys from the agent or `~/.ssh`) |
//! | `opendal:SCHEME?KEY=VALUE&...` | any OpenDAL service built in, configured by its option names (values percent-decoded) |
//!
//! S3 credentials: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`)
//! from the environment, else the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE` or
//! `~/.aws/credentials`, profile `AWS_PROFILE` or `default`), else OpenDAL's default chain
//! (AWS config, SSO, web identity, ECS; EC2 metadata only for the AWS endpoint). Region:
//! `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`.
//!
//! Every storage but a local directory is wrapped in [`RetryStorage`]. Its budget and the
//! connection count come from [`OpenOptions`], which [`open_location`] reads from the
//! environment:
//!
//! - `ARCA_RETRY_ATTEMPTS`: attempts per request, the first included (default 6; 1 disables
//!   retries);
//! - `ARCA_RETRY_BASE_MS`: wait before the first retry in milliseconds, doubled for each
//!   further one up to 10 s (default 200);
//! - `ARCA_STORAGE_CONNECTIONS`: requests worth keeping in flight against an object store
//!   (default 8).
//!
//! `ARCA_S3_CHECKSUM=md5` (or `crc32c`) makes S3 uploads carry a checksum the server checks;
//! buckets with S3 Object Lock retention require `md5` (objects are then sent in one request
//! each, without multipart). Unset, the storage switches to `md5` at the first upload a
//! bucket refuses for want of it; `none` keeps it off.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ::opendal::Operator;
use ::opendal::services;

use crate::opendal::{Container, OpendalStorage};
use crate::{ErrorKind, LocalStorage, Result, RetryBudget, RetryStorage, Storage, StorageError};

/// The location forms, for messages.
pub const SUPPORTED: &str = "a local path (or local:PATH), s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX], \
     s3:BUCKET[/PREFIX], oss:BUCKET[/PREFIX], azure:CONTAINER[/PREFIX], gs:BUCKET[/PREFIX], \
     sftp:[USER@]HOST:/PATH, sftp://[USER@]HOST[:PORT]/PATH, opendal:SCHEME?KEY=VALUE&...";

/// A parsed location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 {
        /// `http[s]://HOST[:PORT]`; `None` for AWS.
        endpoint: Option<String>,
        bucket: String,
        /// Key prefix without leading or trailing `/`; empty for the bucket root.
        prefix: String,
    },
    Oss {
        bucket: String,
        prefix: String,
    },
    Azure {
        container: String,
        prefix: String,
    },
    Gcs {
        bucket: String,
        prefix: String,
    },
    Sftp {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        /// Absolute path of the repository directory on the server.
        path: String,
    },
    Opendal {
        scheme: String,
        options: Vec<(String, String)>,
    },
}

/// Settings for opening a storage that are not part of the location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Requests worth keeping in flight against an object store (default 8).
    pub connections: Option<usize>,
    /// Retries of transient failures (not used for local directories).
    pub retry: RetryBudget,
}

impl OpenOptions {
    /// Reads `ARCA_RETRY_ATTEMPTS`, `ARCA_RETRY_BASE_MS` and `ARCA_STORAGE_CONNECTIONS`.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Like [`OpenOptions::from_env`], with variables from `env`.
    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let mut o = OpenOptions::default();
        if let Some(n) = env_number(env, "ARCA_RETRY_ATTEMPTS")? {
            o.retry.attempts = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        }
        if let Some(ms) = env_number(env, "ARCA_RETRY_BASE_MS")? {
            o.retry.base = Duration::from_millis(ms);
        }
        if let Some(n) = env_number(env, "ARCA_STORAGE_CONNECTIONS")? {
            o.connections = Some(usize::try_from(n.max(1)).unwrap_or(usize::MAX));
        }
        Ok(o)
    }
}

fn env_number(env: &dyn Fn(&str) -> Option<String>, key: &str) -> Result<Option<u64>> {
    let Some(v) = env(key).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    v.trim().parse::<u64>().map(Some).map_err(|_| {
        StorageError::new(
            ErrorKind::Other,
            "open",
            key,
            format!("{key}={v} is not a whole number"),
        )
    })
}

fn invalid(location: &str, message: impl std::fmt::Display) -> StorageError {
    StorageError::new(ErrorKind::Other, "open", location, message)
}

/// Parses a location string (see the module documentation).
pub fn parse_location(location: &str) -> Result<Location> {
    let Some((scheme, rest)) = location.split_once(':') else {
        return Ok(Location::Local(PathBuf::from(location)));
    };
    let looks_like_scheme = scheme.len() > 1
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '+' || c == '.')
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic());
    if !looks_like_scheme {
        return Ok(Location::Local(PathBuf::from(location)));
    }
    match scheme {
        "local" => {
            if rest.is_empty() {
                return Err(invalid(location, "local: needs a path"));
            }
            Ok(Location::Local(PathBuf::from(rest)))
        }
        "s3" => parse_s3(location, rest),
        "oss" => {
            let (bucket, prefix) = bucket_and_prefix(location, rest, "bucket")?;
            Ok(Location::Oss { bucket, prefix })
        }
        "azure" | "azblob" => {
            let (container, prefix) = bucket_and_prefix(location, rest, "container")?;
            Ok(Location::Azure { container, prefix })
        }
        "gs" | "gcs" => {
            let (bucket, prefix) = bucket_and_prefix(location, rest, "bucket")?;
            Ok(Location::Gcs { bucket, prefix })
        }
        "sftp" => parse_sftp(location, rest),
        "opendal" => parse_generic(location, rest),
        _ => Err(invalid(
            location,
            format!(
                "unknown storage scheme '{scheme}:'; supported: {SUPPORTED} \
                 (for a local path containing ':', write local:PATH or ./PATH)"
            ),
        )),
    }
}

/// Checks and normalizes a key prefix: no empty, `.` or `..` components.
fn clean_prefix(location: &str, prefix: &str) -> Result<String> {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(invalid(
            location,
            format!("invalid prefix '{prefix}' (empty, '.' or '..' component)"),
        ));
    }
    Ok(p.to_string())
}

fn bucket_and_prefix(location: &str, rest: &str, noun: &str) -> Result<(String, String)> {
    let rest = rest.trim_start_matches('/');
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid(location, format!("the {noun} name is missing")));
    }
    if bucket.contains(|c: char| c.is_whitespace() || c == '?' || c == '#' || c == '\\') {
        return Err(invalid(location, format!("invalid {noun} name '{bucket}'")));
    }
    Ok((bucket.to_string(), clean_prefix(location, prefix)?))
}

fn parse_s3(location: &str, rest: &str) -> Result<Location> {
    for scheme in ["http://", "https://"] {
        if let Some(after) = rest.strip_prefix(scheme) {
            let (host, path) = after.split_once('/').unwrap_or((after, ""));
            if host.is_empty() {
                return Err(invalid(location, "the S3 endpoint has no host"));
            }
            if host.contains('@') {
                return Err(invalid(
                    location,
                    "credentials do not belong in the location; use AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY",
                ));
            }
            if let Some((_, port)) = host.rsplit_once(':')
                && !host.ends_with(']')
                && port.parse::<u16>().is_err()
            {
                return Err(invalid(location, format!("invalid port '{port}'")));
            }
            let (bucket, prefix) = bucket_and_prefix(location, path, "bucket").map_err(|e| {
                invalid(location, format!("{} (s3:{scheme}HOST/BUCKET)", e.message))
            })?;
            return Ok(Location::S3 {
                endpoint: Some(format!("{scheme}{host}")),
                bucket,
                prefix,
            });
        }
    }
    if rest.contains("://") {
        return Err(invalid(
            location,
            "the S3 endpoint must start with http:// or https://",
        ));
    }
    let (bucket, prefix) = bucket_and_prefix(location, rest, "bucket")?;
    Ok(Location::S3 {
        endpoint: None,
        bucket,
        prefix,
    })
}

fn parse_sftp(location: &str, rest: &str) -> Result<Location> {
    let split_user = |s: &str| -> (Option<String>, String) {
        match s.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h.to_string()),
            _ => (None, s.trim_start_matches('@').to_string()),
        }
    };
    let (user, host, port, path) = if let Some(after) = rest.strip_prefix("//") {
        // sftp://[USER@]HOST[:PORT]/PATH
        let (authority, path) = after.split_once('/').unwrap_or((after, ""));
        let (user, hostport) = split_user(authority);
        let (host, port) = split_port(location, &hostport)?;
        (
            user,
            host,
            port,
            format!("/{}", path.trim_start_matches('/')),
        )
    } else {
        // sftp:[USER@]HOST:PATH
        let (authority, path) = if let Some(bracket) = rest.find("]:") {
            (&rest[..=bracket], &rest[bracket + 2..])
        } else {
            rest.split_once(':')
                .ok_or_else(|| invalid(location, "expected sftp:[USER@]HOST:/PATH"))?
        };
        let (user, host) = split_user(authority);
        (user, host, None, path.to_string())
    };
    if host.is_empty() {
        return Err(invalid(location, "the SFTP host is missing"));
    }
    if !path.starts_with('/') {
        return Err(invalid(
            location,
            format!("the SFTP path '{path}' must be absolute (sftp:HOST:/PATH)"),
        ));
    }
    let trimmed = path.trim_end_matches('/');
    Ok(Location::Sftp {
        user,
        host,
        port,
        path: if trimmed.is_empty() {
            "/".to_string()
        } else {
            trimmed.to_string()
        },
    })
}

fn split_port(location: &str, hostport: &str) -> Result<(String, Option<u16>)> {
    let (host, port) = if let Some(end) = hostport.rfind(']') {
        match hostport[end + 1..].strip_prefix(':') {
            Some(p) => (&hostport[..=end], Some(p)),
            None => (hostport, None),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| invalid(location, format!("invalid port '{p}'")))?,
        ),
        None => None,
    };
    Ok((host.to_string(), port))
}

fn parse_generic(location: &str, rest: &str) -> Result<Location> {
    let rest = rest.trim_start_matches("//");
    let (scheme, query) = rest.split_once('?').unwrap_or((rest, ""));
    if scheme.is_empty() {
        return Err(invalid(location, "expected opendal:SCHEME?KEY=VALUE&..."));
    }
    let mut options = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(location, k)?;
        if k.is_empty() {
            return Err(invalid(location, format!("empty option name in '{pair}'")));
        }
        options.push((k, percent_decode(location, v)?));
    }
    Ok(Location::Opendal {
        scheme: scheme.to_string(),
        options,
    })
}

fn percent_decode(location: &str, s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid(location, format!("bad percent escape in '{s}'")))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| invalid(location, format!("'{s}' is not UTF-8 once decoded")))
}

/// Opens a storage from a location string, with [`OpenOptions::from_env`].
pub fn open_location(location: &str) -> Result<Arc<dyn Storage>> {
    open_location_with(location, &OpenOptions::from_env()?)
}

/// Opens a storage from a location string with explicit options; the credentials and
/// endpoints named in the module documentation still come from the environment.
pub fn open_location_with(location: &str, options: &OpenOptions) -> Result<Arc<dyn Storage>> {
    let parsed = parse_location(location)?;
    open_parsed(location, &parsed, options, &|k| std::env::var(k).ok())
}

/// Builds the storage for `parsed`, reading environment variables through `env`.
pub fn open_parsed(
    location: &str,
    parsed: &Location,
    options: &OpenOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Storage>> {
    if let Location::Local(path) = parsed {
        return Ok(Arc::new(LocalStorage::new(path)));
    }
    let storage = build_opendal(location, parsed, env)?;
    let storage = match options.connections {
        Some(n) => storage.with_connections(n),
        None => storage,
    };
    Ok(Arc::new(
        RetryStorage::new(storage).with_retry_budget(options.retry),
    ))
}

fn nonempty(env: &dyn Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    env(key).filter(|v| !v.is_empty())
}

fn root_of(prefix: &str) -> String {
    if prefix.is_empty() {
        "/".to_string()
    } else {
        format!("/{prefix}/")
    }
}

fn build_error(location: &str, e: ::opendal::Error) -> StorageError {
    invalid(
        location,
        format!("cannot configure the storage: {}", e.message()),
    )
}

/// AWS credentials found in the environment or the shared credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsCredentials {
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
    /// Where they came from, for messages.
    pub source: String,
}

/// Looks for AWS credentials: the environment, then the shared credentials file.
pub(crate) fn aws_credentials(
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<AwsCredentials>, String) {
    if let (Some(key_id), Some(secret)) = (
        nonempty(env, "AWS_ACCESS_KEY_ID"),
        nonempty(env, "AWS_SECRET_ACCESS_KEY"),
    ) {
        let token = nonempty(env, "AWS_SESSION_TOKEN");
        let source = if token.is_some() {
            "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"
        } else {
            "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        };
        let c = AwsCredentials {
            key_id,
            secret,
            token,
            source: source.to_string(),
        };
        let s = c.source.clone();
        return (Some(c), s);
    }
    let file = nonempty(env, "AWS_SHARED_CREDENTIALS_FILE").or_else(|| {
        nonempty(env, "HOME").map(|h| format!("{}/.aws/credentials", h.trim_end_matches('/')))
    });
    let profile = nonempty(env, "AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let Some(file) = file else {
        return (
            None,
            "nowhere arca looks (no AWS_ACCESS_KEY_ID, no HOME for ~/.aws/credentials); \
             OpenDAL's default chain was tried"
                .to_string(),
        );
    };
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            if let Some(c) = parse_credentials_file(&text, &profile, &file) {
                let s = c.source.clone();
                return (Some(c), s);
            }
            (
                None,
                format!(
                    "nowhere arca looks (no AWS_ACCESS_KEY_ID, no profile [{profile}] with keys in \
                     {file}); OpenDAL's default chain was tried"
                ),
            )
        }
        Err(_) => (
            None,
            format!(
                "nowhere arca looks (no AWS_ACCESS_KEY_ID, no readable {file}); OpenDAL's \
                 default chain was tried"
            ),
        ),
    }
}

/// Reads profile `profile` of an AWS shared credentials file (INI).
pub(crate) fn parse_credentials_file(
    text: &str,
    profile: &str,
    file: &str,
) -> Option<AwsCredentials> {
    let mut in_profile = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            in_profile = section == profile || section == format!("profile {profile}");
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => key_id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(AwsCredentials {
        key_id: key_id.filter(|v| !v.is_empty())?,
        secret: secret.filter(|v| !v.is_empty())?,
        token: token.filter(|v| !v.is_empty()),
        source: format!("the shared credentials file {file}, profile [{profile}]"),
    })
}

/// An OpenDAL storage of `location` in a bucket or container: (noun, name, endpoint) as
/// messages name it, and where its credentials came from.
fn in_container(
    location: &str,
    op: Operator,
    (noun, name, endpoint): (&'static str, &str, String),
    source: String,
) -> Result<OpendalStorage> {
    Ok(OpendalStorage::new(op, location)?
        .with_container(Container {
            noun,
            name: name.to_string(),
            endpoint,
        })
        .with_credentials_source(source))
}

/// An S3 (or S3-compatible) bucket: region, endpoint, credentials, checksums.
fn build_s3(
    location: &str,
    endpoint: Option<&String>,
    bucket: &str,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpendalStorage> {
    let err = |e| build_error(location, e);
    let region = nonempty(env, "AWS_REGION")
        .or_else(|| nonempty(env, "AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let mut shown_endpoint = String::new();
    let mut source = String::new();
    let mut builder = || {
        let mut b = services::S3::default()
            .bucket(bucket)
            .root(&root_of(prefix))
            .region(&region);
        shown_endpoint = match endpoint {
            Some(ep) => {
                // A private server: never ask the EC2 metadata service for keys.
                b = b.endpoint(ep).disable_ec2_metadata();
                ep.clone()
            }
            None => match nonempty(env, "AWS_ENDPOINT_URL") {
                Some(ep) => ep,
                None => format!("AWS S3 (region {region})"),
            },
        };
        let (creds, from) = aws_credentials(env);
        source = from;
        if let Some(c) = &creds {
            b = b.access_key_id(&c.key_id).secret_access_key(&c.secret);
            if let Some(t) = &c.token {
                b = b.session_token(t);
            }
        }
        b
    };
    let mut b = builder();
    // Object Lock buckets refuse uploads without Content-MD5 (which OpenDAL cannot
    // send on multipart uploads: such storages then send every object in one
    // request). Without ARCA_S3_CHECKSUM, a second operator that sends Content-MD5
    // stands by: the first upload such a bucket refuses switches to it.
    let checksum = nonempty(env, "ARCA_S3_CHECKSUM").map(|c| c.to_ascii_lowercase());
    let mut single_request = false;
    let mut md5_fallback = None;
    match checksum.as_deref() {
        None => {
            md5_fallback = Some(Operator::new(builder().checksum_algorithm("md5")).map_err(err)?);
        }
        Some("none") => {}
        Some(c @ ("md5" | "crc32c")) => {
            b = b.checksum_algorithm(c);
            single_request = c == "md5";
        }
        Some(other) => {
            return Err(invalid(
                location,
                format!("ARCA_S3_CHECKSUM={other}: use md5, crc32c or none"),
            ));
        }
    }
    let op = Operator::new(b).map_err(err)?;
    Ok(
        in_container(location, op, ("bucket", bucket, shown_endpoint), source)?
            .with_single_request_writes(single_request)
            .with_md5_fallback(md5_fallback),
    )
}

/// An Aliyun OSS bucket.
fn build_oss(
    location: &str,
    bucket: &str,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpendalStorage> {
    let err = |e| build_error(location, e);
    let endpoint = nonempty(env, "OSS_ENDPOINT").ok_or_else(|| {
        invalid(
            location,
            "oss: needs OSS_ENDPOINT (e.g. https://oss-cn-hangzhou.aliyuncs.com)",
        )
    })?;
    let mut b = services::Oss::default()
        .bucket(bucket)
        .root(&root_of(prefix))
        .endpoint(&endpoint);
    let source = match (
        nonempty(env, "OSS_ACCESS_KEY_ID"),
        nonempty(env, "OSS_ACCESS_KEY_SECRET"),
    ) {
        (Some(id), Some(secret)) => {
            b = b.access_key_id(&id).access_key_secret(&secret);
            "the environment (OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET)".to_string()
        }
        _ => "nowhere arca looks (no OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET); \
                  OpenDAL's default chain was tried"
            .to_string(),
    };
    let op = Operator::new(b).map_err(err)?;
    in_container(location, op, ("bucket", bucket, endpoint), source)
}

/// An Azure Blob Storage container.
fn build_azure(
    location: &str,
    container: &str,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpendalStorage> {
    let err = |e| build_error(location, e);
    let account = nonempty(env, "AZURE_STORAGE_ACCOUNT")
        .ok_or_else(|| invalid(location, "azure: needs AZURE_STORAGE_ACCOUNT"))?;
    let endpoint = nonempty(env, "AZURE_STORAGE_ENDPOINT")
        .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
    let mut b = services::Azblob::default()
        .container(container)
        .root(&root_of(prefix))
        .endpoint(&endpoint)
        .account_name(&account);
    let source = if let Some(key) = nonempty(env, "AZURE_STORAGE_KEY") {
        b = b.account_key(&key);
        "the environment (AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY)".to_string()
    } else if let Some(sas) = nonempty(env, "AZURE_STORAGE_SAS_TOKEN") {
        b = b.sas_token(&sas);
        "the environment (AZURE_STORAGE_SAS_TOKEN)".to_string()
    } else {
        "nowhere arca looks (no AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN); \
             OpenDAL's default chain was tried"
            .to_string()
    };
    let op = Operator::new(b).map_err(err)?;
    in_container(location, op, ("container", container, endpoint), source)
}

/// A Google Cloud Storage bucket.
fn build_gcs(
    location: &str,
    bucket: &str,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpendalStorage> {
    let err = |e| build_error(location, e);
    let mut b = services::Gcs::default()
        .bucket(bucket)
        .root(&root_of(prefix));
    let source = if let Some(path) = nonempty(env, "GOOGLE_APPLICATION_CREDENTIALS") {
        b = b.credential_path(&path);
        format!("GOOGLE_APPLICATION_CREDENTIALS ({path})")
    } else {
        "nowhere arca looks (no GOOGLE_APPLICATION_CREDENTIALS); the default \
             application credentials were tried"
            .to_string()
    };
    let op = Operator::new(b).map_err(err)?;
    in_container(
        location,
        op,
        ("bucket", bucket, "Google Cloud Storage".to_string()),
        source,
    )
}

fn build_opendal(
    location: &str,
    parsed: &Location,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpendalStorage> {
    ::opendal::install_default();
    let err = |e| build_error(location, e);
    match parsed {
        Location::Local(_) => Err(invalid(location, "a local path is not an OpenDAL storage")),
        Location::S3 {
            endpoint,
            bucket,
            prefix,
        } => build_s3(location, endpoint.as_ref(), bucket, prefix, env),
        Location::Oss { bucket, prefix } => build_oss(location, bucket, prefix, env),
        Location::Azure { container, prefix } => build_azure(location, container, prefix, env),
        Location::Gcs { bucket, prefix } => build_gcs(location, bucket, prefix, env),
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => {
            let endpoint = match port {
                Some(p) => format!("ssh://{host}:{p}"),
                None => host.clone(),
            };
            let mut b = services::Sftp::default().endpoint(&endpoint).root(path);
            if let Some(u) = user {
                b = b.user(u);
            }
            let op = Operator::new(b).map_err(err)?;
            Ok(OpendalStorage::new(op, location)?.with_credentials_source(
                "ssh (the agent, ~/.ssh/config and ~/.ssh keys of the user running arca)",
            ))
        }
        Location::Opendal { scheme, options } => {
            let op = Operator::via_iter(scheme, options.iter().cloned()).map_err(|e| {
                invalid(
                    location,
                    format!(
                        "cannot configure OpenDAL service '{scheme}': {} (services built in: \
                         s3, oss, azblob, gcs, sftp)",
                        e.message()
                    ),
                )
            })?;
            Ok(OpendalStorage::new(op, location)?
                .with_credentials_source("the options in the location and the service's defaults"))
        }
    }
}

#[cfg(test)]
mod tests;
