//! Model prices (USD per million tokens) and the cost of a request.
//!
//! The table in force is the user's copy (`DATA_DIR/prices.toml`, written by `till prices
//! update`) when there is one, else the built-in `data/prices.toml` (generated from LiteLLM's
//! model price table by `scripts/gen-prices.sh`), with `[prices."provider/model"]` entries of
//! config.toml on top.
//!
//! A model's price is its own entry, or the entry of which it is a dated snapshot: the entry's
//! name, `-`, and one of the suffixes providers put on pinned versions: `YYYY-MM-DD` (OpenAI,
//! `gpt-4o-2024-08-06`), `YYYYMMDD` (Anthropic, `claude-opus-4-1-20250805`), `MMDD` (older
//! OpenAI, `gpt-4-0613`) or a three-digit version (Gemini, `gemini-2.0-flash-001`), with
//! dates that are real months and days. Nothing else is inherited: `o3-pro` is not `o3`,
//! `gpt-4o-mini-search-preview` is not `gpt-4o-mini`, and `-latest` or `-preview-…` names
//! are their own models; they cost more as often as less.
//!
//! Any other model of a provider the table lists is charged that provider's highest known
//! price (the largest of each rate among its entries, taken apart), so an unlisted model can
//! overspend nothing; the proxy says so once per model. A provider the table does not list
//! (prices set only in config.toml, or none) has no fallback.
//!
//! Prompt caching and long prompts are priced as providers bill them: cache reads at
//! `cached_input`, cache writes at `cache_write` (Anthropic's five-minute writes) or
//! `cache_write_1h`, and a prompt longer than a tier's `above` tokens has every token of the
//! request charged at the tier's rates (Gemini and Anthropic above 200k, OpenAI above 272k).
//!
//! Costs are kept in micro-dollars (integers), so budgets add up exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Paths};
use crate::error::UserError;
use crate::providers::Usage;

pub mod litellm;
pub mod live;

const BUILTIN: &str = include_str!("../../data/prices.toml");
const SUPPLEMENT: &str = include_str!("../../data/prices-supplement.toml");

/// The rates of a long-prompt tier: a prompt of more than `above` input tokens has the whole
/// request charged at these (a rate left out is the base rate).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub above: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

/// A model's price in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Input read from the prompt cache; defaults to the input price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Input written to the prompt cache (five-minute lifetime); defaults to the input price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Input written to the prompt cache with a one-hour lifetime; defaults to `cache_write`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<f64>,
    /// Rates for prompts longer than the tier's `above` tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
}

/// What is known of a prompt before it is sent: an upper bound of its tokens, and whether it
/// asks for one-hour cache writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBound {
    pub tokens: u64,
    pub long_cache_writes: bool,
}

impl PromptBound {
    pub fn tokens(tokens: u64) -> Self {
        Self {
            tokens,
            long_cache_writes: false,
        }
    }
}

/// Every rate of one request, with defaults and the tier applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
    pub cache_write: f64,
    pub cache_write_1h: f64,
}

impl Rates {
    /// The dearest rate an input token can be billed at; one-hour cache writes count only
    /// when the request asks for them.
    fn input_max(&self, long_cache_writes: bool) -> f64 {
        let m = self.input.max(self.cached_input).max(self.cache_write);
        if long_cache_writes {
            m.max(self.cache_write_1h)
        } else {
            m
        }
    }
}

/// The dearest rate till accepts, in USD per million tokens: a thousand times the dearest
/// model sold today. Anything above is a mistake (a per-token price written per million, a
/// stray exponent) that would make every budget meaningless.
pub const MAX_RATE: f64 = 1_000_000.0;

impl Price {
    /// Every rate is a number of dollars from 0 to [`MAX_RATE`]: NaN, infinities and
    /// negative prices would let any budget pass (a NaN or negative cost is charged as $0),
    /// and an absurd one charges every unknown model of the provider that much. The error
    /// names the field.
    pub fn check(&self) -> Result<(), String> {
        let tier = self.tier.unwrap_or(Tier {
            above: 0,
            input: None,
            output: None,
            cached_input: None,
            cache_write: None,
        });
        for (field, value) in [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cached_input", self.cached_input),
            ("cache_write", self.cache_write),
            ("cache_write_1h", self.cache_write_1h),
            ("tier.input", tier.input),
            ("tier.output", tier.output),
            ("tier.cached_input", tier.cached_input),
            ("tier.cache_write", tier.cache_write),
        ] {
            let Some(v) = value else { continue };
            if v.is_nan() {
                return Err(format!("{field} is not a number"));
            }
            if v < 0.0 {
                return Err(format!("{field} = {v} is negative"));
            }
            if v > MAX_RATE {
                return Err(format!(
                    "{field} = {v} is above 1,000,000 USD per million tokens, the most till accepts"
                ));
            }
        }
        Ok(())
    }

