//! The GitHub API client: one [`GitHubApp`] per process, which signs App JWTs,
//! exchanges them for installation tokens (cached per installation), and hands
//! out [`InstallationClient`]s authenticated as one installation.
//!
//! HTTP goes through octocrab, but octocrab types stay behind this module's
//! API (the one exception is [`InstallationClient::octocrab`], until the
//! operations we need have wrappers of their own).
//!
//! # Base URL
//!
//! `https://api.github.com` by default; GitHub Enterprise Server is
//! `https://HOST/api/v3`; the simulator is `http://127.0.0.1:PORT`, possibly
//! with a path prefix. Octocrab 0.54's base-URI middleware keeps the base's
//! path and prepends it to relative routes (`/repos/o/r` becomes
//! `/api/v3/repos/o/r`), *unless the route already starts with the base path
//! as a string* — so a base path that is a string prefix of a GitHub route
//! (say `/re`, or `/app`) would be skipped for `/repos/...` or `/app/...`.
//! Our own requests therefore use absolute URLs built from the normalized
//! base URL (which that middleware leaves alone), and the routes octocrab
//! builds itself are fine for any prefix that is not such a string prefix
//! (`/api/v3`, `/github/api`, ...).
//!
//! # Retries
//!
//! Octocrab's own retries are off. Our requests (the token exchange and
//! [`InstallationClient`]'s request API) go through one loop that follows
//! [`ApiRetry`]: 5xx and transport errors back off, rate limits wait as long
//! as GitHub asks (see [`crate::github::retry`]).
//!
//! # Per installation
//!
//! Each installation has its own hourly rate limit. Once GitHub says it is
//! spent, requests of that installation fail at once with
//! [`GitHubError::RateLimited`] (naming the wait) until it resets, without
//! reaching GitHub; other installations go on. GETs are conditional: the
//! answer's `ETag` is kept, the next GET of that URL sends `If-None-Match`,
//! and a `304 Not Modified` (which GitHub does not count against the limit)
//! gives back the kept body.

use std::fmt;
use std::time::Duration as StdDuration;

pub use axum::http::Method;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::{OctoBody, Octocrab};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::SharedClock;
use crate::github::auth::{
    AppCredentials, AppJwtSigner, AuthError, Expiring, InstallationToken, TokenCache,
};
pub use crate::github::retry::ApiRetry;
use crate::github::retry::{Decision, Failure, GiveUp};

/// GitHub.com's REST API.
pub const DEFAULT_BASE_URL: &str = crate::config::DEFAULT_GITHUB_API_URL;

/// The media type GitHub recommends for every REST request.
const ACCEPT_GITHUB_JSON: &str = "application/vnd.github+json";
/// The contents API's raw media type: the file itself, at any size up to
/// 100 MB (the JSON form leaves `content` empty above 1 MB).
const ACCEPT_GITHUB_RAW: &str = "application/vnd.github.raw+json";

/// Without these a stalled connection would hang a mission forever.
const CONNECT_TIMEOUT: StdDuration = StdDuration::from_secs(10);
const READ_TIMEOUT: StdDuration = StdDuration::from_secs(30);
const WRITE_TIMEOUT: StdDuration = StdDuration::from_secs(30);

