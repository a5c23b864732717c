//! The OpenAI Chat Completions adapter against a local fake (axum on
//! 127.0.0.1:0) that records every request and answers scripted replies in
//! the shapes OpenAI documents: completions with text, parallel tool calls,
//! usage with cached tokens, and `{"error": {message, type, param, code}}`
//! errors. Retries use a tiny [`HttpRetry`], so the tests are fast.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use missions::llm::http::HttpRetry;
use missions::llm::openai::{MaxTokensField, OpenAi};
use missions::llm::{
    ChatRequest, ContentBlock, LlmError, Message, Provider, Role, StopReason, ToolDef, Usage,
};
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "sk-test-SECRET-0123456789abcdef";

const FAST: HttpRetry = HttpRetry {
    max_attempts: 3,
    base_delay: Duration::from_millis(5),
    max_delay: Duration::from_millis(200),
};

// ---------------------------------------------------------------- fake server

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
    }
}

struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct Fake {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
}

struct Server {
    fake: Arc<Fake>,
    base: String,
}

impl Server {
    async fn start(replies: Vec<Reply>) -> Self {
        let fake = Arc::new(Fake {
            replies: Mutex::new(replies.into()),
            ..Fake::default()
        });
        let app = Router::new().fallback(handle).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            fake,
            base: format!("http://{addr}"),
        }
    }

    fn requests(&self) -> Vec<(String, HeaderMap, Value)> {
        self.fake
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.path.clone(), r.headers.clone(), r.body.clone()))
            .collect()
    }

    fn provider(&self, key: Option<&str>) -> OpenAi {
        OpenAi::new(
            key.map(|k| SecretString::from(k.to_owned())),
            format!("{}/v1", self.base),
        )
        .with_retry(FAST)
    }
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.requests.lock().unwrap().push(Recorded {
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let Some(reply) = fake.replies.lock().unwrap().pop_front() else {
        return (StatusCode::IM_A_TEAPOT, "the fake has no more replies").into_response();
    };
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

// ---------------------------------------------------------------- fixtures

/// A completion as OpenAI documents it.
fn completion(message: Value, finish_reason: &str, usage: Value) -> Value {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4.1-2025-04-14",
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason
        }],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_44709d6fcb"
    })
}

fn usage(prompt: u64, completion: u64, cached: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn text_completion(text: &str) -> Value {
    completion(
        json!({"role": "assistant", "content": text, "refusal": null, "annotations": []}),
        "stop",
        usage(19, 10, 0),
    )
}

fn error(status: u16, message: &str, kind: &str, param: Value, code: Value) -> Reply {
    reply(
        status,
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

fn simple_request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4.1".into(),
        system: "You are terse.".into(),
        tools: vec![],
        messages: vec![Message::user_text("Say hi.")],
        max_tokens: 100,
    }
}

/// A conversation with everything the mapping has to get right.
fn full_request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4.1".into(),
        system: "You are a careful engineer.".into(),
        tools: vec![ToolDef {
            name: "read_file".into(),
            description: "Read a file of the repository.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"]
            }),
        }],
        messages: vec![
            Message::user_text("Fix the README."),
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::Text {
                        text: "Reading both.".into(),
                    },
                    ContentBlock::ToolUse {
                        id: "call_a".into(),
                        name: "read_file".into(),
                        input: json!({"path": "README.md"}),
                    },
                    ContentBlock::ToolUse {
                        id: "call_b".into(),
                        name: "read_file".into(),
                        input: json!({"path": "missing.md"}),
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::ToolResult {
                        tool_use_id: "call_a".into(),
                        content: "# Title".into(),
                        is_error: false,
                    },
                    ContentBlock::ToolResult {
                        tool_use_id: "call_b".into(),
                        content: "no such file".into(),
                        is_error: true,
                    },
                    ContentBlock::Text {
                        text: "Two turns left.".into(),
                    },
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolUse {
                    id: "call_c".into(),
                    name: "read_file".into(),
                    input: json!({"path": "a\"b.md"}),
                }],
            },
            Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: "call_c".into(),
                    content: "".into(),
                    is_error: false,
                }],
            },
        ],
        max_tokens: 4096,
    }
}

