//! Retention: `parse_duration` on arbitrary text, and `apply_policy` on an arbitrary policy
//! and snapshot group (times over jiff's whole range, any UTC offset).
#![no_main]

use arbitrary::Arbitrary;
use arca_core::id::Id;
use arca_core::retention::{
    Candidate, RetentionDuration, RetentionPolicy, apply_policy, parse_duration, parse_tag_list,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Dur {
    years: u32,
    months: u32,
    days: u32,
    hours: u32,
}

impl Dur {
    fn get(&self) -> RetentionDuration {
        RetentionDuration {
            years: self.years,
            months: self.months,
            days: self.days,
            hours: self.hours,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Policy {
    counts: [Option<i64>; 6],
    withins: [Option<Dur>; 6],
    keep_tags: Vec<String>,
}

#[derive(Debug, Arbitrary)]
struct Cand {
    id: u8,
    seconds: i64,
    nanos: i32,
    utc_offset_secs: i32,
    tags: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    duration: &'a str,
    policy: Policy,
    candidates: Vec<Cand>,
}

const TAGS: [&str; 4] = ["", "a", "b", "daily"];

fn timestamp(seconds: i64, nanos: i32) -> jiff::Timestamp {
    let min = jiff::Timestamp::MIN.as_second();
    let max = jiff::Timestamp::MAX.as_second();
    let s = min + seconds.rem_euclid(max - min + 1);
    let n = nanos % 1_000_000_000;
    jiff::Timestamp::new(
        s,
        if (s < 0 && n > 0) || (s > 0 && n < 0) {
            0
        } else {
            n
        },
    )
    .or_else(|_| jiff::Timestamp::new(s, 0))
    .expect("timestamp in range")
}

fuzz_target!(|input: Input| {
    // Durations: anything accepted prints back to itself.
    if let Ok(d) = parse_duration(input.duration) {
        let text = d.to_string();
        assert_eq!(parse_duration(&text), Ok(d), "{text:?}");
    }
    let _ = parse_tag_list(input.duration);

    let p = &input.policy;
    let w = |i: usize| p.withins[i].as_ref().map(Dur::get);
    let policy = RetentionPolicy {
        keep_last: p.counts[0],
        keep_hourly: p.counts[1],
        keep_daily: p.counts[2],
        keep_weekly: p.counts[3],
        keep_monthly: p.counts[4],
        keep_yearly: p.counts[5],
        keep_within: w(0),
        keep_within_hourly: w(1),
        keep_within_daily: w(2),
        keep_within_weekly: w(3),
        keep_within_monthly: w(4),
        keep_within_yearly: w(5),
        keep_tags: p
            .keep_tags
            .iter()
            .take(4)
            .map(|s| parse_tag_list(s))
            .collect(),
    };
    let _ = policy.validate();
    let _ = policy.to_string();
    if let Some(d) = policy.keep_within {
        assert_eq!(parse_duration(&d.to_string()), Ok(d));
    }

    let candidates: Vec<Candidate> = input
        .candidates
        .iter()
        .take(64)
        .map(|c| Candidate {
            id: Id([c.id; 32]),
            time: timestamp(c.seconds, c.nanos),
            utc_offset_secs: c.utc_offset_secs,
            tags: c
                .tags
                .iter()
                .take(3)
                .map(|&t| TAGS[t as usize % 4].to_string())
                .collect(),
        })
        .collect();

    let out = apply_policy(&policy, &candidates);
    assert_eq!(out.len(), candidates.len());
    for pair in out.windows(2) {
        assert!(pair[0].time >= pair[1].time, "decisions not newest first");
    }
    for d in &out {
        assert_eq!(d.keep, !d.reasons.is_empty());
    }
    if policy.is_empty() {
        assert!(out.iter().all(|d| d.keep));
    }
    if let Some(n) = policy.keep_last.filter(|&n| n > 0 || n == -1) {
        let n = if n == -1 {
            out.len()
        } else {
            (n as usize).min(out.len())
        };
        for d in &out[..n] {
            assert!(
                d.reasons.iter().any(|r| r == "last snapshot"),
                "keep-last missed {d:?}"
            );
        }
    }
    // The result does not depend on the order of the input.
    let mut reversed = candidates.clone();
    reversed.reverse();
    assert_eq!(apply_policy(&policy, &reversed), out);
});
