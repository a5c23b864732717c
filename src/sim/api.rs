//! The REST handlers: GitHub's operations in `github-fixtures/rest/` (and the
//! few a tester needs beyond them, such as submitting a review), with GitHub's
//! status codes, error bodies, permissions and webhooks.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::render::{self, PullStats, RepoTimes};
use super::state::{
    CheckApp, CheckOutput, CheckRun, Comment, CommitStatus, Issue, IssueState, Label, Permission,
    Pull, RateWindow, Reaction, RequiredChecks, Review, Token, TokenSubject, World,
};
use super::{Exchange, SimInner, actions, ci, git, gitapi, queue};
use crate::sim_fields;

type Sim = Arc<SimInner>;

/// An answer other than success, in GitHub's error shape.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: None,
        }
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    /// 422 with GitHub's `validation-error` shape.
    pub fn invalid(resource: &str, field: &str, code: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors: Some(json!([{
                "resource": resource, "field": field, "code": code, "message": message,
            }])),
            message: "Validation Failed".into(),
        }
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = render::error_body(self.status.as_u16(), &self.message);
        if let Some(errors) = self.errors {
            body["errors"] = errors;
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<git::GitError> for ApiError {
    fn from(e: git::GitError) -> Self {
        match e {
            git::GitError::NotFound(m) => {
                tracing::debug!(%m, "git: not found");
                ApiError::not_found()
            }
            git::GitError::Conflict(m) => ApiError::conflict(m),
            git::GitError::NotFastForward(m) => ApiError::unprocessable(m),
            git::GitError::Invalid(m) => ApiError::unprocessable(m),
            other => {
                tracing::error!(error = %other, "git failed in the simulator");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Server Error")
            }
        }
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub(crate) fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, axum::Json(body)).into_response())
}

/// Who is calling, from the `Authorization` header.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// A valid App JWT.
    App,
    User(String),
    Installation {
        id: u64,
        repositories: Vec<String>,
    },
    Job {
        repository: String,
        run_id: u64,
        write: bool,
    },
}

impl Caller {
    /// Who called; also whose primary rate limit a request counts against.
    pub fn describe(&self) -> String {
        match self {
            Self::Anonymous => "anonymous".into(),
            Self::App => "app".into(),
            Self::User(login) => format!("user:{login}"),
            Self::Installation { id, .. } => format!("installation:{id}"),
            Self::Job { run_id, .. } => format!("job:{run_id}"),
        }
    }
}

impl FromRequestParts<Sim> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, sim: &Sim) -> Result<Self, ApiError> {
        caller_from_headers(sim, &parts.headers)
    }
}

pub fn caller_from_headers(sim: &SimInner, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "Bad credentials"))?;
    let credential = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .or_else(|| value.strip_prefix("token "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Bad credentials"))?
        .trim();
    caller_from_credential(sim, credential)
}

pub fn caller_from_credential(sim: &SimInner, credential: &str) -> Result<Caller, ApiError> {
    let bad = || ApiError::new(StatusCode::UNAUTHORIZED, "Bad credentials");
    let world = sim.world();
    if credential.matches('.').count() == 2 {
        let app = world.app.as_ref().ok_or_else(bad)?;
        return verify_app_jwt(sim, app, credential).map(|_| Caller::App);
    }
    let token = world.tokens.get(credential).ok_or_else(bad)?;
    if token.expires_at.is_some_and(|t| t <= sim.clock.now()) {
        return Err(bad());
    }
    Ok(match &token.subject {
        TokenSubject::User(login) => Caller::User(login.clone()),
        TokenSubject::Installation { id, repositories } => Caller::Installation {
            id: *id,
            repositories: repositories.clone(),
        },
        TokenSubject::Job {
            repository,
            run_id,
            write,
        } => Caller::Job {
            repository: repository.clone(),
            run_id: *run_id,
            write: *write,
        },
    })
}

/// GitHub's checks: RS256, signed by the App's key, `iss` the App id,
/// `exp` at most 10 minutes after `iat`, not expired.
fn verify_app_jwt(sim: &SimInner, app: &super::state::App, jwt: &str) -> Result<(), ApiError> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    #[derive(serde::Deserialize)]
    struct Claims {
        iat: i64,
        exp: i64,
        iss: Value,
    }
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m.to_owned());
    let key = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
        .map_err(|_| unauthorized("A JSON web token could not be decoded"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let data = decode::<Claims>(jwt, &key, &validation)
        .map_err(|_| unauthorized("A JSON web token could not be decoded"))?;
    let claims = data.claims;
    let iss_ok = match &claims.iss {
        Value::String(s) => s == &app.id.to_string() || s.starts_with("Iv"),
        Value::Number(n) => n.as_u64() == Some(app.id),
        _ => false,
    };
    if !iss_ok {
        return Err(unauthorized("'Issuer' claim ('iss') must be an Integer"));
    }
    let now = sim.clock.now().unix_timestamp();
    if claims.exp <= now {
        return Err(unauthorized(
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        ));
    }
    if claims.exp - claims.iat > 600 {
        return Err(unauthorized(
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    if claims.iat > now + 60 {
        return Err(unauthorized(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past",
        ));
    }
    Ok(())
}

/// The identity a caller acts as on a repository, and with what role.
#[derive(Debug, Clone)]
pub struct Actor {
    pub login: String,
    pub permission: Permission,
    /// An installation token: the App acts (comments show `performed_via_github_app`).
    pub installation: bool,
}

/// What `caller` may do on `full_name`; 404 when it may not even see it (as GitHub hides private repos).
pub fn actor(world: &World, caller: &Caller, full_name: &str) -> Result<Actor, ApiError> {
    let repo = world.repos.get(full_name).ok_or_else(ApiError::not_found)?;
    match caller {
        Caller::Anonymous => {
            if repo.private {
                Err(ApiError::not_found())
            } else {
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Requires authentication",
                ))
            }
        }
        Caller::App => Err(ApiError::forbidden(
            "A JSON web token cannot be used to access this resource; use an installation access token",
        )),
        Caller::User(login) => {
            let permission = world.permission(repo, login);
            if permission == Permission::None {
                return Err(ApiError::not_found());
            }
            Ok(Actor {
                login: login.clone(),
                permission,
                installation: false,
            })
        }
        Caller::Installation { id, repositories } => {
            let installed = world
                .installations
                .get(id)
                .is_some_and(|i| i.repositories.iter().any(|r| r == full_name));
            if !installed || !repositories.iter().any(|r| r == full_name) {
                return Err(ApiError::not_found());
            }
            let login = world
                .app
                .as_ref()
                .map(|a| a.bot_login.clone())
                .unwrap_or_default();
            Ok(Actor {
                login,
                permission: Permission::Write,
                installation: true,
            })
        }
        Caller::Job {
            repository, write, ..
        } => {
            if repository != full_name {
                return Err(ApiError::not_found());
            }
            Ok(Actor {
                login: "github-actions[bot]".into(),
                permission: if *write {
                    Permission::Write
                } else {
                    Permission::Read
                },
                installation: false,
            })
        }
    }
}

pub(crate) fn require(actor: &Actor, needed: Permission) -> Result<(), ApiError> {
    if actor.permission >= needed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Must have {} access to this repository",
            needed.role_name()
        )))
    }
}

/// A JSON body: empty is `null`; malformed is GitHub's 400.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "Problems parsing JSON"))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "Problems parsing JSON"))
    }
}

fn str_field<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

pub(crate) fn required_str<'a>(
    body: &'a Value,
    resource: &str,
    field: &str,
) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::invalid(
            resource,
            field,
            "invalid",
            format!("{field} must be a string"),
        )),
        None => Err(ApiError::invalid(
            resource,
            field,
            "missing_field",
            format!("{field} is missing"),
        )),
    }
}

/// `owner/repo`.
pub(crate) fn full(owner: &str, repo: &str) -> String {
    format!("{owner}/{repo}")
}

