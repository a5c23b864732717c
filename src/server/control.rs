//! Mission control over HTTP: the JSON API (`/api/missions`, `/api/missions/{owner}/{repo}/{issue}`)
//! and its live feed (`…/events`, server-sent events). Read-only. The webhook
//! receiver may face the internet; this must not, unless a token guards it:
//!
//! - Without a control token it answers only a request made on this machine: the
//!   peer is loopback, no forwarding header says a proxy relayed it (a reverse
//!   proxy on the same host is a loopback peer too), and `Host` is a loopback name
//!   (a page on another site cannot reach it by DNS rebinding). A server that
//!   listens beyond loopback without a token has mission control off.
//! - With a token, every request must carry it as `Authorization: Bearer …`, and
//!   name a loopback host or one of `control_hosts` in `Host`.
//!
//! Forwarding headers are only ever a reason to refuse: whoever sends a request
//! can write them, so they never say who the client is.

use std::convert::Infallible;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
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
    /// Host names (lowercase, no port) that requests may name in `Host` besides
    /// loopback's: `control_hosts`. They count only with a token.
    pub hosts: Vec<String>,
    /// The server listens beyond loopback (set by `Server::serve`): without a
    /// token, mission control is then off.
    pub listens_beyond_loopback: bool,
    /// Changes whenever the mission driver changed something.
    pub changes: tokio::sync::watch::Receiver<u64>,
}

impl std::fmt::Debug for ControlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlState")
            .field("api_base", &self.api_base)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("hosts", &self.hosts)
            .field("listens_beyond_loopback", &self.listens_beyond_loopback)
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
        // Prometheus' scrape, behind the same access rule (send the token as a
        // bearer token from the scrape config).
        .route("/metrics", get(super::metrics::scrape))
        // The web page (`/`, `/missions/…`, `/assets/…`), behind the same access rule.
        .merge(super::page::routes())
        .layer(middleware::from_fn_with_state(state.clone(), access))
        .with_state(state)
}

/// Headers a proxy adds when it relays a request: their presence means the
/// loopback peer is a proxy, and the client may be anyone.
pub const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
];

const HOW_TO_OPEN: &str = "To reach mission control through a proxy or from another machine, set a \
     control token (`control_token` in the config file, or MISSIONS_CONTROL_TOKEN) and send it as \
     `Authorization: Bearer <token>`; list the host names it is reached by in `control_hosts` \
     (MISSIONS_CONTROL_HOSTS).";

/// Runs the request only when [`admit`] lets it through.
async fn access(State(state): State<ControlState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    match admit(&state, peer, request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Why a request to mission control is not answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: it lacks the token, or comes from elsewhere than this machine
    /// while there is no token.
    Unauthorized(String),
    /// 421: it names a host this server does not answer mission control for.
    /// Not 403: the caller may be allowed (the token may be right), it asked
    /// the wrong name, as a page that rebound a DNS name to this machine does;
    /// 421 Misdirected Request says exactly that, and no client treats it as
    /// "log in again".
    MisdirectedHost(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized(message) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"mission control\"")],
                format!("{message}\n"),
            )
                .into_response(),
            Refusal::MisdirectedHost(message) => {
                (StatusCode::MISDIRECTED_REQUEST, format!("{message}\n")).into_response()
            }
        }
    }
}

