//! arca-daemon: the job configuration file, when jobs may run (`timing`: schedules,
//! windows, exclusions, rotation) and which are due (`scheduler`, with an injected
//! clock), the job runner and the run history, job drills (`job_drill`), per-job status
//! (`job_status`), what is running now (`activity`), alert rules (`alerts`), their
//! evaluation and tracking (`alert_tracker`) and channels (`notify`), and the web server.
//! The drill engine and bounded commands are arca-ops's.
//!
//! Like arca-core, nothing here prints: the daemon reports through [`daemon::EventLog`]
//! and the CLI decides how to show it.

pub mod activity;
pub mod alert_tracker;
pub mod alerts;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod history;
pub mod instance;
pub mod job_drill;
pub mod job_status;
pub mod limits;
pub mod notify;
pub mod runner;
pub mod scheduler;
pub mod timing;
pub mod trace;
pub mod web;
