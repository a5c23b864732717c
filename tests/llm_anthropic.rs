//! The Anthropic adapter against a fake Messages API on 127.0.0.1: the exact
//! request it sends, and how it reads answers and errors in the shapes
//! Anthropic documents.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use missions::llm::anthropic::Anthropic;
use missions::llm::http::HttpRetry;
use missions::llm::{
    ChatRequest, ContentBlock, LlmError, Message, Provider, Role, StopReason, ToolDef, Usage,
};
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "sk-ant-test-0123456789-secret";

#[derive(Debug, Clone)]
struct Recorded {
    headers: HeaderMap,
    body: Value,
}

struct Scripted {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
}

#[derive(Clone, Default)]
struct Fake {
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Scripted>>>,
}

impl Fake {
    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn messages(State(fake): State<Fake>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).expect("the adapter sends JSON");
    fake.requests
        .lock()
        .unwrap()
        .push(Recorded { headers, body });
    let Some(next) = fake.script.lock().unwrap().pop_front() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response();
    };
    let mut response = (
        StatusCode::from_u16(next.status).unwrap(),
        [("content-type", "application/json")],
        next.body,
    )
        .into_response();
    for (name, value) in next.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A fake answering `script` in order; returns it and its base URL.
async fn start_fake(script: Vec<Scripted>) -> (Fake, String) {
    let fake = Fake {
        script: Arc::new(Mutex::new(script.into())),
        ..Fake::default()
    };
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

fn ok(body: Value) -> Scripted {
    Scripted {
        status: 200,
        headers: vec![],
        body: body.to_string(),
    }
}

fn error(status: u16, kind: &str, message: &str) -> Scripted {
    Scripted {
        status,
        headers: vec![],
        body: json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_011CTEST"
        })
        .to_string(),
    }
}

fn tiny_retry() -> HttpRetry {
    HttpRetry {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
    }
}

fn provider(url: &str) -> Anthropic {
    Anthropic::new(SecretString::from(KEY), Some(url)).with_retry(tiny_retry())
}

fn text_answer() -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "All tests pass."}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": 21,
            "cache_creation_input_tokens": 188,
            "cache_read_input_tokens": 1800,
            "output_tokens": 7,
            "service_tier": "standard"
        }
    })
}

fn tools() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "read_file".into(),
            description: "Read a file of the repository.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"]
            }),
        },
        ToolDef {
            name: "bash".into(),
            description: "Run a shell command.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"]
            }),
        },
    ]
}

/// A conversation after one tool round: task, the assistant's tool call, its result.
fn tool_round_request() -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5".into(),
        system: "You are the worker.".into(),
        tools: tools(),
        messages: vec![
            Message::user_text("Fix the failing test."),
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::Text {
                        text: "Let me look.".into(),
                    },
                    ContentBlock::ToolUse {
                        id: "toolu_01A".into(),
                        name: "read_file".into(),
                        input: json!({"path": "src/lib.rs"}),
                    },
                    ContentBlock::ToolUse {
                        id: "toolu_01B".into(),
                        name: "bash".into(),
                        input: json!({"command": "cargo test"}),
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::ToolResult {
                        tool_use_id: "toolu_01A".into(),
                        content: "pub fn add(a: i32, b: i32) -> i32 { a - b }".into(),
                        is_error: false,
                    },
                    ContentBlock::ToolResult {
                        tool_use_id: "toolu_01B".into(),
                        content: "test add ... FAILED".into(),
                        is_error: true,
                    },
                ],
            },
        ],
        max_tokens: 4096,
    }
}

