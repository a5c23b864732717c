//! The OpenAI Chat Completions API (`POST {base}/chat/completions`), and the
//! servers that speak it: OpenRouter (`https://openrouter.ai/api/v1`), vLLM,
//! the llama.cpp server, Ollama (`http://localhost:11434/v1`), …
//!
//! The mapping from the neutral conversation:
//!
//! - the system prompt goes first, as a `system` message (left out when empty;
//!   OpenAI's newer models take it as a `developer` message);
//! - a user message's tool results become one `tool` message each
//!   (`tool_call_id`, `content`), in order, right after the assistant message
//!   that made the calls, as the API requires; its text, if any, follows as a
//!   `user` message. The API has no `is_error` flag, so an error result's
//!   content is prefixed with `Error: `;
//! - an assistant message becomes `content` (its text, or `null`) and
//!   `tool_calls: [{id, type: "function", function: {name, arguments}}]`,
//!   where `arguments` is the input serialized as a JSON string;
//! - tools become `{type: "function", function: {name, description,
//!   parameters}}` (the `tools` field is left out when there are none: the API
//!   rejects an empty array), with `tool_choice: "required"`: every answer
//!   of the agent loop must call a tool (`finish` included), and OpenAI, vLLM,
//!   the llama.cpp server and `scripts/local-model` then constrain the answer
//!   to a call instead of letting a small model write one as prose.
//!
//! Tool-call arguments that are not valid JSON are kept as a JSON *string*
//! input holding the raw text: a string is never valid input for a tool
//! (whose schema is an object), so the agent loop reports it back to the
//! model as invalid input, and when the conversation is sent again the
//! string goes back verbatim as `arguments`, so the model sees exactly what
//! it wrote. Empty arguments (some local servers send `""` for a call
//! without parameters) are `{}`; arguments sent as a JSON object instead of
//! a string (some compatible servers) are taken as they are.
//!
//! The output limit is sent as `max_completion_tokens` to api.openai.com and
//! as `max_tokens` to every other server, never both: OpenAI deprecated
//! `max_tokens`, and its reasoning models (o-series, GPT-5) reject it with
//! 400 `unsupported_parameter` even alongside `max_completion_tokens`;
//! Ollama's compatibility layer documents only `max_tokens`, as do most
//! local servers. [`OpenAi::with_max_tokens_field`] overrides the choice.
//!
//! Usage: OpenAI's `prompt_tokens` include the cached ones
//! (`usage.prompt_tokens_details.cached_tokens`), so `input_tokens` is their
//! difference and `cache_read_tokens` the cached count; OpenAI charges
//! nothing for cache writes. A server that reports no usage costs nothing.
//!
//! Errors (`{"error": {"message", "type", "param", "code"}}`): 401 is
//! [`LlmError::Auth`]; 404 or code `model_not_found` is
//! [`LlmError::UnknownModel`] (a 404 without an error body means the base URL
//! is wrong, an [`LlmError::InvalidRequest`]); code `context_length_exceeded`
//! (or a 400 saying "maximum context length", as vLLM's do, or the llama.cpp
//! server's type `exceed_context_size_error`) is
//! [`LlmError::ContextTooLong`]; 429 `insufficient_quota` is a billing
//! problem, answered at once as [`LlmError::InvalidRequest`] without retries;
//! other 429s, 408, 409 and 5xx are retried (honouring `retry-after-ms` and
//! `retry-after`) and, when they persist, [`LlmError::Unavailable`]; other
//! 4xx are [`LlmError::InvalidRequest`]. The API key is a sensitive header,
//! never logged, and removed from any error message a server echoes it in.

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::http::{self, HttpRetry};
use super::{
    ChatRequest, ChatResponse, ContentBlock, LlmError, Message, Provider, Role, StopReason, Usage,
};

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_KEY_ENV: &str = "OPENAI_API_KEY";
const PROVIDER: &str = "openai";
/// Error messages from servers are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 1_000;

/// The name under which the output limit is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_completion_tokens`: OpenAI's current name, required by its reasoning models.
    MaxCompletionTokens,
    /// `max_tokens`: the deprecated name most compatible servers know.
    MaxTokens,
}

impl MaxTokensField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxCompletionTokens => "max_completion_tokens",
            Self::MaxTokens => "max_tokens",
        }
    }

    /// `max_completion_tokens` for api.openai.com, `max_tokens` elsewhere.
    pub fn for_base_url(base_url: &str) -> Self {
        let host = base_url
            .split_once("://")
            .map_or(base_url, |(_, rest)| rest)
            .split(['/', ':'])
            .next()
            .unwrap_or_default();
        if host.eq_ignore_ascii_case("api.openai.com") {
            Self::MaxCompletionTokens
        } else {
            Self::MaxTokens
        }
    }
}

