//! The scripted model served over HTTP, in the wire shapes of the real APIs,
//! so that third-party agents (Claude Code, Codex, anything speaking Chat
//! Completions) run against a script in tests and the offline demo.
//!
//! [`ScriptServer::start`] binds `127.0.0.1:0` and answers:
//!
//! - `POST /v1/messages` (any query string, e.g. `?beta=true`): the Anthropic
//!   Messages API, streaming (`"stream": true`: `message_start`, `ping`,
//!   `content_block_start` / `content_block_delta` (`text_delta`,
//!   `input_json_delta`) / `content_block_stop` per block, `message_delta`
//!   with the stop reason and usage, `message_stop`) or not;
//! - `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, estimated;
//! - `POST /v1/responses`: the OpenAI Responses API, streaming
//!   (`response.created`, `response.in_progress`, then per output item
//!   `response.output_item.added`, its content events, and
//!   `response.output_item.done`, then `response.completed`) or not;
//! - `POST /v1/chat/completions`: the OpenAI Chat Completions API, streaming
//!   (`data:`-only chunks ending in `data: [DONE]`, with a usage chunk when
//!   `stream_options.include_usage` is set) or not.
//!
//! Every SSE event of the first two is `event: NAME\ndata: JSON\n\n`, the
//! JSON's `type` being the event's name; Chat Completions chunks carry no
//! `event:` line, as OpenAI's do not.
//!
//! # Which requests consume a turn
//!
//! A request that offers tools (a non-empty `tools` array) is the agent's
//! loop: it consumes the next turn of the script. A request offering none is
//! one of an agent's side requests (a title, a summary, a quota probe): it is
//! answered `ok` with a usage of one token in and one out, and consumes
//! nothing. When the script has no turn left, the answer is HTTP 400 in the
//! API's error shape, saying so: the agent shows it and stops.
//!
//! # Tool calls
//!
//! Ids are generated in order over the server's life: `toolu_scripted_1`, …
//! for the Messages API, `call_scripted_1`, … for the others. A turn's text
//! comes first (a text block, a `message` output item, or `content`), then
//! its calls. In a call's input, every string containing `{{cwd}}` has it
//! replaced by the agent's working directory as the request states it:
//! Claude Code's `Primary working directory: /abs/path` (or, in older
//! versions, `Working directory: /abs/path`), Codex's
//! `<cwd>/abs/path</cwd>`, in that order of preference, anywhere in the
//! request's strings (the system prompt first); when none is found,
//! `{{cwd}}` is left as it is. Claude Code's `Write` and `Edit`
//! require absolute paths, which a script cannot know in advance.
//!
//! # Usage
//!
//! The turn's `usage`, or else an estimate as [`super::scripted`] makes it:
//! the request body's bytes / 4 in, the answer's content JSON bytes / 4 out,
//! nothing cached. Each API gets it in its own terms: Anthropic's
//! `input_tokens` exclude cache reads (`cache_read_input_tokens`) and writes
//! (`cache_creation_input_tokens`), as [`Usage::input_tokens`] does; OpenAI's
//! `input_tokens` / `prompt_tokens` include every input token, cached ones
//! (`cached_tokens`, [`Usage::cache_read_tokens`]) and, since OpenAI bills no
//! cache writes, [`Usage::cache_write_tokens`] too.
//!
//! # Keys
//!
//! The key a request carries (`x-api-key`, else the bearer token of
//! `authorization`, else `x-goog-api-key`) is recorded; after
//! [`ScriptServer::expect_key`], a request without that key is answered 401
//! in the API's error shape (and consumes nothing). Every request is
//! recorded, answered or not ([`ScriptServer::requests`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::scripted::ScriptedTurn;
use super::{ContentBlock, StopReason, Usage};

/// Request bodies up to this size are read (axum's default is 2 MB; a long
/// agent conversation is more).
const MAX_BODY_BYTES: usize = 256 << 20;
/// Streamed text and tool-call arguments are cut into deltas of at most this
/// many bytes, so clients reassemble them as they would a model's.
const DELTA_BYTES: usize = 16;
/// What a side request (one offering no tools) is answered.
const SIDE_ANSWER: &str = "ok";

