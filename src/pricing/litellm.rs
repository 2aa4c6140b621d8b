//! Reads LiteLLM's model price table (`model_prices_and_context_window.json`, MIT licensed,
//! shipped in the `litellm` Python package and kept in its repository) into till's table.
//!
//! Each entry names its provider (`litellm_provider`) and gives rates in USD per token:
//! `input_cost_per_token`, `output_cost_per_token`, `cache_read_input_token_cost`,
//! `cache_creation_input_token_cost` (`_above_1hr` for one-hour writes), and long-prompt rates
//! as `…_above_NNNk_tokens`. Only token-priced models of till's built-in providers are kept;
//! batch, flex and priority rates are left out (till refuses priority tiers for keys it
//! meters, and batches are not billed per request).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Price, Table, Tier};

/// LiteLLM's provider name, till's, and the prefix LiteLLM puts on that provider's model ids.
const PROVIDERS: &[(&str, &str, &str)] = &[
    ("openai", "openai", ""),
    ("text-completion-openai", "openai", ""),
    ("anthropic", "anthropic", ""),
    ("gemini", "gemini", "gemini/"),
    ("mistral", "mistral", "mistral/"),
    ("groq", "groq", "groq/"),
    ("openrouter", "openrouter", "openrouter/"),
    ("deepseek", "deepseek", "deepseek/"),
    ("xai", "xai", "xai/"),
    ("together_ai", "together", "together_ai/"),
];

/// Modes whose models are billed per token.
const TOKEN_MODES: &[&str] = &["chat", "completion", "responses", "embedding", "realtime"];

/// The default place to fetch LiteLLM's table from.
pub const DEFAULT_URL: &str =
    "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json";

/// USD per token to USD per million tokens, without the float noise of the multiplication
/// (`3e-06 * 1e6` is `2.9999999999999996`).
fn per_million(v: f64) -> f64 {
    let m = v * 1e6;
    let rounded = (m * 1e9).round() / 1e9;
    if rounded.is_finite() { rounded } else { m }
}

fn rate(spec: &Map<String, Value>, key: &str) -> Option<f64> {
    spec.get(key)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
        .map(per_million)
}

/// The one long-prompt threshold an entry has (`…_above_200k_tokens` → 200,000), if any.
fn tier_of(spec: &Map<String, Value>) -> Result<Option<Tier>, String> {
    let mut thresholds: Vec<u64> = spec
        .keys()
        .filter_map(|k| {
            let (_, rest) = k.split_once("_above_")?;
            let n = rest.strip_suffix("k_tokens")?;
            // The first token-rate field names the tier; `_priority`/`_batches` variants
            // end otherwise and are skipped.
            n.parse::<u64>().ok().map(|n| n * 1000)
        })
        .collect();
    thresholds.sort_unstable();
    thresholds.dedup();
    let above = match thresholds.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => return Err(format!("more than one long-prompt tier: {many:?}")),
    };
    let k = above / 1000;
    let get = |base: &str| rate(spec, &format!("{base}_above_{k}k_tokens"));
    let tier = Tier {
        above,
        input: get("input_cost_per_token"),
        output: get("output_cost_per_token"),
        cached_input: get("cache_read_input_token_cost"),
        cache_write: get("cache_creation_input_token_cost"),
    };
    Ok((tier.input.is_some() || tier.output.is_some()).then_some(tier))
}

