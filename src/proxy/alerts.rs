//! Alerts: things a person running an agent wants to hear about at once. Each is printed as
//! one stderr line (when the proxy runs in the foreground) and stored as an event in the
//! ledger (`till log --alerts`):
//!
//! - the first denial of each kind;
//! - a budget passing 50 %, 80 % and 100 %;
//! - a key's request rate, with the keys narrowed from it, reaching five times its recent
//!   baseline;
//! - every use of an expired, revoked or retired key (once per key);
//! - a model with no price of its own, charged at its provider's highest price (once per
//!   model).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use super::state::{RequestRecord, State};
use crate::childkey::Binding;

/// Per-minute request counts of one key, for the rate baseline.
#[derive(Debug)]
struct Rate {
    minute_start: Instant,
    current: u64,
    history: VecDeque<u64>,
    alerted_this_minute: bool,
}

#[derive(Debug, Default)]
struct Inner {
    denial_kinds: HashSet<&'static str>,
    dead_keys: HashSet<(String, &'static str)>,
    budget_marks: HashSet<(String, u8)>,
    /// By the binding of the key's first level (the key the mint key made), as it is (no hex
    /// string built per request): a key narrowed offline counts with the key it came from, so
    /// narrowing neither escapes the baseline nor adds keys to follow. foldhash: a binding is
    /// a SHA-256 value no client chooses, and the map holds at most [`TRACKED_KEYS`].
    rates: HashMap<Binding, Rate, foldhash::fast::RandomState>,
    /// When `rates` last dropped the keys gone quiet.
    rates_pruned: Option<Instant>,
    unlisted_models: HashSet<String>,
    /// Per-key alerts (dead keys, budget refusals) said for each first level: keys narrowed
    /// offline are new keys without end, and each would be said once.
    by_lineage: HashMap<Binding, usize, foldhash::fast::RandomState>,
}

impl Inner {
    /// The rate record of the key at `b`, made if it has none and there is room for one. When
    /// [`TRACKED_KEYS`] are followed, the keys quiet for more than the history's ten minutes
    /// (whose history is all zeros by now) are dropped first, at most once a minute.
    fn rate_of(&mut self, b: Binding, now: Instant) -> Option<&mut Rate> {
        if !self.rates.contains_key(&b) && self.rates.len() >= TRACKED_KEYS {
            let due = self
                .rates_pruned
                .is_none_or(|t| now.duration_since(t).as_secs() >= 60);
            if !due {
                return None;
            }
            self.rates_pruned = Some(now);
            self.rates
                .retain(|_, r| now.duration_since(r.minute_start).as_secs() < 11 * 60);
            if self.rates.len() >= TRACKED_KEYS {
                return None;
            }
        }
        Some(self.rates.entry(b).or_insert_with(|| Rate {
            minute_start: now,
            current: 0,
            history: VecDeque::new(),
            alerted_this_minute: false,
        }))
    }
}

/// The budget mark of a key's first refused request (the fill marks are 50, 80 and 100).
const REFUSED_MARK: u8 = 0;

/// How many keys each per-key set and map follows at most. An agent can make keys offline
/// (`till key attenuate`), each with a binding of its own: a set of what was already said that
/// reaches this is emptied (so something may be said twice, and nothing goes unsaid), and the
/// memory stays bounded. The rate map is by first level, which only the mint key makes.
const TRACKED_KEYS: usize = 4096;

/// Per-key alerts said at most for one first level and the keys narrowed from it: past this,
/// its keys' uses are rows in `till log` and no more lines.
const PER_LINEAGE: usize = 16;

impl Inner {
    /// Counts one more per-key alert of the lineage at `root`; whether it may still be said.
    fn lineage_may_say(&mut self, root: Option<Binding>) -> bool {
        let Some(root) = root else { return true };
        if self.by_lineage.len() >= TRACKED_KEYS && !self.by_lineage.contains_key(&root) {
            self.by_lineage.clear();
        }
        let n = self.by_lineage.entry(root).or_insert(0);
        *n += 1;
        *n <= PER_LINEAGE
    }
}

/// Adds `v` to `said`, emptying it first when it is full; whether `v` is new.
fn remember<T: std::hash::Hash + Eq>(said: &mut HashSet<T>, v: T) -> bool {
    if said.len() >= TRACKED_KEYS && !said.contains(&v) {
        said.clear();
    }
    said.insert(v)
}

/// The alert state of one proxy.
#[derive(Debug, Default)]
pub struct Alerts {
    /// Print alerts on stderr as they happen.
    pub print: bool,
    inner: Mutex<Inner>,
}

/// How many unpriced models are each announced once; past that, no more are.
const UNLISTED_MODELS: usize = 1024;

/// Minutes of history before a baseline counts.
const BASELINE_MINUTES: usize = 3;
/// Requests in a minute below which no rate alert fires (too few to mean anything).
const RATE_FLOOR: u64 = 10;

impl Alerts {
    fn emit(&self, state: &State, kind: &str, binding: Option<String>, message: String) {
        if self.print {
            crate::output::warn(&format!("alert: {}", crate::output::printable(&message)));
        }
        if let Some(w) = state.writer() {
            w.event(
                crate::time::now_unix(),
                binding,
                state.options.session.clone(),
                kind,
                message,
            );
        }
    }