/// The access rule (see the module's documentation), on what the request shows:
/// its TCP peer, target and headers.
pub fn admit(
    state: &ControlState,
    peer: Option<SocketAddr>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    let host = addressed_host(uri, headers);
    let Some(token) = &state.token else {
        if state.listens_beyond_loopback {
            return Err(Refusal::Unauthorized(format!(
                "Mission control is off: this server listens beyond loopback and has no control \
                 token. {HOW_TO_OPEN}"
            )));
        }
        if !peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
            return Err(Refusal::Unauthorized(format!(
                "Without a control token, mission control answers requests made on this machine only. \
                 {HOW_TO_OPEN}"
            )));
        }
        if let Some(name) = FORWARDING_HEADERS
            .iter()
            .find(|h| headers.contains_key(**h))
        {
            return Err(Refusal::Unauthorized(format!(
                "This request came through a proxy (it has a `{name}` header), so it may come from \
                 anyone; without a control token mission control answers requests made on this \
                 machine only. {HOW_TO_OPEN}"
            )));
        }
        return match host {
            Ok(h) if is_loopback_host(&h) => Ok(()),
            Ok(h) => Err(Refusal::Unauthorized(format!(
                "This request is addressed to `{}`, not to this machine by a loopback name \
                 (localhost, 127.0.0.1, [::1]); without a control token mission control answers \
                 those only. {HOW_TO_OPEN}",
                printable(&h)
            ))),
            Err(why) => Err(Refusal::Unauthorized(format!(
                "{why}; without a control token mission control answers requests addressed to \
                 localhost, 127.0.0.1 or [::1] only. {HOW_TO_OPEN}"
            ))),
        };
    };
    match host {
        Ok(h) if is_loopback_host(&h) || state.hosts.contains(&h) => {}
        Ok(h) => {
            return Err(Refusal::MisdirectedHost(format!(
                "Mission control does not answer for the host `{}`. If that is the name it is \
                 reached by, add it to `control_hosts` in the config file (or MISSIONS_CONTROL_HOSTS, \
                 comma-separated) and restart; if a proxy relays it, make the proxy pass the \
                 original Host header.",
                printable(&h)
            )));
        }
        Err(why) => {
            return Err(Refusal::MisdirectedHost(format!(
                "{why}; mission control answers requests addressed to a loopback name or to one \
                 of `control_hosts` only."
            )));
        }
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_secret(given.as_bytes(), token.expose_secret().as_bytes()) {
        return Err(Refusal::Unauthorized(
            "Mission control needs `Authorization: Bearer <token>` with the server's control token \
             (`control_token` in its config file, or MISSIONS_CONTROL_TOKEN)."
                .to_owned(),
        ));
    }
    Ok(())
}

/// Compares in time that depends on the length only, not on where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The host (lowercase, without port) the request is addressed to: `Host`, or
/// the target's authority (HTTP/2's `:authority`, an absolute-form request
/// line). When both are there they must agree, and one `Host` only: a request
/// that names two hosts is refused rather than judged by either.
fn addressed_host(uri: &axum::http::Uri, headers: &HeaderMap) -> Result<String, &'static str> {
    let mut named = headers.get_all(header::HOST).iter();
    let from_header = named.next();
    if named.next().is_some() {
        return Err("This request has more than one Host header");
    }
    let from_header = match from_header {
        Some(value) => Some(host_of(value.to_str().unwrap_or(""))?),
        None => None,
    };
    let from_target = match uri.authority() {
        Some(authority) => Some(host_of(authority.as_str())?),
        None => None,
    };
    match (from_header, from_target) {
        (Some(h), Some(t)) if h != t => {
            Err("This request's Host header and its target name different hosts")
        }
        (Some(h), _) | (None, Some(h)) => Ok(h),
        (None, None) => Err("This request names no host (no Host header)"),
    }
}

/// `name[:port]` → `name`, lowercase; IPv6 addresses keep their brackets.
fn host_of(authority: &str) -> Result<String, &'static str> {
    let parsed: axum::http::uri::Authority = authority
        .parse()
        .map_err(|_| "This request's Host is not a host name")?;
    if parsed.as_str().contains('@') || parsed.host().is_empty() {
        return Err("This request's Host is not a host name");
    }
    Ok(parsed.host().to_ascii_lowercase())
}

/// localhost, 127.0.0.0/8 or [::1]: names that reach this machine only.
fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// A host name from a request, safe to quote back: what the authority parser
/// accepted, shortened.
fn printable(host: &str) -> String {
    host.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect()
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