pub(crate) fn router(sim: Sim) -> Router {
    let api = Router::new()
        .route("/app", get(get_app))
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(create_installation_token),
        )
        .route("/rate_limit", get(rate_limit))
        .route("/repos/{owner}/{repo}", get(get_repo))
        .route(
            "/repos/{owner}/{repo}/installation",
            get(get_repo_installation),
        )
        .route(
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            get(collaborator_permission),
        )
        .route("/repos/{owner}/{repo}/issues", post(create_issue))
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}",
            get(get_issue).patch(update_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            get(list_comments).post(create_comment),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            axum::routing::patch(update_comment).delete(delete_comment),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/labels",
            post(add_labels).delete(remove_all_labels),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
            axum::routing::delete(remove_label),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/reactions",
            post(create_reaction),
        )
        .route(
            "/repos/{owner}/{repo}/pulls",
            get(list_pulls).post(create_pull),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{pull_number}",
            get(get_pull).patch(update_pull),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
            put(merge_pull),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{pull_number}/update-branch",
            put(update_branch),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
            get(list_reviews).post(create_review),
        )
        .route("/repos/{owner}/{repo}/check-runs", post(create_check_run))
        .route(
            "/repos/{owner}/{repo}/check-runs/{check_run_id}",
            get(get_check_run).patch(update_check_run),
        )
        .route(
            "/repos/{owner}/{repo}/check-runs/{check_run_id}/rerequest",
            post(rerequest_check_run),
        )
        .route(
            "/repos/{owner}/{repo}/commits/{ref}/check-runs",
            get(list_check_runs_for_ref),
        )
        .route(
            "/repos/{owner}/{repo}/commits/{ref}/status",
            get(combined_status),
        )
        .route("/repos/{owner}/{repo}/statuses/{sha}", post(create_status))
        .route(
            "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
            post(actions::dispatch),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}",
            get(actions::get_run),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
            get(actions::list_jobs),
        )
        .route(
            "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
            get(ci::job_logs),
        )
        .route(
            "/repos/{owner}/{repo}/branches/{*branch}",
            get(gitapi::get_branch),
        )
        .route(
            "/repos/{owner}/{repo}/contents/{*path}",
            get(gitapi::get_content).put(gitapi::put_content),
        )
        .route("/repos/{owner}/{repo}/git/blobs", post(gitapi::create_blob))
        .route("/repos/{owner}/{repo}/git/trees", post(gitapi::create_tree))
        .route(
            "/repos/{owner}/{repo}/git/commits",
            post(gitapi::create_commit),
        )
        .route("/repos/{owner}/{repo}/git/ref/{*ref}", get(gitapi::get_ref))
        .route("/repos/{owner}/{repo}/git/refs", post(gitapi::create_ref))
        .route(
            "/repos/{owner}/{repo}/git/refs/{*ref}",
            axum::routing::patch(gitapi::update_ref),
        )
        .route_layer(middleware::from_fn_with_state(
            sim.clone(),
            record_and_fault,
        ));

    Router::new()
        .merge(api)
        .route("/_sim/deliveries", get(admin_deliveries))
        .route(
            "/_sim/repos/{owner}/{repo}/runs/{run_id}/log",
            get(admin_run_log),
        )
        .route(
            "/_sim/job-logs/{owner}/{repo}/{job_id}",
            get(ci::signed_job_log),
        )
        .fallback(gitapi::git_http_or_404)
        .with_state(sim)
        .layer(middleware::from_fn(run_to_completion))
}

/// Runs each request to its end even when the client hangs up. GitHub does not
/// undo half of a ref update (its PR head moves, `push` is sent) because the
/// caller's process died; without this, hyper drops the handler at its next
/// await and the simulator keeps a half-applied change (seen in the chaos
/// runner: a branch moved by a killed App, its PR's head left behind).
async fn run_to_completion(request: Request, next: Next) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the simulator's handler failed: {e}"),
        )
        .into_response(),
    }
}

/// Routes whose GET GitHub's REST description documents a `304 Not Modified` for.
const CONDITIONAL_ROUTES: &[&str] = &[
    "/rate_limit",
    "/repos/{owner}/{repo}/contents/{*path}",
    "/repos/{owner}/{repo}/issues/{issue_number}",
    "/repos/{owner}/{repo}/pulls",
    "/repos/{owner}/{repo}/pulls/{pull_number}",
];

/// Records every REST exchange (for the conformance tests), injects faults,
/// and adds GitHub's rate-limit headers.
async fn record_and_fault(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let path = request.uri().path().to_owned();
    let parsed_caller = caller_from_headers(&sim, request.headers()).ok();
    let caller = parsed_caller
        .as_ref()
        .map(|c| c.describe())
        .unwrap_or_else(|| "invalid".into());
    let rate_key = caller.clone();
    let is_get = request.method() == axum::http::Method::GET;
    let if_none_match = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The caller's hour: a spent limit is refused before anything is done.
    let now = sim.clock.now().unix_timestamp();
    let window = {
        let mut world = sim.world();
        let window = world
            .rate_limits
            .get(&rate_key)
            .map_or(RateWindow::fresh(now), |w| w.at(now));
        world.rate_limits.insert(rate_key.clone(), window);
        window
    };

    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 50 << 20)
        .await
        .unwrap_or_default();
    let request_json = serde_json::from_slice::<Value>(&bytes).ok();

    let fault = sim.faults.api(&caller);
    let (response, faulted) = match fault {
        _ if window.remaining() == 0 => {
            let who = match &parsed_caller {
                Some(Caller::Installation { id, .. }) => format!("installation ID {id}"),
                _ => "this token".into(),
            };
            let response = ApiError::new(
                StatusCode::FORBIDDEN,
                format!("API rate limit exceeded for {who}."),
            )
            .into_response();
            (response, false)
        }
        super::faults::ApiFault::None => {
            let request = Request::from_parts(parts, Body::from(bytes));
            (next.run(request).await, false)
        }
        super::faults::ApiFault::ServerError(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (ApiError::new(status, "Server Error").into_response(), true)
        }
        super::faults::ApiFault::SecondaryRateLimit(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            let mut response = ApiError::new(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            )
            .into_response();
            let secs = sim.faults.config.rate_limit_retry_after.as_secs().max(1);
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
            (response, true)
        }
    };

    let (mut parts, body) = response.into_parts();
    let mut bytes = axum::body::to_bytes(body, 50 << 20)
        .await
        .unwrap_or_default();
    // A GET's answer carries its ETag; asked again with it, an unchanged
    // answer is a 304 without a body, which does not count against the limit.
    // GitHub's description documents the 304 on a few routes only; the
    // simulator answers it there (the conformance tests hold it to that).
    let mut counted = window.remaining() > 0;
    if is_get && parts.status == StatusCode::OK && CONDITIONAL_ROUTES.contains(&route.as_str()) {
        use sha2::Digest as _;
        let etag = format!("\"{}\"", hex::encode(sha2::Sha256::digest(&bytes)));
        if if_none_match.as_deref() == Some(etag.as_str()) {
            parts.status = StatusCode::NOT_MODIFIED;
            parts.headers.remove(header::CONTENT_TYPE);
            bytes = Bytes::new();
            counted = false;
        }
        if let Ok(value) = HeaderValue::from_str(&etag) {
            parts.headers.insert(header::ETAG, value);
        }
    }
    let window = {
        let mut world = sim.world();
        let window = world.rate_limits.entry(rate_key).or_insert(window);
        if counted {
            window.used += 1;
        }
        *window
    };
    let headers = &mut parts.headers;
    headers.insert("x-ratelimit-limit", HeaderValue::from(window.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(window.remaining()),
    );
    headers.insert("x-ratelimit-used", HeaderValue::from(window.used));
    headers.insert("x-ratelimit-reset", HeaderValue::from(window.reset));
    headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    headers.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );

    let status = parts.status.as_u16();
    let raw = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/vnd.github.raw"));
    let response_json = serde_json::from_slice::<Value>(&bytes).ok();
    sim.exchanges.lock().expect("exchanges").push(Exchange {
        method,
        route,
        path,
        status,
        request: request_json,
        response: if raw { None } else { response_json },
        faulted,
        raw,
        caller,
    });
    Response::from_parts(parts, Body::from(bytes))
}

// ---- App and installations ------------------------------------------------

async fn get_app(State(sim): State<Sim>, caller: Caller) -> ApiResult {
    if !matches!(caller, Caller::App) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        ));
    }
    let world = sim.world();
    let app = world.app.as_ref().ok_or_else(ApiError::not_found)?;
    ok(StatusCode::OK, render::integration(&sim.urls, &world, app))
}

