//! The Anthropic Messages API (`POST /v1/messages`, version `2023-06-01`).
//!
//! Prompt caching: every request carries three `cache_control` breakpoints
//! (Anthropic allows four): the last tool, the system prompt, and the last
//! content block of the last message. Anthropic renders a prompt as tools,
//! then system, then messages, so the first two cache the fixed part of a
//! loop, and the third caches the whole conversation so far, which the next
//! call, whose messages only grew, reads back at a tenth of the input price.
//! Anthropic looks for an earlier cache entry at most about 20 content blocks
//! before a breakpoint: one call's new blocks (the assistant's turn and the
//! tool results) stay well under that unless a turn makes many tool calls.

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::http::{self, HttpRetry};
use super::{
    ChatRequest, ChatResponse, ContentBlock, LlmError, Message, Provider, Role, StopReason, Usage,
};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header this adapter speaks.
pub const API_VERSION: &str = "2023-06-01";
/// Where the key usually comes from, named in [`LlmError::Auth`].
pub const DEFAULT_KEY_ENV: &str = "ANTHROPIC_API_KEY";
const PROVIDER: &str = "anthropic";
/// Anthropic's error messages are short; anything longer (an HTML page from
/// a proxy) is cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// A client for the Messages API. The key is only ever put in the
/// `x-api-key` header (marked sensitive); `Debug` shows it redacted.
#[derive(Debug, Clone)]
pub struct Anthropic {
    base_url: String,
    api_key: SecretString,
    client: reqwest::Client,
    retry: HttpRetry,
    key_env: String,
}

impl Anthropic {
    /// `base_url` defaults to [`DEFAULT_BASE_URL`]; a trailing `/` is ignored.
    pub fn new(api_key: SecretString, base_url: Option<&str>) -> Self {
        Self {
            base_url: base_url
                .unwrap_or(DEFAULT_BASE_URL)
                .trim_end_matches('/')
                .to_owned(),
            api_key,
            client: http::client(),
            retry: HttpRetry::default(),
            key_env: DEFAULT_KEY_ENV.to_owned(),
        }
    }

    pub fn with_retry(mut self, retry: HttpRetry) -> Self {
        self.retry = retry;
        self
    }

    /// The environment variable (or setting) the key came from, for the
    /// message of an authentication error.
    pub fn with_key_env(mut self, key_env: impl Into<String>) -> Self {
        self.key_env = key_env.into();
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn messages_url(&self) -> String {
        format!("{}/v1/messages", self.base_url)
    }

    fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, LlmError> {
        let mut key =
            HeaderValue::from_str(self.api_key.expose_secret()).map_err(|_| LlmError::Auth {
                provider: PROVIDER.to_owned(),
                status: 0,
                message: "the API key has characters an HTTP header cannot carry".to_owned(),
                key_env: self.key_env.clone(),
            })?;
        key.set_sensitive(true);
        Ok(vec![
            (HeaderName::from_static("x-api-key"), key),
            (
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(API_VERSION),
            ),
        ])
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let url = self.messages_url();
        let body =
            serde_json::to_vec(&request_body(request)).map_err(|e| LlmError::InvalidRequest {
                provider: PROVIDER.to_owned(),
                status: 0,
                message: format!("the request does not serialize: {e}"),
            })?;
        tracing::debug!(
            model = %request.model,
            messages = request.messages.len(),
            bytes = body.len(),
            "anthropic request"
        );
        let answer = http::post_json(
            &self.client,
            PROVIDER,
            &url,
            &self.headers()?,
            Bytes::from(body),
            self.retry,
        )
        .await?;
        if (200..300).contains(&answer.status) {
            parse_response(&answer.body)
        } else {
            Err(map_error(
                answer.status,
                &answer.body,
                answer.attempts,
                &request.model,
                &self.key_env,
            ))
        }
    }
}

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

fn cached(mut block: Value) -> Value {
    if let Value::Object(map) = &mut block {
        map.insert("cache_control".to_owned(), ephemeral());
    }
    block
}

/// The JSON body for `POST /v1/messages`: the request mapped 1:1, with the
/// three cache breakpoints described in the module docs. An empty system
/// prompt or tool list is left out (Anthropic rejects empty text blocks),
/// and so are whitespace-only text blocks and messages left with no blocks
/// (Anthropic rejects both; it sometimes answers a turn with no content).
pub fn request_body(request: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".to_owned(), json!(request.model));
    body.insert("max_tokens".to_owned(), json!(request.max_tokens));
    if !request.system.trim().is_empty() {
        body.insert(
            "system".to_owned(),
            json!([cached(json!({"type": "text", "text": request.system}))]),
        );
    }
    if !request.tools.is_empty() {
        let last = request.tools.len() - 1;
        let tools = request
            .tools
            .iter()
            .enumerate()
            .map(|(i, tool)| {
                let tool = json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.input_schema,
                });
                if i == last { cached(tool) } else { tool }
            })
            .collect();
        body.insert("tools".to_owned(), Value::Array(tools));
    }
    let mut messages: Vec<Value> = request.messages.iter().filter_map(message_json).collect();
    if let Some(last) = messages
        .last_mut()
        .and_then(|m| m["content"].as_array_mut())
        .and_then(|blocks| blocks.last_mut())
    {
        *last = cached(last.take());
    }
    body.insert("messages".to_owned(), Value::Array(messages));
    Value::Object(body)
}

