//! Unit tests of [`super`] (retention).

use super::*;

use std::collections::BTreeMap;

use jiff::civil::{self, Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{Span, ToSpan};
use proptest::prelude::*;

// ---------------------------------------------------------------- helpers

fn id(n: usize) -> Id {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(n as u64).to_be_bytes());
    Id(b)
}

/// Parses `YYYY-MM-DDTHH:MM[:SS[.f]](Z|±HH:MM)` into (timestamp, offset seconds).
fn parse_rfc3339(s: &str) -> (Timestamp, i32) {
    let ts: Timestamp = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
    let offset = if s.ends_with('Z') {
        0
    } else {
        let tail = &s[s.len() - 6..];
        let sign = if tail.starts_with('-') { -1 } else { 1 };
        let h: i32 = tail[1..3].parse().unwrap();
        let m: i32 = tail[4..6].parse().unwrap();
        sign * (h * 3600 + m * 60)
    };
    (ts, offset)
}

fn cand(n: usize, s: &str) -> Candidate {
    let (time, utc_offset_secs) = parse_rfc3339(s);
    Candidate {
        id: id(n),
        time,
        utc_offset_secs,
        tags: Vec::new(),
    }
}

fn tagged(n: usize, s: &str, tags: &[&str]) -> Candidate {
    Candidate {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..cand(n, s)
    }
}

/// A snapshot taken at local wall-clock time `local` in Europe/Berlin; `later` picks
/// the second occurrence of an ambiguous (fall-back) time.
fn berlin(n: usize, local: &str, later: bool) -> Candidate {
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let dt: DateTime = local.parse().unwrap();
    let amb = tz.to_ambiguous_timestamp(dt);
    let time = if later { amb.later() } else { amb.earlier() }.unwrap();
    Candidate {
        id: id(n),
        time,
        utc_offset_secs: tz.to_offset(time).seconds(),
        tags: Vec::new(),
    }
}

fn dur(s: &str) -> RetentionDuration {
    parse_duration(s).unwrap()
}

fn cands(times: &[&str]) -> Vec<Candidate> {
    times.iter().enumerate().map(|(i, t)| cand(i, t)).collect()
}

/// Runs the policy and returns, per candidate index, the reasons of the kept ones.
/// Also checks the invariants every result must satisfy.
fn run(policy: &RetentionPolicy, cs: &[Candidate]) -> BTreeMap<usize, Vec<String>> {
    let out = apply_policy(policy, cs);
    check_invariants(cs, &out);
    let index: BTreeMap<Id, usize> = cs.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    out.into_iter()
        .filter(|d| d.keep)
        .map(|d| (index[&d.id], d.reasons))
        .collect()
}

fn check_invariants(cs: &[Candidate], out: &[Decision]) {
    assert_eq!(out.len(), cs.len());
    let mut ids: Vec<Id> = cs.iter().map(|c| c.id).collect();
    let mut got: Vec<Id> = out.iter().map(|d| d.id).collect();
    ids.sort();
    got.sort();
    assert_eq!(ids, got, "every candidate gets exactly one decision");
    for d in out {
        assert_eq!(d.keep, !d.reasons.is_empty(), "{d:?}");
    }
    for w in out.windows(2) {
        assert!(
            (w[0].time, std::cmp::Reverse(w[0].id)) >= (w[1].time, std::cmp::Reverse(w[1].id)),
            "newest first, ties by id"
        );
    }
}

fn expect(pairs: &[(usize, &[&str])]) -> BTreeMap<usize, Vec<String>> {
    pairs
        .iter()
        .map(|(i, r)| (*i, r.iter().map(|s| s.to_string()).collect()))
        .collect()
}

struct Case {
    name: &'static str,
    policy: RetentionPolicy,
    snaps: Vec<Candidate>,
    kept: Vec<(usize, &'static [&'static str])>,
}

fn count(f: impl FnOnce(&mut RetentionPolicy)) -> RetentionPolicy {
    let mut p = RetentionPolicy::default();
    f(&mut p);
    p
}

// ---------------------------------------------------------------- the table

