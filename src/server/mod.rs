//! `missions serve`: the axum receiver, the ingest writer and the event loop,
//! started and stopped together.

pub mod control;
pub mod ingest;
pub mod metrics;
pub mod page;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::{Config, RetryPolicy};
use crate::engine::missions::{DriverConfig, MissionDriver, MissionHandler};
use crate::engine::{EventLoop, HandlerRegistry};
use crate::github::auth::AppCredentials;
use crate::github::client::GitHubApp;
use crate::github::webhook::{MAX_PAYLOAD_BYTES, WebhookSecrets};
use crate::store::Store;
use ingest::Ingest;

/// What every request handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub secrets: Arc<WebhookSecrets>,
    pub ingest: Ingest,
    pub store: Store,
    pub clock: SharedClock,
    /// Whether an event loop was started, and whether it is still running (a
    /// panic outside the handlers would end it; readiness must say so).
    pub event_loop: Option<Arc<AtomicBool>>,
    /// Mission control (the JSON API and its page), when missions run.
    pub control: Option<control::ControlState>,
}

pub fn router(state: AppState) -> Router {
    let control = state.control.clone();
    let router = Router::new()
        .route("/webhook", post(webhook::receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // Bodies over GitHub's own cap are refused with 413 before they are read whole.
        .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
        .with_state(state);
    match control {
        Some(control) => router.merge(control::routes(control)),
        None => router,
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if let Some(running) = &state.event_loop
        && !running.load(Ordering::SeqCst)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "event loop stopped; deliveries are stored but not handled (see the log)\n",
        );
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "not ready: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
        }
    }
}

pub struct ServerOptions {
    pub webhook_secrets: Vec<SecretString>,
    pub handlers: HandlerRegistry,
    pub retry: RetryPolicy,
    pub clock: SharedClock,
    /// Off in tests that drive the loop by hand (or want deliveries left pending).
    pub run_event_loop: bool,
    /// Runs missions: the mission handler joins the handlers and the driver starts
    /// beside the event loop. `None`: webhooks are stored and logged only.
    pub missions: Option<MissionsOptions>,
}

/// What the mission driver needs.
pub struct MissionsOptions {
    pub app: Arc<GitHubApp>,
    pub driver: DriverConfig,
    /// Mission control's bearer token; `None`: requests made on this machine
    /// only, and none when the server listens beyond loopback.
    pub control_token: Option<SecretString>,
    /// Host names mission control may be reached by besides loopback's
    /// (`control_hosts`); they count only with a token.
    pub control_hosts: Vec<String>,
}

/// A running server minus the listening socket: tests drive `router()` directly,
/// `missions serve` binds it to an address.
pub struct Server {
    state: AppState,
    stop: CancellationToken,
    writer: JoinHandle<()>,
    event_loop: Option<JoinHandle<()>>,
    progress: Option<tokio::sync::watch::Receiver<u64>>,
    driver: Option<JoinHandle<()>>,
    mission_progress: Option<tokio::sync::watch::Receiver<u64>>,
}

impl Server {
    pub async fn start(store: Store, options: ServerOptions) -> anyhow::Result<Server> {
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (ingest, writer) = Ingest::start(store.clone(), wake.clone(), stop.child_token());
        let running = Arc::new(AtomicBool::new(options.run_event_loop));
        let mut progress = None;
        let mut handlers = options.handlers;
        if options.missions.is_some() {
            handlers = handlers.with(MissionHandler);
        }
        let event_loop = options.run_event_loop.then(|| {
            let event_loop = EventLoop::new(
                store.clone(),
                handlers,
                options.retry,
                options.clock.clone(),
                wake.clone(),
            );
            progress = Some(event_loop.subscribe());
            let stop = stop.child_token();
            let running = running.clone();
            tokio::spawn(async move {
                // Cleared however the loop ends, a panic included.
                let _running = ClearOnDrop(running);
                event_loop.run(stop).await
            })
        });
        let mut mission_progress = None;
        let mut control = None;
        let driver = match (options.missions, &progress) {
            (Some(missions), Some(inputs)) => {
                let api_base = missions.app.base_url().to_owned();
                let control_token = missions.control_token.clone();
                let control_hosts = missions.control_hosts.clone();
                let driver = MissionDriver::new(
                    store.clone(),
                    missions.app,
                    missions.driver,
                    options.clock.clone(),
                );
                mission_progress = Some(driver.subscribe());
                control = Some(control::ControlState {
                    store: store.clone(),
                    clock: options.clock.clone(),
                    api_base,
                    token: control_token,
                    hosts: control_hosts,
                    // Known once bound: `serve` sets it.
                    listens_beyond_loopback: false,
                    changes: driver.subscribe(),
                });
                let inputs = inputs.clone();
                let stop = stop.child_token();
                Some(tokio::spawn(driver.run(inputs, stop)))
            }
            _ => None,
        };
        let state = AppState {
            secrets: Arc::new(WebhookSecrets::new(&options.webhook_secrets)),
            ingest,
            store,
            clock: options.clock,
            event_loop: options.run_event_loop.then_some(running),
            control,
        };
        Ok(Server {
            state,
            stop,
            writer,
            event_loop,
            progress,
            driver,
            mission_progress,
        })
    }