/// Which API a request was made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic's `POST /v1/messages` (and `/v1/messages/count_tokens`).
    Messages,
    /// OpenAI's `POST /v1/responses`.
    Responses,
    /// OpenAI's `POST /v1/chat/completions`.
    ChatCompletions,
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedRequest {
    pub api: Api,
    /// The path with its query string, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// The key the request carried: `x-api-key`, or the bearer token of
    /// `authorization`, or `x-goog-api-key`.
    pub key: Option<String>,
    /// The body as JSON (a JSON string holding the raw text when it was not
    /// JSON).
    pub body: Value,
    /// The index in the script (0 for the first turn) of the turn that
    /// answered; `None` when no turn did: a side request, a token count, a
    /// rejected key, an exhausted script.
    pub turn: Option<usize>,
}

#[derive(Debug, Default)]
struct Progress {
    next_turn: usize,
    /// The last tool-call id number handed out.
    next_call: u64,
    /// The last message / response / item id number handed out.
    next_id: u64,
    expected_key: Option<String>,
    requests: Vec<ServedRequest>,
}

#[derive(Debug)]
struct Shared {
    turns: Vec<ScriptedTurn>,
    state: Mutex<Progress>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        // The state stays consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves a script on `127.0.0.1` until dropped (or [`Self::shutdown`]).
#[derive(Debug)]
pub struct ScriptServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ScriptServer {
    /// Binds `127.0.0.1:0` and serves `turns` until dropped.
    pub async fn start(turns: Vec<ScriptedTurn>) -> std::io::Result<ScriptServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            turns,
            state: Mutex::default(),
        });
        let router = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/responses", post(responses))
            .route("/v1/chat/completions", post(chat_completions))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(error = %e, "the scripted model server stopped");
            }
        });
        Ok(ScriptServer {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// From now on only requests carrying `key` are answered; others get 401
    /// in the API's error shape.
    pub fn expect_key(self, key: impl Into<String>) -> Self {
        self.shared.lock().expected_key = Some(key.into());
        self
    }

    /// `http://127.0.0.1:PORT`, without a trailing `/`: clients add `/v1/…`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ServedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Turns not yet answered.
    pub fn remaining(&self) -> usize {
        self.shared
            .turns
            .len()
            .saturating_sub(self.shared.lock().next_turn)
    }

    /// Stops accepting connections and waits for open ones to finish.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, Api::Messages, &uri, &headers, &body)
}

async fn responses(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, Api::Responses, &uri, &headers, &body)
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, Api::ChatCompletions, &uri, &headers, &body)
}

/// `POST /v1/messages/count_tokens`: the estimate, consuming nothing.
async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = parse_body(&body);
    let key = request_key(&headers);
    let mut state = shared.lock();
    state.requests.push(ServedRequest {
        api: Api::Messages,
        path: path_of(&uri),
        key: key.clone(),
        body: parsed,
        turn: None,
    });
    if let Some(expected) = &state.expected_key
        && key.as_deref() != Some(expected.as_str())
    {
        return error(Api::Messages, StatusCode::UNAUTHORIZED, "invalid x-api-key");
    }
    json_response(json!({"input_tokens": estimate_bytes(body.len())}))
}

async fn not_found(uri: Uri) -> Response {
    tracing::debug!(%uri, "the scripted model server has no such route");
    let message = format!("the scripted model server does not serve {}", uri.path());
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "type": "not_found_error", "param": null, "code": null}})
            .to_string(),
    )
        .into_response()
}

