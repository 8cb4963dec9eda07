//! arca-daemon: the job configuration file, the scheduler (with an injected clock),
//! backup windows and exclusion periods, the job runner and the run history.
//!
//! Like arca-core, nothing here prints: the daemon reports through [`daemon::EventLog`]
//! and the CLI decides how to show it.

pub mod alerts;
/// Bounded commands (password commands) live in the operations layer.
pub use arca_ops::command as child;
pub mod clock;
pub mod config;
pub mod daemon;
/// The drill engine is an operation of arca-ops; job drills (config, history) are
/// [`job_drill`].
pub use arca_ops::drill;
pub mod history;
pub mod instance;
pub mod job_drill;
pub mod limits;
pub mod live;
pub mod monitor;
pub mod notify;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod status;
pub mod trace;
pub mod web;
