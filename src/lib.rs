//! missions: a GitHub App that runs long software tasks as missions.
//! See DESIGN.md for the shared picture; this crate's layout follows it:
//! `github/` (App auth, webhooks, API client), `store/` (the durable inbox),
//! `server/` (the axum receiver), `engine/` (the event loop and handlers).

// The simulator renders GitHub's large JSON objects with `json!`.
#![recursion_limit = "256"]

pub mod agent;
/// Headless Chromium over CDP for the user-testing agent (`browser_*` tools).
pub mod browser;
pub mod clock;
pub mod config;
pub mod demo;
pub mod engine;
/// The `cargo fuzz` targets' bodies (`fuzz/`, `docs/fuzzing.md`), also replayed by `cargo test`.
pub mod fuzzing;
pub mod github;
pub mod init;
pub mod job;
pub mod llm;
pub mod manifest;
pub mod metrics;
pub mod mission;
pub mod repo_config;
pub mod server;
pub mod sim;
pub mod store;
