//! `till prices`: the price table in force, and `update`/`reset` of this machine's copy.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::{PricesAction, PricesArgs, PricesUpdateArgs};
use crate::commands::Ctx;
use crate::error::UserError;
use crate::pricing::{Origin, Price, Prices, litellm, user_copy};
use crate::time::{now_unix, rfc3339};

/// Largest table accepted from a file or URL (LiteLLM's is about 3.5 MB).
const MAX_TABLE_BYTES: u64 = 64 << 20;

pub fn run(ctx: &Ctx, args: &PricesArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        Some(PricesAction::Update(u)) => update(ctx, u),
        Some(PricesAction::Reset) => reset(ctx),
        None => show(ctx, args),
    }
}

#[derive(Serialize)]
struct Shown<'a> {
    as_of: &'a str,
    source: &'a str,
    /// `builtin` or the path of this machine's copy.
    table: String,
    prices: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct Row<'a> {
    model: &'a str,
    #[serde(flatten)]
    price: &'a Price,
    /// Set by config.toml.
    config: bool,
}

fn show(ctx: &Ctx, args: &PricesArgs) -> anyhow::Result<ExitCode> {
    let prices = Prices::load(&ctx.paths, &ctx.config)?;
    let filter = args.filter.as_deref().unwrap_or("");
    let rows: Vec<Row<'_>> = prices
        .iter()
        .filter(|(name, _)| name.contains(filter))
        .map(|(name, price)| Row {
            model: name,
            price,
            config: prices.is_overridden(name),
        })
        .collect();
    let table = match &prices.origin {
        Origin::Builtin => "builtin".to_string(),
        Origin::UserCopy(p) => p.display().to_string(),
    };
    if args.json {
        crate::output::json(&Shown {
            as_of: &prices.as_of,
            source: &prices.source,
            table,
            prices: rows,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let from = match &prices.origin {
        Origin::Builtin => "built into till".to_string(),
        Origin::UserCopy(p) => format!("{} (till prices update)", p.display()),
    };
    crate::output::note(&format!(
        "prices in USD per million tokens, as of {}, {from}{}",
        prices.as_of,
        if prices.source.is_empty() {
            String::new()
        } else {
            format!("; source: {}", prices.source)
        }
    ));
    if rows.is_empty() {
        crate::output::note(&format!(
            "no model matches `{filter}`; a model that is not listed is charged its provider's highest prices when the table lists the provider, and otherwise has none (add [prices.\"provider/model\"] to config.toml)"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    // Names from a fetched table are shown escaped, like everything else from outside.
    // A price from config.toml is marked so, in the column (which is as wide as its widest).
    let name = |r: &Row<'_>| {
        let model = crate::output::printable(r.model).into_owned();
        if r.config {
            format!("{model} (config)")
        } else {
            model
        }
    };
    let width = rows
        .iter()
        .map(|r| crate::format::width(&name(r)))
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<width$} {:>9} {:>9} {:>9} {:>9} {:>9}  {}\n",
        "MODEL", "INPUT", "CACHED", "WRITE", "WRITE-1H", "OUTPUT", "LONG PROMPTS"
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), rate);
    for r in &rows {
        let p = r.price;
        let tier = p.tier.map_or_else(String::new, |t| {
            format!(
                "above {}k: {} in, {} out",
                t.above / 1000,
                opt(t.input),
                opt(t.output)
            )
        });
        out.push_str(&format!(
            "{} {:>9} {:>9} {:>9} {:>9} {:>9}  {}\n",
            crate::format::cell(&name(r), width),
            rate(p.input),
            opt(p.cached_input),
            opt(p.cache_write),
            opt(p.cache_write_1h),
            rate(p.output),
            tier
        ));
    }
    crate::output::data(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// A rate without trailing zeros: `3`, `0.3`, `0.075`.
fn rate(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() { "0".into() } else { s.into() }
}

fn update(ctx: &Ctx, args: &PricesUpdateArgs) -> anyhow::Result<ExitCode> {
    let from = args.from.as_deref().unwrap_or(litellm::DEFAULT_URL);
    let bytes = if from.starts_with("http://") || from.starts_with("https://") {
        fetch(from)?
    } else {
        read_file(Path::new(from))?
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        UserError::runtime(format!("{from} is not JSON: {e}"))
            .hint("--from takes LiteLLM's model_prices_and_context_window.json (a file or URL)")
    })?;
    let today = rfc3339(now_unix())[..10].to_string();
    let mut table = litellm::convert(&doc, &today, &format!("LiteLLM model price table, {from}"))
        .map_err(|e| {
        UserError::runtime(format!("{from}: {e}"))
            .hint("--from takes LiteLLM's model_prices_and_context_window.json (a file or URL)")
    })?;
    table.fill_from_supplement();
    // The table in use, without config.toml's entries (those stay whatever the table says);
    // one that no longer loads is what this command replaces.
    let before = Prices::load(&ctx.paths, &ctx.config).ok();
    let old: Vec<(&String, &Price)> = before
        .iter()
        .flat_map(Prices::iter)
        .filter(|(name, _)| !before.as_ref().is_some_and(|b| b.is_overridden(name)))
        .collect();
    // A table that lacks most of what the one in use prices is a partial download or another
    // file, more likely than a price list that shrank: every dollar budget would then be
    // charged highest prices, or refuse, for the models it lost.
    let lost = old
        .iter()
        .filter(|(name, _)| !table.prices.contains_key(*name))
        .count();
    if !args.force && lost * 2 > old.len() {
        return Err(UserError::runtime(format!(
            "{from} prices {} models and lacks {lost} of the {} the table in use prices; nothing was changed",
            table.prices.len(),
            old.len()
        ))
        .hint("check that it is LiteLLM's whole model_prices_and_context_window.json; --force keeps it anyway")
        .into());
    }
    ctx.paths.ensure_data_dir()?;
    let path = user_copy(&ctx.paths);
    crate::config::write_atomically(&path, table.to_toml().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    let changed = table
        .prices
        .iter()
        .filter(|(name, p)| before.as_ref().and_then(|b| b.get(name)) != Some(p))
        .count();
    let gone: Vec<&str> = old
        .iter()
        .filter(|(name, _)| !table.prices.contains_key(*name))
        .map(|(name, _)| name.as_str())
        .collect();
    crate::output::note(&format!(
        "{} prices written to {} in place of the {} of the table in use ({changed} new or changed, {} gone); `till run` and `till serve` use them from their next start",
        table.prices.len(),
        path.display(),
        old.len(),
        gone.len(),
    ));
    if !gone.is_empty() {
        let provider = |name: &str| name.split_once('/').map_or(name, |(p, _)| p).to_string();
        let mut unpriced: Vec<String> = gone.iter().map(|n| provider(n)).collect();
        unpriced.sort();
        unpriced.dedup();
        unpriced.retain(|p| !table.prices.keys().any(|n| provider(n) == *p));
        let examples: Vec<String> = gone
            .iter()
            .take(3)
            .map(|n| crate::output::printable(n).into_owned())
            .collect();
        crate::output::warn(&format!(
            "{} models priced before are not in the new table ({}{}); each is charged its provider's highest price{}; `till prices reset` goes back to the built-in table",
            gone.len(),
            examples.join(", "),
            if gone.len() > 3 { ", …" } else { "" },
            if unpriced.is_empty() {
                String::new()
            } else {
                format!(
                    ", and {} {} no prices at all now",
                    crate::output::printable(&unpriced.join(", ")),
                    if unpriced.len() == 1 { "has" } else { "have" }
                )
            }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn reset(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let path = user_copy(&ctx.paths);
    match std::fs::remove_file(&path) {
        Ok(()) => crate::output::note(&format!(
            "removed {}; till uses its built-in prices again",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::output::note("no fetched price table to remove; till uses its built-in prices")
        }
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    Ok(ExitCode::SUCCESS)
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| {
        UserError::runtime(format!("cannot read {}: {e}", path.display()))
            .hint("--from takes a file path or an http(s) URL")
    })?;
    let mut bytes = Vec::new();
    // A directory opens; reading it is what fails.
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_TABLE_BYTES + 1),
        &mut bytes,
    )
    .map_err(|e| {
        UserError::runtime(format!("cannot read {}: {e}", path.display()))
            .hint("--from takes a file path or an http(s) URL")
    })?;
    if bytes.len() as u64 > MAX_TABLE_BYTES {
        return Err(UserError::runtime(format!(
            "{} is larger than {} MiB; that is not a price table",
            path.display(),
            MAX_TABLE_BYTES >> 20
        ))
        .into());
    }
    Ok(bytes)
}

fn fetch(url: &str) -> anyhow::Result<Vec<u8>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = crate::upstream::client(Duration::from_secs(10));
    runtime.block_on(async {
        let failed = |e: reqwest::Error| {
            UserError::runtime(format!(
                "cannot fetch the price table: {}",
                crate::upstream::without_url(&e)
            ))
            .hint(format!(
                "check the network, or download {} and pass --from FILE",
                crate::output::printable(url)
            ))
        };
        let resp = client
            .get(url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(failed)?;
        if !resp.status().is_success() {
            return Err(UserError::runtime(format!(
                "fetching the price table answered HTTP {}",
                resp.status().as_u16()
            ))
            .hint(format!(
                "check the URL, or download {} and pass --from FILE",
                crate::output::printable(url)
            ))
            .into());
        }
        let mut bytes = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_TABLE_BYTES {
                return Err(UserError::runtime(format!(
                    "the answer is larger than {} MiB; that is not a price table",
                    MAX_TABLE_BYTES >> 20
                ))
                .into());
            }
        }
        Ok(bytes)
    })
}
