//! Prices and cost. Money is counted in micro-dollars (integers), so sums over
//! thousands of calls are exact and budgets compare without rounding drift.

use serde::{Deserialize, Serialize};

use super::Usage;

/// US dollars per million tokens, as providers publish them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

/// Micro-dollars.
pub type Micros = u64;

impl Prices {
    /// What one call cost, in micro-dollars (rounded to the nearest).
    pub fn cost(&self, usage: &Usage) -> Micros {
        // $/Mtok × tokens = µ$ exactly: 1 $/Mtok is 1 µ$ per token.
        let micros = self.input * usage.input_tokens as f64
            + self.output * usage.output_tokens as f64
            + self.cache_read * usage.cache_read_tokens as f64
            + self.cache_write * usage.cache_write_tokens as f64;
        micros.round() as Micros
    }
}

/// Built-in prices for common models (USD per million tokens, as published by
/// Anthropic and OpenAI; cache writes are Anthropic's 5-minute rate; OpenAI
/// has no cache-write charge). Override per role in `.github/missions.yml`.
pub fn default_prices(model: &str) -> Option<Prices> {
    let p = |input, output, cache_read, cache_write| Prices {
        input,
        output,
        cache_read,
        cache_write,
    };
    // Longest prefix first: dated and suffixed model names share a price.
    const TABLE: &[(&str, [f64; 4])] = &[
        ("claude-opus-4", [15.0, 75.0, 1.5, 18.75]),
        ("claude-sonnet-4", [3.0, 15.0, 0.3, 3.75]),
        ("claude-3-7-sonnet", [3.0, 15.0, 0.3, 3.75]),
        ("claude-haiku-4", [1.0, 5.0, 0.1, 1.25]),
        ("claude-3-5-haiku", [0.8, 4.0, 0.08, 1.0]),
        ("gpt-4.1-mini", [0.4, 1.6, 0.1, 0.0]),
        ("gpt-4.1-nano", [0.1, 0.4, 0.025, 0.0]),
        ("gpt-4.1", [2.0, 8.0, 0.5, 0.0]),
        ("gpt-4o-mini", [0.15, 0.6, 0.075, 0.0]),
        ("gpt-4o", [2.5, 10.0, 1.25, 0.0]),
        ("o4-mini", [1.1, 4.4, 0.275, 0.0]),
        ("o3", [2.0, 8.0, 0.5, 0.0]),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, [i, o, r, w])| p(*i, *o, *r, *w))
}

/// Micro-dollars as dollars for people: `$1.234567` → `$1.23`.
pub fn dollars(micros: Micros) -> String {
    format!("${:.2}", micros as f64 / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_every_kind_of_token_at_its_price() {
        let sonnet = default_prices("claude-sonnet-4-5-20250929").unwrap();
        let usage = Usage {
            input_tokens: 2_000,
            output_tokens: 1_000,
            cache_read_tokens: 100_000,
            cache_write_tokens: 10_000,
        };
        // 2000×3 + 1000×15 + 100000×0.3 + 10000×3.75 = 6000 + 15000 + 30000 + 37500 µ$
        assert_eq!(sonnet.cost(&usage), 88_500);
        assert_eq!(dollars(sonnet.cost(&usage)), "$0.09");
        let gpt = default_prices("gpt-4o-2024-08-06").unwrap();
        // OpenAI: cached input at half price, no cache-write charge.
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 0,
            cache_read_tokens: 1_000_000,
            cache_write_tokens: 0,
        };
        assert_eq!(gpt.cost(&usage), 2_500_000 + 1_250_000);
        assert_eq!(
            default_prices("gpt-4o-mini").unwrap().input,
            0.15,
            "longest prefix wins"
        );
        assert!(default_prices("my-local-llama").is_none());
    }
}
