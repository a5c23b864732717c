//! The model proxy that holds the keys: a loopback HTTP server a third-party
//! agent (Claude Code, Codex, …) uses as its model API.
//!
//! The agent is given the proxy's URL as its base URL and a per-job random
//! token as its "key". The proxy checks that token, puts the real key on the
//! forwarded request, reads the usage of every answer (streamed or not) into
//! the job's spend, and refuses calls once the job's budget is spent, in the
//! API's own error shape so that the agent shows the reason. The real key
//! never enters the agent's process, environment or files: an agent that
//! reads `/proc/self/environ` finds the token, which is worth nothing outside
//! this job's loopback.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::llm::Usage;
use crate::llm::pricing::{Micros, Prices};

/// How the forwarded request carries the real key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader {
    /// Anthropic: `x-api-key`.
    XApiKey,
    /// OpenAI and compatible servers: `authorization: Bearer`.
    Bearer,
    /// Gemini: `x-goog-api-key`.
    GoogApiKey,
}

/// Where the proxy forwards and what it may spend.
pub struct ProxyConfig {
    /// The upstream API root as configured, e.g. `https://api.anthropic.com`
    /// or `https://api.openai.com/v1`. Its path is the agent's base path too.
    pub upstream: String,
    pub key_header: KeyHeader,
    /// `None` for servers that need no key (a local model).
    pub real_key: Option<SecretString>,
    pub prices: Prices,
    /// The job's spending limit; calls are refused once spending reaches it.
    pub max_cost: Option<Micros>,
    /// Input (however billed) plus output tokens the job may use.
    pub max_total_tokens: u64,
}

/// What went through the proxy so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxySpend {
    pub usage: Usage,
    pub cost_micros: Micros,
    /// Answers forwarded back to the agent.
    pub calls: u32,
    /// Calls refused because the budget was spent.
    pub refused: u32,
    /// Calls refused because they did not carry the job's token.
    pub unauthorized: u32,
    /// Why calls were refused, once one was.
    pub refusal: Option<String>,
    /// The first refusal was for money (not for tokens).
    pub refused_for_budget: bool,
}

struct Shared {
    config: ProxyConfig,
    token: String,
    client: reqwest::Client,
    spend: Mutex<ProxySpend>,
}

/// A running proxy; it stops when dropped.
pub struct ModelProxy {
    server: super::loopback::Loopback,
    shared: Arc<Shared>,
}

/// Which API a request is for, by its path: each reports usage its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Messages,
    Responses,
    Chat,
    Gemini,
    Other,
}

fn api_of(path: &str) -> Api {
    if path.ends_with("/messages") {
        Api::Messages
    } else if path.ends_with("/responses") {
        Api::Responses
    } else if path.ends_with("/chat/completions") {
        Api::Chat
    } else if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
        Api::Gemini
    } else {
        Api::Other
    }
}

/// Whether a request may pass with the real key: model calls (metered),
/// Anthropic's free token count, and the model list. Nothing else: the key
/// could also reach a provider's files, batches or fine-tuning, which read
/// the organisation's data or spend outside the job's meter.
fn allowed(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    match *method {
        Method::POST => api_of(path) != Api::Other || path.ends_with("/messages/count_tokens"),
        Method::GET => path.ends_with("/models") || path.contains("/models/"),
        _ => false,
    }
}

impl ModelProxy {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(config: ProxyConfig) -> std::io::Result<ModelProxy> {
        crate::llm::http::install_crypto_provider();
        let token = format!(
            "missions-proxy-{}",
            uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string()
        );
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            // A streamed answer may take long; the agent's own timeout and the
            // job's wall time bound it.
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            config,
            token,
            client,
            spend: Mutex::new(ProxySpend::default()),
        });
        let app = Router::new().fallback(forward).with_state(shared.clone());
        Ok(ModelProxy {
            server: super::loopback::serve(app).await?,
            shared,
        })
    }

    /// The base URL to give the agent: the proxy's origin with the upstream's
    /// path (`http://127.0.0.1:PORT/v1` for `https://api.openai.com/v1`).
    pub fn base_url(&self) -> String {
        format!(
            "http://{}{}",
            self.server.addr,
            upstream_path(&self.shared.config.upstream)
        )
    }

    /// The per-job token the agent uses as its key.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    pub fn spend(&self) -> ProxySpend {
        self.shared.spend.lock().expect("proxy spend").clone()
    }
}

