//! Reading the ledger for `till log` and `till usage`.

use rusqlite::params_from_iter;
use serde::Serialize;

use super::Ledger;

/// Filters of `till log`.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only rows at or after this unix time.
    pub since: Option<u64>,
    /// Only rows whose key lineage includes this short binding (a key and its descendants).
    pub lineage: Option<String>,
    pub denied_only: bool,
    /// Only rows with an id above this (for `--follow`).
    pub after_id: Option<i64>,
    pub limit: Option<usize>,
}

/// One request as `till log` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRow {
    pub id: i64,
    #[serde(serialize_with = "crate::time::json::serialize")]
    pub at: u64,
    pub key: Option<String>,
    pub key_name: Option<String>,
    pub provider: String,
    pub model: Option<String>,
    pub endpoint: Option<String>,
    pub status: u16,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub denial: Option<String>,
    pub outcome: Option<String>,
}

/// One alert event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub id: i64,
    #[serde(serialize_with = "crate::time::json::serialize")]
    pub at: u64,
    pub kind: String,
    pub key: Option<String>,
    /// The name `till key create --name` gave the key, when it was one.
    pub key_name: Option<String>,
    pub message: String,
}

/// How `till usage` groups rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Model,
    Provider,
    Day,
}

/// One group of `till usage`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    pub group: String,
    pub requests: u64,
    /// Refused by till.
    pub denied: u64,
    /// Let through, and failed on the way (an upstream that could not be reached, cut off or
    /// gave no answer in time; a fault of till's own): charged as a request that reached the
    /// provider is.
    pub failed: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
}

fn where_clause(f: &LogFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conds = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(since) = f.since {
        args.push(Value::Integer(since as i64));
        conds.push(format!("at >= ?{}", args.len()));
    }
    if let Some(l) = &f.lineage {
        args.push(Value::Text(format!("%{l}%")));
        conds.push(format!("lineage LIKE ?{}", args.len()));
    }
    if f.denied_only {
        conds.push("denial IS NOT NULL".to_string());
    }
    if let Some(id) = f.after_id {
        args.push(Value::Integer(id));
        conds.push(format!("id > ?{}", args.len()));
    }
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    (w, args)
}

/// The name `till key create --name` gave the key that made a request (the proxy records the
/// binding; the name is the keys table's).
macro_rules! own_name {
    () => {
        "(SELECT k.name FROM keys k WHERE k.binding = requests.binding)"
    };
}

/// A request's key by its name: the row's own, or its key's.
const KEY_NAME: &str = concat!("COALESCE(key_name, ", own_name!(), ")");

/// Whether a request's denial kind is an answer the upstream could not give (unreachable, cut
/// off before answering, no answer in time, an answer till could not read) or till's own
/// failure, not a refusal of the request: `till log` says `failed:` and a run's summary
/// counts them apart from what was denied.
pub fn is_failure(kind: &str) -> bool {
    kind.starts_with("upstream") || kind == "internal"
}

/// [`is_failure`] of a row's `denial`, in SQL (NULL for a row without one).
const FAILURE_SQL: &str = "(denial LIKE 'upstream%' OR denial = 'internal')";

