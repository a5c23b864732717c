//! Mission control over HTTP: the JSON API (`/api/missions`, `/api/missions/{owner}/{repo}/{issue}`)
//! and its live feed (`…/events`, server-sent events). Read-only. Reachable from
//! loopback only, unless a bearer token is configured, which is then required
//! from everyone: the webhook receiver may face the internet, this must not.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::clock::SharedClock;
use crate::mission::control::{Links, MissionView};
use crate::store::Store;
use crate::store::missions as db;

#[derive(Clone)]
pub struct ControlState {
    pub store: Store,
    pub clock: SharedClock,
    /// The REST API's base URL, for links to GitHub's pages.
    pub api_base: String,
    /// Required as `Authorization: Bearer …` when set (then from any address).
    pub token: Option<SecretString>,
    /// Changes whenever the mission driver changed something.
    pub changes: tokio::sync::watch::Receiver<u64>,
}

impl std::fmt::Debug for ControlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlState")
            .field("api_base", &self.api_base)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// One line of the mission list.
#[derive(Debug, Clone, Serialize)]
pub struct MissionSummary {
    pub repo: String,
    pub issue: u64,
    pub title: Option<String>,
    pub phase: &'static str,
    pub paused: Option<String>,
    pub features: crate::mission::control::Progress,
    pub milestone: crate::mission::control::Progress,
    pub spent: String,
    pub url: String,
}

pub fn routes(state: ControlState) -> Router {
    Router::new()
        .route("/api/missions", get(list))
        .route("/api/missions/{owner}/{repo}/{issue}", get(one))
        .route("/api/missions/{owner}/{repo}/{issue}/events", get(events))
        // The web page (`/`, `/missions/…`, `/assets/…`), behind the same access rule.
        .merge(super::page::routes())
        .layer(middleware::from_fn_with_state(state.clone(), access))
        .with_state(state)
}

/// Loopback only without a token; the token from everyone when one is set.
async fn access(State(state): State<ControlState>, request: Request, next: Next) -> Response {
    match &state.token {
        Some(token) => {
            let given = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            let expected = token.expose_secret().as_bytes();
            let ok = given.len() == expected.len()
                && given
                    .as_bytes()
                    .iter()
                    .zip(expected)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if !ok {
                return (
                    StatusCode::UNAUTHORIZED,
                    "mission control needs `Authorization: Bearer <token>` (the server's control token)\n",
                )
                    .into_response();
            }
        }
        None => {
            let loopback = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_some_and(|ConnectInfo(addr)| addr.ip().is_loopback());
            if !loopback {
                return (
                    StatusCode::FORBIDDEN,
                    "mission control answers on loopback only; set a control token to reach it from elsewhere\n",
                )
                    .into_response();
            }
        }
    }
    next.run(request).await
}

async fn list(State(state): State<ControlState>) -> Result<Json<Vec<MissionSummary>>, ApiError> {
    let now = state.clock.now().unix_timestamp();
    let missions = db::all(state.store.pool()).await?;
    Ok(Json(
        missions
            .iter()
            .map(|stored| {
                let m = &stored.mission;
                let view = MissionView::of(m, now, &Links::from_api(&state.api_base, &m.repo));
                MissionSummary {
                    repo: m.repo.clone(),
                    issue: m.issue,
                    title: view.title.clone(),
                    phase: view.phase,
                    paused: view.paused.clone(),
                    features: view.features.clone(),
                    milestone: view.milestone.clone(),
                    spent: view.budget.spent.clone(),
                    url: format!("/missions/{}/{}", m.repo, m.issue),
                }
            })
            .collect(),
    ))
}

async fn view_of(
    state: &ControlState,
    owner: &str,
    repo: &str,
    issue: u64,
) -> Result<MissionView, ApiError> {
    let full = format!("{owner}/{repo}");
    let mut conn = state
        .store
        .pool()
        .acquire()
        .await
        .map_err(anyhow::Error::from)?;
    let stored = db::find(&mut conn, &full, issue)
        .await?
        .ok_or(ApiError::NotFound)?;
    let now = state.clock.now().unix_timestamp();
    Ok(MissionView::of(
        &stored.mission,
        now,
        &Links::from_api(&state.api_base, &full),
    ))
}

async fn one(
    State(state): State<ControlState>,
    Path((owner, repo, issue)): Path<(String, String, u64)>,
) -> Result<Json<MissionView>, ApiError> {
    Ok(Json(view_of(&state, &owner, &repo, issue).await?))
}

/// The mission's view now, then again after every change, as `mission` events.
async fn events(
    State(state): State<ControlState>,
    Path((owner, repo, issue)): Path<(String, String, u64)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Fails early with 404 for an unknown mission.
    view_of(&state, &owner, &repo, issue).await?;
    let mut changes = state.changes.clone();
    let stream = async_stream(move |tx| async move {
        loop {
            changes.borrow_and_update();
            if let Ok(view) = view_of(&state, &owner, &repo, issue).await
                && let Ok(json) = serde_json::to_string(&view)
                && tx
                    .send(Ok(Event::default().event("mission").data(json)))
                    .await
                    .is_err()
            {
                return;
            }
            // Also tick every few seconds: the active job's elapsed time moves.
            let _ = tokio::time::timeout(Duration::from_secs(5), changes.changed()).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A stream fed by a task (a channel of one), ending when the client goes away.
fn async_stream<F, Fut>(produce: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(produce(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub enum ApiError {
    NotFound,
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "no such mission\n").into_response(),
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "mission control failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "mission control could not read the database\n",
                )
                    .into_response()
            }
        }
    }
}
