//! Failed logins, counted per peer address: after [`FREE_FAILURES`] wrong tokens (login
//! form or `Authorization: Bearer`) within [`WINDOW`], that address is locked out (429,
//! with `Retry-After`) for 2 seconds, and each further failure after a lock doubles the
//! lock, up to [`MAX_LOCK`]. While locked, a token from that address is not even compared,
//! so a lock cannot be used to test guesses. A right token clears the address's record;
//! a record without failures for [`FORGET_AFTER`] is forgotten.
//!
//! Every local user reaches a loopback listener from 127.0.0.1, so on loopback the lock is
//! in effect global: a local user who guesses wrongly also holds off bearer clients on the
//! same host for the lock's length (sessions already made are not affected).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed within [`WINDOW`] before a lock.
pub const FREE_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
const FIRST_LOCK: Duration = Duration::from_secs(2);
pub const MAX_LOCK: Duration = Duration::from_secs(300);
const FORGET_AFTER: Duration = Duration::from_secs(900);
/// The most addresses remembered (the oldest records go first).
const MAX_PEERS: usize = 10_000;

#[derive(Default)]
struct Peer {
    failures: VecDeque<Instant>,
    locks: u32,
    locked_until: Option<Instant>,
}

impl Peer {
    fn last(&self) -> Option<Instant> {
        self.failures.back().copied()
    }
}

#[derive(Default)]
pub struct Throttle {
    peers: Mutex<HashMap<IpAddr, Peer>>,
}

impl Throttle {
    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Peer>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `ip` must still wait before it may try a token (`None`: it may now).
    pub fn locked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let peers = self.peers();
        let until = peers.get(&ip)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a wrong token from `ip`; returns the lock it earned, if any.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut peers = self.peers();
        peers.retain(|_, p| {
            p.last()
                .is_some_and(|t| now.saturating_duration_since(t) < FORGET_AFTER)
        });
        if peers.len() >= MAX_PEERS && !peers.contains_key(&ip) {
            let oldest = peers.iter().min_by_key(|(_, p)| p.last()).map(|(k, _)| *k);
            if let Some(k) = oldest {
                peers.remove(&k);
            }
        }
        let p = peers.entry(ip).or_default();
        p.failures.push_back(now);
        while p
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            p.failures.pop_front();
        }
        if p.failures.len() < FREE_FAILURES {
            // Quiet for a whole window after a lock: the locks start small again.
            if p.failures.len() == 1 {
                p.locks = 0;
            }
            return None;
        }
        let lock = FIRST_LOCK
            .saturating_mul(1u32 << p.locks.min(16))
            .min(MAX_LOCK);
        p.locks = p.locks.saturating_add(1);
        p.locked_until = Some(now + lock);
        Some(lock)
    }

    /// A right token from `ip`: its record goes.
    pub fn succeeded(&self, ip: IpAddr) {
        self.peers().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_free_failures_then_growing_locks() {
        let t = Throttle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..FREE_FAILURES - 1 {
            assert_eq!(t.failed(ip, t0 + Duration::from_secs(i as u64)), None);
        }
        assert_eq!(t.locked(ip, t0 + Duration::from_secs(4)), None);
        let at = t0 + Duration::from_secs(5);
        assert_eq!(t.failed(ip, at), Some(Duration::from_secs(2)));
        assert_eq!(t.locked(ip, at), Some(Duration::from_secs(2)));
        assert_eq!(t.locked(other, at), None);
        let after = at + Duration::from_secs(3);
        assert_eq!(t.locked(ip, after), None);
        assert_eq!(t.failed(ip, after), Some(Duration::from_secs(4)));
        let after = after + Duration::from_secs(5);
        assert_eq!(t.failed(ip, after), Some(Duration::from_secs(8)));
        // Capped.
        let mut now = after;
        for _ in 0..20 {
            now += Duration::from_secs(1);
            t.failed(ip, now);
        }
        assert_eq!(t.locked(ip, now), Some(MAX_LOCK));
        // A right token clears it.
        t.succeeded(ip);
        assert_eq!(t.locked(ip, now), None);
        assert_eq!(t.failed(ip, now), None);
    }

    #[test]
    fn failures_spread_over_more_than_a_window_never_lock() {
        let t = Throttle::default();
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..20u64 {
            assert_eq!(t.failed(ip, t0 + Duration::from_secs(i * 20)), None, "{i}");
        }
    }
}
