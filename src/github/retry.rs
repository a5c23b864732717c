//! When to retry a GitHub API request, and how long to wait first. Pure: the
//! caller passes the time and the jitter, and does the sleeping.
//!
//! GitHub's rules ("Rate limits for the REST API", "Best practices for using
//! the REST API"):
//! - 500, 502, 503, 504 and transport errors: retry with exponential backoff
//!   and jitter.
//! - A rate limit (429, or 403 with `retry-after`, `x-ratelimit-remaining: 0`
//!   or a "secondary rate limit" message): do not retry before `retry-after`
//!   seconds, else before `x-ratelimit-reset`, else wait at least a minute,
//!   growing exponentially while the secondary limit persists. Retrying
//!   earlier "may result in the banning of your integration", so these waits
//!   are never shortened: when one does not fit in what is left of
//!   [`ApiRetry::max_total_wait`], we give up instead.
//! - Anything else (401, plain 403, 404, 422, ...): retrying cannot help.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use time::OffsetDateTime;
use time::macros::format_description;

/// GitHub's minimum wait after a secondary rate limit that names no time.
pub const SECONDARY_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Margin added to `x-ratelimit-reset`: it has whole-second resolution and our
/// clock may trail GitHub's.
const RESET_MARGIN: Duration = Duration::from_secs(1);

/// How a request is retried. `Default` is 5 attempts, backoff from 1 s capped
/// at 60 s, and at most 5 minutes of waiting in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRetry {
    /// Attempts in all, the first included (0 behaves as 1).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles for each further one.
    pub base_delay: Duration,
    /// Cap on one backoff wait. Waits GitHub asks for are not capped (see the
    /// module docs), only bounded by `max_total_wait`.
    pub max_delay: Duration,
    /// Cap on the sum of all waits of one request.
    pub max_total_wait: Duration,
    /// The longest rate-limit wait slept inside one request; a longer one is
    /// given back to the caller ([`GiveUp::WaitTooLong`]), who can put the
    /// work aside until then instead of holding everything else up.
    pub max_rate_limit_wait: Duration,
}

impl Default for ApiRetry {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_total_wait: Duration::from_secs(5 * 60),
            max_rate_limit_wait: Duration::from_secs(5 * 60),
        }
    }
}

/// What went wrong with one attempt.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// GitHub answered with a non-success status. `message` is GitHub's error
    /// message (its `message` field), used to spot secondary rate limits.
    Status {
        status: StatusCode,
        headers: &'a HeaderMap,
        message: &'a str,
    },
    /// No answer: connection refused or reset, timeout, TLS.
    Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Retry { after: Duration },
    GiveUp(GiveUp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Retrying cannot help (a 4xx other than a rate limit).
    NotRetryable,
    /// `max_attempts` made, or the next backoff would exceed `max_total_wait`.
    Exhausted,
    /// GitHub asked to wait `asked`, more than is left of `max_total_wait`.
    WaitTooLong { asked: Duration },
    /// `max_attempts` made and GitHub still rate-limits, asking to wait
    /// `asked`: whoever tries next must wait that long first.
    StillRateLimited { asked: Duration },
}

/// What kind of wait a failure calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Ours to choose: exponential backoff with jitter.
    Backoff,
    /// Set by GitHub: at least this long (a 5xx naming a wait).
    Server(Duration),
    /// A rate limit: at least this long, whoever retries.
    RateLimit(Duration),
    Never,
}

