//! Durations, tag lists, policy helpers, the JSON of decisions and calendar fixed points.

use super::*;

#[test]
fn parse_durations() {
    let d = |y, m, d, h| RetentionDuration {
        years: y,
        months: m,
        days: d,
        hours: h,
    };
    assert_eq!(parse_duration("1y2mo3d4h"), Ok(d(1, 2, 3, 4)));
    assert_eq!(parse_duration(" 4h3d "), Ok(d(0, 0, 3, 4)));
    assert_eq!(parse_duration("36h"), Ok(d(0, 0, 0, 36)));
    assert_eq!(parse_duration("2d1d"), Ok(d(0, 0, 3, 0)));
    assert_eq!(parse_duration("2w"), Ok(d(0, 0, 14, 0)));
    assert_eq!(parse_duration("0d"), Ok(d(0, 0, 0, 0)));
    assert_eq!("1mo".parse::<RetentionDuration>(), Ok(d(0, 1, 0, 0)));
    for bad in [
        "",
        "  ",
        "d",
        "5",
        "1m",
        "30min",
        "1d2",
        "-1d",
        "1.5d",
        "1D",
        "1d 2h",
        "99999999999d",
    ] {
        assert!(
            matches!(
                parse_duration(bad),
                Err(RetentionError::InvalidDuration { .. })
            ),
            "{bad:?} should not parse"
        );
    }
    assert_eq!(d(1, 2, 3, 4).to_string(), "1y2mo3d4h");
    assert_eq!(d(0, 0, 7, 0).to_string(), "7d");
    assert_eq!(d(0, 0, 0, 0).to_string(), "0h");
    let err = parse_duration("6m").unwrap_err().to_string();
    assert!(err.contains("write 6mo"), "{err}");
}

#[test]
fn tag_lists() {
    assert_eq!(parse_tag_list("a, b ,c"), ["a", "b", "c"]);
    assert_eq!(parse_tag_list(""), [""]);
}

#[test]
fn policy_helpers() {
    assert!(RetentionPolicy::default().is_empty());
    assert!(count(|p| p.keep_hourly = Some(0)).is_empty());
    assert!(count(|p| p.keep_within_yearly = Some(dur("0y"))).is_empty());
    assert!(!count(|p| p.keep_hourly = Some(-1)).is_empty());
    assert!(!count(|p| p.keep_within_hourly = Some(dur("1h"))).is_empty());
    assert!(!count(|p| p.keep_tags = vec![vec!["x".into()]]).is_empty());
    let gfs = RetentionPolicy::gfs_default();
    assert_eq!(
        (
            gfs.keep_daily,
            gfs.keep_weekly,
            gfs.keep_monthly,
            gfs.keep_yearly
        ),
        (Some(7), Some(4), Some(12), Some(7))
    );
    assert!(!gfs.is_empty() && gfs.validate().is_ok());
    assert_eq!(
        gfs.to_string(),
        "keep 7 daily, 4 weekly, 12 monthly, 7 yearly snapshots"
    );
    let p = count(|p| {
        p.keep_last = Some(-1);
        p.keep_within = Some(dur("2d"));
        p.keep_within_daily = Some(dur("1mo"));
        p.keep_tags = vec![vec!["a".into(), "b".into()], vec!["c".into()]];
    });
    assert_eq!(
        p.to_string(),
        "keep all latest snapshots, keep daily snapshots within 1mo and all snapshots \
         with tags [a, b] or [c] and all snapshots within 2d of the newest"
    );
    assert_eq!(
        count(|p| p.keep_daily = Some(-2)).validate(),
        Err(RetentionError::InvalidCount {
            rule: "daily",
            value: -2
        })
    );
    // Invalid counts are inactive, so they never cause deletions by themselves.
    assert!(count(|p| p.keep_daily = Some(-2)).is_empty());
    assert!(apply_policy(&gfs, &[]).is_empty());
}

#[test]
fn decision_json() {
    let cs = vec![cand(1, "2024-01-02T03:04:05+02:00")];
    let out = apply_policy(&count(|p| p.keep_last = Some(1)), &cs);
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "id": id(1).to_hex(),
            "time": "2024-01-02T01:04:05Z",
            "keep": true,
            "reasons": ["last snapshot"],
        }])
    );
    let d = serde_json::to_value(dur("1y2h")).unwrap();
    assert_eq!(
        d,
        serde_json::json!({"years": 1, "months": 0, "days": 0, "hours": 2})
    );
    assert!(serde_json::to_value(RetentionPolicy::gfs_default()).is_ok());
}

#[test]
fn calendar_fixed_points() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(iso_week(days_from_civil(2020, 12, 31)), (2020, 53));
    assert_eq!(iso_week(days_from_civil(2021, 1, 3)), (2020, 53));
    assert_eq!(iso_week(days_from_civil(2021, 1, 4)), (2021, 1));
    assert_eq!(iso_week(days_from_civil(2008, 12, 29)), (2009, 1));
    // Go's AddDate normalisation.
    let c = cand(0, "2024-03-31T12:00:00Z");
    let cut = within_cutoff(&c, dur("1mo"));
    assert_eq!(cut, parse_rfc3339("2024-03-02T12:00:00Z").0.as_nanosecond());
    let c = cand(0, "2024-01-31T12:00:00Z");
    let cut = within_cutoff(&c, dur("2mo"));
    assert_eq!(cut, parse_rfc3339("2023-12-01T12:00:00Z").0.as_nanosecond());
    let c = cand(0, "2024-03-01T00:30:00+01:00");
    let cut = within_cutoff(&c, dur("1d1h"));
    assert_eq!(
        cut,
        parse_rfc3339("2024-02-28T23:30:00+01:00").0.as_nanosecond()
    );
}