async fn create_installation_token(
    State(sim): State<Sim>,
    caller: Caller,
    Path(installation_id): Path<u64>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    if !matches!(caller, Caller::App) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        ));
    }
    let mut world = sim.world();
    let installation = world
        .installations
        .get(&installation_id)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    // Narrowing to named repositories, as GitHub allows.
    let mut repositories = installation.repositories.clone();
    if let Some(names) = body.get("repositories").and_then(Value::as_array) {
        let wanted: Vec<String> = names
            .iter()
            .filter_map(Value::as_str)
            .map(|n| full(&installation.account, n))
            .collect();
        if wanted.iter().any(|w| !repositories.contains(w)) {
            return Err(ApiError::unprocessable(
                "There is at least one repository that does not exist or is not accessible to the parent installation.",
            ));
        }
        repositories = wanted;
    }
    let token = format!("ghs_sim{}", uuid::Uuid::new_v4().simple());
    let expires_at = sim.clock.now() + super::INSTALLATION_TOKEN_TTL;
    world.issue_token(
        token.clone(),
        Token {
            subject: TokenSubject::Installation {
                id: installation_id,
                repositories: repositories.clone(),
            },
            expires_at: Some(expires_at),
        },
    );
    let repos: Vec<Value> = repositories
        .iter()
        .filter_map(|r| world.repos.get(r))
        .map(|r| render::repository(&sim.urls, &world, r, RepoTimes::Iso))
        .collect();
    ok(
        StatusCode::CREATED,
        json!({
            "token": token,
            "expires_at": render::timestamp(expires_at),
            "permissions": render::app_permissions(),
            "repository_selection": "selected",
            "repositories": repos,
        }),
    )
}

async fn get_repo_installation(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
) -> ApiResult {
    if !matches!(caller, Caller::App) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        ));
    }
    let world = sim.world();
    let app = world.app.as_ref().ok_or_else(ApiError::not_found)?;
    let inst = world
        .installation_for(&full(&owner, &repo))
        .ok_or_else(ApiError::not_found)?;
    ok(
        StatusCode::OK,
        render::installation(&sim.urls, &world, app, inst),
    )
}

async fn rate_limit(State(sim): State<Sim>, caller: Caller) -> ApiResult {
    let now = sim.clock.now().unix_timestamp();
    let window = sim
        .world()
        .rate_limits
        .get(&caller.describe())
        .map_or(RateWindow::fresh(now), |w| w.at(now));
    let (reset, used) = (window.reset, window.used);
    let core = json!({"limit": window.limit, "remaining": window.remaining(), "reset": reset, "used": used});
    let search = json!({"limit": 30, "remaining": 30, "reset": reset, "used": 0});
    ok(
        StatusCode::OK,
        json!({"resources": {"core": core, "search": search}, "rate": core}),
    )
}

async fn get_repo(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
) -> ApiResult {
    let world = sim.world();
    let name = full(&owner, &repo);
    let actor = actor(&world, &caller, &name)?;
    let r = &world.repos[&name];
    let mut body = render::repository(&sim.urls, &world, r, RepoTimes::Iso);
    let p = actor.permission;
    body["permissions"] = json!({
        "admin": p >= Permission::Admin, "maintain": p >= Permission::Maintain,
        "push": p >= Permission::Write, "triage": p >= Permission::Triage, "pull": p >= Permission::Read,
    });
    ok(StatusCode::OK, body)
}

async fn collaborator_permission(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, username)): Path<(String, String, String)>,
) -> ApiResult {
    let world = sim.world();
    let name = full(&owner, &repo);
    actor(&world, &caller, &name)?;
    let r = &world.repos[&name];
    let Some(account) = world.accounts.get(&username) else {
        return Err(ApiError::not_found());
    };
    let permission = world.permission(r, &username);
    let mut user = render::user(&sim.urls, account);
    user["role_name"] = json!(permission.role_name());
    ok(
        StatusCode::OK,
        json!({
            "permission": permission.legacy_name(),
            "role_name": permission.role_name(),
            "user": user,
        }),
    )
}

// ---- issues, comments, labels, reactions ------------------------------------

fn issue_mut<'a>(world: &'a mut World, name: &str, number: u64) -> Result<&'a mut Issue, ApiError> {
    world
        .repos
        .get_mut(name)
        .and_then(|r| r.issues.get_mut(&number))
        .ok_or_else(ApiError::not_found)
}

/// Pull request `number` and its issue, as a writer acting on it sees them
/// (404 for an issue that is not a pull request).
fn pull_for_writer<'a>(
    world: &'a World,
    caller: &Caller,
    name: &str,
    number: u64,
) -> Result<(Actor, &'a Issue, &'a Pull), ApiError> {
    let actor = actor(world, caller, name)?;
    require(&actor, Permission::Write)?;
    let issue = world.repos[name]
        .issues
        .get(&number)
        .ok_or_else(ApiError::not_found)?;
    let pull = issue.pull.as_ref().ok_or_else(ApiError::not_found)?;
    Ok((actor, issue, pull))
}

fn issue_payload(sim: &SimInner, world: &World, name: &str, number: u64) -> Value {
    let repo = &world.repos[name];
    render::issue(&sim.urls, world, repo, &repo.issues[&number])
}

/// Labels named in a request, created on the repository when new (GitHub does the same).
fn ensure_labels(world: &mut World, name: &str, labels: &[String]) {
    for label in labels {
        if world.repos[name].labels.contains_key(label) {
            continue;
        }
        let id = world.next_id();
        world.repos.get_mut(name).expect("repo").labels.insert(
            label.clone(),
            Label {
                id,
                name: label.clone(),
                color: "ededed".into(),
                description: None,
            },
        );
    }
}

fn label_names(body: &Value) -> Result<Vec<String>, ApiError> {
    // `["a"]`, `{"labels": ["a"]}` or `{"labels": [{"name": "a"}]}`.
    let list = match body {
        Value::Array(items) => items,
        Value::Object(map) => match map.get("labels") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(ApiError::invalid(
                    "Label",
                    "labels",
                    "missing_field",
                    "labels is missing",
                ));
            }
        },
        _ => {
            return Err(ApiError::invalid(
                "Label",
                "labels",
                "invalid",
                "labels must be an array",
            ));
        }
    };
    list.iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) => o
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::invalid("Label", "name", "missing_field", "name is missing")
                }),
            _ => Err(ApiError::invalid(
                "Label",
                "labels",
                "invalid",
                "a label must be a string",
            )),
        })
        .collect()
}

/// Applies `title` and `body` from a PATCH; returns the webhook's `changes`
/// (the old values of what changed), empty when nothing did.
/// The most characters GitHub takes in an issue, pull request or comment body.
pub const MAX_BODY_CHARS: usize = 65_536;

/// 422 as GitHub answers a body over [`MAX_BODY_CHARS`].
fn body_fits(resource: &str, text: Option<&str>) -> Result<(), ApiError> {
    match text {
        Some(text) if text.chars().count() > MAX_BODY_CHARS => Err(ApiError::invalid(
            resource,
            "body",
            "custom",
            format!("Body is too long (maximum is {MAX_BODY_CHARS} characters)"),
        )),
        _ => Ok(()),
    }
}

fn edit_title_and_body(issue: &mut Issue, body: &Value) -> serde_json::Map<String, Value> {
    let mut changes = serde_json::Map::new();
    if let Some(title) = str_field(body, "title")
        && issue.title != title
    {
        changes.insert("title".into(), json!({"from": issue.title}));
        issue.title = title.to_owned();
    }
    if let Some(b) = body.get("body") {
        let b = b.as_str().map(str::to_owned);
        if issue.body != b {
            let from = issue.body.clone().unwrap_or_default();
            changes.insert("body".into(), json!({"from": from}));
            issue.body = b;
        }
    }
    changes
}

async fn create_issue(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let mut world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    require(&actor, Permission::Read)?;
    let title = required_str(&body, "Issue", "title")?.to_owned();
    let labels = if body.get("labels").is_some() && actor.permission >= Permission::Triage {
        label_names(&json!({"labels": body["labels"]}))?
    } else {
        Vec::new()
    };
    ensure_labels(&mut world, &name, &labels);
    let id = world.next_id();
    let now = sim.clock.now();
    let r = world.repos.get_mut(&name).expect("repo");
    let number = r.next_number;
    r.next_number += 1;
    r.issues.insert(
        number,
        Issue {
            id,
            number,
            title,
            body: str_field(&body, "body").map(str::to_owned),
            user: actor.login.clone(),
            labels,
            state: IssueState::Open,
            state_reason: None,
            created_at: now,
            updated_at: now,
            closed_at: None,
            pull: None,
        },
    );
    r.updated_at = now;
    let issue = issue_payload(&sim, &world, &name, number);
    sim.emit(
        &world,
        "issues",
        &name,
        &actor.login,
        sim_fields!("action" => "opened", "issue" => issue.clone()),
    );
    // Labels given with the issue are each a `labeled` too, as on GitHub:
    // a maintainer can start a mission in the same step as opening its issue.
    let r = &world.repos[&name];
    for label in &r.issues[&number].labels {
        let l = render::label(&sim.urls, r, &r.labels[label]);
        sim.emit(
            &world,
            "issues",
            &name,
            &actor.login,
            sim_fields!("action" => "labeled", "issue" => issue.clone(), "label" => l),
        );
    }
    drop(world);
    sim.bump();
    ok(StatusCode::CREATED, issue)
}

