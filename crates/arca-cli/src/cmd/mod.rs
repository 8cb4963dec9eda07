//! One module per command.

pub mod alert;
pub mod backup;
pub mod cat;
pub mod check;
pub mod copy;
pub mod daemon;
pub mod db_args;
pub mod diff;
pub mod drill;
pub mod dump;
pub mod find;
pub mod forget;
pub mod generate;
pub mod init;
pub mod key;
pub mod ls;
pub mod mysql;
pub mod pg;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod wal;
