//! GFS over three years of dailies, against a reference written differently from the implementation.

use super::*;

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
pub(super) fn reference_counts(p: &RetentionPolicy, cs: &[Candidate]) -> BTreeMap<Id, Vec<String>> {
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

pub(super) fn kept_by_id(out: &[Decision]) -> BTreeMap<Id, Vec<String>> {
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