    /// Looks at one finished request.
    pub fn observe(&self, state: &State, rec: &RequestRecord) {
        let out = self.alerts_for(rec.binding, rec.root, rec.denial, rec.message.as_deref());
        for (kind, message) in out {
            self.emit(state, kind, rec.binding.map(|b| b.to_string()), message);
        }
    }

    /// The alerts one finished request raises: of the key at `key`, whose first level is at
    /// `root`, refused as `denial` with `message`, if it was.
    fn alerts_for(
        &self,
        key: Option<Binding>,
        root: Option<Binding>,
        denial: Option<&'static str>,
        message: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        // The hex text only for what is stored (rare), not for every request.
        let binding = || key.map(|b| b.to_string());
        // Which key, for a person watching several programs on one `till serve`.
        let of_key = || key.map(|b| format!(" (key {b:#})")).unwrap_or_default();
        let mut out: Vec<(&'static str, String)> = Vec::new();
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(kind) = denial {
                let what = message.unwrap_or(kind);
                if matches!(kind, "expired" | "revoked" | "retired_mint") {
                    let key = binding().unwrap_or_default();
                    if remember(&mut inner.dead_keys, (key, kind)) && inner.lineage_may_say(root) {
                        out.push((
                            "dead_key",
                            format!(
                                "an agent used {} {} key{}: {what}",
                                if kind == "expired" { "an" } else { "a" },
                                kind.replace('_', " "),
                                of_key()
                            ),
                        ));
                    }
                } else if inner.denial_kinds.insert(kind) {
                    out.push((
                        "denial",
                        format!("first `{kind}` denial{}: {what}", of_key()),
                    ));
                }
                if kind == "budget" {
                    let hex = binding().unwrap_or_default();
                    let short = crate::childkey::Binding::short_hex(&hex).to_string();
                    // Marked apart from the 100 % of a budget's fill (`budget_fill`), which a
                    // refusal with the budget far from spent must not stand in for. The key is
                    // the one that made the request; the budget may be a key it came from.
                    if remember(&mut inner.budget_marks, (hex, REFUSED_MARK))
                        && inner.lineage_may_say(root)
                    {
                        out.push((
                            "budget",
                            format!(
                                "a budget refused a request of key {short}: requests that could cost more than it has left are refused"
                            ),
                        ));
                    }
                }
            }
            let now = Instant::now();
            if let Some(b) = root.or(key)
                && let Some(r) = inner.rate_of(b, now)
            {
                while now.duration_since(r.minute_start).as_secs() >= 60 {
                    r.history.push_back(r.current);
                    if r.history.len() > 10 {
                        r.history.pop_front();
                    }
                    r.current = 0;
                    r.alerted_this_minute = false;
                    r.minute_start += std::time::Duration::from_secs(60);
                }
                r.current += 1;
                if r.history.len() >= BASELINE_MINUTES && !r.alerted_this_minute {
                    let baseline = r.history.iter().sum::<u64>() as f64 / r.history.len() as f64;
                    if r.current >= RATE_FLOOR && r.current as f64 >= 5.0 * baseline.max(1.0) {
                        r.alerted_this_minute = true;
                        let narrowed = if key.is_some_and(|k| k != b) {
                            " (with the keys narrowed from it)"
                        } else {
                            ""
                        };
                        out.push((
                            "rate",
                            format!(
                                "key {b:#}{narrowed} made {} requests this minute, over five times its recent {:.1} per minute",
                                r.current,
                                baseline
                            ),
                        ));
                    }
                }
            }
        }
        out
    }

