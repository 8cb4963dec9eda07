//! The daemon's configuration file (`arca.toml`, written by people, checked before the
//! daemon starts or reloads): any text must give a configuration or a list of problems with
//! their line and column, never a panic, a hang or unbounded memory. Schedules, windows,
//! durations, retention, alert rules, channels and drills are all parsed on the way.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: arca_fuzz::write_seeds("daemon_config"),
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        // Every environment variable a configuration names is set (password_env, token_env,
        // secret_env), so the checks behind them run; nothing is read from the real
        // environment.
        let env = |_: &str| Some("fuzz".to_string());
        match arca_daemon::config::Config::parse(Path::new("/nonexistent/arca.toml"), text, &env)
        {
            Ok(c) => {
                let _ = c.jobs.len();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
);
