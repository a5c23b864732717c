//! The HTTP both real providers share: one JSON POST with retries on what
//! model APIs answer when busy (429, 5xx, Anthropic's 529 "overloaded"),
//! honoring `retry-after`, and timeouts.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::LlmError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRetry {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for HttpRetry {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// A whole model call may take minutes (long outputs); connecting may not.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Statuses worth another try: rate limits, timeouts, server trouble.
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || (500..=599).contains(&status)
}

/// `retry-after-ms` (OpenAI) or `retry-after` in seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    if let Some(ms) = number("retry-after-ms") {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    number("retry-after").map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// The answer of a POST that was not retried further: success or an error to map.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub attempts: u32,
}

/// POSTs `body` (JSON) to `url` with `headers`, retrying as [`HttpRetry`] says.
/// A retryable status that persists is returned as the last answer; transport
/// errors that persist are an [`LlmError::Transport`].
pub async fn post_json(
    client: &reqwest::Client,
    provider: &str,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
    retry: HttpRetry,
) -> Result<Answer, LlmError> {
    post_json_with(client, provider, url, headers, body, retry, |_, _, _| false).await
}

/// [`post_json`], where `final_answer(status, headers, body)` may declare an
/// answer with a retryable status final: OpenAI answers 429 both for rate
/// limits (worth waiting for) and for an exhausted quota (a billing problem
/// that no retry fixes).
pub async fn post_json_with(
    client: &reqwest::Client,
    provider: &str,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
    retry: HttpRetry,
    final_answer: impl Fn(u16, &HeaderMap, &[u8]) -> bool + Send,
) -> Result<Answer, LlmError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let last = attempt >= retry.max_attempts.max(1);
        let backoff = (retry.base_delay * 2u32.saturating_pow(attempt - 1)).min(retry.max_delay);
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = response.bytes().await.unwrap_or_default();
                if !retryable(status) || last || final_answer(status, &headers, &body) {
                    return Ok(Answer {
                        status,
                        headers,
                        body,
                        attempts: attempt,
                    });
                }
                let wait = retry_after(&headers)
                    .unwrap_or(backoff)
                    .min(retry.max_delay);
                tracing::warn!(provider, status, attempt, ?wait, "model API busy; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                // reqwest errors name the URL, never headers: no key can leak here.
                let message = e.without_url().to_string();
                if last {
                    return Err(LlmError::Transport {
                        provider: provider.to_owned(),
                        url: url.to_owned(),
                        message: format!("{message} (after {attempt} attempts)"),
                    });
                }
                tracing::warn!(provider, attempt, error = %message, wait = ?backoff, "model API unreachable; retrying");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Installs rustls' ring crypto provider as the process default, once; a
/// no-op when a provider is already installed. reqwest is built with
/// `rustls-no-provider` (aws-lc needs cmake), so building any
/// `reqwest::Client` panics until a provider is installed: call this first
/// wherever a client is built other than through [`client`].
pub fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Err means another provider won the race: fine, it is used instead.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client with the timeouts above (HTTPS with rustls and ring).
pub fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client with default settings builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        assert!(
            retryable(429)
                && retryable(529)
                && retryable(500)
                && !retryable(400)
                && !retryable(401)
        );
    }
}