/// Next step for a user whose App credentials GitHub rejected.
const CREDENTIALS_HINT: &str = "check the App id and private key (MISSIONS_APP_ID, \
     MISSIONS_PRIVATE_KEY_PATH / MISSIONS_PRIVATE_KEY), and that this machine's clock is correct";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors from talking to GitHub. None of them carries a JWT, a token or the key.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// The private key could not be used (bad PEM, cannot sign).
    #[error(transparent)]
    Auth(#[from] AuthError),

    #[error(
        "invalid GitHub API base URL {url:?}: {reason}; check MISSIONS_GITHUB_API_URL (e.g. \
         https://api.github.com, https://HOST/api/v3 for GitHub Enterprise Server, or \
         http://127.0.0.1:PORT)"
    )]
    InvalidBaseUrl { url: String, reason: String },

    /// GitHub rejected the App JWT (401) when exchanging it for a token.
    #[error(
        "GitHub answered {status} to the token request of App {app_id} for installation \
         {installation_id}: {message}; {CREDENTIALS_HINT}"
    )]
    Unauthorized {
        app_id: u64,
        installation_id: u64,
        status: u16,
        message: String,
    },

    /// 404 on an installation: the App is not installed there (any more).
    #[error(
        "GitHub answered {status} to {request}: {message}; is the App installed on this \
         account? installation id {installation_id}"
    )]
    InstallationNotFound {
        installation_id: u64,
        request: String,
        status: u16,
        message: String,
    },

    /// Any other non-success answer (after retries, for 5xx).
    #[error(
        "GitHub answered {status} to {request}{}: {message}{}",
        attempts_suffix(*.attempts),
        docs_suffix(.documentation_url)
    )]
    Api {
        request: String,
        status: u16,
        message: String,
        documentation_url: Option<String>,
        /// Attempts made, the first included.
        attempts: u32,
    },

    /// A rate limit (403/429) whose wait does not fit in what is left of
    /// [`ApiRetry::max_total_wait`], or that lasted past the last attempt.
    #[error(
        "GitHub rate-limited {request} ({status}: {message}) and asked to wait {}; gave up \
         after waiting {} (the retry budget); try again after that wait",
        secs(*.retry_after),
        secs(*.waited)
    )]
    RateLimited {
        request: String,
        status: u16,
        message: String,
        /// How long this request had already waited.
        waited: StdDuration,
        /// How long GitHub asked to wait.
        retry_after: StdDuration,
    },

    /// No HTTP answer at all (connection refused, timeout, TLS, ...).
    #[error(
        "could not reach GitHub at {base_url} for {request}{}: {source}",
        attempts_suffix(*.attempts)
    )]
    Transport {
        base_url: String,
        request: String,
        attempts: u32,
        #[source]
        source: BoxError,
    },

    /// A success status whose body is not what GitHub documents.
    #[error("unexpected answer from GitHub to {request}: {reason}")]
    InvalidResponse { request: String, reason: String },

    /// The HTTP client itself could not be set up.
    #[error("could not set up the GitHub HTTP client: {reason}")]
    Client { reason: String },
}

