//! `GET /metrics`: Prometheus' text format (OpenMetrics), behind mission
//! control's access rule (requests from this machine, or with the control
//! token). This process's counters (`crate::metrics`), and what the store says
//! now: the queues' depth and age, missions by phase, jobs by role and outcome,
//! tokens and cost by role — the same figures mission control shows, summed over
//! every mission.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use super::control::{ApiError, ControlState};
use crate::mission::control::{Links, MissionView};
use crate::store::inbox;
use crate::store::missions as db;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Phase {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Role {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleOutcome {
    role: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleKind {
    role: String,
    kind: String,
}

pub async fn scrape(State(state): State<ControlState>) -> Result<Response, ApiError> {
    let text = render(&state).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

async fn render(state: &ControlState) -> anyhow::Result<String> {
    let now = state.clock.now();
    let now_ms = inbox::to_millis(now);
    let mut registry = Registry::with_prefix("missions");

    let process = crate::metrics::process();
    registry.register(
        "webhook_deliveries",
        "Webhook deliveries received by this server, by event and outcome (stored, duplicate, refused, failed)",
        process.deliveries_received.clone(),
    );
    registry.register(
        "deliveries_handled",
        "Deliveries this server's event loop finished with, by event and outcome (processed, retried, parked)",
        process.deliveries_handled.clone(),
    );
    registry.register(
        "github_api_requests",
        "Calls this server made to GitHub's REST API, by the answer's status (error: no answer)",
        process.github_requests.clone(),
    );
    registry.register(
        "github_rate_limit_remaining",
        "x-ratelimit-remaining of GitHub's latest answer to this server (-1: none yet)",
        process.github_rate_limit_remaining.clone(),
    );

    // The queues.
    let (inbox_depth, inbox_oldest) = inbox::pending_depth(state.store.pool()).await?;
    let (outbox_depth, outbox_oldest) = db::outbox_depth(state.store.pool()).await?;
    let inputs_depth = db::inputs_depth(state.store.pool()).await?;
    let age =
        |oldest_ms: Option<i64>| oldest_ms.map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0);
    let gauge = |value: i64| {
        let g: Gauge = Gauge::default();
        g.set(value);
        g
    };
    let seconds = |value: f64| {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(value);
        g
    };
    registry.register(
        "inbox_pending",
        "Deliveries stored and not yet handled",
        gauge(inbox_depth as i64),
    );
    registry.register_with_unit(
        "inbox_oldest_pending_age",
        "How long the oldest pending delivery has waited (0: none pending)",
        Unit::Seconds,
        seconds(age(inbox_oldest)),
    );
    registry.register(
        "mission_inputs_pending",
        "Facts from handled deliveries waiting for the mission driver",
        gauge(inputs_depth as i64),
    );
    registry.register(
        "outbox_pending",
        "Effects on GitHub recorded and not yet performed",
        gauge(outbox_depth as i64),
    );
    registry.register_with_unit(
        "outbox_oldest_pending_age",
        "How long the oldest pending effect has waited (0: none pending)",
        Unit::Seconds,
        seconds(age(outbox_oldest)),
    );

    // The missions, as mission control shows them.
    let missions_by_phase = Family::<Phase, Gauge>::default();
    let jobs_dispatched = Family::<Role, Counter>::default();
    let jobs_finished = Family::<RoleOutcome, Counter>::default();
    let jobs_running = Family::<Role, Gauge>::default();
    let tokens = Family::<RoleKind, Counter>::default();
    let cost = Family::<Role, Counter<f64, AtomicU64>>::default();
    let mut cost_micros: BTreeMap<String, u64> = BTreeMap::new();
    for stored in db::all(state.store.pool()).await? {
        let m = &stored.mission;
        let view = MissionView::of(
            m,
            now.unix_timestamp(),
            &Links::from_api(&state.api_base, &m.repo),
        );
        missions_by_phase
            .get_or_create(&Phase {
                phase: view.phase.to_owned(),
            })
            .inc();
        for job in &view.timeline {
            let role = job.role.clone().unwrap_or_else(|| "unknown".to_owned());
            jobs_dispatched
                .get_or_create(&Role { role: role.clone() })
                .inc();
            jobs_finished
                .get_or_create(&RoleOutcome {
                    role,
                    outcome: job.outcome.clone(),
                })
                .inc();
        }
        if let Some(job) = &view.active_job {
            jobs_dispatched
                .get_or_create(&Role {
                    role: job.role.clone(),
                })
                .inc();
            jobs_running
                .get_or_create(&Role {
                    role: job.role.clone(),
                })
                .inc();
        }
        for (role, usage) in &view.budget.by_role {
            for (kind, n) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cache_read", usage.cache_read_tokens),
                ("cache_write", usage.cache_write_tokens),
            ] {
                tokens
                    .get_or_create(&RoleKind {
                        role: role.clone(),
                        kind: kind.to_owned(),
                    })
                    .inc_by(n);
            }
            *cost_micros.entry(role.clone()).or_default() += usage.cost_micros;
        }
    }
    for (role, micros) in cost_micros {
        cost.get_or_create(&Role { role })
            .inc_by(micros as f64 / 1e6);
    }
    registry.register("missions", "Missions by phase", missions_by_phase);
    registry.register(
        "jobs_dispatched",
        "Jobs dispatched, by role (every mission in the store)",
        jobs_dispatched,
    );
    registry.register(
        "jobs_finished",
        "Jobs finished, by role and outcome (every mission in the store)",
        jobs_finished,
    );
    registry.register("jobs_running", "Jobs running now, by role", jobs_running);
    registry.register(
        "model_tokens",
        "Model tokens the jobs used, by role and kind (input, output, cache_read, cache_write)",
        tokens,
    );
    registry.register("model_cost_usd", "What the jobs' model calls cost, in US dollars, by role (estimates included, as in mission control)", cost);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}
