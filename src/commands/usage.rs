//! `till usage`: totals from the ledger, grouped, with a spend bar per row in a terminal.

use std::process::ExitCode;

use crate::cli::{GroupArg, UsageArgs};
use crate::commands::Ctx;
use crate::ledger::query::{GroupBy, LogFilter, UsageRow};

pub fn run(ctx: &Ctx, args: &UsageArgs) -> anyhow::Result<ExitCode> {
    let ledger = ctx.ledger_to_read()?;
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
    // The group column is 32 wide, wider for a longer group up to 64, and a group longer
    // than that is cut (`--json` has it whole): the numbers stay in their columns.
    let groups: Vec<_> = rows
        .iter()
        .map(|r| crate::output::printable(&r.group))
        .collect();
    let width = crate::format::column_width(groups.iter().map(|g| g.as_ref()), 32, 64);
    let mut out = format!(
        "{:<width$}  {:>8}  {:>6}  {:>6}  {:>10}  {:>10}  {:>10}\n",
        "GROUP", "REQUESTS", "DENIED", "FAILED", "IN", "OUT", "COST"
    );
    let mut total = UsageRow {
        group: "total".into(),
        requests: 0,
        denied: 0,
        failed: 0,
        input_tokens: 0,
        output_tokens: 0,
        cached_tokens: 0,
        cost_usd: 0.0,
    };
    for (r, group) in rows.iter().zip(&groups) {
        let bar = if bars && max > 0.0 {
            let n = ((r.cost_usd / max) * 20.0).round() as usize;
            format!("  {}", "█".repeat(n))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{}  {:>8}  {:>6}  {:>6}  {:>10}  {:>10}  {:>10}{bar}\n",
            crate::format::cell(group, width),
            r.requests,
            r.denied,
            r.failed,
            r.input_tokens,
            r.output_tokens,
            crate::format::usd(r.cost_usd)
        ));
        total.requests += r.requests;
        total.denied += r.denied;
        total.failed += r.failed;
        total.input_tokens += r.input_tokens;
        total.output_tokens += r.output_tokens;
        total.cost_usd += r.cost_usd;
    }
    out.push_str(&format!(
        "{:<width$}  {:>8}  {:>6}  {:>6}  {:>10}  {:>10}  {:>10}\n",
        "total",
        total.requests,
        total.denied,
        total.failed,
        total.input_tokens,
        total.output_tokens,
        crate::format::usd(total.cost_usd)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: &str, requests: u64) -> UsageRow {
        UsageRow {
            group: group.into(),
            requests,
            denied: 0,
            failed: 0,
            input_tokens: 10,
            output_tokens: 20,
            cached_tokens: 0,
            cost_usd: 0.5,
        }
    }

    /// A group longer than the column pushed every number after it out of line.
    #[test]
    fn long_groups_widen_the_column_then_are_cut() {
        let rows = [
            row("gpt-4o", 1),
            row(&"m".repeat(40), 22),
            row(&"x".repeat(200), 333),
        ];
        let text = table(&rows, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[1].starts_with("gpt-4o "), "{text}");
        assert!(lines[2].starts_with(&"m".repeat(40)), "{text}");
        assert!(
            lines[3].starts_with(&format!("{}…  ", "x".repeat(63))),
            "{text}"
        );
        // REQUESTS is right-aligned in the 8 columns after the 64 of the group and 2 spaces.
        for (line, n) in lines[1..4].iter().zip(["1", "22", "333"]) {
            let field: String = line.chars().skip(66).take(8).collect();
            assert_eq!(field.trim(), n, "{text}");
        }
        assert!(table(&rows[..1], false).starts_with(&format!("{:<32}  REQUESTS", "GROUP")));
    }

    /// A model name of wide (East Asian) characters takes two columns a character, and
    /// pushed the numbers after it out of line.
    #[test]
    fn wide_characters_keep_the_numbers_in_their_columns() {
        let rows = [
            row("qwen/\u{5343}\u{554f}-\u{6a21}\u{578b}", 1),
            row(&"\u{6a21}".repeat(40), 22),
            row("gpt-4o", 333),
        ];
        let text = table(&rows, false);
        // Each line's REQUESTS field ends at the same screen column.
        let request_ends: Vec<usize> = text
            .lines()
            .map(|line| {
                let group_end = line.find("  ").unwrap();
                let (group, rest) = line.split_at(group_end);
                let after = rest.trim_start();
                let field = after.split_whitespace().next().unwrap();
                crate::format::width(group) + (rest.len() - after.len()) + field.len()
            })
            .collect();
        assert!(
            request_ends.windows(2).all(|w| w[0] == w[1]),
            "{text}\n{request_ends:?}"
        );
        assert!(text.lines().nth(2).unwrap().contains('\u{2026}'), "{text}");
    }
}
