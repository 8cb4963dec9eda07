//! A storage layer that retries transient failures with exponential backoff and jitter.
//!
//! Only errors whose kind is [`ErrorKind::Transient`] are retried: a missing object, refused
//! credentials or a malformed request fail at once. The budget is a number of attempts (the
//! first try included); the wait before retry `n` is `base * 2^(n-1)` capped at `max_wait`,
//! of which a random half is kept ("equal jitter"), so that many clients failing together do
//! not retry in lockstep. When the budget is spent, the last error is returned with a message
//! saying how many attempts were made and for how long.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{ErrorKind, ObjectInfo, Properties, Result, Storage, StorageError};

/// How hard [`RetryStorage`] tries before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    /// Attempts in all, the first one included (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further retry.
    pub base: Duration,
    /// Longest wait between two attempts.
    pub max_wait: Duration,
}

impl Default for RetryBudget {
    /// 6 attempts, waiting about 0.2, 0.4, 0.8, 1.6 and 3.2 s between them (at most 10 s each).
    fn default() -> Self {
        RetryBudget {
            attempts: 6,
            base: Duration::from_millis(200),
            max_wait: Duration::from_secs(10),
        }
    }
}

impl RetryBudget {
    /// A budget of `attempts` tries starting at `base`, with the default cap per wait.
    pub fn new(attempts: u32, base: Duration) -> Self {
        RetryBudget {
            attempts: attempts.max(1),
            base,
            ..RetryBudget::default()
        }
    }

    /// The upper bound of the wait before retry number `retry` (1 for the first retry).
    fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max_wait)
    }

    /// The wait before retry number `retry`: a random point in the upper half of the ceiling.
    fn wait(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        let span = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            random_u64() % (span + 1)
        };
        half + Duration::from_nanos(jitter)
    }
}

fn random_u64() -> u64 {
    // A failing OS random source only loses the jitter; the clock still spreads clients.
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0)
    })
}

/// Wraps a storage and retries its transient failures within a [`RetryBudget`].
pub struct RetryStorage<S> {
    inner: S,
    budget: RetryBudget,
    retries: AtomicU64,
}

impl<S: Storage> RetryStorage<S> {
    /// Wraps `inner` with the default budget.
    pub fn new(inner: S) -> Self {
        RetryStorage {
            inner,
            budget: RetryBudget::default(),
            retries: AtomicU64::new(0),
        }
    }

    /// Sets `attempts` tries in all (the first included), the first wait being `base`.
    pub fn with_budget(self, attempts: u32, base: Duration) -> Self {
        self.with_retry_budget(RetryBudget::new(attempts, base))
    }

    /// Sets the whole budget.
    pub fn with_retry_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = RetryBudget {
            attempts: budget.attempts.max(1),
            ..budget
        };
        self
    }

    pub fn budget(&self) -> RetryBudget {
        self.budget
    }

    /// How many retries were made so far (attempts after a first failure).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn run<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let mut attempt = 1;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_transient() => {
                    if attempt > 1 {
                        return Err(annotate_after_retry(e, attempt));
                    }
                    return Err(e);
                }
                Err(e) if attempt >= self.budget.attempts => {
                    return Err(give_up(e, attempt, start.elapsed()));
                }
                Err(_) => {
                    std::thread::sleep(self.budget.wait(attempt));
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                }
            }
        }
    }
}

fn give_up(mut e: StorageError, attempts: u32, elapsed: Duration) -> StorageError {
    e.message = if attempts == 1 {
        format!("{} (1 attempt, retries disabled)", e.message)
    } else {
        format!(
            "{} (gave up after {attempts} attempts over {:.2} s)",
            e.message,
            elapsed.as_secs_f64()
        )
    };
    e
}

/// A permanent error seen only on a retry may be the consequence of an earlier attempt that
/// succeeded although its answer was lost (a delete that then finds nothing, for instance).
fn annotate_after_retry(mut e: StorageError, attempt: u32) -> StorageError {
    if e.kind == ErrorKind::NotFound || e.kind == ErrorKind::AlreadyExists {
        e.message = format!(
            "{} (on attempt {attempt}: an earlier attempt whose answer was lost may have done it)",
            e.message
        );
    }
    e
}

