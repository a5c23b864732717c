//! GitHub App authentication against a local fake GitHub (axum on 127.0.0.1:0):
//! App JWT claims, the installation-token exchange and its cache, base URLs with
//! a path prefix, errors that say what to do and never show a secret, and an
//! installation client that carries its token.
//!
//! The RSA key pair is generated here, once per test binary; no key file exists.
//! Time is a `ManualClock` shared by the App and the fake; nothing sleeps, and
//! every wait has a timeout.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration as StdDuration, Instant};

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use missions::clock::{Clock, ManualClock, SharedClock};
use missions::github::auth::{AppCredentials, AppJwtSigner, DEFAULT_REFRESH_MARGIN};
use missions::github::client::{ApiRetry, GitHubApp, GitHubError};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

const APP_ID: u64 = 4242;
const WAIT: StdDuration = StdDuration::from_secs(20);

// ---------------------------------------------------------------- key pair

struct TestKey {
    /// PKCS#1, `-----BEGIN RSA PRIVATE KEY-----`, as GitHub issues App keys.
    pkcs1_pem: String,
    pkcs8_pem: String,
    public_pem: String,
    /// A public key that is not the App's (same modulus, another exponent), so
    /// the App's signatures do not verify with it; costs no second key pair.
    impostor_public_pem: String,
}

fn generate_key() -> TestKey {
    let started = Instant::now();
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("generate RSA key");
    let impostor = RsaPublicKey::new(key.n().clone(), BigUint::from(3u32)).expect("public key");
    let pair = TestKey {
        pkcs1_pem: key.to_pkcs1_pem(LineEnding::LF).expect("pkcs1").to_string(),
        pkcs8_pem: key.to_pkcs8_pem(LineEnding::LF).expect("pkcs8").to_string(),
        public_pem: key
            .to_public_key()
            .to_pkcs1_pem(LineEnding::LF)
            .expect("public pem"),
        impostor_public_pem: impostor.to_pkcs1_pem(LineEnding::LF).expect("public pem"),
    };
    eprintln!("generated an RSA 2048 key pair in {:?}", started.elapsed());
    pair
}

static KEY: LazyLock<TestKey> = LazyLock::new(generate_key);

fn credentials(pem: &str) -> AppCredentials {
    AppCredentials::new(APP_ID, SecretString::from(pem.to_owned()))
}

/// Lines of a PEM body: none of them may appear in any output.
fn pem_body_lines(pem: &str) -> Vec<&str> {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn assert_no_secret(shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !shown.contains(secret),
            "output shows a secret ({}…): {shown}",
            &secret[..secret.len().min(12)]
        );
    }
    for line in pem_body_lines(&KEY.pkcs1_pem) {
        assert!(
            !shown.contains(line),
            "output shows the private key: {shown}"
        );
    }
    assert!(!shown.contains("PRIVATE KEY-----\n"), "{shown}");
}

// ---------------------------------------------------------------- fixtures

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("MISSIONS_FIXTURES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/github-fixtures"
        )),
    }
}

static SPEC: LazyLock<Value> = LazyLock::new(|| {
    let path = fixtures_dir().join("rest/api.github.com.subset.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "GitHub fixtures missing: cannot read {} ({e}); set MISSIONS_FIXTURES_DIR to the \
             github-fixtures directory",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
});

/// `components.examples[name].value` of the REST subset.
fn example(name: &str) -> Value {
    let value = &SPEC["components"]["examples"][name]["value"];
    assert!(
        value.is_object(),
        "the REST subset has no example {name:?} with an object value"
    );
    value.clone()
}

// ---------------------------------------------------------------- fake GitHub

#[derive(Debug, Deserialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// What the fake saw on one request.
#[derive(Debug, Clone)]
struct Seen {
    /// The path as the client sent it, any base path prefix included.
    path: String,
    authorization: Option<String>,
    accept: Vec<String>,
    api_version: Vec<String>,
}

impl Seen {
    fn from(path: String, headers: &HeaderMap) -> Self {
        let all = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("<non-ascii>").to_owned())
                .collect::<Vec<_>>()
        };
        Self {
            path,
            authorization: all("authorization").into_iter().next(),
            accept: all("accept"),
            api_version: all("x-github-api-version"),
        }
    }
}

struct Fake {
    clock: ManualClock,
    app_id: u64,
    verify_key: DecodingKey,
    /// Installation ids the App is not installed on: 404.
    missing: Vec<u64>,
    issued: AtomicUsize,
    exchanges: Mutex<HashMap<u64, usize>>,
    /// Installation token -> installation id.
    tokens: Mutex<HashMap<String, u64>>,
    seen: Mutex<Vec<Seen>>,
    /// Counts exchange requests as they arrive (before the gate).
    arrivals: watch::Sender<usize>,
    /// Exchanges are answered only while this is true.
    gate: watch::Sender<bool>,
}

