//! The loop: ask the model, run the tools it calls, send the results back,
//! until it calls `finish` with a valid value or a limit stops it.
//!
//! The conversation only grows (earlier messages are never rewritten), so each
//! request's prefix is the previous request and the provider's prompt cache
//! serves it; `system` and the tool list are fixed for the run. The exception
//! is compaction (see [`super::compact`]): near the model's context window,
//! older turns are cut down, and only the first message and what precedes it
//! stay as they were.
//!
//! Real models misbehave in a few known ways, and each has a rule here:
//! several calls in one answer run in order (a `finish` among them is not
//! taken: it was written before the results were seen); a call to an unknown tool, with
//! arguments that are not a JSON object, or with arguments that break the
//! tool's schema is answered with an error that says what to send instead;
//! an answer without a tool call is nudged once, and a second one in a row
//! ends the run as incomplete; the same call failing the same way
//! [`AgentConfig::max_repeated_failures`] times in a row ends the run with a
//! note saying which call.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::compact::{self, clip};
use super::tools::{BashConfig, CommandRecord, Tool, ToolSet, Workspace};
use crate::llm::{
    ChatRequest, ContentBlock, LlmError, Message, Provider, Role, StopReason, ToolDef, Usage,
};

/// The name of the tool that ends a run.
pub const FINISH_TOOL: &str = "finish";

/// What the model is told when it answers without calling a tool.
pub const NUDGE: &str = "Call `finish` when you are done, or use a tool. Another answer without a tool call ends the run without a result.";

/// The answer to a `finish` that came with other calls in one answer.
pub const FINISH_NOT_ALONE: &str = "finish was not taken: it came in the same answer as other calls, before you saw their results. Call finish on its own, in a later answer.";

/// The context window assumed when a role's model does not say.
pub const DEFAULT_CONTEXT_WINDOW: u32 = 200_000;

/// The tool that hands a question to a read-only sub-agent (an explorer).
pub const EXPLORE_TOOL: &str = "explore";

/// How many explorers of one answer run at the same time when nothing says.
pub const EXPLORERS_AT_ONCE: usize = 4;

/// Builds the provider of a run's *n*-th `explore` call (1-based, in the
/// model's order): a fresh one per call, so that a scripted explorer replays
/// its own script whatever finishes first.
pub type ExplorerProvider = Arc<dyn Fn(u32) -> Result<Arc<dyn Provider>, String> + Send + Sync>;

/// What a run's `explore` calls run on. An explorer is a fresh agent with the
/// looking tools only (read_file, list_files, grep: no writes, no commands,
/// nothing that reaches the network) and no `explore` of its own; it answers
/// one question and its answer is the call's result.
#[derive(Clone)]
pub struct Explorer {
    pub provider: ExplorerProvider,
    pub model: String,
    pub prices: crate::llm::pricing::Prices,
    /// The explorer's own prompt (`prompts/explorer.md`).
    pub system: String,
    /// Each explorer's own limits; its wall time is also cut to what is left
    /// of the run that called it.
    pub limits: Limits,
    pub max_tokens: u32,
    pub context_window: u32,
    /// Explorers of one answer running at the same time, at least 1.
    pub at_once: usize,
}

impl fmt::Debug for Explorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Explorer")
            .field("model", &self.model)
            .field("limits", &self.limits)
            .field("at_once", &self.at_once)
            .finish_non_exhaustive()
    }
}

impl Explorer {
    /// The limits an explorer gets when nothing says: a question, not a job.
    pub const LIMITS: Limits = Limits {
        max_turns: 20,
        max_total_tokens: 1_000_000,
        max_wall_time: Duration::from_secs(5 * 60),
    };

    fn def(&self) -> ToolDef {
        ToolDef {
            name: EXPLORE_TOOL.into(),
            description: format!(
                "Hand a question about the checkout to a helper that reads for you and answers \
                 in a few paragraphs: where something is defined, how a part works, which files \
                 a change touches. The helper is a fresh agent that sees only your question \
                 (not this conversation) and can only look (read_file, list_files, grep); it \
                 cannot change files or run commands. Its reading stays out of your context, so \
                 use it for searches whose every step you do not need to see. Several explore \
                 calls in one answer run at the same time (at most {} at once); each has at \
                 most {} model calls and {} s.",
                self.at_once.max(1),
                self.limits.max_turns,
                self.limits.max_wall_time.as_secs()
            ),
            input_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "question": {"type": "string", "minLength": 1, "description": "What you want to know, with enough context to answer it alone."},
                    "paths": {"type": "array", "items": {"type": "string"}, "description": "Files or directories to start from, relative to the checkout root (optional)."}
                },
                "required": ["question"],
                "additionalProperties": false
            }),
        }
    }
}

/// A rule a `finish` value must meet beyond its schema (e.g. a plan's coverage):
/// every way the value breaks it, empty when it holds. Called only on values
/// that match the schema.
pub type FinishCheck = Arc<dyn Fn(&Value) -> Vec<Violation> + Send + Sync>;

