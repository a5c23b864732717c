//! What this process counts for Prometheus: webhook deliveries received and
//! handled, and calls to GitHub's API. These live for the process (a restart
//! starts them at zero, as Prometheus expects of counters). What the store knows
//! — queue depths, jobs, missions, tokens, cost — is read at each scrape by
//! `server::metrics`, so every replica reports the same figures for those.
//!
//! Labels come from small, known sets: an event name becomes a label only when
//! it is one the App receives (the HMAC covers the body, not the
//! `X-GitHub-Event` header, so a replayed body could carry any name), else
//! `other`; HTTP statuses are numbers.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// A delivery's event and what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventOutcome {
    pub event: String,
    pub outcome: String,
}

/// An answer's HTTP status (`error`: no answer, the transport failed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    pub status: String,
}

#[derive(Debug, Default)]
pub struct ProcessMetrics {
    /// `POST /webhook` by event and outcome: stored, duplicate, refused, failed.
    pub deliveries_received: Family<EventOutcome, Counter>,
    /// Deliveries the event loop finished with, by event and outcome:
    /// processed, retried, parked.
    pub deliveries_handled: Family<EventOutcome, Counter>,
    /// Calls to GitHub's REST API by the status of the answer (each try counts).
    pub github_requests: Family<Status, Counter>,
    /// `x-ratelimit-remaining` of GitHub's latest answer that had one (-1: none yet).
    pub github_rate_limit_remaining: Gauge,
}

/// This process's counters.
pub fn process() -> &'static ProcessMetrics {
    static METRICS: OnceLock<ProcessMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let metrics = ProcessMetrics::default();
        metrics.github_rate_limit_remaining.set(-1);
        metrics
    })
}

/// `event` if the App subscribes to it or receives it unasked, else `other`.
fn event_label(event: &str) -> String {
    const UNASKED: &[&str] = &["installation", "installation_repositories", "ping", "-"];
    let known =
        UNASKED.contains(&event) || crate::manifest::EVENTS.iter().any(|(e, _)| *e == event);
    if known { event } else { "other" }.to_owned()
}

/// Counts a webhook delivery's answer. `event` is `-` for a request whose
/// signature did not verify: its headers are anyone's.
pub fn delivery_received(event: &str, outcome: &str) {
    process()
        .deliveries_received
        .get_or_create(&EventOutcome {
            event: event_label(event),
            outcome: outcome.to_owned(),
        })
        .inc();
}

pub fn delivery_handled(event: &str, outcome: &str) {
    process()
        .deliveries_handled
        .get_or_create(&EventOutcome {
            event: event_label(event),
            outcome: outcome.to_owned(),
        })
        .inc();
}

/// Counts one answer (or transport failure) from GitHub, and keeps the rate
/// limit it reported.
pub fn github_answer(status: Option<u16>, rate_limit_remaining: Option<i64>) {
    let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
    process()
        .github_requests
        .get_or_create(&Status { status })
        .inc();
    if let Some(remaining) = rate_limit_remaining {
        process().github_rate_limit_remaining.set(remaining);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_the_app_receives_become_labels() {
        assert_eq!(event_label("issue_comment"), "issue_comment");
        assert_eq!(event_label("installation"), "installation");
        assert_eq!(event_label("x".repeat(60).as_str()), "other");
        assert_eq!(event_label("star"), "other");
    }
}
