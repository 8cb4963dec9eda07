//! The scheduler: per job, the last slot it served and whether a run is going; decides
//! which jobs are due now and when to wake up next. It reads time only from an injected
//! [`Clock`], so tests drive it through a simulated year.
//!
//! Rules: one run of a job at a time; slots that pass while a run is going, or while the
//! daemon is down, or while the window is closed, are caught up by one run, not one per
//! slot; a job due outside its window or in an exclusion period waits for the next instant
//! a run is allowed.

use std::collections::BTreeMap;
use std::sync::Arc;

use arca_core::format::BackupType;
use jiff::Timestamp;

use crate::clock::Clock;
use crate::timing::JobPlan;

/// A run the scheduler wants started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRun {
    pub job: String,
    /// The newest slot this run serves.
    pub slot: Timestamp,
    pub backup_type: BackupType,
    /// When the run must stop at a checkpoint (window closes, exclusion begins), if ever.
    pub stop_at: Option<Timestamp>,
}

struct Timer {
    plan: Arc<JobPlan>,
    last_slot: Timestamp,
    running: bool,
}

pub struct Scheduler {
    clock: Arc<dyn Clock>,
    jobs: BTreeMap<String, Timer>,
    max_running: Option<usize>,
}

impl Scheduler {
    pub fn new(clock: Arc<dyn Clock>) -> Scheduler {
        Scheduler {
            clock,
            jobs: BTreeMap::new(),
            max_running: None,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Adds or replaces a job. `last_slot` is the newest slot a recorded run served (from
    /// the history); `None` (never ran) starts counting now, so the first run is at the
    /// next slot. A replaced job keeps its running state and, unless given, its last slot.
    pub fn set_job(&mut self, name: &str, plan: Arc<JobPlan>, last_slot: Option<Timestamp>) {
        let now = self.clock.now();
        match self.jobs.get_mut(name) {
            Some(t) => {
                t.plan = plan;
                if let Some(s) = last_slot {
                    t.last_slot = s.max(t.last_slot);
                }
            }
            None => {
                self.jobs.insert(
                    name.to_string(),
                    Timer {
                        plan,
                        last_slot: last_slot.unwrap_or(now),
                        running: false,
                    },
                );
            }
        }
    }

    /// Forgets the jobs not in `keep` (after a reload).
    pub fn retain_jobs(&mut self, keep: &[String]) {
        self.jobs.retain(|k, t| t.running || keep.contains(k));
    }

    /// Forgets one job (it was removed from the configuration while it ran).
    pub fn remove_job(&mut self, job: &str) {
        self.jobs.remove(job);
    }

    pub fn job_names(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }

    pub fn is_running(&self, job: &str) -> bool {
        self.jobs.get(job).is_some_and(|t| t.running)
    }

    /// The jobs due now; each is marked running until [`Scheduler::finished`].
    pub fn due(&mut self) -> Vec<DueRun> {
        let now = self.clock.now();
        let running = self.jobs.values().filter(|t| t.running).count();
        let mut room = self
            .max_running
            .map_or(usize::MAX, |m| m.saturating_sub(running));
        // Oldest pending slot first, so a limit on concurrent runs is fair.
        let mut candidates: Vec<(Timestamp, String)> = self
            .jobs
            .iter()
            .filter(|(_, t)| !t.running && t.plan.allowed(now))
            .filter_map(|(n, t)| Some((t.plan.pending_slot(t.last_slot, now)?, n.clone())))
            .collect();
        candidates.sort();
        let mut out = Vec::new();
        for (slot, name) in candidates {
            if room == 0 {
                break;
            }
            let Some(t) = self.jobs.get_mut(&name) else {
                continue;
            };
            room -= 1;
            t.last_slot = slot;
            t.running = true;
            out.push(DueRun {
                job: name,
                slot,
                backup_type: t.plan.backup_type_at(now),
                stop_at: t.plan.run_must_stop_at(now),
            });
        }
        out
    }

    /// At most `n` runs at once (`None`: no limit); due jobs beyond it wait their turn.
    pub fn set_max_running(&mut self, n: Option<usize>) {
        self.max_running = n;
    }

    fn at_capacity(&self) -> bool {
        self.max_running
            .is_some_and(|m| self.jobs.values().filter(|t| t.running).count() >= m)
    }

    /// Marks a manual run (`arca job run` or the API) as started: scheduled runs wait.
    pub fn start_manual(&mut self, job: &str) -> bool {
        match self.jobs.get_mut(job) {
            Some(t) if !t.running => {
                t.running = true;
                true
            }
            _ => false,
        }
    }

    pub fn finished(&mut self, job: &str) {
        if let Some(t) = self.jobs.get_mut(job) {
            t.running = false;
        }
    }

    /// When the job runs next (`None`: running, unknown, or never again).
    pub fn next_run(&self, job: &str) -> Option<Timestamp> {
        let t = self.jobs.get(job)?;
        if t.running {
            return None;
        }
        t.plan.next_run(t.last_slot, self.clock.now())
    }

    /// The earliest instant a job becomes due (idle jobs only; `None` while the limit of
    /// concurrent runs is reached: a finishing run wakes the caller).
    pub fn next_wake(&self) -> Option<Timestamp> {
        if self.at_capacity() {
            return None;
        }
        let now = self.clock.now();
        self.jobs
            .values()
            .filter(|t| !t.running)
            .filter_map(|t| t.plan.next_run(t.last_slot, now))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jiff::civil::{Time, date};
    use jiff::tz::TimeZone;
    use jiff::{SignedDuration, ToSpan};

    use super::*;
    use crate::clock::ManualClock;
    use crate::timing::{DaySpec, Exclusion, Rotation, Schedule, Window};

    fn ts(s: &str, tz: &TimeZone) -> Timestamp {
        let dt: jiff::civil::DateTime = s.parse().unwrap();
        tz.to_timestamp(dt).unwrap()
    }

    /// Drives the scheduler like the daemon does, jumping from wake-up to wake-up; every
    /// run takes `run_for`. Returns (start, slot, type) of each run.
    fn simulate(
        plan: JobPlan,
        start: Timestamp,
        end: Timestamp,
        run_for: Duration,
    ) -> Vec<(Timestamp, Timestamp, BackupType)> {
        let clock = Arc::new(ManualClock::new(start));
        let mut s = Scheduler::new(clock.clone());
        s.set_job("j", Arc::new(plan), None);
        let mut runs = Vec::new();
        let mut busy_until: Option<Timestamp> = None;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 2_000_000, "the simulation does not advance");
            let wake = match busy_until {
                Some(b) => b,
                None => match s.next_wake() {
                    Some(w) => w,
                    None => break,
                },
            };
            if wake > end {
                break;
            }
            assert!(wake >= clock.now(), "wake-up in the past");
            clock.set(wake);
            if busy_until.is_some() {
                s.finished("j");
                busy_until = None;
            }
            for d in s.due() {
                runs.push((clock.now(), d.slot, d.backup_type));
                if run_for.is_zero() {
                    s.finished("j");
                } else {
                    busy_until = Some(
                        clock
                            .now()
                            .checked_add(SignedDuration::try_from(run_for).unwrap())
                            .unwrap(),
                    );
                }
            }
        }
        runs
    }

    /// The reference: walks the year minute by minute (no cleverness), marking a slot
    /// pending when the schedule says so and starting a run at the first allowed minute.
    fn oracle(
        is_slot: &dyn Fn(Timestamp) -> bool,
        allowed: &dyn Fn(Timestamp) -> bool,
        start: Timestamp,
        end: Timestamp,
    ) -> Vec<Timestamp> {
        let mut runs = Vec::new();
        let mut pending = false;
        let mut t = start.checked_add(1.minute()).unwrap();
        while t <= end {
            if is_slot(t) {
                pending = true;
            }
            if pending && allowed(t) {
                runs.push(t);
                pending = false;
            }
            t = t.checked_add(1.minute()).unwrap();
        }
        runs
    }

    fn year_bounds(tz: &TimeZone) -> (Timestamp, Timestamp) {
        (ts("2026-01-01T00:00:00", tz), ts("2027-01-01T00:00:00", tz))
    }

    #[test]
    fn hourly_in_a_night_window_over_a_year_in_berlin_and_new_york() {
        for zone in ["Europe/Berlin", "America/New_York"] {
            let tz = TimeZone::get(zone).unwrap();
            let (start, end) = year_bounds(&tz);
            let window = Window::parse("22:00-06:00").unwrap();
            let freeze = Exclusion {
                from: ts("2026-06-28T23:30:00", &tz),
                to: ts("2026-07-01T03:17:00", &tz),
            };
            let plan = JobPlan {
                tz: tz.clone(),
                schedule: Schedule::parse("0 * * * *", None).unwrap(),
                windows: vec![window],
                exclusions: vec![freeze],
                rotation: Rotation {
                    full: vec![DaySpec::Weekday(jiff::civil::Weekday::Sunday)],
                    default: BackupType::Differential,
                    ..Rotation::default()
                },
            };
            let got = simulate(plan.clone(), start, end, Duration::ZERO);
            let tz2 = tz.clone();
            let expected = oracle(
                &|t| {
                    let l = tz2.to_datetime(t);
                    l.minute() == 0 && l.second() == 0
                },
                &|t| {
                    let l = tz2.to_datetime(t).time();
                    (l >= Time::new(22, 0, 0, 0).unwrap() || l < Time::new(6, 0, 0, 0).unwrap())
                        && !(freeze.from <= t && t < freeze.to)
                },
                start,
                end,
            );
            let starts: Vec<Timestamp> = got.iter().map(|r| r.0).collect();
            assert_eq!(starts.len(), expected.len(), "{zone}: number of runs");
            for (g, e) in starts.iter().zip(&expected) {
                assert_eq!(
                    g,
                    e,
                    "{zone}: run at {} expected at {}",
                    tz.to_datetime(*g),
                    tz.to_datetime(*e)
                );
            }
            // Never outside the window or inside the freeze; the run right after the
            // freeze catches up once, at its end.
            for (t, slot, ty) in &got {
                assert!(plan.allowed(*t));
                assert!(slot <= t);
                let want = if tz.to_datetime(*t).date().weekday() == jiff::civil::Weekday::Sunday {
                    BackupType::Full
                } else {
                    BackupType::Differential
                };
                assert_eq!(*ty, want);
            }
            assert!(
                starts.contains(&freeze.to),
                "{zone}: no catch-up run at the end of the freeze"
            );
            // 8 hours of window a day, about 365 days (DST nights have 7 or 9 hours).
            assert!(
                (2800..=3000).contains(&starts.len()),
                "{zone}: {} runs",
                starts.len()
            );
        }
    }

    #[test]
    fn daily_fixed_time_across_dst_runs_once_a_day() {
        // 02:30 does not exist on the spring-forward day and exists twice on the
        // fall-back day (Berlin and New York both change at 02:00 local time).
        for zone in ["Europe/Berlin", "America/New_York"] {
            let tz = TimeZone::get(zone).unwrap();
            let (start, end) = year_bounds(&tz);
            let plan = JobPlan {
                tz: tz.clone(),
                ..JobPlan::simple(Schedule::parse("30 2 * * *", None).unwrap())
            };
            let got = simulate(plan, start, end, Duration::ZERO);
            assert_eq!(got.len(), 365, "{zone}");
            let mut days = std::collections::BTreeSet::new();
            for (t, _, _) in &got {
                let l = tz.to_datetime(*t);
                assert!(days.insert(l.date()), "{zone}: two runs on {}", l.date());
                let offset_change =
                    tz.to_offset(*t) != tz.to_offset(t.checked_sub(6.hours()).unwrap());
                if l.time() != Time::new(2, 30, 0, 0).unwrap() {
                    // Only in the gap: the first instant after it.
                    assert_eq!(l.time(), Time::new(3, 0, 0, 0).unwrap(), "{zone}: {l}");
                    assert!(offset_change, "{zone}: moved run on a normal day {l}");
                }
            }
            // The fold day runs at the earlier 02:30.
            let fold_day = if zone == "Europe/Berlin" {
                date(2026, 10, 25)
            } else {
                date(2026, 11, 1)
            };
            let run = got
                .iter()
                .find(|r| tz.to_datetime(r.0).date() == fold_day)
                .unwrap();
            let dt = fold_day.at(2, 30, 0, 0);
            assert_eq!(
                run.0,
                tz.to_ambiguous_timestamp(dt).earlier().unwrap(),
                "{zone}"
            );
        }
    }

    #[test]
    fn interval_and_auto_keep_the_rpo_over_a_year() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let (start, end) = year_bounds(&tz);
        let rpo = crate::timing::parse_duration("15m").unwrap();
        let plan = JobPlan {
            tz: tz.clone(),
            ..JobPlan::simple(Schedule::parse("auto", Some(rpo)).unwrap())
        };
        let got = simulate(plan, start, end, Duration::from_secs(60));
        let expected_runs = (end.as_second() - start.as_second()) / 450;
        assert!(
            (got.len() as i64 - expected_runs).abs() <= 1,
            "{} vs {expected_runs}",
            got.len()
        );
        for w in got.windows(2) {
            let gap = w[1].0.as_second() - w[0].0.as_second();
            assert!(
                gap <= 450,
                "gap of {gap}s between runs: the RPO of 15m needs <= 7.5m"
            );
            assert_eq!(w[1].0.as_second() % 450, 0, "runs on the interval's slots");
        }
    }

    #[test]
    fn long_runs_and_downtime_are_caught_up_once() {
        let tz = TimeZone::UTC;
        let start = ts("2026-03-01T00:00:00", &tz);
        let end = ts("2026-03-02T00:00:00", &tz);
        let plan = JobPlan::simple(Schedule::parse("*/5 * * * *", None).unwrap());
        // A run takes 17 minutes: slots at +5, +10, +15 pass during it, then one run.
        let got = simulate(plan.clone(), start, end, Duration::from_secs(17 * 60));
        for w in got.windows(2) {
            assert_eq!(
                w[1].0.as_second() - w[0].0.as_second(),
                17 * 60,
                "back to back"
            );
        }
        // Downtime: last slot served a day ago, the daemon starts now: one run, then the
        // normal rhythm.
        let clock = Arc::new(ManualClock::new(end));
        let mut s = Scheduler::new(clock.clone());
        s.set_job("j", Arc::new(plan), Some(start));
        let first = s.due();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].slot, end);
        s.finished("j");
        assert!(s.due().is_empty(), "caught up more than once");
        assert_eq!(s.next_wake(), Some(end.checked_add(5.minutes()).unwrap()));
        // One run at a time: while running, nothing more is due.
        clock.set(end.checked_add(5.minutes()).unwrap());
        assert!(s.start_manual("j"));
        assert!(s.due().is_empty());
        s.finished("j");
        assert_eq!(s.due().len(), 1);
    }

    #[test]
    fn a_limit_on_concurrent_runs_delays_but_does_not_drop() {
        let start: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let mut s = Scheduler::new(clock.clone());
        s.set_max_running(Some(1));
        let plan = Arc::new(JobPlan::simple(
            Schedule::parse("*/5 * * * *", None).unwrap(),
        ));
        s.set_job("a", plan.clone(), None);
        s.set_job("b", plan, None);
        clock.set(s.next_wake().unwrap());
        let first = s.due();
        assert_eq!(first.len(), 1);
        assert_eq!(s.next_wake(), None, "at capacity");
        clock.advance(Duration::from_secs(60));
        assert!(s.due().is_empty());
        s.finished(&first[0].job);
        let second = s.due();
        assert_eq!(second.len(), 1);
        assert_ne!(second[0].job, first[0].job, "the other job's turn");
        assert_eq!(
            second[0].slot, first[0].slot,
            "it serves the slot it waited for"
        );
    }

    #[test]
    fn window_close_and_stop_time() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let plan = JobPlan {
            tz: tz.clone(),
            windows: vec![Window::parse("22:00-06:00").unwrap()],
            ..JobPlan::simple(Schedule::parse("0 23 * * *", None).unwrap())
        };
        let t = ts("2026-03-28T23:00:00", &tz);
        // The night of the spring-forward change: 06:00 local is still the close time.
        assert_eq!(
            plan.run_must_stop_at(t),
            Some(ts("2026-03-29T06:00:00", &tz))
        );
        let noon = ts("2026-03-29T12:00:00", &tz);
        assert!(!plan.allowed(noon));
        assert_eq!(
            plan.next_allowed(noon),
            Some(ts("2026-03-29T22:00:00", &tz))
        );
    }
}
