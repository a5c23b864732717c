//! Test harness shared by the integration tests: a server on a temporary database,
//! signed deliveries of GitHub's own example payloads, and a handler that records
//! what it handled *inside the handler transaction*, so exactly-once is checkable.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use missions::clock::{ManualClock, SharedClock};
use missions::config::RetryPolicy;
use missions::engine::{EventLoop, Handler, HandlerContext, HandlerRegistry};
use missions::github::events::WebhookEvent;
use missions::github::webhook::sign;
use missions::server::{Server, ServerOptions};
use missions::store::Store;
use secrecy::SecretString;

pub mod canary;
pub mod database;
pub mod jobs;
pub mod mission;
pub mod openapi;
pub mod scenario;
pub mod webhook_schemas;
use tokio::sync::Notify;
use tower::ServiceExt;

pub const SECRET: &str = "test-webhook-secret-7d1f";

/// `../shared/github-fixtures`, or `MISSIONS_FIXTURES_DIR`. Missing fixtures fail
/// the test: a test that silently skips proves nothing.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("MISSIONS_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/github-fixtures"
            ))
        });
    assert!(
        dir.join("webhooks").is_dir(),
        "GitHub fixtures not found at {}; set MISSIONS_FIXTURES_DIR",
        dir.display()
    );
    dir
}

/// One of GitHub's published webhook examples.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The folder: the X-GitHub-Event header value.
    pub event: String,
    pub file: String,
    pub body: Vec<u8>,
    pub json: serde_json::Value,
}

pub fn webhook_fixtures() -> Vec<Fixture> {
    let root = fixtures_dir().join("webhooks");
    let mut fixtures = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let event = dir.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let body = std::fs::read(&path).unwrap();
                let json = serde_json::from_slice(&body).unwrap();
                fixtures.push(Fixture {
                    event: event.clone(),
                    file: path.file_name().unwrap().to_string_lossy().into_owned(),
                    body,
                    json,
                });
            }
        }
    }
    fixtures.sort_by(|a, b| (&a.event, &a.file).cmp(&(&b.event, &b.file)));
    fixtures
}

pub fn fixture(event: &str, file: &str) -> Fixture {
    webhook_fixtures()
        .into_iter()
        .find(|f| f.event == event && f.file == file)
        .unwrap_or_else(|| panic!("no fixture {event}/{file}"))
}

/// A request as GitHub sends it. `None` leaves a header out.
pub struct Delivery<'a> {
    pub event: Option<&'a str>,
    pub delivery_id: Option<&'a str>,
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

impl<'a> Delivery<'a> {
    pub fn signed(event: &'a str, delivery_id: &'a str, body: &[u8]) -> Self {
        Delivery {
            event: Some(event),
            delivery_id: Some(delivery_id),
            signature: Some(sign(SECRET.as_bytes(), body)),
            body: body.to_vec(),
        }
    }

    pub fn request(&self) -> Request<Body> {
        let mut builder = Request::post("/webhook")
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/test");
        if let Some(event) = self.event {
            builder = builder.header("x-github-event", event);
        }
        if let Some(id) = self.delivery_id {
            builder = builder.header("x-github-delivery", id);
        }
        if let Some(sig) = &self.signature {
            builder = builder.header("x-hub-signature-256", sig);
        }
        builder.body(Body::from(self.body.clone())).unwrap()
    }
}

pub async fn send(router: &Router, delivery: &Delivery<'_>) -> (StatusCode, String) {
    let response = router.clone().oneshot(delivery.request()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub async fn get(router: &Router, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Records every event it handles into `test_handled`, in the handler transaction.
/// Can be told to fail the first N attempts, or to block (to kill a loop mid-transaction).
#[derive(Clone, Default)]
pub struct Recorder {
    pub fail_first: u32,
    pub always_fail: bool,
    /// When set, the handler writes its row and then waits on this forever.
    pub block: Option<Arc<Notify>>,
    /// Notified when the handler has written its row and is about to block.
    pub entered: Option<Arc<Notify>>,
}

/// The recorder's table on `engine`: `n` is the order rows were written in.
pub fn recorder_table(engine: missions::store::Engine) -> String {
    let n = match engine {
        missions::store::Engine::Sqlite => "n INTEGER PRIMARY KEY AUTOINCREMENT",
        missions::store::Engine::Postgres => "n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    };
    format!(
        "CREATE TABLE IF NOT EXISTS test_handled ({n}, delivery_id TEXT NOT NULL, event TEXT NOT NULL, \
         action TEXT, attempt BIGINT NOT NULL)"
    )
}

#[async_trait]
impl Handler for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn handle(
        &self,
        cx: &mut HandlerContext<'_>,
        event: &WebhookEvent,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO test_handled (delivery_id, event, action, attempt) VALUES ($1, $2, $3, $4)",
        )
        .bind(&cx.delivery.delivery_id)
        .bind(event.event_name())
        .bind(event.action())
        .bind(i64::from(cx.delivery.attempt))
        .execute(cx.db().await?)
        .await?;
        if let Some(block) = &self.block {
            if let Some(entered) = &self.entered {
                entered.notify_one();
            }
            block.notified().await;
        }
        if self.always_fail || cx.delivery.attempt <= self.fail_first {
            anyhow::bail!("recorder told to fail attempt {}", cx.delivery.attempt);
        }
        Ok(())
    }
}

/// Rows the recorder committed: (delivery_id, event, action, attempt).
pub async fn handled(store: &Store) -> Vec<(String, String, Option<String>, i64)> {
    sqlx::query_as("SELECT delivery_id, event, action, attempt FROM test_handled ORDER BY n")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

pub async fn inbox_rows(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM inbox")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: std::time::Duration::from_secs(10),
        max: std::time::Duration::from_secs(60),
    }
}

/// A temporary database with the recorder's table, and a manual clock.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    url: tokio::sync::OnceCell<String>,
    pub clock: ManualClock,
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv {
            dir: tempfile::tempdir().unwrap(),
            url: tokio::sync::OnceCell::new(),
            clock: ManualClock::starting_now(),
        }
    }

    /// The test's database (this binary's engine), made on first use.
    pub async fn url(&self) -> &str {
        self.url
            .get_or_init(|| database::fresh_url(self.dir.path()))
            .await
    }

    pub fn shared_clock(&self) -> SharedClock {
        Arc::new(self.clock.clone())
    }

    pub async fn store(&self) -> Store {
        let store = Store::open(self.url().await).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(recorder_table(store.engine())))
            .execute(store.pool())
            .await
            .unwrap();
        store
    }

    /// A server whose event loop is not running: tests drive `event_loop()` by hand.
    pub async fn server(&self) -> Server {
        self.server_with(HandlerRegistry::new(), false).await
    }

    pub async fn server_with(&self, handlers: HandlerRegistry, run_event_loop: bool) -> Server {
        let store = self.store().await;
        Server::start(
            store,
            ServerOptions {
                webhook_secrets: vec![SecretString::from(SECRET)],
                handlers,
                retry: fast_retry(),
                clock: self.shared_clock(),
                run_event_loop,
                missions: None,
            },
        )
        .await
        .unwrap()
    }

    pub async fn event_loop(&self, handlers: HandlerRegistry) -> EventLoop {
        EventLoop::new(
            self.store().await,
            handlers,
            fast_retry(),
            self.shared_clock(),
            Arc::new(Notify::new()),
        )
    }
}

/// A fresh delivery id, as GitHub makes them.
pub fn delivery_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
