//! A provider that replays a script of answers and records every request: for
//! tests, and for the offline demo.
//!
//! # Script format
//!
//! A JSON array of turns, or JSON Lines (one turn per line; blank lines and
//! lines starting with `#` are skipped). Turn *n* answers the *n*-th call,
//! whatever was asked. Each turn is either text:
//!
//! ```json
//! {"text": "Done: the README now documents the flags."}
//! ```
//!
//! or tool calls, with optional text before them:
//!
//! ```json
//! {"text": "Let me look.", "tool_calls": [
//!     {"name": "read_file", "input": {"path": "README.md"}},
//!     {"name": "list_dir", "input": {"path": "src"}}
//! ]}
//! ```
//!
//! `input` defaults to `{}`. Tool-call ids are generated in order over the
//! whole script: `call_1`, `call_2`, … Optional fields on any turn:
//!
//! - `"usage"`: `{"input_tokens", "output_tokens", "cache_read_tokens",
//!   "cache_write_tokens"}`, each defaulting to 0. Without it, usage is
//!   estimated so budgets move in demos: input tokens are the request's JSON
//!   size in bytes / 4, output tokens the answer's content JSON size / 4
//!   (rounded up), nothing cached;
//! - `"stop_reason"`: `"end_turn"`, `"tool_use"`, `"max_tokens"`,
//!   `"stop_sequence"`, `"refusal"` or `{"other": "..."}`; by default
//!   `tool_use` when the turn has tool calls, else `end_turn`;
//! - `"latency_ms"`: how long the answer takes to come (default: at once),
//!   as a real model's does, for benchmarks of work that runs side by side
//!   (this provider only: the server third-party engines talk to answers at
//!   once).
//!
//! Unknown fields are errors, so a misspelt field does not pass silently. The
//! answer's model is the requested one, so prices apply as they would for
//! that model. Asking for more turns than the script has is an
//! [`LlmError::Script`] (the request is still recorded).
//!
//! Requests are recorded in memory ([`Scripted::requests`]) and, when
//! [`RECORD_DIR_VAR`] names a directory as a script file is loaded (or with
//! [`Scripted::recording_into`]), also appended to a file there as JSON Lines:
//! tests read what a job's models were sent from outside its process.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{ChatRequest, ChatResponse, ContentBlock, LlmError, Provider, StopReason, Usage};

/// One scripted answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedTurn {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
    #[serde(default, deserialize_with = "partial_usage")]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    /// Milliseconds before the answer comes, as a real model takes time:
    /// for benchmarks and tests of work that runs side by side.
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

impl ScriptedTurn {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }

    pub fn tool_calls(calls: impl IntoIterator<Item = ScriptedCall>) -> Self {
        Self {
            tool_calls: calls.into_iter().collect(),
            ..Self::default()
        }
    }

    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    pub fn with_stop_reason(mut self, stop_reason: StopReason) -> Self {
        self.stop_reason = Some(stop_reason);
        self
    }
}

/// One scripted tool call; its id is generated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    pub name: String,
    #[serde(default = "empty_object")]
    pub input: Value,
}

impl ScriptedCall {
    pub fn new(name: impl Into<String>, input: Value) -> Self {
        Self {
            name: name.into(),
            input,
        }
    }
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// `usage` with every count optional.
fn partial_usage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Usage>, D::Error> {
    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Partial {
        input_tokens: u64,
        output_tokens: u64,
        cache_read_tokens: u64,
        cache_write_tokens: u64,
    }
    Ok(Option::<Partial>::deserialize(d)?.map(|p| Usage {
        input_tokens: p.input_tokens,
        output_tokens: p.output_tokens,
        cache_read_tokens: p.cache_read_tokens,
        cache_write_tokens: p.cache_write_tokens,
    }))
}

#[derive(Debug, Default)]
struct State {
    next_turn: usize,
    next_call: u64,
    requests: Vec<ChatRequest>,
}

/// The environment variable naming a directory where every scripted
/// provider loaded from a file records the requests it receives.
pub const RECORD_DIR_VAR: &str = "MISSIONS_SCRIPTED_RECORD_DIR";

/// Replays [`ScriptedTurn`]s in order; safe to share between tasks.
#[derive(Debug)]
pub struct Scripted {
    turns: Vec<ScriptedTurn>,
    state: Mutex<State>,
    /// Each request is appended here as one JSON line.
    record: Option<PathBuf>,
}

impl Scripted {
    pub fn new(turns: Vec<ScriptedTurn>) -> Self {
        Self {
            turns,
            state: Mutex::default(),
            record: None,
        }
    }

