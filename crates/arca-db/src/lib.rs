//! arca-db: database sources and targets on top of arca-core.
//!
//! `postgres` owns logical dumps, base backups, WAL archiving (push/fetch) and
//! point-in-time restore; `mysql` owns MySQL/MariaDB logical dumps and physical backups.
//! Like arca-core, nothing here prints or parses a command line.

pub mod mysql;
pub mod postgres;