fn message_json(message: &Message) -> Option<Value> {
    let role = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let content: Vec<Value> = message.content.iter().filter_map(block_json).collect();
    if content.is_empty() {
        return None;
    }
    Some(json!({"role": role, "content": content}))
}

fn block_json(block: &ContentBlock) -> Option<Value> {
    Some(match block {
        ContentBlock::Text { text } if text.trim().is_empty() => return None,
        ContentBlock::Text { text } => json!({"type": "text", "text": text}),
        ContentBlock::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut block = json!({"type": "tool_result", "tool_use_id": tool_use_id});
            // `content` is optional; an empty string is better left out.
            if !content.is_empty() {
                block["content"] = json!(content);
            }
            block["is_error"] = json!(is_error);
            block
        }
    })
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    content: Vec<Value>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
    #[serde(default)]
    model: String,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

fn invalid_response(message: impl Into<String>) -> LlmError {
    LlmError::InvalidResponse {
        provider: PROVIDER.to_owned(),
        message: message.into(),
    }
}

/// A `200` body: text and tool-use blocks in order (thinking and server-tool
/// blocks are skipped), the stop reason, and usage. Anthropic's
/// `input_tokens` already excludes cache reads and writes.
pub fn parse_response(body: &[u8]) -> Result<ChatResponse, LlmError> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
        invalid_response(format!(
            "{e}: {}",
            trim_message(&String::from_utf8_lossy(body))
        ))
    })?;
    let mut content = Vec::with_capacity(wire.content.len());
    for block in wire.content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = block["text"]
                    .as_str()
                    .ok_or_else(|| invalid_response("a text block without text"))?;
                content.push(ContentBlock::Text {
                    text: text.to_owned(),
                });
            }
            Some("tool_use") => {
                let field = |name: &str| {
                    block[name]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid_response(format!("a tool_use block without {name}")))
                };
                content.push(ContentBlock::ToolUse {
                    id: field("id")?,
                    name: field("name")?,
                    input: block.get("input").cloned().unwrap_or_else(|| json!({})),
                });
            }
            other => {
                tracing::debug!(kind = ?other, "skipping an Anthropic content block");
            }
        }
    }
    let stop_reason = match wire.stop_reason.as_deref() {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("refusal") => StopReason::Refusal,
        Some(other) => StopReason::Other(other.to_owned()),
        None => StopReason::Other("none".to_owned()),
    };
    let u = wire.usage;
    Ok(ChatResponse {
        content,
        stop_reason,
        usage: Usage {
            input_tokens: u.input_tokens.unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
            cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
        },
        model: wire.model,
    })
}

/// Anthropic's error `type` and `message` from
/// `{"type":"error","error":{"type":…,"message":…}}`, or the raw body
/// (trimmed) when it is not that shape (a proxy's page).
fn error_parts(body: &[u8]) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let message = match error.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(message) => trim_message(message),
        None => {
            let raw = String::from_utf8_lossy(body);
            match raw.trim() {
                "" => "(no body)".to_owned(),
                raw => trim_message(raw),
            }
        }
    };
    (kind, message)
}

