//! arca-core: the repository format and the engines that read and write it.
//!
//! No CLI, terminal or daemon code lives here: engines report progress through the
//! [`progress::Progress`] trait and return errors that name the file, object or snapshot
//! concerned.

pub mod backup;
pub mod check;
pub mod child;
pub mod chunker;
pub mod confined;
pub mod copy;
pub mod crypto;
pub mod error;
pub mod format;
pub mod fsmeta;
pub mod id;
pub mod index;
pub mod lock;
pub mod longpath;
pub mod pack;
pub mod parallel;
pub mod progress;
pub mod prune;
pub mod random;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod saver;
pub mod units;
pub mod wal;
pub mod walk;

pub use error::{Error, ErrorKind, Result};
pub use id::Id;
pub use repo::Repository;