async fn get_issue(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let world = sim.world();
    actor(&world, &caller, &name)?;
    if !world.repos[&name].issues.contains_key(&number) {
        return Err(ApiError::not_found());
    }
    ok(StatusCode::OK, issue_payload(&sim, &world, &name, number))
}

async fn update_issue(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let mut world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    let now = sim.clock.now();
    let author = issue_mut(&mut world, &name, number)?.user.clone();
    if actor.login != author {
        require(&actor, Permission::Triage)?;
    }
    let mut events = Vec::new();
    let new_labels = match body.get("labels") {
        Some(v) if !v.is_null() => Some(label_names(&json!({"labels": v}))?),
        _ => None,
    };
    if let Some(labels) = &new_labels {
        ensure_labels(&mut world, &name, labels);
    }
    let issue = issue_mut(&mut world, &name, number)?;
    let changes = edit_title_and_body(issue, &body);
    if !changes.is_empty() {
        events.push(("edited", None));
    }
    if let Some(labels) = new_labels {
        for added in labels.iter().filter(|l| !issue.labels.contains(l)) {
            events.push(("labeled", Some(added.clone())));
        }
        for removed in issue.labels.iter().filter(|l| !labels.contains(l)) {
            events.push(("unlabeled", Some(removed.clone())));
        }
        issue.labels = labels;
    }
    match str_field(&body, "state") {
        Some("closed") if issue.state == IssueState::Open => {
            issue.state = IssueState::Closed;
            issue.closed_at = Some(now);
            issue.state_reason = Some(
                str_field(&body, "state_reason")
                    .unwrap_or("completed")
                    .to_owned(),
            );
            events.push(("closed", None));
        }
        Some("open") if issue.state == IssueState::Closed => {
            issue.state = IssueState::Open;
            issue.closed_at = None;
            issue.state_reason = Some("reopened".into());
            events.push(("reopened", None));
        }
        Some("open" | "closed") | None => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "Issue",
                "state",
                "invalid",
                format!("state must be open or closed, not {other}"),
            ));
        }
    }
    issue.updated_at = now;
    let is_pull = issue.pull.is_some();
    let payload = issue_payload(&sim, &world, &name, number);
    for (action, label) in events {
        let mut fields = sim_fields!("action" => action, "issue" => payload.clone());
        if action == "edited" {
            fields.insert("changes".into(), Value::Object(changes.clone()));
        }
        if let Some(label) = label {
            let repo = &world.repos[&name];
            if let Some(l) = repo.labels.get(&label) {
                fields.insert("label".into(), render::label(&sim.urls, repo, l));
            }
        }
        if is_pull && matches!(action, "closed" | "reopened" | "edited") {
            let repo = &world.repos[&name];
            let pr = render::pull(
                &sim.urls,
                &world,
                repo,
                &repo.issues[&number],
                PullStats::default(),
            );
            let mut fields =
                sim_fields!("action" => action, "number" => number, "pull_request" => pr);
            if action == "edited" {
                fields.insert("changes".into(), Value::Object(changes.clone()));
            }
            sim.emit(&world, "pull_request", &name, &actor.login, fields);
        } else {
            sim.emit(&world, "issues", &name, &actor.login, fields);
        }
    }
    drop(world);
    sim.bump();
    ok(StatusCode::OK, payload)
}

async fn list_comments(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let world = sim.world();
    actor(&world, &caller, &name)?;
    let r = &world.repos[&name];
    if !r.issues.contains_key(&number) {
        return Err(ApiError::not_found());
    }
    let comments: Vec<Value> = r
        .comments
        .values()
        .filter(|c| c.issue_number == number)
        .map(|c| render::comment(&sim.urls, &world, r, c))
        .collect();
    ok(StatusCode::OK, Value::Array(page.apply(comments)))
}

/// `per_page` (default 30, at most 100) and `page` (from 1), as GitHub pages lists.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    per_page: Option<usize>,
    page: Option<usize>,
}

impl Page {
    pub fn apply<T>(&self, items: Vec<T>) -> Vec<T> {
        let per_page = self.per_page.unwrap_or(30).clamp(1, 100);
        let page = self.page.unwrap_or(1).max(1);
        items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect()
    }
}

async fn create_comment(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let mut world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    require(&actor, Permission::Read)?;
    let text = required_str(&body, "IssueComment", "body")?.to_owned();
    body_fits("IssueComment", Some(&text))?;
    issue_mut(&mut world, &name, number)?;
    let id = world.next_id();
    let now = sim.clock.now();
    let comment = Comment {
        id,
        issue_number: number,
        user: actor.login.clone(),
        body: text,
        created_at: now,
        updated_at: now,
        via_app: actor.installation,
    };
    let r = world.repos.get_mut(&name).expect("repo");
    r.comments.insert(id, comment);
    let r = &world.repos[&name];
    let rendered = render::comment(&sim.urls, &world, r, &r.comments[&id]);
    let issue = issue_payload(&sim, &world, &name, number);
    sim.emit(
        &world,
        "issue_comment",
        &name,
        &actor.login,
        sim_fields!("action" => "created", "issue" => issue, "comment" => rendered.clone()),
    );
    drop(world);
    sim.bump();
    ok(StatusCode::CREATED, rendered)
}

async fn update_comment(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, comment_id)): Path<(String, String, u64)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let mut world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    let text = required_str(&body, "IssueComment", "body")?.to_owned();
    body_fits("IssueComment", Some(&text))?;
    let now = sim.clock.now();
    let r = world.repos.get_mut(&name).expect("repo");
    let comment = r
        .comments
        .get_mut(&comment_id)
        .ok_or_else(ApiError::not_found)?;
    if comment.user != actor.login && actor.permission < Permission::Maintain {
        return Err(ApiError::forbidden(
            "You cannot edit someone else's comment",
        ));
    }
    let old_body = std::mem::replace(&mut comment.body, text);
    comment.updated_at = now;
    let number = comment.issue_number;
    let r = &world.repos[&name];
    let rendered = render::comment(&sim.urls, &world, r, &r.comments[&comment_id]);
    let issue = issue_payload(&sim, &world, &name, number);
    sim.emit(
        &world,
        "issue_comment",
        &name,
        &actor.login,
        sim_fields!("action" => "edited", "issue" => issue, "comment" => rendered.clone(),
                    "changes" => json!({"body": {"from": old_body}})),
    );
    drop(world);
    sim.bump();
    ok(StatusCode::OK, rendered)
}

async fn delete_comment(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, comment_id)): Path<(String, String, u64)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let mut world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    let r = world.repos.get(&name).expect("repo");
    let comment = r
        .comments
        .get(&comment_id)
        .ok_or_else(ApiError::not_found)?;
    if comment.user != actor.login && actor.permission < Permission::Maintain {
        return Err(ApiError::forbidden(
            "You cannot delete someone else's comment",
        ));
    }
    let rendered = render::comment(&sim.urls, &world, r, comment);
    let issue = issue_payload(&sim, &world, &name, comment.issue_number);
    world
        .repos
        .get_mut(&name)
        .expect("repo")
        .comments
        .remove(&comment_id);
    sim.emit(
        &world,
        "issue_comment",
        &name,
        &actor.login,
        sim_fields!("action" => "deleted", "issue" => issue, "comment" => rendered),
    );
    drop(world);
    sim.bump();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_labels(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let mut world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    require(&actor, Permission::Triage)?;
    let labels = label_names(&body)?;
    issue_mut(&mut world, &name, number)?;
    ensure_labels(&mut world, &name, &labels);
    let now = sim.clock.now();
    let issue = issue_mut(&mut world, &name, number)?;
    let added: Vec<String> = labels
        .into_iter()
        .filter(|l| !issue.labels.contains(l))
        .collect();
    issue.labels.extend(added.iter().cloned());
    if !added.is_empty() {
        issue.updated_at = now;
    }
    let is_pull = issue.pull.is_some();
    let r = &world.repos[&name];
    let issue = &r.issues[&number];
    for label in &added {
        let l = render::label(&sim.urls, r, &r.labels[label]);
        if is_pull {
            let pr = render::pull(&sim.urls, &world, r, issue, PullStats::default());
            sim.emit(&world, "pull_request", &name, &actor.login,
                sim_fields!("action" => "labeled", "number" => number, "pull_request" => pr, "label" => l));
        } else {
            let payload = render::issue(&sim.urls, &world, r, issue);
            sim.emit(
                &world,
                "issues",
                &name,
                &actor.login,
                sim_fields!("action" => "labeled", "issue" => payload, "label" => l),
            );
        }
    }
    let all: Vec<Value> = issue
        .labels
        .iter()
        .map(|l| render::label(&sim.urls, r, &r.labels[l]))
        .collect();
    drop(world);
    sim.bump();
    ok(StatusCode::OK, Value::Array(all))
}

