//! The decision table: named cases of policies over snapshot times, each with the kept snapshots and their reasons.

use super::*;

fn cases() -> Vec<Case> {
    [
        count_cases(),
        bucket_count_cases(),
        calendar_cases(),
        within_cases(),
        within_bucket_cases(),
        tag_and_mixed_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Count rules: keep-last and daily budgets.
fn count_cases() -> Vec<Case> {
    const LAST: &[&str] = &["last snapshot"];
    const DAILY: &[&str] = &["daily snapshot"];
    vec![
        Case {
            name: "keep-last 3 of 5 (input unordered)",
            policy: count(|p| p.keep_last = Some(3)),
            snaps: cands(&[
                "2024-01-03T10:00:00Z",
                "2024-01-05T10:00:00Z",
                "2024-01-01T10:00:00Z",
                "2024-01-04T10:00:00Z",
                "2024-01-02T10:00:00Z",
            ]),
            kept: vec![(1, LAST), (3, LAST), (0, LAST)],
        },
        Case {
            name: "keep-last larger than the group keeps all",
            policy: count(|p| p.keep_last = Some(10)),
            snaps: cands(&["2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z"]),
            kept: vec![(0, LAST), (1, LAST)],
        },
        Case {
            name: "keep-last ties broken by id",
            policy: count(|p| p.keep_last = Some(2)),
            snaps: vec![
                cand(7, "2024-01-01T10:00:00Z"),
                cand(3, "2024-01-01T10:00:00Z"),
                cand(5, "2024-01-01T10:00:00Z"),
            ],
            // indices into `snaps`: ids 3 and 5.
            kept: vec![(1, LAST), (2, LAST)],
        },
        Case {
            name: "daily 2: newest of each day, budget exhausted",
            policy: count(|p| p.keep_daily = Some(2)),
            snaps: cands(&[
                "2024-05-01T08:00:00Z",
                "2024-05-01T12:00:00Z",
                "2024-05-01T18:00:00Z",
                "2024-05-02T09:00:00Z",
                "2024-05-02T21:00:00Z",
                "2024-05-03T10:00:00Z",
            ]),
            kept: vec![(5, DAILY), (4, DAILY)],
        },
        Case {
            name: "daily 5: spare budget also keeps the oldest snapshot",
            policy: count(|p| p.keep_daily = Some(5)),
            snaps: cands(&[
                "2024-05-01T08:00:00Z",
                "2024-05-01T12:00:00Z",
                "2024-05-01T18:00:00Z",
                "2024-05-02T09:00:00Z",
                "2024-05-02T21:00:00Z",
                "2024-05-03T10:00:00Z",
            ]),
            kept: vec![
                (5, DAILY),
                (4, DAILY),
                (2, DAILY),
                (0, &["oldest daily snapshot"]),
            ],
        },
        Case {
            name: "daily 3: last unit of budget spent on a day, oldest not kept",
            policy: count(|p| p.keep_daily = Some(3)),
            snaps: cands(&[
                "2024-05-01T08:00:00Z",
                "2024-05-01T18:00:00Z",
                "2024-05-02T21:00:00Z",
                "2024-05-03T10:00:00Z",
            ]),
            kept: vec![(3, DAILY), (2, DAILY), (1, DAILY)],
        },
    ]
}

/// Count rules by calendar bucket: weekly across ISO years, monthly, yearly, unlimited and
/// zero counts.
fn bucket_count_cases() -> Vec<Case> {
    const LAST: &[&str] = &["last snapshot"];
    const DAILY: &[&str] = &["daily snapshot"];
    const WEEKLY: &[&str] = &["weekly snapshot"];
    const YEARLY: &[&str] = &["yearly snapshot"];
    vec![
        Case {
            name: "weekly across the ISO year boundary (2020-W53)",
            policy: count(|p| p.keep_weekly = Some(3)),
            snaps: cands(&[
                "2020-12-27T12:00:00Z", // Sun, 2020-W52
                "2020-12-28T12:00:00Z", // Mon, 2020-W53
                "2020-12-31T12:00:00Z", // Thu, 2020-W53
                "2021-01-03T12:00:00Z", // Sun, 2020-W53
                "2021-01-04T12:00:00Z", // Mon, 2021-W01
            ]),
            kept: vec![(4, WEEKLY), (3, WEEKLY), (0, WEEKLY)],
        },
        Case {
            name: "weekly: 2025-12-29 belongs to 2026-W01",
            policy: count(|p| {
                p.keep_weekly = Some(2);
                p.keep_monthly = Some(2);
            }),
            snaps: cands(&[
                "2025-12-28T12:00:00Z", // Sun, 2025-W52
                "2025-12-29T12:00:00Z", // Mon, 2026-W01
                "2026-01-01T12:00:00Z", // Thu, 2026-W01
            ]),
            kept: vec![
                (2, &["weekly snapshot", "monthly snapshot"]),
                (1, &["monthly snapshot"]),
                (0, WEEKLY),
            ],
        },
        Case {
            name: "monthly 3 and yearly 2",
            policy: count(|p| {
                p.keep_monthly = Some(3);
                p.keep_yearly = Some(2);
            }),
            snaps: cands(&[
                "2021-06-15T12:00:00Z",
                "2022-06-15T12:00:00Z",
                "2023-01-10T12:00:00Z",
                "2023-01-20T12:00:00Z",
                "2023-02-01T12:00:00Z",
                "2023-02-28T12:00:00Z",
                "2023-03-05T12:00:00Z",
            ]),
            kept: vec![
                (6, &["monthly snapshot", "yearly snapshot"]),
                (5, &["monthly snapshot"]),
                (3, &["monthly snapshot"]),
                (1, YEARLY),
            ],
        },
        Case {
            name: "yearly -1 (unlimited) keeps every year and the oldest",
            policy: count(|p| p.keep_yearly = Some(-1)),
            snaps: cands(&[
                "2019-03-01T12:00:00Z",
                "2019-07-01T12:00:00Z",
                "2020-07-01T12:00:00Z",
                "2021-07-01T12:00:00Z",
                "2022-01-01T12:00:00Z",
                "2022-07-01T12:00:00Z",
            ]),
            kept: vec![
                (5, YEARLY),
                (3, YEARLY),
                (2, YEARLY),
                (1, YEARLY),
                (0, &["oldest yearly snapshot"]),
            ],
        },
        Case {
            name: "keep-last -1 keeps everything",
            policy: count(|p| p.keep_last = Some(-1)),
            snaps: cands(&[
                "2024-01-01T10:00:00Z",
                "2024-01-01T10:00:00Z",
                "2024-01-02T10:00:00Z",
            ]),
            kept: vec![(0, LAST), (1, LAST), (2, LAST)],
        },
        Case {
            name: "N = 0 keeps nothing for that rule",
            policy: count(|p| {
                p.keep_last = Some(0);
                p.keep_daily = Some(1);
                p.keep_weekly = Some(0);
            }),
            snaps: cands(&[
                "2024-01-01T10:00:00Z",
                "2024-01-02T10:00:00Z",
                "2024-01-03T10:00:00Z",
            ]),
            kept: vec![(2, DAILY)],
        },
    ]
}

/// Buckets in the snapshot's own local time: leap days, time zones, daylight-saving changes, mixed offsets.
fn calendar_cases() -> Vec<Case> {
    const DAILY: &[&str] = &["daily snapshot"];
    const HOURLY: &[&str] = &["hourly snapshot"];
    const YEARLY: &[&str] = &["yearly snapshot"];
    vec![
        Case {
            name: "leap day is its own daily/monthly bucket",
            policy: count(|p| {
                p.keep_daily = Some(3);
                p.keep_monthly = Some(2);
            }),
            snaps: cands(&[
                "2024-02-28T23:00:00Z",
                "2024-02-29T01:00:00Z",
                "2024-02-29T23:59:59Z",
                "2024-03-01T00:00:00Z",
            ]),
            kept: vec![
                (3, &["daily snapshot", "monthly snapshot"]),
                (2, &["daily snapshot", "monthly snapshot"]),
                (0, DAILY),
            ],
        },
        Case {
            name: "buckets use the snapshot's own local time",
            // 21:30Z and 22:30Z on 2024-10-26 are 23:30 and 00:30 local in Berlin.
            policy: count(|p| p.keep_daily = Some(5)),
            snaps: vec![
                berlin(0, "2024-10-26T23:30", false),
                berlin(1, "2024-10-27T00:30", false),
            ],
            kept: vec![(1, DAILY), (0, DAILY)],
        },
        Case {
            name: "DST spring forward: 01:30 CET and 03:30 CEST are distinct hours, one day",
            policy: count(|p| {
                p.keep_hourly = Some(5);
                p.keep_daily = Some(1);
            }),
            snaps: vec![
                berlin(0, "2024-03-31T01:30", false),
                berlin(1, "2024-03-31T03:30", false),
            ],
            kept: vec![(1, &["hourly snapshot", "daily snapshot"]), (0, HOURLY)],
        },
        Case {
            name: "DST fall back: 02:30 CEST and 02:30 CET are the same day",
            policy: count(|p| p.keep_daily = Some(2)),
            snaps: vec![
                berlin(0, "2024-10-27T02:30", false),
                berlin(1, "2024-10-27T02:30", true),
                berlin(2, "2024-10-27T01:30", false),
                berlin(3, "2024-10-26T12:00", false),
            ],
            kept: vec![(1, DAILY), (3, DAILY)],
        },
        Case {
            // restic buckets by the local civil hour (YYYYMMDDHH), so the repeated
            // 02:xx hour after the fall-back is one bucket; 01:30 and 03:30 are others.
            name: "DST fall back: hourly buckets are local civil hours",
            policy: count(|p| p.keep_hourly = Some(3)),
            snaps: vec![
                berlin(0, "2024-10-27T01:30", false),
                berlin(1, "2024-10-27T02:10", false),
                berlin(2, "2024-10-27T02:50", false),
                berlin(3, "2024-10-27T02:10", true),
                berlin(4, "2024-10-27T02:50", true),
                berlin(5, "2024-10-27T03:30", false),
            ],
            kept: vec![(5, HOURLY), (4, HOURLY), (0, HOURLY)],
        },
        Case {
            name: "different offsets in one group: bucket changes follow local dates",
            policy: count(|p| p.keep_daily = Some(-1)),
            snaps: cands(&[
                "2023-12-31T22:00:00-05:00", // 03:00Z, local day 12-31
                "2024-01-01T03:00:00+01:00", // 02:00Z, local day 01-01
                "2023-12-31T20:00:00-05:00", // 01:00Z, local day 12-31 again
                "2023-12-31T23:30:00Z",      // 23:30Z, local day 12-31
            ]),
            kept: vec![
                (0, DAILY),
                (1, DAILY),
                (2, DAILY),
                (3, &["oldest daily snapshot"]),
            ],
        },
        Case {
            name: "different offsets: yearly",
            policy: count(|p| p.keep_yearly = Some(2)),
            snaps: cands(&[
                "2024-01-01T00:30:00+01:00", // 23:30Z, local 2024
                "2023-12-31T23:45:00Z",      // newest, local 2023
                "2024-01-01T08:00:00+09:00", // 23:00Z, local 2024
            ]),
            kept: vec![(1, YEARLY), (0, YEARLY)],
        },
    ]
}

/// keep-within: calendar spans from the newest snapshot, as restic (Go's AddDate) computes them.
fn within_cases() -> Vec<Case> {
    vec![
        Case {
            name: "keep-within 1mo from 2024-03-31 (Go AddDate: cutoff 2024-03-02)",
            policy: count(|p| p.keep_within = Some(dur("1mo"))),
            snaps: cands(&[
                "2024-03-31T12:00:00Z",
                "2024-03-02T12:00:01Z",
                "2024-03-02T12:00:00Z",
                "2024-03-01T12:00:00Z",
                "2024-02-29T12:00:00Z",
            ]),
            kept: vec![(0, &["within 1mo"]), (1, &["within 1mo"])],
        },
        Case {
            name: "keep-within 1mo from 2023-03-31 (cutoff 2023-03-03)",
            policy: count(|p| p.keep_within = Some(dur("1mo"))),
            snaps: cands(&[
                "2023-03-31T12:00:00Z",
                "2023-03-03T12:00:00.000000001Z",
                "2023-03-03T12:00:00Z",
                "2023-02-28T12:00:00Z",
            ]),
            kept: vec![(0, &["within 1mo"]), (1, &["within 1mo"])],
        },
        Case {
            name: "keep-within 1y from the leap day (cutoff 2023-03-01)",
            policy: count(|p| p.keep_within = Some(dur("1y"))),
            snaps: cands(&[
                "2024-02-29T10:00:00Z",
                "2023-03-01T10:30:00Z",
                "2023-03-01T10:00:00Z",
                "2023-02-28T23:00:00Z",
            ]),
            kept: vec![(0, &["within 1y"]), (1, &["within 1y"])],
        },
        Case {
            name: "keep-within 1d2h: days on the calendar, then absolute hours",
            policy: count(|p| p.keep_within = Some(dur("1d2h"))),
            snaps: cands(&[
                "2024-03-31T12:00:00Z",
                "2024-03-30T10:00:01Z",
                "2024-03-30T10:00:00Z",
            ]),
            kept: vec![(0, &["within 1d2h"]), (1, &["within 1d2h"])],
        },
        Case {
            name: "keep-within relative to the newest snapshot, not to now",
            policy: count(|p| p.keep_within = Some(dur("2d"))),
            snaps: cands(&[
                "2001-01-10T00:00:00Z",
                "2001-01-08T00:00:01Z",
                "2001-01-08T00:00:00Z",
            ]),
            kept: vec![(0, &["within 2d"]), (1, &["within 2d"])],
        },
        Case {
            // Calendar arithmetic happens at the newest snapshot's fixed offset (+02:00):
            // 2024-03-31T12:00+02:00 minus 1d = 2024-03-30T12:00+02:00 = 10:00Z.
            name: "keep-within across the spring-forward uses the newest offset",
            policy: count(|p| p.keep_within = Some(dur("1d"))),
            snaps: vec![
                berlin(0, "2024-03-31T12:00", false),
                berlin(1, "2024-03-30T11:30", false), // 10:30Z
                berlin(2, "2024-03-30T10:59", false), // 09:59Z
            ],
            kept: vec![(0, &["within 1d"]), (1, &["within 1d"])],
        },
    ]
}

/// keep-within-hourly/daily/weekly/monthly/yearly.
fn within_bucket_cases() -> Vec<Case> {
    vec![
        Case {
            name: "keep-within-daily 2d",
            policy: count(|p| p.keep_within_daily = Some(dur("2d"))),
            snaps: every_6h("2024-05-06", 5),
            // 05-10T20:00 is the newest; the cutoff 05-08T20:00 is exclusive.
            kept: vec![(19, &["daily within 2d"]), (15, &["daily within 2d"])],
        },
        Case {
            name: "keep-within-daily 10d covers everything: also the oldest",
            policy: count(|p| p.keep_within_daily = Some(dur("10d"))),
            snaps: every_6h("2024-05-06", 5),
            kept: vec![
                (19, &["daily within 10d"]),
                (15, &["daily within 10d"]),
                (11, &["daily within 10d"]),
                (7, &["daily within 10d"]),
                (3, &["daily within 10d"]),
                (0, &["oldest daily within 10d"]),
            ],
        },
        Case {
            name: "keep-within-hourly 12h, weekly/monthly/yearly 1y",
            policy: count(|p| {
                p.keep_within_hourly = Some(dur("12h"));
                p.keep_within_weekly = Some(dur("1y"));
                p.keep_within_monthly = Some(dur("1y"));
                p.keep_within_yearly = Some(dur("1y"));
            }),
            // 2024-05-04/05 are in ISO week 18, 2024-05-06..08 in week 19.
            snaps: every_6h("2024-05-04", 5),
            kept: vec![
                (
                    19,
                    &[
                        "hourly within 12h",
                        "weekly within 1y",
                        "monthly within 1y",
                        "yearly within 1y",
                    ],
                ),
                (18, &["hourly within 12h"]),
                (7, &["weekly within 1y"]),
                (
                    0,
                    &[
                        "oldest weekly within 1y",
                        "oldest monthly within 1y",
                        "oldest yearly within 1y",
                    ],
                ),
            ],
        },
    ]
}

/// keep-tag, every reason together, and empty policies.
fn tag_and_mixed_cases() -> Vec<Case> {
    vec![
        Case {
            name: "keep-tag: every tag of a list must be present",
            policy: count(|p| {
                p.keep_tags = vec![
                    vec!["a".into(), "b".into()],
                    vec!["x".into()],
                    vec!["y".into()],
                ];
            }),
            snaps: vec![
                tagged(0, "2024-01-01T00:00:00Z", &["a"]),
                tagged(1, "2024-01-02T00:00:00Z", &["b", "a", "c"]),
                tagged(2, "2024-01-03T00:00:00Z", &["x", "y"]),
                tagged(3, "2024-01-04T00:00:00Z", &[]),
                tagged(4, "2024-01-05T00:00:00Z", &["y"]),
            ],
            kept: vec![
                (1, &["has tags [a, b]"]),
                (2, &["has tags [x]", "has tags [y]"]),
                (4, &["has tags [y]"]),
            ],
        },
        Case {
            name: "keep-tag \"\" matches untagged snapshots",
            policy: count(|p| p.keep_tags = vec![parse_tag_list("")]),
            snaps: vec![
                tagged(0, "2024-01-01T00:00:00Z", &["a"]),
                tagged(1, "2024-01-02T00:00:00Z", &[]),
            ],
            kept: vec![(1, &["has tags []"])],
        },
        Case {
            name: "all reasons, in restic's order",
            policy: RetentionPolicy {
                keep_last: Some(1),
                keep_hourly: Some(1),
                keep_daily: Some(1),
                keep_weekly: Some(1),
                keep_monthly: Some(1),
                keep_yearly: Some(1),
                keep_within: Some(dur("1h")),
                keep_within_daily: Some(dur("1d")),
                keep_tags: vec![vec!["t".into()]],
                ..Default::default()
            },
            snaps: vec![
                tagged(0, "2024-01-01T00:00:00Z", &["t"]),
                tagged(1, "2024-01-10T00:00:00Z", &["t"]),
            ],
            kept: vec![
                (
                    1,
                    &[
                        "has tags [t]",
                        "within 1h",
                        "last snapshot",
                        "hourly snapshot",
                        "daily snapshot",
                        "weekly snapshot",
                        "monthly snapshot",
                        "yearly snapshot",
                        "daily within 1d",
                    ],
                ),
                (0, &["has tags [t]"]),
            ],
        },
        Case {
            name: "empty policy keeps everything",
            policy: RetentionPolicy::default(),
            snaps: cands(&["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"]),
            kept: vec![(0, &["policy is empty"]), (1, &["policy is empty"])],
        },
        Case {
            name: "only zero rules is an empty policy",
            policy: count(|p| {
                p.keep_daily = Some(0);
                p.keep_within = Some(dur("0d"));
            }),
            snaps: cands(&["2024-01-01T00:00:00Z"]),
            kept: vec![(0, &["policy is empty"])],
        },
    ]
}

/// Snapshots at 02:00, 08:00, 14:00 and 20:00 UTC for `days` days from `start`.
fn every_6h(start: &str, days: i64) -> Vec<Candidate> {
    let start: Date = start.parse().unwrap();
    let mut out = Vec::new();
    for d in 0..days {
        let date = start.checked_add(d.days()).unwrap();
        for h in [2, 8, 14, 20] {
            out.push(cand(out.len(), &format!("{date}T{h:02}:00:00Z")));
        }
    }
    out
}

#[test]
fn table() {
    for case in cases() {
        let got = run(&case.policy, &case.snaps);
        assert_eq!(got, expect(&case.kept), "case {:?}", case.name);
    }
}

#[test]
fn table_is_independent_of_input_order() {
    for case in cases() {
        let forward = apply_policy(&case.policy, &case.snaps);
        let mut rev = case.snaps.clone();
        rev.reverse();
        assert_eq!(
            forward,
            apply_policy(&case.policy, &rev),
            "case {:?}",
            case.name
        );
    }
}

#[test]
fn berlin_offsets_are_real() {
    assert_eq!(berlin(0, "2024-03-31T01:30", false).utc_offset_secs, 3600);
    assert_eq!(berlin(0, "2024-03-31T03:30", false).utc_offset_secs, 7200);
    let before = berlin(0, "2024-10-27T02:30", false);
    let after = berlin(0, "2024-10-27T02:30", true);
    assert_eq!(before.utc_offset_secs, 7200);
    assert_eq!(after.utc_offset_secs, 3600);
    assert_eq!(before.time, "2024-10-27T00:30:00Z".parse().unwrap());
    assert_eq!(after.time, "2024-10-27T01:30:00Z".parse().unwrap());
}
