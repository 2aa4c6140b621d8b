use std::path::Path;

use super::*;

/// The lookup rules on a table of their own, apart from whatever the built-in one holds.
fn table() -> Prices {
    let text = r#"
as_of = "2026-11-01"
[prices]
"openai/gpt-5" = { input = 1.25, cached_input = 0.125, output = 10.0 }
"openai/gpt-4o" = { input = 2.50, cached_input = 1.25, output = 10.0 }
"openai/gpt-4o-mini" = { input = 0.15, cached_input = 0.075, output = 0.60 }
"openai/o3" = { input = 2.0, cached_input = 0.50, output = 8.0 }
"anthropic/claude-opus-4-1" = { input = 15.0, cached_input = 1.50, cache_write = 18.75, cache_write_1h = 30.0, output = 75.0 }
"anthropic/claude-sonnet-4-5" = { input = 3.0, cached_input = 0.30, cache_write = 3.75, cache_write_1h = 6.0, output = 15.0 }
"anthropic/claude-haiku-4-5" = { input = 1.0, cached_input = 0.10, output = 5.0 }
"gemini/gemini-2.5-pro" = { input = 1.25, cached_input = 0.125, output = 10.0, tier = { above = 200000, input = 2.5, cached_input = 0.25, output = 15.0 } }
"gemini/gemini-2.0-flash" = { input = 0.10, cached_input = 0.025, output = 0.40 }
"#;
    Prices::from_table(Table::parse(text, Path::new("t")).unwrap(), Origin::Builtin)
}

fn source(p: &Prices, provider: &str, model: &str) -> Option<PriceSource> {
    p.lookup(provider, model).map(|x| x.source)
}

fn price(p: &Prices, provider: &str, model: &str) -> Price {
    p.lookup(provider, model).unwrap().price
}