fn path_of(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

fn parse_body(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// `x-api-key`, else the bearer token of `authorization`, else `x-goog-api-key`.
fn request_key(headers: &HeaderMap) -> Option<String> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(key) = get("x-api-key") {
        return Some(key.to_owned());
    }
    if let Some(auth) = get("authorization") {
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .unwrap_or(auth);
        return Some(token.trim().to_owned());
    }
    get("x-goog-api-key").map(str::to_owned)
}

/// What the model says, before it is put in an API's shape.
struct Answer {
    text: Option<String>,
    /// `(id, name, input)`.
    calls: Vec<(String, String, Value)>,
    stop_reason: StopReason,
    usage: Usage,
    model: String,
    /// The message / response id.
    id: String,
    /// Ids for the Responses API's output items: the message, then each call.
    item_ids: Vec<String>,
    /// The request's namespace tools (Codex offers each MCP server's tools
    /// as `{"type": "namespace", "name": "mcp__SERVER", "tools": […]}`).
    namespaces: Vec<(String, Vec<String>)>,
}

impl Answer {
    /// A Responses API call's `name` and `namespace`: a script's
    /// `mcp__SERVER__TOOL` is `TOOL` in the namespace `mcp__SERVER` when the
    /// request offers that namespace with that tool.
    fn responses_name<'a>(&'a self, name: &'a str) -> (&'a str, Option<&'a str>) {
        for (namespace, tools) in &self.namespaces {
            if let Some(tool) = name
                .strip_prefix(namespace.as_str())
                .and_then(|rest| rest.strip_prefix("__"))
                && tools.iter().any(|t| t == tool)
            {
                return (tool, Some(namespace));
            }
        }
        (name, None)
    }
}

/// The namespace tools a request offers, with their tools' names.
fn namespaces(body: &Value) -> Vec<(String, Vec<String>)> {
    body.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("namespace"))
        .filter_map(|t| {
            let name = t.get("name")?.as_str()?.to_owned();
            let tools = t
                .get("tools")?
                .as_array()?
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect();
            Some((name, tools))
        })
        .collect()
}

/// Adds `namespace` to a function-call item when it has one.
fn with_namespace(mut item: Value, namespace: Option<&str>) -> Value {
    if let Some(namespace) = namespace {
        item["namespace"] = json!(namespace);
    }
    item
}