fn cases() -> Vec<Case> {
    const LAST: &[&str] = &["last snapshot"];
    const DAILY: &[&str] = &["daily snapshot"];
    const WEEKLY: &[&str] = &["weekly snapshot"];
    const HOURLY: &[&str] = &["hourly snapshot"];
    const YEARLY: &[&str] = &["yearly snapshot"];
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

// --------------------------------------------- GFS over three years of dailies

type BucketKey = (i32, i32, i32, i32);
type BucketFn = fn(&Candidate, usize) -> BucketKey;

/// Reference for a single count rule, written differently from the implementation:
/// walking newest first, the kept snapshots are the first one of each run of equal
/// consecutive bucket keys, for the first `n` runs; when fewer than `n` runs exist,
/// the oldest snapshot is kept too. Buckets are computed with jiff.
fn reference_rule(
    sorted: &[&Candidate],
    n: i64,
    key: BucketFn,
) -> BTreeMap<Id, bool /* oldest-only */> {
    let mut runs: Vec<usize> = Vec::new();
    for i in 0..sorted.len() {
        if i == 0 || key(sorted[i], i) != key(sorted[i - 1], i - 1) {
            runs.push(i);
        }
    }
    let limit = if n == -1 {
        usize::MAX
    } else {
        n.max(0) as usize
    };
    let mut kept: BTreeMap<Id, bool> = runs
        .iter()
        .take(limit)
        .map(|&i| (sorted[i].id, false))
        .collect();
    if limit > runs.len()
        && let Some(oldest) = sorted.last()
    {
        kept.entry(oldest.id).or_insert(true);
    }
    kept
}

fn local_date(c: &Candidate) -> DateTime {
    Offset::from_seconds(c.utc_offset_secs)
        .unwrap()
        .to_datetime(c.time)
}
fn k_last(_: &Candidate, i: usize) -> BucketKey {
    (i as i32, 0, 0, 0)
}
fn k_hour(c: &Candidate, _: usize) -> BucketKey {
    let d = local_date(c);
    (
        d.year().into(),
        d.month().into(),
        d.day().into(),
        d.hour().into(),
    )
}
fn k_day(c: &Candidate, _: usize) -> BucketKey {
    let d = local_date(c);
    (d.year().into(), d.month().into(), d.day().into(), 0)
}
fn k_week(c: &Candidate, _: usize) -> BucketKey {
    let w = local_date(c).date().iso_week_date();
    (w.year().into(), w.week().into(), 0, 0)
}
fn k_month(c: &Candidate, _: usize) -> BucketKey {
    let d = local_date(c);
    (d.year().into(), d.month().into(), 0, 0)
}
fn k_year(c: &Candidate, _: usize) -> BucketKey {
    (local_date(c).year().into(), 0, 0, 0)
}

/// Reference result of the count rules of `p`, as id -> reasons.
fn reference_counts(p: &RetentionPolicy, cs: &[Candidate]) -> BTreeMap<Id, Vec<String>> {
    let mut sorted: Vec<&Candidate> = cs.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then(a.id.cmp(&b.id)));
    let rules: [(Option<i64>, BucketFn, &str); 6] = [
        (p.keep_last, k_last, "last snapshot"),
        (p.keep_hourly, k_hour, "hourly snapshot"),
        (p.keep_daily, k_day, "daily snapshot"),
        (p.keep_weekly, k_week, "weekly snapshot"),
        (p.keep_monthly, k_month, "monthly snapshot"),
        (p.keep_yearly, k_year, "yearly snapshot"),
    ];
    let mut out: BTreeMap<Id, Vec<String>> = BTreeMap::new();
    for (n, key, reason) in rules {
        let Some(n) = n.filter(|&n| n == -1 || n > 0) else {
            continue;
        };
        for (id, oldest) in reference_rule(&sorted, n, key) {
            let r = if oldest {
                format!("oldest {reason}")
            } else {
                reason.to_string()
            };
            out.entry(id).or_default().push(r);
        }
    }
    out
}

fn kept_by_id(out: &[Decision]) -> BTreeMap<Id, Vec<String>> {
    out.iter()
        .filter(|d| d.keep)
        .map(|d| (d.id, d.reasons.clone()))
        .collect()
}