fn unlabel(
    sim: &SimInner,
    world: &mut World,
    name: &str,
    number: u64,
    sender: &str,
    remove: &[String],
) {
    let now = sim.clock.now();
    let Ok(issue) = issue_mut(world, name, number) else {
        return;
    };
    issue.labels.retain(|l| !remove.contains(l));
    issue.updated_at = now;
    let r = &world.repos[name];
    let issue = &r.issues[&number];
    for label in remove {
        let Some(l) = r.labels.get(label) else {
            continue;
        };
        let payload = render::issue(&sim.urls, world, r, issue);
        sim.emit(world, "issues", name, sender,
            sim_fields!("action" => "unlabeled", "issue" => payload, "label" => render::label(&sim.urls, r, l)));
    }
}

async fn remove_label(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number, label)): Path<(String, String, u64, String)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let mut world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    require(&actor, Permission::Triage)?;
    let issue = issue_mut(&mut world, &name, number)?;
    if !issue.labels.contains(&label) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Label does not exist"));
    }
    unlabel(&sim, &mut world, &name, number, &actor.login, &[label]);
    let r = &world.repos[&name];
    let remaining: Vec<Value> = r.issues[&number]
        .labels
        .iter()
        .map(|l| render::label(&sim.urls, r, &r.labels[l]))
        .collect();
    drop(world);
    sim.bump();
    ok(StatusCode::OK, Value::Array(remaining))
}

async fn remove_all_labels(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let mut world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    require(&actor, Permission::Triage)?;
    let labels = issue_mut(&mut world, &name, number)?.labels.clone();
    unlabel(&sim, &mut world, &name, number, &actor.login, &labels);
    drop(world);
    sim.bump();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_reaction(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    const CONTENTS: [&str; 8] = [
        "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
    ];
    let name = full(&owner, &repo);
    let mut world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    let content = required_str(&body, "Reaction", "content")?.to_owned();
    if !CONTENTS.contains(&content.as_str()) {
        return Err(ApiError::invalid(
            "Reaction",
            "content",
            "invalid",
            format!("content must be one of {CONTENTS:?}"),
        ));
    }
    issue_mut(&mut world, &name, number)?;
    // The same reaction by the same user is answered 200 with the existing one.
    if let Some(existing) = world.repos[&name]
        .reactions
        .iter()
        .find(|r| r.issue_number == number && r.user == actor.login && r.content == content)
    {
        return ok(
            StatusCode::OK,
            render::reaction(&sim.urls, &world, existing),
        );
    }
    let id = world.next_id();
    let reaction = Reaction {
        id,
        issue_number: number,
        user: actor.login,
        content,
        created_at: sim.clock.now(),
    };
    let rendered = render::reaction(&sim.urls, &world, &reaction);
    world
        .repos
        .get_mut(&name)
        .expect("repo")
        .reactions
        .push(reaction);
    drop(world);
    sim.bump();
    ok(StatusCode::CREATED, rendered)
}

// ---- pull requests and reviews -----------------------------------------------

/// Figures from git for a pull request's JSON.
pub(crate) async fn pull_stats(
    sim: &SimInner,
    name: &str,
    base_ref: &str,
    head_sha: &str,
    merged: bool,
) -> PullStats {
    let base = sim
        .git
        .resolve_ref(name, &format!("refs/heads/{base_ref}"))
        .await
        .ok()
        .flatten();
    let Some(base) = base else {
        return PullStats::default();
    };
    let commits = sim
        .git
        .count_commits(name, &base, head_sha)
        .await
        .unwrap_or(0);
    let mergeable = if merged {
        None
    } else {
        sim.git.can_merge(name, &base, head_sha).await.ok()
    };
    PullStats {
        commits,
        additions: 0,
        deletions: 0,
        changed_files: 0,
        mergeable,
    }
}

pub(crate) async fn render_pull(
    sim: &SimInner,
    name: &str,
    number: u64,
) -> Result<Value, ApiError> {
    let (base_ref, head_sha, merged) = {
        let world = sim.world();
        let issue = world.repos[name]
            .issues
            .get(&number)
            .ok_or_else(ApiError::not_found)?;
        let pull = issue.pull.as_ref().ok_or_else(ApiError::not_found)?;
        (
            pull.base_ref.clone(),
            pull.head_sha.clone(),
            pull.merged_at.is_some(),
        )
    };
    let stats = pull_stats(sim, name, &base_ref, &head_sha, merged).await;
    let world = sim.world();
    let r = &world.repos[name];
    Ok(render::pull(
        &sim.urls,
        &world,
        r,
        &r.issues[&number],
        stats,
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct PullFilter {
    state: Option<String>,
    head: Option<String>,
    base: Option<String>,
    per_page: Option<usize>,
    page: Option<usize>,
}

async fn list_pulls(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
    Query(filter): Query<PullFilter>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let world = sim.world();
    actor(&world, &caller, &name)?;
    let state = filter.state.as_deref().unwrap_or("open");
    if !matches!(state, "open" | "closed" | "all") {
        return Err(ApiError::invalid(
            "PullRequest",
            "state",
            "invalid",
            "state must be open, closed or all",
        ));
    }
    let numbers: Vec<u64> = world.repos[&name]
        .issues
        .values()
        .filter_map(|i| i.pull.as_ref().map(|p| (i, p)))
        .filter(|(i, _)| match state {
            "open" => i.state == IssueState::Open,
            "closed" => i.state == IssueState::Closed,
            _ => true,
        })
        .filter(|(_, p)| {
            filter
                .head
                .as_deref()
                .is_none_or(|h| h.split_once(':').map(|(_, b)| b).unwrap_or(h) == p.head_ref)
        })
        .filter(|(_, p)| filter.base.as_deref().is_none_or(|b| b == p.base_ref))
        .map(|(i, _)| i.number)
        .rev()
        .collect();
    let page = Page {
        per_page: filter.per_page,
        page: filter.page,
    };
    // The list shows `pull-request-simple`: none of the git figures, so none are computed.
    let repo = &world.repos[&name];
    let out: Vec<Value> = page
        .apply(numbers)
        .into_iter()
        .map(|n| {
            let mut pr = render::pull(
                &sim.urls,
                &world,
                repo,
                &repo.issues[&n],
                PullStats::default(),
            );
            render::simple_pull(&mut pr);
            pr
        })
        .collect();
    ok(StatusCode::OK, Value::Array(out))
}

async fn create_pull(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let actor = actor(&sim.world(), &caller, &name)?;
    require(&actor, Permission::Write)?;
    let head = required_str(&body, "PullRequest", "head")?;
    let head = head
        .split_once(':')
        .map(|(_, b)| b)
        .unwrap_or(head)
        .to_owned();
    let base = required_str(&body, "PullRequest", "base")?.to_owned();
    body_fits("PullRequest", str_field(&body, "body"))?;
    let title = str_field(&body, "title").map(str::to_owned);
    let Some(title) = title else {
        return Err(ApiError::invalid(
            "PullRequest",
            "title",
            "missing_field",
            "title is missing",
        ));
    };
    let head_sha = sim
        .git
        .resolve_ref(&name, &format!("refs/heads/{head}"))
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "PullRequest",
                "head",
                "invalid",
                format!("head branch {head} does not exist"),
            )
        })?;
    let base_sha = sim
        .git
        .resolve_ref(&name, &format!("refs/heads/{base}"))
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "PullRequest",
                "base",
                "invalid",
                format!("base branch {base} does not exist"),
            )
        })?;
    if head_sha == base_sha || sim.git.count_commits(&name, &base_sha, &head_sha).await? == 0 {
        return Err(ApiError::invalid(
            "PullRequest",
            "head",
            "custom",
            format!("No commits between {base} and {head}"),
        ));
    }
    let number = {
        let mut world = sim.world();
        if world.repos[&name]
            .pull_by_head(&head)
            .any(|i| i.pull.as_ref().is_some_and(|p| p.base_ref == base))
        {
            return Err(ApiError::invalid(
                "PullRequest",
                "head",
                "custom",
                format!("A pull request already exists for {owner}:{head}."),
            ));
        }
        let id = world.next_id();
        let pull_id = world.next_id();
        let now = sim.clock.now();
        let r = world.repos.get_mut(&name).expect("repo");
        let number = r.next_number;
        r.next_number += 1;
        r.issues.insert(
            number,
            Issue {
                id,
                number,
                title,
                body: str_field(&body, "body").map(str::to_owned),
                user: actor.login.clone(),
                labels: Vec::new(),
                state: IssueState::Open,
                state_reason: None,
                created_at: now,
                updated_at: now,
                closed_at: None,
                pull: Some(Pull {
                    id: pull_id,
                    head_ref: head,
                    head_sha,
                    base_ref: base,
                    base_sha,
                    draft: body.get("draft").and_then(Value::as_bool).unwrap_or(false),
                    merged_at: None,
                    merged_by: None,
                    merge_commit_sha: None,
                    reviews: Vec::new(),
                }),
            },
        );
        number
    };
    let pr = render_pull(&sim, &name, number).await?;
    let world = sim.world();
    sim.emit(
        &world,
        "pull_request",
        &name,
        &actor.login,
        sim_fields!("action" => "opened", "number" => number, "pull_request" => pr.clone()),
    );
    drop(world);
    sim.bump();
    ok(StatusCode::CREATED, pr)
}

