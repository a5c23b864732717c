//! Everything that speaks GitHub: App authentication, webhook verification and
//! typed events, and the API client. Octocrab types stay inside this module.

pub mod auth;
pub mod client;
pub mod events;
pub mod retry;
pub mod webhook;
