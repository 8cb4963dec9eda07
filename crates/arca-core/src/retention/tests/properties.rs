//! Property tests: random snapshots and policies against a reference of restic's keep-within cutoffs, and the invariants of every result.

use super::gfs::{kept_by_id, reference_counts};
use super::*;

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
