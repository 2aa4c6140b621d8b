//! Budget and request counters per key level, shared by every till process through SQLite.
//!
//! A request reserves its worst-case cost on every level that has a budget or a request
//! ceiling, inside one IMMEDIATE transaction, so two processes sharing a key cannot both spend
//! its last dollar. After the response the reservation is settled to the metered cost (by the
//! ledger writer, off the hot path).

use rusqlite::{OptionalExtension as _, TransactionBehavior, params};
use serde::Serialize;

use super::Ledger;

/// One level's limits for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelCharge {
    /// Hex binding of the level.
    pub binding: String,
    pub budget_micros: Option<u64>,
    pub budget_tokens: Option<u64>,
    pub max_requests: Option<u64>,
}

/// What a request holds on the counters until it is settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservation {
    pub bindings: Vec<String>,
    pub micros: u64,
    pub tokens: u64,
}

/// Which ceiling refused a reservation, with the numbers for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Usd { budget: u64, used: u64, asked: u64 },
    Tokens { budget: u64, used: u64, asked: u64 },
    Requests { max: u64 },
}

/// A level's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counter {
    pub spent_micros: u64,
    pub spent_tokens: u64,
    pub reserved_micros: u64,
    pub reserved_tokens: u64,
    pub requests: u64,
}

/// After a successful reservation: how full each budget was before it (for alerts).
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub binding: String,
    /// Fraction of the USD (or else token) budget used, counting this reservation.
    pub fraction: f64,
}

impl Ledger {
    /// Reserves `micros` and `tokens` (and one request) on every level, or refuses without
    /// changing anything.
    pub fn reserve(
        &mut self,
        levels: &[LevelCharge],
        micros: u64,
        tokens: u64,
    ) -> anyhow::Result<Result<(Reservation, Vec<Fill>), Refusal>> {
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut fills = Vec::new();
        for level in levels {
            tx.execute(
                "INSERT INTO counters (binding) VALUES (?1) ON CONFLICT DO NOTHING",
                [&level.binding],
            )?;
            let c = read(&tx, &level.binding)?.unwrap_or_default();
            if let Some(max) = level.max_requests
                && c.requests >= max
            {
                return Ok(Err(Refusal::Requests { max }));
            }
            let used_usd = c.spent_micros + c.reserved_micros;
            if let Some(budget) = level.budget_micros {
                if used_usd + micros > budget {
                    return Ok(Err(Refusal::Usd {
                        budget,
                        used: used_usd,
                        asked: micros,
                    }));
                }
                fills.push(Fill {
                    binding: level.binding.clone(),
                    fraction: (used_usd + micros) as f64 / budget.max(1) as f64,
                });
            }
            let used_tok = c.spent_tokens + c.reserved_tokens;
            if let Some(budget) = level.budget_tokens {
                if used_tok + tokens > budget {
                    return Ok(Err(Refusal::Tokens {
                        budget,
                        used: used_tok,
                        asked: tokens,
                    }));
                }
                if level.budget_micros.is_none() {
                    fills.push(Fill {
                        binding: level.binding.clone(),
                        fraction: (used_tok + tokens) as f64 / budget.max(1) as f64,
                    });
                }
            }
        }
        for level in levels {
            tx.execute(
                "UPDATE counters SET reserved_micros = reserved_micros + ?2,
                     reserved_tokens = reserved_tokens + ?3, requests = requests + 1
                 WHERE binding = ?1",
                params![level.binding, micros as i64, tokens as i64],
            )?;
        }
        tx.commit()?;
        let bindings = levels.iter().map(|l| l.binding.clone()).collect();
        Ok(Ok((
            Reservation {
                bindings,
                micros,
                tokens,
            },
            fills,
        )))
    }

    /// The counters of one level.
    pub fn counter(&self, binding: &str) -> anyhow::Result<Option<Counter>> {
        Ok(read(self.conn(), binding)?)
    }
}

fn read(conn: &rusqlite::Connection, binding: &str) -> rusqlite::Result<Option<Counter>> {
    conn.query_row(
        "SELECT spent_micros, spent_tokens, reserved_micros, reserved_tokens, requests FROM counters WHERE binding = ?1",
        [binding],
        |r| {
            Ok(Counter {
                spent_micros: r.get::<_, i64>(0)? as u64,
                spent_tokens: r.get::<_, i64>(1)? as u64,
                reserved_micros: r.get::<_, i64>(2)? as u64,
                reserved_tokens: r.get::<_, i64>(3)? as u64,
                requests: r.get::<_, i64>(4)? as u64,
            })
        },
    )
    .optional()
}

/// Moves a reservation to spent: releases what was reserved, charges what was used.
pub fn settle(
    tx: &rusqlite::Transaction<'_>,
    r: &Reservation,
    micros: u64,
    tokens: u64,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "UPDATE counters SET
            reserved_micros = MAX(reserved_micros - ?2, 0),
            reserved_tokens = MAX(reserved_tokens - ?3, 0),
            spent_micros = spent_micros + ?4,
            spent_tokens = spent_tokens + ?5
         WHERE binding = ?1",
    )?;
    for b in &r.bindings {
        stmt.execute(params![
            b,
            r.micros as i64,
            r.tokens as i64,
            micros as i64,
            tokens as i64
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(b: &str, usd: Option<u64>) -> LevelCharge {
        LevelCharge {
            binding: b.into(),
            budget_micros: usd,
            budget_tokens: None,
            max_requests: None,
        }
    }

    #[test]
    fn reserve_refuses_past_the_budget_and_settle_frees() {
        let mut l = Ledger::open_in_memory().unwrap();
        let levels = [level("parent", Some(1_000)), level("child", Some(500))];
        let (r1, _) = l.reserve(&levels, 300, 10).unwrap().unwrap();
        let (r2, _) = l.reserve(&levels, 200, 10).unwrap().unwrap();
        assert_eq!(
            l.reserve(&levels, 1, 1).unwrap(),
            Err(Refusal::Usd {
                budget: 500,
                used: 500,
                asked: 1
            })
        );
        let tx = l.conn_mut().transaction().unwrap();
        settle(&tx, &r1, 100, 5).unwrap();
        settle(&tx, &r2, 100, 5).unwrap();
        tx.commit().unwrap();
        let c = l.counter("child").unwrap().unwrap();
        assert_eq!((c.spent_micros, c.reserved_micros, c.requests), (200, 0, 2));
        // The parent counts the child's spend, and has room the child has not.
        assert_eq!(l.counter("parent").unwrap().unwrap().spent_micros, 200);
        assert!(
            l.reserve(&[level("parent", Some(1_000))], 700, 0)
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn max_requests_counts_requests() {
        let mut l = Ledger::open_in_memory().unwrap();
        let lv = [LevelCharge {
            binding: "k".into(),
            budget_micros: None,
            budget_tokens: None,
            max_requests: Some(2),
        }];
        assert!(l.reserve(&lv, 0, 0).unwrap().is_ok());
        assert!(l.reserve(&lv, 0, 0).unwrap().is_ok());
        assert_eq!(
            l.reserve(&lv, 0, 0).unwrap(),
            Err(Refusal::Requests { max: 2 })
        );
    }
}
