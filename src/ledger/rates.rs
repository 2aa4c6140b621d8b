//! Requests and tokens per minute per key level, shared by every till process through SQLite,
//! so two proxies serving one key allow its rate once between them, not once each.
//!
//! The window slides in one-second steps: each (level, rpm or tpm) keeps one row per second
//! in which it admitted anything, with the amount admitted then. A request is admitted when
//! the rows of the last [`WINDOW_SECS`] + 1 seconds (the current, partial second included)
//! plus the request stay within the limit. A second is counted for 60 to 61 seconds, never
//! less, so no 60-second span ever holds more than the limit; a fixed per-minute counter
//! would let twice the limit through across a minute's edge. Rows are at most 61 per rule
//! whatever the request rate, and rows older than the window are deleted as requests come.
//!
//! Checking and charging happen in one IMMEDIATE transaction, and nothing is charged unless
//! every rule admits the request. Keys without a per-minute caveat never get here.

use rusqlite::{TransactionBehavior, params};

use super::Ledger;

/// The window's length in seconds.
pub const WINDOW_SECS: u64 = 60;

/// What a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKind {
    Requests,
    Tokens,
}

impl RateKind {
    fn as_str(self) -> &'static str {
        match self {
            RateKind::Requests => "rpm",
            RateKind::Tokens => "tpm",
        }
    }
}

/// One per-minute limit of one key level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCharge {
    /// Hex binding of the level whose caveat set the limit.
    pub binding: String,
    pub kind: RateKind,
    pub limit: u64,
}

/// Which per-minute limit refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateDenial {
    Rpm {
        limit: u64,
        retry_after: u64,
    },
    Tpm {
        limit: u64,
        asked: u64,
        retry_after: u64,
    },
}

impl Ledger {
    /// Admits a request that may use `tokens` under every rule at unix time `now`, counting
    /// it in each rule's window, or says which rule refuses it and counts nothing.
    pub fn admit_rates(
        &mut self,
        rules: &[RateCharge],
        tokens: u64,
        now: u64,
    ) -> anyhow::Result<Result<(), RateDenial>> {
        if rules.is_empty() {
            return Ok(Ok(()));
        }
        // The same level and kind twice (two caveats on one level) is one window with the
        // tighter limit, charged once.
        let mut merged: Vec<RateCharge> = Vec::with_capacity(rules.len());
        for r in rules {
            match merged
                .iter_mut()
                .find(|m| m.binding == r.binding && m.kind == r.kind)
            {
                Some(m) => m.limit = m.limit.min(r.limit),
                None => merged.push(r.clone()),
            }
        }
        let oldest = now.saturating_sub(WINDOW_SECS);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("DELETE FROM rate_windows WHERE sec < ?1")?
            .execute([oldest as i64])?;
        for rule in &merged {
            let amount = match rule.kind {
                RateKind::Requests => 1,
                RateKind::Tokens => tokens,
            };
            let used: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(amount), 0) FROM rate_windows
                     WHERE binding = ?1 AND kind = ?2 AND sec >= ?3",
                )?
                .query_row(
                    params![rule.binding, rule.kind.as_str(), oldest as i64],
                    |r| r.get(0),
                )?;
            if (used as u64).saturating_add(amount) > rule.limit {
                let retry_after = retry_after(&tx, rule, amount, used as u64, now)?;
                // Dropping the transaction rolls back; nothing was written but the pruning.
                return Ok(Err(match rule.kind {
                    RateKind::Requests => RateDenial::Rpm {
                        limit: rule.limit,
                        retry_after,
                    },
                    RateKind::Tokens => RateDenial::Tpm {
                        limit: rule.limit,
                        asked: amount,
                        retry_after,
                    },
                }));
            }
        }
        for rule in &merged {
            let amount = match rule.kind {
                RateKind::Requests => 1,
                RateKind::Tokens => tokens,
            };
            tx.prepare_cached(
                "INSERT INTO rate_windows (binding, kind, sec, amount) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (binding, kind, sec) DO UPDATE SET amount = amount + excluded.amount",
            )?
            .execute(params![
                rule.binding,
                rule.kind.as_str(),
                now as i64,
                amount as i64
            ])?;
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    /// What the window of `binding`'s `kind` holds at `now` (tests, `till key show`).
    pub fn rate_used(&self, binding: &str, kind: RateKind, now: u64) -> anyhow::Result<u64> {
        let used: i64 = self.conn().query_row(
            "SELECT COALESCE(SUM(amount), 0) FROM rate_windows
             WHERE binding = ?1 AND kind = ?2 AND sec >= ?3",
            params![
                binding,
                kind.as_str(),
                now.saturating_sub(WINDOW_SECS) as i64
            ],
            |r| r.get(0),
        )?;
        Ok(used as u64)
    }
}

