//! Opening a job's repositories: the password from its source, the storage stack, and
//! the progress a run reports through.

use super::*;

/// Reads a repository's password from its configured source.
pub fn password(repo: &RepositoryConfig) -> Result<Vec<u8>, String> {
    let first_line = |b: &[u8]| -> Vec<u8> {
        let end = b
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .unwrap_or(b.len());
        b[..end].to_vec()
    };
    let (pw, from) = match &repo.password {
        PasswordSource::File(p) => (
            first_line(
                &std::fs::read(p)
                    .map_err(|e| format!("reading password file {}: {e}", p.display()))?,
            ),
            format!("file {}", p.display()),
        ),
        PasswordSource::Command(c) => {
            let out =
                crate::child::output_within("password command", c, repo.password_command_timeout)
                    .map_err(|e| e.to_string())?;
            (first_line(&out), format!("command {c:?}"))
        }
        PasswordSource::Env(v) => (
            std::env::var(v)
                .map_err(|_| format!("environment variable {v} (password_env) is not set"))?
                .into_bytes(),
            format!("environment variable {v}"),
        ),
    };
    if pw.is_empty() {
        return Err(format!("the password from {from} is empty"));
    }
    Ok(pw)
}

/// Opens a configured repository with the job's connection and bandwidth limits.
pub fn open_repository(
    repo: &RepositoryConfig,
    job: Option<&JobConfig>,
) -> Result<Arc<Repository>, String> {
    let mut opts = arca_storage::OpenOptions::from_env().map_err(|e| e.to_string())?;
    let limits = job.map(|j| &j.limits);
    if let Some(c) = limits.and_then(|l| l.connections).or(repo.connections) {
        opts.connections = Some(c);
    }
    let storage = arca_storage::open_location_with(&repo.location, &opts)
        .map_err(|e| format!("repository {} ({}): {e}", repo.name, repo.location))?;
    let up = limits
        .and_then(|l| l.upload_limit_kib)
        .or(repo.upload_limit_kib);
    let down = limits
        .and_then(|l| l.download_limit_kib)
        .or(repo.download_limit_kib);
    let storage: Arc<dyn arca_storage::Storage> = if up.is_some() || down.is_some() {
        Arc::new(arca_storage::ThrottleStorage::new(
            storage,
            up.map(arca_storage::Bandwidth::kib_per_sec),
            down.map(arca_storage::Bandwidth::kib_per_sec),
        ))
    } else {
        storage
    };
    arca_core::repo::ensure_repository(storage.as_ref(), &repo.location)
        .map_err(|e| format!("repository {}: {e}", repo.name))?;
    let pw = password(repo).map_err(|e| format!("repository {}: {e}", repo.name))?;
    Repository::open(storage, &pw)
        .map(Arc::new)
        .map_err(|e| format!("repository {} ({}): {e}", repo.name, repo.location))
}

/// Progress of a run: counts, and the stop condition.
pub(super) struct RunProgress<'a> {
    pub(super) stop: &'a (dyn Fn() -> bool + Sync),
    pub(super) clock: &'a dyn Clock,
    pub(super) stop_at: Option<Timestamp>,
    pub(super) files: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) window_closed: std::sync::atomic::AtomicBool,
}

impl Progress for RunProgress<'_> {
    fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    fn add_files(&self, n: u64) {
        self.files.fetch_add(n, Ordering::Relaxed);
    }
    fn should_stop(&self) -> bool {
        if (self.stop)() {
            return true;
        }
        if let Some(t) = self.stop_at
            && self.clock.now() >= t
        {
            self.window_closed.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}