#[test]
fn gfs_three_years_of_dailies() {
    // One snapshot a day at 03:00 UTC, 2021-01-01 .. 2023-12-31 (1095 days).
    let start = civil::date(2021, 1, 1);
    let cs: Vec<Candidate> = (0..1095)
        .map(|i| {
            let day = start.checked_add(i.days()).unwrap();
            cand(i as usize, &format!("{day}T03:00:00Z"))
        })
        .collect();
    assert_eq!(
        cs.last().unwrap().time,
        "2023-12-31T03:00:00Z".parse().unwrap()
    );

    let policy = RetentionPolicy::gfs_default();
    let out = apply_policy(&policy, &cs);
    check_invariants(&cs, &out);
    let got = kept_by_id(&out);

    // Independent reference.
    assert_eq!(got, reference_counts(&policy, &cs));

    // Explicit reasoning. 2023-12-31 is a Sunday (end of 2023-W52).
    //  daily 7:    12-25 .. 12-31
    //  weekly 4:   12-31, 12-24, 12-17, 12-10 (Sundays of W52..W49)
    //  monthly 12: the last day of each month of 2023
    //  yearly 7:   2023-12-31, 2022-12-31, 2021-12-31, and with 4 units of budget
    //              left, the oldest snapshot 2021-01-01.
    let by_date: BTreeMap<String, Vec<String>> = got
        .iter()
        .map(|(id, r)| {
            let c = cs.iter().find(|c| c.id == *id).unwrap();
            (c.time.to_string()[..10].to_string(), r.clone())
        })
        .collect();
    let mut expected: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for d in 25..=31 {
        expected
            .entry(format!("2023-12-{d}"))
            .or_default()
            .push("daily snapshot");
    }
    for d in ["2023-12-31", "2023-12-24", "2023-12-17", "2023-12-10"] {
        expected
            .entry(d.into())
            .or_default()
            .push("weekly snapshot");
    }
    for m in 1..=12 {
        let last = civil::date(2023, m, 1).last_of_month();
        expected
            .entry(last.to_string())
            .or_default()
            .push("monthly snapshot");
    }
    for d in ["2023-12-31", "2022-12-31", "2021-12-31"] {
        expected
            .entry(d.into())
            .or_default()
            .push("yearly snapshot");
    }
    expected
        .entry("2021-01-01".into())
        .or_default()
        .push("oldest yearly snapshot");
    let expected: BTreeMap<String, Vec<String>> = expected
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(by_date, expected);
    assert_eq!(got.len(), 7 + 3 + 11 + 2 + 1);
    assert_eq!(
        by_date["2023-12-31"],
        [
            "daily snapshot",
            "weekly snapshot",
            "monthly snapshot",
            "yearly snapshot"
        ]
    );
}

// ------------------------------------------------------------ durations etc.

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

// ------------------------------------------------------------------ proptest

/// Go's AddDate, via jiff: go to the first of the month (where month arithmetic is
/// exact), subtract years and months, then add the day offset.
fn reference_cutoff(c: &Candidate, d: RetentionDuration) -> i128 {
    let offset = Offset::from_seconds(c.utc_offset_secs).unwrap();
    let local = offset.to_datetime(c.time);
    let first = local.date().first_of_month();
    let moved = first
        .checked_sub(Span::new().years(d.years).months(d.months))
        .unwrap()
        .checked_add((i64::from(local.day()) - 1 - i64::from(d.days)).days())
        .unwrap();
    let ts = offset
        .to_timestamp(DateTime::from_parts(moved, local.time()))
        .unwrap();
    ts.as_nanosecond() - i128::from(d.hours) * NS_PER_HOUR
}

fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
    // About three years, second resolution plus a few sub-second values; offsets in
    // quarter hours between -12:00 and +14:00; tags from a small alphabet.
    let one = (
        1_600_000_000i64..1_700_000_000,
        0i32..3,
        -48i32..=56,
        proptest::collection::btree_set(prop_oneof!["a", "b", "c"], 0..3),
    );
    proptest::collection::vec(one, 0..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (s, ns, q, tags))| Candidate {
                id: id(i),
                time: Timestamp::new(s, ns * 300_000_000).unwrap(),
                utc_offset_secs: q * 900,
                tags: tags.into_iter().collect(),
            })
            .collect()
    })
}

fn arb_count() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![Just(None), Just(Some(-1)), (0i64..6).prop_map(Some)]
}

fn arb_duration() -> impl Strategy<Value = Option<RetentionDuration>> {
    prop_oneof![
        Just(None),
        (0u32..2, 0u32..14, 0u32..40, 0u32..50).prop_map(|(years, months, days, hours)| {
            Some(RetentionDuration {
                years,
                months,
                days,
                hours,
            })
        })
    ]
}