/// A Chat Completions endpoint. `Debug` shows no key.
#[derive(Debug, Clone)]
pub struct OpenAi {
    base_url: String,
    api_key: Option<SecretString>,
    client: reqwest::Client,
    retry: HttpRetry,
    key_env: String,
    max_tokens_field: MaxTokensField,
}

impl OpenAi {
    /// `base_url` is the API root, e.g. [`DEFAULT_BASE_URL`] or
    /// `http://localhost:11434/v1`; `/chat/completions` is appended. Without a
    /// key no `Authorization` header is sent (local servers need none).
    pub fn new(api_key: Option<SecretString>, base_url: impl Into<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        let max_tokens_field = MaxTokensField::for_base_url(&base_url);
        Self {
            base_url,
            api_key,
            client: http::client(),
            retry: HttpRetry::default(),
            key_env: DEFAULT_KEY_ENV.to_owned(),
            max_tokens_field,
        }
    }

    pub fn with_retry(mut self, retry: HttpRetry) -> Self {
        self.retry = retry;
        self
    }

    /// The environment variable the key came from, named in auth errors.
    pub fn with_key_env(mut self, key_env: impl Into<String>) -> Self {
        self.key_env = key_env.into();
        self
    }

    pub fn with_max_tokens_field(mut self, field: MaxTokensField) -> Self {
        self.max_tokens_field = field;
        self
    }

    /// Replaces the client from [`http::client`] (build it after
    /// [`http::install_crypto_provider`]).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    /// The JSON body sent for `request`.
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert(
            self.max_tokens_field.as_str().into(),
            json!(request.max_tokens),
        );
        body.insert("messages".into(), Value::Array(wire_messages(request)));
        if !request.tools.is_empty() {
            let tools = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.input_schema,
                        }
                    })
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            // The agent loop wants a tool call in every answer (it ends runs
            // that answer twice in prose); small open-weight models otherwise
            // write the call as text in a code block.
            body.insert("tool_choice".into(), json!("required"));
        }
        Value::Object(body)
    }

    fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, LlmError> {
        let Some(key) = &self.api_key else {
            return Ok(Vec::new());
        };
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).map_err(|_| {
                LlmError::Auth {
                    provider: PROVIDER.into(),
                    status: 0,
                    message: "the API key contains characters not allowed in an HTTP header".into(),
                    key_env: self.key_env.clone(),
                }
            })?;
        value.set_sensitive(true);
        Ok(vec![(AUTHORIZATION, value)])
    }

    /// Removes the key from text a server sent back.
    fn scrub(&self, text: &str) -> String {
        let text = match &self.api_key {
            Some(key) if !key.expose_secret().is_empty() => {
                text.replace(key.expose_secret(), "[redacted]")
            }
            _ => text.to_owned(),
        };
        text.chars().take(MAX_MESSAGE_CHARS).collect()
    }

    fn error(&self, request: &ChatRequest, answer: &http::Answer) -> LlmError {
        let status = answer.status;
        let detail = ErrorBody::parse(&answer.body);
        let message = self.scrub(&detail.message);
        let provider = PROVIDER.to_owned();
        let code = detail.code.as_deref().unwrap_or_default();
        if status == 401 {
            return LlmError::Auth {
                provider,
                status,
                message,
                key_env: self.key_env.clone(),
            };
        }
        if code == "model_not_found" || (status == 404 && detail.structured) {
            return LlmError::UnknownModel {
                provider,
                model: request.model.clone(),
                message,
            };
        }
        if status == 404 {
            return LlmError::InvalidRequest {
                provider,
                status,
                message: format!(
                    "no Chat Completions endpoint at {}: {message}; check the base URL",
                    self.endpoint()
                ),
            };
        }
        if code == "context_length_exceeded"
            || detail.kind.as_deref() == Some("exceed_context_size_error")
            || (status == 400 && message.contains("maximum context length"))
        {
            return LlmError::ContextTooLong { provider, message };
        }
        if detail.is_insufficient_quota() {
            return LlmError::InvalidRequest {
                provider,
                status,
                message: format!(
                    "{message} (the account's quota or credit is used up: check the plan and billing details)"
                ),
            };
        }
        if http::retryable(status) {
            return LlmError::Unavailable {
                provider,
                status,
                attempts: answer.attempts,
                message,
            };
        }
        if (400..500).contains(&status) {
            return LlmError::InvalidRequest {
                provider,
                status,
                message,
            };
        }
        LlmError::InvalidResponse {
            provider,
            message: format!("status {status}: {message}"),
        }
    }
}

