//! The clock the scheduler reads: the system clock in the daemon, a manual clock in tests
//! (a simulated year runs in milliseconds).

use std::sync::Mutex;

use jiff::Timestamp;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The real time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock to `t` (never backwards: an earlier `t` is ignored).
    pub fn set(&self, t: Timestamp) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if t > *now {
            *now = t;
        }
    }

    pub fn advance(&self, d: std::time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(t) = now.checked_add(jiff::SignedDuration::try_from(d).unwrap_or_default()) {
            *now = t;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A clock that starts at a given time and runs `speed` times faster than the real one
/// (tests of a whole daemon process: an hour of RPO passes in seconds). Selected with the
/// environment variable `ARCA_TEST_CLOCK=START[xSPEED]` (e.g.
/// `2026-01-01T00:00:00Zx600`); never set it in production.
#[derive(Debug)]
pub struct ScaledClock {
    origin: Timestamp,
    real_origin: std::time::Instant,
    speed: f64,
}

impl ScaledClock {
    pub fn new(origin: Timestamp, speed: f64) -> ScaledClock {
        ScaledClock {
            origin,
            real_origin: std::time::Instant::now(),
            speed,
        }
    }

    /// Parses `START[xSPEED]`.
    pub fn parse(s: &str) -> Result<ScaledClock, ClockError> {
        let (start, speed) = match s.rsplit_once('x') {
            Some((a, b)) if !b.contains(':') => (
                a,
                b.parse::<f64>()
                    .ok()
                    .filter(|v| *v > 0.0 && v.is_finite())
                    .ok_or_else(|| ClockError::Speed(b.to_string()))?,
            ),
            _ => (s, 1.0),
        };
        let origin = start.parse::<Timestamp>().map_err(|e| ClockError::Start {
            start: start.to_string(),
            reason: e.to_string(),
        })?;
        Ok(ScaledClock::new(origin, speed))
    }
}

/// `ARCA_TEST_CLOCK` is not `START[xSPEED]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("ARCA_TEST_CLOCK: speed {0:?} is not a number > 0")]
    Speed(String),
    #[error("ARCA_TEST_CLOCK: {start:?}: {reason}")]
    Start { start: String, reason: String },
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let ms = (self.real_origin.elapsed().as_secs_f64() * self.speed * 1000.0) as i64;
        self.origin
            .checked_add(jiff::SignedDuration::from_millis(ms))
            .unwrap_or(self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_runs_fast_from_its_start() {
        let c = ScaledClock::parse("2026-01-01T00:00:00Zx3600").unwrap();
        let t0 = c.now();
        assert!(t0 >= "2026-01-01T00:00:00Z".parse().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        // 20 ms at 3600x is over a minute.
        assert!(c.now().duration_since(t0).as_secs() >= 60);
        assert!(ScaledClock::parse("2026-01-01T00:00:00Zx0").is_err());
        assert!(ScaledClock::parse("yesterday").is_err());
        let plain = ScaledClock::parse("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(plain.speed, 1.0);
    }
}