/// The path part of a URL, without a trailing `/` (empty for a bare origin).
fn upstream_path(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    match rest.find('/') {
        Some(i) => rest[i..].trim_end_matches('/'),
        None => "",
    }
}

/// The origin part of a URL (`https://host:port`).
fn upstream_origin(url: &str) -> &str {
    let (scheme_len, rest) = match url.split_once("://") {
        Some((s, r)) => (s.len() + 3, r),
        None => (0, url),
    };
    match rest.find('/') {
        Some(i) => &url[..scheme_len + i],
        None => url.trim_end_matches('/'),
    }
}

/// The token the request carries, whichever header the agent's SDK uses.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-api-key")
        .or_else(|| header("x-goog-api-key"))
        .or_else(|| header("authorization").and_then(|v| v.strip_prefix("Bearer ")))
        .map(str::trim)
}

/// Equal without an early exit on the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// An error in the API's own shape, so that the agent shows `message`.
fn api_error(api: Api, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = match api {
        Api::Messages => json!({"type": "error", "error": {"type": kind, "message": message}}),
        Api::Gemini => {
            json!({"error": {"code": status.as_u16(), "message": message, "status": kind}})
        }
        _ => json!({"error": {"message": message, "type": kind, "code": kind, "param": null}}),
    };
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Request headers passed on: the API's own, not the agent's credentials or
/// the connection's (no `accept-encoding`: the answer's usage is read as it
/// passes, so it must come uncompressed).
fn forwarded_request_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    !matches!(
        n,
        "host"
            | "content-length"
            | "connection"
            | "accept-encoding"
            | "transfer-encoding"
            | "x-api-key"
            | "x-goog-api-key"
            | "authorization"
            | "proxy-authorization"
            | "cookie"
    )
}