/// Seconds until `amount` more fits under the rule: when enough of the oldest seconds have
/// left the window. A request larger than the limit never fits; it is told the whole window.
fn retry_after(
    tx: &rusqlite::Transaction<'_>,
    rule: &RateCharge,
    amount: u64,
    used: u64,
    now: u64,
) -> rusqlite::Result<u64> {
    let mut stmt = tx.prepare_cached(
        "SELECT sec, amount FROM rate_windows
         WHERE binding = ?1 AND kind = ?2 AND sec >= ?3 ORDER BY sec",
    )?;
    let mut rows = stmt.query(params![
        rule.binding,
        rule.kind.as_str(),
        now.saturating_sub(WINDOW_SECS) as i64
    ])?;
    let mut left = used;
    while let Some(row) = rows.next()? {
        let sec = row.get::<_, i64>(0)?.max(0) as u64;
        left = left.saturating_sub(row.get::<_, i64>(1)?.max(0) as u64);
        if left + amount <= rule.limit {
            // Second `sec` stops counting at `sec + WINDOW_SECS + 1`.
            return Ok((sec + WINDOW_SECS + 1).saturating_sub(now).max(1));
        }
    }
    Ok(WINDOW_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(binding: &str, kind: RateKind, limit: u64) -> RateCharge {
        RateCharge {
            binding: binding.into(),
            kind,
            limit,
        }
    }

    const T: u64 = 1_800_000_000;

    #[test]
    fn rpm_admits_up_to_the_limit_then_refuses_until_the_window_slides() {
        let mut l = Ledger::open_in_memory().unwrap();
        let rules = [rule("k", RateKind::Requests, 3)];
        l.admit_rates(&rules, 0, T).unwrap().unwrap();
        l.admit_rates(&rules, 0, T + 10).unwrap().unwrap();
        l.admit_rates(&rules, 0, T + 20).unwrap().unwrap();
        assert_eq!(
            l.admit_rates(&rules, 0, T + 30).unwrap(),
            Err(RateDenial::Rpm {
                limit: 3,
                retry_after: 31
            })
        );
        // Second T counts through T + 60 (a full minute after any instant within it).
        assert!(l.admit_rates(&rules, 0, T + 60).unwrap().is_err());
        l.admit_rates(&rules, 0, T + 61).unwrap().unwrap();
        assert!(l.admit_rates(&rules, 0, T + 62).unwrap().is_err());
        assert_eq!(l.rate_used("k", RateKind::Requests, T + 62).unwrap(), 3);
    }

    #[test]
    fn a_refused_request_counts_nowhere() {
        let mut l = Ledger::open_in_memory().unwrap();
        let parent = rule("parent", RateKind::Requests, 10);
        let child = rule("child", RateKind::Requests, 1);
        let both = [parent.clone(), child];
        l.admit_rates(&both, 0, T).unwrap().unwrap();
        assert!(l.admit_rates(&both, 0, T).unwrap().is_err());
        // The parent saw one request, not two.
        assert_eq!(l.rate_used("parent", RateKind::Requests, T).unwrap(), 1);
        for _ in 0..9 {
            l.admit_rates(std::slice::from_ref(&parent), 0, T)
                .unwrap()
                .unwrap();
        }
        assert!(l.admit_rates(&[parent], 0, T).unwrap().is_err());
    }

    #[test]
    fn tpm_counts_tokens_and_a_request_over_the_limit_waits_the_window() {
        let mut l = Ledger::open_in_memory().unwrap();
        let rules = [rule("k", RateKind::Tokens, 100)];
        l.admit_rates(&rules, 60, T).unwrap().unwrap();
        assert_eq!(
            l.admit_rates(&rules, 50, T + 5).unwrap(),
            Err(RateDenial::Tpm {
                limit: 100,
                asked: 50,
                retry_after: 56
            })
        );
        l.admit_rates(&rules, 40, T + 5).unwrap().unwrap();
        assert_eq!(
            l.admit_rates(&rules, 101, T + 70).unwrap(),
            Err(RateDenial::Tpm {
                limit: 100,
                asked: 101,
                retry_after: WINDOW_SECS
            })
        );
    }

    #[test]
    fn two_caveats_on_one_level_are_one_window() {
        let mut l = Ledger::open_in_memory().unwrap();
        let rules = [
            rule("k", RateKind::Requests, 5),
            rule("k", RateKind::Requests, 2),
        ];
        l.admit_rates(&rules, 0, T).unwrap().unwrap();
        l.admit_rates(&rules, 0, T).unwrap().unwrap();
        assert!(l.admit_rates(&rules, 0, T).unwrap().is_err());
        assert_eq!(l.rate_used("k", RateKind::Requests, T).unwrap(), 2);
    }

    #[test]
    fn old_seconds_are_deleted() {
        let mut l = Ledger::open_in_memory().unwrap();
        let rules = [
            rule("a", RateKind::Requests, 1000),
            rule("a", RateKind::Tokens, 1_000_000),
        ];
        for s in 0..200 {
            l.admit_rates(&rules, 10, T + s).unwrap().unwrap();
        }
        // An idle key's rows go too, when any key is next admitted.
        l.admit_rates(&[rule("b", RateKind::Requests, 1)], 0, T + 1000)
            .unwrap()
            .unwrap();
        let rows: i64 = l
            .conn()
            .query_row("SELECT COUNT(*) FROM rate_windows", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn two_connections_share_one_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        let mut a = Ledger::open(&path).unwrap();
        let mut b = Ledger::open(&path).unwrap();
        let rules = [rule("k", RateKind::Requests, 3)];
        a.admit_rates(&rules, 0, T).unwrap().unwrap();
        b.admit_rates(&rules, 0, T).unwrap().unwrap();
        a.admit_rates(&rules, 0, T).unwrap().unwrap();
        assert!(b.admit_rates(&rules, 0, T).unwrap().is_err());
        assert!(a.admit_rates(&rules, 0, T).unwrap().is_err());
    }
}
