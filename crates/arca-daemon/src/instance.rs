//! One daemon per state database. A daemon holds an exclusive `flock` on `STATE.daemon.lock`
//! (beside the SQLite history) for as long as it runs, with its pid written into the file.
//! A second daemon on the same state finds the lock held and refuses to start, naming the
//! pid of the one that holds it (two daemons would each mark the other's runs abandoned
//! and serve the same slots). The kernel drops the lock when its holder dies, so a file
//! left by a dead daemon is simply taken over.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "another arca daemon (pid {pid}) is running on the state database {state}; stop it first (its lock: {lock})",
        pid = pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    AlreadyRunning {
        pid: Option<u32>,
        state: PathBuf,
        lock: PathBuf,
    },
    #[error("daemon lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The lock of a running daemon; released when dropped (or when the process ends).
pub struct DaemonLock {
    _lock: Flock<File>,
}

/// The lock file of the daemon on `state`: `STATE.daemon.lock` beside it.
pub fn lock_path(state: &Path) -> PathBuf {
    let name = state
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    state.with_file_name(format!("{name}.daemon.lock"))
}

impl DaemonLock {
    /// Takes the lock of `state` for this process and writes its pid into the file, or
    /// fails with the pid of the daemon that holds it.
    pub fn acquire(state: &Path) -> Result<DaemonLock, InstanceError> {
        let path = lock_path(state);
        let io = |source| InstanceError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(InstanceError::AlreadyRunning {
                    pid: text.trim().parse().ok(),
                    state: state.to_path_buf(),
                    lock: path,
                });
            }
            Err((_, e)) => return Err(io(std::io::Error::from(e))),
        };
        let pid = format!("{}\n", std::process::id());
        lock.set_len(0).map_err(io)?;
        lock.seek(SeekFrom::Start(0)).map_err(io)?;
        lock.write_all(pid.as_bytes()).map_err(io)?;
        lock.sync_data().map_err(io)?;
        Ok(DaemonLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_its_pid_and_a_released_one_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state.db");
        // A stale file from a dead daemon: not locked, another pid inside.
        std::fs::write(lock_path(&state), "999999\n").expect("write stale lock");
        let first = DaemonLock::acquire(&state).expect("the stale file is taken over");
        let text = std::fs::read_to_string(lock_path(&state)).expect("read lock");
        assert_eq!(text.trim(), std::process::id().to_string());
        // flock locks belong to the open file: a second open in this process conflicts.
        match DaemonLock::acquire(&state) {
            Err(InstanceError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected AlreadyRunning, got {:?}", other.err()),
        }
        drop(first);
        assert!(DaemonLock::acquire(&state).is_ok());
    }
}
