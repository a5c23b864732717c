//! Retries of the App's GitHub client against a local fake GitHub (axum on
//! 127.0.0.1:0) that answers scripted sequences: 5xx, rate limits, plain 4xx,
//! dropped connections, for the installation request API and the token
//! exchange.
//!
//! The RSA key pair is generated here, once per test binary. The App uses the
//! system clock, since rate-limit waits are real sleeps; backoff is 10 ms so
//! the tests are fast, and only lower time bounds are asserted.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use missions::clock;
use missions::github::auth::AppCredentials;
use missions::github::client::{GitHubApp, GitHubError, InstallationClient};
use missions::github::retry::ApiRetry;
use rsa::RsaPrivateKey;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

const APP_ID: u64 = 4343;
const INSTALLATION: u64 = 7;
/// Generous: the slowest test waits ~2 s on purpose.
const WAIT: Duration = Duration::from_secs(30);
const SECONDARY: &str = "You have exceeded a secondary rate limit. Please wait a few minutes \
     before you try again.";

const FAST: ApiRetry = ApiRetry {
    max_attempts: 5,
    base_delay: Duration::from_millis(10),
    max_delay: Duration::from_millis(100),
    max_total_wait: Duration::from_secs(10),
    max_rate_limit_wait: Duration::from_secs(10),
};

// ---------------------------------------------------------------- key pair

struct TestKey {
    private_pem: String,
    public_pem: String,
}

static KEY: LazyLock<TestKey> = LazyLock::new(|| {
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("generate RSA key");
    TestKey {
        private_pem: key.to_pkcs1_pem(LineEnding::LF).expect("pkcs1").to_string(),
        public_pem: key
            .to_public_key()
            .to_pkcs1_pem(LineEnding::LF)
            .expect("public pem"),
    }
});

// ---------------------------------------------------------------- fake GitHub

/// One scripted answer.
#[derive(Clone)]
enum Reply {
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Drop the connection without answering.
    Drop,
}

fn reply(status: u16, headers: &[(&'static str, &str)], body: Value) -> Reply {
    Reply::Status {
        status,
        headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        body: body.to_string(),
    }
}

fn github_error(status: u16, message: &str) -> Reply {
    let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest"});
    reply(status, &[], body)
}

fn no_content() -> Reply {
    Reply::Status {
        status: 204,
        headers: vec![],
        body: String::new(),
    }
}

/// A proxy's error page, not GitHub JSON.
fn html(status: u16) -> Reply {
    Reply::Status {
        status,
        headers: vec![("content-type", "text/html".into())],
        body: "<html><body>bad gateway</body></html>".into(),
    }
}

/// What the fake saw on one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    authorization: Option<String>,
    accept: Option<String>,
    content_type: Option<String>,
    if_none_match: Option<String>,
    body: String,
    at: SystemTime,
}

#[derive(Default)]
struct Fake {
    /// "METHOD /path" (as sent, base path included) -> answers to give, in order;
    /// once empty, the default answer.
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    seen: Mutex<Vec<Seen>>,
    tokens: Mutex<Vec<String>>,
    jwts: Mutex<Vec<String>>,
}

impl Fake {
    fn script(&self, key: &str, replies: impl IntoIterator<Item = Reply>) {
        self.script
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .extend(replies);
    }

    fn next(&self, key: &str) -> Option<Reply> {
        self.script.lock().unwrap().get_mut(key)?.pop_front()
    }

    fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .cloned()
            .collect()
    }

    /// Every secret the fake handed out or received.
    fn secrets(&self) -> Vec<String> {
        let mut all = self.tokens.lock().unwrap().clone();
        all.extend(self.jwts.lock().unwrap().iter().cloned());
        all
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("<non-ascii>").to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    header(headers, "authorization")?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

fn record(fake: &Fake, method: Method, path: &str, headers: &HeaderMap, body: &Bytes) {
    fake.seen.lock().unwrap().push(Seen {
        method,
        path: path.to_owned(),
        authorization: header(headers, "authorization"),
        accept: header(headers, "accept"),
        content_type: header(headers, "content-type"),
        if_none_match: header(headers, "if-none-match"),
        body: String::from_utf8_lossy(body).into_owned(),
        at: SystemTime::now(),
    });
}

fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Status {
            status,
            headers,
            body,
        } => {
            let mut map = HeaderMap::new();
            map.insert("content-type", HeaderValue::from_static("application/json"));
            for (name, value) in headers {
                map.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(&value).unwrap(),
                );
            }
            (StatusCode::from_u16(status).unwrap(), map, body).into_response()
        }
        // Unwinds the connection task without running the panic hook: the
        // client sees the connection closed before an answer.
        Reply::Drop => std::panic::resume_unwind(Box::new("fake GitHub drops the connection")),
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
}