impl<S: Storage> Storage for RetryStorage<S> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }
    fn create(&self) -> Result<()> {
        self.run(|| self.inner.create())
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.run(|| self.inner.read(name))
    }
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.run(|| self.inner.read_range_into(name, offset, length, buf))
    }
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        self.run(|| self.inner.write(name, data))
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.run(|| self.inner.delete(name))
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        self.run(|| self.inner.stat(name))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.run(|| self.inner.list(prefix))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::LocalStorage;
    use crate::fault::FaultStorage;

    /// Counts calls and fails each with a fixed kind.
    struct Failing {
        kind: ErrorKind,
        calls: AtomicU32,
    }

    impl Failing {
        fn new(kind: ErrorKind) -> Self {
            Failing {
                kind,
                calls: AtomicU32::new(0),
            }
        }
        fn fail<T>(&self, op: &'static str, name: &str) -> Result<T> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err(StorageError::new(self.kind, op, name, "refused"))
        }
    }

    impl Storage for Failing {
        fn properties(&self) -> Properties {
            Properties {
                connections: 1,
                location: "failing".into(),
                local: false,
                append_only: false,
            }
        }
        fn create(&self) -> Result<()> {
            self.fail("create", "")
        }
        fn read(&self, name: &str) -> Result<Vec<u8>> {
            self.fail("read", name)
        }
        fn read_range_into(&self, name: &str, _: u64, _: u64, _: &mut Vec<u8>) -> Result<()> {
            self.fail("read", name)
        }
        fn write(&self, name: &str, _: &[u8]) -> Result<()> {
            self.fail("write", name)
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.fail("delete", name)
        }
        fn stat(&self, name: &str) -> Result<ObjectInfo> {
            self.fail("stat", name)
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
            self.fail("list", prefix)
        }
    }

    #[test]
    fn conformance_through_twenty_percent_failures() {
        let dir = tempfile::tempdir().unwrap();
        let faulty =
            FaultStorage::new(LocalStorage::new(dir.path().join("repo"))).with_failure_rate(200, 7);
        let s = RetryStorage::new(faulty).with_budget(12, Duration::from_micros(50));
        crate::suite::run_all(&s);
        assert!(
            s.inner().injected() > 500,
            "faults were injected: {}",
            s.inner().injected()
        );
        assert_eq!(s.retries(), s.inner().injected());
    }

    #[test]
    fn storage_down_gives_up_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = FaultStorage::new(LocalStorage::new(dir.path()));
        faulty.set_down(true);
        let s = RetryStorage::new(faulty).with_budget(4, Duration::from_millis(1));
        let start = Instant::now();
        let err = s.read("config").unwrap_err();
        assert!(err.is_transient());
        assert_eq!(s.inner().injected(), 4);
        assert!(
            err.to_string().contains("gave up after 4 attempts"),
            "{err}"
        );
        assert!(err.to_string().contains("storage is down"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(1));
        // Back up: the same layer works again.
        s.inner().set_down(false);
        s.write("config", b"x").unwrap();
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::Other,
            ErrorKind::NoSpace,
            ErrorKind::AlreadyExists,
            ErrorKind::AppendOnly,
        ] {
            let s = RetryStorage::new(Failing::new(kind)).with_budget(5, Duration::from_millis(1));
            let err = s.write("keys/k", b"1").unwrap_err();
            assert_eq!(err.kind, kind);
            assert_eq!(err.message, "refused");
            assert_eq!(s.inner().calls.load(Ordering::SeqCst), 1, "{kind:?}");
            assert_eq!(s.retries(), 0);
        }
    }

    #[test]
    fn transient_errors_use_the_whole_budget() {
        let s = RetryStorage::new(Failing::new(ErrorKind::Transient))
            .with_budget(3, Duration::from_millis(1));
        let err = s.list("snapshots/").unwrap_err();
        assert_eq!(s.inner().calls.load(Ordering::SeqCst), 3);
        assert_eq!(err.op, "list");
        assert_eq!(err.path, "snapshots/");
        assert!(err.message.starts_with("refused (gave up after 3 attempts"));
        let once = RetryStorage::new(Failing::new(ErrorKind::Transient))
            .with_budget(0, Duration::from_millis(1));
        let err = once.stat("x").unwrap_err();
        assert_eq!(once.inner().calls.load(Ordering::SeqCst), 1);
        assert!(err.message.contains("retries disabled"), "{err}");
    }

    #[test]
    fn waits_double_up_to_the_cap_with_jitter() {
        let b = RetryBudget::default();
        assert_eq!(b.attempts, 6);
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(2), Duration::from_millis(400));
        assert_eq!(b.ceiling(5), Duration::from_millis(3200));
        assert_eq!(b.ceiling(7), Duration::from_secs(10));
        assert_eq!(b.ceiling(60), Duration::from_secs(10));
        for retry in 1..10 {
            let w = b.wait(retry);
            assert!(w >= b.ceiling(retry) / 2 && w <= b.ceiling(retry), "{w:?}");
        }
        let waits: std::collections::HashSet<_> = (0..20).map(|_| b.wait(3)).collect();
        assert!(waits.len() > 1, "jitter varies the waits");
    }

    #[test]
    fn concurrent_callers_retry_independently() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = FaultStorage::new(LocalStorage::new(dir.path())).with_failure_rate(300, 3);
        let s = RetryStorage::new(faulty).with_budget(20, Duration::from_micros(10));
        std::thread::scope(|scope| {
            for t in 0..4 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..100 {
                        let name = format!("data/{t}/{i}");
                        s.write(&name, name.as_bytes()).unwrap();
                        assert_eq!(s.read(&name).unwrap(), name.as_bytes());
                    }
                });
            }
        });
        assert_eq!(s.list("data/").unwrap().len(), 400);
    }
}
