//! Errors in the provider's own shape, so the agent's SDK raises its usual exception
//! (`PermissionDeniedError`, `RateLimitError`, …) carrying till's message.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

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
        let code = self.status.as_u16();
        match api {
            ApiFamily::Openai => serde_json::json!({
                "error": {
                    "message": self.message,
                    "type": openai_type(code),
                    "param": null,
                    "code": format!("till_{}", self.kind),
                }
            }),
            ApiFamily::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": anthropic_type(code), "message": self.message },
            }),
            ApiFamily::Gemini => serde_json::json!({
                "error": { "code": code, "message": self.message, "status": gemini_status(code) }
            }),
        }
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
        if let Some(secs) = self.retry_after {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

fn openai_type(status: u16) -> &'static str {
    match status {
        401 | 403 => "invalid_request_error",
        429 => "rate_limit_exceeded",
        413 => "invalid_request_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn anthropic_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

fn gemini_status(status: u16) -> &'static str {
    match status {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// An in-stream error event in `api`'s streaming format, sent when the upstream fails after
/// the response has started, so the SDK raises an error instead of waiting.
pub fn stream_error_event(api: ApiFamily, message: &str) -> Bytes {
    let event = match api {
        ApiFamily::Openai => format!(
            "data: {}\n\n",
            serde_json::json!({"error": {"message": message, "type": "server_error", "param": null, "code": "till_upstream"}})
        ),
        ApiFamily::Anthropic => format!(
            "event: error\ndata: {}\n\n",
            serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}})
        ),
        ApiFamily::Gemini => format!(
            "data: {}\n\n",
            serde_json::json!({"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}})
        ),
    };
    Bytes::from(event)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
