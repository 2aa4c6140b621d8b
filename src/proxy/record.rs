//! What the proxy keeps about requests: the counters for the exit summary, and one
//! [`RequestRecord`] per request from its first phase until its body ends, when it is counted,
//! settled against its reservation, shown to the alerts and written to the ledger. Records are
//! written only here, never from a phase directly.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::body::Finished;
use super::state::State;
use crate::childkey::{Binding, EndpointClass};
use crate::ledger::counters::{Hold, Reservation};

/// Counters for the exit summary.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    pub cost_micros: AtomicU64,
    pub denials: Mutex<BTreeMap<&'static str, u64>>,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub denials: BTreeMap<&'static str, u64>,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
            cost_usd: self.cost_micros.load(Ordering::Relaxed) as f64 / 1e6,
            denials: self.denials.lock().map(|d| d.clone()).unwrap_or_default(),
        }
    }
}

/// One request, as it will be recorded.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub at: u64,
    pub started: Instant,
    pub binding: Option<Binding>,
    /// The binding of the key's first level, which the mint key made: the same for every key
    /// narrowed from it (its lineage), and one no agent can make offline.
    pub root: Option<Binding>,
    pub provider: String,
    pub model: Option<String>,
    pub endpoint: Option<EndpointClass>,
    /// The operation's answer carries usage (chat, completions, Responses, messages,
    /// generation, OpenAI's embeddings): one without it is recorded `no_usage`.
    pub usage_expected: bool,
    pub status: u16,
    pub denial: Option<&'static str>,
    /// The denial's message (for alerts; not stored per request).
    pub message: Option<String>,
    pub ttfb: Option<Duration>,
    pub latency: Duration,
    pub finished: Option<Finished>,
    /// The metered cost in micro-dollars (0 when unknown or unpriced).
    pub cost_micros: u64,
    /// Short bindings of every level of the key, space-separated (empty when unknown).
    pub lineage: String,
    /// Budget held on the counters until the request is settled.
    pub reservation: Option<Reservation>,
}

impl RequestRecord {
    pub fn new(provider: &str, started: Instant) -> Self {
        Self {
            at: crate::time::now_unix(),
            started,
            binding: None,
            root: None,
            provider: provider.to_string(),
            model: None,
            endpoint: None,
            usage_expected: false,
            status: 0,
            denial: None,
            message: None,
            ttfb: None,
            latency: Duration::ZERO,
            finished: None,
            cost_micros: 0,
            lineage: String::new(),
            reservation: None,
        }
    }

    /// Moves the record out (to the response body, which finishes it, or to a holder that gives
    /// it back), leaving a placeholder that is never recorded and allocates nothing.
    pub fn take(&mut self) -> Self {
        std::mem::replace(self, Self::new("", self.started))
    }

    /// Records the request as refused with `err` (releasing anything it had reserved).
    pub fn refused(self, state: &State, err: &super::ProxyError) {
        self.ended_with(state, err, None);
    }

    /// Records the request as answered but not passed on (`err` went to the client instead):
    /// the provider ran it, so it is charged its reservation, as an answer without usage is.
    pub fn unread(self, state: &State, err: &super::ProxyError) {
        let finished = Finished {
            error: Some(err.message.clone()),
            ..Default::default()
        };
        self.ended_with(state, err, Some(finished));
    }

    /// Records the request as ended with `err` (and, if it reached the provider, `finished`).
    fn ended_with(mut self, state: &State, err: &super::ProxyError, finished: Option<Finished>) {
        self.status = err.status.as_u16();
        self.denial = Some(err.kind);
        self.message = Some(err.message.clone());
        self.finish(state, finished);
    }

