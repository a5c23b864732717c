//! Registering the App on GitHub with GitHub's App manifest flow
//! (`missions app-manifest`).
//!
//! 0. At startup the config file is checked: it parses as TOML (if present) and
//!    its directory exists (made with mode 0700) and is writable, so that nothing
//!    found only after GitHub created the App (and the one-time code is spent)
//!    can stop the identity from being written.
//! 1. The command prints a one-time URL, `PUBLIC_URL/?token=…`. Opening it sets
//!    a cookie (HttpOnly, SameSite=Lax, Secure over https) carrying a random
//!    nonce bound to the flow's `state`, and sends the browser on to `GET /`. Only
//!    a browser with that cookie gets the page, whose form POSTs the manifest
//!    (name, webhook URL, permissions, events) to `{github}/settings/apps/new?state=…`
//!    (or an organization's `…/organizations/ORG/settings/apps/new`).
//! 2. The person names the App on GitHub and creates it; GitHub redirects the
//!    browser to `/redirect?code=…&state=…`.
//! 3. The redirect handler requires the cookie (so the redirect comes from the
//!    browser that started the flow, not from someone replaying their own App's
//!    code) and the `state` (CSRF), exchanges the one-time code with
//!    `POST {api}/app-manifests/{code}/conversions` (no authentication) and writes
//!    the App's id, private key and webhook secret into the server's config file
//!    (mode 0600, the key in a file of its own beside it), replacing the previous
//!    App's identity entirely.
//!
//! Every request must name this server in its `Host` header: the public URL's
//! host, or `127.0.0.1:PORT` / `localhost:PORT` (anything else, e.g. a DNS
//! rebinding page's own name, gets 421).
//!
//! The permissions and events asked for come from [`PERMISSIONS`] and [`EVENTS`],
//! each with the reason the App needs it; `tests/app_manifest.rs` checks them
//! against the events the mission handler consumes and the REST calls the App
//! makes, and `docs/install.md` lists them for registering the App by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

/// Every repository permission the App asks for: (permission, level, why), the
/// why naming the REST calls (`src/engine/missions/effects.rs` and
/// `src/engine/missions/mod.rs`) that need it. Nothing else is asked for: in
/// particular not `workflows`, since the App never writes workflow files (a
/// person adds the mission workflow with `missions init`), and not
/// organization or account permissions.
pub const PERMISSIONS: &[(&str, &str, &str)] = &[
    (
        "actions",
        "write",
        "dispatch the mission workflow, one job at a time \
         (POST /repos/{owner}/{repo}/actions/workflows/{file}/dispatches), read a run \
         when reconciling a job whose webhook was lost (GET /repos/{owner}/{repo}/actions/runs/{run_id}), \
         and the log of the repository's CI job that failed on a ready commit \
         (GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs)",
    ),
    (
        "checks",
        "write",
        "create and complete the validators' check runs `missions / scrutiny` and \
         `missions / user-testing` (POST /repos/{owner}/{repo}/check-runs, \
         PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}), and read the repository's own \
         CI check runs on a ready commit (GET /repos/{owner}/{repo}/commits/{ref}/check-runs)",
    ),
    (
        "contents",
        "write",
        "create the mission's branches (GET /repos/{owner}/{repo}/git/ref/{ref}, \
         POST /repos/{owner}/{repo}/git/refs), make a milestone's ready commit \
         (GET /repos/{owner}/{repo}/branches/{branch}, POST /repos/{owner}/{repo}/git/commits, \
         PATCH /repos/{owner}/{repo}/git/refs/{ref}), read the base branch's required checks \
         (the same GET of the branch), read `.github/missions.yml` and job results \
         (GET /repos/{owner}/{repo}/contents/{path}), and write the CI report and overlong \
         comments to the reports branch (PUT /repos/{owner}/{repo}/contents/{path})",
    ),
    (
        "issues",
        "write",
        "comment on the mission's issue (POST /repos/{owner}/{repo}/issues/{issue_number}/comments), \
         keep its status comment up to date (GET the same to find it again, \
         PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}) and close the issue with the \
         final report (PATCH /repos/{owner}/{repo}/issues/{issue_number})",
    ),
    (
        "merge_queues",
        "read",
        "receive `merge_group` when a milestone pull request is in a merge queue, to report \
         the validators' verdict on the group's commit (POST /repos/{owner}/{repo}/check-runs)",
    ),
    (
        "metadata",
        "read",
        "check that whoever labels, comments or reviews has write access \
         (GET /repos/{owner}/{repo}/collaborators/{username}/permission); GitHub grants it to \
         every App with repository permissions",
    ),
    (
        "pull_requests",
        "write",
        "open the plan and milestone pull requests (POST and GET /repos/{owner}/{repo}/pulls), \
         close a superseded plan pull request (PATCH /repos/{owner}/{repo}/pulls/{pull_number}), \
         find a review or merge whose webhook never came (GET /repos/{owner}/{repo}/pulls/{pull_number} \
         and its /reviews), \
         and comment on them (POST /repos/{owner}/{repo}/issues/{issue_number}/comments)",
    ),
    (
        "statuses",
        "read",
        "read the commit statuses other CI services report on a ready commit, when one is a \
         required check (GET /repos/{owner}/{repo}/commits/{ref}/status)",
    ),
];