    /// A plain price: one input and one output rate.
    pub fn flat(input: f64, output: f64) -> Self {
        Price {
            input,
            output,
            cached_input: None,
            cache_write: None,
            cache_write_1h: None,
            tier: None,
        }
    }

    /// Whether a one-hour cache write costs more than a five-minute one (only then does a
    /// request's asking for one change its reservation).
    pub fn has_long_cache_rate(&self) -> bool {
        let base = self.rates(0);
        base.cache_write_1h > base.cache_write
    }

    /// The rates of a request whose prompt has `prompt_tokens` input tokens.
    pub fn rates(&self, prompt_tokens: u64) -> Rates {
        let base = Rates {
            input: self.input,
            output: self.output,
            cached_input: self.cached_input.unwrap_or(self.input),
            cache_write: self.cache_write.unwrap_or(self.input),
            cache_write_1h: self
                .cache_write_1h
                .or(self.cache_write)
                .unwrap_or(self.input),
        };
        // A long prompt never costs less a token than a short one: a tier's rate below the
        // base's (a table's slip, or a provider's highest price merged from several models)
        // is read as the base's.
        match self.tier {
            Some(t) if prompt_tokens > t.above => Rates {
                input: t.input.unwrap_or(base.input).max(base.input),
                output: t.output.unwrap_or(base.output).max(base.output),
                cached_input: t
                    .cached_input
                    .unwrap_or(base.cached_input)
                    .max(base.cached_input),
                // Tables give no long-prompt rate for one-hour writes: scale the tier's
                // five-minute rate by the same factor as the base's.
                cache_write: t
                    .cache_write
                    .unwrap_or(base.cache_write)
                    .max(base.cache_write),
                cache_write_1h: match t.cache_write {
                    Some(w) if base.cache_write > 0.0 => w * base.cache_write_1h / base.cache_write,
                    _ => base.cache_write_1h,
                }
                .max(base.cache_write_1h),
            },
            _ => base,
        }
    }

    /// Cost of `usage` in micro-dollars (tokens × USD per million tokens), rounded up: a
    /// request that cost half a micro-dollar, or a part of one, must not cost the budget
    /// nothing, or a key could make any number of them. (The float's own error, a part in a
    /// million million, is taken off first, so that 100 tokens at $0.07 are 7, not 8.)
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let r = self.rates(usage.input_tokens);
        let cached = usage.cached_tokens.min(usage.input_tokens);
        let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
        let written_1h = usage.cache_write_1h_tokens.min(written);
        let fresh = usage.input_tokens - cached - written;
        let micros = fresh as f64 * r.input
            + cached as f64 * r.cached_input
            + (written - written_1h) as f64 * r.cache_write
            + written_1h as f64 * r.cache_write_1h
            + usage.output_tokens as f64 * r.output;
        (micros * (1.0 - 1e-12)).ceil() as u64
    }

    /// Upper bound of a request's cost before it runs, from a bound of its prompt and its
    /// output ceiling: every input token at the dearest rate it could be billed at (a cache
    /// write costs more than a plain input token; a one-hour write more still, when the
    /// request asks for one), the tier the prompt could reach.
    pub fn reserve_micros(&self, prompt: PromptBound, max_output: u64) -> u64 {
        let r = self.rates(prompt.tokens);
        (prompt.tokens as f64 * r.input_max(prompt.long_cache_writes)
            + max_output as f64 * r.output)
            .ceil() as u64
    }

    /// The largest of each rate of `self` and `other`, taken apart, for short prompts and for
    /// long ones: the tier starts at the lower of the two thresholds and holds the larger of
    /// each long-prompt rate (a model without a tier charges its base rates there), so that no
    /// prompt of any length costs less than at either.
    fn max(self, other: Price) -> Price {
        let r = self.rates(0);
        let o = other.rates(0);
        let tier = match (self.tier, other.tier) {
            (None, None) => None,
            (a, b) => {
                let (rl, ol) = (self.rates(u64::MAX), other.rates(u64::MAX));
                Some(Tier {
                    above: a.iter().chain(b.iter()).map(|t| t.above).min().unwrap_or(0),
                    input: Some(rl.input.max(ol.input)),
                    output: Some(rl.output.max(ol.output)),
                    cached_input: Some(rl.cached_input.max(ol.cached_input)),
                    cache_write: Some(rl.cache_write.max(ol.cache_write)),
                })
            }
        };
        Price {
            input: r.input.max(o.input),
            output: r.output.max(o.output),
            cached_input: Some(r.cached_input.max(o.cached_input)),
            cache_write: Some(r.cache_write.max(o.cache_write)),
            cache_write_1h: Some(r.cache_write_1h.max(o.cache_write_1h)),
            tier,
        }
    }
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

