//! Bandwidth limits: a storage layer that paces uploads and downloads.
//!
//! [`Bandwidth`] is a token bucket shared by every thread that uses it: tokens are bytes,
//! refilled at the limit's rate up to a burst of a quarter of a second's worth (at least
//! 64 KiB). A transfer takes its bytes from the bucket and may drive it into debt; the caller
//! then sleeps until the debt is paid, so that over any span longer than the burst the bytes
//! moved stay at or under the rate, however many threads transfer at once.
//!
//! [`ThrottleStorage`] wraps any storage with an optional upload and an optional download
//! bucket. Uploads (`write`) are paced before the request is sent; ranged downloads before
//! (their size is known), whole-object downloads after (their size is known only then).
//! Listings, stats and deletes are small and not paced.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{ObjectInfo, Properties, Result, Storage};

/// Smallest burst, so that tiny limits do not pace every small object separately.
const MIN_BURST: f64 = 64.0 * 1024.0;

/// A token bucket of bytes, shared by all threads that clone it.
#[derive(Debug, Clone)]
pub struct Bandwidth {
    inner: Arc<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    bytes_per_sec: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Bytes that may be moved now; negative when in debt.
    tokens: f64,
    refilled: Instant,
}

impl Bandwidth {
    /// A limit of `kib_per_sec` KiB/s (at least 1).
    pub fn kib_per_sec(kib_per_sec: u64) -> Bandwidth {
        Bandwidth::bytes_per_sec(kib_per_sec.max(1).saturating_mul(1024))
    }

    /// A limit of `bytes_per_sec` bytes/s (at least 1).
    pub fn bytes_per_sec(bytes_per_sec: u64) -> Bandwidth {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 4.0).max(MIN_BURST);
        Bandwidth {
            inner: Arc::new(Bucket {
                bytes_per_sec: rate,
                burst,
                state: Mutex::new(BucketState {
                    tokens: burst,
                    refilled: Instant::now(),
                }),
            }),
        }
    }

    /// The rate in bytes per second.
    pub fn rate(&self) -> f64 {
        self.inner.bytes_per_sec
    }

    /// The most bytes that pass without waiting after an idle spell.
    pub fn burst(&self) -> f64 {
        self.inner.burst
    }

    /// Takes `bytes` from the bucket and returns how long the caller must wait.
    fn take(&self, bytes: u64) -> Duration {
        let b = &self.inner;
        let mut s = b.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * b.bytes_per_sec).min(b.burst);
        s.refilled = now;
        s.tokens -= bytes as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / b.bytes_per_sec)
        }
    }

    /// Accounts for `bytes` and sleeps as long as the limit requires.
    pub fn pace(&self, bytes: u64) {
        let wait = self.take(bytes);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// Wraps a storage and paces its transfers.
pub struct ThrottleStorage<S> {
    inner: S,
    upload: Option<Bandwidth>,
    download: Option<Bandwidth>,
}

impl<S: Storage> ThrottleStorage<S> {
    /// Wraps `inner`; `None` leaves a direction unlimited.
    pub fn new(inner: S, upload: Option<Bandwidth>, download: Option<Bandwidth>) -> Self {
        ThrottleStorage {
            inner,
            upload,
            download,
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn pace_upload(&self, bytes: usize) {
        if let Some(b) = &self.upload {
            b.pace(bytes as u64);
        }
    }

    fn pace_download(&self, bytes: u64) {
        if let Some(b) = &self.download {
            b.pace(bytes);
        }
    }
}

impl<S: Storage> Storage for ThrottleStorage<S> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let data = self.inner.read(name)?;
        self.pace_download(data.len() as u64);
        Ok(data)
    }
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.pace_download(length);
        self.inner.read_range_into(name, offset, length, buf)
    }
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        self.pace_upload(data.len());
        self.inner.write(name, data)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        self.inner.stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStorage;

    #[test]
    fn conformance_through_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = ThrottleStorage::new(
            LocalStorage::new(dir.path().join("repo")),
            Some(Bandwidth::bytes_per_sec(200 << 20)),
            Some(Bandwidth::bytes_per_sec(200 << 20)),
        );
        crate::suite::run_all(&s);
    }

    #[test]
    fn limited_upload_takes_at_least_its_time_and_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let limit = Bandwidth::kib_per_sec(1024);
        let s = ThrottleStorage::new(LocalStorage::new(dir.path()), Some(limit.clone()), None);
        // 4 threads share one bucket: 3 MiB in all at 1 MiB/s.
        let start = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..6u8 {
                        let data = vec![t ^ i; 128 << 10];
                        s.write(&format!("data/{t}/{i}"), &data).unwrap();
                    }
                });
            }
        });
        let elapsed = start.elapsed().as_secs_f64();
        let total = 4.0 * 6.0 * (128 << 10) as f64;
        let lower = (total - limit.burst()) / limit.rate();
        assert!(elapsed >= lower * 0.95, "{elapsed} s < {lower} s");
        for t in 0..4u8 {
            for i in 0..6u8 {
                assert_eq!(
                    s.read(&format!("data/{t}/{i}")).unwrap(),
                    vec![t ^ i; 128 << 10]
                );
            }
        }
    }

    #[test]
    fn limited_download_takes_at_least_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let limit = Bandwidth::kib_per_sec(2048);
        let s = ThrottleStorage::new(LocalStorage::new(dir.path()), None, Some(limit.clone()));
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let start = Instant::now();
        s.write("data/x", &data).unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(400),
            "upload is free"
        );
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(s.read("data/x").unwrap(), data);
            assert_eq!(
                s.read_range("data/x", 1000, 500_000).unwrap(),
                &data[1000..501_000]
            );
        }
        let total = 3.0 * (data.len() + 500_000) as f64;
        let lower = (total - limit.burst()) / limit.rate();
        let elapsed = start.elapsed().as_secs_f64();
        assert!(elapsed >= lower * 0.95, "{elapsed} s < {lower} s");
    }

    #[test]
    fn idle_bucket_allows_a_burst_only() {
        let b = Bandwidth::bytes_per_sec(1 << 20);
        assert_eq!(b.take(100_000), Duration::ZERO);
        // The burst is 256 KiB: the next 1 MiB puts the bucket ~0.85 s into debt.
        let wait = b.take(1 << 20);
        assert!(wait > Duration::from_millis(700), "{wait:?}");
    }
}
