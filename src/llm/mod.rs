//! Model providers behind one trait: the Anthropic Messages API, the OpenAI
//! Chat Completions API (and servers compatible with it), and a scripted
//! provider for tests and the offline demo. Every call reports its usage, in
//! the same terms for every provider, so budgets and cache shares add up.

pub mod anthropic;
pub mod config;
pub mod http;
pub mod openai;
pub mod pricing;
pub mod scripted;
pub mod serve;
mod types;

pub use types::*;
