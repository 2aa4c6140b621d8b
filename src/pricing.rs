//! Model prices (USD per million tokens): a dated built-in table (`data/prices.toml`) with
//! `[prices."provider/model"]` overrides from config.toml, and the cost of a request.
//!
//! A model's price is its own entry, or the entry of which it is a dated snapshot: the entry's
//! name, `-`, and one of the suffixes providers put on pinned versions: `YYYY-MM-DD` (OpenAI,
//! `gpt-4o-2024-08-06`), `YYYYMMDD` (Anthropic, `claude-opus-4-1-20250805`), `MMDD` (older
//! OpenAI, `gpt-4-0613`) or a three-digit version (Gemini, `gemini-2.0-flash-001`), with
//! dates that are real months and days. Nothing else is inherited: `o3-pro` is not `o3`,
//! `gpt-4o-mini-search-preview` is not `gpt-4o-mini`, and `-latest` or `-preview-…` names
//! are their own models; they cost more as often as less.
//!
//! Any other model of a provider that has prices is charged that provider's highest known
//! price (the largest input and the largest output price among its entries, taken apart, with
//! cached input at that input price), so an unlisted model can overspend nothing; the proxy
//! says so once per model. A provider with no prices at all has no fallback.
//!
//! Costs are kept in micro-dollars (integers), so budgets add up exactly.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::Config;
use crate::providers::Usage;

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

/// Where a model's price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// The model's own entry.
    Exact,
    /// The entry of which the model is a dated snapshot.
    Snapshot,
    /// Not in the table: the provider's highest price.
    ProviderMax,
}

/// A model's price and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priced {
    pub price: Price,
    pub source: PriceSource,
}