// ---------------------------------------------------------------- requests

#[tokio::test]
async fn sends_the_documented_request() {
    let server = Server::start(vec![reply(200, text_completion("Done."))]).await;
    let provider = server
        .provider(Some(KEY))
        .with_max_tokens_field(MaxTokensField::MaxCompletionTokens);
    assert_eq!(provider.name(), "openai");
    provider.chat(&full_request()).await.unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let (path, headers, body) = &requests[0];
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
    assert_eq!(headers["content-type"], "application/json");
    let expected = json!({
        "model": "gpt-4.1",
        "max_completion_tokens": 4096,
        "messages": [
            {"role": "system", "content": "You are a careful engineer."},
            {"role": "user", "content": "Fix the README."},
            {
                "role": "assistant",
                "content": "Reading both.",
                "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "read_file", "arguments": "{\"path\":\"README.md\"}"}},
                    {"id": "call_b", "type": "function",
                     "function": {"name": "read_file", "arguments": "{\"path\":\"missing.md\"}"}}
                ]
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "# Title"},
            {"role": "tool", "tool_call_id": "call_b", "content": "Error: no such file"},
            {"role": "user", "content": "Two turns left."},
            {
                "role": "assistant",
                "content": null,
                "tool_calls": [
                    {"id": "call_c", "type": "function",
                     "function": {"name": "read_file", "arguments": "{\"path\":\"a\\\"b.md\"}"}}
                ]
            },
            {"role": "tool", "tool_call_id": "call_c", "content": ""}
        ],
        "tool_choice": "required",
        "tools": [{
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file of the repository.",
                "parameters": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}},
                    "required": ["path"]
                }
            }
        }]
    });
    assert_eq!(body, &expected);
    // `arguments` is a JSON string that parses back to the input.
    let arguments = body["messages"][2]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        json!({"path": "README.md"})
    );
}

#[tokio::test]
async fn local_server_without_key_under_a_path_prefix() {
    let server = Server::start(vec![reply(200, text_completion("hi"))]).await;
    // OpenRouter-style prefix, with a trailing slash.
    let provider = OpenAi::new(None, format!("{}/api/v1/", server.base)).with_retry(FAST);
    assert_eq!(provider.base_url(), format!("{}/api/v1", server.base));
    let mut request = simple_request();
    request.system = String::new();
    let answer = provider.chat(&request).await.unwrap();
    assert_eq!(answer.message().text(), "hi");

    let requests = server.requests();
    let (path, headers, body) = &requests[0];
    assert_eq!(path, "/api/v1/chat/completions");
    assert!(headers.get("authorization").is_none(), "{headers:?}");
    // Not api.openai.com: the limit goes as `max_tokens`, the name local
    // servers know; no empty system message, no empty tools array.
    assert_eq!(
        body,
        &json!({
            "model": "gpt-4.1",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "Say hi."}]
        })
    );
}

// ---------------------------------------------------------------- answers

#[tokio::test]
async fn parses_text_and_usage_with_cached_tokens() {
    let answer = completion(
        json!({"role": "assistant", "content": "Hello there.", "refusal": null, "annotations": []}),
        "stop",
        usage(2006, 300, 1920),
    );
    let server = Server::start(vec![reply(200, answer)]).await;
    let response = server
        .provider(Some(KEY))
        .chat(&simple_request())
        .await
        .unwrap();
    assert_eq!(
        response.content,
        vec![ContentBlock::Text {
            text: "Hello there.".into()
        }]
    );
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.model, "gpt-4.1-2025-04-14");
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 2006 - 1920,
            output_tokens: 300,
            cache_read_tokens: 1920,
            cache_write_tokens: 0,
        }
    );
    assert_eq!(response.usage.total_input(), 2006);
}

