//! `till usage`: totals from the ledger, grouped, with a spend bar per row in a terminal.

use std::process::ExitCode;

use crate::cli::{GroupArg, UsageArgs};
use crate::commands::Ctx;
use crate::ledger::query::{GroupBy, LogFilter, UsageRow};

pub fn run(ctx: &Ctx, args: &UsageArgs) -> anyhow::Result<ExitCode> {
    let ledger = ctx.ledger()?;
    let filter = LogFilter {
        since: Some(super::parse_since(&args.since)?),
        lineage: args
            .key
            .as_deref()
            .map(|k| super::key_lineage(&ledger, k))
            .transpose()?,
        ..LogFilter::default()
    };
    let by = match args.by {
        GroupArg::Key => GroupBy::Key,
        GroupArg::Model => GroupBy::Model,
        GroupArg::Provider => GroupBy::Provider,
        GroupArg::Day => GroupBy::Day,
    };
    let rows = ledger.usage(&filter, by)?;
    if args.json {
        crate::output::json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        crate::output::note("no requests in that period");
        return Ok(ExitCode::SUCCESS);
    }
    crate::output::data(&table(&rows, crate::output::stdout_is_terminal()))?;
    Ok(ExitCode::SUCCESS)
}

/// The usage table; `bars` adds a spend bar per row (for terminals).
pub fn table(rows: &[UsageRow], bars: bool) -> String {
    let max = rows.iter().map(|r| r.cost_usd).fold(0.0, f64::max);
    let mut out = format!(
        "{:<32}  {:>8}  {:>6}  {:>10}  {:>10}  {:>10}\n",
        "GROUP", "REQUESTS", "DENIED", "IN", "OUT", "COST"
    );
    let mut total = UsageRow {
        group: "total".into(),
        requests: 0,
        denied: 0,
        input_tokens: 0,
        output_tokens: 0,
        cached_tokens: 0,
        cost_usd: 0.0,
    };
    for r in rows {
        let bar = if bars && max > 0.0 {
            let n = ((r.cost_usd / max) * 20.0).round() as usize;
            format!("  {}", "█".repeat(n))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:<32}  {:>8}  {:>6}  {:>10}  {:>10}  {:>10}{bar}\n",
            crate::output::printable(&r.group),
            r.requests,
            r.denied,
            r.input_tokens,
            r.output_tokens,
            crate::format::usd(r.cost_usd)
        ));
        total.requests += r.requests;
        total.denied += r.denied;
        total.input_tokens += r.input_tokens;
        total.output_tokens += r.output_tokens;
        total.cost_usd += r.cost_usd;
    }
    out.push_str(&format!(
        "{:<32}  {:>8}  {:>6}  {:>10}  {:>10}  {:>10}\n",
        "total",
        total.requests,
        total.denied,
        total.input_tokens,
        total.output_tokens,
        crate::format::usd(total.cost_usd)
    ));
    out
}