    /// `provider/model` has no price of its own and is charged `price`, its provider's highest.
    pub fn unlisted_price(
        &self,
        state: &State,
        provider: &str,
        model: &str,
        price: &crate::pricing::Price,
    ) {
        let name = format!("{provider}/{model}");
        // Said once per model, for the first UNLISTED_MODELS: names come from requests, and
        // the set must not grow with every name an agent makes up.
        let first = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.unlisted_models.len() < UNLISTED_MODELS
                && inner.unlisted_models.insert(name.clone())
        };
        if first {
            // The entry to add is suggested only for a model a person could type: the name
            // came from the request.
            let fix = if crate::childkey::is_model_name(model) {
                format!(
                    " Set its price in config.toml: [prices.\"{name}\"] input = …, output = … (a running proxy reads it again within a second)"
                )
            } else {
                String::new()
            };
            self.emit(
                state,
                "price",
                None,
                format!(
                    "till has no price for {name}; charging {provider}'s highest known price (${} input, ${} output per million tokens).{fix}",
                    price.input, price.output
                ),
            );
        }
    }

    /// config.toml or the price table changed and could not be read: the proxy keeps charging
    /// at the table it had. Said once for each change (the files are not read again until they
    /// change again).
    pub fn prices_unread(&self, state: &State, why: &str) {
        self.emit(
            state,
            "price",
            None,
            format!(
                "the prices changed on disk but could not be read, so this proxy keeps charging at the ones it had: {why}"
            ),
        );
    }

    /// A budget of level `binding` of a key whose first level is `root` is now `fraction`
    /// full (reservations included).
    pub fn budget_fill(&self, state: &State, binding: &str, fraction: f64, root: Option<Binding>) {
        if let Some(pct) = self.budget_mark(binding, fraction, root) {
            self.emit(
                state,
                "budget",
                Some(binding.to_string()),
                format!(
                    "key {} has {pct} % of its budget spent or held by requests in flight",
                    crate::format::head(binding, 12)
                ),
            );
        }
    }
}

impl Alerts {
    /// The highest of the marks (50, 80, 100 %) a budget of level `binding` now `fraction`
    /// full has passed and that was not said before. A narrowed level's (not the key's first,
    /// `root`) counts toward its lineage's few per-key lines: an agent narrows keys offline,
    /// each with a budget of its own.
    fn budget_mark(&self, binding: &str, fraction: f64, root: Option<Binding>) -> Option<u8> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut mark = None;
        for pct in [50u8, 80, 100] {
            if fraction * 100.0 >= f64::from(pct)
                && remember(&mut inner.budget_marks, (binding.to_string(), pct))
            {
                mark = Some(pct);
            }
        }
        let narrowed = root.is_some_and(|r| r.to_string() != binding);
        if mark.is_some() && narrowed && !inner.lineage_may_say(root) {
            return None;
        }
        mark
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key whose last minutes each had one request.
    fn with_baseline(alerts: &Alerts, key: Binding) {
        let mut inner = alerts.inner.lock().unwrap();
        inner.rates.insert(
            key,
            Rate {
                minute_start: Instant::now(),
                current: 0,
                history: VecDeque::from(vec![1; BASELINE_MINUTES]),
                alerted_this_minute: false,
            },
        );
    }

