//! The provider-neutral conversation: what every role's tool loop sends and
//! gets back, whichever API serves it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One piece of a message. Tool calls come from the assistant; their results
/// go back in the next user message, in the order of the calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default)]
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    pub fn user_text(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    pub fn assistant_text(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    /// The tool calls in this message, in order.
    pub fn tool_uses(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.content.iter().filter_map(|b| match b {
            ContentBlock::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }

    /// All text blocks, joined.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A tool the model may call; `input_schema` is a JSON Schema object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// One model call. Prompt layout for caching: `system` and `tools` never change
/// within a loop, and `messages` only grows, so every call's prefix is the
/// previous call's whole request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub system: String,
    pub tools: Vec<ToolDef>,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
}

/// Token counts, the same for every provider: `input_tokens` are those billed
/// at the full input price (not read from or written to the cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Every input token, however billed.
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
    }

    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
    }

    /// The share of input tokens served from the cache, 0.0 to 1.0.
    pub fn cache_share(&self) -> f64 {
        match self.total_input() {
            0 => 0.0,
            total => self.cache_read_tokens as f64 / total as f64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its turn.
    EndTurn,
    /// The model wants tool results.
    ToolUse,
    /// Cut off at `max_tokens`.
    MaxTokens,
    StopSequence,
    /// The model declined (safety).
    Refusal,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Text and tool-use blocks, in the order the model produced them.
    pub content: Vec<ContentBlock>,
    pub stop_reason: StopReason,
    pub usage: Usage,
    /// The model that answered, as the provider names it.
    pub model: String,
}

impl ChatResponse {
    pub fn message(&self) -> Message {
        Message {
            role: Role::Assistant,
            content: self.content.clone(),
        }
    }
}

/// What went wrong, with what to do next. No variant ever carries an API key.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{provider} rejected the API key ({status}): {message}; check {key_env}")]
    Auth {
        provider: String,
        status: u16,
        message: String,
        key_env: String,
    },
    #[error(
        "{provider} does not know model {model:?}: {message}; check the role's `model` in .github/missions.yml"
    )]
    UnknownModel {
        provider: String,
        model: String,
        message: String,
    },
    #[error(
        "the conversation is longer than {provider}'s context window for this model: {message}; lower the turn limit or use a model with a longer context"
    )]
    ContextTooLong { provider: String, message: String },
    #[error("{provider} refused the request ({status}): {message}")]
    InvalidRequest {
        provider: String,
        status: u16,
        message: String,
    },
    #[error(
        "{provider} is rate limiting or overloaded ({status}) and did not recover after {attempts} attempts: {message}"
    )]
    Unavailable {
        provider: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("could not reach {provider} at {url}: {message}")]
    Transport {
        provider: String,
        url: String,
        message: String,
    },
    #[error("unexpected answer from {provider}: {message}")]
    InvalidResponse { provider: String, message: String },
    /// The scripted provider ran out of responses or its script is malformed.
    #[error("scripted model: {0}")]
    Script(String),
}

/// A model API. Implementations retry what is worth retrying themselves.
#[async_trait]
pub trait Provider: Send + Sync {
    /// `anthropic`, `openai`, `scripted`, …
    fn name(&self) -> &str;

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;
}
