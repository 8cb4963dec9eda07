//! Repository locks.
//!
//! Backups take shared locks and never block each other; operations that delete (prune,
//! forget --prune, key removal of data) take an exclusive lock. A lock is a sealed
//! `locks/ID` object naming host, pid and time; a holder refreshes it every
//! [`REFRESH_SECS`]. A lock is stale when it was not refreshed for [`STALE_SECS`], or when
//! it belongs to this host and its process is gone; stale locks are ignored and may be
//! removed by `unlock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{FORMAT_VERSION, Lock};
use crate::id::Id;
use crate::repo::{Repository, hostname, username};
pub use arca_storage::process::{host_tag, process_gone, process_start};

pub const REFRESH_SECS: u64 = 5 * 60;
pub const STALE_SECS: i64 = 30 * 60;

/// Whether `lock` no longer protects anything.
pub fn is_stale(lock: &Lock, now: jiff::Timestamp) -> bool {
    let age = now.as_second() - lock.time.as_second();
    if age > STALE_SECS {
        return true;
    }
    lock.host == hostname() && process_gone(lock.pid, lock.pid_start)
}

/// Whether the repository's storage refuses deletes (see [`arca_storage::deletes_refused`]).
/// The probe object is named after this host, process and time, so [`remove_locks`] can
/// remove one left by a killed process.
pub fn deletes_refused(repo: &Repository) -> Result<bool> {
    let pid = std::process::id();
    let tag = format!(
        "{}-{pid}-{}-{}",
        host_tag(),
        process_start(pid).unwrap_or(0),
        jiff::Timestamp::now().as_second()
    );
    Ok(arca_storage::deletes_refused(
        repo.storage().as_ref(),
        &tag,
    )?)
}

/// Whether the delete probe named `name` (below `locks/`) is left over: its writer is gone
/// from this host, or it is older than [`STALE_SECS`]. Probes in another form are only
/// removed with `all`.
fn probe_is_stale(name: &str, now: jiff::Timestamp) -> bool {
    let Some(rest) = name.strip_prefix("delete-probe-") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let [host, pid, start, secs, _random] = parts[..] else {
        return false;
    };
    let (Ok(pid), Ok(start), Ok(secs)) = (
        pid.parse::<u32>(),
        start.parse::<u64>(),
        secs.parse::<i64>(),
    ) else {
        return false;
    };
    if now.as_second() - secs > STALE_SECS {
        return true;
    }
    host == host_tag() && process_gone(pid, (start != 0).then_some(start))
}

/// Every lock in the repository; locks that cannot be read are treated as stale.
pub fn list_locks(repo: &Repository) -> Result<Vec<(Id, Option<Lock>)>> {
    let ids = repo.list_ids("locks")?;
    Ok(ids
        .into_iter()
        .map(|(id, _)| (id, repo.load_json::<Lock>("locks", &id).ok()))
        .collect())
}

/// Removes stale locks (or all locks with `all`), and delete probes left by killed
/// processes. Returns how many locks were removed.
pub fn remove_locks(repo: &Repository, all: bool) -> Result<usize> {
    let now = jiff::Timestamp::now();
    let mut n = 0;
    for (id, lock) in list_locks(repo)? {
        if all || lock.as_ref().is_none_or(|l| is_stale(l, now)) {
            repo.storage().delete(&format!("locks/{id}"))?;
            n += 1;
        }
    }
    for object in repo.storage().list("locks/")? {
        let name = object.name.rsplit('/').next().unwrap_or_default();
        if name.starts_with("delete-probe-") && (all || probe_is_stale(name, now)) {
            repo.storage().delete(&object.name)?;
        }
    }
    Ok(n)
}