    #[test]
    fn keys_made_without_end_are_followed_only_to_a_bound() {
        let alerts = Alerts::default();
        let key = |i: usize| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Binding(b)
        };
        let mut dead_alerts = 0;
        for i in 0..TRACKED_KEYS + 500 {
            dead_alerts += alerts
                .alerts_for(Some(key(i)), None, Some("revoked"), Some("revoked"))
                .iter()
                .filter(|(kind, _)| *kind == "dead_key")
                .count();
        }
        // Every dead key is said (an agent's flood of keys must not silence the next one), and
        // the set of those said stays bounded.
        let inner = alerts.inner.lock().unwrap();
        assert_eq!(inner.rates.len(), TRACKED_KEYS);
        assert!(inner.dead_keys.len() <= TRACKED_KEYS);
        assert_eq!(dead_alerts, TRACKED_KEYS + 500);
        drop(inner);
        // Keys quiet for longer than the history are dropped to make room, once a minute.
        {
            let mut inner = alerts.inner.lock().unwrap();
            let old = Instant::now() - std::time::Duration::from_secs(12 * 60);
            for r in inner.rates.values_mut().take(100) {
                r.minute_start = old;
            }
            inner.rates_pruned = None;
        }
        alerts.alerts_for(Some(key(TRACKED_KEYS + 1000)), None, None, None);
        let inner = alerts.inner.lock().unwrap();
        assert_eq!(inner.rates.len(), TRACKED_KEYS - 100 + 1);
        assert!(inner.rates.contains_key(&key(TRACKED_KEYS + 1000)));
    }

    /// A refusal with the budget far from spent (a request larger than what is left) said
    /// "at 100 %", and its mark stood in for the fill's: the real 100 % was never said.
    #[test]
    fn a_budget_refusal_is_said_once_and_leaves_the_fill_marks_alone() {
        let alerts = Alerts::default();
        let key = Binding([0x3c; 32]);
        let first = alerts.alerts_for(Some(key), None, Some("budget"), Some("too large"));
        let said: Vec<&String> = first
            .iter()
            .filter(|(kind, _)| *kind == "budget")
            .map(|(_, m)| m)
            .collect();
        assert_eq!(said.len(), 1, "{first:?}");
        assert!(said[0].starts_with("a budget refused a request of key 3c3c3c3c3c3c"));
        assert!(!said[0].contains("100 %"));
        let again = alerts.alerts_for(Some(key), None, Some("budget"), Some("too large"));
        assert!(again.iter().all(|(kind, _)| *kind != "budget"), "{again:?}");
        let inner = alerts.inner.lock().unwrap();
        assert!(!inner.budget_marks.contains(&(key.to_string(), 100)));
    }

    #[test]
    fn a_key_at_five_times_its_baseline_raises_one_rate_alert_a_minute() {
        let alerts = Alerts::default();
        let (key, other) = (Binding([0xab; 32]), Binding([0xcd; 32]));
        with_baseline(&alerts, key);
        for n in 1..RATE_FLOOR {
            assert!(
                alerts.alerts_for(Some(key), None, None, None).is_empty(),
                "{n}"
            );
        }
        let raised = alerts.alerts_for(Some(key), None, None, None);
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0].0, "rate");
        assert!(
            raised[0]
                .1
                .starts_with("key abababababab made 10 requests this minute"),
            "{}",
            raised[0].1
        );
        // Once a minute, and only for the key that ran over.
        assert!(alerts.alerts_for(Some(key), None, None, None).is_empty());
        for _ in 0..20 {
            assert!(alerts.alerts_for(Some(other), None, None, None).is_empty());
        }
    }

    #[test]
    fn a_dead_key_is_reported_once_and_each_denial_kind_once() {
        let alerts = Alerts::default();
        let key = Binding([1; 32]);
        let first = alerts.alerts_for(
            Some(key),
            None,
            Some("revoked"),
            Some("this key was revoked"),
        );
        assert_eq!(
            first,
            vec![(
                "dead_key",
                "an agent used a revoked key (key 010101010101): this key was revoked".to_string()
            )]
        );
        assert!(
            alerts
                .alerts_for(Some(key), None, Some("revoked"), None)
                .is_empty()
        );
        assert_eq!(
            alerts
                .alerts_for(Some(key), None, Some("scope"), None)
                .len(),
            1
        );
        assert!(
            alerts
                .alerts_for(None, None, Some("scope"), None)
                .is_empty()
        );
        let expired = alerts.alerts_for(Some(Binding([2; 32])), None, Some("expired"), None);
        assert_eq!(
            expired[0].1,
            "an agent used an expired key (key 020202020202): expired"
        );
    }
    /// Keys narrowed offline from one key count with it: narrowing is free and needs no
    /// keychain, so a key of its own per request would start each without a baseline.
    #[test]
    fn keys_narrowed_from_a_key_count_toward_its_rate() {
        let alerts = Alerts::default();
        let root = Binding([0x5a; 32]);
        with_baseline(&alerts, root);
        let mut raised = Vec::new();
        for i in 0..RATE_FLOOR {
            let mut leaf = [0x77; 32];
            leaf[0] = i as u8;
            raised.extend(alerts.alerts_for(Some(Binding(leaf)), Some(root), None, None));
        }
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert!(
            raised[0].1.starts_with(
                "key 5a5a5a5a5a5a (with the keys narrowed from it) made 10 requests this minute"
            ),
            "{}",
            raised[0].1
        );
        assert_eq!(alerts.inner.lock().unwrap().rates.len(), 1);
    }

    /// Dead keys narrowed without end from one key (each expired, each a key of its own) give
    /// a few alerts, not one a request; another lineage's are said all the same.
    #[test]
    fn one_lineages_dead_keys_are_said_a_few_times_only() {
        let alerts = Alerts::default();
        let root = Binding([0x11; 32]);
        let mut said = 0;
        for i in 0..200u8 {
            let mut leaf = [0x22; 32];
            leaf[0] = i;
            said += alerts
                .alerts_for(Some(Binding(leaf)), Some(root), Some("expired"), None)
                .iter()
                .filter(|(kind, _)| *kind == "dead_key")
                .count();
        }
        assert_eq!(said, PER_LINEAGE);
        let other = alerts.alerts_for(
            Some(Binding([0x33; 32])),
            Some(Binding([0x44; 32])),
            Some("expired"),
            None,
        );
        assert_eq!(other.len(), 1, "{other:?}");
    }

    /// Budgets of keys narrowed offline from one key, each spent by a request: a few of their
    /// marks are said, not one a key; the first level's own marks always are.
    #[test]
    fn narrowed_budgets_of_one_lineage_are_said_a_few_times_only() {
        let alerts = Alerts::default();
        let root = Binding([0x55; 32]);
        let said = (0..200)
            .filter(|i| {
                alerts
                    .budget_mark(&format!("{i:064x}"), 0.6, Some(root))
                    .is_some()
            })
            .count();
        assert_eq!(said, PER_LINEAGE);
        assert_eq!(
            alerts.budget_mark(&root.to_string(), 0.9, Some(root)),
            Some(80)
        );
    }

    /// Budgets of keys narrowed without end (each with a tiny budget of its own, spent by one
    /// request) fill the set of marks said; the next key's marks are said all the same.
    #[test]
    fn a_flood_of_budget_marks_does_not_silence_the_next() {
        let alerts = Alerts::default();
        for i in 0..TRACKED_KEYS + 10 {
            assert_eq!(
                alerts.budget_mark(&format!("{i:064x}"), 0.6, None),
                Some(50)
            );
        }
        let refused = alerts.alerts_for(Some(Binding([0x42; 32])), None, Some("budget"), None);
        assert!(
            refused.iter().any(|(kind, _)| *kind == "budget"),
            "{refused:?}"
        );
        let inner = alerts.inner.lock().unwrap();
        assert!(inner.budget_marks.len() <= TRACKED_KEYS);
        assert!(
            inner
                .budget_marks
                .contains(&("42".repeat(32), REFUSED_MARK))
        );
    }
}
