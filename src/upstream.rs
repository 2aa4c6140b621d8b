//! Talking to a provider with a root key: the shared HTTP client, the provider's way of
//! presenting a key, and the cheap call that tells whether a key works.
//!
//! This is the only module that puts a root key on the wire; the key is exposed at exactly
//! one call site, [`auth_header`].

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};

use crate::providers::{AuthScheme, Provider};

pub use crate::providers::anthropic::ANTHROPIC_VERSION;

/// A pooled HTTPS client (rustls) for upstream calls.
pub fn client(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("the HTTP client builds with static settings")
}

/// The header that carries `key` for `provider`, marked sensitive so it never appears in
/// debug output.
pub fn auth_header(provider: &Provider, key: &SecretString) -> (HeaderName, HeaderValue) {
    let (name, value) = match provider.api.auth_scheme() {
        AuthScheme::Bearer => (
            http::header::AUTHORIZATION,
            HeaderValue::try_from(format!("Bearer {}", key.expose_secret())),
        ),
        AuthScheme::XApiKey => (
            HeaderName::from_static("x-api-key"),
            HeaderValue::try_from(key.expose_secret()),
        ),
        AuthScheme::GoogApiKey => (
            HeaderName::from_static("x-goog-api-key"),
            HeaderValue::try_from(key.expose_secret()),
        ),
    };
    let mut value = value.unwrap_or_else(|_| HeaderValue::from_static("invalid-key"));
    value.set_sensitive(true);
    (name, value)
}

/// What the provider said about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx from the verification call.
    Accepted,
    /// 401 or 403: the provider does not accept this key.
    Rejected(u16),
    /// Another status: the key's validity is unknown.
    Unexpected(u16),
}

/// Asks the provider whether `key` works, with its cheap authenticated GET.
pub async fn verify_key(
    client: &reqwest::Client,
    provider: &Provider,
    key: &SecretString,
) -> Result<Verdict, reqwest::Error> {
    let url = format!("{}{}", provider.base_url, provider.verify_path);
    let (name, value) = auth_header(provider, key);
    let mut req = client
        .get(url)
        .header(name, value)
        .timeout(Duration::from_secs(20));
    for (name, value) in provider.api.wire().default_headers() {
        req = req.header(*name, *value);
    }
    let status = req.send().await?.status().as_u16();
    Ok(match status {
        200..=299 => Verdict::Accepted,
        401 | 403 => Verdict::Rejected(status),
        other => Verdict::Unexpected(other),
    })
}

/// A reqwest error's message without the URL (which may carry a `?key=` query), or the short
/// reason for the usual network failures.
pub fn without_url(err: &reqwest::Error) -> String {
    let mut msg = err.to_string();
    if let Some(url) = err.url() {
        msg = msg.replace(url.as_str(), "").trim().to_string();
    }
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "connection failed".into()
    } else {
        msg
    }
}