fn forwarded_response_header(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "content-length" | "connection" | "transfer-encoding" | "content-encoding" | "set-cookie"
    )
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let api = api_of(request.uri().path());
    let authorized = presented_token(request.headers()).is_some_and(|t| same(t, &shared.token));
    if !authorized {
        shared.spend.lock().expect("proxy spend").unauthorized += 1;
        return api_error(
            api,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missions model proxy: this request does not carry the job's token",
        );
    }
    if !allowed(request.method(), request.uri().path()) {
        return api_error(
            api,
            StatusCode::FORBIDDEN,
            "permission_error",
            "missions model proxy: only model calls pass through this proxy (messages, responses, chat completions, generateContent, the model list)",
        );
    }
    if let Some((reason, for_money)) = over_budget(&shared) {
        let mut spend = shared.spend.lock().expect("proxy spend");
        spend.refused += 1;
        if spend.refusal.is_none() {
            spend.refusal = Some(reason.clone());
            spend.refused_for_budget = for_money;
        }
        drop(spend);
        // 400, not 429: agents retry 429s, and no wait makes more budget.
        return api_error(
            api,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &reason,
        );
    }

    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return api_error(
                api,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("missions model proxy: cannot read the request: {e}"),
            );
        }
    };
    let url = format!(
        "{}{}",
        upstream_origin(&shared.config.upstream),
        path_and_query
    );
    let mut out = shared.client.request(parts.method.clone(), &url).body(body);
    for (name, value) in parts.headers.iter() {
        if forwarded_request_header(name) {
            out = out.header(name, value);
        }
    }
    if let Some(key) = &shared.config.real_key {
        let key = key.expose_secret();
        out = match shared.config.key_header {
            KeyHeader::XApiKey => out.header("x-api-key", key),
            KeyHeader::Bearer => out.header("authorization", format!("Bearer {key}")),
            KeyHeader::GoogApiKey => out.header("x-goog-api-key", key),
        };
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => {
            // reqwest's error names the URL; the upstream's origin holds no key.
            let message = format!(
                "missions model proxy: the model API at {} did not answer: {}",
                upstream_origin(&shared.config.upstream),
                e.without_url()
            );
            return api_error(api, StatusCode::BAD_GATEWAY, "api_error", &message);
        }
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if forwarded_response_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let streamed = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let meter = Meter {
        shared: shared.clone(),
        api,
        streamed,
        buffer: Vec::new(),
        usage: UsageSoFar::default(),
        counted: !status.is_success(),
    };
    let stream = futures::stream::unfold((answer, meter), |(mut answer, mut meter)| async move {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                meter.feed(&chunk);
                Some((Ok::<Bytes, std::io::Error>(chunk), (answer, meter)))
            }
            Ok(None) => {
                meter.finish();
                None
            }
            Err(e) => {
                meter.finish();
                Some((Err(std::io::Error::other(e.without_url())), (answer, meter)))
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
        .headers_mut()
        .entry("cache-control")
        .or_insert(HeaderValue::from_static("no-cache"));
    response
}

/// Why the next call is refused, if the job's budget is spent, and whether
/// for money (else for tokens).
fn over_budget(shared: &Shared) -> Option<(String, bool)> {
    let spend = shared.spend.lock().expect("proxy spend");
    let tokens = spend.usage.total_input() + spend.usage.output_tokens;
    if let Some(max) = shared.config.max_cost
        && spend.cost_micros >= max
    {
        return Some((
            format!(
                "missions model proxy: this job's model budget is spent ({} of {}); no more model calls are allowed in this job",
                crate::llm::pricing::dollars(spend.cost_micros),
                crate::llm::pricing::dollars(max),
            ),
            true,
        ));
    }
    if tokens >= shared.config.max_total_tokens {
        return Some((
            format!(
                "missions model proxy: this job's token limit is reached ({tokens} of {} tokens); no more model calls are allowed in this job",
                shared.config.max_total_tokens
            ),
            false,
        ));
    }
    None
}

/// Usage fields as an answer reports them; later reports of a field replace
/// earlier ones (Anthropic's `message_delta` repeats the running totals).
#[derive(Debug, Default, Clone, Copy)]
struct UsageSoFar {
    usage: Usage,
    seen: bool,
}

/// Reads usage out of an answer as it passes through, and adds it to the
/// job's spend once, when the answer ends (however it ends).
struct Meter {
    shared: Arc<Shared>,
    api: Api,
    streamed: bool,
    buffer: Vec<u8>,
    usage: UsageSoFar,
    /// Set once the answer is added (or when there is nothing to add).
    counted: bool,
}

impl Meter {
    fn feed(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
        if !self.streamed {
            return;
        }
        // Server-sent events: read every complete line, keep the rest.
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.trim_end().strip_prefix("data:")
                && let Ok(event) = serde_json::from_str::<Value>(data.trim())
            {
                read_event_usage(self.api, &event, &mut self.usage);
            }
        }
    }

    fn finish(&mut self) {
        if self.counted {
            return;
        }
        self.counted = true;
        if !self.streamed
            && let Ok(body) = serde_json::from_slice::<Value>(&self.buffer)
        {
            read_event_usage(self.api, &body, &mut self.usage);
        }
        let mut spend = self.shared.spend.lock().expect("proxy spend");
        spend.calls += 1;
        if self.usage.seen {
            spend.usage.add(&self.usage.usage);
            spend.cost_micros += self.shared.config.prices.cost(&self.usage.usage);
        }
    }
}

impl Drop for Meter {
    /// An answer the agent stopped reading still counts.
    fn drop(&mut self) {
        self.finish();
    }
}

fn count(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

/// Takes the usage an event (or a whole answer) reports, in the API's own
/// field names, into our terms: `input_tokens` are those billed at the full
/// price, cached reads apart.
fn read_event_usage(api: Api, event: &Value, so_far: &mut UsageSoFar) {
    match api {
        Api::Messages | Api::Other => {
            // `message_start` carries `message.usage`; `message_delta` and a
            // whole answer carry `usage`.
            let usage = event
                .get("message")
                .and_then(|m| m.get("usage"))
                .or_else(|| event.get("usage"));
            let Some(u) = usage else { return };
            let u_ = &mut so_far.usage;
            if let Some(n) = count(u.get("input_tokens")) {
                u_.input_tokens = n;
            }
            if let Some(n) = count(u.get("output_tokens")) {
                u_.output_tokens = n;
            }
            if let Some(n) = count(u.get("cache_read_input_tokens")) {
                u_.cache_read_tokens = n;
            }
            if let Some(n) = count(u.get("cache_creation_input_tokens")) {
                u_.cache_write_tokens = n;
            }
            so_far.seen = true;
        }
        Api::Responses => {
            // Streamed: `response.completed` (or `.incomplete`/`.failed`)
            // carries `response.usage`; whole: `usage`.
            let usage = event
                .get("response")
                .and_then(|r| r.get("usage"))
                .or_else(|| event.get("usage"));
            let Some(u) = usage.filter(|u| u.is_object()) else {
                return;
            };
            let input = count(u.get("input_tokens")).unwrap_or(0);
            let cached = count(u.pointer("/input_tokens_details/cached_tokens")).unwrap_or(0);
            so_far.usage = Usage {
                input_tokens: input.saturating_sub(cached),
                output_tokens: count(u.get("output_tokens")).unwrap_or(0),
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            };
            so_far.seen = true;
        }
        Api::Chat => {
            let Some(u) = event.get("usage").filter(|u| u.is_object()) else {
                return;
            };
            let input = count(u.get("prompt_tokens")).unwrap_or(0);
            let cached = count(u.pointer("/prompt_tokens_details/cached_tokens")).unwrap_or(0);
            so_far.usage = Usage {
                input_tokens: input.saturating_sub(cached),
                output_tokens: count(u.get("completion_tokens")).unwrap_or(0),
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            };
            so_far.seen = true;
        }
        Api::Gemini => {
            let Some(u) = event.get("usageMetadata") else {
                return;
            };
            let input = count(u.get("promptTokenCount")).unwrap_or(0);
            let cached = count(u.get("cachedContentTokenCount")).unwrap_or(0);
            so_far.usage = Usage {
                input_tokens: input.saturating_sub(cached),
                output_tokens: count(u.get("candidatesTokenCount")).unwrap_or(0)
                    + count(u.get("thoughtsTokenCount")).unwrap_or(0),
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            };
            so_far.seen = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_model_calls_pass_with_the_key() {
        use axum::http::Method;
        for path in [
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/responses",
            "/v1/chat/completions",
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        ] {
            assert!(allowed(&Method::POST, path), "{path}");
        }
        assert!(allowed(&Method::GET, "/v1/models"));
        for (method, path) in [
            (Method::GET, "/v1/files"),
            (Method::POST, "/v1/files"),
            (Method::POST, "/v1/messages/batches"),
            (Method::POST, "/v1/fine_tuning/jobs"),
            (Method::DELETE, "/v1/models/ft-x"),
            (Method::GET, "/v1/messages"),
        ] {
            assert!(!allowed(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn upstream_urls_split_into_origin_and_path() {
        assert_eq!(
            upstream_origin("https://api.openai.com/v1"),
            "https://api.openai.com"
        );
        assert_eq!(upstream_path("https://api.openai.com/v1/"), "/v1");
        assert_eq!(
            upstream_origin("https://api.anthropic.com"),
            "https://api.anthropic.com"
        );
        assert_eq!(upstream_path("https://api.anthropic.com"), "");
        assert_eq!(
            upstream_origin("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn anthropic_stream_usage_takes_the_last_report_of_each_field() {
        let mut u = UsageSoFar::default();
        let start = json!({"type": "message_start", "message": {"usage": {
            "input_tokens": 12, "output_tokens": 1,
            "cache_read_input_tokens": 100, "cache_creation_input_tokens": 7}}});
        let delta = json!({"type": "message_delta", "usage": {"output_tokens": 40}});
        read_event_usage(Api::Messages, &start, &mut u);
        read_event_usage(Api::Messages, &delta, &mut u);
        assert_eq!(
            u.usage,
            Usage {
                input_tokens: 12,
                output_tokens: 40,
                cache_read_tokens: 100,
                cache_write_tokens: 7
            }
        );
    }

    #[test]
    fn openai_usage_counts_cached_tokens_apart() {
        let mut u = UsageSoFar::default();
        let done = json!({"type": "response.completed", "response": {"usage": {
            "input_tokens": 1000, "input_tokens_details": {"cached_tokens": 800},
            "output_tokens": 50, "total_tokens": 1050}}});
        read_event_usage(Api::Responses, &done, &mut u);
        assert_eq!(
            (u.usage.input_tokens, u.usage.cache_read_tokens),
            (200, 800)
        );
        let mut c = UsageSoFar::default();
        let chunk = json!({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 10}}});
        read_event_usage(Api::Chat, &chunk, &mut c);
        assert_eq!(
            (
                c.usage.input_tokens,
                c.usage.cache_read_tokens,
                c.usage.output_tokens
            ),
            (20, 10, 4)
        );
    }

    #[test]
    fn the_token_is_read_from_any_sdk_header_and_compared_whole() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer tok"));
        assert_eq!(presented_token(&h), Some("tok"));
        h.insert("x-api-key", HeaderValue::from_static("other"));
        assert_eq!(presented_token(&h), Some("other"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
