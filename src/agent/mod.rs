//! The tool loop every role (orchestrator, worker, scrutiny reviewer, user
//! tester) runs on: a model, a checkout, file and shell tools confined to it,
//! and a `finish` tool whose input is the role's result, checked against the
//! role's JSON Schema.

pub mod acp;
mod compact;
pub mod engine;
mod loopback;
pub mod mcp;
pub mod proxy;
mod run;
mod tools;

pub use compact::{SUMMARY_FOLLOW_UP, SUMMARY_HEADER, prompt_budget, request_tokens};
pub use run::{
    AgentConfig, AgentOutcome, AgentResult, DEFAULT_CONTEXT_WINDOW, EXPLORE_TOOL,
    EXPLORERS_AT_ONCE, Explorer, ExplorerProvider, FINISH_NOT_ALONE, FINISH_TOOL, FinishCheck,
    FinishSpec, Limit, Limits, NUDGE, SpendCap, Violation, run_agent,
};
pub use tools::{BashConfig, CommandRecord, Tool, ToolOutput, ToolSet, Workspace, looks_secret};