impl Fake {
    fn new(clock: &ManualClock) -> Arc<Self> {
        Self::with(clock, APP_ID, &KEY.public_pem, vec![])
    }

    fn with(clock: &ManualClock, app_id: u64, public_pem: &str, missing: Vec<u64>) -> Arc<Self> {
        Arc::new(Self {
            clock: clock.clone(),
            app_id,
            verify_key: DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("public key"),
            missing,
            issued: AtomicUsize::new(0),
            exchanges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            arrivals: watch::channel(0).0,
            gate: watch::channel(true).0,
        })
    }

    fn exchanges(&self, installation_id: u64) -> usize {
        *self
            .exchanges
            .lock()
            .unwrap()
            .get(&installation_id)
            .unwrap_or(&0)
    }

    fn total_exchanges(&self) -> usize {
        self.exchanges.lock().unwrap().values().sum()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Checks the JWT as GitHub does: RS256 with the App's public key, `iss` the
    /// App id, issued in the past, expiring in the future but within 10 minutes.
    fn verify_jwt(&self, headers: &HeaderMap) -> Result<Claims, &'static str> {
        let jwt = bearer(headers).ok_or("no bearer token")?;
        let mut validation = Validation::new(Algorithm::RS256);
        // Times are checked below against the fake's clock, not the system's.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["iat", "exp", "iss"]);
        let claims = jsonwebtoken::decode::<Claims>(jwt, &self.verify_key, &validation)
            .map_err(|_| "signature")?
            .claims;
        let now = self.clock.now().unix_timestamp();
        if claims.iss != self.app_id.to_string() {
            return Err("iss");
        }
        if claims.iat > now || claims.exp <= now || claims.exp - now > 600 {
            return Err("time");
        }
        Ok(claims)
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn github_error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
    });
    (status, Json(body)).into_response()
}