#[async_trait]
impl Provider for OpenAi {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let headers = self.headers()?;
        let body = serde_json::to_vec(&self.request_body(request)).map_err(|e| {
            LlmError::InvalidResponse {
                provider: PROVIDER.into(),
                message: format!("could not encode the request: {e}"),
            }
        })?;
        let url = self.endpoint();
        let answer = http::post_json_with(
            &self.client,
            PROVIDER,
            &url,
            &headers,
            Bytes::from(body),
            self.retry,
            final_answer,
        )
        .await?;
        if !(200..300).contains(&answer.status) {
            let error = self.error(request, &answer);
            tracing::warn!(provider = PROVIDER, status = answer.status, attempts = answer.attempts, error = %error, "model call failed");
            return Err(error);
        }
        parse_response(&answer.body, &request.model).map_err(|message| LlmError::InvalidResponse {
            provider: PROVIDER.into(),
            message: self.scrub(&message),
        })
    }
}

/// Answers not worth retrying although their status usually is: an exhausted
/// quota (429 `insufficient_quota`), or the server saying so (`x-should-retry:
/// false`, which OpenAI's own SDKs obey).
fn final_answer(_status: u16, headers: &HeaderMap, body: &[u8]) -> bool {
    let no_retry = headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    no_retry || ErrorBody::parse(body).is_insufficient_quota()
}

// ------------------------------------------------------------------ request

fn wire_messages(request: &ChatRequest) -> Vec<Value> {
    let mut out = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        out.push(json!({"role": "system", "content": request.system}));
    }
    for message in &request.messages {
        match message.role {
            Role::User => user_messages(message, &mut out),
            Role::Assistant => out.push(assistant_message(message)),
        }
    }
    out
}

fn user_messages(message: &Message, out: &mut Vec<Value>) {
    let mut texts = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let content = if *is_error {
                    format!("Error: {content}")
                } else {
                    content.clone()
                };
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}));
            }
            ContentBlock::Text { text } => texts.push(text.as_str()),
            // A user message carries no tool calls; nothing to send for one.
            ContentBlock::ToolUse { .. } => {}
        }
    }
    if !texts.is_empty() {
        out.push(json!({"role": "user", "content": texts.join("\n")}));
    }
}

fn assistant_message(message: &Message) -> Value {
    let texts: Vec<&str> = message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let calls: Vec<Value> = message
        .tool_uses()
        .map(|(id, name, input)| {
            let arguments = match input {
                // Unparsable arguments as the model wrote them (see the module docs).
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            };
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
        })
        .collect();
    let mut wire = Map::new();
    wire.insert("role".into(), json!("assistant"));
    let content = match (texts.is_empty(), calls.is_empty()) {
        (false, _) => json!(texts.join("\n")),
        (true, false) => Value::Null,
        (true, true) => json!(""),
    };
    wire.insert("content".into(), content);
    if !calls.is_empty() {
        wire.insert("tool_calls".into(), Value::Array(calls));
    }
    Value::Object(wire)
}

// ----------------------------------------------------------------- response

fn parse_response(body: &[u8], requested_model: &str) -> Result<ChatResponse, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })?;
    let choice = value
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| format!("no choices in the answer: {value}"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| format!("no message in the first choice: {choice}"))?;

    let mut content = Vec::new();
    if let Some(text) = message.get("content").and_then(Value::as_str)
        && !text.is_empty()
    {
        content.push(ContentBlock::Text { text: text.into() });
    }
    let refusal = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    if let Some(refusal) = refusal {
        content.push(ContentBlock::Text {
            text: refusal.into(),
        });
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, call) in calls.iter().enumerate() {
        let function = call
            .get("function")
            .ok_or_else(|| format!("a tool call without a function: {call}"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a tool call without a name: {call}"))?;
        let id = match call.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => format!("call_{}", index + 1),
        };
        content.push(ContentBlock::ToolUse {
            id,
            name: name.to_owned(),
            input: parse_arguments(function.get("arguments")),
        });
    }

    let has_calls = !calls.is_empty();
    let stop_reason = match choice.get("finish_reason").and_then(Value::as_str) {
        _ if refusal.is_some() => StopReason::Refusal,
        // Some compatible servers (older Ollama, llama.cpp) say "stop" after tool calls.
        Some("stop") | None if has_calls => StopReason::ToolUse,
        Some("stop") | None => StopReason::EndTurn,
        Some("tool_calls" | "function_call") => StopReason::ToolUse,
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::Refusal,
        Some(other) => StopReason::Other(other.to_owned()),
    };

    let usage = value.get("usage").map(parse_usage).unwrap_or_default();
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(requested_model)
        .to_owned();
    Ok(ChatResponse {
        content,
        stop_reason,
        usage,
        model,
    })
}

