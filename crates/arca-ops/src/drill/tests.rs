//! Unit tests of drills, recoveries and their helpers.

use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn durations_parse_with_milliseconds() {
    let parse_duration = arca_core::units::parse_elapsed;
    assert_eq!(parse_duration("1ms").unwrap(), Duration::from_millis(1));
    assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(
        parse_duration("2s500ms").unwrap(),
        Duration::from_millis(2500)
    );
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("5x").is_err());
    assert!(parse_duration("").is_err());
    assert_eq!(
        format_duration(Duration::from_millis(5_400_250)),
        "1h30m250ms"
    );
    assert_eq!(
        parse_duration(&format_duration(Duration::from_millis(90_061_001))).unwrap(),
        Duration::from_millis(90_061_001)
    );
}

#[test]
fn command_timeout_kills_the_group() {
    let t = Instant::now();
    let o = run_command(
        "sleep 30 & sleep 30",
        None,
        &[],
        None,
        Duration::from_millis(300),
    );
    assert!(o.timed_out);
    assert!(!o.success());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the pipes were held open"
    );
    assert!(o.failure_reason().contains("timed out"));
}

#[test]
fn command_output_is_bounded_and_stdin_is_fed() {
    let o = run_command(
        "cat; head -c 100000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3",
        None,
        &[("ARCA_X", OsStr::new("1"))],
        Some(b"hello\n"),
        Duration::from_secs(10),
    );
    assert_eq!(o.exit_code, Some(3));
    assert!(o.truncated);
    assert!(o.stdout.len() <= OUTPUT_LIMIT);
    assert!(
        o.failure_reason().contains("code 3: oops"),
        "{}",
        o.failure_reason()
    );
    let o = run_command("cat", None, &[], Some(b"abc"), Duration::from_secs(10));
    assert_eq!(o.stdout, "abc");
    assert!(o.success());
}

#[test]
fn metadata_comparison_names_mode_and_kind_differences() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    fs::write(&p, b"x").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    let md = fs::symlink_metadata(&p).unwrap();
    let mut node = Node::new(b"f".to_vec(), NodeKind::File);
    node.mode = 0o640;
    node.uid = md.uid();
    node.gid = md.gid();
    assert!(compare_metadata("/f", &node, &md, true).is_empty());
    // Changed behind the restore's back.
    fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
    let md = fs::symlink_metadata(&p).unwrap();
    let d = compare_metadata("/f", &node, &md, true);
    assert_eq!(d, vec!["/f: mode 0666, the snapshot has 0640".to_string()]);
    node.uid = md.uid() + 1;
    let d = compare_metadata("/f", &node, &md, true);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[1].contains("owner uid"));
    assert_eq!(compare_metadata("/f", &node, &md, false).len(), 1);
    let dnode = Node::new(b"f".to_vec(), NodeKind::Dir);
    assert!(compare_metadata("/f", &dnode, &md, false)[0].contains("is not a Dir"));
}

#[test]
fn entropy_tells_random_from_text() {
    let text = b"the quick brown fox jumps over the lazy dog ".repeat(100);
    assert!(entropy(&text) < 5.0);
    let mut x = 0x1234_5678_9abc_def0u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    assert!(entropy(&random) > ENTROPY_THRESHOLD, "{}", entropy(&random));
    assert!(contains(b"abcdef", b"cde"));
    assert!(!contains(b"abcdef", b""));
}

#[test]
fn symlinks_leaving_the_tree_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("a")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("abs")).unwrap();
    std::os::unix::fs::symlink("../x", dir.path().join("a/up")).unwrap();
    std::os::unix::fs::symlink("../../x", dir.path().join("a/out")).unwrap();
    assert_eq!(symlinks_leaving(dir.path()), 2);
}

#[test]
fn tiers_parse_and_list_steps() {
    assert_eq!("warm".parse::<Tier>(), Ok(Tier::Warm));
    assert!("tepid".parse::<Tier>().is_err());
    assert_eq!(Tier::Cold.steps().len(), 2);
    assert!(Tier::Warm.steps()[3].contains("switch"));
    let hooks: RecoveryHooks =
        serde_json::from_str(r#"{"configure":["true"],"timeout":"30s"}"#).unwrap();
    assert_eq!(hooks.timeout, Duration::from_secs(30));
    assert!(serde_json::from_str::<RecoveryHooks>(r#"{"bogus":1}"#).is_err());
}
