//! Everything that speaks GitHub: App authentication, webhook verification and
//! typed events, and the API client. Octocrab types stay inside this module.

pub mod auth;
pub mod client;
pub mod events;
pub mod retry;
pub mod webhook;

/// Whether an answer of `GET /repos/{owner}/{repo}/collaborators/{user}/permission`
/// grants write access: role write, maintain or admin (custom roles report their
/// base in `permission`). Only such people start, steer or approve a mission.
pub fn grants_write(answer: &serde_json::Value) -> bool {
    let role = answer["role_name"].as_str().unwrap_or("");
    let permission = answer["permission"].as_str().unwrap_or("");
    matches!(role, "admin" | "maintain" | "write") || matches!(permission, "admin" | "write")
}