async fn get_pull(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    actor(&sim.world(), &caller, &name)?;
    ok(StatusCode::OK, render_pull(&sim, &name, number).await?)
}

async fn update_pull(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let (actor, actions, changes) = {
        let mut world = sim.world();
        let actor = actor(&world, &caller, &name)?;
        let issue = issue_mut(&mut world, &name, number)?;
        if issue.pull.is_none() {
            return Err(ApiError::not_found());
        }
        if issue.user != actor.login {
            require(&actor, Permission::Write)?;
        }
        body_fits("PullRequest", str_field(&body, "body"))?;
        let now = sim.clock.now();
        let mut actions = Vec::new();
        let changes = edit_title_and_body(issue, &body);
        if !changes.is_empty() {
            actions.push("edited");
        }
        let merged = issue.pull.as_ref().is_some_and(|p| p.merged_at.is_some());
        match str_field(&body, "state") {
            Some("closed") if issue.state == IssueState::Open => {
                issue.state = IssueState::Closed;
                issue.closed_at = Some(now);
                actions.push("closed");
            }
            Some("open") if issue.state == IssueState::Closed && !merged => {
                issue.state = IssueState::Open;
                issue.closed_at = None;
                actions.push("reopened");
            }
            _ => {}
        }
        issue.updated_at = now;
        (actor, actions, changes)
    };
    let pr = render_pull(&sim, &name, number).await?;
    let world = sim.world();
    for action in actions {
        let mut fields =
            sim_fields!("action" => action, "number" => number, "pull_request" => pr.clone());
        if action == "edited" {
            fields.insert("changes".into(), Value::Object(changes.clone()));
        }
        sim.emit(&world, "pull_request", &name, &actor.login, fields);
    }
    drop(world);
    sim.bump();
    ok(StatusCode::OK, pr)
}

async fn merge_pull(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let (actor, base_ref, head_sha, title) = {
        let world = sim.world();
        let (actor, issue, pull) = pull_for_writer(&world, &caller, &name, number)?;
        if pull.merged_at.is_some() || issue.state == IssueState::Closed {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Pull Request is not mergeable",
            ));
        }
        (
            actor,
            pull.base_ref.clone(),
            pull.head_sha.clone(),
            issue.title.clone(),
        )
    };
    if let Some(expected) = str_field(&body, "sha")
        && expected != head_sha
    {
        return Err(ApiError::conflict(
            "Head branch was modified. Review and try the merge again.",
        ));
    }
    if sim.world().repos[&name].merge_queue.contains(&base_ref) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Changes must be made through the merge queue",
        ));
    }
    check_protection(&sim, &name, &base_ref, &head_sha).await?;
    let method = match str_field(&body, "merge_method").unwrap_or("merge") {
        "merge" => git::MergeMethod::Merge,
        "squash" => git::MergeMethod::Squash,
        "rebase" => git::MergeMethod::Rebase,
        other => {
            return Err(ApiError::invalid(
                "PullRequest",
                "merge_method",
                "invalid",
                format!("merge_method must be merge, squash or rebase, not {other}"),
            ));
        }
    };
    let message = match (str_field(&body, "commit_title"), method) {
        (Some(t), _) => t.to_owned(),
        (None, git::MergeMethod::Squash) => format!("{title} (#{number})"),
        (None, _) => format!("Merge pull request #{number} from {owner}/{}", {
            let world = sim.world();
            world.repos[&name].issues[&number]
                .pull
                .as_ref()
                .map(|p| p.head_ref.clone())
                .unwrap_or_default()
        }),
    };
    let message = match str_field(&body, "commit_message") {
        Some(m) if !m.is_empty() => format!("{message}\n\n{m}"),
        _ => message,
    };
    let now = sim.clock.now();
    let committer = git::Signature {
        name: "GitHub".into(),
        email: "noreply@github.com".into(),
        date: now,
    };
    let before = sim
        .git
        .resolve_ref(&name, &format!("refs/heads/{base_ref}"))
        .await?;
    let merged_sha = match sim
        .git
        .merge(&name, &base_ref, &head_sha, method, &message, &committer)
        .await
    {
        Ok(sha) => sha,
        Err(git::GitError::Conflict(_)) => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Pull Request is not mergeable",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    {
        let mut world = sim.world();
        let issue = issue_mut(&mut world, &name, number)?;
        issue.state = IssueState::Closed;
        issue.closed_at = Some(now);
        issue.updated_at = now;
        if let Some(p) = issue.pull.as_mut() {
            p.merged_at = Some(now);
            p.merged_by = Some(actor.login.clone());
            p.merge_commit_sha = Some(merged_sha.clone());
        }
    }
    gitapi::after_ref_change(
        &sim,
        &name,
        &format!("refs/heads/{base_ref}"),
        before,
        Some(merged_sha.clone()),
        &actor.login,
    )
    .await;
    let pr = render_pull(&sim, &name, number).await?;
    let world = sim.world();
    sim.emit(
        &world,
        "pull_request",
        &name,
        &actor.login,
        sim_fields!("action" => "closed", "number" => number, "pull_request" => pr),
    );
    drop(world);
    sim.bump();
    ok(
        StatusCode::OK,
        json!({"sha": merged_sha, "merged": true, "message": "Pull Request successfully merged"}),
    )
}

/// The base branch's protection allows merging `head_sha`: every required
/// check run succeeded on it, and (strict) it contains the base's tip.
async fn check_protection(
    sim: &Sim,
    name: &str,
    base_ref: &str,
    head_sha: &str,
) -> Result<(), ApiError> {
    let (protection, checks) = {
        let world = sim.world();
        let repo = &world.repos[name];
        let Some(protection) = repo.protection.get(base_ref).cloned() else {
            return Ok(());
        };
        (protection, repo.required_checks(base_ref, head_sha, 0))
    };
    if let RequiredChecks::Waiting(check) | RequiredChecks::Failed(check) = checks {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Required status check \"{check}\" is expected."),
        ));
    }
    if protection.strict {
        let base_sha = sim
            .git
            .resolve_ref(name, &format!("refs/heads/{base_ref}"))
            .await?
            .unwrap_or_default();
        if !sim.git.is_ancestor(name, &base_sha, head_sha).await? {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Head branch is not up to date with the base branch",
            ));
        }
    }
    Ok(())
}

/// `PUT /repos/{owner}/{repo}/pulls/{n}/update-branch`: the *Update branch*
/// button. Merges the base's tip into the head branch as the caller (a new
/// head, hence `synchronize`); 422 when there is nothing to bring in.
async fn update_branch(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    body: axum::body::Bytes,
) -> ApiResult {
    // The body is optional: `{"expected_head_sha": ...}` or nothing.
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    let name = full(&owner, &repo);
    let (actor, base_ref, head_ref, head_sha) = {
        let world = sim.world();
        let (actor, issue, pull) = pull_for_writer(&world, &caller, &name, number)?;
        if issue.state == IssueState::Closed {
            return Err(ApiError::unprocessable("Pull request is closed"));
        }
        (
            actor,
            pull.base_ref.clone(),
            pull.head_ref.clone(),
            pull.head_sha.clone(),
        )
    };
    if let Some(body) = &body
        && let Some(expected) = str_field(body, "expected_head_sha")
        && expected != head_sha
    {
        return Err(ApiError::unprocessable(
            "expected head sha didn't match current head ref.",
        ));
    }
    let base_sha = sim
        .git
        .resolve_ref(&name, &format!("refs/heads/{base_ref}"))
        .await?
        .ok_or_else(ApiError::not_found)?;
    if sim.git.is_ancestor(&name, &base_sha, &head_sha).await? {
        return Err(ApiError::unprocessable(
            "There are no new commits on the base branch.",
        ));
    }
    let signature = gitapi::default_signature(&sim, &actor.login);
    let merged = sim
        .git
        .merge(
            &name,
            &head_ref,
            &base_sha,
            git::MergeMethod::Merge,
            &format!("Merge branch '{base_ref}' into {head_ref}"),
            &signature,
        )
        .await
        .map_err(|e| match e {
            git::GitError::Conflict(_) => {
                ApiError::unprocessable("merge conflict between base and head")
            }
            other => other.into(),
        })?;
    gitapi::after_ref_change(
        &sim,
        &name,
        &format!("refs/heads/{head_ref}"),
        Some(head_sha),
        Some(merged),
        &actor.login,
    )
    .await;
    sim.bump();
    ok(
        StatusCode::ACCEPTED,
        json!({
            "message": "Updating pull request branch.",
            "url": format!("{}/{name}/pull/{number}", sim.urls.web),
        }),
    )
}