async fn access_tokens(
    State(fake): State<Arc<Fake>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    record(&fake, Method::POST, &path, &headers, &body);
    let jwt = bearer(&headers).unwrap_or_default();
    fake.jwts.lock().unwrap().push(jwt.clone());
    if let Some(reply) = fake.next(&format!("POST {path}")) {
        return respond(reply);
    }
    let key = DecodingKey::from_rsa_pem(KEY.public_pem.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["iat", "exp", "iss"]);
    match jsonwebtoken::decode::<Claims>(&jwt, &key, &validation) {
        Ok(data) if data.claims.iss == APP_ID.to_string() => {}
        _ => return respond(github_error(401, "A JSON web token could not be decoded")),
    }
    let mut tokens = fake.tokens.lock().unwrap();
    let token = format!("ghs_retrytest{:04}secret", tokens.len());
    tokens.push(token.clone());
    let expires_at = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let expires_at = expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    respond(reply(
        201,
        &[],
        json!({"token": token, "expires_at": expires_at, "permissions": {}}),
    ))
}

/// Every other request: needs an installation token; scripted answer, or 200
/// echoing what was sent.
async fn api(
    State(fake): State<Arc<Fake>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    record(&fake, method.clone(), &path, &headers, &body);
    let known = bearer(&headers).is_some_and(|t| fake.tokens.lock().unwrap().contains(&t));
    if !known {
        return respond(github_error(401, "Bad credentials"));
    }
    if let Some(reply) = fake.next(&format!("{method} {path}")) {
        return respond(reply);
    }
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let echo = json!({"method": method.as_str(), "path": path, "body": sent});
    respond(reply(200, &[], echo))
}

/// Serves the fake, mounted at `prefix` or at the root; returns the base URL.
async fn serve(fake: Arc<Fake>, prefix: Option<&str>) -> String {
    let routes = Router::new()
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(access_tokens),
        )
        .fallback(api)
        .with_state(fake);
    let router = match prefix {
        Some(prefix) => Router::new().nest(prefix, routes),
        None => routes,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("fake GitHub");
    });
    format!("http://{addr}{}", prefix.unwrap_or(""))
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}

fn app(base: &str, retry: ApiRetry) -> GitHubApp {
    let credentials = AppCredentials::new(APP_ID, SecretString::from(KEY.private_pem.clone()));
    GitHubApp::new(base, credentials, clock::system())
        .expect("GitHubApp::new")
        .with_api_retry(retry)
}

async fn setup(prefix: Option<&str>) -> (Arc<Fake>, GitHubApp, InstallationClient) {
    let fake = Arc::new(Fake::default());
    let base = serve(fake.clone(), prefix).await;
    let app = app(&base, FAST);
    let client = within("installation", app.installation(INSTALLATION))
        .await
        .expect("installation client");
    (fake, app, client)
}

