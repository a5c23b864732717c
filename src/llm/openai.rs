//! The OpenAI Chat Completions API (being written).