/// The role's result schema, compiled once. Providers require tool inputs to be
/// objects, so the schema must say `"type": "object"`. An optional
/// [`FinishCheck`] runs after the schema; its violations are answered like
/// schema errors.
#[derive(Clone)]
pub struct FinishSpec {
    schema: Value,
    description: String,
    validator: Arc<jsonschema::Validator>,
    check: Option<FinishCheck>,
}

impl fmt::Debug for FinishSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinishSpec")
            .field("schema", &self.schema)
            .field("description", &self.description)
            .field("check", &self.check.is_some())
            .finish_non_exhaustive()
    }
}

impl FinishSpec {
    /// `description` tells the model what its result is for (e.g. "Your
    /// handoff: …"); validation uses JSON Schema draft 2020-12.
    pub fn new(schema: Value, description: impl Into<String>) -> Result<Self, String> {
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(
                "the finish schema must have \"type\": \"object\" (tool inputs are objects)".into(),
            );
        }
        let validator = jsonschema::draft202012::options()
            .build(&schema)
            .map_err(|e| format!("invalid finish schema: {e}"))?;
        Ok(FinishSpec {
            schema,
            description: description.into(),
            validator: Arc::new(validator),
            check: None,
        })
    }

    /// Adds a semantic check, run on values that match the schema.
    pub fn with_check(mut self, check: FinishCheck) -> Self {
        self.check = Some(check);
        self
    }

    pub fn schema(&self) -> &Value {
        &self.schema
    }

    pub fn def(&self) -> ToolDef {
        let mut description = String::from(
            "End your work by calling this tool once, with your result as its input. The input \
             is checked against the schema; if it does not match, you get the errors back and \
             call it again.",
        );
        if !self.description.is_empty() {
            description.push_str("\n\n");
            description.push_str(&self.description);
        }
        ToolDef {
            name: FINISH_TOOL.into(),
            description,
            input_schema: self.schema.clone(),
        }
    }

    /// Every way `value` breaks the schema or, once it matches the schema,
    /// the check; empty when it is valid.
    pub fn violations(&self, value: &Value) -> Vec<Violation> {
        self.rejection(value).map(|(_, v)| v).unwrap_or_default()
    }

    /// Why `value` is not accepted: what it breaks (the schema or the rules
    /// of the check) and the violations; `None` when it is valid.
    fn rejection(&self, value: &Value) -> Option<(&'static str, Vec<Violation>)> {
        let schema: Vec<Violation> = self
            .validator
            .iter_errors(value)
            .map(|e| Violation {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
        if !schema.is_empty() {
            return Some(("the input does not match the schema", schema));
        }
        let rules = self.check.as_ref().map(|c| c(value)).unwrap_or_default();
        (!rules.is_empty()).then_some(("the result breaks these rules", rules))
    }
}

/// One schema violation in a `finish` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON Pointer into the value; empty for the value itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(root)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// When to stop a run that does not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Model calls.
    pub max_turns: u32,
    /// Summed over calls: every input token (cached or not) plus output.
    pub max_total_tokens: u64,
    pub max_wall_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_turns: 100,
            max_total_tokens: 20_000_000,
            max_wall_time: Duration::from_secs(60 * 60),
        }
    }
}

/// Everything a role's run needs but the provider and the checkout.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub model: String,
    pub system: String,
    /// The first user message: mission state, the stable part of the prompt.
    pub initial_message: String,
    pub tools: ToolSet,
    pub finish: FinishSpec,
    pub limits: Limits,
    /// Output tokens per model call.
    pub max_tokens: u32,
    pub bash: BashConfig,
    /// How many invalid `finish` calls are answered with their errors; one
    /// more ends the run with [`AgentResult::InvalidFinish`].
    pub max_invalid_finish: u32,
    /// The model's context window, in tokens: the conversation is compacted
    /// before a request would come near it.
    pub context_window: u32,
    /// The same call failing the same way this many times in a row ends the
    /// run with [`AgentResult::Repeating`].
    pub max_repeated_failures: u32,
    /// What the run may spend; `None`: no money limit. Explorers' spending
    /// counts toward it.
    pub spend_cap: Option<SpendCap>,
    /// Offers the `explore` tool; `None`: no sub-agents.
    pub explorer: Option<Explorer>,
    /// Offers the `browser_*` tools (one call at a time, in order); `None`:
    /// no browser.
    pub browser: Option<Arc<crate::browser::LazyBrowser>>,
}

/// The smallest answer worth a call: with less of the budget left than this
/// many output tokens cost (after the input), the run stops instead.
pub const MIN_ANSWER_TOKENS: u32 = 1024;

/// The money a run may spend: the job's limit, less what its earlier runs
/// spent, at the model's prices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendCap {
    pub limit_micros: u64,
    /// Spent by the job's earlier agent runs.
    pub spent_before_micros: u64,
    pub prices: crate::llm::pricing::Prices,
}

