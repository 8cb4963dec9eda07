//! arca-core: the repository format and the engines that read and write it.
//!
//! No CLI, terminal or daemon code lives here: engines report progress through the
//! [`progress::Progress`] trait and return errors that name the file, object or snapshot
//! concerned.

pub mod crypto;
pub mod format;
pub mod id;

pub use id::Id;
