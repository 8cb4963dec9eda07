//! Unit tests of [`super`] (alerts).

use super::*;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

fn base() -> JobState {
    JobState {
        job: "docs".into(),
        configured_since: Some(t("2026-01-01T00:00:00Z")),
        ..Default::default()
    }
}

fn rules_firing(s: &JobState, now: &str) -> Vec<Rule> {
    evaluate(s, &RuleSettings::default(), t(now))
        .into_iter()
        .map(|c| c.rule)
        .collect()
}

#[test]
fn run_failed_fires_and_resolves_with_the_next_good_run() {
    let mut s = base();
    s.last_run = Some(FinishedRun {
        started: t("2026-01-02T00:00:00Z"),
        ended: t("2026-01-02T00:01:00Z"),
        succeeded: false,
        error: Some("source /x does not exist".into()),
    });
    let c = run_failed(&s).unwrap();
    assert!(c.summary.contains("/x does not exist"));
    assert_eq!(c.severity, Severity::Critical);
    let mut tr = AlertTracker::default();
    let sent = tr.update(
        "docs",
        &evaluate(&s, &RuleSettings::default(), t("2026-01-02T00:02:00Z")),
        t("2026-01-02T00:02:00Z"),
        DEFAULT_REPEAT,
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, AlertState::Firing);
    assert_eq!(sent[0].rule, "run_failed");
    s.last_run.as_mut().unwrap().succeeded = true;
    assert!(run_failed(&s).is_none());
    let sent = tr.update(
        "docs",
        &evaluate(&s, &RuleSettings::default(), t("2026-01-02T00:10:00Z")),
        t("2026-01-02T00:10:00Z"),
        DEFAULT_REPEAT,
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, AlertState::Resolved);
    assert!(sent[0].summary.starts_with("resolved: "));
    // The resolve is sent once.
    let sent = tr.update("docs", &[], t("2026-01-02T00:11:00Z"), DEFAULT_REPEAT);
    assert!(sent.is_empty());
}

#[test]
fn run_late_waits_for_the_grace_period() {
    let mut s = base();
    s.running = Some(RunningRun {
        started: t("2026-01-02T00:00:00Z"),
        expected_end: t("2026-01-02T01:00:00Z"),
    });
    assert!(run_late(&s, t("2026-01-02T00:59:00Z"), mins(30)).is_none());
    assert!(run_late(&s, t("2026-01-02T01:29:00Z"), mins(30)).is_none());
    let c = run_late(&s, t("2026-01-02T01:30:00Z"), mins(30)).unwrap();
    assert!(c.summary.contains("30m past"), "{}", c.summary);
    assert_eq!(
        rules_firing(&s, "2026-01-02T02:00:00Z"),
        vec![Rule::RunLate]
    );
    // The run finishes: resolved.
    s.running = None;
    assert!(rules_firing(&s, "2026-01-02T02:00:00Z").is_empty());
    let over = RuleSettings {
        late_after: Some(mins(5)),
        ..Default::default()
    };
    s.running = Some(RunningRun {
        started: t("2026-01-02T00:00:00Z"),
        expected_end: t("2026-01-02T01:00:00Z"),
    });
    assert_eq!(evaluate(&s, &over, t("2026-01-02T01:06:00Z")).len(), 1);
}

#[test]
fn window_missed_until_a_run_starts_in_a_window() {
    let mut s = base();
    s.last_window = Some(ClosedWindow {
        start: t("2026-01-02T22:00:00Z"),
        end: t("2026-01-03T06:00:00Z"),
    });
    s.last_success_started = Some(t("2026-01-01T23:00:00Z"));
    // The window is still open: not yet.
    assert!(window_missed(&s, t("2026-01-03T05:00:00Z")).is_none());
    assert!(window_missed(&s, t("2026-01-03T06:00:00Z")).is_some());
    s.last_success_started = Some(t("2026-01-02T22:30:00Z"));
    assert!(window_missed(&s, t("2026-01-03T06:00:00Z")).is_none());
}

#[test]
fn rpo_breach_counts_from_the_last_good_snapshot_or_the_configuration() {
    let mut s = base();
    s.rpo = Some(Duration::from_secs(3600));
    // No snapshot yet: counted from the configuration.
    assert!(rpo_breached(&s, t("2026-01-01T00:59:00Z")).is_none());
    let c = rpo_breached(&s, t("2026-01-01T01:01:00Z")).unwrap();
    assert!(c.summary.contains("no good snapshot"), "{}", c.summary);
    s.last_good_snapshot = Some(t("2026-01-01T01:00:00Z"));
    assert!(rpo_breached(&s, t("2026-01-01T02:00:00Z")).is_none());
    let c = rpo_breached(&s, t("2026-01-01T02:00:01Z")).unwrap();
    assert_eq!(c.details["age"], "1h1s");
    assert_eq!(c.details["rpo"], "1h");
    // Off for this job.
    let off = RuleSettings {
        rpo_breached: Some(false),
        ..Default::default()
    };
    assert!(evaluate(&s, &off, t("2026-01-05T00:00:00Z")).is_empty());
}

fn drill(passed: bool, failed: &[&str], secs: f64) -> DrillFacts {
    DrillFacts {
        time: t("2026-01-02T00:00:00Z"),
        passed,
        failed_steps: failed.iter().map(|s| s.to_string()).collect(),
        reason: failed.first().map(|_| "data/ab/abcd: damaged".to_string()),
        recovery_secs: secs,
        projected_full_restore_secs: Some(secs),
    }
}