/// till's table from LiteLLM's JSON document; `as_of` and `source` describe it.
pub fn convert(doc: &Value, as_of: &str, source: &str) -> Result<Table, String> {
    let entries = doc
        .as_object()
        .ok_or("the price table is not a JSON object of models")?;
    let mut prices = BTreeMap::new();
    for (id, spec) in entries {
        let Some(spec) = spec.as_object() else {
            continue;
        };
        let Some(provider) = spec.get("litellm_provider").and_then(Value::as_str) else {
            continue;
        };
        let Some(&(_, till_name, prefix)) = PROVIDERS.iter().find(|(l, _, _)| *l == provider)
        else {
            continue;
        };
        let mode = spec.get("mode").and_then(Value::as_str).unwrap_or("chat");
        // Gemini's image models answer `generateContent` like any other and report their
        // image output as output tokens, billed at a rate of its own: kept, at the dearer of
        // the two output rates (a budget is never charged less than the answer cost).
        let image_output = (mode == "image_generation" && till_name == "gemini")
            .then(|| rate(spec, "output_cost_per_image_token"))
            .flatten();
        if !TOKEN_MODES.contains(&mode) && image_output.is_none() {
            continue;
        }
        let model = id.strip_prefix(prefix).unwrap_or(id);
        // Fine-tuning templates and ids with spaces or other providers' prefixes.
        if model.is_empty()
            || model.starts_with("ft:")
            || model.contains(char::is_whitespace)
            || (prefix.is_empty() && model.contains('/'))
        {
            continue;
        }
        // Realtime sessions mix audio and text tokens, which till's usage does not tell
        // apart: they are charged the dearer of each pair.
        let dearer = |text: &str, audio: &str| match (rate(spec, text), rate(spec, audio)) {
            (Some(t), Some(a)) if mode == "realtime" => Some(t.max(a)),
            (t, _) => t,
        };
        let Some(input) = dearer("input_cost_per_token", "input_cost_per_audio_token") else {
            continue;
        };
        let output = match (
            dearer("output_cost_per_token", "output_cost_per_audio_token"),
            image_output,
        ) {
            (Some(text), Some(image)) => Some(text.max(image)),
            (text, image) => text.or(image),
        };
        if output.is_none() && mode != "embedding" {
            continue;
        }
        let mut tier = tier_of(spec).map_err(|e| format!("{id}: {e}"))?;
        if let (Some(t), Some(image)) = (tier.as_mut(), image_output) {
            t.output = t.output.map(|o| o.max(image));
        }
        let price = Price {
            input,
            output: output.unwrap_or(0.0),
            cached_input: dearer(
                "cache_read_input_token_cost",
                "cache_read_input_audio_token_cost",
            ),
            cache_write: rate(spec, "cache_creation_input_token_cost"),
            cache_write_1h: rate(spec, "cache_creation_input_token_cost_above_1hr"),
            tier,
        };
        // A negative or absurd rate is a broken table, not a price: refused whole, so the
        // table in use is not replaced.
        price.check().map_err(|e| format!("{id}: {e}"))?;
        prices.insert(format!("{till_name}/{model}"), price);
    }
    if prices.is_empty() {
        return Err("the table has no token prices for any of till's providers".into());
    }
    Ok(Table {
        as_of: as_of.to_string(),
        source: source.to_string(),
        prices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_rates_caching_and_tiers() {
        let doc = json!({
            "sample_spec": {"litellm_provider": "one of …", "input_cost_per_token": 0.0},
            "claude-sonnet-4-5": {
                "litellm_provider": "anthropic", "mode": "chat",
                "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                "cache_read_input_token_cost": 3e-07,
                "cache_creation_input_token_cost": 3.75e-06,
                "cache_creation_input_token_cost_above_1hr": 6e-06,
                "input_cost_per_token_batches": 1.5e-06
            },
            "gemini/gemini-2.5-pro": {
                "litellm_provider": "gemini", "mode": "chat",
                "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                "cache_read_input_token_cost": 1.25e-07,
                "input_cost_per_token_above_200k_tokens": 2.5e-06,
                "output_cost_per_token_above_200k_tokens": 1.5e-05,
                "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
                "input_cost_per_token_above_200k_tokens_priority": 4.5e-06
            },
            "text-embedding-3-small": {
                "litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 2e-08
            },
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_token": 1.0},
            "bedrock/claude": {"litellm_provider": "bedrock", "input_cost_per_token": 1.0, "output_cost_per_token": 1.0},
            "ft:gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 1.0, "output_cost_per_token": 1.0},
            "together_ai/meta/llama": {"litellm_provider": "together_ai", "input_cost_per_token": 1e-07, "output_cost_per_token": 2e-07},
            "gpt-realtime": {"litellm_provider": "openai", "mode": "realtime",
                "input_cost_per_token": 4e-06, "output_cost_per_token": 1.6e-05,
                "input_cost_per_audio_token": 3.2e-05, "output_cost_per_audio_token": 6.4e-05},
            "gemini/gemini-3-pro-image": {"litellm_provider": "gemini", "mode": "image_generation",
                "input_cost_per_token": 2e-06, "output_cost_per_token": 1.2e-05,
                "output_cost_per_image_token": 0.00012, "output_cost_per_image": 0.134,
                "input_cost_per_token_above_200k_tokens": 4e-06,
                "output_cost_per_token_above_200k_tokens": 1.8e-05},
            "gemini/imagen-4": {"litellm_provider": "gemini", "mode": "image_generation",
                "output_cost_per_image": 0.04}
        });
        let t = convert(&doc, "2026-11-30", "test").unwrap();
        assert_eq!(
            t.prices.keys().collect::<Vec<_>>(),
            [
                "anthropic/claude-sonnet-4-5",
                "gemini/gemini-2.5-pro",
                "gemini/gemini-3-pro-image",
                "openai/gpt-realtime",
                "openai/text-embedding-3-small",
                "together/meta/llama"
            ]
        );
        let c = t.prices["anthropic/claude-sonnet-4-5"];
        assert_eq!(
            (
                c.input,
                c.output,
                c.cached_input,
                c.cache_write,
                c.cache_write_1h
            ),
            (3.0, 15.0, Some(0.3), Some(3.75), Some(6.0))
        );
        let g = t.prices["gemini/gemini-2.5-pro"].tier.unwrap();
        assert_eq!(
            (g.above, g.input, g.output, g.cached_input, g.cache_write),
            (200_000, Some(2.5), Some(15.0), Some(0.25), None)
        );
        assert_eq!(t.prices["openai/text-embedding-3-small"].output, 0.0);
        let rt = t.prices["openai/gpt-realtime"];
        assert_eq!((rt.input, rt.output), (32.0, 64.0));
        // An image model's output is billed at its image rate, whatever the prompt's length;
        // one priced only per image (Imagen's `predict`) is not a token price.
        let img = t.prices["gemini/gemini-3-pro-image"];
        assert_eq!(
            (img.input, img.output, img.tier.and_then(|t| t.output)),
            (2.0, 120.0, Some(120.0))
        );
        // What was written reads back the same.
        let back = Table::parse(&t.to_toml(), std::path::Path::new("t")).unwrap();
        assert_eq!(back.prices, t.prices);
        assert_eq!(
            (back.as_of.as_str(), back.source.as_str()),
            ("2026-11-30", "test")
        );
    }

    #[test]
    fn refuses_what_is_not_a_price_table() {
        assert!(convert(&json!([1, 2]), "d", "s").is_err());
        assert!(convert(&json!({"x": {"litellm_provider": "bedrock"}}), "d", "s").is_err());
        let two_tiers = json!({"m": {
            "litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06,
            "input_cost_per_token_above_128k_tokens": 2e-06, "input_cost_per_token_above_200k_tokens": 3e-06
        }});
        assert!(
            convert(&two_tiers, "d", "s")
                .unwrap_err()
                .contains("more than one")
        );
    }
}