    /// Counts the request, settles its reservation, watches for alerts and records it.
    pub fn finish(mut self, state: &State, mut finished: Option<Finished>) {
        self.latency = self.started.elapsed();
        // A stored object's answer (`GET /v1/responses/ID`, `GET /v1/chat/completions/ID`, a
        // batch's) repeats the usage of work done, and recorded, by another request: not
        // counted again. (Realtime and admin calls, a tuned model's generation among them, run
        // models: theirs counts.)
        if matches!(
            self.endpoint,
            Some(EndpointClass::Files | EndpointClass::Models | EndpointClass::Batches)
        ) && let Some(f) = &mut finished
        {
            f.usage = None;
        }
        let stats = &state.stats;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(kind) = self.denial
            && let Ok(mut d) = stats.denials.lock()
        {
            *d.entry(kind).or_default() += 1;
        }
        if let Some(usage) = finished.as_ref().and_then(|f| f.usage) {
            stats
                .input_tokens
                .fetch_add(usage.input_tokens, Ordering::Relaxed);
            stats
                .output_tokens
                .fetch_add(usage.output_tokens, Ordering::Relaxed);
            let price = self
                .model
                .as_deref()
                .and_then(|m| state.price(&self.provider, m));
            if let Some(price) = price {
                self.cost_micros = price.cost_micros(&usage);
                stats
                    .cost_micros
                    .fetch_add(self.cost_micros, Ordering::Relaxed);
            }
        }
        self.finished = finished;
        let reservation = self.reservation.take();
        state.alerts.observe(state, &self);
        let Some(w) = &state.writer else { return };
        // Charge what was metered for an answer that reached its end. One that started but did
        // not (cut, abandoned, interrupted) is charged at least its reservation: the usage seen
        // so far is not what the provider bills (Anthropic's first event reports one output
        // token, and generation goes on after the stream breaks), so an agent that hangs up
        // early must not pay less than the request could cost. One that reported no usage is
        // charged its reservation, but for an error answer of a kind a provider gives before
        // it runs the model (`unbilled_error`); a request that never reached the upstream,
        // nothing.
        let charge = reservation.map(|reservation| {
            let (micros, tokens) = match &self.finished {
                Some(f) => match f.usage {
                    Some(u) if f.completed => (self.cost_micros, u.total()),
                    Some(u) => (
                        self.cost_micros.max(reservation.micros),
                        u.total().max(reservation.tokens),
                    ),
                    None if f.completed && f.one_answer && unbilled_error(self.status) => (0, 0),
                    None => (reservation.micros, reservation.tokens),
                },
                None => (0, 0),
            };
            (reservation, micros, tokens)
        });
        // The row's cost is what was charged, so that what `till usage` adds up is what the
        // budgets were charged.
        if let Some((_, micros, _)) = charge
            && micros != self.cost_micros
        {
            stats
                .cost_micros
                .fetch_add(micros.saturating_sub(self.cost_micros), Ordering::Relaxed);
            self.cost_micros = micros;
        }
        // How full each budget is once this request is charged: a request that spends most of
        // one raises its mark now, not at the next request's reservation.
        if let Some((reservation, micros, tokens)) = &charge {
            for g in &reservation.gauges {
                state.alerts.budget_fill(
                    state,
                    &g.binding,
                    g.fraction_after(*micros, *tokens),
                    self.root,
                );
            }
        }
        let mut row = self.into_row(state.options.session.as_deref());
        // Likewise its tokens: what a token budget was charged beyond the usage reported (a
        // reservation) shows as output tokens, as a row settled at a stop does.
        if let Some((_, _, tokens)) = charge {
            let extra = tokens.saturating_sub(row.input_tokens.saturating_add(row.output_tokens));
            if extra > 0 {
                row.output_tokens = row.output_tokens.saturating_add(extra);
                stats.output_tokens.fetch_add(extra, Ordering::Relaxed);
            }
        }
        match charge {
            // One message: if a stop already settled this reservation and wrote the request's
            // row, this row is not written a second time.
            Some((reservation, micros, tokens)) => {
                w.settle_with_row(reservation, micros, tokens, row)
            }
            None => w.row(row),
        }
    }

    /// What the ledger keeps with this request's reservation, to write its row should this
    /// process stop before the request ends.
    pub(super) fn hold(&self, owner: &str, session: Option<&str>) -> Hold {
        Hold {
            owner: owner.to_string(),
            at: self.at,
            provider: self.provider.clone(),
            model: self.model.clone(),
            endpoint: self.endpoint.map(|e| e.as_str().to_string()),
            binding: self.binding.map(|b| b.hex()),
            lineage: (!self.lineage.is_empty()).then(|| self.lineage.clone()),
            session: session.map(str::to_string),
        }
    }
}

/// An error answer a provider gives before it runs the model, and does not bill: the key or
/// account refused (401, 403), no such model or path (404, 405), a body it will not take
/// (413, 415, 422), a rate limit (429), load shed (503, Anthropic's 529 Overloaded). Charged
/// nothing when it comes whole without usage. A 400 or another 5xx is charged its
/// reservation: a gateway in front of the provider can answer so after the model ran (a
/// guardrail on the output, a failure reading the answer, a timeout in front of a model that
/// went on).
pub fn unbilled_error(status: u16) -> bool {
    matches!(
        status,
        401 | 403 | 404 | 405 | 413 | 415 | 422 | 429 | 503 | 529
    )
}

impl RequestRecord {
    /// The ledger row for this request: its text moved into the row, not copied.
    pub fn into_row(self, session: Option<&str>) -> crate::ledger::writer::RequestRow {
        let usage = self
            .finished
            .as_ref()
            .and_then(|f| f.usage)
            .unwrap_or_default();
        let cost_micros = self.cost_micros;
        let outcome = match (&self.denial, &self.finished) {
            // Let through and failed on the way (`failed: upstream…` in `till log`).
            (Some(kind), _) if super::is_failure(kind) => "failed",
            (Some(_), _) => "denied",
            (None, Some(f)) if f.interrupted => crate::ledger::counters::INTERRUPTED,
            (None, Some(f)) if f.error.is_some() => "cut",
            (None, Some(f)) if f.client_gone => "abandoned",
            // An answer that ended well but said nothing of its usage: its row's zero tokens
            // are not a count (a key with a budget was charged its reservation).
            (None, Some(f))
                if f.completed
                    && f.usage.is_none()
                    && self.usage_expected
                    && self.status >= 200
                    && !(f.one_answer && unbilled_error(self.status)) =>
            {
                "no_usage"
            }
            (None, Some(f)) if f.completed => "complete",
            (None, Some(_)) => "incomplete",
            (None, None) => "error",
        };
        crate::ledger::writer::RequestRow {
            at: self.at,
            binding: self.binding.map(|b| b.hex()),
            key_name: None,
            session: session.map(str::to_string),
            provider: self.provider,
            model: self.model,
            endpoint: self.endpoint.map(EndpointClass::as_str),
            status: self.status,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_tokens: usage.cached_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            cost_micros,
            latency_ms: self.latency.as_secs_f64() * 1e3,
            ttfb_ms: self.ttfb.map(|d| d.as_secs_f64() * 1e3),
            denial: self.denial,
            outcome: Some(outcome),
            lineage: (!self.lineage.is_empty()).then_some(self.lineage),
        }
    }
}
