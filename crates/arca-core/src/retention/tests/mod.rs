//! Unit tests of [`super`] (retention): the helpers they share, and one module per
//! subject: the decision table, GFS against a reference over years of dailies, the
//! duration and policy parsers, and property tests against a reference of restic's rules.

use super::*;

use std::collections::BTreeMap;

use jiff::civil::{self, Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{Span, ToSpan};
use proptest::prelude::*;

mod gfs;
mod parsing;
mod properties;
mod table;

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