async fn create_installation_token(
    State(fake): State<Arc<Fake>>,
    Path(installation_id): Path<u64>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let seen = Seen::from(uri.path().to_owned(), &headers);
    fake.seen.lock().unwrap().push(seen);
    fake.arrivals.send_modify(|n| *n += 1);
    let mut gate = fake.gate.subscribe();
    gate.wait_for(|open| *open).await.expect("gate");

    if fake.verify_jwt(&headers).is_err() {
        return github_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        );
    }
    if fake.missing.contains(&installation_id) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    *fake
        .exchanges
        .lock()
        .unwrap()
        .entry(installation_id)
        .or_default() += 1;
    let n = fake.issued.fetch_add(1, Ordering::SeqCst);
    let token = format!("ghs_fake{n:04}inst{installation_id}");
    fake.tokens
        .lock()
        .unwrap()
        .insert(token.clone(), installation_id);
    let expires_at = (fake.clock.now() + Duration::hours(1))
        .format(&Rfc3339)
        .expect("format time");
    let mut body = example("installation-token");
    body["token"] = json!(token);
    body["expires_at"] = json!(expires_at);
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn get_repo(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let seen = Seen::from(uri.path().to_owned(), &headers);
    fake.seen.lock().unwrap().push(seen);
    let known = bearer(&headers).is_some_and(|t| fake.tokens.lock().unwrap().contains_key(t));
    if !known {
        return github_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let mut body = example("full-repository-default-response");
    body["name"] = json!(repo);
    body["full_name"] = json!(format!("{owner}/{repo}"));
    Json(body).into_response()
}

/// Serves the fake, mounted at `prefix` (e.g. "/api/v3") or at the root, and
/// returns the base URL to give the App.
async fn serve(fake: Arc<Fake>, prefix: Option<&str>) -> String {
    let routes = Router::new()
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(create_installation_token),
        )
        .route("/repos/{owner}/{repo}", get(get_repo))
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

fn shared(clock: &ManualClock) -> SharedClock {
    Arc::new(clock.clone())
}

async fn app_for(fake: &Arc<Fake>, clock: &ManualClock, prefix: Option<&str>) -> GitHubApp {
    let base = serve(fake.clone(), prefix).await;
    GitHubApp::new(&base, credentials(&KEY.pkcs1_pem), shared(clock)).expect("GitHubApp::new")
}

async fn token(app: &GitHubApp, installation_id: u64) -> String {
    within(
        "installation_token",
        app.installation_token(installation_id),
    )
    .await
    .expect("installation token")
    .expose_secret()
    .to_owned()
}

// ---------------------------------------------------------------- tests

fn decode_claims(jwt: &str) -> Claims {
    let key = DecodingKey::from_rsa_pem(KEY.public_pem.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iat", "exp", "iss"]);
    jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
        .expect("JWT verifies with the App's public key")
        .claims
}

fn assert_claims(claims: &Claims, now: OffsetDateTime) {
    let now = now.unix_timestamp();
    assert_eq!(claims.iss, APP_ID.to_string());
    assert_eq!(claims.iat, now - 60, "iat is backdated 60 s");
    assert!(claims.exp - now > 0, "exp is in the future");
    assert!(
        claims.exp - now <= 600,
        "exp is within GitHub's 10 minute cap"
    );
    assert_eq!(claims.exp - now, 9 * 60);
}

#[test]
fn app_jwt_claims_pkcs1_and_pkcs8() {
    let clock = ManualClock::starting_now();
    // As pasted into an environment variable: one line, `\n` escapes.
    let one_line = KEY.pkcs1_pem.trim().replace('\n', "\\n");
    for pem in [&KEY.pkcs1_pem, &KEY.pkcs8_pem, &one_line] {
        let signer = AppJwtSigner::new(&credentials(pem), shared(&clock)).expect("signer");
        let jwt = signer.sign().expect("sign");
        let header = jsonwebtoken::decode_header(jwt.expose_secret()).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_claims(&decode_claims(jwt.expose_secret()), clock.now());

        clock.advance(Duration::minutes(42));
        let later = signer.sign().expect("sign");
        assert_claims(&decode_claims(later.expose_secret()), clock.now());
    }
}

#[test]
fn bad_private_key_is_a_clear_error_that_does_not_echo_it() {
    let clock = ManualClock::starting_now();
    let truncated: String = KEY.pkcs1_pem.lines().take(4).collect::<Vec<_>>().join("\n");
    let public = KEY.public_pem.clone();
    for pem in ["", "just some text", truncated.as_str(), public.as_str()] {
        let err = AppJwtSigner::new(&credentials(pem), shared(&clock)).unwrap_err();
        let shown = format!("{err} | {err:?}");
        assert!(shown.contains("MISSIONS_PRIVATE_KEY_PATH"), "{shown}");
        assert!(shown.contains("MISSIONS_PRIVATE_KEY"), "{shown}");
        for line in pem_body_lines(pem) {
            assert!(!shown.contains(line), "error echoes the key: {shown}");
        }
        assert!(!shown.contains("just some text"), "{shown}");
    }
}

#[tokio::test]
async fn github_app_new_rejects_a_bad_key_and_a_bad_base_url() {
    let clock = ManualClock::starting_now();
    let err = GitHubApp::new(
        "http://127.0.0.1:9",
        credentials("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"),
        shared(&clock),
    )
    .unwrap_err();
    assert!(matches!(err, GitHubError::Auth(_)), "{err:?}");
    assert!(
        err.to_string().contains("MISSIONS_PRIVATE_KEY_PATH"),
        "{err}"
    );

    let err = GitHubApp::new(
        "api.github.com",
        credentials(&KEY.pkcs1_pem),
        shared(&clock),
    )
    .unwrap_err();
    assert!(matches!(err, GitHubError::InvalidBaseUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn exchange_sends_a_valid_jwt_and_github_headers() {
    let clock = ManualClock::starting_now();
    let fake = Fake::new(&clock);
    let app = app_for(&fake, &clock, None).await;

    let token = token(&app, 7).await;
    assert!(token.starts_with("ghs_fake"), "{token}");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let exchange = &seen[0];
    assert_eq!(exchange.path, "/app/installations/7/access_tokens");
    assert_eq!(exchange.accept, ["application/vnd.github+json"]);
    assert_eq!(exchange.api_version, ["2022-11-28"]);
    let jwt = exchange
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("bearer JWT");
    assert_claims(&decode_claims(jwt), clock.now());
}

#[tokio::test]
async fn token_is_cached_per_installation() {
    let clock = ManualClock::starting_now();
    let fake = Fake::new(&clock);
    let app = app_for(&fake, &clock, None).await;

    let first = token(&app, 7).await;
    let second = token(&app, 7).await;
    assert_eq!(first, second);
    assert_eq!(fake.exchanges(7), 1);

    let other = token(&app, 8).await;
    assert_ne!(other, first);
    assert_eq!(fake.exchanges(8), 1);
    assert_eq!(fake.exchanges(7), 1);
    assert_eq!(token(&app, 8).await, other);
    assert_eq!(fake.total_exchanges(), 2);
}

#[tokio::test]
async fn token_is_refreshed_within_the_margin_of_expiry() {
    let clock = ManualClock::starting_now();
    let fake = Fake::new(&clock);
    let app = app_for(&fake, &clock, None).await;
    assert_eq!(app.refresh_margin(), DEFAULT_REFRESH_MARGIN);

    let first = token(&app, 7).await;
    // Expires in 1 h. 5 min 1 s left: still more than the 5 min margin.
    clock.advance(Duration::minutes(54) + Duration::seconds(59));
    assert_eq!(token(&app, 7).await, first);
    assert_eq!(fake.exchanges(7), 1);

    // Exactly 5 min left: refreshed ahead of expiry.
    clock.advance(Duration::seconds(1));
    let second = token(&app, 7).await;
    assert_ne!(second, first);
    assert_eq!(fake.exchanges(7), 2);
    assert_eq!(token(&app, 7).await, second);
    assert_eq!(fake.exchanges(7), 2);
}

#[tokio::test]
async fn refresh_margin_is_configurable() {
    let clock = ManualClock::starting_now();
    let fake = Fake::new(&clock);
    let app = app_for(&fake, &clock, None)
        .await
        .with_refresh_margin(Duration::minutes(20));

    let first = token(&app, 7).await;
    clock.advance(Duration::minutes(39));
    assert_eq!(token(&app, 7).await, first);
    clock.advance(Duration::minutes(1));
    assert_ne!(token(&app, 7).await, first);
    assert_eq!(fake.exchanges(7), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_exchange() {
    const CALLERS: usize = 32;
    let clock = ManualClock::starting_now();
    let fake = Fake::new(&clock);
    let app = Arc::new(app_for(&fake, &clock, None).await);

    // Hold the first exchange open until every caller has been started.
    fake.gate.send_replace(false);
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.installation_token(7).await })
        })
        .collect();
    let mut arrivals = fake.arrivals.subscribe();
    within("first exchange arrives", arrivals.wait_for(|n| *n >= 1))
        .await
        .expect("arrivals");
    fake.gate.send_replace(true);

    let mut tokens = Vec::new();
    for caller in callers {
        let token = within("caller finishes", caller)
            .await
            .expect("caller task")
            .expect("installation token");
        tokens.push(token.expose_secret().to_owned());
    }
    assert_eq!(fake.exchanges(7), 1, "one exchange for {CALLERS} callers");
    assert_eq!(*fake.arrivals.borrow(), 1);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
}

#[tokio::test]
async fn base_url_with_a_path_prefix() {
    let clock = ManualClock::starting_now();
    let fake = Fake::new(&clock);
    let app = app_for(&fake, &clock, Some("/api/v3")).await;
    assert!(app.base_url().ends_with("/api/v3"), "{}", app.base_url());

    let token = token(&app, 7).await;
    assert_eq!(fake.exchanges(7), 1);
    assert_eq!(
        fake.seen()[0].path,
        "/api/v3/app/installations/7/access_tokens"
    );

    let client = within("installation", app.installation(7)).await.unwrap();
    let repo: Value = within(
        "GET /repos/o/r",
        client.octocrab().get("/repos/o/r", None::<&()>),
    )
    .await
    .expect("GET /repos/o/r under /api/v3");
    assert_eq!(repo["full_name"], "o/r");
    let seen = fake.seen();
    let get = seen.last().unwrap();
    assert_eq!(get.path, "/api/v3/repos/o/r");
    assert_eq!(
        get.authorization.as_deref(),
        Some(&*format!("Bearer {token}"))
    );
}

#[tokio::test]
async fn base_url_with_a_trailing_slash() {
    let clock = ManualClock::starting_now();
    let fake = Fake::new(&clock);
    let base = serve(fake.clone(), Some("/github/api")).await;
    let app = GitHubApp::new(
        &format!("{base}/"),
        credentials(&KEY.pkcs1_pem),
        shared(&clock),
    )
    .unwrap();
    token(&app, 7).await;
    assert_eq!(fake.exchanges(7), 1);
}

#[tokio::test]
async fn installation_client_sends_the_installation_token() {
    let clock = ManualClock::starting_now();
    let fake = Fake::new(&clock);
    let app = app_for(&fake, &clock, None).await;

    let client = within("installation", app.installation(7)).await.unwrap();
    assert_eq!(client.installation_id(), 7);
    assert_eq!(client.token_expires_at(), clock.now() + Duration::hours(1));
    let repo: Value = within(
        "GET /repos/o/r",
        client.octocrab().get("/repos/o/r", None::<&()>),
    )
    .await
    .expect("GET /repos/o/r");
    assert_eq!(repo["full_name"], "o/r");

    let token = token(&app, 7).await;
    assert_eq!(
        fake.exchanges(7),
        1,
        "installation() and the token share the cache"
    );
    let seen = fake.seen();
    let get = seen
        .iter()
        .find(|s| s.path == "/repos/o/r")
        .expect("GET seen");
    assert_eq!(
        get.authorization.as_deref(),
        Some(&*format!("Bearer {token}"))
    );
    assert_eq!(fake.tokens.lock().unwrap().get(&token), Some(&7));

    let shown = format!("{client:?} {app:?}");
    assert_no_secret(&shown, &[&token]);
}

#[tokio::test]
async fn unauthorized_exchange_names_status_and_message_without_secrets() {
    let clock = ManualClock::starting_now();
    // The fake knows the App by another key: GitHub answers 401.
    let fake = Fake::with(&clock, APP_ID, &KEY.impostor_public_pem, vec![]);
    let app = app_for(&fake, &clock, None).await;

    let err = within("installation_token", app.installation_token(7))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GitHubError::Unauthorized {
                status: 401,
                installation_id: 7,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(401));
    let display = err.to_string();
    assert!(display.contains("401"), "{display}");
    assert!(
        display.contains("A JSON web token could not be decoded"),
        "{display}"
    );
    assert!(
        display.contains("check the App id and private key"),
        "{display}"
    );

    let jwt = fake.seen()[0].authorization.clone().expect("sent a JWT");
    let jwt = jwt.strip_prefix("Bearer ").unwrap();
    assert_no_secret(&format!("{display} | {err:?}"), &[jwt]);
    assert_eq!(fake.total_exchanges(), 0);
}

#[tokio::test]
async fn wrong_app_id_is_unauthorized() {
    let clock = ManualClock::starting_now();
    let fake = Fake::with(&clock, APP_ID + 1, &KEY.public_pem, vec![]);
    let app = app_for(&fake, &clock, None).await;
    let err = within("installation_token", app.installation_token(7))
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_installation_says_what_to_check() {
    let clock = ManualClock::starting_now();
    let fake = Fake::with(&clock, APP_ID, &KEY.public_pem, vec![404_404]);
    let app = app_for(&fake, &clock, None).await;

    let err = within("installation", app.installation(404_404))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitHubError::InstallationNotFound { status: 404, .. }),
        "{err:?}"
    );
    let display = err.to_string();
    assert!(display.contains("404"), "{display}");
    assert!(display.contains("Not Found"), "{display}");
    assert!(
        display.contains("is the App installed on this account? installation id 404404"),
        "{display}"
    );
    // A failed exchange is not cached: other installations are unaffected.
    token(&app, 7).await;
}

#[tokio::test]
async fn unreachable_github_is_a_transport_error() {
    let clock = ManualClock::starting_now();
    // Bind and drop a listener to get a local port nobody listens on.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let app = GitHubApp::new(
        &format!("http://127.0.0.1:{port}"),
        credentials(&KEY.pkcs1_pem),
        shared(&clock),
    )
    .unwrap()
    // Refused connections are retried; keep the backoff short so the test is.
    .with_api_retry(ApiRetry {
        base_delay: std::time::Duration::from_millis(10),
        ..ApiRetry::default()
    });
    let err = within("installation_token", app.installation_token(7))
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::Transport { .. }), "{err:?}");
    assert_eq!(err.status(), None);
    assert_no_secret(&format!("{err} | {err:?}"), &[]);
}

#[tokio::test]
async fn debug_output_never_shows_the_key_or_tokens() {
    let clock = ManualClock::starting_now();
    let creds = credentials(&KEY.pkcs1_pem);
    let shown = format!("{creds:?} {creds:#?}");
    assert!(shown.contains("4242"), "{shown}");
    assert_no_secret(&shown, &[]);

    let fake = Fake::new(&clock);
    let app = app_for(&fake, &clock, None).await;
    let token = token(&app, 7).await;
    let shown = format!("{app:?} {app:#?}");
    assert!(shown.contains("GitHubApp"), "{shown}");
    assert_no_secret(&shown, &[&token]);

    let signer = AppJwtSigner::new(&creds, shared(&clock)).unwrap();
    let jwt = signer.sign().unwrap();
    assert_no_secret(&format!("{signer:?} {jwt:?}"), &[jwt.expose_secret()]);
}