fn arb_policy() -> impl Strategy<Value = RetentionPolicy> {
    (
        proptest::collection::vec(arb_count(), 6),
        proptest::collection::vec(arb_duration(), 6),
        proptest::collection::vec(
            proptest::collection::vec(prop_oneof!["a", "b", "c", Just(String::new())], 0..3),
            0..2,
        ),
    )
        .prop_map(|(c, w, keep_tags)| RetentionPolicy {
            keep_last: c[0],
            keep_hourly: c[1],
            keep_daily: c[2],
            keep_weekly: c[3],
            keep_monthly: c[4],
            keep_yearly: c[5],
            keep_within: w[0],
            keep_within_hourly: w[1],
            keep_within_daily: w[2],
            keep_within_weekly: w[3],
            keep_within_monthly: w[4],
            keep_within_yearly: w[5],
            keep_tags,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_invariants(
        policy in arb_policy(),
        (cs, shuffled) in arb_candidates()
            .prop_flat_map(|cs| (Just(cs.clone()), Just(cs).prop_shuffle())),
    ) {
        let out = apply_policy(&policy, &cs);
        check_invariants(&cs, &out);
        prop_assert_eq!(&out, &apply_policy(&policy, &shuffled));

        let kept = out.iter().filter(|d| d.keep).count();
        if let Some(n) = policy.keep_last {
            let want = if n == -1 { cs.len() } else { (n.max(0) as usize).min(cs.len()) };
            prop_assert!(kept >= want);
            if !policy.is_empty() {
                // "last snapshot" is given to exactly the newest `want` snapshots.
                for (i, d) in out.iter().enumerate() {
                    prop_assert_eq!(
                        d.reasons.iter().any(|r| r == "last snapshot"),
                        i < want
                    );
                }
            }
        }
        if policy.is_empty() {
            prop_assert_eq!(kept, cs.len());
        } else if !cs.is_empty() {
            // Count rules alone: compare with the run-based reference.
            let counts_only = RetentionPolicy {
                keep_within: None,
                keep_within_hourly: None,
                keep_within_daily: None,
                keep_within_weekly: None,
                keep_within_monthly: None,
                keep_within_yearly: None,
                keep_tags: Vec::new(),
                ..policy.clone()
            };
            if !counts_only.is_empty() {
                prop_assert_eq!(
                    kept_by_id(&apply_policy(&counts_only, &cs)),
                    reference_counts(&counts_only, &cs)
                );
            }
            // keep-within: exactly the snapshots after the cutoff.
            if let Some(d) = policy.keep_within.filter(|d| !d.is_zero()) {
                let newest = &out[0];
                let nc = cs.iter().find(|c| c.id == newest.id).unwrap();
                let cutoff = reference_cutoff(nc, d);
                let label = format!("within {d}");
                for dec in &out {
                    prop_assert_eq!(
                        dec.reasons.contains(&label),
                        dec.time.as_nanosecond() > cutoff
                    );
                }
            }
        }
    }

    #[test]
    fn prop_calendar_matches_jiff(
        s in -30_000_000_000i64..30_000_000_000,
        ns in 0i32..1_000_000_000,
        q in -104i32..=104,
    ) {
        let c = Candidate {
            id: id(0),
            time: Timestamp::new(s, if s < 0 { -ns } else { ns }).unwrap(),
            utc_offset_secs: q * 900,
            tags: Vec::new(),
        };
        let Ok(offset) = Offset::from_seconds(c.utc_offset_secs) else { return Ok(()) };
        let zdt = c.time.to_zoned_datetime(TimeZone::fixed(offset));
        let l = LocalTime::of(&c);
        let w = zdt.date().iso_week_date();
        prop_assert_eq!(
            (l.year, l.month, l.day, l.hour, l.iso_year, l.iso_week),
            (
                i128::from(zdt.year()),
                i128::from(zdt.month()),
                i128::from(zdt.day()),
                i128::from(zdt.hour()),
                i128::from(w.year()),
                i128::from(w.week()),
            )
        );
    }

    #[test]
    fn prop_cutoff_matches_reference(
        s in 0i64..4_000_000_000,
        q in -48i32..=56,
        d in arb_duration(),
    ) {
        let c = Candidate {
            id: id(0),
            time: Timestamp::new(s, 0).unwrap(),
            utc_offset_secs: q * 900,
            tags: Vec::new(),
        };
        if let Some(d) = d {
            prop_assert_eq!(within_cutoff(&c, d), reference_cutoff(&c, d));
        }
    }

    #[test]
    fn prop_duration_roundtrip(d in arb_duration()) {
        if let Some(d) = d {
            prop_assert_eq!(parse_duration(&d.to_string()), Ok(d));
        }
    }
}