#[tokio::test]
async fn sends_the_exact_request_and_reads_a_text_answer() {
    let (fake, url) = start_fake(vec![ok(text_answer())]).await;
    let response = provider(&url).chat(&tool_round_request()).await.unwrap();

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let h = &requests[0].headers;
    assert_eq!(h["x-api-key"], KEY);
    assert_eq!(h["anthropic-version"], "2023-06-01");
    assert_eq!(h["content-type"], "application/json");
    assert!(h.get("authorization").is_none());
    let eph = json!({"type": "ephemeral"});
    assert_eq!(
        requests[0].body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": [{"type": "text", "text": "You are the worker.", "cache_control": eph}],
            "tools": [
                {
                    "name": "read_file",
                    "description": "Read a file of the repository.",
                    "input_schema": {
                        "type": "object",
                        "properties": {"path": {"type": "string"}},
                        "required": ["path"]
                    }
                },
                {
                    "name": "bash",
                    "description": "Run a shell command.",
                    "input_schema": {
                        "type": "object",
                        "properties": {"command": {"type": "string"}},
                        "required": ["command"]
                    },
                    "cache_control": eph
                }
            ],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Fix the failing test."}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "read_file",
                     "input": {"path": "src/lib.rs"}},
                    {"type": "tool_use", "id": "toolu_01B", "name": "bash",
                     "input": {"command": "cargo test"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A",
                     "content": "pub fn add(a: i32, b: i32) -> i32 { a - b }", "is_error": false},
                    {"type": "tool_result", "tool_use_id": "toolu_01B",
                     "content": "test add ... FAILED", "is_error": true,
                     "cache_control": eph}
                ]}
            ]
        })
    );
    // Three breakpoints, within Anthropic's limit of four.
    assert_eq!(
        requests[0]
            .body
            .to_string()
            .matches("cache_control")
            .count(),
        3
    );

    assert_eq!(
        response.content,
        vec![ContentBlock::Text {
            text: "All tests pass.".into()
        }]
    );
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.model, "claude-sonnet-4-5-20250929");
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 21,
            output_tokens: 7,
            cache_read_tokens: 1800,
            cache_write_tokens: 188,
        }
    );
    assert_eq!(response.usage.total_input(), 2009);
}

#[tokio::test]
async fn reads_a_tool_use_answer_and_skips_thinking_blocks() {
    let (_fake, url) = start_fake(vec![ok(json!({
        "id": "msg_01Aq9w938a90dw8q",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "The test is in tests/.", "signature": "EqQBCgIYAhIM"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
            {"type": "text", "text": "I'll run the tests."},
            {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "bash",
             "input": {"command": "cargo test --quiet", "timeout": 120}}
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 472, "output_tokens": 91}
    }))])
    .await;
    let request = ChatRequest {
        messages: vec![Message::user_text("Run the tests.")],
        ..tool_round_request()
    };
    let response = provider(&url).chat(&request).await.unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.content,
        vec![
            ContentBlock::Text {
                text: "I'll run the tests.".into()
            },
            ContentBlock::ToolUse {
                id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                name: "bash".into(),
                input: json!({"command": "cargo test --quiet", "timeout": 120}),
            }
        ]
    );
    let calls: Vec<_> = response
        .message()
        .tool_uses()
        .map(|(id, ..)| id.to_owned())
        .collect();
    assert_eq!(calls, ["toolu_01T1x1fJ34qAmk2tNTrN7Up6"]);
    // Usage without the cache fields reads as zero cache tokens.
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 472,
            output_tokens: 91,
            ..Usage::default()
        }
    );
}