fn serve(shared: &Shared, api: Api, uri: &Uri, headers: &HeaderMap, raw: &[u8]) -> Response {
    let body = parse_body(raw);
    let key = request_key(headers);
    let mut state = shared.lock();
    let index = state.requests.len();
    state.requests.push(ServedRequest {
        api,
        path: path_of(uri),
        key: key.clone(),
        body: body.clone(),
        turn: None,
    });
    if let Some(expected) = &state.expected_key
        && key.as_deref() != Some(expected.as_str())
    {
        let message = match api {
            Api::Messages => "invalid x-api-key".to_owned(),
            _ => "Incorrect API key provided (the scripted model expects another key)".to_owned(),
        };
        return error(api, StatusCode::UNAUTHORIZED, &message);
    }
    if !body.is_object() {
        return error(
            api,
            StatusCode::BAD_REQUEST,
            "the request body is not a JSON object",
        );
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("scripted")
        .to_owned();
    let offers_tools = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| !tools.is_empty());

    let (text, calls, stop_reason, usage) = if offers_tools {
        let n = state.next_turn;
        let Some(turn) = shared.turns.get(n) else {
            let total = shared.turns.len();
            let message = format!(
                "the scripted model has no turn {}: its script has {total} turn{}",
                n + 1,
                if total == 1 { "" } else { "s" }
            );
            return error(api, StatusCode::BAD_REQUEST, &message);
        };
        state.next_turn += 1;
        state.requests[index].turn = Some(n);
        let cwd = find_cwd(&body);
        let mut calls = Vec::with_capacity(turn.tool_calls.len());
        for call in &turn.tool_calls {
            state.next_call += 1;
            let id = match api {
                Api::Messages => format!("toolu_scripted_{}", state.next_call),
                _ => format!("call_scripted_{}", state.next_call),
            };
            let mut input = call.input.clone();
            if let Some(cwd) = &cwd {
                substitute_cwd(&mut input, cwd);
            }
            calls.push((id, call.name.clone(), input));
        }
        let text = turn.text.clone().filter(|t| !t.is_empty());
        let stop_reason = turn.stop_reason.clone().unwrap_or(if calls.is_empty() {
            StopReason::EndTurn
        } else {
            StopReason::ToolUse
        });
        let usage = turn.usage.unwrap_or_else(|| {
            let mut content = Vec::new();
            if let Some(text) = &text {
                content.push(ContentBlock::Text { text: text.clone() });
            }
            content.extend(calls.iter().map(|(id, name, input)| ContentBlock::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            }));
            Usage {
                input_tokens: estimate_bytes(raw.len()),
                output_tokens: estimate_bytes(serde_json::to_vec(&content).map_or(0, |b| b.len())),
                ..Usage::default()
            }
        });
        (text, calls, stop_reason, usage)
    } else {
        let usage = Usage {
            input_tokens: 1,
            output_tokens: 1,
            ..Usage::default()
        };
        (
            Some(SIDE_ANSWER.to_owned()),
            Vec::new(),
            StopReason::EndTurn,
            usage,
        )
    };

    let mut next_id = || {
        state.next_id += 1;
        state.next_id
    };
    let id = match api {
        Api::Messages => format!("msg_scripted_{}", next_id()),
        Api::Responses => format!("resp_scripted_{}", next_id()),
        Api::ChatCompletions => format!("chatcmpl-scripted-{}", next_id()),
    };
    let item_ids = if api == Api::Responses {
        let mut ids = Vec::new();
        if text.is_some() {
            ids.push(format!("msg_scripted_{}", next_id()));
        }
        for _ in &calls {
            ids.push(format!("fc_scripted_{}", next_id()));
        }
        ids
    } else {
        Vec::new()
    };
    drop(state);

    let answer = Answer {
        text,
        calls,
        stop_reason,
        usage,
        model,
        id,
        item_ids,
        namespaces: namespaces(&body),
    };
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    match (api, stream) {
        (Api::Messages, false) => json_response(messages_json(&answer)),
        (Api::Messages, true) => sse_response(messages_events(&answer)),
        (Api::Responses, false) => json_response(response_json(&answer, "completed")),
        (Api::Responses, true) => sse_response(responses_events(&answer)),
        (Api::ChatCompletions, false) => json_response(chat_json(&answer)),
        (Api::ChatCompletions, true) => {
            let include_usage = body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true);
            sse_response(chat_chunks(&answer, include_usage))
        }
    }
}