impl AgentConfig {
    /// The full tool set and default limits; adjust the public fields.
    pub fn new(
        model: impl Into<String>,
        system: impl Into<String>,
        initial_message: impl Into<String>,
        finish: FinishSpec,
    ) -> Self {
        AgentConfig {
            model: model.into(),
            system: system.into(),
            initial_message: initial_message.into(),
            tools: ToolSet::full(),
            finish,
            limits: Limits::default(),
            max_tokens: 8192,
            bash: BashConfig::default(),
            max_invalid_finish: 3,
            context_window: DEFAULT_CONTEXT_WINDOW,
            max_repeated_failures: 3,
            spend_cap: None,
            explorer: None,
            browser: None,
        }
    }
}

/// Which limit stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "limit")]
pub enum Limit {
    Turns {
        max: u32,
    },
    Tokens {
        max: u64,
        used: u64,
    },
    WallTime {
        max_secs: u64,
    },
    /// The next model call could pass the job's spending limit.
    Budget {
        limit_micros: u64,
        spent_micros: u64,
    },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Turns { max } => write!(f, "turn limit reached ({max} model calls)"),
            Limit::Tokens { max, used } => {
                write!(f, "token limit reached ({used} of {max} tokens)")
            }
            Limit::WallTime { max_secs } => write!(f, "time limit reached ({max_secs} s)"),
            Limit::Budget {
                limit_micros,
                spent_micros,
            } => write!(
                f,
                "spending limit reached: {} of the job's {} spent, too little left for another model call",
                crate::llm::pricing::dollars(*spent_micros),
                crate::llm::pricing::dollars(*limit_micros)
            ),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentResult {
    /// The model called `finish` with a value that matches the schema.
    Finished(Value),
    LimitReached(Limit),
    /// The model kept calling `finish` with invalid values; the last errors.
    InvalidFinish(Vec<Violation>),
    /// A model call failed (after the provider's own retries).
    ProviderError(String),
    /// The model declined to continue (stop reason `refusal`); its text.
    Refused(String),
    /// The model answered without a tool call again after it was nudged; its text.
    NoToolCall(String),
    /// The same call failed the same way too many times in a row.
    Repeating {
        /// The call, as `tool {arguments}`, shortened.
        call: String,
        times: u32,
        /// The start of what it answered each time.
        error: String,
    },
    /// The run could not start: the checkout is missing, or no temporary HOME.
    SetupError(String),
}

impl AgentResult {
    /// A short name for logs and statuses: `finished`, `limit_reached`, …
    pub fn kind(&self) -> &'static str {
        match self {
            AgentResult::Finished(_) => "finished",
            AgentResult::LimitReached(_) => "limit_reached",
            AgentResult::InvalidFinish(_) => "invalid_finish",
            AgentResult::ProviderError(_) => "provider_error",
            AgentResult::Refused(_) => "refused",
            AgentResult::NoToolCall(_) => "no_tool_call",
            AgentResult::Repeating { .. } => "repeating",
            AgentResult::SetupError(_) => "setup_error",
        }
    }
}

/// The result and what it took.
#[derive(Debug, Clone)]
pub struct AgentOutcome {
    pub result: AgentResult,
    /// Summed over every model call.
    pub usage: Usage,
    /// Model calls made.
    pub turns: u32,
    /// Every bash command, in order.
    pub commands: Vec<CommandRecord>,
    /// Calls answered with an error without running: unknown tools,
    /// malformed arguments, invalid `finish` values.
    pub rejected_calls: u32,
    /// How many times the conversation was compacted to fit the window.
    pub compactions: u32,
    /// The conversation as last sent (compacted, if it was), starting with
    /// the initial user message.
    pub transcript: Vec<Message>,
    /// `explore` calls run.
    pub explorations: u32,
    /// Summed over every explorer (not in `usage`: an explorer may run on
    /// another model, at other prices).
    pub explorer_usage: Usage,
    /// What the explorers cost, at their model's prices.
    pub explorer_cost_micros: u64,
}