#[tokio::test]
async fn a_rejected_key_names_the_variable_and_never_shows_the_key() {
    let (fake, url) = start_fake(vec![error(
        401,
        "authentication_error",
        "invalid x-api-key",
    )])
    .await;
    let anthropic = provider(&url);
    let e = anthropic.chat(&tool_round_request()).await.unwrap_err();
    assert!(
        matches!(&e, LlmError::Auth { status: 401, key_env, message, .. }
            if key_env == "ANTHROPIC_API_KEY" && message == "invalid x-api-key"),
        "{e:?}"
    );
    let display = e.to_string();
    assert!(display.contains("ANTHROPIC_API_KEY"), "{display}");
    assert!(display.contains("invalid x-api-key"), "{display}");
    for shown in [display, format!("{e:?}"), format!("{anthropic:?}")] {
        assert!(!shown.contains(KEY), "the key leaked: {shown}");
        assert!(!shown.contains("x-api-key: "), "{shown}");
    }
    // Not retried.
    assert_eq!(fake.requests().len(), 1);

    let (_, url) = start_fake(vec![error(
        401,
        "authentication_error",
        "invalid x-api-key",
    )])
    .await;
    let e = provider(&url)
        .with_key_env("MISSIONS_ANTHROPIC_KEY")
        .chat(&tool_round_request())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("check MISSIONS_ANTHROPIC_KEY"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unknown_model_is_reported_with_its_name() {
    let (_, url) = start_fake(vec![error(
        404,
        "not_found_error",
        "model: claude-sonnet-9",
    )])
    .await;
    let request = ChatRequest {
        model: "claude-sonnet-9".into(),
        ..tool_round_request()
    };
    let e = provider(&url).chat(&request).await.unwrap_err();
    assert!(
        matches!(&e, LlmError::UnknownModel { model, message, .. }
            if model == "claude-sonnet-9" && message == "model: claude-sonnet-9"),
        "{e:?}"
    );
    assert!(e.to_string().contains("missions.yml"), "{e}");
}

#[tokio::test]
async fn a_prompt_too_long_is_a_context_error_and_other_400s_are_invalid_requests() {
    let (fake, url) = start_fake(vec![
        error(
            400,
            "invalid_request_error",
            "prompt is too long: 209353 tokens > 200000 maximum",
        ),
        error(
            400,
            "invalid_request_error",
            "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_01B",
        ),
    ])
    .await;
    let anthropic = provider(&url);
    let e = anthropic.chat(&tool_round_request()).await.unwrap_err();
    assert!(
        matches!(&e, LlmError::ContextTooLong { message, .. }
            if message == "prompt is too long: 209353 tokens > 200000 maximum"),
        "{e:?}"
    );
    let e = anthropic.chat(&tool_round_request()).await.unwrap_err();
    assert!(
        matches!(&e, LlmError::InvalidRequest { status: 400, message, .. }
            if message.contains("unexpected `tool_use_id`")),
        "{e:?}"
    );
    assert_eq!(fake.requests().len(), 2, "400s are not retried");
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_retry_after() {
    let mut limited = error(
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 30,000 input tokens per minute.",
    );
    limited.headers = vec![("retry-after", "0")];
    let (fake, url) = start_fake(vec![limited, ok(text_answer())]).await;
    let response = provider(&url).chat(&tool_round_request()).await.unwrap();
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body, "the same request again");
}

#[tokio::test]
async fn overloaded_until_the_last_attempt_is_unavailable() {
    let overloaded = || error(529, "overloaded_error", "Overloaded");
    let (fake, url) = start_fake(vec![
        overloaded(),
        overloaded(),
        overloaded(),
        ok(text_answer()),
    ])
    .await;
    let e = provider(&url)
        .chat(&tool_round_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LlmError::Unavailable { status: 529, attempts: 3, message, .. }
            if message == "Overloaded"),
        "{e:?}"
    );
    assert_eq!(fake.requests().len(), 3, "max_attempts in all");
}

#[tokio::test]
async fn an_unreachable_api_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let e = provider(&url)
        .chat(&tool_round_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LlmError::Transport { provider, url: at, .. }
            if provider == "anthropic" && at == &format!("{url}/v1/messages")),
        "{e:?}"
    );
    assert!(!format!("{e:?}").contains(KEY));
}

#[tokio::test]
async fn a_non_json_answer_is_an_invalid_response() {
    let (_, url) = start_fake(vec![Scripted {
        status: 200,
        headers: vec![],
        body: "<html>gateway</html>".into(),
    }])
    .await;
    let e = provider(&url)
        .chat(&tool_round_request())
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::InvalidResponse { .. }), "{e:?}");
}

#[test]
fn the_default_base_url_is_anthropics_and_builds_https() {
    // Building the client needs the rustls provider `http::client` installs.
    let a = Anthropic::new(SecretString::from(KEY), None);
    assert_eq!(a.messages_url(), "https://api.anthropic.com/v1/messages");
    assert_eq!(a.name(), "anthropic");
    let a = Anthropic::new(SecretString::from(KEY), Some("http://127.0.0.1:9/"));
    assert_eq!(a.messages_url(), "http://127.0.0.1:9/v1/messages");
}

#[tokio::test]
async fn https_speaks_tls() {
    // No certificate here to complete a handshake with, but the client must
    // open one: its first bytes are a TLS handshake record (ClientHello).
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 3];
        socket.read_exact(&mut first).await.unwrap();
        first
    });
    let anthropic = Anthropic::new(
        SecretString::from(KEY),
        Some(&format!("https://localhost:{port}")),
    )
    .with_retry(HttpRetry {
        max_attempts: 1,
        ..tiny_retry()
    });
    let e = anthropic.chat(&tool_round_request()).await.unwrap_err();
    assert!(matches!(e, LlmError::Transport { .. }), "{e:?}");
    let first = server.await.unwrap();
    assert_eq!(first[0], 0x16, "a TLS handshake record");
    assert_eq!(first[1], 0x03, "TLS 1.x");
}