/// A price table as stored: `data/prices.toml` and the user's copy share this shape.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// The day the table was made.
    pub as_of: String,
    /// Where its prices came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub prices: BTreeMap<String, Price>,
}

impl Table {
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let hint = "run `till prices update` to fetch a new one, or `till prices reset` to use the built-in table";
        let table: Table = toml::from_str(text).map_err(|e| {
            UserError::runtime(format!(
                "{} is not a price table: {}",
                path.display(),
                e.message()
            ))
            .hint(hint)
        })?;
        for (name, price) in &table.prices {
            price.check().map_err(|e| {
                UserError::runtime(format!(
                    "{}: {}: {e}",
                    path.display(),
                    crate::output::printable(name)
                ))
                .hint(hint)
            })?;
        }
        Ok(table)
    }

    /// Adds the entries of till's supplement (`data/prices-supplement.toml`: models agents use
    /// that the fetched table does not list yet) that this table lacks; returns how many.
    pub fn fill_from_supplement(&mut self) -> usize {
        let extra = Table::parse(SUPPLEMENT, Path::new("data/prices-supplement.toml"))
            .expect("data/prices-supplement.toml is valid");
        let mut added = 0;
        for (name, price) in extra.prices {
            if let std::collections::btree_map::Entry::Vacant(e) = self.prices.entry(name) {
                e.insert(price);
                added += 1;
            }
        }
        if added > 0 && !self.source.contains(&extra.source) {
            self.source = format!("{}; {added} from {}", self.source, extra.source);
        }
        added
    }

    /// The table as TOML, with a header that says what it is.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(HEADER);
        out.push_str(&format!("as_of = {}\n", toml_string(&self.as_of)));
        if !self.source.is_empty() {
            out.push_str(&format!("source = {}\n", toml_string(&self.source)));
        }
        out.push_str("\n[prices]\n");
        for (name, price) in &self.prices {
            out.push_str(&format!("{} = {}\n", toml_string(name), inline(price)));
        }
        out
    }
}

const HEADER: &str = "\
# Model prices in USD per million tokens. A model id matches its entry exactly, or as a dated
# snapshot of it: the entry's name, `-`, and YYYY-MM-DD, YYYYMMDD, MMDD or a three-digit version
# (gpt-4o-mini-2024-07-18, claude-opus-4-1-20250805, gemini-2.0-flash-001). Any other model of a
# provider listed here is charged the highest of each of that provider's rates.
#   cached_input    input read from the prompt cache
#   cache_write     input written to the prompt cache (five minutes); cache_write_1h: one hour
#   tier            rates for the whole request when the prompt has more than `above` tokens
# Override or add entries in config.toml:
#   [prices.\"openai/my-model\"]
#   input = 1.0
#   output = 4.0
";

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One price as an inline table, rates in a fixed order.
fn inline(p: &Price) -> String {
    let mut fields = vec![format!("input = {:?}", p.input)];
    let mut opt = |name: &str, v: Option<f64>| {
        if let Some(v) = v {
            fields.push(format!("{name} = {v:?}"));
        }
    };
    opt("cached_input", p.cached_input);
    opt("cache_write", p.cache_write);
    opt("cache_write_1h", p.cache_write_1h);
    fields.push(format!("output = {:?}", p.output));
    if let Some(t) = p.tier {
        let mut tier = vec![format!("above = {}", t.above)];
        for (name, v) in [
            ("input", t.input),
            ("cached_input", t.cached_input),
            ("cache_write", t.cache_write),
            ("output", t.output),
        ] {
            if let Some(v) = v {
                tier.push(format!("{name} = {v:?}"));
            }
        }
        fields.push(format!("tier = {{ {} }}", tier.join(", ")));
    }
    format!("{{ {} }}", fields.join(", "))
}

