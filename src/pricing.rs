//! Model prices (USD per million tokens): a dated built-in table (`data/prices.toml`) with
//! `[prices."provider/model"]` overrides from config.toml, and the cost of a request.
//!
//! Costs are kept in micro-dollars (integers), so budgets add up exactly.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::Config;
use crate::proxy::meter::Usage;

const BUILTIN: &str = include_str!("../data/prices.toml");

/// A model's price in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached input; defaults to the input price.
    pub cached_input: Option<f64>,
}

#[derive(Deserialize)]
struct Table {
    as_of: String,
    prices: BTreeMap<String, Price>,
}

/// The price table in force: built-ins with config overrides.
#[derive(Debug, Clone)]
pub struct Prices {
    pub as_of: String,
    by_model: BTreeMap<String, Price>,
}

impl Prices {
    pub fn builtin() -> Self {
        let t: Table = toml::from_str(BUILTIN).expect("data/prices.toml is valid");
        Self {
            as_of: t.as_of,
            by_model: t.prices,
        }
    }

    pub fn from_config(config: &Config) -> Self {
        let mut p = Self::builtin();
        for (k, v) in &config.prices {
            p.by_model.insert(
                k.clone(),
                Price {
                    input: v.input,
                    output: v.output,
                    cached_input: v.cached_input,
                },
            );
        }
        p
    }

    /// The price of `provider/model`: an exact entry, else the longest entry that the model
    /// extends with `-…` (a dated snapshot of it).
    pub fn get(&self, provider: &str, model: &str) -> Option<Price> {
        let full = format!("{provider}/{model}");
        if let Some(p) = self.by_model.get(&full) {
            return Some(*p);
        }
        self.by_model
            .iter()
            .filter(|(k, _)| {
                full.len() > k.len()
                    && full.starts_with(k.as_str())
                    && full.as_bytes()[k.len()] == b'-'
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| *p)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Price)> {
        self.by_model.iter()
    }
}

impl Price {
    /// Cost of `usage` in micro-dollars (tokens × USD per million tokens).
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_tokens.min(usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        let micros = fresh as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + usage.output_tokens as f64 * self.output;
        micros.round() as u64
    }

    /// Upper bound of a request's cost before it runs: prompt estimate plus the output ceiling.
    pub fn reserve_micros(&self, prompt_tokens: u64, max_output: u64) -> u64 {
        (prompt_tokens as f64 * self.input + max_output as f64 * self.output).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_snapshots_match_their_base_model() {
        let p = Prices::builtin();
        assert_eq!(
            p.get("openai", "gpt-4o-mini-2024-07-18"),
            p.get("openai", "gpt-4o-mini")
        );
        assert_ne!(p.get("openai", "gpt-4o-mini"), p.get("openai", "gpt-4o"));
        assert!(p.get("anthropic", "claude-sonnet-4-5-20250929").is_some());
        assert!(p.get("openai", "unknown-model").is_none());
    }

    #[test]
    fn cost_counts_cached_input_at_its_price() {
        let price = Price {
            input: 2.0,
            output: 8.0,
            cached_input: Some(0.5),
        };
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 100,
            cached_tokens: 400,
            reasoning_tokens: 0,
        };
        assert_eq!(price.cost_micros(&usage), 600 * 2 + 400 / 2 + 800);
    }

    #[test]
    fn config_overrides_and_adds() {
        let c = Config::parse("[prices.\"openai/gpt-4o\"]\ninput = 1\noutput = 2\n[prices.\"local/m\"]\ninput = 3\noutput = 4\n", std::path::Path::new("c")).unwrap();
        let p = Prices::from_config(&c);
        assert_eq!(p.get("openai", "gpt-4o").unwrap().input, 1.0);
        assert_eq!(p.get("local", "m").unwrap().output, 4.0);
    }
}