fn trim_message(message: &str) -> String {
    let message = message.trim();
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

/// Whether a 400's message says the prompt does not fit the context window:
/// `prompt is too long: 209353 tokens > 200000 maximum`, or
/// ``input length and `max_tokens` exceed context limit: …``.
fn says_too_long(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("prompt is too long") || m.contains("exceed context limit")
}

/// A non-2xx answer (after retries) as an [`LlmError`]. Never carries
/// request headers: only the status and Anthropic's own message.
pub fn map_error(status: u16, body: &[u8], attempts: u32, model: &str, key_env: &str) -> LlmError {
    let (kind, message) = error_parts(body);
    let provider = PROVIDER.to_owned();
    match status {
        401 => LlmError::Auth {
            provider,
            status,
            message,
            key_env: key_env.to_owned(),
        },
        404 if kind == "not_found_error" && message.to_ascii_lowercase().contains("model") => {
            LlmError::UnknownModel {
                provider,
                model: model.to_owned(),
                message,
            }
        }
        400 if says_too_long(&message) => LlmError::ContextTooLong { provider, message },
        // Cloudflare's answer to a body over 32 MB. This adapter sends only
        // text, and 32 MB of text is millions of tokens, past every context
        // window: a shorter conversation is the only fix, as for 400 above.
        413 => LlmError::ContextTooLong {
            provider,
            message: format!("request too large (HTTP 413, over 32 MB): {message}"),
        },
        _ if http::retryable(status) => LlmError::Unavailable {
            provider,
            status,
            attempts,
            message,
        },
        _ => LlmError::InvalidRequest {
            provider,
            status,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolDef;

    fn request(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "claude-sonnet-4-5".into(),
            system: "be brief".into(),
            tools: vec![ToolDef {
                name: "bash".into(),
                description: "run".into(),
                input_schema: json!({"type": "object"}),
            }],
            messages,
            max_tokens: 100,
        }
    }

    #[test]
    fn empty_text_blocks_and_empty_messages_are_left_out() {
        let body = request_body(&request(vec![
            Message::user_text("hi"),
            Message::assistant_text(""),
            Message::user_text("again"),
        ]));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "user", "content": [{"type": "text", "text": "again",
                    "cache_control": {"type": "ephemeral"}}]},
            ])
        );
        let mut r = request(vec![Message::user_text("hi")]);
        r.system = " ".into();
        r.tools.clear();
        let body = request_body(&r);
        assert!(body.get("system").is_none() && body.get("tools").is_none());
    }

    #[test]
    fn errors_map_by_status_and_message() {
        let body = |kind: &str, message: &str| {
            json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
        };
        let e = map_error(
            400,
            body("invalid_request_error", "input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000, decrease input length or `max_tokens` and try again").as_bytes(),
            1,
            "m",
            "K",
        );
        assert!(matches!(e, LlmError::ContextTooLong { .. }), "{e:?}");
        let e = map_error(
            400,
            body("invalid_request_error", "max_tokens: 10000 > 4096").as_bytes(),
            1,
            "m",
            "K",
        );
        assert!(
            matches!(e, LlmError::InvalidRequest { status: 400, .. }),
            "{e:?}"
        );
        let e = map_error(403, body("permission_error", "no").as_bytes(), 1, "m", "K");
        assert!(
            matches!(e, LlmError::InvalidRequest { status: 403, .. }),
            "{e:?}"
        );
        let e = map_error(
            413,
            b"<html>413 Request Entity Too Large</html>",
            1,
            "m",
            "K",
        );
        assert!(matches!(e, LlmError::ContextTooLong { .. }), "{e:?}");
        let e = map_error(500, body("api_error", "oops").as_bytes(), 4, "m", "K");
        assert!(
            matches!(
                e,
                LlmError::Unavailable {
                    status: 500,
                    attempts: 4,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = map_error(404, b"", 1, "m", "K");
        assert!(
            matches!(&e, LlmError::InvalidRequest { status: 404, message, .. } if message == "(no body)"),
            "{e:?}"
        );
        let long = "x".repeat(2000);
        let LlmError::InvalidRequest { message, .. } = map_error(
            400,
            body("invalid_request_error", &long).as_bytes(),
            1,
            "m",
            "K",
        ) else {
            panic!()
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn stop_reasons_and_missing_usage_fields() {
        let parse = |stop: &str| {
            parse_response(
                json!({"content": [], "stop_reason": stop, "model": "m",
                       "usage": {"input_tokens": 3, "output_tokens": 1}})
                .to_string()
                .as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(parse("stop_sequence").stop_reason, StopReason::StopSequence);
        assert_eq!(parse("refusal").stop_reason, StopReason::Refusal);
        assert_eq!(parse("max_tokens").stop_reason, StopReason::MaxTokens);
        assert_eq!(
            parse("pause_turn").stop_reason,
            StopReason::Other("pause_turn".into())
        );
        let r = parse("end_turn");
        assert_eq!(r.usage.input_tokens, 3);
        assert_eq!(r.usage.cache_read_tokens, 0);
        assert!(matches!(
            parse_response(b"not json"),
            Err(LlmError::InvalidResponse { .. })
        ));
    }
}
