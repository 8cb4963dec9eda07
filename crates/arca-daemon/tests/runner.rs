//! The job runner against a real repository on disk, with an injected clock: a run still
//! going when the window closes stops at a checkpoint (`on_window_close = "stop"`, no
//! snapshot, recorded as interrupted) or finishes (`"finish"`); the backup type follows the
//! rotation by the clock's date; one run of a job at a time.

use std::path::Path;
use std::sync::Arc;

use arca_core::Repository;
use arca_core::repo::InitOptions;
use arca_daemon::clock::{Clock, ManualClock};
use arca_daemon::config::Config;
use arca_daemon::history::{History, RunStatus};
use arca_daemon::runner::{NoEvents, RunContext, RunError, Trigger, lock_job, run_job};

fn setup(dir: &Path) -> Config {
    let repo = dir.join("repo");
    let storage = arca_storage::open_location(repo.to_str().unwrap()).unwrap();
    Repository::init(
        storage,
        b"pw",
        InitOptions {
            kdf: Some(arca_core::crypto::test_kdf_params()),
            ..InitOptions::default()
        },
    )
    .unwrap();
    std::fs::write(dir.join("pw"), "pw\n").unwrap();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        std::fs::write(
            src.join(format!("f{i}")),
            format!("file {i}\n").repeat(1000),
        )
        .unwrap();
    }
    let text = format!(
        r#"[daemon]
state = "state.db"

[repositories.local]
location = "{repo}"
password_file = "pw"

[jobs.stops]
sources = ["{src}"]
repositories = ["local"]
schedule = "0 23 * * *"
window = "22:00-06:00"
on_window_close = "stop"

[jobs.finishes]
sources = ["{src}"]
repositories = ["local"]
schedule = "0 23 * * *"
window = "22:00-06:00"
on_window_close = "finish"
timezone = "Europe/Berlin"
rotation = {{ full = ["sun"], default = "differential" }}
"#,
        repo = repo.display(),
        src = src.display()
    );
    let path = dir.join("arca.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

#[test]
fn window_close_stops_or_lets_finish_per_job_setting() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let history = History::open(&config.daemon.state).unwrap();
    let clock = ManualClock::new(jiff::Timestamp::now());
    let stop = || false;
    let ctx = RunContext {
        config: &config,
        history: &history,
        clock: &clock,
        stop: &stop,
        events: &NoEvents,
    };
    // The window closed just as the run began.
    let closed = Some(clock.now());
    let r = run_job(&ctx, "stops", Trigger::Manual, None, closed).unwrap();
    assert_eq!(r.status, RunStatus::Interrupted, "{r:?}");
    assert!(r.snapshot_id.is_none());
    assert!(
        r.error.as_deref().unwrap().contains("backup window closed"),
        "{r:?}"
    );
    let r = run_job(&ctx, "finishes", Trigger::Manual, None, closed).unwrap();
    assert_eq!(r.status, RunStatus::Success, "{r:?}");
    assert!(r.snapshot_id.is_some());
    // Still open: the stopping job completes too.
    let later = clock
        .now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap();
    let r = run_job(&ctx, "stops", Trigger::Manual, None, Some(later)).unwrap();
    assert_eq!(r.status, RunStatus::Success, "{r:?}");
}

#[test]
fn rotation_follows_the_clock_and_one_run_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let history = History::open(&config.daemon.state).unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    // Sunday 2026-03-29 23:00 in Berlin (the day clocks moved forward), then Monday.
    let sunday = tz
        .to_timestamp("2026-03-29T23:00:00".parse().unwrap())
        .unwrap();
    let clock = Arc::new(ManualClock::new(sunday));
    let stop = || false;
    let ctx = RunContext {
        config: &config,
        history: &history,
        clock: clock.as_ref(),
        stop: &stop,
        events: &NoEvents,
    };
    let r = run_job(&ctx, "finishes", Trigger::Schedule(sunday), None, None).unwrap();
    assert_eq!(r.backup_type.as_deref(), Some("full"));
    assert_eq!(r.slot, Some(sunday));
    clock.advance(std::time::Duration::from_secs(3600));
    let r = run_job(&ctx, "finishes", Trigger::Manual, None, None).unwrap();
    assert_eq!(r.backup_type.as_deref(), Some("differential"));
    assert_eq!(r.status, RunStatus::Success);
    assert_eq!(history.last_slot("finishes").unwrap(), Some(sunday));

    // One run of a job at a time, also across processes (a lock file).
    let held = lock_job(&config, "finishes").unwrap();
    match run_job(&ctx, "finishes", Trigger::Manual, None, None) {
        Err(RunError::AlreadyRunning { job, .. }) => assert_eq!(job, "finishes"),
        other => panic!("{other:?}"),
    }
    drop(held);
    assert!(run_job(&ctx, "finishes", Trigger::Manual, None, None).is_ok());
}