#[test]
fn drill_failed_and_rto_exceeded_are_separate() {
    let mut s = base();
    s.rto = Some(Duration::from_secs(60));
    s.last_drill = Some(drill(true, &[], 10.0));
    assert!(rules_firing(&s, "2026-01-02T00:00:00Z").is_empty());
    s.last_drill = Some(drill(false, &["integrity"], 10.0));
    let c = drill_failed(&s).unwrap();
    assert!(c.summary.contains("integrity"));
    assert!(c.summary.contains("data/ab/abcd"));
    assert!(rto_exceeded(&s).is_none());
    // Only slow: RTO exceeded, not a failed drill.
    s.last_drill = Some(drill(false, &["performance"], 120.0));
    assert!(drill_failed(&s).is_none());
    assert_eq!(
        rules_firing(&s, "2026-01-02T00:00:00Z"),
        vec![Rule::RtoExceeded]
    );
    // The next drill is fine: both resolved.
    let mut tr = AlertTracker::default();
    let now = t("2026-01-02T00:00:00Z");
    assert_eq!(
        tr.update(
            "docs",
            &evaluate(&s, &RuleSettings::default(), now),
            now,
            DEFAULT_REPEAT
        )
        .len(),
        1
    );
    s.last_drill = Some(drill(true, &[], 5.0));
    let sent = tr.update(
        "docs",
        &evaluate(&s, &RuleSettings::default(), now),
        now,
        DEFAULT_REPEAT,
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].rule.as_str(), sent[0].state),
        ("rto_exceeded", AlertState::Resolved)
    );
}

#[test]
fn storage_above_threshold() {
    let mut s = base();
    s.storage = vec![StorageFacts {
        repository: "local".into(),
        used_bytes: 89,
        capacity_bytes: 100,
    }];
    assert!(storage_full(&s, 90.0).is_none());
    s.storage[0].used_bytes = 90;
    let c = storage_full(&s, 90.0).unwrap();
    assert!(c.summary.contains("90.0% full"));
    let over = RuleSettings {
        storage_percent: Some(95.0),
        ..Default::default()
    };
    assert!(evaluate(&s, &over, t("2026-01-02T00:00:00Z")).is_empty());
    let facts = local_storage("here", Path::new("/")).unwrap();
    assert!(facts.capacity_bytes > 0 && facts.used_bytes <= facts.capacity_bytes);
}

#[test]
fn repeats_are_rate_limited_per_rule_and_job() {
    let mut s = base();
    s.rpo = Some(Duration::from_secs(3600));
    s.last_good_snapshot = Some(t("2026-01-01T00:00:00Z"));
    let other = JobState {
        job: "mail".into(),
        ..s.clone()
    };
    let mut tr = AlertTracker::default();
    let repeat = Duration::from_secs(3600);
    let mut sent_docs = 0;
    let mut sent_mail = 0;
    // Every minute for three hours: the first, then one per hour.
    let start = t("2026-01-01T02:00:00Z");
    for m in 0..180 {
        let now = start
            .checked_add(jiff::SignedDuration::from_secs(m * 60))
            .unwrap();
        let c = evaluate(&s, &RuleSettings::default(), now);
        sent_docs += tr.update("docs", &c, now, repeat).len();
        let c = evaluate(&other, &RuleSettings::default(), now);
        sent_mail += tr.update("mail", &c, now, repeat).len();
    }
    assert_eq!(sent_docs, 3, "sent at 02:00, 03:00, 04:00");
    assert_eq!(sent_mail, 3);
    // A new snapshot: one resolve for docs only.
    s.last_good_snapshot = Some(t("2026-01-01T05:00:00Z"));
    let now = t("2026-01-01T05:00:30Z");
    let sent = tr.update(
        "docs",
        &evaluate(&s, &RuleSettings::default(), now),
        now,
        repeat,
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, AlertState::Resolved);
    assert_eq!(sent[0].details["firing_since"], "2026-01-01T02:00:00Z");
    assert!(tr.active.contains_key("mail/rpo_breached"));
    assert!(!tr.active.contains_key("docs/rpo_breached"));
    // The tracker survives a restart as JSON.
    let json = serde_json::to_string(&tr).unwrap();
    let back: AlertTracker = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tr);
}

#[test]
fn settings_merge_and_refuse_unknown_keys() {
    let defaults: RuleSettings =
        serde_json::from_str(r#"{"repeat":"1h","storage_percent":80}"#).unwrap();
    let job: RuleSettings =
        serde_json::from_str(r#"{"storage_percent":95,"run_late":false}"#).unwrap();
    let m = defaults.merged(&job);
    assert_eq!(m.repeat(), Duration::from_secs(3600));
    assert_eq!(m.storage_percent(), 95.0);
    assert!(!m.enabled(Rule::RunLate));
    assert!(m.enabled(Rule::RunFailed));
    assert!(serde_json::from_str::<RuleSettings>(r#"{"rpo":"1h"}"#).is_err());
    let t: RuleSettings = toml::from_str("repeat = \"30m\"\nrun_late = false\n").unwrap();
    assert_eq!(t.repeat(), Duration::from_secs(1800));
    assert!(toml::from_str::<RuleSettings>("repeats = \"30m\"\n").is_err());
    let bad = RuleSettings {
        storage_percent: Some(120.0),
        ..Default::default()
    };
    assert_eq!(bad.problems().len(), 1);
}
