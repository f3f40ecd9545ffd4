//! Rate limits: counters in fixed windows per key (`addr:…`, `user:…`, prefixed with what
//! is counted), shared by logins, registrations, posting, reactions and uploads.

use super::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// Tracked keys before windows that have ended are swept.
const SWEEP_AT: usize = 10_000;

/// Counters per key, each in its own window.
#[derive(Default)]
pub struct RateLimiter {
    /// key → (window start, count, window length), unix seconds.
    windows: Mutex<HashMap<String, (u64, u32, u64)>>,
}

impl RateLimiter {
    /// Counts one event for `key`; fails with the wait once `limit` events already
    /// happened in the current window of `window_secs`.
    pub fn hit(&self, key: String, limit: u32, window_secs: u64, now: u64) -> Result<()> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (start, _, window)| now < *start + *window);
        }
        let entry = windows.entry(key).or_insert((now, 0, window_secs));
        if now >= entry.0 + entry.2 {
            *entry = (now, 0, window_secs);
        }
        if entry.1 >= limit {
            return Err(Error::RateLimited {
                retry_after: (entry.0 + entry.2).saturating_sub(now).max(1),
            });
        }
        entry.1 += 1;
        Ok(())
    }

    /// Fails like [`RateLimiter::hit`] would, without counting.
    pub fn check(&self, key: &str, limit: u32, now: u64) -> Result<()> {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        match windows.get(key) {
            Some((start, count, window)) if now < start + window && *count >= limit => {
                Err(Error::RateLimited {
                    retry_after: (start + window).saturating_sub(now).max(1),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_within_the_window() {
        let limiter = RateLimiter::default();
        for _ in 0..3 {
            limiter.hit("a".into(), 3, 60, 1000).unwrap();
        }
        assert!(matches!(
            limiter.hit("a".into(), 3, 60, 1010),
            Err(Error::RateLimited { retry_after: 50 })
        ));
        assert!(limiter.check("a", 3, 1059).is_err());
        limiter.hit("b".into(), 3, 60, 1010).unwrap();
        limiter.hit("a".into(), 3, 60, 1060).unwrap();
        assert!(limiter.hit("c".into(), 0, 60, 1).is_err());
    }
}