impl ApiRetry {
    /// What to do after attempt number `attempt` (1-based) failed with
    /// `failure`, having already waited `waited` for this request. `jitter` is
    /// in [0, 1): random in production, fixed in tests.
    pub fn decide(
        &self,
        attempt: u32,
        waited: Duration,
        failure: Failure<'_>,
        now: OffsetDateTime,
        jitter: f64,
    ) -> Decision {
        let wait = match failure {
            Failure::Transport => Wait::Backoff,
            Failure::Status {
                status,
                headers,
                message,
            } => classify(status, headers, message, now, attempt),
        };
        if wait == Wait::Never {
            return Decision::GiveUp(GiveUp::NotRetryable);
        }
        if attempt >= self.max_attempts.max(1) {
            return Decision::GiveUp(match wait {
                Wait::RateLimit(asked) => GiveUp::StillRateLimited { asked },
                _ => GiveUp::Exhausted,
            });
        }
        let left = self.max_total_wait.saturating_sub(waited);
        match wait {
            Wait::Server(asked) if asked > left => Decision::GiveUp(GiveUp::WaitTooLong { asked }),
            Wait::RateLimit(asked) if asked > left.min(self.max_rate_limit_wait) => {
                Decision::GiveUp(GiveUp::WaitTooLong { asked })
            }
            Wait::Server(asked) | Wait::RateLimit(asked) => Decision::Retry { after: asked },
            _ => {
                let after = self.backoff(attempt, jitter);
                if after > left {
                    Decision::GiveUp(GiveUp::Exhausted)
                } else {
                    Decision::Retry { after }
                }
            }
        }
    }

    /// Backoff after attempt `attempt`: `base_delay * 2^(attempt-1)`, capped at
    /// `max_delay`, then scaled into [1/2, 1) of that by `jitter` so that
    /// clients failing together do not retry together.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: OffsetDateTime,
    attempt: u32,
) -> Wait {
    let retry_after = retry_after(headers, now);
    let exhausted = header_str(headers, "x-ratelimit-remaining").is_some_and(|v| v == "0");
    let secondary = is_secondary_rate_limit(message);
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && (retry_after.is_some() || exhausted || secondary));
    if rate_limited {
        if let Some(after) = retry_after {
            return Wait::RateLimit(after);
        }
        if exhausted && let Some(reset) = until_reset(headers, now) {
            return Wait::RateLimit(reset);
        }
        // A minute, doubling while the limit persists.
        let exponent = attempt.saturating_sub(1).min(16);
        return Wait::RateLimit(SECONDARY_RATE_LIMIT_WAIT.saturating_mul(1 << exponent));
    }
    match status {
        StatusCode::INTERNAL_SERVER_ERROR
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => retry_after.map_or(Wait::Backoff, Wait::Server),
        _ => Wait::Never,
    }
}

/// GitHub's message for secondary limits ("You have exceeded a secondary rate
/// limit"); older GitHub Enterprise Server says "abuse detection mechanism".
fn is_secondary_rate_limit(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("secondary rate limit") || message.contains("abuse detection")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// `retry-after`: delay seconds, or an HTTP-date (RFC 9110), as a wait from `now`.
pub fn retry_after(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let value = header_str(headers, "retry-after")?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = time::PrimitiveDateTime::parse(
        value,
        format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ),
    )
    .ok()?
    .assume_utc();
    Some(until(date, now))
}

/// Wait until `x-ratelimit-reset` (unix seconds), plus a margin.
fn until_reset(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let reset = header_str(headers, "x-ratelimit-reset")?
        .parse::<i64>()
        .ok()?;
    let reset = OffsetDateTime::from_unix_timestamp(reset).ok()?;
    Some(until(reset, now) + RESET_MARGIN)
}

