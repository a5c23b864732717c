//! The Anthropic Messages API (being written).
