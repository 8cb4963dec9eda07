//! The end-to-end tests of the `arca` binary, one module per area, in one test executable
//! (a change links one test binary, not forty). Run one area with a filter, e.g.
//! `cargo test -p arca-cli --test e2e -- torture_crash::`.

mod common;
mod torture_support;

mod alerts;
mod backup_restore;
mod broken_pipe;
mod concurrency;
mod confinement;
mod corruption;
mod daemon;
mod daemon_db;
mod dashboard;
mod dashboard_access;
mod db_timeouts;
mod drift;
mod drill;
mod errors;
mod incomplete;
mod inspect;
mod interrupted;
mod keys;
mod maintenance;
mod monitoring;
mod mysql;
mod object_storage;
mod object_storage_faults;
mod object_storage_s3s;
mod postgres;
mod repair;
mod retention_vs_restic;
mod s3;
mod temp_files;
mod terminal_escapes;
mod timeouts;
mod torture_concurrency;
mod torture_corruption;
mod torture_crash;
mod torture_crash_s3;
mod torture_diskfull;
mod torture_hostile;
mod torture_power;
mod types;
