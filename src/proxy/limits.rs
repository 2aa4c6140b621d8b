//! Rate limits held in the proxy's memory: requests and tokens per minute, per key level, for
//! a proxy that has no ledger connection to count in (an embedded proxy, the benchmarks).
//! `till run` and `till serve` count in the ledger instead ([`crate::ledger::rates`]), so a
//! key's rate holds across every till process that shares it.
//!
//! Each limit is keyed by the binding of the level whose caveat set it, so a sub-agent's tighter
//! rate and its parent's looser one are both enforced, and the parent's window counts the
//! sub-agent's requests too.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::childkey::Binding;

const WINDOW: Duration = Duration::from_secs(60);

/// A sliding one-minute window of (time, amount).
#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<(Instant, u64)>,
    sum: u64,
}

impl Window {
    fn expire(&mut self, now: Instant) {
        while let Some(&(t, amount)) = self.entries.front() {
            if now.duration_since(t) < WINDOW {
                break;
            }
            self.entries.pop_front();
            self.sum -= amount;
        }
    }

    /// Seconds until `amount` more would fit under `limit`.
    fn wait_for(&self, now: Instant, amount: u64, limit: u64) -> u64 {
        let mut sum = self.sum;
        for &(t, a) in &self.entries {
            if sum + amount <= limit {
                break;
            }
            sum -= a;
            let free_at = t + WINDOW;
            if sum + amount <= limit {
                return free_at.saturating_duration_since(now).as_secs() + 1;
            }
        }
        WINDOW.as_secs()
    }
}

pub use crate::ledger::rates::RateDenial;

/// Per-binding windows for requests and tokens.
#[derive(Debug, Default)]
pub struct RateLimits {
    windows: Mutex<HashMap<(Binding, bool), Window>>,
}

/// One limit to apply: the level's binding, whether it counts tokens (else requests), the cap.
#[derive(Debug, Clone, Copy)]
pub struct RateRule {
    pub binding: Binding,
    pub tokens: bool,
    pub limit: u64,
}

impl RateLimits {
    /// Admits a request costing `tokens` under every rule, or says which rule refuses it.
    /// Nothing is counted unless every rule admits the request.
    pub fn admit(&self, rules: &[RateRule], tokens: u64) -> Result<(), RateDenial> {
        if rules.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for rule in rules {
            let w = windows.entry((rule.binding, rule.tokens)).or_default();
            w.expire(now);
            let amount = if rule.tokens { tokens } else { 1 };
            if w.sum + amount > rule.limit {
                let retry_after = w.wait_for(now, amount, rule.limit);
                return Err(if rule.tokens {
                    RateDenial::Tpm {
                        limit: rule.limit,
                        asked: amount,
                        retry_after,
                    }
                } else {
                    RateDenial::Rpm {
                        limit: rule.limit,
                        retry_after,
                    }
                });
            }
        }
        for rule in rules {
            let w = windows.entry((rule.binding, rule.tokens)).or_default();
            let amount = if rule.tokens { tokens } else { 1 };
            w.entries.push_back((now, amount));
            w.sum += amount;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: u8) -> Binding {
        Binding([n; 32])
    }

    #[test]
    fn rpm_admits_up_to_limit_then_refuses_with_retry_after() {
        let l = RateLimits::default();
        let rules = [RateRule {
            binding: b(1),
            tokens: false,
            limit: 3,
        }];
        for _ in 0..3 {
            l.admit(&rules, 0).unwrap();
        }
        match l.admit(&rules, 0) {
            Err(RateDenial::Rpm {
                limit: 3,
                retry_after,
            }) => assert!((1..=60).contains(&retry_after)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refused_request_counts_nowhere() {
        let l = RateLimits::default();
        let parent = RateRule {
            binding: b(1),
            tokens: false,
            limit: 10,
        };
        let child = RateRule {
            binding: b(2),
            tokens: false,
            limit: 1,
        };
        l.admit(&[parent, child], 0).unwrap();
        assert!(l.admit(&[parent, child], 0).is_err());
        // The parent saw one request, not two.
        for _ in 0..9 {
            l.admit(&[parent], 0).unwrap();
        }
        assert!(l.admit(&[parent], 0).is_err());
    }

    #[test]
    fn tpm_counts_tokens() {
        let l = RateLimits::default();
        let rules = [RateRule {
            binding: b(1),
            tokens: true,
            limit: 100,
        }];
        l.admit(&rules, 60).unwrap();
        assert!(matches!(
            l.admit(&rules, 50),
            Err(RateDenial::Tpm { asked: 50, .. })
        ));
        l.admit(&rules, 40).unwrap();
    }
}