fn until(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    (at - now).try_into().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2025-06-01 12:00:00 UTC);
    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn decide(
        attempt: u32,
        status: u16,
        pairs: &[(&'static str, &str)],
        message: &str,
    ) -> Decision {
        let headers = headers(pairs);
        let failure = Failure::Status {
            status: StatusCode::from_u16(status).unwrap(),
            headers: &headers,
            message,
        };
        ApiRetry::default().decide(attempt, Duration::ZERO, failure, NOW, 0.0)
    }

    fn retry(after: Duration) -> Decision {
        Decision::Retry { after }
    }

    #[test]
    fn defaults() {
        let d = ApiRetry::default();
        assert_eq!(d.max_attempts, 5);
        assert_eq!(d.base_delay, secs(1));
        assert_eq!(d.max_delay, secs(60));
        assert_eq!(d.max_total_wait, secs(300));
        assert_eq!(d.max_rate_limit_wait, secs(300));
    }

    #[test]
    fn a_rate_limit_longer_than_the_inline_cap_goes_back_to_the_caller() {
        let policy = ApiRetry {
            max_rate_limit_wait: secs(10),
            ..ApiRetry::default()
        };
        let limited = headers(&[("retry-after", "30")]);
        let failure = Failure::Status {
            status: StatusCode::FORBIDDEN,
            headers: &limited,
            message: "",
        };
        assert_eq!(
            policy.decide(1, Duration::ZERO, failure, NOW, 0.0),
            Decision::GiveUp(GiveUp::WaitTooLong { asked: secs(30) })
        );
        let short = headers(&[("retry-after", "3")]);
        let failure = Failure::Status {
            status: StatusCode::FORBIDDEN,
            headers: &short,
            message: "",
        };
        assert_eq!(
            policy.decide(1, Duration::ZERO, failure, NOW, 0.0),
            retry(secs(3))
        );
        // A 5xx naming a longer wait is not a rate limit: the total bounds it.
        let failure = Failure::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            headers: &limited,
            message: "",
        };
        assert_eq!(
            policy.decide(1, Duration::ZERO, failure, NOW, 0.0),
            retry(secs(30))
        );
    }

    #[test]
    fn server_errors_back_off_exponentially() {
        for status in [500, 502, 503, 504] {
            assert_eq!(
                decide(1, status, &[], ""),
                retry(Duration::from_millis(500))
            );
            assert_eq!(decide(3, status, &[], ""), retry(secs(2)));
        }
        let policy = ApiRetry::default();
        assert_eq!(policy.backoff(1, 0.999_999).as_millis(), 999);
        assert_eq!(
            policy.backoff(20, 0.0),
            secs(30),
            "capped at max_delay, jittered"
        );
        assert!(policy.backoff(20, 0.999) <= policy.max_delay);
        // A 503 that names a wait gets that wait.
        assert_eq!(decide(1, 503, &[("retry-after", "7")], ""), retry(secs(7)));
    }

    #[test]
    fn transport_errors_back_off() {
        let policy = ApiRetry::default();
        let d = policy.decide(2, Duration::ZERO, Failure::Transport, NOW, 0.0);
        assert_eq!(d, retry(secs(1)));
    }

    #[test]
    fn attempts_are_bounded() {
        assert_eq!(decide(5, 502, &[], ""), Decision::GiveUp(GiveUp::Exhausted));
        let once = ApiRetry {
            max_attempts: 0,
            ..ApiRetry::default()
        };
        let d = once.decide(1, Duration::ZERO, Failure::Transport, NOW, 0.0);
        assert_eq!(d, Decision::GiveUp(GiveUp::Exhausted));
        // Backoff beyond what is left of the budget: give up.
        let policy = ApiRetry::default();
        let d = policy.decide(
            2,
            Duration::from_millis(299_500),
            Failure::Transport,
            NOW,
            0.0,
        );
        assert_eq!(d, Decision::GiveUp(GiveUp::Exhausted));
    }

    #[test]
    fn out_of_attempts_while_rate_limited_says_how_long_to_wait() {
        // The next try, even a later one of the caller's own, must wait too.
        assert_eq!(
            decide(5, 403, &[("retry-after", "30")], ""),
            Decision::GiveUp(GiveUp::StillRateLimited { asked: secs(30) })
        );
        let once = ApiRetry {
            max_attempts: 1,
            ..ApiRetry::default()
        };
        let headers = HeaderMap::new();
        let failure = Failure::Status {
            status: StatusCode::FORBIDDEN,
            headers: &headers,
            message: "You have exceeded a secondary rate limit",
        };
        assert_eq!(
            once.decide(1, Duration::ZERO, failure, NOW, 0.0),
            Decision::GiveUp(GiveUp::StillRateLimited { asked: secs(60) })
        );
        // A 5xx naming a wait is not a rate limit.
        assert_eq!(
            decide(5, 503, &[("retry-after", "7")], ""),
            Decision::GiveUp(GiveUp::Exhausted)
        );
    }

    #[test]
    fn plain_client_errors_are_not_retried() {
        for status in [400, 401, 403, 404, 409, 422] {
            let d = decide(1, status, &[("x-ratelimit-remaining", "4999")], "Not Found");
            assert_eq!(d, Decision::GiveUp(GiveUp::NotRetryable), "{status}");
        }
    }

    #[test]
    fn secondary_rate_limit_with_retry_after() {
        let message = "You have exceeded a secondary rate limit. Please wait a few minutes.";
        assert_eq!(
            decide(1, 403, &[("retry-after", "30")], message),
            retry(secs(30))
        );
        assert_eq!(
            decide(1, 403, &[("retry-after", "30")], ""),
            retry(secs(30))
        );
        assert_eq!(decide(1, 429, &[("retry-after", "2")], ""), retry(secs(2)));
        let date = "Sun, 01 Jun 2025 12:00:45 GMT";
        assert_eq!(
            decide(1, 429, &[("retry-after", date)], ""),
            retry(secs(45))
        );
        let past = "Sun, 01 Jun 2025 11:00:00 GMT";
        assert_eq!(decide(1, 429, &[("retry-after", past)], ""), retry(secs(0)));
    }

    #[test]
    fn secondary_rate_limit_without_headers_waits_a_minute_and_more() {
        let message = "You have exceeded a SECONDARY RATE LIMIT";
        assert_eq!(decide(1, 403, &[], message), retry(secs(60)));
        assert_eq!(decide(2, 403, &[], message), retry(secs(120)));
        assert_eq!(decide(1, 429, &[], ""), retry(secs(60)));
        // 60 + 120 waited: 240 more does not fit in 5 minutes.
        let headers = HeaderMap::new();
        let failure = Failure::Status {
            status: StatusCode::FORBIDDEN,
            headers: &headers,
            message,
        };
        let d = ApiRetry::default().decide(3, secs(180), failure, NOW, 0.0);
        assert_eq!(
            d,
            Decision::GiveUp(GiveUp::WaitTooLong { asked: secs(240) })
        );
    }

    #[test]
    fn primary_rate_limit_waits_until_reset() {
        let reset = (NOW.unix_timestamp() + 20).to_string();
        let pairs = [
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &*reset),
        ];
        assert_eq!(
            decide(1, 403, &pairs, "API rate limit exceeded"),
            retry(secs(21))
        );
        assert_eq!(decide(1, 429, &pairs, ""), retry(secs(21)));
        // retry-after wins over the reset.
        let pairs = [
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &*reset),
            ("retry-after", "3"),
        ];
        assert_eq!(decide(1, 403, &pairs, ""), retry(secs(3)));
    }

    #[test]
    fn waits_longer_than_the_budget_give_up_saying_how_long() {
        let reset = (NOW.unix_timestamp() + 3600).to_string();
        let pairs = [
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &*reset),
        ];
        assert_eq!(
            decide(1, 403, &pairs, ""),
            Decision::GiveUp(GiveUp::WaitTooLong { asked: secs(3601) })
        );
        // Not capped at max_delay: GitHub's wait is honored when it fits.
        assert_eq!(
            decide(1, 429, &[("retry-after", "90")], ""),
            retry(secs(90))
        );
        assert_eq!(
            decide(1, 429, &[("retry-after", "301")], ""),
            Decision::GiveUp(GiveUp::WaitTooLong { asked: secs(301) })
        );
    }

    #[test]
    fn unparsable_headers_are_ignored() {
        let pairs = [
            ("retry-after", "soon"),
            ("x-ratelimit-reset", "x"),
            ("x-ratelimit-remaining", "0"),
        ];
        assert_eq!(decide(1, 403, &pairs, ""), retry(secs(60)));
        assert_eq!(
            decide(1, 404, &[("retry-after", "soon")], ""),
            Decision::GiveUp(GiveUp::NotRetryable)
        );
    }
}