    /// Changes after every mission driver pass that did something (None without missions).
    pub fn mission_progress(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.mission_progress.clone()
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Changes after every batch the event loop commits (None without an event loop).
    pub fn progress(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.progress.clone()
    }

    /// Stops taking deliveries, stores what was queued, lets the event loop finish
    /// its batch, and waits for both.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.writer.await {
            tracing::error!(error = %e, "inbox writer ended abnormally");
        }
        if let Some(event_loop) = self.event_loop
            && let Err(e) = event_loop.await
        {
            tracing::error!(error = %e, "event loop ended abnormally");
        }
        if let Some(driver) = self.driver
            && let Err(e) = driver.await
        {
            tracing::error!(error = %e, "mission driver ended abnormally");
        }
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then shuts down.
    pub async fn serve(
        mut self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let local = listener
            .local_addr()
            .context("cannot read the listening address")?;
        if let Some(control) = &mut self.state.control {
            // Anyone who can reach the socket could read mission control:
            // without a token it stays on this machine, or is off.
            control.listens_beyond_loopback = !local.ip().to_canonical().is_loopback();
            if control.listens_beyond_loopback && control.token.is_none() {
                tracing::warn!(
                    %local,
                    "mission control (the page and /api/missions) is off: the server listens \
                     beyond loopback and no control token is set; set MISSIONS_CONTROL_TOKEN \
                     (or control_token in the config file) to use it. Webhooks are received as usual"
                );
            }
            if !control.hosts.is_empty() && control.token.is_none() {
                tracing::warn!(
                    hosts = ?control.hosts,
                    "control_hosts (MISSIONS_CONTROL_HOSTS) is set but no control token is: those \
                     names count only with a token, so mission control answers requests made on \
                     this machine only; set MISSIONS_CONTROL_TOKEN too"
                );
            }
        }
        let app = self.router();
        // The peer's address: mission control answers loopback only by default.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server failed")?;
        self.shutdown().await;
        Ok(())
    }
}

struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// `missions serve`.
pub async fn run(config: Config, clock: SharedClock) -> anyhow::Result<()> {
    // Check the App identity now: a bad key or API URL should stop the start, not
    // surface at the first GitHub call hours later.
    let missions = match &config.app {
        Some(app) => {
            let credentials = AppCredentials::new(app.app_id, app.private_key_pem.clone());
            let github = GitHubApp::new(&config.github_api_url, credentials, clock.clone())?;
            tracing::info!(app_id = app.app_id, api = %config.github_api_url, "GitHub App identity loaded");
            Some(MissionsOptions {
                app: Arc::new(github),
                driver: config.driver.clone(),
                control_token: config.control_token.clone(),
                control_hosts: config.control_hosts.clone(),
            })
        }
        None => {
            tracing::warn!(
                "no GitHub App identity configured (MISSIONS_APP_ID and MISSIONS_PRIVATE_KEY_PATH): \
                 webhooks are received and stored, but nothing can call GitHub's API, so no \
                 mission runs"
            );
            None
        }
    };
    let store = Store::open(config.database_url.expose_secret()).await?;
    // Bind before starting anything, so a taken port stops the start cleanly.
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (set MISSIONS_LISTEN)", config.listen))?;
    let server = Server::start(
        store.clone(),
        ServerOptions {
            webhook_secrets: config.webhook_secrets.clone(),
            handlers: HandlerRegistry::standard(),
            retry: config.retry,
            clock,
            run_event_loop: true,
            missions,
        },
    )
    .await?;
    let addr: SocketAddr = listener.local_addr()?;
    let database = crate::store::redact_url(config.database_url.expose_secret());
    tracing::info!(%addr, %database, "listening; POST webhooks to http://{addr}/webhook");
    server.serve(listener, shutdown).await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM (what systemd, Kubernetes and the benchmark send). The
/// handlers are registered when this is called, not when the future is first
/// polled: a signal that arrives right after "listening" still stops gracefully.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutting down: finishing accepted deliveries");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing accepted deliveries");
        })
    }
}