fn assert_no_secret(err: &GitHubError, fake: &Fake) {
    let shown = format!("{err} | {err:?} | {:?}", std::error::Error::source(err));
    let secrets = fake.secrets();
    assert!(!secrets.is_empty());
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !shown.contains(secret.as_str()),
            "error shows a secret: {shown}"
        );
    }
    assert!(!shown.contains("ghs_"), "{shown}");
    assert!(!shown.contains("Bearer"), "{shown}");
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn bad_gateway_then_ok_is_retried() {
    let (fake, _app, client) = setup(None).await;
    fake.script("GET /repos/o/r", [html(502)]);

    let repo: Value = within("GET", client.get("/repos/o/r")).await.expect("GET");
    assert_eq!(repo["path"], "/repos/o/r");
    let seen = fake.seen("GET", "/repos/o/r");
    assert_eq!(seen.len(), 2, "one retry");
    for s in &seen {
        assert_eq!(s.accept.as_deref(), Some("application/vnd.github+json"));
        assert!(
            s.authorization
                .as_deref()
                .unwrap()
                .starts_with("Bearer ghs_")
        );
    }
}

#[tokio::test]
async fn secondary_rate_limit_waits_retry_after() {
    let (fake, _app, client) = setup(None).await;
    fake.script(
        "GET /repos/o/r/issues",
        [reply(
            403,
            &[("retry-after", "1"), ("x-ratelimit-remaining", "4000")],
            json!({"message": SECONDARY, "documentation_url": "https://docs.github.com/rest"}),
        )],
    );

    let started = Instant::now();
    let answer: Value = within("GET", client.get("/repos/o/r/issues"))
        .await
        .expect("GET after the wait");
    let elapsed = started.elapsed();
    assert_eq!(answer["method"], "GET");
    assert_eq!(fake.seen("GET", "/repos/o/r/issues").len(), 2);
    assert!(
        elapsed >= Duration::from_millis(900),
        "waited only {elapsed:?}"
    );
}