#[tokio::test]
async fn usage_without_details_has_no_cache_reads() {
    let answer = completion(
        json!({"role": "assistant", "content": "ok"}),
        "stop",
        json!({"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}),
    );
    let server = Server::start(vec![reply(200, answer)]).await;
    let response = server.provider(None).chat(&simple_request()).await.unwrap();
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 50,
            output_tokens: 5,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
        }
    );
}

#[tokio::test]
async fn parses_parallel_tool_calls() {
    let answer = completion(
        json!({
            "role": "assistant",
            "content": null,
            "refusal": null,
            "annotations": [],
            "tool_calls": [
                {"id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
                 "function": {"name": "read_file", "arguments": "{\"path\":\"README.md\"}"}},
                {"id": "call_ABC", "type": "function",
                 "function": {"name": "list_dir", "arguments": "{\"path\":\"src\",\"depth\":2}"}}
            ]
        }),
        "tool_calls",
        usage(82, 17, 0),
    );
    let server = Server::start(vec![reply(200, answer)]).await;
    let response = server
        .provider(Some(KEY))
        .chat(&full_request())
        .await
        .unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.content,
        vec![
            ContentBlock::ToolUse {
                id: "call_DdmO9pD3xa9XTPNJ32zg2hcA".into(),
                name: "read_file".into(),
                input: json!({"path": "README.md"}),
            },
            ContentBlock::ToolUse {
                id: "call_ABC".into(),
                name: "list_dir".into(),
                input: json!({"path": "src", "depth": 2}),
            },
        ]
    );
}

#[tokio::test]
async fn unparsable_arguments_are_kept_raw_and_sent_back_verbatim() {
    let raw = "{\"path\": \"README.md\"";
    let answer = completion(
        json!({
            "role": "assistant",
            "content": "Let me read it.",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "read_file", "arguments": raw}}]
        }),
        "tool_calls",
        usage(10, 5, 0),
    );
    let server = Server::start(vec![reply(200, answer), reply(200, text_completion("ok"))]).await;
    let provider = server.provider(Some(KEY));
    let mut request = simple_request();
    let first = provider.chat(&request).await.unwrap();
    assert_eq!(
        first.content[1],
        ContentBlock::ToolUse {
            id: "call_1".into(),
            name: "read_file".into(),
            input: Value::String(raw.into()),
        }
    );
    request.messages.push(first.message());
    request.messages.push(Message {
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: "call_1".into(),
            content: "invalid input: expected an object".into(),
            is_error: true,
        }],
    });
    provider.chat(&request).await.unwrap();
    let sent = &server.requests()[1].2["messages"];
    assert_eq!(
        sent[2],
        json!({"role": "assistant", "content": "Let me read it.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "read_file", "arguments": raw}}
        ]})
    );
    assert_eq!(
        sent[3],
        json!({"role": "tool", "tool_call_id": "call_1",
               "content": "Error: invalid input: expected an object"})
    );
}

#[tokio::test]
async fn finish_reasons() {
    let message = json!({"role": "assistant", "content": "partial"});
    let server = Server::start(vec![
        reply(200, completion(message.clone(), "length", usage(1, 1, 0))),
        reply(
            200,
            completion(message.clone(), "content_filter", usage(1, 1, 0)),
        ),
        reply(
            200,
            completion(
                json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
                "stop",
                usage(1, 1, 0),
            ),
        ),
        // Some compatible servers report "stop" after tool calls.
        reply(
            200,
            completion(
                json!({"role": "assistant", "content": "", "tool_calls": [
                    {"id": "x", "type": "function", "function": {"name": "t", "arguments": ""}}
                ]}),
                "stop",
                usage(1, 1, 0),
            ),
        ),
    ])
    .await;
    let provider = server.provider(None);
    let stop = |r: Result<missions::llm::ChatResponse, LlmError>| r.unwrap().stop_reason;
    assert_eq!(
        stop(provider.chat(&simple_request()).await),
        StopReason::MaxTokens
    );
    assert_eq!(
        stop(provider.chat(&simple_request()).await),
        StopReason::Refusal
    );
    let refusal = provider.chat(&simple_request()).await.unwrap();
    assert_eq!(refusal.stop_reason, StopReason::Refusal);
    assert_eq!(refusal.message().text(), "I can't help with that.");
    let tools = provider.chat(&simple_request()).await.unwrap();
    assert_eq!(tools.stop_reason, StopReason::ToolUse);
    assert_eq!(
        tools.content,
        vec![ContentBlock::ToolUse {
            id: "x".into(),
            name: "t".into(),
            input: json!({})
        }]
    );
}

