//! The role prompts and result schemas: built into the binary from `prompts/`,
//! overridable per repository (see [`system_prompt`]).

use std::path::Path;

use serde_json::Value;

use crate::mission::JobRole;

/// Which `finish` schema an agent run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// The orchestrator's questions, plan or amendment (`OrchestratorOutput`).
    Orchestrator,
    /// The worker's handoff (`Handoff`).
    Handoff,
    /// One scrutiny reviewer's verdict on one feature.
    Review,
    /// The user tester's report (`ValidationReport` without commands/reviews).
    UserTesting,
}

pub fn builtin_prompt(role: JobRole) -> &'static str {
    match role {
        JobRole::Orchestrator => include_str!("../../prompts/orchestrator.md"),
        JobRole::Worker => include_str!("../../prompts/worker.md"),
        JobRole::Scrutiny => include_str!("../../prompts/scrutiny.md"),
        JobRole::UserTesting => include_str!("../../prompts/user-testing.md"),
    }
}

/// The built-in prompt of the `explore` sub-agents every role may call.
pub const EXPLORER_PROMPT: &str = include_str!("../../prompts/explorer.md");

/// The explorers' system prompt: `<override_dir>/explorer.md` when that file
/// exists, else the built-in copy.
pub fn explorer_prompt(override_dir: Option<&Path>) -> std::io::Result<String> {
    if let Some(dir) = override_dir {
        match std::fs::read_to_string(dir.join("explorer.md")) {
            Ok(text) => return Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(EXPLORER_PROMPT.to_owned())
}

/// The role's system prompt: `<override_dir>/<role>.md` when that file exists,
/// else the built-in copy.
pub fn system_prompt(role: JobRole, override_dir: Option<&Path>) -> std::io::Result<String> {
    if let Some(dir) = override_dir {
        let path = dir.join(format!("{}.md", role.as_str()));
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(builtin_prompt(role).to_owned())
}

pub fn finish_schema(kind: SchemaKind) -> Value {
    let text = match kind {
        SchemaKind::Orchestrator => include_str!("../../prompts/schemas/orchestrator.json"),
        SchemaKind::Handoff => include_str!("../../prompts/schemas/handoff.json"),
        SchemaKind::Review => include_str!("../../prompts/schemas/review.json"),
        SchemaKind::UserTesting => include_str!("../../prompts/schemas/user-testing.json"),
    };
    serde_json::from_str(text).expect("built-in schemas are valid JSON (tested)")
}