async fn list_reviews(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let world = sim.world();
    actor(&world, &caller, &name)?;
    let r = &world.repos[&name];
    let pull = r
        .issues
        .get(&number)
        .and_then(|i| i.pull.as_ref())
        .ok_or_else(ApiError::not_found)?;
    let reviews: Vec<Value> = pull
        .reviews
        .iter()
        .map(|rv| render::review(&sim.urls, &world, r, number, rv))
        .collect();
    ok(StatusCode::OK, Value::Array(page.apply(reviews)))
}

/// `POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews` (beyond the subset:
/// how a maintainer approves in scenarios). `event` APPROVE, REQUEST_CHANGES or COMMENT.
async fn create_review(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let (actor, review_id) = {
        let mut world = sim.world();
        let actor = actor(&world, &caller, &name)?;
        let state = match str_field(&body, "event") {
            Some("APPROVE") => "APPROVED",
            Some("REQUEST_CHANGES") => "CHANGES_REQUESTED",
            Some("COMMENT") => "COMMENTED",
            _ => {
                return Err(ApiError::invalid(
                    "PullRequestReview",
                    "event",
                    "invalid",
                    "event must be APPROVE, REQUEST_CHANGES or COMMENT (pending reviews are not simulated)",
                ));
            }
        };
        let review_body = str_field(&body, "body").unwrap_or("").to_owned();
        if state != "APPROVED" && review_body.is_empty() {
            return Err(ApiError::unprocessable(
                "Review body is required for this event",
            ));
        }
        let id = world.next_id();
        let now = sim.clock.now();
        let issue = issue_mut(&mut world, &name, number)?;
        if issue.user == actor.login && state != "COMMENTED" {
            return Err(ApiError::unprocessable(
                "Can not approve or request changes on your own pull request",
            ));
        }
        let pull = issue.pull.as_mut().ok_or_else(ApiError::not_found)?;
        let commit_id = str_field(&body, "commit_id")
            .map(str::to_owned)
            .unwrap_or_else(|| pull.head_sha.clone());
        pull.reviews.push(Review {
            id,
            user: actor.login.clone(),
            body: review_body,
            state: state.into(),
            commit_id,
            submitted_at: now,
        });
        (actor, id)
    };
    let pr = render_pull(&sim, &name, number).await?;
    let world = sim.world();
    let r = &world.repos[&name];
    let review = r.issues[&number]
        .pull
        .as_ref()
        .and_then(|p| p.reviews.iter().find(|rv| rv.id == review_id))
        .expect("just added");
    let rendered = render::review(&sim.urls, &world, r, number, review);
    sim.emit(
        &world,
        "pull_request_review",
        &name,
        &actor.login,
        sim_fields!("action" => "submitted", "review" => rendered.clone(), "pull_request" => pr),
    );
    drop(world);
    sim.bump();
    ok(StatusCode::OK, rendered)
}

// ---- check runs -------------------------------------------------------------

fn check_output(body: &Value, into: &mut CheckOutput) -> Result<(), ApiError> {
    let Some(output) = body.get("output") else {
        return Ok(());
    };
    let title = str_field(output, "title");
    let summary = str_field(output, "summary");
    if title.is_none() || summary.is_none() {
        return Err(ApiError::invalid(
            "CheckRun",
            "output",
            "missing_field",
            "output needs a title and a summary",
        ));
    }
    let mut images = Vec::new();
    for image in output
        .get("images")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match (str_field(image, "alt"), str_field(image, "image_url")) {
            (Some(alt), Some(url)) => images.push((alt.to_owned(), url.to_owned())),
            _ => {
                return Err(ApiError::invalid(
                    "CheckRun",
                    "output",
                    "missing_field",
                    "each of output.images needs an alt and an image_url",
                ));
            }
        }
    }
    into.title = title.map(str::to_owned);
    into.summary = summary.map(str::to_owned);
    into.text = str_field(output, "text").map(str::to_owned);
    into.images = images;
    Ok(())
}

const CONCLUSIONS: [&str; 7] = [
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "timed_out",
];

fn apply_check_status(
    run: &mut CheckRun,
    body: &Value,
    now: time::OffsetDateTime,
) -> Result<(), ApiError> {
    if let Some(status) = str_field(body, "status") {
        if ![
            "queued",
            "in_progress",
            "completed",
            "waiting",
            "requested",
            "pending",
        ]
        .contains(&status)
        {
            return Err(ApiError::invalid(
                "CheckRun",
                "status",
                "invalid",
                format!("status {status} is not valid"),
            ));
        }
        run.status = status.to_owned();
    }
    if let Some(conclusion) = str_field(body, "conclusion") {
        if !CONCLUSIONS.contains(&conclusion) {
            return Err(ApiError::invalid(
                "CheckRun",
                "conclusion",
                "invalid",
                format!("conclusion {conclusion} is not valid"),
            ));
        }
        run.conclusion = Some(conclusion.to_owned());
        // GitHub: a conclusion completes the run.
        run.status = "completed".into();
    }
    if run.status == "completed" {
        if run.conclusion.is_none() {
            return Err(ApiError::invalid(
                "CheckRun",
                "conclusion",
                "missing_field",
                "conclusion is required when status is completed",
            ));
        }
        run.completed_at.get_or_insert(now);
    }
    Ok(())
}

async fn create_check_run(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let actor = actor(&sim.world(), &caller, &name)?;
    if !actor.installation {
        return Err(ApiError::forbidden(
            "You must authenticate via a GitHub App.",
        ));
    }
    let check_name = required_str(&body, "CheckRun", "name")?.to_owned();
    let head_sha = required_str(&body, "CheckRun", "head_sha")?.to_owned();
    if sim.git.object_type(&name, &head_sha).await?.is_none() {
        return Err(ApiError::invalid(
            "CheckRun",
            "head_sha",
            "invalid",
            "No commit found for SHA",
        ));
    }
    // The lock ends with this block: the queue below awaits.
    let (rendered, completed) = {
        let mut world = sim.world();
        let id = world.next_id();
        let suite = world.check_suite_id(&name, &head_sha);
        let now = sim.clock.now();
        let mut run = CheckRun {
            id,
            app: CheckApp::Installed,
            name: check_name,
            head_sha,
            status: "queued".into(),
            conclusion: None,
            details_url: str_field(&body, "details_url").map(str::to_owned),
            external_id: str_field(&body, "external_id").map(str::to_owned),
            started_at: now,
            completed_at: None,
            output: CheckOutput::default(),
            check_suite_id: suite,
        };
        check_output(&body, &mut run.output)?;
        apply_check_status(&mut run, &body, now)?;
        let completed = run.status == "completed";
        world
            .repos
            .get_mut(&name)
            .expect("repo")
            .check_runs
            .insert(id, run);
        let r = &world.repos[&name];
        let rendered = render::check_run(&sim.urls, &world, r, &r.check_runs[&id]);
        sim.emit(
            &world,
            "check_run",
            &name,
            &actor.login,
            sim_fields!("action" => "created", "check_run" => rendered.clone()),
        );
        if completed {
            sim.emit(
                &world,
                "check_run",
                &name,
                &actor.login,
                sim_fields!("action" => "completed", "check_run" => rendered.clone()),
            );
        }
        (rendered, completed)
    };
    sim.bump();
    if completed {
        queue::advance(&sim, &name).await;
    }
    ok(StatusCode::CREATED, rendered)
}

