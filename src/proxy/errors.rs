//! Errors in the provider's own shape, so the agent's SDK raises its usual exception
//! (`PermissionDeniedError`, `RateLimitError`, …) carrying till's message. The shapes are
//! each family's ([`crate::providers::Family::error_body`]); this module owns till's error
//! type and the HTTP response around the body, and must never spell a family's shape itself.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::ledger::counters::Refusal;
use crate::providers::ApiFamily;

/// An error response for `api`: status, provider-shaped JSON body, optional `Retry-After`.
#[derive(Debug, Clone)]
pub struct ProxyError {
    pub status: StatusCode,
    /// A short slug recorded in the ledger (`expired`, `model`, `rpm`, `upstream`, …).
    pub kind: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ProxyError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// The JSON body in `api`'s error shape.
    pub fn body(&self, api: ApiFamily) -> serde_json::Value {
        api.wire()
            .error_body(self.status.as_u16(), self.kind, &self.message)
    }

    /// The whole HTTP response.
    pub fn response<B: From<Bytes>>(&self, api: ApiFamily) -> Response<B> {
        let body = Bytes::from(self.body(api).to_string());
        let mut resp = Response::new(B::from(body));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("x-till-denied", HeaderValue::from_static(self.kind));
        match self.retry_after {
            Some(secs) => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            }
            // A budget or request ceiling never refills: the OpenAI and Anthropic SDKs retry a
            // 429 twice with backoff unless told not to, and every retry is refused again. So
            // is a 503 for a provider whose root key is gone until a person adds one.
            None if self.status == StatusCode::TOO_MANY_REQUESTS || self.kind == "no_root_key" => {
                headers.insert("x-should-retry", HeaderValue::from_static("false"));
            }
            None => {}
        }
        resp
    }
}

/// An in-stream error event in `api`'s streaming format, sent when the upstream fails after
/// the response has started, so the SDK raises an error instead of waiting.
pub fn stream_error_event(api: ApiFamily, message: &str) -> Bytes {
    Bytes::from(api.wire().stream_error_event(message))
}

/// The error for a budget or request count the ledger refused to reserve against.
pub(super) fn refusal_error(r: &Refusal) -> ProxyError {
    let m = crate::format::usd_micros;
    match *r {
        Refusal::Usd {
            budget,
            used,
            asked,
        } => ProxyError::new(
            429,
            "budget",
            budget_text(
                &format!("budget of {}", m(budget)),
                budget,
                used,
                asked,
                m,
                "`--budget …` (on `till run`, or a new key from `till key create`)",
            ),
        ),
        Refusal::Tokens {
            budget,
            used,
            asked,
        } => ProxyError::new(
            429,
            "budget",
            budget_text(
                &format!("token budget of {budget}"),
                budget,
                used,
                asked,
                |n| format!("{n} tokens"),
                "`--budget Nktok` (on `till run`, or a new key from `till key create`)",
            ),
        ),
        Refusal::Requests { max } => ProxyError::new(
            429,
            "max_requests",
            format!(
                "this key may make {max} requests and has made them all; widen it with `--max-requests N`"
            ),
        ),
    }
}

/// Why a budget refused a request: the request alone is more than the whole budget, the
/// budget is spent, or what is left is less than the request could cost. `show` writes an
/// amount in the budget's unit.
fn budget_text(
    what: &str,
    budget: u64,
    used: u64,
    asked: u64,
    show: impl Fn(u64) -> String,
    widen: &str,
) -> String {
    if asked > budget {
        format!(
            "this request could cost up to {}, more than this key's whole {what}; ask for fewer output tokens (`max_tokens`) or widen it with {widen}",
            show(asked)
        )
    } else if used >= budget {
        format!(
            "this key's {what} is used up ({} spent or held by requests in flight); widen it with {widen}",
            show(used)
        )
    } else {
        format!(
            "this key's {what} has {} left ({} spent or held by requests in flight), less than this request could cost ({}); ask for fewer output tokens (`max_tokens`) or widen it with {widen}",
            show(budget - used),
            show(used),
            show(asked)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refusal_says_which_of_the_three_it_is() {
        let text = |budget, used, asked| {
            refusal_error(&Refusal::Tokens {
                budget,
                used,
                asked,
            })
            .message
        };
        assert!(text(30, 0, 101).contains("more than this key's whole token budget of 30"));
        assert!(text(30, 30, 5).contains("is used up (30 tokens spent"));
        assert!(text(30, 20, 15).contains("has 10 tokens left (20 tokens spent"));
        let usd = refusal_error(&Refusal::Usd {
            budget: 1_000_000,
            used: 1_000_000,
            asked: 10,
        })
        .message;
        assert!(
            usd.contains("budget of $1.00 is used up ($1.00 spent"),
            "{usd}"
        );
    }

    #[test]
    fn shapes_match_each_provider() {
        let e = ProxyError::new(403, "model", "nope");
        assert_eq!(e.body(ApiFamily::Openai)["error"]["code"], "till_model");
        assert_eq!(
            e.body(ApiFamily::Anthropic)["error"]["type"],
            "permission_error"
        );
        assert_eq!(
            e.body(ApiFamily::Gemini)["error"]["status"],
            "PERMISSION_DENIED"
        );
        let r: Response<Bytes> = ProxyError::new(429, "rpm", "slow")
            .retry_after(0)
            .response(ApiFamily::Openai);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "1");
        assert!(r.headers().get("x-should-retry").is_none());
        // A spent budget: no wait helps, and the SDKs are told not to retry.
        let r: Response<Bytes> =
            ProxyError::new(429, "budget", "spent").response(ApiFamily::Openai);
        assert_eq!(r.headers()["x-should-retry"], "false");
        assert!(r.headers().get(http::header::RETRY_AFTER).is_none());
        let r: Response<Bytes> =
            ProxyError::new(503, "no_root_key", "gone").response(ApiFamily::Openai);
        assert_eq!(r.headers()["x-should-retry"], "false");
        let r: Response<Bytes> = ProxyError::new(503, "busy", "later").response(ApiFamily::Openai);
        assert!(r.headers().get("x-should-retry").is_none());
    }
}