/// Every webhook event the App subscribes to: (event, why), the why naming the
/// [`MissionInput`](crate::engine::missions::MissionInput) it becomes. Exactly the
/// events whose payloads the mission handler consumes; `installation` events
/// reach every App without a subscription, and the App does not use `push`
/// or `workflow_job`.
pub const EVENTS: &[(&str, &str)] = &[
    (
        "check_run",
        "`rerequested`: Re-run on a validator's check run runs that validator again \
         (MissionInput::Rerun); GitHub sends it only to the App that owns the check run. \
         `created` and `completed` of other apps' check runs (the repository's CI) on a \
         milestone's ready commit (MissionInput::ExternalCheck)",
    ),
    (
        "check_suite",
        "`rerequested`: Re-run all checks on a milestone's ready commit runs both validators \
         again (MissionInput::Rerun)",
    ),
    (
        "issues",
        "`labeled`: the mission label added to an issue starts a mission (MissionInput::Labeled)",
    ),
    (
        "issue_comment",
        "`created`: scoping answers and `/mission` commands on the issue, commands on its \
         pull requests (MissionInput::Comment)",
    ),
    (
        "merge_group",
        "`checks_requested`: a merge queue's group that merges a milestone pull request gets \
         both validators' check runs, passing when the pull request's head in it is the one \
         validated (MissionInput::MergeGroup)",
    ),
    (
        "pull_request",
        "`closed` and merged: a merged milestone pull request starts the next milestone or \
         ends the mission (MissionInput::Merged); `synchronize`: a milestone PR whose head \
         moved after validation is validated again (MissionInput::Synchronized)",
    ),
    (
        "pull_request_review",
        "`submitted`: an approving review approves the plan, requested changes send it back to \
         the orchestrator (MissionInput::Review)",
    ),
    (
        "workflow_run",
        "`requested`, `in_progress`, `completed` of the mission workflow's dispatched runs: how \
         the server learns that a job started and ended (MissionInput::Run)",
    ),
];

pub const DEFAULT_NAME: &str = "missions";
pub const DEFAULT_CONFIG_PATH: &str = "config/missions.toml";
pub const DEFAULT_GITHUB_URL: &str = "https://github.com";
/// Where `missions serve` receives webhooks, under its public URL.
pub const WEBHOOK_PATH: &str = "/webhook";
/// Where GitHub sends the browser back with the code, under the public URL.
pub const REDIRECT_PATH: &str = "/redirect";
/// The cookie that binds the flow to the browser that opened the one-time URL.
pub const COOKIE_NAME: &str = "missions_app_manifest";

/// The manifest GitHub registers the App from. `url` (the App's homepage, which
/// GitHub requires) is the webhook URL's origin: the server's public address.
pub fn manifest(webhook_url: &str, redirect_url: &str, name: &str) -> Value {
    let homepage = reqwest::Url::parse(webhook_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| webhook_url.to_owned());
    let permissions: BTreeMap<&str, &str> = PERMISSIONS
        .iter()
        .map(|(permission, level, _)| (*permission, *level))
        .collect();
    let events: Vec<&str> = EVENTS.iter().map(|(event, _)| *event).collect();
    json!({
        "name": name,
        "url": homepage,
        "hook_attributes": { "url": webhook_url, "active": true },
        "redirect_url": redirect_url,
        "description": "Runs long software tasks as missions: label an issue `mission`, approve \
                        the plan, merge each milestone once its validators pass.",
        "public": false,
        "default_permissions": permissions,
        "default_events": events,
    })
}

/// What `missions app-manifest` needs to know.
#[derive(Debug, Clone)]
pub struct FlowOptions {
    /// The App's name as GitHub first shows it (the person may change it there).
    pub name: String,
    /// Where `missions serve` will receive webhooks.
    pub webhook_url: String,
    /// Where GitHub sends the browser back: this server's `/redirect`.
    pub redirect_url: String,
    /// `https://github.com`, or a GitHub Enterprise Server's web URL.
    pub github_url: String,
    /// `https://api.github.com`, or `https://HOST/api/v3`.
    pub api_url: String,
    /// Register the App on this organization instead of the person's account.
    pub org: Option<String>,
    /// The server's TOML config file to write the App's identity into.
    pub config_path: PathBuf,
    /// The port this server listens on (on 127.0.0.1): besides the redirect
    /// URL's host, requests may only name `127.0.0.1:PORT` or `localhost:PORT`.
    pub port: u16,
}

impl FlowOptions {
    /// Where the page's form POSTs the manifest.
    pub fn new_app_url(&self, state: &str) -> String {
        let base = self.github_url.trim_end_matches('/');
        match &self.org {
            Some(org) => format!(
                "{base}/organizations/{}/settings/apps/new?state={state}",
                crate::engine::missions::effects::query_value(org)
            ),
            None => format!("{base}/settings/apps/new?state={state}"),
        }
    }

    pub fn manifest(&self) -> Value {
        manifest(&self.webhook_url, &self.redirect_url, &self.name)
    }

    /// The server's public base URL: the redirect URL without `/redirect`.
    fn public_base(&self) -> &str {
        let url = self.redirect_url.trim_end_matches('/');
        url.strip_suffix(REDIRECT_PATH).unwrap_or(url)
    }

