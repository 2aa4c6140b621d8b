//! Talking to a provider with a root key: the shared HTTP client, the provider's way of
//! presenting a key, the WebSocket opened with it, and the cheap call that tells whether a key
//! works.
//!
//! This is the only module that puts a root key on the wire; the key is exposed at exactly
//! one call site, [`auth_header`].

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use tokio_tungstenite::tungstenite;

use crate::providers::{AuthScheme, Provider};

pub mod conns;
pub mod h1;

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
        AuthScheme::Bearer => (http::header::AUTHORIZATION, {
            // One buffer, handed to the header as it is (a `String` would be copied again).
            let key = key.expose_secret().as_bytes();
            let mut value = bytes::BytesMut::with_capacity(7 + key.len());
            value.extend_from_slice(b"Bearer ");
            value.extend_from_slice(key);
            HeaderValue::from_maybe_shared(value.freeze())
        }),
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

/// A WebSocket to a provider (plain or TLS with the same webpki roots as [`client`]).
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The provider's answer to a WebSocket upgrade it accepted (status 101 and its headers).
pub type Upgraded = http::Response<Option<Vec<u8>>>;

/// Opens a WebSocket to `url` (`ws://` or `wss://`, from [`websocket_url`]) with the root key,
/// `headers` (already stripped of the client's credentials and handshake headers) and the
/// offered subprotocols, if any. An upgrade the provider refuses is
/// `tungstenite::Error::Http` with its answer.
pub async fn websocket(
    provider: &Provider,
    key: &SecretString,
    url: &str,
    headers: &HeaderMap,
    protocols: Option<HeaderValue>,
    config: tungstenite::protocol::WebSocketConfig,
) -> Result<(Socket, Upgraded), tungstenite::Error> {
    use tungstenite::client::IntoClientRequest as _;
    let mut req = url.into_client_request()?;
    let out = req.headers_mut();
    for (name, value) in headers {
        out.append(name, value.clone());
    }
    if let Some(p) = protocols {
        out.insert(http::header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    let (name, value) = auth_header(provider, key);
    out.insert(name, value);
    for (name, value) in provider.api.wire().default_headers() {
        if !out.contains_key(*name) {
            out.insert(*name, HeaderValue::from_static(value));
        }
    }
    tokio_tungstenite::connect_async_with_config(req, Some(config), true).await
}

/// The WebSocket URL of `path_and_query` at `base_url`: `http` becomes `ws`, `https` `wss`.
pub fn websocket_url(base_url: &str, path_and_query: &str) -> Option<String> {
    let rest = base_url
        .strip_prefix("https://")
        .map(|r| ("wss://", r))
        .or_else(|| base_url.strip_prefix("http://").map(|r| ("ws://", r)))?;
    Some(format!("{}{}{path_and_query}", rest.0, rest.1))
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

/// The URL `till add` checks a key at: `base_url`'s URL with `verify_path` set as the rest
/// of its path (and its query), so that no `verify_path` can move the root key to another
/// host (glued on as text, `@evil.example/x` after `http://127.0.0.1:9` made the port a user
/// name). `None` when `base_url` is no URL.
pub fn verify_url(base_url: &str, verify_path: &str) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse(base_url).ok()?;
    let (path, query) = verify_path
        .split_once('?')
        .map_or((verify_path, None), |(path, query)| (path, Some(query)));
    let joined = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url.set_query(query);
    Some(url)
}

/// Asks the provider whether `key` works, with its cheap authenticated GET. An error is the
/// reason it could not ask, without the URL.
pub async fn verify_key(
    client: &reqwest::Client,
    provider: &Provider,
    key: &SecretString,
) -> Result<Verdict, String> {
    let url = verify_url(&provider.base_url, &provider.verify_path)
        .ok_or_else(|| "its base_url is not a URL".to_string())?;
    let (name, value) = auth_header(provider, key);
    let mut req = client
        .get(url)
        .header(name, value)
        .timeout(Duration::from_secs(20));
    for (name, value) in provider.api.wire().default_headers() {
        req = req.header(*name, *value);
    }
    let status = req
        .send()
        .await
        .map_err(|e| without_url(&e))?
        .status()
        .as_u16();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Glued to the base URL as text, `@evil.example/x` made the port a user name and sent
    /// the root key to evil.example.
    #[test]
    fn a_verify_path_cannot_change_the_host() {
        for (base, path, want) in [
            (
                "http://127.0.0.1:9",
                "@evil.example/x",
                "http://127.0.0.1:9/@evil.example/x",
            ),
            (
                "http://127.0.0.1:9",
                "//evil.example/x",
                "http://127.0.0.1:9/evil.example/x",
            ),
            (
                "https://api.example.com/v1",
                "/models?a=1",
                "https://api.example.com/v1/models?a=1",
            ),
            (
                "https://api.example.com/",
                "/v1/models",
                "https://api.example.com/v1/models",
            ),
        ] {
            let url = verify_url(base, path).unwrap();
            assert_eq!(url.as_str(), want);
            assert_eq!(url.username(), "");
        }
        assert!(verify_url("http://[::1", "/v1/models").is_none());
    }

    #[test]
    fn websocket_urls_map_http_to_ws_and_https_to_wss() {
        assert_eq!(
            websocket_url("https://api.openai.com", "/v1/realtime?model=m").as_deref(),
            Some("wss://api.openai.com/v1/realtime?model=m")
        );
        assert_eq!(
            websocket_url("http://127.0.0.1:9", "/v1/responses").as_deref(),
            Some("ws://127.0.0.1:9/v1/responses")
        );
        assert_eq!(websocket_url("ftp://x", "/v1/responses"), None);
    }

    /// The `wss://` path builds its TLS client (rustls with the crate's one crypto provider)
    /// and fails cleanly against a server that speaks no TLS.
    #[tokio::test]
    async fn a_wss_upgrade_to_a_server_without_tls_is_an_error_not_a_panic() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let provider = crate::providers::builtin("openai").unwrap();
        let key = SecretString::from("sk-test");
        let url = format!("wss://{addr}/v1/responses");
        let config = tungstenite::protocol::WebSocketConfig::default();
        let opened = websocket(&provider, &key, &url, &HeaderMap::new(), None, config).await;
        assert!(opened.is_err());
    }
}
