//! Unit tests of job runs and their hooks.

use super::*;

#[test]
fn hooks_capture_output_and_time_out() {
    let r = run_hook(
        "echo out; echo err >&2; exit 0",
        Duration::from_secs(5),
        &[],
    );
    assert!(r.ok);
    assert!(
        r.output.contains("out") && r.output.contains("err"),
        "{}",
        r.output
    );
    let r = run_hook(
        "echo $ARCA_JOB; exit 3",
        Duration::from_secs(5),
        &[("ARCA_JOB", "docs".into())],
    );
    assert!(!r.ok);
    assert!(r.output.contains("docs"));
    let t = Instant::now();
    let r = run_hook(
        "echo started; sleep 30 & sleep 30",
        Duration::from_millis(300),
        &[],
    );
    assert!(!r.ok);
    assert!(r.detail.contains("timed out"));
    assert!(r.output.contains("started"));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn three_two_one_counts() {
    let repo = |name: &str, media: &str, offsite: bool| RepositoryConfig {
        name: name.into(),
        location: "/x".into(),
        password: PasswordSource::Env("X".into()),
        password_command_timeout: Duration::from_secs(60),
        media: media.into(),
        offsite,
        connections: None,
        upload_limit_kib: None,
        download_limit_kib: None,
        append_only: false,
        cache: true,
        cache_dir: None,
        lock_wait: crate::config::DEFAULT_LOCK_WAIT,
    };
    let a = repo("a", "disk", false);
    let b = repo("b", "s3", true);
    let c = repo("c", "disk", false);
    assert!(three_two_one(&[&a, &b]).ok);
    let s = three_two_one(&[&a, &c]);
    assert_eq!((s.copies, s.media, s.offsite, s.ok), (3, 1, 0, false));
    assert!(!three_two_one(&[&a]).ok);
}