/// `POST /repos/{owner}/{repo}/check-runs/{id}/rerequest`: the Re-run
/// button. GitHub sends `check_run` `rerequested` to the App that owns the
/// run and lets it decide what re-running means.
async fn rerequest_check_run(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, id)): Path<(String, String, u64)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let world = sim.world();
    let actor = actor(&world, &caller, &name)?;
    require(&actor, Permission::Write)?;
    let r = &world.repos[&name];
    let run = r.check_runs.get(&id).ok_or_else(ApiError::not_found)?;
    // GitHub sends `rerequested` only to the App that owns the run; the
    // simulator does not re-run GitHub Actions' jobs.
    only_its_app(run)?;
    if run.status != "completed" {
        return Err(ApiError::unprocessable(
            "This check run is not rerequestable: it has not completed",
        ));
    }
    let rendered = render::check_run(&sim.urls, &world, r, run);
    sim.emit(
        &world,
        "check_run",
        &name,
        &actor.login,
        sim_fields!("action" => "rerequested", "check_run" => rendered),
    );
    drop(world);
    sim.bump();
    ok(StatusCode::CREATED, json!({}))
}

/// A check run may be changed only by the App that created it: the
/// installed App's token cannot touch GitHub Actions' (GitHub's 403).
fn only_its_app(run: &CheckRun) -> Result<(), ApiError> {
    match run.app {
        CheckApp::Installed => Ok(()),
        CheckApp::Actions => Err(ApiError::forbidden(format!(
            "Invalid app_id `{}` - check run can only be modified by the GitHub App that created it.",
            render::ACTIONS_APP_ID
        ))),
    }
}

async fn get_check_run(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, id)): Path<(String, String, u64)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let world = sim.world();
    actor(&world, &caller, &name)?;
    let r = &world.repos[&name];
    let run = r.check_runs.get(&id).ok_or_else(ApiError::not_found)?;
    ok(StatusCode::OK, render::check_run(&sim.urls, &world, r, run))
}

async fn update_check_run(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let (rendered, completed_now) = {
        let mut world = sim.world();
        let actor = actor(&world, &caller, &name)?;
        if !actor.installation {
            return Err(ApiError::forbidden(
                "You must authenticate via a GitHub App.",
            ));
        }
        let now = sim.clock.now();
        let r = world.repos.get_mut(&name).expect("repo");
        let run = r.check_runs.get_mut(&id).ok_or_else(ApiError::not_found)?;
        only_its_app(run)?;
        let was_completed = run.status == "completed";
        let mut updated = run.clone();
        if let Some(n) = str_field(&body, "name") {
            updated.name = n.to_owned();
        }
        if let Some(u) = str_field(&body, "details_url") {
            updated.details_url = Some(u.to_owned());
        }
        if let Some(e) = str_field(&body, "external_id") {
            updated.external_id = Some(e.to_owned());
        }
        check_output(&body, &mut updated.output)?;
        apply_check_status(&mut updated, &body, now)?;
        let completed_now = !was_completed && updated.status == "completed";
        *run = updated;
        let r = &world.repos[&name];
        let rendered = render::check_run(&sim.urls, &world, r, &r.check_runs[&id]);
        if completed_now {
            sim.emit(
                &world,
                "check_run",
                &name,
                &actor.login,
                sim_fields!("action" => "completed", "check_run" => rendered.clone()),
            );
        }
        (rendered, completed_now)
    };
    sim.bump();
    if completed_now {
        queue::advance(&sim, &name).await;
    }
    ok(StatusCode::OK, rendered)
}

#[derive(Debug, serde::Deserialize)]
pub struct CheckFilter {
    check_name: Option<String>,
    status: Option<String>,
    /// Only the runs of this App (`15368`: GitHub Actions').
    app_id: Option<u64>,
}

async fn list_check_runs_for_ref(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, reference)): Path<(String, String, String)>,
    Query(filter): Query<CheckFilter>,
) -> ApiResult {
    let name = full(&owner, &repo);
    actor(&sim.world(), &caller, &name)?;
    let sha = gitapi::resolve_commitish(&sim, &name, &reference).await?;
    let world = sim.world();
    let r = &world.repos[&name];
    let runs: Vec<Value> = r
        .check_runs
        .values()
        .rev()
        .filter(|c| c.head_sha == sha)
        .filter(|c| filter.check_name.as_deref().is_none_or(|n| n == c.name))
        .filter(|c| filter.status.as_deref().is_none_or(|s| s == c.status))
        .filter(|c| {
            filter
                .app_id
                .is_none_or(|id| render::check_app_id(&world, c.app) == Some(id))
        })
        .map(|c| render::check_run(&sim.urls, &world, r, c))
        .collect();
    ok(
        StatusCode::OK,
        json!({"total_count": runs.len(), "check_runs": runs}),
    )
}

/// `POST /repos/{owner}/{repo}/statuses/{sha}`: what a CI service outside
/// GitHub Actions reports on a commit; sends the `status` webhook.
async fn create_status(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let actor = actor(&sim.world(), &caller, &name)?;
    require(&actor, Permission::Write)?;
    let state = required_str(&body, "Status", "state")?.to_owned();
    if !matches!(state.as_str(), "error" | "failure" | "pending" | "success") {
        return Err(ApiError::invalid(
            "Status",
            "state",
            "custom",
            "state is not included in the list",
        ));
    }
    if sim.git.object_type(&name, &sha).await?.is_none() {
        return Err(ApiError::unprocessable(format!(
            "No commit found for SHA: {sha}"
        )));
    }
    let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_owned);
    let status = {
        let mut world = sim.world();
        let id = world.next_id();
        let status = CommitStatus {
            id,
            sha: sha.clone(),
            context: text("context").unwrap_or_else(|| "default".into()),
            state,
            target_url: text("target_url"),
            description: text("description"),
            creator: actor.login.clone(),
            created_at: sim.clock.now(),
        };
        world
            .repos
            .get_mut(&name)
            .expect("repo")
            .statuses
            .push(status.clone());
        status
    };
    let rendered = {
        let world = sim.world();
        let rendered = render::commit_status(&sim.urls, &world, &name, &status);
        let fields = sim_fields!(
            "id" => status.id,
            "sha" => sha,
            "name" => name,
            "context" => status.context,
            "state" => status.state,
            "target_url" => status.target_url,
            "description" => status.description,
            "commit" => json!({"sha": status.sha}),
            "branches" => Value::Array(Vec::new()),
            "created_at" => render::timestamp(status.created_at),
            "updated_at" => render::timestamp(status.created_at),
        );
        sim.emit(&world, "status", &name, &actor.login, fields);
        rendered
    };
    sim.bump();
    ok(StatusCode::CREATED, rendered)
}

/// `GET /repos/{owner}/{repo}/commits/{ref}/status`: the newest status of
/// each context on the commit, and their combined state.
async fn combined_status(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, reference)): Path<(String, String, String)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    actor(&sim.world(), &caller, &name)?;
    let sha = gitapi::resolve_commitish(&sim, &name, &reference).await?;
    let world = sim.world();
    let mut newest: std::collections::BTreeMap<&str, &CommitStatus> = Default::default();
    for status in world.repos[&name].statuses.iter().filter(|s| s.sha == sha) {
        newest.insert(&status.context, status);
    }
    let states: Vec<&str> = newest.values().map(|s| s.state.as_str()).collect();
    // GitHub's rule: failure if any errored or failed, pending if any is
    // pending or there is none, else success.
    let state = if states.iter().any(|s| matches!(*s, "error" | "failure")) {
        "failure"
    } else if states.is_empty() || states.contains(&"pending") {
        "pending"
    } else {
        "success"
    };
    let statuses: Vec<Value> = newest
        .values()
        .map(|s| render::commit_status(&sim.urls, &world, &name, s))
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "state": state,
            "sha": sha,
            "total_count": statuses.len(),
            "statuses": statuses,
            "commit_url": format!("{}/repos/{name}/commits/{sha}", sim.urls.api),
            "url": format!("{}/repos/{name}/commits/{sha}/status", sim.urls.api),
        }),
    )
}

// ---- the simulator's own endpoints ---------------------------------------

async fn admin_deliveries(State(sim): State<Sim>) -> Response {
    let log = sim.hooks.log.lock().expect("delivery log").clone();
    let items: Vec<Value> = log
        .iter()
        .map(|d| json!({"id": d.id, "event": d.event, "action": d.action, "status": d.status, "error": d.error, "sent": d.sent}))
        .collect();
    axum::Json(Value::Array(items)).into_response()
}

async fn admin_run_log(
    State(sim): State<Sim>,
    Path((owner, repo, run_id)): Path<(String, String, u64)>,
) -> Response {
    let log = sim
        .world()
        .repos
        .get(&full(&owner, &repo))
        .and_then(|r| r.runs.get(&run_id))
        .map(|r| r.log.clone());
    match log {
        Some(log) => log.into_response(),
        None => ApiError::not_found().into_response(),
    }
}
