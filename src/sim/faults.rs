//! Fault injection, off by default: the ways GitHub misbehaves that the App
//! must survive. Decisions come from one seeded generator, so a failing run can
//! be repeated with the same seed.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Fraction of REST calls answered 500/502/503 without being performed.
    pub api_error_rate: f64,
    /// Fraction of REST calls answered with GitHub's secondary rate limit
    /// (403 or 429 with `retry-after`), without being performed.
    pub api_rate_limit_rate: f64,
    /// The `retry-after` the rate-limit answers carry (GitHub says 60 s; tests use 1).
    pub rate_limit_retry_after: Duration,
    /// Extra latency of every webhook delivery.
    pub webhook_delay: Duration,
    /// Fraction of webhook deliveries never sent (GitHub lost them).
    pub webhook_drop_rate: f64,
    /// Deliveries of these `event.action`s (or bare `event`s) are always dropped.
    pub drop_webhook_events: Vec<String>,
    /// Fraction of webhook deliveries sent twice with the same delivery id (a redelivery).
    pub webhook_duplicate_rate: f64,
    /// Deliveries are shuffled within windows of this many (1 = in order).
    pub webhook_reorder_window: usize,
    /// Fraction of jobs that fail before running their command (a broken runner).
    pub job_failure_rate: f64,
    /// Fraction of jobs that hit their timeout instead of running.
    pub job_timeout_rate: f64,
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            api_error_rate: 0.0,
            api_rate_limit_rate: 0.0,
            rate_limit_retry_after: Duration::from_secs(1),
            webhook_delay: Duration::ZERO,
            webhook_drop_rate: 0.0,
            drop_webhook_events: Vec::new(),
            webhook_duplicate_rate: 0.0,
            webhook_reorder_window: 1,
            job_failure_rate: 0.0,
            job_timeout_rate: 0.0,
            seed: 0x5eed,
        }
    }
}

/// What to do with one REST call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFault {
    None,
    ServerError(u16),
    /// 403 (GitHub's usual answer) or 429, both with `retry-after`.
    SecondaryRateLimit(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFault {
    None,
    Fail,
    TimeOut,
}

#[derive(Debug)]
pub struct Faults {
    pub config: FaultConfig,
    rng: Mutex<StdRng>,
    /// One generator per caller for API faults, so what the App meets does not
    /// depend on how its calls interleave with other callers'.
    per_caller: Mutex<std::collections::HashMap<String, StdRng>>,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            per_caller: Mutex::default(),
            config,
        }
    }

    fn roll(&self, rate: f64) -> bool {
        rate > 0.0 && self.rng.lock().expect("fault rng").gen_bool(rate.min(1.0))
    }

    /// The fault for the next REST call of `caller` (e.g. `installation:7`).
    pub fn api(&self, caller: &str) -> ApiFault {
        let (error, limit) = (self.config.api_error_rate, self.config.api_rate_limit_rate);
        if error <= 0.0 && limit <= 0.0 {
            return ApiFault::None;
        }
        let mut rngs = self.per_caller.lock().expect("fault rng");
        let rng = rngs.entry(caller.to_owned()).or_insert_with(|| {
            let salt = caller.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
            });
            StdRng::seed_from_u64(self.config.seed ^ salt)
        });
        let roll: f64 = rng.r#gen();
        if roll < error {
            ApiFault::ServerError([500, 502, 503][rng.gen_range(0..3)])
        } else if roll < error + limit {
            ApiFault::SecondaryRateLimit([403, 429][rng.gen_range(0..2)])
        } else {
            ApiFault::None
        }
    }

    /// Whether to drop a delivery of `event` (with `action`).
    pub fn drop_webhook(&self, event: &str, action: Option<&str>) -> bool {
        let named = self
            .config
            .drop_webhook_events
            .iter()
            .any(|e| e == event || action.is_some_and(|a| *e == format!("{event}.{a}")));
        named || self.roll(self.config.webhook_drop_rate)
    }

    pub fn duplicate_webhook(&self) -> bool {
        self.roll(self.config.webhook_duplicate_rate)
    }

    pub fn shuffle<T>(&self, items: &mut [T]) {
        use rand::seq::SliceRandom;
        items.shuffle(&mut *self.rng.lock().expect("fault rng"));
    }

    pub fn job(&self) -> JobFault {
        if self.roll(self.config.job_failure_rate) {
            JobFault::Fail
        } else if self.roll(self.config.job_timeout_rate) {
            JobFault::TimeOut
        } else {
            JobFault::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_seeded() {
        let faults = Faults::new(FaultConfig::default());
        assert!((0..1000).all(|_| faults.api("app") == ApiFault::None));
        let config = FaultConfig {
            api_error_rate: 0.2,
            api_rate_limit_rate: 0.1,
            ..FaultConfig::default()
        };
        let (a, b) = (Faults::new(config.clone()), Faults::new(config.clone()));
        let a: Vec<_> = (0..200).map(|_| a.api("app")).collect();
        let b: Vec<_> = (0..200)
            .map(|_| {
                b.api("user:alice"); // other callers do not shift the App's faults
                b.api("app")
            })
            .collect();
        assert_eq!(a, b, "the same seed gives the same faults");
        let faults = Faults::new(config);
        let hits = (0..2000)
            .filter(|_| faults.api("app") != ApiFault::None)
            .count();
        assert!((450..750).contains(&hits), "about 30% faulted, got {hits}");
    }
}