/// Runs one role to its end. Never panics on model or tool failures: they end
/// up in the outcome (or, for tools, in front of the model).
///
/// Tool calls in one answer run in order; a valid `finish` alone in its
/// answer ends the run. The token limit is
/// checked after each answer's tools ran, so a finishing answer always counts.
/// A bash command's timeout is cut to the time left in the run.
pub async fn run_agent(
    provider: &dyn Provider,
    config: AgentConfig,
    checkout: &Path,
) -> AgentOutcome {
    let mut outcome = AgentOutcome {
        result: AgentResult::Finished(Value::Null),
        usage: Usage::default(),
        turns: 0,
        commands: Vec::new(),
        rejected_calls: 0,
        compactions: 0,
        transcript: vec![Message::user_text(&config.initial_message)],
        explorations: 0,
        explorer_usage: Usage::default(),
        explorer_cost_micros: 0,
    };
    let workspace = match Workspace::new(checkout, config.bash.clone()) {
        Ok(w) => w,
        Err(e) => {
            outcome.result =
                AgentResult::SetupError(format!("cannot use checkout {}: {e}", checkout.display()));
            return outcome;
        }
    };
    let mut tools = config.tools.defs(&config.bash);
    tools.extend(config.explorer.as_ref().map(Explorer::def));
    if config.browser.is_some() {
        tools.extend(crate::browser::BrowserTools::defs());
    }
    let schemas = ToolSchemas::new(&tools);
    tools.push(config.finish.def());
    let fixed_chars = compact::fixed_chars(&config.system, &tools);
    let estimate = |messages: &[Message]| compact::estimate(fixed_chars, messages);
    let budget = compact::prompt_budget(config.context_window, config.max_tokens);
    let started = Instant::now();
    let deadline = started + config.limits.max_wall_time;
    let wall_limit = Limit::WallTime {
        max_secs: config.limits.max_wall_time.as_secs(),
    };
    let mut invalid_finishes = 0u32;
    let mut nudged = false;
    let mut failures = RepeatedFailures::new(config.max_repeated_failures);
    // The last call's input tokens, cached or not, as the provider counted them.
    let mut last_input = 0u64;

    outcome.result = 'run: loop {
        if outcome.turns >= config.limits.max_turns {
            break AgentResult::LimitReached(Limit::Turns {
                max: config.limits.max_turns,
            });
        }
        if Instant::now() >= deadline {
            break AgentResult::LimitReached(wall_limit);
        }
        if compact::should_compact(estimate(&outcome.transcript), budget)
            && compact::compact(
                &mut outcome.transcript,
                compact::target(budget, false),
                estimate,
            )
        {
            outcome.compactions += 1;
            tracing::info!(
                turn = outcome.turns,
                tokens = estimate(&outcome.transcript),
                "conversation compacted to fit the context window"
            );
        }
        // The next call may not pass the job's spending limit: its input
        // (the conversation as it is now, or as large as the last call's, if
        // that was larger) must fit with an answer of at least
        // MIN_ANSWER_TOKENS, and the answer is capped at what is left.
        let mut max_tokens = config.max_tokens;
        if let Some(cap) = &config.spend_cap {
            let spent_micros = cap
                .spent_before_micros
                .saturating_add(cap.prices.cost(&outcome.usage))
                .saturating_add(outcome.explorer_cost_micros);
            let input = Usage {
                input_tokens: estimate(&outcome.transcript).max(last_input),
                ..Usage::default()
            };
            let left = cap
                .limit_micros
                .saturating_sub(spent_micros)
                .saturating_sub(cap.prices.cost(&input));
            // $/Mtok is µ$ per token.
            let affordable = if cap.prices.output > 0.0 {
                (left as f64 / cap.prices.output).floor() as u64
            } else {
                u64::MAX
            };
            if affordable < u64::from(MIN_ANSWER_TOKENS.min(config.max_tokens)) {
                break AgentResult::LimitReached(Limit::Budget {
                    limit_micros: cap.limit_micros,
                    spent_micros,
                });
            }
            max_tokens = max_tokens.min(u32::try_from(affordable).unwrap_or(u32::MAX));
        }
        let mut request = ChatRequest {
            model: config.model.clone(),
            system: config.system.clone(),
            tools: tools.clone(),
            messages: outcome.transcript.clone(),
            max_tokens,
        };
        let mut retried = false;
        let response = loop {
            match tokio::time::timeout_at(deadline, provider.chat(&request)).await {
                Err(_) => break 'run AgentResult::LimitReached(wall_limit),
                // The window is smaller than configured, or the estimate was
                // low: compact to half of what was refused, once per turn.
                Ok(Err(LlmError::ContextTooLong { .. }))
                    if !retried
                        && compact::compact(
                            &mut outcome.transcript,
                            compact::target(budget, true).min(estimate(&request.messages) / 2),
                            estimate,
                        ) =>
                {
                    retried = true;
                    outcome.compactions += 1;
                    request.messages = outcome.transcript.clone();
                }
                Ok(Err(e)) => break 'run AgentResult::ProviderError(e.to_string()),
                Ok(Ok(r)) => break r,
            }
        };
        outcome.turns += 1;
        outcome.usage.add(&response.usage);
        last_input = response.usage.total_input();
        let mut message = response.message();
        if message.content.is_empty() {
            // Providers reject empty assistant messages in later requests.
            message.content.push(ContentBlock::Text {
                text: "(empty answer)".into(),
            });
        }
        tracing::debug!(turn = outcome.turns, stop = ?response.stop_reason, "model answered");
        let calls: Vec<(String, String, Value)> = message
            .tool_uses()
            .map(|(id, name, input)| (id.to_string(), name.to_string(), input.clone()))
            .collect();
        outcome.transcript.push(message);

        if calls.is_empty() {
            let text = outcome
                .transcript
                .last()
                .map(Message::text)
                .unwrap_or_default();
            if response.stop_reason == StopReason::Refusal {
                break AgentResult::Refused(text);
            }
            if nudged {
                break AgentResult::NoToolCall(text);
            }
            nudged = true;
            let nudge = if response.stop_reason == StopReason::MaxTokens {
                format!("Your answer was cut off at the output limit. {NUDGE}")
            } else {
                NUDGE.to_string()
            };
            outcome.transcript.push(Message::user_text(nudge));
        } else {
            nudged = false;
            let mut results = Vec::with_capacity(calls.len());
            let mut ended = None;
            // A `finish` beside other calls was written before their results
            // were seen (small models invent the values): it is not taken.
            let finish_beside_others = calls.len() > 1;
            // Reads and explorers that follow one another run at once (a
            // write or a command between them keeps its place); their results
            // are used in order.
            let lookup = |name: &str, input: &Value| {
                if schemas.rejection(name, input).is_some() {
                    return None;
                }
                if name == EXPLORE_TOOL {
                    return config.explorer.as_ref().map(|_| Lookup::Explore);
                }
                Tool::from_name(name)
                    .filter(|t| t.is_read_only() && config.tools.contains(*t))
                    .map(Lookup::Read)
            };
            let mut read_ahead: std::collections::HashMap<usize, super::tools::ToolOutput> =
                Default::default();
            for (index, (id, name, input)) in calls.iter().cloned().enumerate() {
                let (mut content, is_error, failed) = if name == FINISH_TOOL && finish_beside_others
                {
                    outcome.rejected_calls += 1;
                    (FINISH_NOT_ALONE.to_owned(), true, false)
                } else if name == FINISH_TOOL {
                    let Some((what, violations)) = config.finish.rejection(&input) else {
                        ended = Some(AgentResult::Finished(input));
                        break;
                    };
                    outcome.rejected_calls += 1;
                    invalid_finishes += 1;
                    if invalid_finishes > config.max_invalid_finish {
                        ended = Some(AgentResult::InvalidFinish(violations));
                        break;
                    }
                    let text = finish_errors(
                        what,
                        &violations,
                        config.max_invalid_finish + 1 - invalid_finishes,
                    );
                    (text, true, false)
                } else if lookup(&name, &input).is_some() {
                    let out = match read_ahead.remove(&index) {
                        Some(out) => out,
                        None => {
                            let batch: Vec<(usize, Lookup, &Value)> = calls[index..]
                                .iter()
                                .enumerate()
                                .map_while(|(k, (_, n, i))| lookup(n, i).map(|l| (index + k, l, i)))
                                .collect();
                            let explorers = Explorers {
                                explorer: config.explorer.as_ref(),
                                checkout,
                                first: outcome.explorations + 1,
                                share_micros: config.spend_cap.as_ref().map(|cap| {
                                    let spent = cap
                                        .spent_before_micros
                                        .saturating_add(cap.prices.cost(&outcome.usage))
                                        .saturating_add(outcome.explorer_cost_micros);
                                    let asked = batch
                                        .iter()
                                        .filter(|(_, l, _)| *l == Lookup::Explore)
                                        .count()
                                        .max(1)
                                        as u64;
                                    // At most half of what is left, so the
                                    // caller can still afford to use the answers.
                                    cap.limit_micros.saturating_sub(spent) / 2 / asked
                                }),
                            };
                            let outs =
                                look_together(&workspace, &explorers, &batch, deadline.into_std())
                                    .await;
                            let mut outs = outs.into_iter().map(|(index, out, explored)| {
                                if let Some(run) = explored {
                                    outcome.explorations += 1;
                                    outcome.explorer_usage.add(&run.usage);
                                    outcome.explorer_cost_micros += run.cost_micros;
                                }
                                (index, out)
                            });
                            let first = outs.next().expect("the batch holds this call");
                            read_ahead.extend(outs);
                            first.1
                        }
                    };
                    (out.content, out.is_error, out.is_error)
                } else if name == EXPLORE_TOOL && config.explorer.is_some() {
                    // Offered, and not run: its arguments break the schema.
                    outcome.rejected_calls += 1;
                    let why = schemas.rejection(&name, &input).unwrap_or_else(|| {
                        format!("`{EXPLORE_TOOL}` could not run with these arguments")
                    });
                    (why, true, true)
                } else if let Some(browser) = config
                    .browser
                    .as_ref()
                    .filter(|_| crate::browser::BrowserTools::has(&name))
                {
                    match schemas.rejection(&name, &input) {
                        Some(why) => {
                            outcome.rejected_calls += 1;
                            (why, true, true)
                        }
                        None => {
                            match tokio::time::timeout_at(deadline, browser.call(&name, &input))
                                .await
                            {
                                Ok(out) => (out.content, out.is_error, out.is_error),
                                Err(_) => break 'run AgentResult::LimitReached(wall_limit),
                            }
                        }
                    }
                } else {
                    match Tool::from_name(&name).filter(|t| config.tools.contains(*t)) {
                        None => {
                            outcome.rejected_calls += 1;
                            (unknown_tool(&name, &config.tools, &config), true, true)
                        }
                        Some(tool) => match schemas.rejection(&name, &input) {
                            Some(why) => {
                                outcome.rejected_calls += 1;
                                (why, true, true)
                            }
                            None => {
                                let out = workspace
                                    .execute(tool, &input, Some(deadline.into_std()))
                                    .await;
                                let failed = out.is_error
                                    || out.command.as_ref().is_some_and(|c| c.exit_code != Some(0));
                                if !failed && matches!(tool, Tool::WriteFile | Tool::EditFile) {
                                    // The checkout changed: a command may now behave differently.
                                    failures.forget_commands();
                                }
                                outcome.commands.extend(out.command);
                                (out.content, out.is_error, failed)
                            }
                        },
                    }
                };
                if name != FINISH_TOOL {
                    match failures.record(&name, &input, failed, &content) {
                        Repeat::No => {}
                        Repeat::Warn(times) => content.push_str(&format!(
                            "\n[the harness: this exact call has now failed the same way {times} times in a row; once more ends the run. Try something different.]"
                        )),
                        Repeat::Stop(times) => {
                            ended = Some(AgentResult::Repeating {
                                call: clip(&format!("{name} {input}"), 200),
                                times,
                                error: clip(&content, 300),
                            });
                            break;
                        }
                    }
                }
                results.push(ContentBlock::ToolResult {
                    tool_use_id: id,
                    content,
                    is_error,
                });
            }
            if let Some(result) = ended {
                break result;
            }
            outcome.transcript.push(Message {
                role: Role::User,
                content: results,
            });
        }

        let used = outcome.usage.total_input() + outcome.usage.output_tokens;
        if used >= config.limits.max_total_tokens {
            break AgentResult::LimitReached(Limit::Tokens {
                max: config.limits.max_total_tokens,
                used,
            });
        }
    };
    tracing::info!(
        turns = outcome.turns,
        commands = outcome.commands.len(),
        rejected_calls = outcome.rejected_calls,
        compactions = outcome.compactions,
        result = outcome.result.kind(),
        secs = started.elapsed().as_secs(),
        "agent run ended"
    );
    outcome
}