impl GitHubError {
    /// The HTTP status GitHub answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { status, .. }
            | Self::InstallationNotFound { status, .. }
            | Self::Api { status, .. }
            | Self::RateLimited { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn docs_suffix(url: &Option<String>) -> String {
    url.as_deref()
        .map(|u| format!(" (see {u})"))
        .unwrap_or_default()
}

fn attempts_suffix(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

fn secs(d: StdDuration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The part of `POST /app/installations/{id}/access_tokens`'s 201 body we use
/// (schema `installation-token`: `token` and `expires_at` are required).
#[derive(Deserialize)]
struct TokenResponse {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// GitHub's error shape (`basic-error`).
#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    documentation_url: Option<String>,
}

/// A cached installation token together with the octocrab client built for
/// it, so a client (and its connection pool) is built once per token.
#[derive(Clone)]
struct CachedInstallation {
    token: InstallationToken,
    octocrab: Octocrab,
}

impl Expiring for CachedInstallation {
    fn expires_at(&self) -> OffsetDateTime {
        self.token.expires_at
    }
}

/// (installation, Accept, URL) of a conditional GET.
type EtagKey = (u64, &'static str, String);

/// What the App keeps per installation across its clients.
#[derive(Default)]
struct Remembered {
    /// Until when an installation's rate limit is spent.
    spent_until: std::sync::Mutex<std::collections::HashMap<u64, OffsetDateTime>>,
    /// (installation, Accept, URL) → (ETag, body) of its last 200 answer.
    etags: std::sync::Mutex<std::collections::HashMap<EtagKey, (String, String)>>,
}

/// How many conditional answers are kept, and the largest body kept.
const ETAG_ENTRIES: usize = 4096;
const ETAG_BODY_MAX: usize = 256 * 1024;

impl Remembered {
    fn spent_until(&self, installation_id: u64) -> Option<OffsetDateTime> {
        let map = self.spent_until.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&installation_id).copied()
    }

    fn spend(&self, installation_id: u64, until: OffsetDateTime) {
        let mut map = self.spent_until.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(installation_id, until);
    }

    fn etag(&self, key: &EtagKey) -> Option<(String, String)> {
        let map = self.etags.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    fn keep(&self, key: EtagKey, etag: String, body: &str) {
        if body.len() > ETAG_BODY_MAX {
            return;
        }
        let mut map = self.etags.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= ETAG_ENTRIES && !map.contains_key(&key) {
            // No order is kept: dropping everything is simple and rare.
            map.clear();
        }
        map.insert(key, (etag, body.to_owned()));
    }
}

/// The App: signs JWTs, exchanges them for installation tokens, caches those.
///
/// Build one per process (it must be created inside a Tokio runtime, and used
/// from that runtime: octocrab spawns its request worker there) and share it
/// behind an `Arc`.
pub struct GitHubApp {
    base_url: String,
    signer: AppJwtSigner,
    clock: SharedClock,
    /// Unauthenticated: App-JWT requests set their `Authorization` per request.
    http: Octocrab,
    tokens: TokenCache<CachedInstallation>,
    retry: ApiRetry,
    remembered: std::sync::Arc<Remembered>,
}

impl GitHubApp {
    /// `base_url`: see the module docs. Parses the private key once, and fails
    /// here (not on the first webhook) if it cannot sign.
    pub fn new(
        base_url: &str,
        credentials: AppCredentials,
        clock: SharedClock,
    ) -> Result<Self, GitHubError> {
        let base_url = normalize_base_url(base_url)?;
        let signer = AppJwtSigner::new(&credentials, clock.clone())?;
        let http = build_octocrab(&base_url, None)?;
        Ok(Self {
            base_url,
            signer,
            tokens: TokenCache::new(clock.clone()),
            clock,
            http,
            retry: ApiRetry::default(),
            remembered: Default::default(),
        })
    }

    /// Sets how requests are retried: the token exchange and every request of
    /// the [`InstallationClient`]s handed out afterwards (default
    /// [`ApiRetry::default`]).
    pub fn with_api_retry(mut self, retry: ApiRetry) -> Self {
        self.retry = retry;
        self
    }

    pub fn api_retry(&self) -> ApiRetry {
        self.retry
    }

    /// Sets how long before expiry a cached installation token is replaced
    /// (default [`crate::github::auth::DEFAULT_REFRESH_MARGIN`], 5 minutes).
    pub fn with_refresh_margin(mut self, margin: time::Duration) -> Self {
        self.tokens = self.tokens.with_refresh_margin(margin);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn app_id(&self) -> u64 {
        self.signer.app_id()
    }

    pub fn refresh_margin(&self) -> time::Duration {
        self.tokens.refresh_margin()
    }

    /// A token for `installation_id`: the cached one while it has more than
    /// the refresh margin left, otherwise a fresh exchange. Concurrent callers
    /// for one installation share a single exchange.
    pub async fn installation_token(
        &self,
        installation_id: u64,
    ) -> Result<SecretString, GitHubError> {
        Ok(self.cached(installation_id).await?.token.token)
    }

    /// A client authenticated as `installation_id`, with the base URL set.
    /// Its token is valid for at least the refresh margin: get a new client per
    /// unit of work rather than keeping one for hours.
    pub async fn installation(
        &self,
        installation_id: u64,
    ) -> Result<InstallationClient, GitHubError> {
        let cached = self.cached(installation_id).await?;
        Ok(InstallationClient {
            installation_id,
            base_url: self.base_url.clone(),
            token: cached.token.token,
            token_expires_at: cached.token.expires_at,
            octocrab: cached.octocrab,
            retry: self.retry,
            clock: self.clock.clone(),
            remembered: self.remembered.clone(),
        })
    }

    /// Drops the cached token of `installation_id` (installation deleted, or a
    /// token GitHub no longer accepts); the next call exchanges again.
    pub fn forget_installation(&self, installation_id: u64) {
        self.tokens.forget(installation_id);
    }

    async fn cached(&self, installation_id: u64) -> Result<CachedInstallation, GitHubError> {
        self.tokens
            .get_or_refresh(installation_id, || self.exchange(installation_id))
            .await
    }

    /// `POST /app/installations/{id}/access_tokens` with the App JWT, retried
    /// as [`ApiRetry`] says. Creating a token twice is harmless.
    async fn exchange(&self, installation_id: u64) -> Result<CachedInstallation, GitHubError> {
        let route = format!("/app/installations/{installation_id}/access_tokens");
        let request_name = format!("POST {route}");
        let url = format!("{}{route}", self.base_url);
        // Signed per attempt: retries may outlast a JWT.
        let build = || {
            let jwt = self.signer.sign()?;
            let authorization = bearer_header(jwt.expose_secret(), "the App JWT")?;
            // An absolute URL: octocrab leaves it as is, whatever the base path.
            let builder = Request::builder()
                .method(Method::POST)
                .uri(url.as_str())
                .header(header::AUTHORIZATION, authorization)
                .header(header::ACCEPT, ACCEPT_GITHUB_JSON);
            // build_request adds `X-GitHub-Api-Version: 2022-11-28` (octocrab's
            // compiled-in request headers) and `Content-Length: 0`.
            self.http
                .build_request(builder, None::<&()>)
                .map_err(|e| GitHubError::Client {
                    reason: format!("could not build {request_name}: {e}"),
                })
        };
        let answer = send_with_retry(
            &self.http,
            &self.retry,
            &self.clock,
            &self.base_url,
            &request_name,
            build,
        )
        .await?;
        let (status, body) = (answer.status, answer.body.as_str());

        if !status.is_success() {
            let (message, documentation_url) = error_message(status, body);
            return Err(match status {
                StatusCode::UNAUTHORIZED => GitHubError::Unauthorized {
                    app_id: self.signer.app_id(),
                    installation_id,
                    status: status.as_u16(),
                    message,
                },
                StatusCode::NOT_FOUND => GitHubError::InstallationNotFound {
                    installation_id,
                    request: request_name,
                    status: status.as_u16(),
                    message,
                },
                _ => GitHubError::Api {
                    request: request_name,
                    status: status.as_u16(),
                    message,
                    documentation_url,
                    attempts: answer.attempts,
                },
            });
        }

        let invalid = |reason: String| GitHubError::InvalidResponse {
            request: request_name.clone(),
            reason,
        };
        let parsed: TokenResponse =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(body))
                .map_err(|e| invalid(format!("the token body does not parse: {e}")))?;
        let TokenResponse { token, expires_at } = parsed;
        let token = SecretString::from(token);
        let printable = |c: u8| c.is_ascii_graphic();
        if token.expose_secret().is_empty() || !token.expose_secret().bytes().all(printable) {
            return Err(invalid(
                "the token is empty or has characters a header cannot carry".into(),
            ));
        }

        let now = self.clock.now();
        tracing::debug!(installation_id, %expires_at, "exchanged an installation token");
        if expires_at - now <= self.tokens.refresh_margin() {
            tracing::warn!(
                installation_id,
                %expires_at,
                %now,
                "GitHub's installation token expires within the refresh margin by this \
                 machine's clock, so it will be exchanged again on every use: is the clock right?"
            );
        }

        let octocrab = build_octocrab(&self.base_url, Some(&token))?;
        Ok(CachedInstallation {
            token: InstallationToken { token, expires_at },
            octocrab,
        })
    }
}

impl fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubApp")
            .field("base_url", &self.base_url)
            .field("app_id", &self.signer.app_id())
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// A client authenticated as one installation.
///
/// Requests take a `route`, a path such as `/repos/o/r/issues` (query string
/// allowed) appended to the base URL, or an absolute URL under the base URL
/// (GitHub's `url` fields, pagination links). They send
/// `Accept: application/vnd.github+json` and are retried as [`ApiRetry`] says.
///
/// Idempotency: a POST (or PATCH, PUT, DELETE) answered 5xx, or cut off by a
/// transport error, may or may not have been applied by GitHub. It is retried
/// anyway, as GitHub advises; callers that must not duplicate an effect (a
/// comment, a dispatch) need their own idempotency, such as an outbox.
#[derive(Clone)]
pub struct InstallationClient {
    installation_id: u64,
    base_url: String,
    token: SecretString,
    token_expires_at: OffsetDateTime,
    octocrab: Octocrab,
    retry: ApiRetry,
    clock: SharedClock,
    remembered: std::sync::Arc<Remembered>,
}

impl InstallationClient {
    pub fn installation_id(&self) -> u64 {
        self.installation_id
    }

    /// This client, sending each request once: for a call that must not be in
    /// flight longer than one exchange (the caller keeps its own retries).
    pub fn single_attempt(&self) -> InstallationClient {
        let mut client = self.clone();
        client.retry.max_attempts = 1;
        client
    }

    /// This client, sleeping at most `wait` for a rate limit inside a
    /// request; a longer one comes back as [`GitHubError::RateLimited`].
    pub fn with_rate_limit_wait(mut self, wait: StdDuration) -> InstallationClient {
        self.retry.max_rate_limit_wait = wait;
        self
    }

    /// When the token this client carries expires.
    pub fn token_expires_at(&self) -> OffsetDateTime {
        self.token_expires_at
    }

    /// The underlying octocrab client (base URL and installation token set,
    /// no automatic retries). Temporary: operations get wrappers here as
    /// they are needed, so the rest of the crate never sees octocrab.
    pub fn octocrab(&self) -> &Octocrab {
        &self.octocrab
    }

    /// Sends `body` (if any) as JSON and returns the answer's JSON body,
    /// [`serde_json::Value::Null`] for 204 or an empty body.
    pub async fn request_json(
        &self,
        method: Method,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, GitHubError> {
        let (request_name, answer) = self.send(method, route, body).await?;
        if answer.status == StatusCode::NO_CONTENT || answer.body.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        parse_body(&request_name, &answer.body)
    }

    /// `GET route` with the raw media type: the body as it is (a file's
    /// text from the contents API, whatever its size).
    pub async fn get_raw(&self, route: &str) -> Result<String, GitHubError> {
        let (_, answer) = self
            .send_accepting(Method::GET, route, None, ACCEPT_GITHUB_RAW)
            .await?;
        Ok(answer.body)
    }

    /// `GET route`, the body deserialized as `T`.
    pub async fn get<T: DeserializeOwned>(&self, route: &str) -> Result<T, GitHubError> {
        self.typed(Method::GET, route, None).await
    }

    /// `POST route` with `body` as JSON, the answer deserialized as `T`.
    pub async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        route: &str,
        body: &B,
    ) -> Result<T, GitHubError> {
        let body = to_json(Method::POST, route, body)?;
        self.typed(Method::POST, route, Some(&body)).await
    }

    /// `PATCH route` with `body` as JSON, the answer deserialized as `T`.
    pub async fn patch<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        route: &str,
        body: &B,
    ) -> Result<T, GitHubError> {
        let body = to_json(Method::PATCH, route, body)?;
        self.typed(Method::PATCH, route, Some(&body)).await
    }

    /// `PUT route` with `body` as JSON, the answer deserialized as `T`.
    pub async fn put<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        route: &str,
        body: &B,
    ) -> Result<T, GitHubError> {
        let body = to_json(Method::PUT, route, body)?;
        self.typed(Method::PUT, route, Some(&body)).await
    }

    /// `DELETE route`; any answer body is ignored.
    pub async fn delete(&self, route: &str) -> Result<(), GitHubError> {
        self.send_no_content(Method::DELETE, route, None).await
    }

    /// For endpoints that answer 204 (workflow dispatch, labels, ...); any
    /// success is accepted and its body ignored.
    pub async fn send_no_content(
        &self,
        method: Method,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(), GitHubError> {
        self.send(method, route, body).await.map(|_| ())
    }

    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, GitHubError> {
        let (request_name, answer) = self.send(method, route, body).await?;
        parse_body(&request_name, &answer.body)
    }

    /// Sends with retries; a final non-success status becomes an error.
    /// Returns the request's name (method and route, never a token) too.
    async fn send(
        &self,
        method: Method,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(String, Answer), GitHubError> {
        self.send_accepting(method, route, body, ACCEPT_GITHUB_JSON)
            .await
    }

    async fn send_accepting(
        &self,
        method: Method,
        route: &str,
        body: Option<&serde_json::Value>,
        accept: &'static str,
    ) -> Result<(String, Answer), GitHubError> {
        self.send_inner(method, route, body, accept, false).await
    }

    /// `GET route` for a file GitHub hands out by redirect (a job's log):
    /// the text at the answer's `Location`, fetched without the installation
    /// token (the address is signed, and usually on another host), at most
    /// its last `max_bytes`.
    pub async fn download_tail(
        &self,
        route: &str,
        max_bytes: usize,
    ) -> Result<String, GitHubError> {
        let (request_name, answer) = self
            .send_inner(Method::GET, route, None, ACCEPT_GITHUB_JSON, true)
            .await?;
        let Some(location) = answer.location else {
            return Ok(tail(&answer.body, max_bytes).to_owned());
        };
        let transport = |e: reqwest::Error| GitHubError::Transport {
            base_url: self.base_url.clone(),
            request: request_name.clone(),
            attempts: 1,
            source: Box::new(e),
        };
        crate::llm::http::install_crypto_provider();
        let mut response = reqwest::Client::builder()
            .timeout(StdDuration::from_secs(120))
            .build()
            .map_err(transport)?
            .get(&location)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        // Read as it comes, keeping only the end: a log can be hundreds of
        // megabytes. Past DOWNLOAD_CAP the rest is not read at all.
        let mut kept: Vec<u8> = Vec::new();
        let mut read = 0usize;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            read += chunk.len();
            kept.extend_from_slice(&chunk);
            if kept.len() > 2 * max_bytes.max(1024) {
                kept.drain(..kept.len() - max_bytes.max(1024));
            }
            if read > DOWNLOAD_CAP {
                kept.extend_from_slice(b"\n[the log goes on; the App read its first 64 MB]\n");
                break;
            }
        }
        let text = String::from_utf8_lossy(&kept);
        if !status.is_success() {
            return Err(GitHubError::Api {
                request: format!("{request_name} (its redirect)"),
                status: status.as_u16(),
                message: tail(&text, 200).to_owned(),
                documentation_url: None,
                attempts: 1,
            });
        }
        Ok(tail(&text, max_bytes).to_owned())
    }

    async fn send_inner(
        &self,
        method: Method,
        route: &str,
        body: Option<&serde_json::Value>,
        accept: &'static str,
        redirect_ok: bool,
    ) -> Result<(String, Answer), GitHubError> {
        let request_name = format!("{method} {route}");
        let url = self.url(route).ok_or_else(|| GitHubError::Client {
            reason: format!(
                "{request_name}: a route must be a path starting with / or a URL under {}",
                self.base_url
            ),
        })?;
        // A spent limit: GitHub would refuse it, and retrying early risks a ban.
        let now = self.clock.now();
        if let Some(until) = self.remembered.spent_until(self.installation_id)
            && until > now
        {
            return Err(GitHubError::RateLimited {
                request: request_name,
                status: 403,
                message: "the installation's rate limit is spent; not sent".into(),
                waited: StdDuration::ZERO,
                retry_after: (until - now).try_into().unwrap_or(StdDuration::ZERO),
            });
        }
        let kept_key = (method == Method::GET).then(|| (self.installation_id, accept, url.clone()));
        let kept = kept_key.as_ref().and_then(|k| self.remembered.etag(k));
        let build = || {
            let authorization =
                bearer_header(self.token.expose_secret(), "the installation token")?;
            let mut builder = Request::builder()
                .method(method.clone())
                .uri(url.as_str())
                .header(header::AUTHORIZATION, authorization)
                .header(header::ACCEPT, accept);
            if let Some((etag, _)) = &kept {
                builder = builder.header(header::IF_NONE_MATCH, etag.as_str());
            }
            self.octocrab
                .build_request(builder, body)
                .map_err(|e| GitHubError::Client {
                    reason: format!("could not build {request_name}: {e}"),
                })
        };
        let answer = match send_with_retry(
            &self.octocrab,
            &self.retry,
            &self.clock,
            &self.base_url,
            &request_name,
            build,
        )
        .await
        {
            Err(e @ GitHubError::RateLimited { retry_after, .. }) => {
                let until = self.clock.now() + retry_after;
                self.remembered.spend(self.installation_id, until);
                return Err(e);
            }
            other => other?,
        };
        if answer.status == StatusCode::NOT_MODIFIED
            && let Some((_, body)) = kept
        {
            return Ok((
                request_name,
                Answer {
                    status: StatusCode::OK,
                    body,
                    etag: None,
                    location: None,
                    attempts: answer.attempts,
                },
            ));
        }
        if answer.status == StatusCode::OK
            && let (Some(key), Some(etag)) = (kept_key, &answer.etag)
        {
            self.remembered.keep(key, etag.clone(), &answer.body);
        }
        if redirect_ok && answer.status.is_redirection() && answer.location.is_some() {
            return Ok((request_name, answer));
        }
        if !answer.status.is_success() {
            let (message, documentation_url) = error_message(answer.status, &answer.body);
            return Err(GitHubError::Api {
                request: request_name,
                status: answer.status.as_u16(),
                message,
                documentation_url,
                attempts: answer.attempts,
            });
        }
        Ok((request_name, answer))
    }

    /// The absolute URL of `route`. Octocrab only adds the token to requests
    /// for api.github.com or relative URLs, so we set `Authorization`
    /// ourselves, and only ever for URLs under the base URL.
    fn url(&self, route: &str) -> Option<String> {
        if route.starts_with('/') && !route.starts_with("//") {
            return Some(format!("{}{route}", self.base_url));
        }
        let rest = route.strip_prefix(self.base_url.as_str())?;
        (rest.is_empty() || rest.starts_with(['/', '?'])).then(|| route.to_owned())
    }
}

impl fmt::Debug for InstallationClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationClient")
            .field("installation_id", &self.installation_id)
            .field("base_url", &self.base_url)
            .field("token_expires_at", &self.token_expires_at)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One final answer from GitHub.
struct Answer {
    status: StatusCode,
    body: String,
    /// The answer's `ETag`, if it has one.
    etag: Option<String>,
    /// Where a redirect points.
    location: Option<String>,
    /// Attempts made, the first included.
    attempts: u32,
}

/// The most of a redirected download [`InstallationClient::download_tail`] reads.
const DOWNLOAD_CAP: usize = 64 * 1024 * 1024;

/// The end of `text`: at most its last `max_bytes`, from a line's start
/// where one is near (a log's tail says why it failed).
fn tail(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    match text[start..].find('\n') {
        Some(i) if i < max_bytes / 2 => &text[start + i + 1..],
        _ => &text[start..],
    }
}

/// Sends the request `build` makes until it succeeds or `policy` says to give
/// up, sleeping (real time) between attempts. Returns the last answer, whatever
/// its status; errors for transport failures and rate limits too long to wait.
async fn send_with_retry(
    http: &Octocrab,
    policy: &ApiRetry,
    clock: &SharedClock,
    base_url: &str,
    request_name: &str,
    mut build: impl FnMut() -> Result<Request<OctoBody>, GitHubError>,
) -> Result<Answer, GitHubError> {
    let mut waited = StdDuration::ZERO;
    for attempt in 1.. {
        let outcome = match http.execute(build()?).await {
            Ok(response) => {
                let status = response.status();
                let headers: HeaderMap = response.headers().clone();
                match http.body_to_string(response).await {
                    Ok(body) => Ok((status, headers, body)),
                    // Deterministic: retrying would get the same bytes.
                    Err(octocrab::Error::InvalidUtf8 { .. }) => {
                        return Err(GitHubError::InvalidResponse {
                            request: request_name.to_owned(),
                            reason: format!("the {status} answer's body is not UTF-8"),
                        });
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let now = clock.now();
        let jitter = rand::random::<f64>();
        match &outcome {
            Ok((status, headers, _)) => crate::metrics::github_answer(
                Some(status.as_u16()),
                headers
                    .get("x-ratelimit-remaining")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
            ),
            Err(_) => crate::metrics::github_answer(None, None),
        }
        match outcome {
            Ok((status, headers, body)) if status.is_success() => {
                let etag = headers
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                return Ok(Answer {
                    status,
                    body,
                    etag,
                    location: None,
                    attempts: attempt,
                });
            }
            Ok((status, headers, body)) => {
                let (message, _) = error_message(status, &body);
                let failure = Failure::Status {
                    status,
                    headers: &headers,
                    message: &message,
                };
                match policy.decide(attempt, waited, failure, now, jitter) {
                    Decision::Retry { after } => {
                        tracing::warn!(
                            request = request_name,
                            status = status.as_u16(),
                            attempt,
                            wait_ms = after.as_millis() as u64,
                            "GitHub answered {status}; retrying"
                        );
                        tokio::time::sleep(after).await;
                        waited += after;
                    }
                    Decision::GiveUp(
                        GiveUp::WaitTooLong { asked } | GiveUp::StillRateLimited { asked },
                    ) => {
                        return Err(GitHubError::RateLimited {
                            request: request_name.to_owned(),
                            status: status.as_u16(),
                            message,
                            waited,
                            retry_after: asked,
                        });
                    }
                    Decision::GiveUp(GiveUp::NotRetryable | GiveUp::Exhausted) => {
                        return Ok(Answer {
                            status,
                            body,
                            etag: None,
                            location: headers
                                .get(header::LOCATION)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                            attempts: attempt,
                        });
                    }
                }
            }
            Err(error) => match policy.decide(attempt, waited, Failure::Transport, now, jitter) {
                Decision::Retry { after } => {
                    tracing::warn!(
                        request = request_name,
                        %error,
                        attempt,
                        wait_ms = after.as_millis() as u64,
                        "could not reach GitHub; retrying"
                    );
                    tokio::time::sleep(after).await;
                    waited += after;
                }
                Decision::GiveUp(_) => {
                    return Err(GitHubError::Transport {
                        base_url: base_url.to_owned(),
                        request: request_name.to_owned(),
                        attempts: attempt,
                        source: Box::new(error),
                    });
                }
            },
        }
    }
    unreachable!("attempts are bounded by the retry policy")
}

/// `Authorization: Bearer …`, marked sensitive so it is never logged.
fn bearer_header(secret: &str, what: &str) -> Result<HeaderValue, GitHubError> {
    let mut value =
        HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| GitHubError::Client {
            reason: format!("{what} is not a valid header value"),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

fn to_json<B: Serialize + ?Sized>(
    method: Method,
    route: &str,
    body: &B,
) -> Result<serde_json::Value, GitHubError> {
    serde_json::to_value(body).map_err(|e| GitHubError::Client {
        reason: format!("could not serialize the body of {method} {route}: {e}"),
    })
}

fn parse_body<T: DeserializeOwned>(request_name: &str, body: &str) -> Result<T, GitHubError> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(body)).map_err(|e| {
        GitHubError::InvalidResponse {
            request: request_name.to_owned(),
            reason: format!("the body does not parse: {e}"),
        }
    })
}

/// Checks the base URL and drops trailing slashes, so routes can be appended.
fn normalize_base_url(url: &str) -> Result<String, GitHubError> {
    let invalid = |reason: &str| GitHubError::InvalidBaseUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = url.trim().trim_end_matches('/');
    let uri: Uri = trimmed.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("https" | "http") => {}
        Some(_) => return Err(invalid("the scheme must be https or http")),
        None => return Err(invalid("it needs a scheme (https://)")),
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(invalid("it needs a host"));
    }
    if uri.query().is_some() || trimmed.contains('#') {
        return Err(invalid("it must not have a query or fragment"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid("it must not carry credentials"));
    }
    Ok(trimmed.to_owned())
}

/// An octocrab client for `base_url`, with a bearer token if given. Its retries
/// are off (it would re-send any request at once, ignoring rate limits); ours
/// are in [`send_with_retry`].
fn build_octocrab(base_url: &str, token: Option<&SecretString>) -> Result<Octocrab, GitHubError> {
    let client_error = |e: octocrab::Error| GitHubError::Client {
        reason: e.to_string(),
    };
    // octocrab spawns its request worker with tokio::spawn, which panics
    // outside a runtime; say so instead.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(GitHubError::Client {
            reason: "the GitHub client must be created inside a Tokio runtime".into(),
        });
    }
    let mut builder = Octocrab::builder()
        .base_uri(base_url)
        .map_err(client_error)?
        .add_retry_config(RetryConfig::None)
        .set_connect_timeout(Some(CONNECT_TIMEOUT))
        .set_read_timeout(Some(READ_TIMEOUT))
        .set_write_timeout(Some(WRITE_TIMEOUT));
    if let Some(token) = token {
        builder = builder.personal_token(token.clone());
    }
    builder.build().map_err(client_error)
}

/// GitHub's `message` (and documentation link) from an error body, or the
/// status's reason phrase when the body is not GitHub's error JSON. A body that
/// is not JSON is not echoed: it may come from a proxy and say anything.
fn error_message(status: StatusCode, body: &str) -> (String, Option<String>) {
    let reason = || {
        status
            .canonical_reason()
            .unwrap_or("unknown status")
            .to_owned()
    };
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody {
            message,
            documentation_url,
        }) => (
            message
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(reason),
            documentation_url,
        ),
        Err(_) => (reason(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logs_tail_starts_at_a_line_and_keeps_whole_characters() {
        assert_eq!(tail("short", 100), "short");
        let log = "first line\nsecond line\nthird line\n";
        assert_eq!(tail(log, 15), "third line\n");
        // No line break near: the last bytes, cut on a character boundary.
        let dots = "é".repeat(20);
        let end = tail(&dots, 7);
        assert!(end.len() <= 7 && end.chars().all(|c| c == 'é'), "{end}");
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            normalize_base_url(DEFAULT_BASE_URL).unwrap(),
            DEFAULT_BASE_URL
        );
        assert_eq!(
            normalize_base_url("https://ghe.example.com/api/v3/").unwrap(),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            normalize_base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "",
            "api.github.com",
            "ftp://x",
            "https://x/?a=b",
            "https://u:p@x/",
        ] {
            assert!(normalize_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_messages() {
        let (m, d) = error_message(
            StatusCode::FORBIDDEN,
            r#"{"message":"Nope","documentation_url":"https://docs.github.com/rest"}"#,
        );
        assert_eq!(m, "Nope");
        assert_eq!(d.as_deref(), Some("https://docs.github.com/rest"));
        let (m, d) = error_message(StatusCode::BAD_GATEWAY, "<html>proxy</html>");
        assert_eq!(m, "Bad Gateway");
        assert!(d.is_none());
    }
}