    /// Whether a request's `Host` (or HTTP/2 authority) names this server: the
    /// redirect URL's host and port, or 127.0.0.1/localhost on [`Self::port`].
    pub fn host_allowed(&self, host: &str) -> bool {
        if host.is_empty()
            || host.chars().any(|c| {
                c.is_whitespace() || c.is_control() || matches!(c, '@' | '/' | '\\' | '?' | '#')
            })
        {
            return false;
        }
        let names = |scheme: &str, expected: &str, port: Option<u16>| {
            reqwest::Url::parse(&format!("{scheme}://{host}/"))
                .is_ok_and(|u| u.host_str() == Some(expected) && u.port_or_known_default() == port)
        };
        let public = reqwest::Url::parse(&self.redirect_url).ok();
        if let Some(public) = &public
            && let Some(expected) = public.host_str()
            && names(public.scheme(), expected, public.port_or_known_default())
        {
            return true;
        }
        ["127.0.0.1", "localhost"]
            .into_iter()
            .any(|expected| names("http", expected, Some(self.port)))
    }
}

/// What a successful redirect wrote (no secret in it).
#[derive(Debug, Clone)]
pub struct Written {
    pub app_id: u64,
    pub name: String,
    pub html_url: String,
    pub config_path: PathBuf,
    pub key_path: PathBuf,
    /// GitHub returned no webhook secret, so one was generated: the person must
    /// set it on the App's webhook.
    pub generated_secret: bool,
    /// What of a previous App's identity the config held and no longer does
    /// (see [`Identity::removed`]).
    pub removed: Vec<String>,
}

impl Written {
    /// Where the App's owner installs it on repositories.
    pub fn install_url(&self) -> String {
        format!("{}/installations/new", self.html_url.trim_end_matches('/'))
    }
}

/// One run of the flow: the expected `state`, the browser's nonce, the one-time
/// token, and what the redirect wrote.
pub struct Flow {
    options: FlowOptions,
    state: String,
    /// The value of the [`COOKIE_NAME`] cookie that the redirect must carry with
    /// `state`: handed out once, to the browser that opens [`Flow::start_url`].
    nonce: String,
    /// In the printed one-time URL; `GET /?token=` takes it once.
    token: String,
    token_used: AtomicBool,
    http: reqwest::Client,
    /// Held during an exchange, so two redirects never write at once.
    result: tokio::sync::Mutex<Option<Written>>,
    finished: tokio::sync::watch::Sender<Option<Written>>,
}

impl Flow {
    /// Checks the URLs and the config file ([`check_config`]): an error here
    /// comes before anything is served.
    pub fn new(options: FlowOptions) -> anyhow::Result<Arc<Flow>> {
        for (what, url) in [
            ("--github-url", &options.github_url),
            ("--api-url", &options.api_url),
            ("the webhook URL", &options.webhook_url),
            ("the redirect URL", &options.redirect_url),
        ] {
            let parsed =
                reqwest::Url::parse(url).with_context(|| format!("{what} {url:?} is not a URL"))?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "http" | "https"),
                "{what} {url:?} is not an http(s) URL"
            );
        }
        anyhow::ensure!(
            reqwest::Url::parse(&options.redirect_url)?
                .host_str()
                .is_some(),
            "the redirect URL {:?} names no host",
            options.redirect_url
        );
        check_config(&options.config_path)?;
        crate::llm::http::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent("missions-app-manifest")
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Arc::new(Flow {
            options,
            state: random_hex(32),
            nonce: random_hex(32),
            token: random_hex(32),
            token_used: AtomicBool::new(false),
            http,
            result: tokio::sync::Mutex::new(None),
            finished: tokio::sync::watch::Sender::new(None),
        }))
    }

    pub fn options(&self) -> &FlowOptions {
        &self.options
    }

    /// Changes to `Some` once a redirect has written the App's identity.
    pub fn finished(&self) -> tokio::sync::watch::Receiver<Option<Written>> {
        self.finished.subscribe()
    }

    /// The one-time URL the person opens to start: on the public URL's host, so
    /// that the cookie it sets comes back with GitHub's redirect.
    pub fn start_url(&self) -> String {
        format!("{}/?token={}", self.options.public_base(), self.token)
    }

    /// `GET /` (the page, with the one-time token or the cookie) and
    /// `GET /redirect` (GitHub's redirect), behind the `Host` check.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(start_page))
            .route(REDIRECT_PATH, get(redirect))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                host_guard,
            ))
            .with_state(self.clone())
    }

    fn state_matches(&self, given: &str) -> bool {
        same(&self.state, given)
    }

    /// Whether the request carries this flow's cookie.
    fn has_cookie(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == COOKIE_NAME && same(&self.nonce, value))
    }

    /// The `Set-Cookie` value that binds the browser to this flow.
    fn set_cookie(&self) -> String {
        let secure = if self.options.redirect_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
            self.nonce
        )
    }

    /// Exchanges the code and writes the config; nothing is written on error.
    async fn complete(&self, code: &str) -> Result<Written, FlowError> {
        let app = self.exchange(code).await?;
        let (secret, generated_secret) = match app.webhook_secret.filter(|s| !s.is_empty()) {
            Some(secret) => (secret, false),
            None => (random_hex(32), true),
        };
        let identity = write_identity(
            &self.options.config_path,
            app.id,
            &app.pem,
            &secret,
            &self.options.api_url,
        )
        .map_err(|e| FlowError::Write(format!("{e:#}")))?;
        Ok(Written {
            app_id: app.id,
            name: app.name,
            html_url: app.html_url,
            config_path: self.options.config_path.clone(),
            key_path: identity.key_path,
            generated_secret,
            removed: identity.removed,
        })
    }

    async fn exchange(&self, code: &str) -> Result<Conversion, FlowError> {
        let url = format!(
            "{}/app-manifests/{code}/conversions",
            self.options.api_url.trim_end_matches('/')
        );
        let answer = self
            .http
            .post(&url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .body(Vec::new())
            .send()
            .await
            .map_err(|e| FlowError::GitHub {
                status: None,
                message: format!("cannot reach {}: {e}", self.options.api_url),
            })?;
        let status = answer.status().as_u16();
        let body = answer.bytes().await.unwrap_or_default();
        if status != 201 {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "no message".to_owned());
            return Err(FlowError::GitHub {
                status: Some(status),
                message,
            });
        }
        let app: Conversion = serde_json::from_slice(&body).map_err(|e| FlowError::GitHub {
            status: Some(status),
            // serde_json's message names the field, never the value.
            message: format!("the answer is not a GitHub App with its credentials ({e})"),
        })?;
        jsonwebtoken::EncodingKey::from_rsa_pem(app.pem.as_bytes()).map_err(|_| {
            FlowError::GitHub {
                status: Some(status),
                message: "the answer's private key is not an RSA key in PEM".into(),
            }
        })?;
        Ok(app)
    }
}