/// How many reads of one turn run at the same time.
const READS_AT_ONCE: usize = 8;

/// A call that only looks, and so may run beside others of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Read(Tool),
    Explore,
}

/// What one batch's `explore` calls need.
struct Explorers<'a> {
    explorer: Option<&'a Explorer>,
    checkout: &'a Path,
    /// The number of the batch's first explorer in the run (1-based).
    first: u32,
    /// What each explorer of the batch may spend: an equal share of half of
    /// what is left of the run's limit (the other half is the caller's).
    /// `None`: no limit.
    share_micros: Option<u64>,
}

/// One explorer's run, for the caller's figures.
struct Explored {
    usage: Usage,
    cost_micros: u64,
}

/// Runs looking calls at the same time (at most [`READS_AT_ONCE`], of which
/// at most [`Explorer::at_once`] explorers); returns (call index, output,
/// the explorer's figures) in the order given.
async fn look_together(
    workspace: &Workspace,
    explorers: &Explorers<'_>,
    batch: &[(usize, Lookup, &Value)],
    deadline: std::time::Instant,
) -> Vec<(usize, super::tools::ToolOutput, Option<Explored>)> {
    use futures::StreamExt as _;
    let at_once = explorers.explorer.map_or(1, |e| e.at_once.max(1));
    let gate = tokio::sync::Semaphore::new(at_once);
    let mut numbers = explorers.first..;
    // Collected first: a lazy `map` held across the await trips the
    // compiler's `Send` check of the (recursive) run.
    let mut calls = Vec::with_capacity(batch.len());
    for &(index, lookup, input) in batch {
        let number = (lookup == Lookup::Explore).then(|| numbers.next().expect("unbounded"));
        let gate = &gate;
        calls.push(async move {
            match (lookup, number, explorers.explorer) {
                (Lookup::Read(tool), _, _) => (
                    index,
                    workspace.execute(tool, input, Some(deadline)).await,
                    None,
                ),
                (Lookup::Explore, Some(n), Some(explorer)) => {
                    let _turn = gate.acquire().await.expect("the gate is never closed");
                    let (out, run) = explore(
                        explorer,
                        n,
                        input,
                        explorers.checkout,
                        deadline,
                        explorers.share_micros,
                    )
                    .await;
                    (index, out, Some(run))
                }
                (Lookup::Explore, _, _) => (
                    index,
                    super::tools::ToolOutput {
                        content: format!("there is no tool `{EXPLORE_TOOL}` in this run"),
                        is_error: true,
                        command: None,
                    },
                    None,
                ),
            }
        });
    }
    futures::stream::iter(calls)
        .buffered(READS_AT_ONCE.max(at_once))
        .collect()
        .await
}

