//! `till log`: the requests agents made, from the ledger.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::LogArgs;
use crate::commands::Ctx;
use crate::ledger::query::{EventRow, LogFilter, LogRow};
use crate::output::printable;
use crate::time::rfc3339;

pub fn run(ctx: &Ctx, args: &LogArgs) -> anyhow::Result<ExitCode> {
    // Following waits for what a proxy writes: that needs the file.
    let ledger = if args.follow {
        ctx.ledger()?
    } else {
        ctx.ledger_to_read()?
    };
    let since = args.since.as_deref().map(super::parse_since).transpose()?;
    let mut filter = LogFilter {
        since,
        lineage: args
            .key
            .as_deref()
            .map(|k| super::key_lineage(&ledger, k))
            .transpose()?,
        denied_only: args.denied,
        after_id: None,
        limit: Some(args.limit),
    };
    // Following prints what comes after the rows shown first; with none shown (`-n 0`, or
    // none matched) it starts after the newest row there is now, not from the beginning.
    let (last_request, last_event) = if args.follow {
        ledger.last_ids()?
    } else {
        (0, 0)
    };
    if args.alerts {
        let mut first = true;
        let mut header = !args.json;
        loop {
            let events = ledger.events(&filter)?;
            if first && events.is_empty() && !args.json {
                crate::output::note("no alerts in that period");
            }
            first = false;
            filter.after_id = Some(
                events
                    .last()
                    .map_or(last_event, |e| e.id)
                    .max(filter.after_id.unwrap_or(last_event)),
            );
            if args.json && args.follow {
                // One object a line as they come, as `log -f --json` prints requests.
                for e in &events {
                    crate::output::json_line(e)?;
                }
            } else if args.json || !events.is_empty() {
                print_events(&events, args.json, header)?;
                header = false;
            }
            if !args.follow {
                return Ok(ExitCode::SUCCESS);
            }
            filter.limit = None;
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let mut header = !args.json;
    loop {
        let rows = ledger.log(&filter)?;
        filter.after_id = Some(
            rows.last()
                .map_or(last_request, |r| r.id)
                .max(filter.after_id.unwrap_or(last_request)),
        );
        if args.json {
            if args.follow {
                for r in &rows {
                    crate::output::json_line(r)?;
                }
            } else {
                crate::output::json(&rows)?;
            }
        } else if !rows.is_empty() || header {
            crate::output::data(&table(&rows, header))?;
            header = false;
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        filter.limit = None;
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn print_events(events: &[EventRow], json: bool, header: bool) -> anyhow::Result<()> {
    if json {
        return crate::output::json(&events);
    }
    let mut out = String::new();
    if header {
        out.push_str(&format!(
            "{:<20}  {}  {:<9} {}\n",
            "TIME",
            crate::format::cell("KEY", 14),
            "KIND",
            "MESSAGE"
        ));
    }
    for e in events {
        out.push_str(&format!(
            "{}  {}  {:<9} {}\n",
            rfc3339(e.at),
            crate::format::cell(
                &printable(e.key_name.as_deref().or(e.key.as_deref()).unwrap_or("-")),
                14
            ),
            printable(&e.kind),
            printable(&e.message)
        ));
    }
    if !out.is_empty() {
        crate::output::data(&out)?;
    }
    Ok(())
}

/// The log as a table. Columns: time, key, model, status, tokens in/out, cost, latency, note.
/// Names and models are escaped before they are cut to their column's width.
/// The model column is fixed (rows of `log -f` come in batches and must line up): wide enough
/// for a provider and a dated model id (`anthropic/claude-sonnet-4-5-20250929`), which at 30
/// were cut to look alike.
const MODEL_WIDTH: usize = 38;

pub fn table(rows: &[LogRow], header: bool) -> String {
    let mut out = String::new();
    if header {
        out.push_str(&format!(
            "{:<20}  {:<14}  {:<MODEL_WIDTH$}  {:>3}  {:>8}  {:>7}  {:>9}  {:>8}  {}\n",
            "TIME", "KEY", "MODEL", "ST", "IN", "OUT", "COST", "MS", "NOTE"
        ));
    }
    for r in rows {
        let key = printable(r.key_name.as_deref().or(r.key.as_deref()).unwrap_or("-"));
        let model = printable(&format!(
            "{}/{}",
            r.provider,
            r.model.as_deref().unwrap_or("-")
        ))
        .into_owned();
        let note = match (&r.denial, r.outcome.as_deref()) {
            (Some(d), _) if crate::proxy::is_failure(d) => format!("failed: {}", printable(d)),
            (Some(d), _) => format!("denied: {}", printable(d)),
            (None, Some("complete")) | (None, None) => String::new(),
            (None, Some("no_usage")) => "no usage reported".to_string(),
            (None, Some(o)) => printable(o).into_owned(),
        };
        let line = format!(
            "{:<20}  {}  {}  {:>3}  {:>8}  {:>7}  {:>9}  {:>8.1}  {}",
            rfc3339(r.at),
            crate::format::cell(&key, 14),
            crate::format::cell(&model, MODEL_WIDTH),
            r.status,
            r.input_tokens,
            r.output_tokens,
            crate::format::usd(r.cost_usd),
            r.latency_ms,
            note
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