    /// Also appends every request, as one JSON line, to a new file in `dir`
    /// (created if missing).
    pub fn recording_into(mut self, dir: impl AsRef<Path>) -> Self {
        let name = format!(
            "{}-{}.jsonl",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        self.record = Some(dir.as_ref().join(name));
        self
    }

    fn record(&self, request: &ChatRequest) -> Result<(), LlmError> {
        let Some(path) = &self.record else {
            return Ok(());
        };
        let fail = |e: std::io::Error| {
            LlmError::Script(format!(
                "cannot record the request in {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut line = serde_json::to_vec(request).map_err(|e| LlmError::Script(format!("{e}")))?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(&line))
            .map_err(fail)
    }

    /// A JSON array of turns, or JSON Lines (see the module docs).
    pub fn from_json(script: &str) -> Result<Self, LlmError> {
        let trimmed = script.trim_start();
        let turns: Vec<ScriptedTurn> = if trimmed.starts_with('[') {
            serde_json::from_str(trimmed).map_err(|e| LlmError::Script(format!("{e}")))?
        } else {
            script
                .lines()
                .enumerate()
                .filter(|(_, line)| {
                    let line = line.trim();
                    !line.is_empty() && !line.starts_with('#')
                })
                .map(|(n, line)| {
                    serde_json::from_str(line)
                        .map_err(|e| LlmError::Script(format!("line {}: {e}", n + 1)))
                })
                .collect::<Result<_, _>>()?
        };
        for (n, turn) in turns.iter().enumerate() {
            if turn.text.is_none() && turn.tool_calls.is_empty() {
                return Err(LlmError::Script(format!(
                    "turn {} has neither \"text\" nor \"tool_calls\"",
                    n + 1
                )));
            }
        }
        Ok(Self::new(turns))
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LlmError> {
        let path = path.as_ref();
        let script = std::fs::read_to_string(path)
            .map_err(|e| LlmError::Script(format!("cannot read {}: {e}", path.display())))?;
        let scripted = Self::from_json(&script).map_err(|e| match e {
            LlmError::Script(m) => LlmError::Script(format!("{}: {m}", path.display())),
            other => other,
        })?;
        Ok(match std::env::var_os(RECORD_DIR_VAR) {
            Some(dir) if !dir.is_empty() => scripted.recording_into(dir),
            _ => scripted,
        })
    }

    /// The script's turns, in order.
    pub fn turns(&self) -> &[ScriptedTurn] {
        &self.turns
    }

    /// Every request received so far, in order (including one that found the
    /// script exhausted).
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.lock().requests.clone()
    }

    /// Turns in the script.
    pub fn len(&self) -> usize {
        self.turns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Turns not yet replayed.
    pub fn remaining(&self) -> usize {
        self.turns.len().saturating_sub(self.lock().next_turn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The turns of a script file (see the module docs for the format), for
/// [`super::serve::ScriptServer`].
pub fn read_script(path: impl AsRef<Path>) -> Result<Vec<ScriptedTurn>, LlmError> {
    let path = path.as_ref();
    let script = std::fs::read_to_string(path)
        .map_err(|e| LlmError::Script(format!("cannot read {}: {e}", path.display())))?;
    Scripted::from_json(&script)
        .map(|scripted| scripted.turns)
        .map_err(|e| match e {
            LlmError::Script(m) => LlmError::Script(format!("{}: {m}", path.display())),
            other => other,
        })
}

/// Tokens as bytes / 4, rounded up: roughly right for English and JSON.
fn estimate_tokens<T: serde::Serialize + ?Sized>(value: &T) -> u64 {
    let bytes = serde_json::to_vec(value).map_or(0, |b| b.len()) as u64;
    bytes.div_ceil(4)
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let (response, latency) = self.answer(request)?;
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
        Ok(response)
    }
}

impl Scripted {
    /// The next turn's answer to `request`, and how long it takes to come.
    fn answer(
        &self,
        request: &ChatRequest,
    ) -> Result<(ChatResponse, Option<std::time::Duration>), LlmError> {
        self.record(request)?;
        let mut state = self.lock();
        state.requests.push(request.clone());
        let Some(turn) = self.turns.get(state.next_turn) else {
            let n = self.turns.len();
            return Err(LlmError::Script(format!(
                "the script has {n} turns; turn {} was requested",
                n + 1
            )));
        };
        state.next_turn += 1;

        let mut content = Vec::new();
        if let Some(text) = &turn.text {
            content.push(ContentBlock::Text { text: text.clone() });
        }
        for call in &turn.tool_calls {
            state.next_call += 1;
            content.push(ContentBlock::ToolUse {
                id: format!("call_{}", state.next_call),
                name: call.name.clone(),
                input: call.input.clone(),
            });
        }
        let stop_reason = turn
            .stop_reason
            .clone()
            .unwrap_or(if turn.tool_calls.is_empty() {
                StopReason::EndTurn
            } else {
                StopReason::ToolUse
            });
        let usage = turn.usage.unwrap_or_else(|| Usage {
            input_tokens: estimate_tokens(request),
            output_tokens: estimate_tokens(&content),
            ..Usage::default()
        });
        let response = ChatResponse {
            content,
            stop_reason,
            usage,
            model: request.model.clone(),
        };
        Ok((
            response,
            turn.latency_ms.map(std::time::Duration::from_millis),
        ))
    }
}