fn parse_arguments(arguments: Option<&Value>) -> Value {
    match arguments {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(raw)) if raw.trim().is_empty() => json!({}),
        Some(Value::String(raw)) => {
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()))
        }
        Some(other) => other.clone(),
    }
}

fn parse_usage(usage: &Value) -> Usage {
    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let prompt = count(usage.get("prompt_tokens"));
    let cached = count(usage.pointer("/prompt_tokens_details/cached_tokens"));
    Usage {
        input_tokens: prompt.saturating_sub(cached),
        output_tokens: count(usage.get("completion_tokens")),
        cache_read_tokens: cached.min(prompt),
        cache_write_tokens: 0,
    }
}

/// What an error answer says, from OpenAI's `{"error": {...}}` or the shapes
/// compatible servers use (`{"error": "..."}`, vLLM's `{"message", "type",
/// "code"}`, `{"detail": ...}`), else the raw text.
struct ErrorBody {
    message: String,
    kind: Option<String>,
    code: Option<String>,
    /// The body was a JSON error object, not (say) an HTML 404 page.
    structured: bool,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> Self {
        let raw = || String::from_utf8_lossy(body).trim().to_owned();
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Self {
                message: raw(),
                kind: None,
                code: None,
                structured: false,
            };
        };
        let error = match value.get("error") {
            Some(e @ Value::Object(_)) => e,
            _ => &value,
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let message = text(error.get("message"))
            .or_else(|| text(value.get("error")))
            .or_else(|| value.get("detail").map(|d| d.to_string()))
            .unwrap_or_else(raw);
        Self {
            message,
            kind: text(error.get("type")),
            code: text(error.get("code")),
            structured: value.is_object()
                && (value.get("error").is_some()
                    || value.get("message").is_some()
                    || value.get("detail").is_some()),
        }
    }

    /// OpenAI puts `insufficient_quota` in `code`, and in `type` in older answers.
    fn is_insufficient_quota(&self) -> bool {
        self.code.as_deref() == Some("insufficient_quota")
            || self.kind.as_deref() == Some("insufficient_quota")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_tokens_field_by_host() {
        use MaxTokensField::*;
        assert_eq!(
            MaxTokensField::for_base_url(DEFAULT_BASE_URL),
            MaxCompletionTokens
        );
        assert_eq!(
            MaxTokensField::for_base_url("https://API.openai.com:443/v1"),
            MaxCompletionTokens
        );
        assert_eq!(
            MaxTokensField::for_base_url("https://openrouter.ai/api/v1"),
            MaxTokens
        );
        assert_eq!(
            MaxTokensField::for_base_url("http://localhost:11434/v1"),
            MaxTokens
        );
        assert_eq!(
            MaxTokensField::for_base_url("https://api.openai.com.evil.example/v1"),
            MaxTokens
        );
    }

    #[test]
    fn arguments() {
        assert_eq!(parse_arguments(Some(&json!("{\"a\":1}"))), json!({"a": 1}));
        assert_eq!(parse_arguments(Some(&json!(""))), json!({}));
        assert_eq!(parse_arguments(None), json!({}));
        assert_eq!(parse_arguments(Some(&json!({"a": 1}))), json!({"a": 1}));
        assert_eq!(parse_arguments(Some(&json!("{\"a\":"))), json!("{\"a\":"));
    }

    #[test]
    fn usage_never_underflows() {
        let u = parse_usage(&json!({"prompt_tokens": 5, "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 9}}));
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.output_tokens),
            (0, 5, 2)
        );
        let u = parse_usage(&json!({"prompt_tokens": 5, "completion_tokens": 2,
            "prompt_tokens_details": null}));
        assert_eq!((u.input_tokens, u.cache_read_tokens), (5, 0));
    }

    #[test]
    fn error_bodies() {
        let e = ErrorBody::parse(
            br#"{"error":{"message":"m","type":"insufficient_quota","param":null,"code":null}}"#,
        );
        assert!(e.structured && e.is_insufficient_quota() && e.message == "m");
        let e = ErrorBody::parse(
            br#"{"object":"error","message":"too long","type":"BadRequestError","code":400}"#,
        );
        assert_eq!(
            (e.message.as_str(), e.code.as_deref()),
            ("too long", Some("400"))
        );
        let e = ErrorBody::parse(br#"{"error":"model 'x' not found"}"#);
        assert!(e.structured && e.message == "model 'x' not found");
        let e = ErrorBody::parse(b"404 page not found");
        assert!(!e.structured && e.message == "404 page not found");
    }
}