/// Where the table in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `data/prices.toml`, compiled in.
    Builtin,
    /// The user's copy written by `till prices update`.
    UserCopy(PathBuf),
}

/// The price table in force.
#[derive(Debug, Clone)]
pub struct Prices {
    pub as_of: String,
    pub source: String,
    pub origin: Origin,
    by_model: BTreeMap<String, Price>,
    /// The same entries, for the exact look-up every priced request makes.
    exact: foldhash::HashMap<String, Price>,
    /// Names set by config.toml.
    overridden: Vec<String>,
}

/// The user's copy of the price table.
pub fn user_copy(paths: &Paths) -> PathBuf {
    paths.data_dir.join("prices.toml")
}

impl Prices {
    pub fn builtin() -> Self {
        let t = Table::parse(BUILTIN, Path::new("data/prices.toml"))
            .expect("data/prices.toml is valid");
        Self::from_table(t, Origin::Builtin)
    }

    /// A fetched table's entry of zero for both input and output says "free" or "not billed in
    /// tokens" (LiteLLM lists Lyria's music clips so): till does not take it as a price, so
    /// such a model costs its provider's highest price, announced once, until config.toml sets
    /// one (a price of zero there is the user's own word and stands).
    fn from_table(t: Table, origin: Origin) -> Self {
        Self {
            as_of: t.as_of,
            source: t.source,
            origin,
            exact: t
                .prices
                .iter()
                .filter(|(_, v)| v.input > 0.0 || v.output > 0.0)
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            by_model: t.prices,
            overridden: Vec::new(),
        }
    }

    /// The user's copy when there is one (else the built-in table), with config overrides.
    pub fn load(paths: &Paths, config: &Config) -> anyhow::Result<Self> {
        let path = user_copy(paths);
        let mut p = match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_table(Table::parse(&text, &path)?, Origin::UserCopy(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::builtin(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        p.apply(config);
        Ok(p)
    }

    /// The built-in table with config overrides (no user copy).
    pub fn from_config(config: &Config) -> Self {
        let mut p = Self::builtin();
        p.apply(config);
        p
    }

    fn apply(&mut self, config: &Config) {
        for (k, v) in &config.prices {
            self.by_model.insert(k.clone(), *v);
            self.exact.insert(k.clone(), *v);
            self.overridden.push(k.clone());
        }
    }

    /// Whether config.toml sets `name`'s price.
    pub fn is_overridden(&self, name: &str) -> bool {
        self.overridden.iter().any(|n| n == name)
    }

    /// The price of `provider/model` and where it came from: an exact entry, the entry it is
    /// a dated snapshot of, or else the provider's highest price; `None` when the table does
    /// not list the provider (config.toml's own prices for it are no fallback).
    pub fn lookup(&self, provider: &str, model: &str) -> Option<Priced> {
        let listed = |m: &str| {
            // `provider/model` on the stack: this runs for every priced request.
            let len = provider.len() + 1 + m.len();
            let mut buf = [0u8; 128];
            let Some(key) = buf.get_mut(..len) else {
                return self.exact.get(&format!("{provider}/{m}")).copied();
            };
            key[..provider.len()].copy_from_slice(provider.as_bytes());
            key[provider.len()] = b'/';
            key[provider.len() + 1..].copy_from_slice(m.as_bytes());
            self.exact.get(std::str::from_utf8(key).ok()?).copied()
        };
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

    /// The largest of each rate among `provider`'s entries (each on its own), when the table
    /// lists the provider: the few prices config.toml sets for a provider the table does not
    /// list (OpenRouter's, a local server's) say nothing of what its other models cost, so
    /// those have no price (a key with a budget may not use them).
    fn provider_max(&self, provider: &str) -> Option<Price> {
        let prefix = format!("{provider}/");
        let mut listed = false;
        let max = self
            .by_model
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .inspect(|(k, _)| listed |= !self.is_overridden(k))
            .map(|(_, p)| *p)
            .reduce(Price::max);
        max.filter(|_| listed)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Price)> {
        self.by_model.iter()
    }

    /// The entry named `provider/model` exactly, if the table has one.
    pub fn get(&self, name: &str) -> Option<&Price> {
        self.by_model.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_model.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }
}

#[cfg(test)]
mod tests;
