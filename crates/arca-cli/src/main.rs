//! The `arca` binary: parses the command line, runs one command, maps errors to the
//! documented exit codes.

mod cli;
mod cmd;
mod common;
mod output;
mod password;
mod render;

use clap::Parser;

/// Limits glibc to two malloc arenas. The pipelines hand multi-megabyte buffers from
/// thread to thread; with one arena per thread glibc keeps freed buffers in every arena
/// and peak memory nearly doubles (measured: 155 MiB -> 115 MiB on the benchmark
/// backup, same speed).
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes allocator tuning; it is called once at start-up,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

use crate::cmd::{Cli, Command};

/// Exit codes (documented in the README and in `arca --help`).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const INCOMPLETE: i32 = 3;
    pub const NO_REPOSITORY: i32 = 10;
    pub const LOCKED: i32 = 11;
    pub const WRONG_PASSWORD: i32 = 12;
    /// A command arca waited for (a password command) ran past its timeout.
    pub const TIMED_OUT: i32 = 124;
    pub const INTERRUPTED: i32 = 130;
}

fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<arca_ops::command::ChildError>()
            && e.is_timeout()
        {
            return exit::TIMED_OUT;
        }
        if let Some(e) = cause.downcast_ref::<arca_ops::PasswordError>()
            && e.is_timeout()
        {
            return exit::TIMED_OUT;
        }
        if let Some(arca_daemon::daemon::DaemonError::Instance(
            arca_daemon::instance::InstanceError::AlreadyRunning { .. },
        )) = cause.downcast_ref()
        {
            return exit::LOCKED;
        }
        // The operations' errors wrap the engine's: its kind picks the code.
        if let Some(e) = arca_ops::engine_error(cause) {
            return match e.kind() {
                arca_core::ErrorKind::RepositoryNotFound => exit::NO_REPOSITORY,
                arca_core::ErrorKind::WrongPassword => exit::WRONG_PASSWORD,
                arca_core::ErrorKind::Locked => exit::LOCKED,
                arca_core::ErrorKind::Interrupted => exit::INTERRUPTED,
                arca_core::ErrorKind::Other => exit::FAILURE,
            };
        }
    }
    exit::FAILURE
}

fn main() {
    limit_malloc_arenas();
    output::install_closed_output_exit();
    let cli = Cli::parse();
    common::install_interrupt_handler();
    let g = cli.global.clone();
    let result = match cli.command {
        Command::Init(a) => cmd::init::run(&g, a),
        Command::Backup(a) => cmd::backup::run(&g, a),
        Command::Snapshots(a) => cmd::snapshots::run(&g, a),
        Command::Ls(a) => cmd::ls::run(&g, a),
        Command::Find(a) => cmd::find::run(&g, a),
        Command::Diff(a) => cmd::diff::run(&g, a),
        Command::Dump(a) => cmd::dump::run(&g, a),
        Command::Restore(a) => cmd::restore::run(&g, a),
        Command::Cat(a) => cmd::cat::run(&g, a),
        Command::Stats(a) => cmd::stats::run(&g, a),
        Command::Forget(a) => cmd::forget::run(&g, a),
        Command::Prune(a) => cmd::forget::prune(&g, a),
        Command::Copy(a) => cmd::copy::run(&g, a),
        Command::Check(a) => cmd::check::run(&g, a),
        Command::Repair(a) => cmd::check::repair(&g, a),
        Command::Key(a) => cmd::key::run(&g, a),
        Command::Unlock(a) => cmd::key::unlock(&g, a),
        Command::Completions(a) => cmd::generate::completions(a),
        Command::Man(a) => cmd::generate::man(a),
        Command::Pg(c) => cmd::pg::run(&g, c),
        Command::WalPush(a) => cmd::wal::push(&g, a),
        Command::WalFetch(a) => cmd::wal::fetch(&g, a),
        Command::Mysql(c) => cmd::mysql::run(&g, c),
        Command::Daemon(a) => cmd::daemon::daemon(&g, a),
        Command::Job(c) => cmd::daemon::job(&g, c),
        Command::Status(a) => cmd::daemon::status(&g, a),
        Command::History(a) => cmd::daemon::history(&g, a),
        Command::Config(c) => cmd::daemon::config(&g, c),
        Command::Drill(c) => cmd::drill::run(&g, c),
        Command::Recover(a) => cmd::drill::recover(&g, a),
        Command::Alert(c) => cmd::alert::run(&g, c),
    };
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            if output::is_closed_output(&err) {
                output::exit_by_sigpipe();
            }
            let code = if common::interrupted() {
                exit::INTERRUPTED
            } else {
                exit_code(&err)
            };
            if g.json {
                let msg = serde_json::json!({
                    "message_type": "error",
                    "error": format!("{err:#}"),
                    "code": code,
                });
                eprintln!("{msg}");
            } else {
                eprintln!("arca: {}", output::safe_lines(&format!("{err:#}")));
            }
            code
        }
    };
    std::process::exit(code);
}