#[test]
fn dated_snapshots_match_their_base_model() {
    let p = table();
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
    let p = table();
    let openai_max = Price {
        input: 2.5,
        output: 10.0,
        cached_input: Some(1.25),
        cache_write: Some(2.5),
        cache_write_1h: Some(2.5),
        tier: None,
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
    let p = table();
    // Opus 4.1 has Anthropic's dearest rates here, cache writes included.
    assert_eq!(
        price(&p, "anthropic", "claude-mystery"),
        Price {
            input: 15.0,
            output: 75.0,
            cached_input: Some(1.5),
            cache_write: Some(18.75),
            cache_write_1h: Some(30.0),
            tier: None,
        }
    );
    // Each rate's maximum is taken apart: a config entry can raise either; a long-prompt
    // tier is kept (the dearest).
    let c = Config::parse(
        "[prices.\"gemini/g-in\"]\ninput = 9\noutput = 0\n[prices.\"gemini/g-out\"]\ninput = 0\noutput = 99\n",
        Path::new("c"),
    )
    .unwrap();
    let mut p = table();
    p.apply(&c);
    let max = price(&p, "gemini", "gemini-9-ultra");
    assert_eq!((max.input, max.output), (9.0, 99.0));
    assert_eq!(max.tier.map(|t| t.above), Some(200_000));
    // A provider without prices has no fallback.
    assert_eq!(p.lookup("local", "llama-3.3-70b"), None);
    // Cached input is charged at the highest cached-input rate, which is g-in's input.
    let usage = Usage {
        input_tokens: 1000,
        cached_tokens: 1000,
        ..Usage::default()
    };
    assert_eq!(max.cost_micros(&usage), 9000);
}

#[test]
fn cost_counts_cache_reads_and_writes_at_their_prices() {
    let price = Price {
        cached_input: Some(0.5),
        cache_write: Some(2.5),
        cache_write_1h: Some(4.0),
        ..Price::flat(2.0, 8.0)
    };
    let usage = Usage {
        input_tokens: 1000,
        output_tokens: 100,
        cached_tokens: 400,
        cache_write_tokens: 300,
        cache_write_1h_tokens: 100,
        reasoning_tokens: 0,
    };
    // 300 fresh at 2, 400 read at 0.5, 200 written at 2.5, 100 written for an hour at 4.
    assert_eq!(price.cost_micros(&usage), 600 + 200 + 500 + 400 + 800);
    // Counts that do not add up are clamped to the input, never charged twice.
    let odd = Usage {
        input_tokens: 100,
        cached_tokens: 80,
        cache_write_tokens: 80,
        cache_write_1h_tokens: 500,
        ..Usage::default()
    };
    assert_eq!(price.cost_micros(&odd), 40 + 80);
}

#[test]
fn a_part_of_a_micro_dollar_is_charged_as_one() {
    let tokens = |input_tokens, output_tokens| Usage {
        input_tokens,
        output_tokens,
        ..Usage::default()
    };
    // 22 tokens of an embedding at $0.02 a million: 0.44 µ$, not nothing.
    assert_eq!(Price::flat(0.02, 0.0).cost_micros(&tokens(22, 0)), 1);
    // 1 in and 5 out at $0.15 and $0.60: 3.15 µ$.
    assert_eq!(Price::flat(0.15, 0.6).cost_micros(&tokens(1, 5)), 4);
    // What is whole stays whole, whatever the float makes of it (7.000000000000001).
    assert_eq!(Price::flat(0.07, 0.0).cost_micros(&tokens(100, 0)), 7);
    assert_eq!(Price::flat(0.02, 0.0).cost_micros(&tokens(0, 0)), 0);
}

#[test]
fn long_prompts_are_charged_at_the_tier() {
    let p = price(&table(), "gemini", "gemini-2.5-pro");
    let at = |input_tokens| Usage {
        input_tokens,
        output_tokens: 1000,
        ..Usage::default()
    };
    assert_eq!(p.cost_micros(&at(200_000)), 250_000 + 10_000);
    assert_eq!(p.cost_micros(&at(200_001)), 500_003 + 15_000);
    // The reservation takes the tier the prompt bound could reach.
    assert_eq!(
        p.reserve_micros(PromptBound::tokens(200_000), 1000),
        250_000 + 10_000
    );
    assert_eq!(
        p.reserve_micros(PromptBound::tokens(300_000), 1000),
        750_000 + 15_000
    );
}

#[test]
fn reservations_cover_every_way_a_prompt_can_be_billed() {
    let p = table();
    let sonnet = price(&p, "anthropic", "claude-sonnet-4-5");
    let prompt = 10_000;
    let reserved = sonnet.reserve_micros(PromptBound::tokens(prompt), 500);
    let reserved_long = sonnet.reserve_micros(
        PromptBound {
            tokens: prompt,
            long_cache_writes: true,
        },
        500,
    );
    // Whatever mix of fresh, cached and written tokens the provider reports, the bill of a
    // prompt within the bound stays within the reservation (one-hour writes within the one
    // made for a request that asks for them).
    for (cached, written, written_1h) in [
        (0, 0, 0),
        (prompt, 0, 0),
        (0, prompt, 0),
        (0, prompt, prompt),
        (3000, 4000, 2000),
    ] {
        let u = Usage {
            input_tokens: prompt,
            output_tokens: 500,
            cached_tokens: cached,
            cache_write_tokens: written,
            cache_write_1h_tokens: written_1h,
            reasoning_tokens: 0,
        };
        assert!(sonnet.cost_micros(&u) <= reserved_long, "{u:?}");
        if written_1h == 0 {
            assert!(sonnet.cost_micros(&u) <= reserved, "{u:?}");
        }
    }
    assert_eq!(reserved, 37_500 + 7_500);
    assert_eq!(reserved_long, 60_000 + 7_500);
}

#[test]
fn the_supplement_fills_only_what_the_table_lacks() {
    let mut t = Table::parse(
        "as_of = \"d\"\nsource = \"s\"\n[prices]\n\"openai/gpt-6.2-astra\" = { input = 1.0, output = 2.0 }\n",
        Path::new("t"),
    )
    .unwrap();
    assert!(t.fill_from_supplement() >= 1);
    assert_eq!(t.prices["openai/gpt-6.2-astra"], Price::flat(1.0, 2.0));
    assert!(t.prices.contains_key("openai/gpt-6.2-sol"));
    assert!(t.source.starts_with("s; "), "{}", t.source);
}

#[test]
fn the_default_models_of_the_agents_people_run_are_priced() {
    // Claude Code, Codex CLI and Gemini CLI defaults and their usual alternatives.
    let p = Prices::builtin();
    for (provider, model) in [
        ("anthropic", "claude-opus-4-8"),
        ("anthropic", "claude-sonnet-5"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("openai", "gpt-5.6-sol"),
        ("openai", "gpt-6.2-sol"),
        ("openai", "gpt-5.6-terra"),
        ("openai", "gpt-5.6-luna"),
        ("openai", "gpt-5.5"),
        ("openai", "gpt-5.1-codex"),
        ("openai", "gpt-4o-mini"),
        ("gemini", "gemini-2.5-pro"),
        ("gemini", "gemini-2.5-flash"),
        ("gemini", "gemini-3-flash-preview"),
    ] {
        assert_eq!(
            source(&p, provider, model),
            Some(PriceSource::Exact),
            "{provider}/{model}"
        );
    }
    assert!(p.len() > 300, "{}", p.len());
    assert!(!p.source.is_empty() && p.as_of.len() == 10);
}

#[test]
fn config_overrides_and_adds() {
    let c = Config::parse("[prices.\"openai/gpt-4o\"]\ninput = 1\noutput = 2\n[prices.\"local/m\"]\ninput = 3\noutput = 4\n", Path::new("c")).unwrap();
    let p = Prices::from_config(&c);
    assert_eq!(price(&p, "openai", "gpt-4o").input, 1.0);
    assert!(p.is_overridden("openai/gpt-4o") && !p.is_overridden("openai/gpt-5"));
    assert_eq!(price(&p, "local", "m").output, 4.0);
    assert_eq!(
        source(&p, "local", "m-20260101"),
        Some(PriceSource::Snapshot)
    );
}

#[test]
fn a_table_entry_of_zero_is_no_price_but_a_config_entry_of_zero_is() {
    let text = r#"
as_of = "2026-11-01"
[prices]
"gemini/gemini-2.0-flash" = { input = 0.10, output = 0.40 }
"gemini/lyria-3-pro-preview" = { input = 0.0, output = 0.0 }
"#;
    let mut p = Prices::from_table(Table::parse(text, Path::new("t")).unwrap(), Origin::Builtin);
    // Zero for both says "free" or "not billed in tokens": the provider's highest price.
    assert_eq!(
        source(&p, "gemini", "lyria-3-pro-preview"),
        Some(PriceSource::ProviderMax)
    );
    assert_eq!(price(&p, "gemini", "lyria-3-pro-preview").output, 0.40);
    // config.toml's zero is the user's own word.
    let c = Config::parse(
        "[prices.\"gemini/lyria-3-pro-preview\"]\ninput = 0\noutput = 0\n",
        Path::new("c"),
    )
    .unwrap();
    p.apply(&c);
    assert_eq!(
        source(&p, "gemini", "lyria-3-pro-preview"),
        Some(PriceSource::Exact)
    );
    assert_eq!(price(&p, "gemini", "lyria-3-pro-preview").output, 0.0);
}

/// A model the table does not list is charged the provider's highest price at every prompt
/// length: never less, for a long prompt, than any listed model (the merged tier used to be one
/// cheap model's, a twentieth of the highest rates), and never less than for a short one.
#[test]
fn the_highest_price_is_highest_for_long_prompts_too() {
    let all = Prices::builtin();
    let providers: std::collections::BTreeSet<&str> = all
        .iter()
        .filter_map(|(name, _)| name.split_once('/').map(|(p, _)| p))
        .collect();
    for provider in providers {
        let max = all.lookup(provider, "no-such-model-anywhere").unwrap();
        assert_eq!(max.source, PriceSource::ProviderMax);
        for tokens in [0, 100_001, 200_001, 272_001, u64::MAX] {
            let m = max.price.rates(tokens);
            let short = max.price.rates(0);
            for (what, hi, lo) in [
                ("input", m.input, short.input),
                ("output", m.output, short.output),
                ("cache write", m.cache_write, short.cache_write),
            ] {
                assert!(hi >= lo, "{provider} at {tokens}: {what} {hi} < {lo}");
            }
            for (name, p) in all
                .iter()
                .filter(|(n, _)| n.starts_with(&format!("{provider}/")))
            {
                let r = p.rates(tokens);
                for (what, hi, lo) in [
                    ("input", m.input, r.input),
                    ("output", m.output, r.output),
                    ("cached input", m.cached_input, r.cached_input),
                    ("cache write", m.cache_write, r.cache_write),
                    ("cache write 1h", m.cache_write_1h, r.cache_write_1h),
                ] {
                    assert!(
                        hi >= lo,
                        "{provider} at {tokens}: {what} {hi} below {name}'s {lo}"
                    );
                }
            }
        }
    }
}

/// Regression: Claude Opus 4 and 4.1 ($15 input, $75 output) were missing from the table and
/// charged its highest listed rates ($10/$50), so a dollar budget let through $1.50 of them.
#[test]
fn models_still_served_above_every_listed_price_are_charged_their_own() {
    let p = Prices::builtin();
    for model in [
        "claude-opus-4-1",
        "claude-opus-4-1-20250805",
        "claude-opus-4-0",
        "claude-opus-4-20250514",
        "claude-3-opus-20240229",
    ] {
        let found = p.lookup("anthropic", model).unwrap();
        assert_ne!(found.source, PriceSource::ProviderMax, "{model}");
        let r = found.price.rates(0);
        assert_eq!((r.input, r.output), (15.0, 75.0), "{model}");
    }
    // And the provider's highest price, for a model no table lists, is at least theirs.
    let max = p.lookup("anthropic", "claude-opus-3-9").unwrap();
    assert_eq!(max.source, PriceSource::ProviderMax);
    let r = max.price.rates(0);
    assert!(r.input >= 15.0 && r.output >= 75.0, "{r:?}");
}