/// The fields of GitHub's answer to `POST /app-manifests/{code}/conversions` that
/// are used (its `client_id` and `client_secret` are not: the App does no OAuth).
#[derive(Deserialize)]
struct Conversion {
    id: u64,
    name: String,
    html_url: String,
    /// GitHub documents it as nullable.
    webhook_secret: Option<String>,
    pem: String,
}

#[derive(Debug)]
enum FlowError {
    /// A redirect without a usable code.
    BadRequest(String),
    /// No cookie from this flow's first page: not the browser that started it.
    NotThisBrowser,
    /// A `state` other than the one this page sent: not our flow (CSRF).
    WrongState,
    /// The App was already registered and written by this run.
    AlreadyDone,
    GitHub {
        status: Option<u16>,
        message: String,
    },
    Write(String),
}

impl FlowError {
    fn status(&self) -> StatusCode {
        match self {
            FlowError::BadRequest(_) => StatusCode::BAD_REQUEST,
            FlowError::NotThisBrowser | FlowError::WrongState => StatusCode::FORBIDDEN,
            FlowError::AlreadyDone => StatusCode::CONFLICT,
            FlowError::GitHub { .. } => StatusCode::BAD_GATEWAY,
            FlowError::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn explain(&self, options: &FlowOptions) -> String {
        match self {
            FlowError::BadRequest(message) => {
                format!("{message}. Start again from this server's first page.")
            }
            FlowError::NotThisBrowser => "This browser did not start this registration: \
                the redirect lacks the cookie that the URL printed by <code>missions \
                app-manifest</code> sets. Nothing was written, and GitHub's code was not used: \
                open this same address in the browser where you opened the printed URL (within \
                the hour), or delete the App in GitHub's settings and run the command again."
                .to_owned(),
            FlowError::WrongState => "The redirect's <code>state</code> is not the one this page \
                sent to GitHub, so it did not come from this registration (or the server was \
                restarted in between). Nothing was written. Start again from this server's \
                first page."
                .to_owned(),
            FlowError::AlreadyDone => {
                "This run already registered an App and wrote its identity; nothing more was \
                 written."
                    .to_owned()
            }
            FlowError::GitHub { status, message } => format!(
                "GitHub did not hand over the new App's credentials ({}: {}). Nothing was \
                 written. The code in the redirect works once and for one hour: if the App was \
                 created, delete it in GitHub's settings and start again from this server's \
                 first page.",
                status.map_or("no answer".to_owned(), |s| format!("HTTP {s}")),
                escape(message)
            ),
            FlowError::Write(message) => format!(
                "The App was created on GitHub, but its identity could not be written to {} \
                 ({}). Nothing was written. Fix the cause, delete the App in GitHub's settings \
                 and start again.",
                escape(&options.config_path.display().to_string()),
                escape(message)
            ),
        }
    }
}

#[derive(Deserialize)]
struct RedirectQuery {
    code: Option<String>,
    state: Option<String>,
}

#[derive(Deserialize)]
struct StartQuery {
    token: Option<String>,
}

/// Refuses (421) a request whose `Host` names neither the public host nor
/// 127.0.0.1/localhost on this port: a DNS rebinding page, or a proxy that
/// forwards other names here. Every answer is marked not to be stored or framed.
async fn host_guard(State(flow): State<Arc<Flow>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    let mut response = if host
        .as_deref()
        .is_some_and(|h| flow.options.host_allowed(h))
    {
        next.run(request).await
    } else {
        tracing::warn!(host = ?host, "app manifest request for another host refused");
        let page = html_page(
            "Not this server",
            "<h1>Not this server</h1><p>This request names another host than the one \
             <code>missions app-manifest</code> serves. Nothing was done.</p>",
        );
        (StatusCode::MISDIRECTED_REQUEST, Html(page)).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /`: the page for the browser with the cookie; `GET /?token=` with the
/// unused one-time token sets the cookie and sends the browser on to `./`
/// (the token leaves the address bar); anything else is refused.
async fn start_page(
    State(flow): State<Arc<Flow>>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    if flow.has_cookie(&headers) {
        return Html(registration_page(&flow)).into_response();
    }
    let refuse = |why: &str| {
        let page = html_page(
            "Open the URL the command printed",
            &format!("<h1>Open the URL the command printed</h1><p>{why}</p>"),
        );
        (StatusCode::FORBIDDEN, Html(page)).into_response()
    };
    match query.token {
        Some(token) if same(&flow.token, &token) => {
            if flow.token_used.swap(true, Ordering::SeqCst) {
                return refuse(
                    "This one-time URL was already opened, in another browser. Run \
                     <code>missions app-manifest</code> again for a new one.",
                );
            }
            let mut response = (StatusCode::SEE_OTHER, "").into_response();
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, HeaderValue::from_static("./"));
            if let Ok(cookie) = HeaderValue::from_str(&flow.set_cookie()) {
                headers.insert(header::SET_COOKIE, cookie);
            }
            response
        }
        _ => refuse(
            "This page is only for the browser that opened the one-time URL \
             (<code>…/?token=…</code>) that <code>missions app-manifest</code> printed.",
        ),
    }
}

fn registration_page(flow: &Flow) -> String {
    let o = &flow.options;
    let manifest = serde_json::to_string(&o.manifest()).unwrap_or_default();
    let owner = match &o.org {
        Some(org) => format!("the organization <b>{}</b>", escape(org)),
        None => "your personal account".to_owned(),
    };
    let permissions: String = PERMISSIONS
        .iter()
        .map(|(p, level, why)| {
            format!(
                "<tr><td><code>{p}</code></td><td>{level}</td><td>{}</td></tr>",
                escape(why)
            )
        })
        .collect();
    let events: String = EVENTS
        .iter()
        .map(|(e, why)| format!("<tr><td><code>{e}</code></td><td>{}</td></tr>", escape(why)))
        .collect();
    let body = format!(
        "<h1>Register the missions GitHub App</h1>\
         <p>This creates a GitHub App named <b>{name}</b> on {owner}, with the permissions and \
         events below and nothing more. GitHub then sends you back here, and this server writes \
         the App's id, private key and webhook secret into <code>{config}</code>.</p>\
         <p>Webhooks will go to <code>{webhook}</code>; GitHub sends you back to \
         <code>{redirect}</code>.</p>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\
         <button type=\"submit\">Create the App on GitHub</button></form>\
         <h2>Repository permissions</h2><table><tr><th>permission</th><th>access</th><th>why</th></tr>{permissions}</table>\
         <h2>Webhook events</h2><table><tr><th>event</th><th>why</th></tr>{events}</table>",
        name = escape(&o.name),
        config = escape(&o.config_path.display().to_string()),
        webhook = escape(&o.webhook_url),
        redirect = escape(&o.redirect_url),
        action = escape(&o.new_app_url(&flow.state)),
        manifest = escape(&manifest),
    );
    html_page("Register the missions GitHub App", &body)
}

async fn redirect(
    State(flow): State<Arc<Flow>>,
    Query(query): Query<RedirectQuery>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        if !flow.has_cookie(&headers) {
            return Err(FlowError::NotThisBrowser);
        }
        if !flow.state_matches(query.state.as_deref().unwrap_or("")) {
            return Err(FlowError::WrongState);
        }
        let code = query.code.unwrap_or_default();
        // The code goes into a URL path: only what GitHub's codes are made of.
        if code.is_empty()
            || code.len() > 200
            || !code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(FlowError::BadRequest(
                "The redirect carries no valid code from GitHub".into(),
            ));
        }
        let mut done = flow.result.lock().await;
        if done.is_some() {
            return Err(FlowError::AlreadyDone);
        }
        let written = flow.complete(&code).await?;
        *done = Some(written.clone());
        Ok(written)
    }
    .await;
    match result {
        Ok(written) => {
            let page = success_page(&written);
            flow.finished.send_replace(Some(written));
            (StatusCode::OK, Html(page)).into_response()
        }
        Err(e) => {
            tracing::warn!(
                status = e.status().as_u16(),
                "app manifest redirect refused"
            );
            let page = html_page(
                "The App was not set up",
                &format!(
                    "<h1>The App was not set up</h1><p>{}</p>",
                    e.explain(&flow.options)
                ),
            );
            (e.status(), Html(page)).into_response()
        }
    }
}

fn success_page(w: &Written) -> String {
    let secret_note = if w.generated_secret {
        "<p><b>GitHub returned no webhook secret</b>, so one was generated and written to the \
         config file: set the same value as the webhook secret in the App's settings on GitHub, \
         or webhooks will be refused.</p>"
    } else {
        ""
    };
    let removed_note = if w.removed.is_empty() {
        String::new()
    } else {
        let items: String = w
            .removed
            .iter()
            .map(|r| format!("<li>{}</li>", escape(r)))
            .collect();
        format!("<p>The previous App's identity was replaced entirely:</p><ul>{items}</ul>")
    };
    let body = format!(
        "<h1>The App {name} is registered</h1>\
         <p>App id <b>{id}</b>: <a href=\"{html}\">{html}</a></p>\
         <p>Written: the App id, the path of its private key and the webhook secret into \
         <code>{config}</code>, the private key into <code>{key}</code> (both readable by \
         you only).</p>{secret_note}{removed_note}\
         <h2>Next steps</h2><ol>\
         <li><a href=\"{install}\">Install the App</a> on the repositories that run missions.</li>\
         <li>Run the server with this config: <code>missions serve --config {config}</code>, \
         reachable at the App's webhook URL.</li>\
         <li>In each repository, run <code>missions init</code>, commit the workflow to the \
         default branch, and add the model provider's key as a secret \
         (<code>ANTHROPIC_API_KEY</code> or <code>OPENAI_API_KEY</code>).</li>\
         <li>Label an issue <code>mission</code>.</li></ol>\
         <p>See docs/install.md. You can close this page; the command has finished.</p>",
        name = escape(&w.name),
        id = w.app_id,
        html = escape(&w.html_url),
        install = escape(&w.install_url()),
        config = escape(&w.config_path.display().to_string()),
        key = escape(&w.key_path.display().to_string()),
    );
    html_page("The App is registered", &body)
}

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;\
         padding:0 1rem;line-height:1.45}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;text-align:left}}\
         button{{font-size:1.1rem;padding:.5rem 1rem}}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// Text for HTML content and attribute values (the page module's escaper).
fn escape(text: &str) -> String {
    crate::server::page::esc(text)
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Constant-time (in the expected value's length) comparison of a secret.
fn same(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The config file as a TOML table, `None` if it does not exist.
fn read_config(config_path: &Path) -> anyhow::Result<Option<toml::Table>> {
    let text = match std::fs::read_to_string(config_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", config_path.display())),
    };
    text.parse::<toml::Table>().map(Some).map_err(|e| {
        // The message only: toml's full error quotes the line, which may hold a secret.
        let line = e
            .span()
            .map(|s| format!("line {}: ", text[..s.start].lines().count().max(1)))
            .unwrap_or_default();
        anyhow::anyhow!(
            "{} is not valid TOML ({line}{})",
            config_path.display(),
            e.message()
        )
    })
}

/// The directory the config file (and the key beside it) goes into.
fn config_dir(config_path: &Path) -> PathBuf {
    match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What must hold before GitHub creates the App: the config file, if present,
/// is readable TOML, and its directory exists (made with mode 0700 if missing)
/// and takes new files (a file is created there and removed).
pub fn check_config(config_path: &Path) -> anyhow::Result<()> {
    read_config(config_path)?;
    let dir = config_dir(config_path);
    create_private_dir(&dir)?;
    let probe = dir.join(format!(".missions-write-check.{}.tmp", random_hex(6)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&probe)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    std::fs::remove_file(&probe).with_context(|| format!("cannot remove {}", probe.display()))
}

/// What [`write_identity`] wrote.
#[derive(Debug, Clone)]
pub struct Identity {
    pub key_path: PathBuf,
    /// What of a previous App's identity the config held and no longer does,
    /// said for the person (names and non-secret values only).
    pub removed: Vec<String>,
}

/// Writes the App's identity: the private key into `app-<id>.private-key.pem`
/// beside the config file, and `app_id`, `private_key_path` (absolute) and
/// `webhook_secret` into the config file, keeping its other keys (its comments
/// are not kept). The new App replaces a previous one entirely: an inline
/// `private_key` (it would win over the key file) and `previous_webhook_secrets`
/// (the previous App's, which must not sign deliveries for this one) are
/// removed, and `github_api_url` becomes the API the App was registered through
/// (removed for api.github.com). Both files are written atomically with mode
/// 0600; the directory is made (0700) if missing. On error nothing is left
/// behind but that directory.
pub fn write_identity(
    config_path: &Path,
    app_id: u64,
    pem: &str,
    webhook_secret: &str,
    github_api_url: &str,
) -> anyhow::Result<Identity> {
    let mut table = read_config(config_path)?.unwrap_or_default();
    let dir = config_dir(config_path);
    create_private_dir(&dir)?;
    let dir =
        std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let key_path = dir.join(format!("app-{app_id}.private-key.pem"));
    let key_text = key_path
        .to_str()
        .context("the config directory's path is not UTF-8")?
        .to_owned();

    let mut removed = Vec::new();
    if table.remove("private_key").is_some() {
        removed.push("private_key (an inline key of the previous App)".to_owned());
    }
    if let Some(old) = table.remove("previous_webhook_secrets") {
        let n = old.as_array().map_or(1, Vec::len);
        removed.push(format!(
            "previous_webhook_secrets ({n} older webhook secret(s); the new App's secret \
             replaces them all)"
        ));
    }
    if let Some(old) = table.get("private_key_path").and_then(|v| v.as_str())
        && Path::new(old) != key_path
    {
        removed.push(format!(
            "private_key_path {old:?} (that key file is left in place: delete it with the \
             previous App)"
        ));
    }
    let api_url = github_api_url.trim_end_matches('/');
    let api_value = (api_url != crate::config::DEFAULT_GITHUB_API_URL)
        .then(|| toml::Value::String(api_url.to_owned()));
    match (table.remove("github_api_url"), &api_value) {
        (Some(old), _) if old.as_str().map(|o| o.trim_end_matches('/')) != Some(api_url) => {
            removed.push(format!(
                "github_api_url {} (this App was registered through {api_url})",
                old.as_str()
                    .map_or_else(|| old.to_string(), |o| format!("{o:?}"))
            ));
        }
        _ => {}
    }
    if let Some(value) = api_value {
        table.insert("github_api_url".into(), value);
    }

    let app_id = i64::try_from(app_id).context("the App id does not fit in TOML")?;
    table.insert("app_id".into(), toml::Value::Integer(app_id));
    table.insert("private_key_path".into(), toml::Value::String(key_text));
    table.insert(
        "webhook_secret".into(),
        toml::Value::String(webhook_secret.to_owned()),
    );
    let text = toml::to_string(&table).context("cannot serialise the config")?;

    write_private_file(&key_path, pem.as_bytes())?;
    if let Err(e) = write_private_file(config_path, text.as_bytes()) {
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    Ok(Identity { key_path, removed })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes `bytes` to a new file (mode 0600) beside `path`, then renames it over `path`.
fn write_private_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let temp = dir.unwrap_or(Path::new(".")).join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        random_hex(6)
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// `missions app-manifest`.
#[derive(Debug, clap::Args)]
pub struct AppManifestArgs {
    /// The port this server listens on (on 127.0.0.1).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// The public base URL of the server, behind a reverse proxy or tunnel: the
    /// webhook URL is PUBLIC_URL/webhook (where `missions serve` listens) and GitHub
    /// sends the browser back to PUBLIC_URL/redirect. Default: http://127.0.0.1:PORT.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// The webhook URL, when it is not PUBLIC_URL/webhook (e.g. a smee.io channel).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// The App's name (GitHub lets you change it before creating the App).
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// Register the App on this organization instead of your personal account.
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
    /// GitHub's web URL (https://HOST for GitHub Enterprise Server).
    #[arg(long, value_name = "URL", default_value = DEFAULT_GITHUB_URL)]
    pub github_url: String,
    /// GitHub's REST API (default: https://api.github.com for github.com,
    /// GITHUB_URL/api/v3 otherwise).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
}

impl AppManifestArgs {
    /// The flow these arguments describe; `config` is the global `--config`.
    pub fn options(&self, config: Option<PathBuf>) -> FlowOptions {
        let public = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", self.port));
        let public = public.trim_end_matches('/');
        let github_url = self.github_url.trim_end_matches('/').to_owned();
        let api_url = self.api_url.clone().unwrap_or_else(|| {
            if github_url == DEFAULT_GITHUB_URL {
                crate::config::DEFAULT_GITHUB_API_URL.to_owned()
            } else {
                format!("{github_url}/api/v3")
            }
        });
        FlowOptions {
            name: self.name.clone(),
            webhook_url: self
                .webhook_url
                .clone()
                .unwrap_or_else(|| format!("{public}{WEBHOOK_PATH}")),
            redirect_url: format!("{public}{REDIRECT_PATH}"),
            github_url,
            api_url,
            org: self.org.clone(),
            config_path: config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH)),
            port: self.port,
        }
    }
}

/// Checks the config, then serves the flow until one redirect has written the
/// App's identity (then prints what was written) or until Ctrl-C.
pub async fn run(args: AppManifestArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    let options = args.options(config);
    let flow = Flow::new(options.clone())?;
    let stop = crate::server::shutdown_signal()?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (choose another --port)"))?;
    let local = listener.local_addr()?;
    if is_loopback(&options.webhook_url) {
        eprintln!(
            "note: the webhook URL {} is on this machine, so GitHub cannot deliver to it; \
             pass --public-url (or --webhook-url) or change it later in the App's settings",
            options.webhook_url
        );
    }
    println!(
        "Open this one-time URL in your browser to register the App on GitHub \
         (it works once, and only that browser can finish; GitHub sends it back to {}):\n\n    {}\n",
        options.redirect_url,
        flow.start_url()
    );
    if options.public_base() != format!("http://{local}") {
        println!(
            "Listening on http://{local}/ behind {}: open the URL through it, since GitHub \
             sends the browser back there.",
            options.public_base()
        );
    }
    println!("Ctrl-C stops.");
    let mut finished = flow.finished();
    let done = async move {
        let _ = finished.wait_for(Option::is_some).await;
    };
    let router = flow.router();
    let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
        tokio::select! {
            _ = done => {}
            _ = stop => {}
        }
    });
    serve.await.context("the server failed")?;
    let Some(written) = flow.finished().borrow().clone() else {
        anyhow::bail!("stopped before GitHub sent the browser back; nothing was written");
    };
    println!(
        "Registered the GitHub App {} (id {}): {}",
        written.name, written.app_id, written.html_url
    );
    println!(
        "Wrote app_id, private_key_path and webhook_secret into {} and the private key into {} (mode 0600).",
        written.config_path.display(),
        written.key_path.display()
    );
    if !written.removed.is_empty() {
        println!("Replaced the previous App's identity; removed from the config:");
        for r in &written.removed {
            println!("  - {r}");
        }
    }
    if written.generated_secret {
        println!(
            "GitHub returned no webhook secret: the one written to the config was generated; set it on the App's webhook."
        );
    }
    let overridden: Vec<&str> = [
        crate::config::env::APP_ID,
        crate::config::env::PRIVATE_KEY,
        crate::config::env::PRIVATE_KEY_PATH,
        crate::config::env::WEBHOOK_SECRET,
    ]
    .into_iter()
    .filter(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    .collect();
    if !overridden.is_empty() {
        println!(
            "Warning: {} set in this environment override the config file; unset them for `missions serve`.",
            overridden.join(", ")
        );
    }
    println!("Next: install it at {}", written.install_url());
    println!(
        "      missions serve --config {}   (see docs/install.md)",
        written.config_path.display()
    );
    Ok(())
}

fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_the_table() {
        let m = manifest(
            "https://m.example/webhook",
            "https://m.example/redirect",
            "x",
        );
        assert_eq!(m["url"], "https://m.example");
        assert_eq!(m["hook_attributes"]["url"], "https://m.example/webhook");
        assert_eq!(m["hook_attributes"]["active"], true);
        assert_eq!(m["redirect_url"], "https://m.example/redirect");
        assert_eq!(m["public"], false);
        let perms = m["default_permissions"].as_object().unwrap();
        assert_eq!(perms.len(), PERMISSIONS.len());
        for (p, level, why) in PERMISSIONS {
            assert_eq!(perms[*p], *level);
            assert!(matches!(*level, "read" | "write"), "{p}");
            assert!(!why.is_empty());
        }
        assert!(!perms.contains_key("workflows"));
        let events: Vec<&str> = m["default_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(events, EVENTS.iter().map(|(e, _)| *e).collect::<Vec<_>>());
    }

    #[test]
    fn the_form_targets_the_account_or_the_organization() {
        let args = AppManifestArgs {
            port: 4000,
            public_url: None,
            webhook_url: None,
            name: DEFAULT_NAME.into(),
            org: None,
            github_url: DEFAULT_GITHUB_URL.into(),
            api_url: None,
        };
        let o = args.options(None);
        assert_eq!(o.webhook_url, "http://127.0.0.1:4000/webhook");
        assert_eq!(o.redirect_url, "http://127.0.0.1:4000/redirect");
        assert_eq!(o.api_url, "https://api.github.com");
        assert_eq!(o.config_path, PathBuf::from(DEFAULT_CONFIG_PATH));
        assert_eq!(
            o.new_app_url("s1"),
            "https://github.com/settings/apps/new?state=s1"
        );
        let ghes = AppManifestArgs {
            public_url: Some("https://m.example/".into()),
            org: Some("octo-org".into()),
            github_url: "https://ghe.example/".into(),
            ..args
        }
        .options(Some("x.toml".into()));
        assert_eq!(ghes.webhook_url, "https://m.example/webhook");
        assert_eq!(ghes.api_url, "https://ghe.example/api/v3");
        assert_eq!(
            ghes.new_app_url("s2"),
            "https://ghe.example/organizations/octo-org/settings/apps/new?state=s2"
        );
    }

    #[test]
    fn only_the_public_host_and_the_local_port_are_served() {
        let args = AppManifestArgs {
            port: 4000,
            public_url: Some("https://M.example/".into()),
            webhook_url: None,
            name: DEFAULT_NAME.into(),
            org: None,
            github_url: DEFAULT_GITHUB_URL.into(),
            api_url: None,
        };
        let o = args.options(None);
        assert_eq!(o.port, 4000);
        assert_eq!(o.public_base(), "https://M.example");
        for host in [
            "m.example",
            "M.EXAMPLE",
            "m.example:443",
            "127.0.0.1:4000",
            "localhost:4000",
        ] {
            assert!(o.host_allowed(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "m.example:80",
            "m.example.evil.example",
            "127.0.0.1",
            "127.0.0.1:4001",
            "localhost",
            "[::1]:4000",
            "evil@127.0.0.1:4000",
            "127.0.0.1:4000/x",
            "m.example ",
        ] {
            assert!(!o.host_allowed(host), "{host:?}");
        }
        let local = AppManifestArgs {
            public_url: None,
            ..args
        }
        .options(None);
        assert!(local.host_allowed("127.0.0.1:4000"));
        assert!(!local.host_allowed("m.example"));
        assert_eq!(local.public_base(), "http://127.0.0.1:4000");
    }

    #[test]
    fn a_new_identity_replaces_the_previous_one_entirely() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("missions.toml");
        std::fs::write(
            &config,
            "listen = \"127.0.0.1:1\"\nwebhook_secret = \"old\"\n\
             previous_webhook_secrets = [\"older\", \"oldest\"]\n\
             github_api_url = \"https://ghe.example/api/v3\"\napp_id = 7\n\
             private_key = \"inline\"\nprivate_key_path = \"/old/app-7.private-key.pem\"\n",
        )
        .unwrap();
        let identity = write_identity(
            &config,
            8,
            "PEM",
            "new",
            crate::config::DEFAULT_GITHUB_API_URL,
        )
        .unwrap();
        let table: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
        assert_eq!(table["listen"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(table["webhook_secret"].as_str(), Some("new"));
        assert_eq!(table["app_id"].as_integer(), Some(8));
        for gone in ["previous_webhook_secrets", "github_api_url", "private_key"] {
            assert!(!table.contains_key(gone), "{gone}");
        }
        let removed = identity.removed.join("\n");
        for said in [
            "previous_webhook_secrets (2",
            "github_api_url \"https://ghe.example/api/v3\"",
            "private_key (",
            "/old/app-7.private-key.pem",
        ] {
            assert!(removed.contains(said), "{removed}");
        }
        for secret in ["\"older\"", "oldest", "\"inline\""] {
            assert!(!removed.contains(secret), "{removed}");
        }

        // The same API again: kept, and nothing to say.
        let again =
            write_identity(&config, 8, "PEM", "new", "https://ghe.example/api/v3/").unwrap();
        let table: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
        assert_eq!(
            table["github_api_url"].as_str(),
            Some("https://ghe.example/api/v3")
        );
        assert!(again.removed.is_empty(), "{:?}", again.removed);
        let third = write_identity(&config, 8, "PEM", "new", "https://ghe.example/api/v3").unwrap();
        assert!(third.removed.is_empty(), "{:?}", third.removed);
    }

    #[test]
    fn escaping_covers_attribute_values() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn loopback_webhook_urls_are_noticed() {
        assert!(is_loopback("http://127.0.0.1:3000/webhook"));
        assert!(is_loopback("http://localhost:3000/webhook"));
        assert!(!is_loopback("https://smee.io/abc"));
    }
}
