//! The dashboard's login sessions, kept in the daemon's memory only.
//!
//! Typing the token into the login form makes a session: a random id (32 bytes, hex),
//! which is all the `arca_session` cookie carries, and a random form token of its own (the
//! hidden field of the session's POST forms, so it cannot be known without logging in).
//! The map remembers when each session was last used:
//!
//! - logout removes the session, so its cookie is refused afterwards;
//! - a session unused for `[daemon] session_idle` (default 30 minutes) is gone;
//! - a different token (a reload that changed `token_file` or `token_env`, or a restart)
//!   ends every session: the map is keyed to a fingerprint of the token it was made for;
//! - at most [`MAX_SESSIONS`] live at once; a new one beyond that drops the least
//!   recently used.
//!
//! Time comes from a monotonic clock passed in by the caller, so tests need no waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::token_file::{TokenFileError, hex, random_bytes};

/// The most sessions kept at once.
pub const MAX_SESSIONS: usize = 1000;

/// What the session map is keyed to: a hash of the token (the map never holds the token).
pub fn fingerprint(token: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"arca-dashboard-token\0");
    h.update(token.as_bytes());
    h.finalize().into()
}

struct Session {
    form: String,
    last_used: Instant,
}

#[derive(Default)]
struct Inner {
    /// Fingerprint of the token the sessions were made for.
    token: [u8; 32],
    map: HashMap<String, Session>,
}

/// What a valid session cookie gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub id: String,
    /// The form token of this session.
    pub form: String,
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

impl Sessions {
    fn lock(&self, token: &[u8; 32]) -> std::sync::MutexGuard<'_, Inner> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !bool::from(g.token.ct_eq(token)) {
            // The token changed: nobody logged in with the old one stays in.
            g.map.clear();
            g.token = *token;
        }
        g
    }

    /// A new session for a login with the token whose fingerprint is `token`.
    pub fn create(&self, token: &[u8; 32], now: Instant) -> Result<Live, TokenFileError> {
        let id = hex(&random_bytes::<32>()?);
        let form = hex(&random_bytes::<32>()?);
        let mut g = self.lock(token);
        while g.map.len() >= MAX_SESSIONS {
            let oldest = g
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => g.map.remove(&k),
                None => break,
            };
        }
        g.map.insert(
            id.clone(),
            Session {
                form: form.clone(),
                last_used: now,
            },
        );
        Ok(Live { id, form })
    }

    /// The session `id`, if it is live (and marks it used now); an idle one is removed.
    pub fn check(&self, token: &[u8; 32], id: &str, idle: Duration, now: Instant) -> Option<Live> {
        let mut g = self.lock(token);
        // Drop every idle session now and then, not only the one asked for.
        g.map
            .retain(|_, s| now.saturating_duration_since(s.last_used) < idle);
        // The ids are 64 hex digits; a lookup by hash leaks nothing useful about them.
        let s = g.map.get_mut(id)?;
        s.last_used = now;
        Some(Live {
            id: id.to_string(),
            form: s.form.clone(),
        })
    }

    /// Ends the session `id` (logout).
    pub fn remove(&self, id: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.map.remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    #[test]
    fn logout_idle_and_token_change_end_sessions() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let token = [1u8; 32];
        let a = s.create(&token, t0).unwrap();
        let b = s.create(&token, t0).unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.form, b.form);
        assert_eq!(a.id.len(), 64);
        assert_eq!(s.check(&token, &a.id, IDLE, t0), Some(a.clone()));
        assert_eq!(s.check(&token, "00", IDLE, t0), None);
        // Logout.
        s.remove(&a.id);
        assert_eq!(s.check(&token, &a.id, IDLE, t0), None);
        // Use keeps a session alive; idleness ends it.
        let t1 = t0 + Duration::from_secs(50);
        assert!(s.check(&token, &b.id, IDLE, t1).is_some());
        assert!(
            s.check(&token, &b.id, IDLE, t1 + Duration::from_secs(50))
                .is_some()
        );
        assert!(
            s.check(&token, &b.id, IDLE, t1 + Duration::from_secs(200))
                .is_none()
        );
        // Another token: every session ends.
        let c = s.create(&token, t1).unwrap();
        assert_ne!(fingerprint("a"), fingerprint("b"));
        assert!(s.check(&fingerprint("other"), &c.id, IDLE, t1).is_none());
        assert!(s.check(&token, &c.id, IDLE, t1).is_none());
    }

    #[test]
    fn the_map_is_capped_dropping_the_least_recently_used() {
        let s = Sessions::default();
        let token = [3u8; 32];
        let t0 = Instant::now();
        let first = s.create(&token, t0).unwrap();
        let second = s.create(&token, t0 + Duration::from_millis(1)).unwrap();
        for i in 0..MAX_SESSIONS {
            s.create(&token, t0 + Duration::from_millis(10 + i as u64))
                .unwrap();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        let later = t0 + Duration::from_secs(30);
        assert!(s.check(&token, &first.id, IDLE, later).is_none());
        assert!(s.check(&token, &second.id, IDLE, later).is_none());
    }
}