/// The `finish` schema of an explorer.
fn explorer_finish() -> FinishSpec {
    FinishSpec::new(
        serde_json::json!({
            "type": "object",
            "properties": {
                "answer": {"type": "string", "minLength": 1, "description": "Your answer, with the paths and line numbers it rests on."},
                "files": {"type": "array", "items": {"type": "string"}, "description": "The files that matter most for the answer."}
            },
            "required": ["answer"],
            "additionalProperties": false
        }),
        "Your answer to the question you were given.",
    )
    .expect("the explorer's schema is an object schema")
}

/// Runs the *n*-th explorer of a run on one `explore` call's input. Boxed
/// (and declared `Send`): an explorer's run is a run, so the future holds
/// itself one level down (its own `explorer` is `None`).
fn explore<'a>(
    explorer: &'a Explorer,
    n: u32,
    input: &'a Value,
    checkout: &'a Path,
    deadline: std::time::Instant,
    spend_micros: Option<u64>,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = (super::tools::ToolOutput, Explored)> + Send + 'a>,
> {
    Box::pin(explore_now(
        explorer,
        n,
        input,
        checkout,
        deadline,
        spend_micros,
    ))
}

async fn explore_now(
    explorer: &Explorer,
    n: u32,
    input: &Value,
    checkout: &Path,
    deadline: std::time::Instant,
    spend_micros: Option<u64>,
) -> (super::tools::ToolOutput, Explored) {
    let error = |content: String| super::tools::ToolOutput {
        content,
        is_error: true,
        command: None,
    };
    let nothing = || Explored {
        usage: Usage::default(),
        cost_micros: 0,
    };
    let provider = match (explorer.provider)(n) {
        Ok(p) => p,
        Err(e) => {
            return (
                error(format!("the explorer could not start: {e}")),
                nothing(),
            );
        }
    };
    let question = input["question"].as_str().unwrap_or_default();
    let mut message = format!("# Your question\n\n{question}\n");
    let paths: Vec<&str> = input["paths"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !paths.is_empty() {
        message.push_str("\nStart from these paths of the checkout:\n\n");
        for p in paths {
            message.push_str(&format!("- `{p}`\n"));
        }
    }
    let mut config = AgentConfig::new(
        explorer.model.clone(),
        explorer.system.clone(),
        message,
        explorer_finish(),
    );
    config.tools = ToolSet::read_only();
    config.limits = Limits {
        max_wall_time: explorer
            .limits
            .max_wall_time
            .min(deadline.saturating_duration_since(std::time::Instant::now())),
        ..explorer.limits
    };
    config.max_tokens = explorer.max_tokens;
    config.context_window = explorer.context_window;
    config.spend_cap = spend_micros.map(|limit_micros| SpendCap {
        limit_micros,
        spent_before_micros: 0,
        prices: explorer.prices,
    });
    let run = run_agent(provider.as_ref(), config, checkout).await;
    let figures = Explored {
        cost_micros: explorer.prices.cost(&run.usage),
        usage: run.usage,
    };
    let out = match run.result {
        AgentResult::Finished(value) => {
            let mut text = value["answer"].as_str().unwrap_or_default().to_owned();
            let files: Vec<&str> = value["files"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !files.is_empty() {
                text.push_str("\n\nFiles: ");
                text.push_str(&files.join(", "));
            }
            super::tools::ToolOutput {
                content: text,
                is_error: false,
                command: None,
            }
        }
        other => error(format!(
            "the explorer ended without an answer after {} model call(s): {}",
            run.turns,
            explorer_ending(&other)
        )),
    };
    (out, figures)
}

/// Why an explorer did not answer, in a line.
fn explorer_ending(result: &AgentResult) -> String {
    match result {
        AgentResult::Finished(_) => "it answered".into(),
        AgentResult::LimitReached(limit) => limit.to_string(),
        AgentResult::ProviderError(e) => format!("its model failed: {}", clip(e, 300)),
        AgentResult::Repeating { call, .. } => format!("it repeated a failing call: {call}"),
        other => other.kind().replace('_', " "),
    }
}

/// The tools' input schemas, compiled once, so that a call whose arguments
/// break them is answered with what is wrong instead of being run.
struct ToolSchemas(std::collections::HashMap<String, jsonschema::Validator>);

impl ToolSchemas {
    fn new(tools: &[ToolDef]) -> Self {
        ToolSchemas(
            tools
                .iter()
                .filter_map(|t| {
                    let v = jsonschema::draft202012::options()
                        .build(&t.input_schema)
                        .ok()?;
                    Some((t.name.clone(), v))
                })
                .collect(),
        )
    }

    fn rejection(&self, name: &str, input: &Value) -> Option<String> {
        if !input.is_object() {
            return Some(format!(
                "the arguments of `{name}` are not a JSON object, so the call was not run; you sent: {}\nSend the arguments as one JSON object that matches the tool's schema.",
                clip(&input.to_string(), 300)
            ));
        }
        let validator = self.0.get(name)?;
        let errors: Vec<String> = validator
            .iter_errors(input)
            .map(|e| {
                let path = e.instance_path().to_string();
                format!("- {}: {e}", if path.is_empty() { "(root)" } else { &path })
            })
            .collect();
        (!errors.is_empty()).then(|| {
            format!(
                "the arguments of `{name}` do not match its schema, so the call was not run:\n{}\nFix them and call it again.",
                errors.join("\n")
            )
        })
    }
}

enum Repeat {
    No,
    /// One more identical failure ends the run.
    Warn(u32),
    Stop(u32),
}

/// Counts identical calls that fail the same way in a row.
struct RepeatedFailures {
    max: u32,
    /// `tool arguments` → (what it answered, times in a row).
    seen: std::collections::HashMap<String, (String, u32)>,
}

impl RepeatedFailures {
    fn new(max: u32) -> Self {
        RepeatedFailures {
            max: max.max(1),
            seen: Default::default(),
        }
    }

    fn record(&mut self, name: &str, input: &Value, failed: bool, content: &str) -> Repeat {
        let key = format!("{name} {input}");
        if !failed {
            self.seen.remove(&key);
            return Repeat::No;
        }
        // A command's first line carries its duration, which differs each time.
        let answer = if name == Tool::Bash.name() {
            content.split_once('\n').map_or("", |(_, rest)| rest)
        } else {
            content
        };
        let entry = self.seen.entry(key).or_insert_with(|| (String::new(), 0));
        if entry.0 == answer {
            entry.1 += 1;
        } else {
            *entry = (answer.to_owned(), 1);
        }
        match entry.1 {
            n if n >= self.max => Repeat::Stop(n),
            n if n + 1 == self.max && n > 1 => Repeat::Warn(n),
            _ => Repeat::No,
        }
    }

    /// After the checkout changed, failed commands may be worth running again.
    fn forget_commands(&mut self) {
        let bash = format!("{} ", Tool::Bash.name());
        self.seen.retain(|k, _| !k.starts_with(&bash));
    }
}

fn finish_errors(what: &str, violations: &[Violation], attempts_left: u32) -> String {
    let mut text = format!("finish was not accepted: {what}:\n");
    for v in violations {
        text.push_str(&format!("- {v}\n"));
    }
    text.push_str(&format!(
        "Fix these and call finish again ({attempts_left} more invalid call{} will end the run without a result).",
        if attempts_left == 1 { "" } else { "s" }
    ));
    text
}

fn unknown_tool(name: &str, tools: &ToolSet, config: &AgentConfig) -> String {
    let mut available: Vec<&str> = tools.tools().iter().map(|t| t.name()).collect();
    available.extend(config.explorer.as_ref().map(|_| EXPLORE_TOOL));
    if config.browser.is_some() {
        available.extend(crate::browser::NAMES);
    }
    available.push(FINISH_TOOL);
    format!(
        "there is no tool `{name}` in this run; available: {}",
        available.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::llm::scripted::Scripted;
    use crate::llm::scripted::{ScriptedCall, ScriptedTurn};

    fn finish(value: Value) -> ScriptedTurn {
        ScriptedTurn::tool_calls([ScriptedCall::new(FINISH_TOOL, value)])
    }

    #[tokio::test]
    async fn a_check_sends_rule_violations_back_like_schema_errors() {
        let dir = tempfile::tempdir().unwrap();
        let schema = json!({
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"]
        });
        let check: FinishCheck = Arc::new(|v: &Value| {
            if v["n"].as_i64().is_some_and(|n| n % 2 == 0) {
                Vec::new()
            } else {
                vec![Violation {
                    path: "/n".into(),
                    message: "n must be even".into(),
                }]
            }
        });
        let spec = FinishSpec::new(schema, "").unwrap().with_check(check);
        assert_eq!(spec.violations(&json!({"n": 4})), vec![]);
        assert_eq!(
            spec.violations(&json!({"n": 3}))[0].message,
            "n must be even"
        );
        // A schema error is reported without running the check.
        assert!(spec.violations(&json!({"n": "x"}))[0].path == "/n");

        let provider = Scripted::new(vec![
            finish(json!({"n": "x"})),
            finish(json!({"n": 3})),
            finish(json!({"n": 4})),
        ]);
        let mut config = AgentConfig::new("m", "system", "go", spec);
        config.tools = ToolSet::read_only();
        let outcome = run_agent(&provider, config, dir.path()).await;
        assert_eq!(outcome.result, AgentResult::Finished(json!({"n": 4})));
        let results: Vec<String> = outcome
            .transcript
            .iter()
            .filter(|m| m.role == Role::User)
            .flat_map(|m| &m.content)
            .filter_map(|b| match b {
                ContentBlock::ToolResult { content, .. } => Some(content.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(results.len(), 2, "{results:?}");
        assert!(
            results[0].contains("does not match the schema"),
            "{}",
            results[0]
        );
        assert!(results[1].contains("breaks these rules"), "{}", results[1]);
        assert!(results[1].contains("/n: n must be even"), "{}", results[1]);
    }

    #[tokio::test]
    async fn repeated_rule_violations_end_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let check: FinishCheck = Arc::new(|_: &Value| {
            vec![Violation {
                path: String::new(),
                message: "never".into(),
            }]
        });
        let spec = FinishSpec::new(json!({"type": "object"}), "")
            .unwrap()
            .with_check(check);
        let provider = Scripted::new(vec![finish(json!({})), finish(json!({}))]);
        let mut config = AgentConfig::new("m", "system", "go", spec);
        config.max_invalid_finish = 1;
        let outcome = run_agent(&provider, config, dir.path()).await;
        assert_eq!(
            outcome.result,
            AgentResult::InvalidFinish(vec![Violation {
                path: String::new(),
                message: "never".into()
            }])
        );
    }
}