#[tokio::test]
async fn primary_rate_limit_waits_until_reset() {
    let (fake, _app, client) = setup(None).await;
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    fake.script(
        "POST /repos/o/r/issues",
        [reply(
            429,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset.to_string()),
            ],
            json!({"message": "API rate limit exceeded for installation ID 7."}),
        )],
    );

    let created: Value = within(
        "POST",
        client.post("/repos/o/r/issues", &json!({"title": "t"})),
    )
    .await
    .expect("POST after the reset");
    assert_eq!(created["body"]["title"], "t");
    let seen = fake.seen("POST", "/repos/o/r/issues");
    assert_eq!(seen.len(), 2);
    let retried_at = seen[1].at.duration_since(UNIX_EPOCH).unwrap();
    assert!(
        retried_at >= Duration::from_secs(reset),
        "retried at {retried_at:?}, before the reset at {reset} s"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried_and_carry_githubs_message() {
    let (fake, _app, client) = setup(None).await;
    fake.script("GET /repos/o/missing", [github_error(404, "Not Found")]);
    fake.script(
        "POST /repos/o/r/labels",
        [github_error(422, "Validation Failed")],
    );
    fake.script(
        "GET /orgs/o",
        [github_error(403, "Resource not accessible by integration")],
    );

    let err = within("GET", client.get::<Value>("/repos/o/missing"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GitHubError::Api { status: 404, message, attempts: 1, .. } if message == "Not Found"),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(404));
    let shown = err.to_string();
    assert!(
        shown.contains("404") && shown.contains("GET /repos/o/missing"),
        "{shown}"
    );
    assert!(shown.contains("Not Found"), "{shown}");
    assert_eq!(fake.seen("GET", "/repos/o/missing").len(), 1);
    assert_no_secret(&err, &fake);

    let err = within(
        "POST",
        client.request_json(
            Method::POST,
            "/repos/o/r/labels",
            Some(&json!({"name": "x"})),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(err.to_string().contains("Validation Failed"), "{err}");
    assert_eq!(fake.seen("POST", "/repos/o/r/labels").len(), 1);

    let err = within("GET", client.get::<Value>("/orgs/o"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(fake.seen("GET", "/orgs/o").len(), 1, "a plain 403 is final");
}

#[tokio::test]
async fn server_errors_forever_give_up_after_max_attempts() {
    let (fake, _app, client) = setup(None).await;
    fake.script(
        "GET /repos/o/r",
        [
            html(502),
            github_error(503, "x"),
            html(500),
            html(502),
            github_error(504, "Gateway timed out"),
        ],
    );

    let err = within("GET", client.get::<Value>("/repos/o/r"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            GitHubError::Api {
                status: 504,
                attempts: 5,
                ..
            }
        ),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("504") && shown.contains("after 5 attempts"),
        "{shown}"
    );
    assert!(shown.contains("Gateway timed out"), "{shown}");
    assert_eq!(
        fake.seen("GET", "/repos/o/r").len(),
        FAST.max_attempts as usize
    );
    assert_no_secret(&err, &fake);
}

#[tokio::test]
async fn rate_limit_longer_than_the_budget_gives_up_at_once() {
    let (fake, _app, client) = setup(None).await;
    fake.script(
        "GET /repos/o/r",
        [reply(
            429,
            &[("retry-after", "3600")],
            json!({"message": SECONDARY}),
        )],
    );

    let err = within("GET", client.get::<Value>("/repos/o/r"))
        .await
        .unwrap_err();
    match &err {
        GitHubError::RateLimited {
            status,
            retry_after,
            waited,
            ..
        } => {
            assert_eq!(*status, 429);
            assert_eq!(*retry_after, Duration::from_secs(3600));
            assert_eq!(*waited, Duration::ZERO);
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(err.status(), Some(429));
    let shown = err.to_string();
    assert!(
        shown.contains("3600.0 s") && shown.contains("GET /repos/o/r"),
        "{shown}"
    );
    assert!(shown.contains("secondary rate limit"), "{shown}");
    assert_eq!(fake.seen("GET", "/repos/o/r").len(), 1);
    assert_no_secret(&err, &fake);
}

#[tokio::test]
async fn token_exchange_is_retried_on_5xx() {
    let fake = Arc::new(Fake::default());
    let base = serve(fake.clone(), None).await;
    let app = app(&base, FAST);
    let route = format!("/app/installations/{INSTALLATION}/access_tokens");
    fake.script(
        &format!("POST {route}"),
        [github_error(503, "Service Unavailable")],
    );

    let token = within("installation_token", app.installation_token(INSTALLATION))
        .await
        .expect("token after a retry");
    assert!(token.expose_secret().starts_with("ghs_retrytest"));
    assert_eq!(fake.seen("POST", &route).len(), 2);
    // Each attempt carries its own valid JWT.
    let jwts = fake.jwts.lock().unwrap().clone();
    assert!(jwts.iter().all(|j| !j.is_empty()), "{}", jwts.len());
}

#[tokio::test]
async fn token_exchange_401_and_404_are_not_retried() {
    let fake = Arc::new(Fake::default());
    let base = serve(fake.clone(), None).await;
    let app = app(&base, FAST);
    let route = |id: u64| format!("/app/installations/{id}/access_tokens");
    fake.script(
        &format!("POST {}", route(1)),
        [github_error(401, "Bad JWT")],
    );
    fake.script(
        &format!("POST {}", route(2)),
        [github_error(404, "Not Found")],
    );

    let err = within("exchange 1", app.installation_token(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitHubError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(fake.seen("POST", &route(1)).len(), 1);
    assert_no_secret(&err, &fake);

    let err = within("exchange 2", app.installation_token(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitHubError::InstallationNotFound { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(fake.seen("POST", &route(2)).len(), 1);
    assert_no_secret(&err, &fake);
}

#[tokio::test]
async fn post_body_is_resent_intact() {
    let (fake, _app, client) = setup(None).await;
    fake.script(
        "POST /repos/o/r/issues",
        [html(500), Reply::Drop, html(502)],
    );
    let body =
        json!({"title": "Retry me", "body": "ünïcödé \"quoted\"\nline 2", "labels": ["a", "b"]});

    let created: Value = within("POST", client.post("/repos/o/r/issues", &body))
        .await
        .expect("POST after retries");
    assert_eq!(created["body"], body);
    let seen = fake.seen("POST", "/repos/o/r/issues");
    assert_eq!(seen.len(), 4);
    for s in &seen {
        assert_eq!(serde_json::from_str::<Value>(&s.body).unwrap(), body);
        assert_eq!(s.body, seen[0].body, "byte for byte");
        assert_eq!(s.content_type.as_deref(), Some("application/json"));
    }
}

#[tokio::test]
async fn dropped_connections_are_retried_then_reported() {
    let (fake, _app, client) = setup(None).await;
    fake.script("GET /a", [Reply::Drop, Reply::Drop]);
    let answer: Value = within("GET /a", client.get("/a")).await.expect("GET /a");
    assert_eq!(answer["path"], "/a");
    assert_eq!(fake.seen("GET", "/a").len(), 3);

    fake.script("GET /b", vec![Reply::Drop; 5]);
    let err = within("GET /b", client.get::<Value>("/b"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GitHubError::Transport { attempts: 5, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), None);
    assert!(err.to_string().contains("after 5 attempts"), "{err}");
    assert_no_secret(&err, &fake);
}

#[tokio::test]
async fn request_api_methods_and_no_content() {
    let (fake, _app, client) = setup(None).await;
    fake.script(
        "POST /repos/o/r/actions/workflows/ci.yml/dispatches",
        [html(503), no_content()],
    );
    fake.script("DELETE /repos/o/r/labels/x", [no_content()]);
    fake.script("PUT /repos/o/r/topics", [no_content()]);

    let dispatch = json!({"ref": "main", "inputs": {"mission": "42"}});
    within(
        "dispatch",
        client.send_no_content(
            Method::POST,
            "/repos/o/r/actions/workflows/ci.yml/dispatches",
            Some(&dispatch),
        ),
    )
    .await
    .expect("dispatch");
    let seen = fake.seen("POST", "/repos/o/r/actions/workflows/ci.yml/dispatches");
    assert_eq!(seen.len(), 2);

    within("delete", client.delete("/repos/o/r/labels/x"))
        .await
        .expect("delete");
    let null = within(
        "put",
        client.request_json(
            Method::PUT,
            "/repos/o/r/topics",
            Some(&json!({"names": []})),
        ),
    )
    .await
    .expect("put");
    assert_eq!(null, Value::Null, "204 is null");

    let patched: Value = within(
        "patch",
        client.patch("/repos/o/r/issues/1", &json!({"state": "closed"})),
    )
    .await
    .expect("patch");
    assert_eq!(patched["method"], "PATCH");
    assert_eq!(patched["body"]["state"], "closed");
    let put: Value = within("put", client.put("/repos/o/r/x", &json!({"a": 1})))
        .await
        .expect("put");
    assert_eq!(put["method"], "PUT");

    // A typed answer that does not match: InvalidResponse, not retried.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Issue {
        number: u64,
    }
    let err = within("typed", client.get::<Issue>("/repos/o/r/issues/1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitHubError::InvalidResponse { .. }),
        "{err:?}"
    );
    assert_eq!(fake.seen("GET", "/repos/o/r/issues/1").len(), 1);

    // Absolute URLs under the base URL work; anything else is refused.
    let absolute = format!("{}/repos/o/r", app_base(&client));
    let answer: Value = within("absolute", client.get(&absolute))
        .await
        .expect("absolute");
    assert_eq!(answer["path"], "/repos/o/r");
    for bad in [
        "repos/o/r",
        "https://example.com/repos/o/r",
        "//example.com/x",
    ] {
        let err = client.get::<Value>(bad).await.unwrap_err();
        assert!(matches!(err, GitHubError::Client { .. }), "{bad}: {err:?}");
    }
}

fn app_base(client: &InstallationClient) -> String {
    // The base URL is in the client's Debug output (never the token).
    let shown = format!("{client:?}");
    let start = shown.find("base_url: \"").unwrap() + "base_url: \"".len();
    let end = start + shown[start..].find('"').unwrap();
    shown[start..end].to_owned()
}

#[tokio::test]
async fn base_path_that_prefixes_github_routes() {
    // "/re" is a string prefix of "/repos/...": octocrab's relative routes
    // would skip it, our absolute URLs do not.
    let (fake, _app, client) = setup(Some("/re")).await;
    fake.script("GET /re/repos/o/r", [html(502)]);
    let answer: Value = within("GET", client.get("/repos/o/r")).await.expect("GET");
    assert_eq!(answer["path"], "/re/repos/o/r");
    assert_eq!(fake.seen("GET", "/re/repos/o/r").len(), 2);
}

#[tokio::test]
async fn unreachable_token_exchange_is_retried_then_a_transport_error() {
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let app = app(
        &format!("http://127.0.0.1:{port}"),
        ApiRetry {
            max_attempts: 3,
            ..FAST
        },
    );
    let err = within("installation_token", app.installation_token(INSTALLATION))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GitHubError::Transport { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("Bearer"), "{err:?}");
}

#[tokio::test]
async fn conditional_gets_send_the_kept_etag_and_a_304_gives_back_the_kept_body() {
    let (fake, _app, client) = setup(None).await;
    fake.script(
        "GET /repos/o/r/pulls/1",
        [
            reply(200, &[("etag", "\"v1\"")], json!({"head": "one"})),
            Reply::Status {
                status: 304,
                headers: vec![("etag", "\"v1\"".into())],
                body: String::new(),
            },
            reply(200, &[("etag", "\"v2\"")], json!({"head": "two"})),
        ],
    );
    let route = "/repos/o/r/pulls/1";
    let first: Value = within("GET", client.get(route)).await.unwrap();
    let unchanged: Value = within("GET", client.get(route)).await.unwrap();
    let changed: Value = within("GET", client.get(route)).await.unwrap();
    assert_eq!(first["head"], "one");
    assert_eq!(unchanged, first, "a 304 gives back the kept body");
    assert_eq!(changed["head"], "two");
    let sent: Vec<Option<String>> = fake
        .seen("GET", route)
        .into_iter()
        .map(|s| s.if_none_match)
        .collect();
    assert_eq!(sent, [None, Some("\"v1\"".into()), Some("\"v1\"".into())]);
    // Writes are never conditional.
    let _: Value = within("POST", client.post(route, &json!({})))
        .await
        .unwrap();
    assert_eq!(fake.seen("POST", route)[0].if_none_match, None);
}

#[tokio::test]
async fn a_spent_rate_limit_holds_that_installation_back_without_sending_and_not_others() {
    let (fake, app, client) = setup(None).await;
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    fake.script(
        "GET /repos/o/r",
        [reply(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset.to_string()),
            ],
            json!({"message": "API rate limit exceeded for installation ID 7."}),
        )],
    );
    let client = client.with_rate_limit_wait(Duration::from_secs(1));
    let err = within("GET", client.get::<Value>("/repos/o/r"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GitHubError::RateLimited { retry_after, .. } if *retry_after > Duration::from_secs(3500)),
        "{err:?}"
    );
    // The installation's next request, from a new client too, is not sent.
    let again = within("installation", app.installation(INSTALLATION))
        .await
        .unwrap();
    let err = within("GET", again.get::<Value>("/repos/o/other"))
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::RateLimited { .. }), "{err:?}");
    assert!(fake.seen("GET", "/repos/o/other").is_empty());
    // Another installation has its own limit.
    let other = within("installation", app.installation(INSTALLATION + 1))
        .await
        .unwrap();
    let answer: Value = within("GET", other.get("/repos/o/other")).await.unwrap();
    assert_eq!(answer["path"], "/repos/o/other");
}
