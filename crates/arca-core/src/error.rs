//! The public error type of arca-core.
//!
//! Policy: every error names what it concerns (the repository location, the object id, the
//! snapshot, the file path) so a user can act on it; [`Error::kind`] tells the CLI which
//! documented exit code to use. Modules keep their own small error enums (crypto, pack,
//! index) and wrap them here with context.

use std::path::PathBuf;

use arca_storage::StorageError;

use crate::id::Id;

/// Coarse classification, mapped to exit codes by the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    RepositoryNotFound,
    Locked,
    WrongPassword,
    Interrupted,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository {0} does not exist (run `arca init` to create it)")]
    RepositoryNotFound(String),
    #[error("{0} is not an arca repository (no config object found)")]
    NotARepository(String),
    #[error(
        "repository {location} has format version {found}; this arca reads up to version {supported}: upgrade arca"
    )]
    NewerFormat {
        location: String,
        found: u32,
        supported: u32,
    },
    #[error("wrong password, or no key file of repository {0} matches it")]
    WrongPassword(String),
    #[error(
        "repository is locked by {0}; wait for it to finish, or run `arca unlock` if it is stale"
    )]
    Locked(String),
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("object {object} is damaged: {reason}")]
    Corrupt { object: String, reason: String },
    #[error("blob {0} is not in the index (missing or damaged pack?)")]
    BlobNotFound(Id),
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    #[error("snapshot reference {0:?} is ambiguous: {1} snapshots match")]
    AmbiguousSnapshot(String, usize),
    #[error("{path}: {message}")]
    Path { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    /// A program whose output was being backed up (or that was being restored into).
    #[error("{0}; no snapshot was written")]
    Child(Box<crate::child::ChildError>),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::RepositoryNotFound(_) | Error::NotARepository(_) => {
                ErrorKind::RepositoryNotFound
            }
            Error::WrongPassword(_) => ErrorKind::WrongPassword,
            Error::Locked(_) => ErrorKind::Locked,
            Error::Interrupted => ErrorKind::Interrupted,
            Error::Child(e) if matches!(**e, crate::child::ChildError::Stopped { .. }) => {
                ErrorKind::Interrupted
            }
            _ => ErrorKind::Other,
        }
    }

    pub fn corrupt(object: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            object: object.into(),
            reason: reason.to_string(),
        }
    }

    pub fn path(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Error {
        Error::Path {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

impl From<crate::child::ChildError> for Error {
    fn from(e: crate::child::ChildError) -> Error {
        Error::Child(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