impl Ledger {
    /// The id of the newest request row and of the newest alert event (0 when there is none):
    /// where `till log -f` starts following from when it printed no older row.
    pub fn last_ids(&self) -> anyhow::Result<(i64, i64)> {
        Ok(self.conn().query_row(
            "SELECT (SELECT coalesce(max(id), 0) FROM requests),
                    (SELECT coalesce(max(id), 0) FROM events)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Requests matching `f`, oldest first (the newest `limit` when a limit is set).
    pub fn log(&self, f: &LogFilter) -> anyhow::Result<Vec<LogRow>> {
        let (w, args) = where_clause(f);
        let limit = f.limit.map(|n| format!("LIMIT {n}")).unwrap_or_default();
        let sql = format!(
            "SELECT * FROM (SELECT id, at, binding, {KEY_NAME}, provider, model, endpoint, status,
                    input_tokens, output_tokens, cached_tokens, cost_micros, latency_ms, ttfb_ms,
                    denial, outcome
             FROM requests {w} ORDER BY id DESC {limit}) ORDER BY id",
            KEY_NAME = KEY_NAME
        );
        let mut stmt = self.conn().prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            Ok(LogRow {
                id: r.get(0)?,
                at: r.get::<_, i64>(1)? as u64,
                key: r
                    .get::<_, Option<String>>(2)?
                    .map(|b| crate::childkey::Binding::short_hex(&b)),
                key_name: r.get(3)?,
                provider: r.get(4)?,
                model: r.get(5)?,
                endpoint: r.get(6)?,
                status: r.get::<_, i64>(7)? as u16,
                input_tokens: r.get::<_, i64>(8)? as u64,
                output_tokens: r.get::<_, i64>(9)? as u64,
                cached_tokens: r.get::<_, i64>(10)? as u64,
                cost_usd: r.get::<_, i64>(11)? as f64 / 1e6,
                latency_ms: r.get(12)?,
                ttfb_ms: r.get(13)?,
                denial: r.get(14)?,
                outcome: r.get(15)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Alert events matching `f`, oldest first (the newest `limit` when a limit is set).
    /// `f.lineage` keeps the events of that key and of the keys narrowed from it that made a
    /// request (an event names the key it is about; a request row names its whole lineage).
    pub fn events(&self, f: &LogFilter) -> anyhow::Result<Vec<EventRow>> {
        let mut stmt = self.conn().prepare(
            "SELECT * FROM (SELECT id, at, kind, binding, message,
                        (SELECT k.name FROM keys k WHERE k.binding = events.binding)
                 FROM events
                 WHERE at >= ?1 AND id > ?2
                   AND (?3 IS NULL OR binding LIKE ?3 || '%'
                        OR binding IN (SELECT binding FROM requests
                                       WHERE lineage LIKE '%' || ?3 || '%'))
                 ORDER BY id DESC LIMIT ?4)
             ORDER BY id",
        )?;
        let limit = f.limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = stmt.query_map(
            rusqlite::params![
                f.since.unwrap_or(0) as i64,
                f.after_id.unwrap_or(0),
                f.lineage,
                limit
            ],
            |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    at: r.get::<_, i64>(1)? as u64,
                    kind: r.get(2)?,
                    key: r
                        .get::<_, Option<String>>(3)?
                        .map(|b| crate::childkey::Binding::short_hex(&b)),
                    message: r.get(4)?,
                    key_name: r.get(5)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Totals of requests matching `f`, grouped.
    pub fn usage(&self, f: &LogFilter, by: GroupBy) -> anyhow::Result<Vec<UsageRow>> {
        let (w, args) = where_clause(f);
        let group = match by {
            // A key's name; for a key narrowed from a named one (`till run --key ci`, its
            // sub-agents), the name of the created key it came from (its lineage's first
            // level), so one agent's spending is one row; else the key's id.
            GroupBy::Key => {
                concat!(
                    "COALESCE(key_name, ",
                    own_name!(),
                    ", (SELECT k.name FROM keys k
                           WHERE k.binding >= substr(requests.lineage, 1, 12)
                             AND k.binding < substr(requests.lineage, 1, 12) || 'g'
                             AND length(requests.lineage) >= 12 LIMIT 1),
                          substr(binding, 1, 12), '-')"
                )
            }
            GroupBy::Model => "provider || '/' || COALESCE(model, '-')",
            GroupBy::Provider => "provider",
            GroupBy::Day => "date(at, 'unixepoch')",
        };
        let sql = format!(
            "SELECT {group} AS g, count(*),
                    sum(denial IS NOT NULL AND NOT {failure}), sum(denial IS NOT NULL AND {failure}),
                    sum(input_tokens), sum(output_tokens), sum(cached_tokens), sum(cost_micros)
             FROM requests {w} GROUP BY g ORDER BY {}",
            if by == GroupBy::Day {
                "g"
            } else {
                "sum(cost_micros) DESC, count(*) DESC, g"
            },
            failure = FAILURE_SQL,
        );
        let mut stmt = self.conn().prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            Ok(UsageRow {
                group: r.get(0)?,
                requests: r.get::<_, i64>(1)? as u64,
                denied: r.get::<_, i64>(2)? as u64,
                failed: r.get::<_, i64>(3)? as u64,
                input_tokens: r.get::<_, i64>(4)? as u64,
                output_tokens: r.get::<_, i64>(5)? as u64,
                cached_tokens: r.get::<_, i64>(6)? as u64,
                cost_usd: r.get::<_, i64>(7)? as f64 / 1e6,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes request rows and events older than `before` (retention).
    pub fn prune(&self, before: u64) -> anyhow::Result<usize> {
        let n = self
            .conn()
            .execute("DELETE FROM requests WHERE at < ?1", [before as i64])?;
        self.conn()
            .execute("DELETE FROM events WHERE at < ?1", [before as i64])?;
        Ok(n)
    }
}