/// Whether `suffix` (what follows `model-`) is a dated snapshot or numbered version:
/// `YYYY-MM-DD`, `YYYYMMDD`, `MMDD` or `NNN`.
fn is_snapshot_suffix(suffix: &str) -> bool {
    // Every shape is ASCII; checking that first makes the byte slicing below safe.
    if !suffix.is_ascii() {
        return false;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let month_day = |mm: &str, dd: &str| {
        digits(mm)
            && digits(dd)
            && matches!(mm.parse::<u8>(), Ok(1..=12))
            && matches!(dd.parse::<u8>(), Ok(1..=31))
    };
    let year = |y: &str| y.len() == 4 && digits(y) && y.starts_with("20");
    let b = suffix.as_bytes();
    match b.len() {
        3 => digits(suffix),
        4 => month_day(&suffix[..2], &suffix[2..]),
        8 => digits(suffix) && year(&suffix[..4]) && month_day(&suffix[4..6], &suffix[6..]),
        10 => {
            b[4] == b'-'
                && b[7] == b'-'
                && year(&suffix[..4])
                && month_day(&suffix[5..7], &suffix[8..])
        }
        _ => false,
    }
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

    /// The price of `provider/model` and where it came from: an exact entry, the entry it is
    /// a dated snapshot of, or else the provider's highest price; `None` when the provider
    /// has no prices at all.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<Priced> {
        let listed = |m: &str| self.by_model.get(&format!("{provider}/{m}")).copied();
        if let Some(price) = listed(model) {
            return Some(Priced {
                price,
                source: PriceSource::Exact,
            });
        }
        let snapshot = model
            .match_indices('-')
            .filter(|&(i, _)| i > 0 && is_snapshot_suffix(&model[i + 1..]))
            .find_map(|(i, _)| listed(&model[..i]));
        if let Some(price) = snapshot {
            return Some(Priced {
                price,
                source: PriceSource::Snapshot,
            });
        }
        self.provider_max(provider).map(|price| Priced {
            price,
            source: PriceSource::ProviderMax,
        })
    }

    /// The largest input and output prices among `provider`'s entries (each on its own).
    fn provider_max(&self, provider: &str) -> Option<Price> {
        let prefix = format!("{provider}/");
        self.by_model
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, p)| *p)
            .reduce(|a, b| Price {
                input: a.input.max(b.input),
                output: a.output.max(b.output),
                cached_input: None,
            })
            .map(|p| Price {
                cached_input: None,
                ..p
            })
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

    fn source(p: &Prices, provider: &str, model: &str) -> Option<PriceSource> {
        p.lookup(provider, model).map(|x| x.source)
    }

    fn price(p: &Prices, provider: &str, model: &str) -> Price {
        p.lookup(provider, model).unwrap().price
    }

    #[test]
    fn dated_snapshots_match_their_base_model() {
        let p = Prices::builtin();
        for (provider, snapshot, base) in [
            ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
            ("openai", "o3-2025-04-16", "o3"),
            ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
            (
                "anthropic",
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5",
            ),
            ("gemini", "gemini-2.0-flash-001", "gemini-2.0-flash"),
        ] {
            assert_eq!(
                source(&p, provider, snapshot),
                Some(PriceSource::Snapshot),
                "{snapshot}"
            );
            assert_eq!(price(&p, provider, snapshot), price(&p, provider, base));
        }
        assert_eq!(
            source(&p, "openai", "gpt-4o-mini"),
            Some(PriceSource::Exact)
        );
        assert_ne!(
            price(&p, "openai", "gpt-4o-mini"),
            price(&p, "openai", "gpt-4o")
        );
    }

    /// Regression: any `-…` extension inherited the base entry's price, so `o3-pro` was
    /// charged as `o3` and `gpt-4o-mini-search-preview` as `gpt-4o-mini`.
    #[test]
    fn other_extensions_of_a_model_are_not_its_snapshots() {
        let p = Prices::builtin();
        let openai_max = Price {
            input: 2.5,
            output: 10.0,
            cached_input: None,
        };
        for model in [
            "o3-pro",
            "gpt-4o-mini-search-preview",
            "gpt-4o-mini-tts",
            "gpt-4o-latest",
            "gpt-5-2025-13-01",
            "gpt-5-2025-0807",
            "gpt-4o-1",
            "gpt-4o-0000",
            "gpt-4o-1332",
            "gpt-4o-２０２４",
            // A dated name whose base has no entry: the table has no gpt-4.
            "gpt-4-0613",
            "unknown-model",
        ] {
            assert_eq!(
                p.lookup("openai", model),
                Some(Priced {
                    price: openai_max,
                    source: PriceSource::ProviderMax
                }),
                "{model}"
            );
        }
        // A four-digit date is a month and a day, a three-digit suffix a version; the
        // eight-digit form is Anthropic's, with a year.
        assert_eq!(
            source(&p, "anthropic", "claude-opus-4-1-2025080"),
            Some(PriceSource::ProviderMax)
        );
        assert_eq!(
            source(&p, "anthropic", "claude-opus-4-1-19990805"),
            Some(PriceSource::ProviderMax)
        );
        assert_eq!(
            source(&p, "gemini", "gemini-2.0-flash-0001"),
            Some(PriceSource::ProviderMax)
        );
        // `claude-opus-4-1` is its own entry, not `claude-opus-4` version 1.
        assert_eq!(
            source(&p, "anthropic", "claude-opus-4-1"),
            Some(PriceSource::Exact)
        );
    }

    #[test]
    fn unknown_models_cost_the_providers_highest_price() {
        let p = Prices::builtin();
        // Opus 4 and 4.1 are Anthropic's dearest input and output.
        assert_eq!(
            price(&p, "anthropic", "claude-mystery"),
            Price {
                input: 15.0,
                output: 75.0,
                cached_input: None
            }
        );
        // Input and output maxima are taken apart: Gemini's dearest input and output are
        // both 2.5 Pro's here, OpenAI's are gpt-4o's; a config entry can raise either.
        let c = Config::parse(
            "[prices.\"gemini/g-in\"]\ninput = 9\noutput = 0\n[prices.\"gemini/g-out\"]\ninput = 0\noutput = 99\n",
            std::path::Path::new("c"),
        )
        .unwrap();
        let p = Prices::from_config(&c);
        let max = price(&p, "gemini", "gemini-9-ultra");
        assert_eq!((max.input, max.output), (9.0, 99.0));
        // A provider without prices has no fallback.
        assert_eq!(p.lookup("groq", "llama-3.3-70b"), None);
        // Cached input is charged at the full (highest) input price.
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 0,
            cached_tokens: 1000,
            reasoning_tokens: 0,
        };
        assert_eq!(max.cost_micros(&usage), 9000);
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
        assert_eq!(price(&p, "openai", "gpt-4o").input, 1.0);
        assert_eq!(price(&p, "local", "m").output, 4.0);
        assert_eq!(
            source(&p, "local", "m-20260101"),
            Some(PriceSource::Snapshot)
        );
    }
}