#[tokio::test]
async fn a_malformed_answer_is_invalid_response() {
    let server = Server::start(vec![reply(200, json!({"id": "x", "choices": []}))]).await;
    let error = server
        .provider(Some(KEY))
        .chat(&simple_request())
        .await
        .unwrap_err();
    assert!(
        matches!(error, LlmError::InvalidResponse { .. }),
        "{error:?}"
    );
}

// ---------------------------------------------------------------- errors

fn assert_no_key(error: &LlmError) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(KEY), "the key leaked: {shown}");
    assert!(!shown.contains("SECRET"), "part of the key leaked: {shown}");
}

#[tokio::test]
async fn unauthorized_names_the_key_variable_and_never_the_key() {
    // The fake echoes the key back, which OpenAI itself only does masked.
    let server = Server::start(vec![error(
        401,
        &format!("Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
        "invalid_request_error",
        Value::Null,
        json!("invalid_api_key"),
    )])
    .await;
    let provider = server
        .provider(Some(KEY))
        .with_key_env("MISSIONS_OPENAI_KEY");
    assert!(!format!("{provider:?}").contains(KEY));
    let error = provider.chat(&simple_request()).await.unwrap_err();
    match &error {
        LlmError::Auth {
            status, key_env, ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(key_env, "MISSIONS_OPENAI_KEY");
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    assert!(error.to_string().contains("MISSIONS_OPENAI_KEY"));
    assert!(error.to_string().contains("[redacted]"));
    assert_no_key(&error);
    assert_eq!(server.requests().len(), 1, "401 is not retried");
}

#[tokio::test]
async fn unknown_model() {
    let server = Server::start(vec![error(
        404,
        "The model `gpt-9` does not exist or you do not have access to it.",
        "invalid_request_error",
        Value::Null,
        json!("model_not_found"),
    )])
    .await;
    let mut request = simple_request();
    request.model = "gpt-9".into();
    let error = server.provider(Some(KEY)).chat(&request).await.unwrap_err();
    match &error {
        LlmError::UnknownModel { model, message, .. } => {
            assert_eq!(model, "gpt-9");
            assert!(message.contains("does not exist"));
        }
        other => panic!("expected UnknownModel, got {other:?}"),
    }
    assert_no_key(&error);
}

#[tokio::test]
async fn a_404_without_an_error_body_points_at_the_base_url() {
    let server = Server::start(vec![Reply {
        status: 404,
        headers: vec![],
        body: "404 page not found".into(),
    }])
    .await;
    let error = server
        .provider(None)
        .chat(&simple_request())
        .await
        .unwrap_err();
    match &error {
        LlmError::InvalidRequest {
            status, message, ..
        } => {
            assert_eq!(*status, 404);
            assert!(message.contains("/v1/chat/completions"), "{message}");
            assert!(message.contains("base URL"), "{message}");
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

#[tokio::test]
async fn context_too_long() {
    let server = Server::start(vec![error(
        400,
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        json!("messages"),
        json!("context_length_exceeded"),
    )])
    .await;
    let error = server
        .provider(Some(KEY))
        .chat(&simple_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::ContextTooLong { message, .. } if message.contains("128000")),
        "{error:?}"
    );
}

#[tokio::test]
async fn other_client_errors_are_invalid_requests() {
    let server = Server::start(vec![error(
        400,
        "Invalid schema for function 'read_file'.",
        "invalid_request_error",
        json!("tools[0].function.parameters"),
        json!("invalid_function_parameters"),
    )])
    .await;
    let error = server
        .provider(Some(KEY))
        .chat(&simple_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::InvalidRequest { status: 400, message, .. } if message.contains("Invalid schema")),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn rate_limit_is_retried_after_retry_after_ms() {
    let mut limited = error(
        429,
        "Rate limit reached for gpt-4.1 in organization org-x on tokens per min (TPM): Limit 30000, Used 30000, Requested 100. Please try again in 200ms.",
        "tokens",
        Value::Null,
        json!("rate_limit_exceeded"),
    );
    limited.headers.extend([
        ("retry-after-ms", "60".to_owned()),
        ("x-ratelimit-limit-tokens", "30000".to_owned()),
        ("x-ratelimit-remaining-tokens", "0".to_owned()),
        ("x-ratelimit-reset-tokens", "200ms".to_owned()),
    ]);
    let server = Server::start(vec![limited, reply(200, text_completion("after the wait"))]).await;
    let started = Instant::now();
    let response = server
        .provider(Some(KEY))
        .chat(&simple_request())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(response.message().text(), "after the wait");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].2, requests[1].2, "the same body is sent again");
}

#[tokio::test]
async fn insufficient_quota_is_a_billing_problem_and_not_retried() {
    let server = Server::start(vec![
        error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            Value::Null,
            json!("insufficient_quota"),
        ),
        reply(200, text_completion("never reached")),
    ])
    .await;
    let error = server
        .provider(Some(KEY))
        .chat(&simple_request())
        .await
        .unwrap_err();
    match &error {
        LlmError::InvalidRequest {
            status, message, ..
        } => {
            assert_eq!(*status, 429);
            assert!(message.contains("billing"), "{message}");
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 1, "no retry for an empty quota");
}

#[tokio::test]
async fn persisting_server_errors_are_unavailable_after_max_attempts() {
    let failing = error(
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        Value::Null,
        Value::Null,
    );
    let server = Server::start(vec![
        failing.clone(),
        failing.clone(),
        failing.clone(),
        failing,
    ])
    .await;
    let error = server
        .provider(Some(KEY))
        .chat(&simple_request())
        .await
        .unwrap_err();
    match &error {
        LlmError::Unavailable {
            status,
            attempts,
            message,
            ..
        } => {
            assert_eq!((*status, *attempts), (500, 3));
            assert!(message.contains("server had an error"));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 3);
    assert_no_key(&error);
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error_without_the_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let provider = OpenAi::new(Some(SecretString::from(KEY)), format!("http://{addr}/v1"))
        .with_retry(HttpRetry {
            max_attempts: 2,
            ..FAST
        });
    let error = provider.chat(&simple_request()).await.unwrap_err();
    assert!(matches!(error, LlmError::Transport { .. }), "{error:?}");
    assert_no_key(&error);
}

#[tokio::test]
async fn x_should_retry_false_stops_retries() {
    let mut failing = error(
        503,
        "Service unavailable",
        "server_error",
        Value::Null,
        Value::Null,
    );
    failing.headers.push(("x-should-retry", "false".to_owned()));
    let server = Server::start(vec![failing, reply(200, text_completion("never reached"))]).await;
    let error = server
        .provider(Some(KEY))
        .chat(&simple_request())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            LlmError::Unavailable {
                status: 503,
                attempts: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn vllm_context_error_without_a_code() {
    // vLLM's error shape: flat, with a numeric code.
    let server = Server::start(vec![reply(
        400,
        json!({
            "object": "error",
            "message": "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens in the messages.",
            "type": "BadRequestError",
            "param": null,
            "code": 400
        }),
    )])
    .await;
    let error = server
        .provider(None)
        .chat(&simple_request())
        .await
        .unwrap_err();
    assert!(
        matches!(error, LlmError::ContextTooLong { .. }),
        "{error:?}"
    );
}
