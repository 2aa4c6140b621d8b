//! Budget and request counters per key level, shared by every till process through SQLite.
//!
//! A request reserves its worst-case cost on every level that has a budget or a request
//! ceiling, inside one IMMEDIATE transaction, so two processes sharing a key cannot both spend
//! its last dollar. After the response the reservation is settled to the metered cost (by the
//! ledger writer, off the hot path).
//!
//! Every open reservation also has a row in `reservations`, written in the same transaction,
//! naming the process that holds it ([`super::owner`]) and what its request row needs. A proxy
//! that stops settles its own leftovers ([`Ledger::settle_owner`]); one that died is settled by
//! the next till that finds its owner lock free ([`Ledger::recover`]). Settling deletes that
//! row first, so a reservation is settled once even when two of these race.

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
    /// Its row in `reservations` (0: none, as for reservations made before that table).
    pub id: i64,
    pub bindings: Vec<String>,
    pub micros: u64,
    pub tokens: u64,
    /// Each budget of the levels as it stood before this request, for the fill alerts once
    /// the request is charged (a request that spends 99 % raised nothing until the next one).
    pub gauges: Vec<Gauge>,
}

/// A budget and what was spent or held of it, in its unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauge {
    pub binding: String,
    pub budget: u64,
    pub used: u64,
    /// A token budget (else dollars, in micro-dollars).
    pub tokens: bool,
}

impl Gauge {
    /// How full the budget is once `micros` and `tokens` more are charged.
    pub fn fraction_after(&self, micros: u64, tokens: u64) -> f64 {
        let charged = if self.tokens { tokens } else { micros };
        self.used.saturating_add(charged) as f64 / self.budget.max(1) as f64
    }
}

/// Who holds a reservation, and the request row to write if the holder never settles it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hold {
    /// The id of the holding process's owner lock ([`super::owner::Owner`]).
    pub owner: String,
    pub at: u64,
    pub provider: String,
    pub model: Option<String>,
    pub endpoint: Option<String>,
    pub binding: Option<String>,
    pub lineage: Option<String>,
    pub session: Option<String>,
}

/// Reservations settled on behalf of a holder that will not settle them itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub requests: u64,
    pub micros: u64,
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

