//! Opening a job's repositories: the description of a configured repository (with the
//! job's connection and bandwidth limits) opened as an arca-ops session, the one storage
//! stack the CLI uses too (cache, client-side append-only, request counts), and the
//! progress a run reports through.

use super::*;

use arca_ops::{Access, CacheSetting, OpenError, RepositorySpec, Session};

/// A configured repository that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("repository {name} ({location}): {source}")]
pub struct RepositoryError {
    pub name: String,
    pub location: String,
    pub source: Box<OpenError>,
}

/// The password source of a configured repository.
pub fn password_source(repo: &RepositoryConfig) -> arca_ops::PasswordSource {
    match &repo.password {
        PasswordSource::File(p) => arca_ops::PasswordSource::File(p.clone()),
        PasswordSource::Command(c) => arca_ops::PasswordSource::Command {
            command: c.clone(),
            timeout: repo.password_command_timeout,
        },
        PasswordSource::Env(v) => arca_ops::PasswordSource::Env(v.clone()),
    }
}

/// The description of a configured repository, with the job's limits over the
/// repository's own.
pub fn repository_spec(repo: &RepositoryConfig, job: Option<&JobConfig>) -> RepositorySpec {
    let limits = job.map(|j| &j.limits);
    let cache = match (&repo.cache_dir, repo.cache) {
        (_, false) => CacheSetting::Off,
        (Some(d), true) => CacheSetting::Dir(d.clone()),
        (None, true) => CacheSetting::Default,
    };
    RepositorySpec {
        location: repo.location.clone(),
        password: password_source(repo),
        connections: limits.and_then(|l| l.connections).or(repo.connections),
        upload_limit_kib: limits
            .and_then(|l| l.upload_limit_kib)
            .or(repo.upload_limit_kib),
        download_limit_kib: limits
            .and_then(|l| l.download_limit_kib)
            .or(repo.download_limit_kib),
        cache,
        append_only: repo.append_only,
        lock_wait: repo.lock_wait,
    }
}

/// Opens a configured repository as a session.
pub fn open_session(
    repo: &RepositoryConfig,
    job: Option<&JobConfig>,
) -> Result<Session, RepositoryError> {
    Session::open(&repository_spec(repo, job), Access::Cached).map_err(|source| RepositoryError {
        name: repo.name.clone(),
        location: repo.location.clone(),
        source: Box::new(source),
    })
}

/// Opens a configured repository (see [`open_session`]).
pub fn open_repository(
    repo: &RepositoryConfig,
    job: Option<&JobConfig>,
) -> Result<Arc<Repository>, RepositoryError> {
    open_session(repo, job).map(|s| s.repository().clone())
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
