//! Knowing it works, end to end through a real `arca daemon`: alerts reach a webhook
//! receiver on loopback when a run fails and a resolve follows when the next run works; an
//! RPO breach (under a fast test clock) alerts once, not on every evaluation; a job's drill
//! (`arca drill run JOB`, and on the daemon's drill schedule) is recorded in the history
//! with its report, fails on a damaged pack naming the file, and alerts; `arca recover JOB`
//! brings the data back; `arca alert test CHANNEL` uses a configured channel.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::daemon::{
    DaemonProcess, WebhookReceiver, job_history, run_with_config, wait_for,
};
use crate::common::{Env, PASSWORD, assert_same_tree, run_cmd, small_tree};
use serde_json::Value;

fn count(runs: &[Value], kind: &str, status: &str) -> usize {
    runs.iter()
        .filter(|r| r["kind"] == kind && r["status"] == status)
        .count()
}

/// Alerts of `rule` in `state` the receiver got (generic template: the alert itself).
fn alerts(hook: &WebhookReceiver, rule: &str, state: &str) -> Vec<Value> {
    hook.bodies()
        .into_iter()
        .filter(|b| b["rule"] == rule && b["state"] == state)
        .collect()
}

/// A sandbox with an initialised local repository, a password file and a source tree.
fn setup() -> (Env, PathBuf) {
    let env = Env::new();
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1").arg("init");
    run_cmd(c, None).ok();
    fs::write(env.path("pw"), format!("{PASSWORD}\n")).unwrap();
    let src = env.path("src");
    small_tree(&src, 12, 3);
    (env, src)
}