impl Ledger {
    /// Reserves `micros` and `tokens` (and one request) on every level, or refuses without
    /// changing anything. `hold` is recorded with the reservation until it is settled.
    pub fn reserve(
        &mut self,
        levels: &[LevelCharge],
        micros: u64,
        tokens: u64,
        hold: &Hold,
    ) -> anyhow::Result<Result<Reservation, Refusal>> {
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut gauges = Vec::new();
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
                if used_usd.saturating_add(micros) > budget {
                    return Ok(Err(Refusal::Usd {
                        budget,
                        used: used_usd,
                        asked: micros,
                    }));
                }
                // What earlier requests spent or still hold, without this one's worst case: an
                // agent that asks for a large ceiling (and is given what the budget can pay for)
                // would otherwise raise the 80 % alert on its first call.
                gauges.push(Gauge {
                    binding: level.binding.clone(),
                    budget,
                    used: used_usd,
                    tokens: false,
                });
            }
            let used_tok = c.spent_tokens + c.reserved_tokens;
            if let Some(budget) = level.budget_tokens {
                if used_tok.saturating_add(tokens) > budget {
                    return Ok(Err(Refusal::Tokens {
                        budget,
                        used: used_tok,
                        asked: tokens,
                    }));
                }
                if level.budget_micros.is_none() {
                    gauges.push(Gauge {
                        binding: level.binding.clone(),
                        budget,
                        used: used_tok,
                        tokens: true,
                    });
                }
            }
        }
        for level in levels {
            tx.execute(
                "UPDATE counters SET reserved_micros = reserved_micros + ?2,
                     reserved_tokens = reserved_tokens + ?3, requests = requests + 1
                 WHERE binding = ?1",
                params![level.binding, int(micros), int(tokens)],
            )?;
        }
        let bindings: Vec<String> = levels.iter().map(|l| l.binding.clone()).collect();
        tx.prepare_cached(
            "INSERT INTO reservations (owner, bindings, micros, tokens, at, provider, model,
                 endpoint, binding, lineage, session)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            hold.owner,
            bindings.join(" "),
            int(micros),
            int(tokens),
            hold.at as i64,
            hold.provider,
            hold.model,
            hold.endpoint,
            hold.binding,
            hold.lineage,
            hold.session,
        ])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(Reservation {
            id,
            bindings,
            micros,
            tokens,
            gauges,
        }))
    }

    /// Settles every reservation `owner` still holds at its reserved amount (the request may
    /// have reached the upstream, so it is charged) and writes each one's request row with
    /// `outcome`, all in one transaction.
    pub fn settle_owner(&mut self, owner: &str, outcome: &str, now: u64) -> anyhow::Result<Swept> {
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held = {
            let mut stmt = tx.prepare(
                "SELECT id, bindings, micros, tokens, at, provider, model, endpoint, binding,
                        lineage, session
                 FROM reservations WHERE owner = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([owner], |r| {
                let bindings: String = r.get(1)?;
                Ok((
                    Reservation {
                        id: r.get(0)?,
                        bindings: bindings.split_whitespace().map(str::to_string).collect(),
                        micros: r.get::<_, i64>(2)? as u64,
                        tokens: r.get::<_, i64>(3)? as u64,
                        gauges: Vec::new(),
                    },
                    Hold {
                        owner: owner.to_string(),
                        at: r.get::<_, i64>(4)? as u64,
                        provider: r.get(5)?,
                        model: r.get(6)?,
                        endpoint: r.get(7)?,
                        binding: r.get(8)?,
                        lineage: r.get(9)?,
                        session: r.get(10)?,
                    },
                ))
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let mut swept = Swept::default();
        for (reservation, hold) in held {
            if !settle(&tx, &reservation, reservation.micros, reservation.tokens)? {
                continue;
            }
            // A request interrupted by a stop was open for as long as it ran; a lost one for
            // an unknown time.
            let latency_ms = if outcome == LOST {
                0.0
            } else {
                now.saturating_sub(hold.at) as f64 * 1e3
            };
            // The row's cost is what the budget was charged, and its output tokens what a
            // token budget was (the reservation is one count: the prompt's estimate and the
            // output ceiling), so that what `till usage` and `till log` add up is what the
            // counters hold.
            tx.prepare_cached(
                "INSERT INTO requests (at, binding, session, provider, model, endpoint, status,
                     latency_ms, outcome, lineage, cost_micros, output_tokens)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                hold.at as i64,
                hold.binding,
                hold.session,
                hold.provider,
                hold.model,
                hold.endpoint,
                latency_ms,
                outcome,
                hold.lineage,
                int(reservation.micros),
                int(reservation.tokens),
            ])?;
            swept.requests += 1;
            swept.micros += reservation.micros;
        }
        tx.commit()?;
        Ok(swept)
    }

    /// Owners that hold reservations now.
    pub fn reservation_owners(&self) -> anyhow::Result<Vec<String>> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT DISTINCT owner FROM reservations")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Settles the reservations of every owner whose process is gone (its lock in
    /// `owners_dir` can be taken), recording their requests as [`LOST`], then removes the
    /// lock files that owners gone with nothing open left behind.
    pub fn recover(&mut self, owners_dir: &std::path::Path) -> anyhow::Result<Swept> {
        let mut total = Swept::default();
        let owners = self.reservation_owners()?;
        for owner in &owners {
            // The lock stays held while its reservations are settled, so two tills that
            // both find this owner dead do not both get here at once.
            let Some(_dead) = super::owner::claim_dead(owners_dir, owner)? else {
                continue;
            };
            let swept = self.settle_owner(owner, LOST, crate::time::now_unix())?;
            total.requests += swept.requests;
            total.micros += swept.micros;
        }
        super::owner::sweep(owners_dir, &owners);
        Ok(total)
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

/// The outcome of a request whose reservation was settled after its proxy died.
pub const LOST: &str = "lost";

/// The outcome of a request still open when its proxy stopped (after the shutdown grace).
pub const INTERRUPTED: &str = "interrupted";

/// A count (tokens, micro-dollars) as an SQLite integer: one too large for it (a provider that
/// reports an absurd usage) is held at the largest, never wrapped to a negative that would
/// give budget back.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Moves a reservation to spent: releases what was reserved, charges what was used.
///
/// `Ok(false)` when it was settled already (by [`Ledger::settle_owner`]): nothing changes then.
pub fn settle(
    tx: &rusqlite::Transaction<'_>,
    r: &Reservation,
    micros: u64,
    tokens: u64,
) -> rusqlite::Result<bool> {
    if r.id != 0
        && tx
            .prepare_cached("DELETE FROM reservations WHERE id = ?1")?
            .execute([r.id])?
            == 0
    {
        return Ok(false);
    }
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
            int(r.micros),
            int(r.tokens),
            int(micros),
            int(tokens)
        ])?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold() -> Hold {
        Hold {
            owner: "0a0a".into(),
            at: 100,
            provider: "openai".into(),
            model: Some("gpt-x".into()),
            endpoint: Some("inference".into()),
            binding: Some("child".into()),
            lineage: Some("parent child".into()),
            session: None,
        }
    }

    fn open_reservations(l: &Ledger) -> i64 {
        l.conn()
            .query_row("SELECT count(*) FROM reservations", [], |r| r.get(0))
            .unwrap()
    }

    fn outcomes(l: &Ledger) -> Vec<(String, i64, Option<String>, i64, i64)> {
        let mut stmt = l
            .conn()
            .prepare(
                "SELECT outcome, at, model, cost_micros, output_tokens FROM requests ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

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
        let r1 = l.reserve(&levels, 300, 10, &hold()).unwrap().unwrap();
        let r2 = l.reserve(&levels, 200, 10, &hold()).unwrap().unwrap();
        assert_eq!(
            l.reserve(&levels, 1, 1, &hold()).unwrap(),
            Err(Refusal::Usd {
                budget: 500,
                used: 500,
                asked: 1
            })
        );
        let tx = l.conn_mut().transaction().unwrap();
        assert!(settle(&tx, &r1, 100, 5).unwrap());
        assert!(settle(&tx, &r2, 100, 5).unwrap());
        tx.commit().unwrap();
        let c = l.counter("child").unwrap().unwrap();
        assert_eq!((c.spent_micros, c.reserved_micros, c.requests), (200, 0, 2));
        // The parent counts the child's spend, and has room the child has not.
        assert_eq!(l.counter("parent").unwrap().unwrap().spent_micros, 200);
        assert!(
            l.reserve(&[level("parent", Some(1_000))], 700, 0, &hold())
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn a_reservation_near_the_end_of_a_u64_is_refused_not_wrapped() {
        let mut l = Ledger::open_in_memory().unwrap();
        let levels = [LevelCharge {
            binding: "k".into(),
            budget_micros: Some(1_000),
            budget_tokens: Some(1_000),
            max_requests: None,
        }];
        l.reserve(&levels, 1, 1, &hold()).unwrap().unwrap();
        // 1 + u64::MAX wraps to 0, which a plain sum would have let through.
        assert!(matches!(
            l.reserve(&levels, u64::MAX, 0, &hold()).unwrap(),
            Err(Refusal::Usd { .. })
        ));
        assert!(matches!(
            l.reserve(&levels, 0, u64::MAX, &hold()).unwrap(),
            Err(Refusal::Tokens { .. })
        ));
    }

    #[test]
    fn a_usage_too_large_for_sqlite_is_held_at_its_largest_not_wrapped() {
        let mut l = Ledger::open_in_memory().unwrap();
        let levels = [LevelCharge {
            binding: "k".into(),
            budget_micros: None,
            budget_tokens: Some(1_000),
            max_requests: None,
        }];
        let r = l.reserve(&levels, 0, 10, &hold()).unwrap().unwrap();
        let tx = l.conn_mut().transaction().unwrap();
        assert!(settle(&tx, &r, u64::MAX, u64::MAX).unwrap());
        tx.commit().unwrap();
        let c = l.counter("k").unwrap().unwrap();
        assert_eq!(
            (c.spent_tokens, c.spent_micros),
            (i64::MAX as u64, i64::MAX as u64)
        );
        assert!(matches!(
            l.reserve(&levels, 0, 1, &hold()).unwrap(),
            Err(Refusal::Tokens { .. })
        ));
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
        assert!(l.reserve(&lv, 0, 0, &hold()).unwrap().is_ok());
        assert!(l.reserve(&lv, 0, 0, &hold()).unwrap().is_ok());
        assert_eq!(
            l.reserve(&lv, 0, 0, &hold()).unwrap(),
            Err(Refusal::Requests { max: 2 })
        );
    }

    #[test]
    fn a_settled_reservation_leaves_no_row_and_is_not_settled_twice() {
        let mut l = Ledger::open_in_memory().unwrap();
        let levels = [level("child", Some(1_000))];
        let r = l.reserve(&levels, 300, 10, &hold()).unwrap().unwrap();
        assert_ne!(r.id, 0);
        assert_eq!(open_reservations(&l), 1);
        let tx = l.conn_mut().transaction().unwrap();
        assert!(settle(&tx, &r, 100, 5).unwrap());
        assert!(!settle(&tx, &r, 100, 5).unwrap());
        tx.commit().unwrap();
        assert_eq!(open_reservations(&l), 0);
        let c = l.counter("child").unwrap().unwrap();
        assert_eq!((c.spent_micros, c.reserved_micros), (100, 0));
    }

    #[test]
    fn settle_owner_charges_the_reservation_and_writes_the_row() {
        let mut l = Ledger::open_in_memory().unwrap();
        let levels = [level("parent", Some(10_000)), level("child", Some(1_000))];
        let done = l.reserve(&levels, 200, 10, &hold()).unwrap().unwrap();
        let _open = l.reserve(&levels, 300, 20, &hold()).unwrap().unwrap();
        let other = Hold {
            owner: "0b0b".into(),
            ..hold()
        };
        l.reserve(&levels, 50, 1, &other).unwrap().unwrap();
        let tx = l.conn_mut().transaction().unwrap();
        assert!(settle(&tx, &done, 120, 8).unwrap());
        tx.commit().unwrap();

        let swept = l.settle_owner("0a0a", LOST, 1_000).unwrap();
        assert_eq!(
            swept,
            Swept {
                requests: 1,
                micros: 300
            }
        );
        for b in ["parent", "child"] {
            let c = l.counter(b).unwrap().unwrap();
            assert_eq!(
                (
                    c.spent_micros,
                    c.spent_tokens,
                    c.reserved_micros,
                    c.reserved_tokens
                ),
                (120 + 300, 8 + 20, 50, 1),
                "{b}"
            );
        }
        assert_eq!(
            outcomes(&l),
            // Charged its reservation, and the row says so.
            vec![("lost".to_string(), 100, Some("gpt-x".to_string()), 300, 20)]
        );
        // The other owner's reservation is untouched, and a second sweep finds nothing.
        assert_eq!(open_reservations(&l), 1);
        assert_eq!(
            l.settle_owner("0a0a", LOST, 1_000).unwrap(),
            Swept::default()
        );
    }

    #[test]
    fn recover_settles_only_owners_whose_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let owners = dir.path().join("owners");
        let mut l = Ledger::open(&dir.path().join("l.sqlite3")).unwrap();
        let live = super::super::owner::Owner::claim(&owners).unwrap();
        let levels = [level("k", Some(10_000))];
        let alive = Hold {
            owner: live.id().to_string(),
            ..hold()
        };
        l.reserve(&levels, 100, 1, &alive).unwrap().unwrap();
        // A proxy killed mid-request: its lock file is there, nobody holds it.
        let dead_id = "deadbeefdeadbeef";
        std::fs::write(owners.join(format!("{dead_id}.lock")), b"").unwrap();
        let dead = Hold {
            owner: dead_id.into(),
            ..hold()
        };
        l.reserve(&levels, 700, 7, &dead).unwrap().unwrap();

        let swept = l.recover(&owners).unwrap();
        assert_eq!(
            swept,
            Swept {
                requests: 1,
                micros: 700
            }
        );
        let c = l.counter("k").unwrap().unwrap();
        assert_eq!((c.spent_micros, c.reserved_micros), (700, 100));
        assert_eq!(l.reservation_owners().unwrap(), vec![live.id().to_string()]);
        assert!(!owners.join(format!("{dead_id}.lock")).exists());
        assert_eq!(outcomes(&l).len(), 1);
        // Once the live owner is gone too, the next recovery settles it.
        drop(live);
        assert_eq!(l.recover(&owners).unwrap().requests, 1);
        assert!(l.reservation_owners().unwrap().is_empty());
    }
}