/// Bytes / 4, rounded up, as the scripted provider estimates tokens.
fn estimate_bytes(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// An error in the API's own shape.
fn error(api: Api, status: StatusCode, message: &str) -> Response {
    let body = match api {
        Api::Messages => {
            let kind = match status {
                StatusCode::UNAUTHORIZED => "authentication_error",
                StatusCode::NOT_FOUND => "not_found_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Api::Responses | Api::ChatCompletions => {
            let code = match status {
                StatusCode::UNAUTHORIZED => json!("invalid_api_key"),
                _ => Value::Null,
            };
            json!({"error": {
                "message": message,
                "type": "invalid_request_error",
                "param": null,
                "code": code,
            }})
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// One SSE event: `event: NAME` (when named) and `data: JSON`.
struct Event {
    name: Option<String>,
    data: String,
}

impl Event {
    /// A named event whose data is `data` (its `type` is the name).
    fn named(data: Value) -> Self {
        Self {
            name: data.get("type").and_then(Value::as_str).map(str::to_owned),
            data: data.to_string(),
        }
    }

    fn data(data: impl Into<String>) -> Self {
        Self {
            name: None,
            data: data.into(),
        }
    }
}

fn sse_response(events: Vec<Event>) -> Response {
    let mut body = String::new();
    for event in events {
        if let Some(name) = event.name {
            body.push_str("event: ");
            body.push_str(&name);
            body.push('\n');
        }
        body.push_str("data: ");
        body.push_str(&event.data);
        body.push_str("\n\n");
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `text` in pieces of at most [`DELTA_BYTES`] bytes, cut at character
/// boundaries; one empty piece for an empty text.
fn pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = DELTA_BYTES.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    if pieces.is_empty() {
        pieces.push("");
    }
    pieces
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn arguments(input: &Value) -> String {
    input.to_string()
}

// ---------------------------------------------------------------- Messages

fn anthropic_stop_reason(stop: &StopReason) -> &str {
    match stop {
        StopReason::EndTurn => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::Refusal => "refusal",
        StopReason::Other(other) => other,
    }
}

fn anthropic_usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    })
}

fn messages_content(answer: &Answer) -> Vec<Value> {
    let mut content = Vec::new();
    if let Some(text) = &answer.text {
        content.push(json!({"type": "text", "text": text}));
    }
    for (id, name, input) in &answer.calls {
        content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    content
}

fn messages_json(answer: &Answer) -> Value {
    json!({
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": messages_content(answer),
        "stop_reason": anthropic_stop_reason(&answer.stop_reason),
        "stop_sequence": null,
        "usage": anthropic_usage(&answer.usage),
    })
}

fn messages_events(answer: &Answer) -> Vec<Event> {
    let mut start_usage = anthropic_usage(&answer.usage);
    // As Anthropic does: a first output token in `message_start`, the total
    // in `message_delta`.
    start_usage["output_tokens"] = json!(answer.usage.output_tokens.min(1));
    let mut events = vec![
        Event::named(json!({
            "type": "message_start",
            "message": {
                "id": answer.id,
                "type": "message",
                "role": "assistant",
                "model": answer.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": start_usage,
            },
        })),
        Event::named(json!({"type": "ping"})),
    ];
    let mut index = 0;
    if let Some(text) = &answer.text {
        events.push(Event::named(json!({
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        })));
        for piece in pieces(text) {
            events.push(Event::named(json!({
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": piece},
            })));
        }
        events.push(Event::named(
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (id, name, input) in &answer.calls {
        events.push(Event::named(json!({
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}},
        })));
        // Anthropic opens with an empty piece.
        let json = arguments(input);
        for piece in std::iter::once("").chain(pieces(&json)) {
            events.push(Event::named(json!({
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            })));
        }
        events.push(Event::named(
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    events.push(Event::named(json!({
        "type": "message_delta",
        "delta": {
            "stop_reason": anthropic_stop_reason(&answer.stop_reason),
            "stop_sequence": null,
        },
        // Cumulative, as Anthropic sends it.
        "usage": anthropic_usage(&answer.usage),
    })));
    events.push(Event::named(json!({"type": "message_stop"})));
    events
}

// --------------------------------------------------------------- Responses

fn openai_usage_responses(usage: &Usage) -> Value {
    let input = usage.total_input();
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + usage.output_tokens,
    })
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The output items, complete.
fn response_output(answer: &Answer) -> Vec<Value> {
    let mut ids = answer.item_ids.iter();
    let mut output = Vec::new();
    if let Some(text) = &answer.text {
        output.push(json!({
            "type": "message",
            "id": ids.next(),
            "status": "completed",
            "role": "assistant",
            "content": [output_text_part(text)],
        }));
    }
    for (call_id, name, input) in &answer.calls {
        let (name, namespace) = answer.responses_name(name);
        output.push(with_namespace(
            json!({
                "type": "function_call",
                "id": ids.next(),
                "call_id": call_id,
                "name": name,
                "arguments": arguments(input),
                "status": "completed",
            }),
            namespace,
        ));
    }
    output
}

/// `in_progress` with no output yet, `completed` or `incomplete` with all of it.
fn response_json(answer: &Answer, status: &str) -> Value {
    let done = status != "in_progress";
    let status = if done && answer.stop_reason == StopReason::MaxTokens {
        "incomplete"
    } else {
        status
    };
    json!({
        "id": answer.id,
        "object": "response",
        "created_at": now_secs(),
        "status": status,
        "error": null,
        "incomplete_details": if status == "incomplete" {
            json!({"reason": "max_output_tokens"})
        } else {
            Value::Null
        },
        "instructions": null,
        "max_output_tokens": null,
        "model": answer.model,
        "output": if done { response_output(answer) } else { Vec::new() },
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": if done { openai_usage_responses(&answer.usage) } else { Value::Null },
        "user": null,
        "metadata": {},
    })
}

fn responses_events(answer: &Answer) -> Vec<Event> {
    let mut events = Vec::new();
    let mut push = |mut data: Value| {
        data["sequence_number"] = json!(events.len());
        events.push(Event::named(data));
    };
    let in_progress = response_json(answer, "in_progress");
    push(json!({"type": "response.created", "response": in_progress}));
    push(json!({"type": "response.in_progress", "response": in_progress}));
    let done_items = response_output(answer);
    let mut output_index = 0;
    if let Some(text) = &answer.text {
        let item = &done_items[output_index];
        let item_id = &item["id"];
        push(json!({
            "type": "response.output_item.added",
            "output_index": output_index,
            "item": {
                "type": "message",
                "id": item_id,
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
        }));
        push(json!({
            "type": "response.content_part.added",
            "item_id": item_id,
            "output_index": output_index,
            "content_index": 0,
            "part": output_text_part(""),
        }));
        for piece in pieces(text) {
            push(json!({
                "type": "response.output_text.delta",
                "item_id": item_id,
                "output_index": output_index,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }));
        }
        push(json!({
            "type": "response.output_text.done",
            "item_id": item_id,
            "output_index": output_index,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        }));
        push(json!({
            "type": "response.content_part.done",
            "item_id": item_id,
            "output_index": output_index,
            "content_index": 0,
            "part": output_text_part(text),
        }));
        push(json!({
            "type": "response.output_item.done",
            "output_index": output_index,
            "item": item,
        }));
        output_index += 1;
    }
    for (call_id, name, input) in &answer.calls {
        let item = &done_items[output_index];
        let item_id = &item["id"];
        let json = arguments(input);
        let (name, namespace) = answer.responses_name(name);
        push(json!({
            "type": "response.output_item.added",
            "output_index": output_index,
            "item": with_namespace(json!({
                "type": "function_call",
                "id": item_id,
                "call_id": call_id,
                "name": name,
                "arguments": "",
                "status": "in_progress",
            }), namespace),
        }));
        for piece in pieces(&json) {
            push(json!({
                "type": "response.function_call_arguments.delta",
                "item_id": item_id,
                "output_index": output_index,
                "delta": piece,
            }));
        }
        push(json!({
            "type": "response.function_call_arguments.done",
            "item_id": item_id,
            "output_index": output_index,
            "name": name,
            "arguments": json,
        }));
        push(json!({
            "type": "response.output_item.done",
            "output_index": output_index,
            "item": item,
        }));
        output_index += 1;
    }
    let done = response_json(answer, "completed");
    let kind = if done["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    push(json!({"type": kind, "response": done}));
    events
}

// -------------------------------------------------------- Chat Completions

fn chat_finish_reason(stop: &StopReason) -> &str {
    match stop {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::ToolUse => "tool_calls",
        StopReason::MaxTokens => "length",
        StopReason::Refusal => "content_filter",
        StopReason::Other(other) => other,
    }
}

fn chat_usage(usage: &Usage) -> Value {
    let input = usage.total_input();
    json!({
        "prompt_tokens": input,
        "completion_tokens": usage.output_tokens,
        "total_tokens": input + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

fn chat_json(answer: &Answer) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": answer.text,
        "refusal": null,
        "annotations": [],
    });
    if !answer.calls.is_empty() {
        message["tool_calls"] = answer
            .calls
            .iter()
            .map(|(id, name, input)| {
                json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments(input)},
                })
            })
            .collect();
    }
    json!({
        "id": answer.id,
        "object": "chat.completion",
        "created": now_secs(),
        "model": answer.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": chat_finish_reason(&answer.stop_reason),
        }],
        "usage": chat_usage(&answer.usage),
        "system_fingerprint": null,
    })
}

fn chat_chunks(answer: &Answer, include_usage: bool) -> Vec<Event> {
    let created = now_secs();
    let chunk = |choices: Value| {
        let mut chunk = json!({
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": answer.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut chunks = vec![chunk(choice(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    ))];
    if let Some(text) = &answer.text {
        for piece in pieces(text) {
            chunks.push(chunk(choice(json!({"content": piece}), Value::Null)));
        }
    }
    for (index, (id, name, input)) in answer.calls.iter().enumerate() {
        chunks.push(chunk(choice(
            json!({"tool_calls": [{
                "index": index,
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }]}),
            Value::Null,
        )));
        for piece in pieces(&arguments(input)) {
            chunks.push(chunk(choice(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                Value::Null,
            )));
        }
    }
    chunks.push(chunk(choice(
        json!({}),
        json!(chat_finish_reason(&answer.stop_reason)),
    )));
    if include_usage {
        let mut last = chunk(json!([]));
        last["usage"] = chat_usage(&answer.usage);
        chunks.push(last);
    }
    let mut events: Vec<Event> = chunks
        .into_iter()
        .map(|c| Event::data(c.to_string()))
        .collect();
    events.push(Event::data("[DONE]"));
    events
}

// -------------------------------------------------------------------- cwd

/// Where an agent states its working directory, in the order looked for:
/// Claude Code's line (the rest of the line after the marker), Codex's tag,
/// older Claude Code versions' line.
const CWD_MARKERS: [(&str, &str); 3] = [
    ("Primary working directory: ", "\n"),
    ("<cwd>", "</cwd>"),
    ("Working directory: ", "\n"),
];

/// The agent's working directory as its request states it (see the module
/// docs), if it does. The system prompt (`system`, `instructions`) is
/// searched before the rest, so that a file the conversation quotes does not
/// win over what the agent itself says.
fn find_cwd(body: &Value) -> Option<String> {
    let mut strings = Vec::new();
    for field in ["system", "instructions"] {
        if let Some(value) = body.get(field) {
            collect_strings(value, &mut strings);
        }
    }
    collect_strings(body, &mut strings);
    CWD_MARKERS.iter().find_map(|(open, close)| {
        strings.iter().find_map(|s| {
            let start = s.find(open)? + open.len();
            let rest = &s[start..];
            let cwd = rest[..rest.find(close).unwrap_or(rest.len())].trim();
            (!cwd.is_empty()).then(|| cwd.to_owned())
        })
    })
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

fn substitute_cwd(value: &mut Value, cwd: &str) {
    match value {
        Value::String(s) if s.contains("{{cwd}}") => *s = s.replace("{{cwd}}", cwd),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute_cwd(v, cwd)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute_cwd(v, cwd)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_at_character_boundaries() {
        assert_eq!(pieces(""), vec![""]);
        let text = "é".repeat(20);
        let joined: String = pieces(&text).concat();
        assert_eq!(joined, text);
        assert!(pieces(&text).len() > 1);
    }

    #[test]
    fn finds_the_working_directory() {
        let claude = json!({"system": [{"type": "text", "text": "x\n<env>\nPrimary working directory: /tmp/w d\nIs a git repo: yes"}]});
        assert_eq!(find_cwd(&claude).as_deref(), Some("/tmp/w d"));
        let codex = json!({"input": [{"content": [{"text": "<environment_context>\n  <cwd>/work/repo</cwd>\n</environment_context>"}]}]});
        assert_eq!(find_cwd(&codex).as_deref(), Some("/work/repo"));
        assert_eq!(find_cwd(&json!({"messages": []})), None);
        // The system prompt wins over what the conversation quotes.
        let quoted = json!({
            "messages": [{"role": "user", "content": "Primary working directory: /elsewhere\n<cwd>/x</cwd>"}],
            "system": "Primary working directory: /mine",
        });
        assert_eq!(find_cwd(&quoted).as_deref(), Some("/mine"));
        let old = json!({"system": "<env>\nWorking directory: /old\n</env>"});
        assert_eq!(find_cwd(&old).as_deref(), Some("/old"));
        let mut input = json!({"file_path": "{{cwd}}/a.txt", "n": 1, "list": ["{{cwd}}"]});
        substitute_cwd(&mut input, "/w");
        assert_eq!(
            input,
            json!({"file_path": "/w/a.txt", "n": 1, "list": ["/w"]})
        );
    }
}