/// A configuration: one job `docs` backing up `src` into the sandbox's repository, alerts
/// to `hook` (generic webhook); `top` goes into `[alerts]`, `job_extra` into the job.
fn write_config(env: &Env, src: &Path, hook: &str, top: &str, job_extra: &str) -> PathBuf {
    let config = env.path("arca.toml");
    fs::write(
        &config,
        format!(
            r#"[daemon]
state = "state/history.db"

[channels.hook]
type = "webhook"
url = "{hook}"

[alerts]
channels = ["hook"]
# The test machine's disk may be fuller than the default threshold.
storage_full = false
{top}

[repositories.local]
location = "{repo}"
password_file = "pw"

[jobs.docs]
sources = ["{src}"]
repositories = ["local"]
{job_extra}
"#,
            repo = env.repo.display(),
            src = src.display(),
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_failed_run_alerts_once_and_the_next_good_run_resolves_it() {
    let (env, src) = setup();
    let hook = WebhookReceiver::start(200, "{}");
    let config = write_config(&env, &src, &hook.url, "", "schedule = \"every 2s\"");
    let daemon = DaemonProcess::start(&env, &config, &[]);
    wait_for("a good run", Duration::from_secs(60), || {
        count(&job_history(&config, "docs"), "backup", "success") >= 1
    });
    assert!(
        hook.bodies().is_empty(),
        "nothing to alert yet: {:?}",
        hook.bodies()
    );

    // The source disappears: runs fail, and the failure is sent once.
    let aside = env.path("src-aside");
    fs::rename(&src, &aside).unwrap();
    wait_for("the run_failed alert", Duration::from_secs(60), || {
        !alerts(&hook, "run_failed", "firing").is_empty()
    });
    let fired = &alerts(&hook, "run_failed", "firing")[0];
    assert_eq!(fired["job"], "docs");
    assert_eq!(fired["severity"], "critical");
    assert!(
        fired["summary"]
            .as_str()
            .unwrap()
            .contains(src.to_str().unwrap()),
        "names the missing source: {fired}"
    );
    // Several more failing runs: still one message (repeats wait 4 h by default).
    wait_for("three failed runs", Duration::from_secs(60), || {
        count(&job_history(&config, "docs"), "backup", "failed") >= 3
    });
    assert_eq!(alerts(&hook, "run_failed", "firing").len(), 1);

    // Back: the next good run resolves it.
    fs::rename(&aside, &src).unwrap();
    wait_for("the resolve", Duration::from_secs(60), || {
        !alerts(&hook, "run_failed", "resolved").is_empty()
    });
    assert_eq!(alerts(&hook, "run_failed", "resolved").len(), 1);
    assert_eq!(alerts(&hook, "run_failed", "firing").len(), 1);
    let log = daemon.log();
    assert!(
        log.contains("alert run_failed firing to hook: sent"),
        "{log}"
    );
    assert_eq!(daemon.stop(Duration::from_secs(30)), 0);
}

#[test]
fn an_rpo_breach_under_a_fast_clock_alerts_once_and_resolves_after_the_run() {
    let (env, src) = setup();
    let hook = WebhookReceiver::start(200, "{}");
    // The clock starts at midnight and runs 600x (a second is ten minutes). The job runs at
    // 03:00 (18 s in) with an RPO of one hour: from 01:00 (6 s in) the RPO is breached.
    let config = write_config(
        &env,
        &src,
        &hook.url,
        "",
        "schedule = \"0 3 * * *\"\ntimezone = \"UTC\"\nrpo = \"1h\"",
    );
    let daemon = DaemonProcess::start(
        &env,
        &config,
        &[("ARCA_TEST_CLOCK", "2026-03-01T00:00:00Zx600")],
    );
    wait_for("the rpo_breached alert", Duration::from_secs(30), || {
        !alerts(&hook, "rpo_breached", "firing").is_empty()
    });
    let fired = &alerts(&hook, "rpo_breached", "firing")[0];
    assert!(
        fired["summary"]
            .as_str()
            .unwrap()
            .contains("no good snapshot"),
        "{fired}"
    );
    // Evaluations go on every 5 s (50 min of test time) until the 03:00 run; the breach
    // is not repeated (default repeat: 4 h).
    wait_for("the run at 03:00", Duration::from_secs(60), || {
        count(&job_history(&config, "docs"), "backup", "success") >= 1
    });
    wait_for("the resolve", Duration::from_secs(30), || {
        !alerts(&hook, "rpo_breached", "resolved").is_empty()
    });
    assert_eq!(
        alerts(&hook, "rpo_breached", "firing").len(),
        1,
        "{:?}",
        hook.bodies()
    );
    let run = &job_history(&config, "docs")[0];
    assert!(
        run["start"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-01T03:0"),
        "the run served the 03:00 slot of the test clock: {run}"
    );
    assert_eq!(daemon.stop(Duration::from_secs(30)), 0);
}

#[test]
fn job_drills_are_recorded_fail_on_damage_naming_the_file_and_alert() {
    let (env, src) = setup();
    let hook = WebhookReceiver::start(200, "{}");
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    let target = env.path("recovered");
    let job = format!(
        "schedule = \"0 0 1 1 *\"\nrto = \"1h\"\n\
         [jobs.docs.drill]\nschedule = \"every 2s\"\nscratch = \"{}\"\ntarget = \"{}\"\n\
         checks = [\"test -n \\\"$(ls)\\\"\"]\n",
        scratch.display(),
        target.display()
    );
    let config = write_config(&env, &src, &hook.url, "", &job);
    run_with_config(&config, &["job", "run", "docs"]).ok();

    // A drill of the job from the command line: passes, is in the history with its report.
    let out = run_with_config(&config, &["--json", "drill", "run", "docs"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout_str(), out.stderr);
    let report = out.json();
    assert_eq!(report["passed"], true, "{report:#}");
    let drills: Vec<Value> = job_history(&config, "docs")
        .into_iter()
        .filter(|r| r["kind"] == "drill")
        .collect();
    assert_eq!(drills.len(), 1);
    assert_eq!(drills[0]["status"], "success");
    assert_eq!(drills[0]["report"]["passed"], true);
    assert_eq!(drills[0]["trigger"], "manual");

    // Recovery into the configured target (cold tier: everything into an empty target).
    let out = run_with_config(&config, &["recover", "docs"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout_str(), out.stderr);
    let restored = common::restored_path(&target, &src);
    assert_same_tree(&src, &restored);

    // Damage the largest data pack: the next drill fails and names what it lost.
    let pack_rel = common::damage_largest_pack(&env.repo, |size| size / 2, 64, 0x55);
    let out = run_with_config(&config, &["--json", "drill", "run", "docs"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout_str(), out.stderr);
    let report = out.json();
    assert_eq!(report["passed"], false);
    assert!(
        report.to_string().contains(&pack_rel),
        "names the pack: {report:#}"
    );

    // The daemon drills on its schedule, records the failure and alerts.
    let daemon = DaemonProcess::start(&env, &config, &[]);
    wait_for("the drill_failed alert", Duration::from_secs(60), || {
        !alerts(&hook, "drill_failed", "firing").is_empty()
    });
    let fired = &alerts(&hook, "drill_failed", "firing")[0];
    let summary = fired["summary"].as_str().unwrap();
    assert!(summary.contains("integrity"), "{fired}");
    assert!(
        summary.contains(src.to_str().unwrap()) || summary.contains(&pack_rel),
        "names the file or the pack: {fired}"
    );
    wait_for(
        "a scheduled drill in the history",
        Duration::from_secs(30),
        || {
            job_history(&config, "docs").iter().any(|r| {
                r["kind"] == "drill" && r["trigger"] == "schedule" && r["status"] == "failed"
            })
        },
    );
    assert_eq!(daemon.stop(Duration::from_secs(60)), 0);
    assert!(
        fs::read_dir(&scratch).unwrap().next().is_none(),
        "drills clean their scratch space"
    );
}

#[test]
fn alert_test_sends_through_a_configured_channel() {
    let (env, src) = setup();
    let hook = WebhookReceiver::start(200, "{}");
    let config = write_config(&env, &src, &hook.url, "", "schedule = \"every 1h\"");
    let out = run_with_config(&config, &["alert", "test", "hook"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(hook.bodies().len(), 1);
    assert_eq!(hook.bodies()[0]["state"], "firing");
    let out = run_with_config(&config, &["alert", "test", "nope"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no channel \"nope\""), "{}", out.stderr);
    assert!(out.stderr.contains("hook"), "lists the configured ones");
}

#[test]
fn bad_alert_and_drill_settings_are_refused_with_their_line() {
    let (env, src) = setup();
    let config = write_config(
        &env,
        &src,
        "ftp://example.com/x",
        "repeat = \"0s\"",
        "schedule = \"every 1h\"\nrto = \"soon\"\n[jobs.docs.alerts]\nchannels = [\"pager\"]\n\
         [jobs.docs.drill]\ntier = \"lukewarm\"\n",
    );
    let out = run_with_config(&config, &["config", "check"]);
    assert_ne!(out.code, 0);
    let err = out.stderr;
    for needle in [
        "[channels.hook]: url",
        "[alerts] repeat: invalid duration \"0s\"",
        "rto",
        "no [channels.pager] section",
        "unknown recovery tier \"lukewarm\"",
    ] {
        assert!(err.contains(needle), "{needle:?} missing in:\n{err}");
    }
    assert!(err.contains("arca.toml:"), "file and line: {err}");
}