/// A held lock; released on drop.
pub struct LockGuard {
    repo: Arc<Repository>,
    id: Arc<std::sync::Mutex<Id>>,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

fn describe(l: &Lock) -> String {
    format!(
        "{} lock held by {}@{} (pid {}, {}, since {})",
        if l.exclusive { "an exclusive" } else { "a" },
        l.username,
        l.host,
        l.pid,
        l.operation,
        l.time
    )
}

fn conflicting(repo: &Repository, exclusive: bool, own: Option<&Id>) -> Result<Option<String>> {
    let now = jiff::Timestamp::now();
    for (id, lock) in list_locks(repo)? {
        if Some(&id) == own {
            continue;
        }
        let Some(lock) = lock else { continue };
        if is_stale(&lock, now) {
            continue;
        }
        if exclusive || lock.exclusive {
            return Ok(Some(describe(&lock)));
        }
    }
    Ok(None)
}

/// Takes a lock for `operation`, failing at once when a conflicting lock is held.
pub fn acquire(repo: &Arc<Repository>, exclusive: bool, operation: &str) -> Result<LockGuard> {
    acquire_waiting(repo, exclusive, operation, Duration::ZERO, &|| false)
}

/// Takes a lock for `operation`, retrying for up to `wait` while a conflicting lock is held
/// (polling every second at first, then every 5 s). `stop` is polled while waiting; when it
/// answers true the wait ends with [`Error::Interrupted`].
pub fn acquire_waiting(
    repo: &Arc<Repository>,
    exclusive: bool,
    operation: &str,
    wait: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<LockGuard> {
    let deadline = std::time::Instant::now() + wait;
    let mut pause = Duration::from_secs(1);
    loop {
        match try_acquire(repo, exclusive, operation) {
            Err(Error::Locked(other)) => {
                let now = std::time::Instant::now();
                if now >= deadline {
                    return Err(Error::Locked(other));
                }
                let step = pause.min(deadline - now);
                let until = now + step;
                while std::time::Instant::now() < until {
                    if stop() {
                        return Err(Error::Interrupted);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

fn try_acquire(repo: &Arc<Repository>, exclusive: bool, operation: &str) -> Result<LockGuard> {
    if let Some(other) = conflicting(repo, exclusive, None)? {
        return Err(Error::Locked(other));
    }
    let lock = Lock {
        version: FORMAT_VERSION,
        exclusive,
        time: jiff::Timestamp::now(),
        host: hostname(),
        pid: std::process::id(),
        pid_start: process_start(std::process::id()),
        username: username(),
        operation: operation.to_string(),
    };
    let id = repo.save_json("locks", &lock)?;
    // Another process may have locked at the same moment: check again, back off if so.
    if let Some(other) = conflicting(repo, exclusive, Some(&id))? {
        let _ = repo.storage().delete(&format!("locks/{id}"));
        return Err(Error::Locked(other));
    }
    let id = Arc::new(std::sync::Mutex::new(id));
    let stop = Arc::new(AtomicBool::new(false));
    let refresher = {
        let repo = repo.clone();
        let id = id.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut waited = 0;
            while !stop.load(Ordering::SeqCst) {
                // Parked, not slept: dropping the guard wakes the thread at once.
                std::thread::park_timeout(Duration::from_millis(200));
                waited += 200;
                if waited < REFRESH_SECS * 1000 {
                    continue;
                }
                waited = 0;
                let mut l = lock.clone();
                l.time = jiff::Timestamp::now();
                if let Ok(new) = repo.save_json("locks", &l) {
                    let mut cur = id.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = repo.storage().delete(&format!("locks/{}", *cur));
                    *cur = new;
                }
            }
        })
    };
    Ok(LockGuard {
        repo: repo.clone(),
        id,
        stop,
        refresher: Some(refresher),
    })
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.refresher.take() {
            r.thread().unpark();
            let _ = r.join();
        }
        let id = *self.id.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.repo.storage().delete(&format!("locks/{id}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_of_gone_or_old_writers_are_stale() {
        let now = jiff::Timestamp::now();
        let secs = now.as_second();
        let me = std::process::id();
        let start = process_start(me).unwrap_or(0);
        let host = host_tag();
        let live = format!("delete-probe-{host}-{me}-{start}-{secs}-00");
        assert!(!probe_is_stale(&live, now));
        let reused = format!("delete-probe-{host}-{me}-{}-{secs}-00", start + 1);
        assert!(probe_is_stale(&reused, now));
        let other_host = format!("delete-probe-0000000000000000-{me}-{start}-{secs}-00");
        assert!(!probe_is_stale(&other_host, now));
        let old = format!(
            "delete-probe-0000000000000000-{me}-{start}-{}-00",
            secs - STALE_SECS - 1
        );
        assert!(probe_is_stale(&old, now));
        // Probes of an older form are left to `unlock --remove-all`.
        assert!(!probe_is_stale("delete-probe-123-00ff", now));
    }
}
