//! The dashboard token the daemon makes itself when the configuration gives none
//! (`[daemon] token_file` or `token_env`): 32 random bytes in hex, kept in
//! `dashboard.token` beside the state database, mode 0600, owned by the daemon's user.
//!
//! An existing file is reused (the token survives restarts) when it is a regular file of
//! ours with no permission for group or others; a looser mode, another owner, a symlink
//! or an empty file is refused with a message that says what to do. A new file is written
//! under a temporary name (created exclusively, mode 0600 from the start, synced) and
//! linked into place, so no reader ever sees a partial token and two daemons never
//! overwrite each other's. The token is never logged, only the path.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file's name, in the directory of the state database.
pub const FILE_NAME: &str = "dashboard.token";

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error(
        "dashboard token file {path}: mode {mode:04o} lets others read it; \
         run `chmod 600 {path}` or remove the file (a new token is made at start)"
    )]
    Loose { path: PathBuf, mode: u32 },
    #[error(
        "dashboard token file {path}: owned by uid {owner}, not by the daemon's user \
         (uid {me}); remove it or give it to the daemon's user"
    )]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("dashboard token file {path}: not a regular file (a symlink or a directory?)")]
    NotFile { path: PathBuf },
    #[error("dashboard token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("dashboard token file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no random bytes for a dashboard token or session (/dev/urandom): {0}")]
    Random(std::io::Error),
}

/// `n` bytes from the kernel's random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], TokenFileError> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(TokenFileError::Random)?;
    Ok(b)
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where the generated token lives for the state database `state`.
pub fn path_for(state: &Path) -> PathBuf {
    state.parent().unwrap_or(Path::new(".")).join(FILE_NAME)
}

/// The token in `path`, read without following a symlink and after checking owner and
/// mode on the open file.
fn read_existing(path: &Path) -> Result<String, TokenFileError> {
    let io = |source| TokenFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                TokenFileError::NotFile {
                    path: path.to_path_buf(),
                }
            } else {
                io(e)
            }
        })?;
    let md = f.metadata().map_err(io)?;
    if !md.is_file() {
        return Err(TokenFileError::NotFile {
            path: path.to_path_buf(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me {
        return Err(TokenFileError::Owner {
            path: path.to_path_buf(),
            owner: md.uid(),
            me,
        });
    }
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TokenFileError::Loose {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(io)?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(TokenFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(token)
}

/// Writes a new token to `path` atomically (see the module doc).
fn write_new(path: &Path) -> Result<Option<String>, TokenFileError> {
    let io = |source| TokenFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let token = hex(&random_bytes::<32>()?);
    let suffix = hex(&random_bytes::<8>()?);
    let tmp = path.with_file_name(format!(".{FILE_NAME}.{suffix}.tmp"));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        // The umask cannot loosen 0600, but a default ACL could: set it again.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            if let Some(dir) = path.parent()
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(Some(token))
        }
        // Another daemon (on another state database in this directory) was quicker.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// The token of the file beside `state`, made now if there is none. Returns the path
/// (to be logged), the token, and whether it was made now.
pub fn ensure(state: &Path) -> Result<(PathBuf, String, bool), TokenFileError> {
    let path = path_for(state);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => return read_existing(&path).map(|t| (path, t, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(TokenFileError::Io { path, source }),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TokenFileError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    match write_new(&path)? {
        Some(token) => Ok((path, token, true)),
        None => read_existing(&path).map(|t| (path, t, false)),
    }
}

/// The token in force for `daemon`: `token_file` read again now (so a new token written
/// into it takes effect at once), else `token_env`'s value, else the file beside the state
/// database ([`ensure`]; made again if it was removed, and its path logged).
pub fn current(daemon: &crate::config::DaemonSettings) -> Result<String, TokenFileError> {
    if let Some(path) = &daemon.token_file {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io {
            path: path.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenFileError::Empty { path: path.clone() });
        }
        return Ok(token.to_string());
    }
    if let Some(t) = &daemon.token {
        return Ok(t.clone());
    }
    let (path, token, made) = ensure(&daemon.state)?;
    if made {
        tracing::warn!(
            target: "arca::web",
            path = %path.display(),
            "dashboard: made a new token (the old file was gone); earlier sessions end"
        );
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reused_and_loose_modes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("sub/state.db");
        let (path, token, made) = ensure(&state).unwrap();
        assert!(made);
        assert_eq!(path, dir.path().join("sub").join(FILE_NAME));
        assert_eq!(token.len(), 64);
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        let (_, again, made) = ensure(&state).unwrap();
        assert!(!made);
        assert_eq!(again, token);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = ensure(&state).unwrap_err();
        assert!(
            matches!(e, TokenFileError::Loose { mode: 0o640, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(!e.to_string().contains(&token));
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        assert!(matches!(
            ensure(&state).unwrap_err(),
            TokenFileError::NotFile { .. }
        ));
    }
}
