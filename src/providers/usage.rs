//! Token counts as a provider reports them, in one shape for every family. Plain data: the
//! families fill it in, the meter carries it, pricing turns it into money.

use serde::Serialize;
use serde_json::Value;

/// Token counts of one request as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache (a subset of `input_tokens`).
    pub cached_tokens: u64,
    /// Input tokens written to the provider's prompt cache (a subset of `input_tokens`,
    /// apart from `cached_tokens`; Anthropic bills them above plain input).
    pub cache_write_tokens: u64,
    /// Of `cache_write_tokens`, those written with a one-hour lifetime.
    pub cache_write_1h_tokens: u64,
    /// Output tokens spent on reasoning (a subset of `output_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// The whole number at the path of object `keys` in `v`, 0 when absent. Walks the keys in
/// place: `Value::pointer` allocates each one, and a pointer string would be split on every
/// response.
pub(crate) fn n(v: &Value, keys: &[&str]) -> u64 {
    let mut cur = v;
    for key in keys {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}
