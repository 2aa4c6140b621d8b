//! The phases one proxied request goes through, in order, over one [`Ctx`]:
//! [`authenticate`] (who is asking), [`inspect`] (what is asked: one canonical request, read
//! once), [`admit`] (whether the key may ask it, and what it may cost), [`rewrite`] (the body
//! that goes upstream), [`forward`] (with the root key) and [`respond`] (the answer streamed
//! back, metered). `handle` in the parent module calls them top to bottom.
//!
//! Each phase either hands the next one what it learned or refuses with a [`ProxyError`],
//! which the handler records and answers in the provider's shape. Phases never answer the
//! client themselves, never skip one another, and never decide on anything but the canonical
//! path and the one parsed body they are handed: what is checked is what is forwarded.
//! Family-specific knowledge comes from [`crate::providers::Family`], never from a match here.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, header};
use secrecy::SecretString;

use super::body::{self, ProxyBody, Upstream};
use super::errors::ProxyError;
use super::inspect::{self as body_inspect, Inspection, ToolModel};
use super::meter::Meter;
use super::route::{self, Endpoint};
use super::state::{KnownKey, RequestRecord, State};
use crate::childkey::{Checked, Denial, EndpointClass, Grant, RequestFacts, Token, Verified};
use crate::pricing::PromptBound;
use crate::providers::Provider;

/// Output tokens reserved against a budget when a request names no ceiling of its own.
pub const DEFAULT_OUTPUT_RESERVE: u64 = 4096;

/// A body that takes longer than this to come has its key checked again once it has.
const BODY_RECHECK_AFTER: Duration = Duration::from_millis(5);

/// How long making a new connection to a provider may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers that describe one hop and are never forwarded. (Names, not strings: a map looks a
/// `HeaderName` up without parsing it first.)
pub(super) static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    // The settings of an HTTP/2 upgrade (`Upgrade: h2c`), which is never forwarded.
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The tokens of the `Connection` headers of `headers`, trimmed, empty ones left out.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether the `Connection` headers of `headers` name any header besides the fixed hop-by-hop
/// ones (`close` is an option, not a header): most say only `keep-alive` or `close`, and
/// then no other header needs looking at.
pub(super) fn connection_names_others(headers: &HeaderMap) -> bool {
    connection_tokens(headers).any(|t| {
        !t.eq_ignore_ascii_case(b"keep-alive")
            && !t.eq_ignore_ascii_case(b"close")
            && !HOP_BY_HOP
                .iter()
                .any(|h| t.eq_ignore_ascii_case(h.as_str().as_bytes()))
    })
}

/// Whether a `Connection` header of `headers` names `name`: a header named there is meant for
/// this hop alone and is not forwarded, either way (RFC 9110 §7.6.1).
pub(super) fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(name.as_str().as_bytes()))
}

/// Request headers that carry credentials; all are stripped before forwarding.
pub(super) static AUTH_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-goog-api-key"),
    HeaderName::from_static("api-key"),
];

/// Headers that choose which of the root key's accounts a request is for and billed to: an
/// organization, a project. The agent's are removed (it would pick which account pays); the
/// provider's config may set them ([`Provider::account_headers`]).
pub(super) static ACCOUNT_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
    HeaderName::from_static("x-goog-user-project"),
];

/// Whether `name` is a header by which a proxy or framework in front of a compatible server
/// may take a request to another path, method, host or scheme than the one it names, or retry
/// it (and bill it again): `X-Original-URL`/`-URI`/`-Method`/`-Host` (IIS, Symfony, nginx's
/// auth_request), `X-Rewrite-URL`, every `X-Forwarded-*` (`-Host`, `-Prefix`, `-Uri`,
/// `-Method`: read as what the client asked for), Envoy's `X-Envoy-*` (`-Original-Path`,
/// `-Retry-On`), `X-Host`, `X-Real-IP`, `Forwarded` and `Via`, and any name with a byte
/// other than a letter, a digit or `-` ([`ODD_NAME_BYTES`]). The path till forwards is the
/// one it classified and checked: none of these goes upstream. (Names arrive lower-case.)
fn is_routing_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    [
        "x-forwarded-",
        "x-original-",
        "x-rewrite-",
        "x-envoy-",
        // Gateways that take a request's routing from its headers: Portkey's config (fallback
        // targets, `override_params.model`, a custom host), LiteLLM's tags and overrides.
        "x-portkey-",
        "x-litellm-",
        // Envoy AI Gateway routes by `x-ai-eg-model`.
        "x-ai-eg-",
    ]
    .iter()
    .any(|prefix| n.starts_with(prefix))
        || matches!(n, "forwarded" | "via" | "x-host" | "x-real-ip")
        || gateway_words().is_match(n)
}

/// [`GATEWAY_WORDS`] as one automaton: a header name is read once, byte by byte, rather than
/// searched once for each word (a request of four headers: 86,473 instructions under
/// callgrind with a search per word, 78,276 with this, 77,680 without either).
fn gateway_words() -> &'static aho_corasick::AhoCorasick {
    static WORDS: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            // Names with a byte other than a letter, digit or `-` ([`ODD_NAME_BYTES`]) are
            // looked for in the same pass as the words.
            .build(GATEWAY_WORDS.iter().chain(ODD_NAME_BYTES))
            .expect("fixed words")
    });
    &WORDS
}

/// The bytes HTTP allows in a header name besides letters, digits and `-`. CGI and WSGI
/// servers (and frameworks on them) read `_` as `-`, and PHP reads `.` as `_`:
/// `x_forwarded_host`, `anthropic.beta` would reach them as the header whose checks they went
/// around. No provider's header has one, and no name with one is forwarded (nginx drops names
/// with `_` by default too).
const ODD_NAME_BYTES: &[&str] = &[
    "_", ".", "!", "#", "$", "%", "&", "'", "*", "+", "^", "`", "|", "~",
];

/// Words in a header name by which other gateways take a request elsewhere, to another model
/// or again: Helicone's `Helicone-Target-URL` (the host the request and its key go to),
/// `-Fallbacks`, `-Retry-Enabled` and `-Model-Override`; Cloudflare AI Gateway's
/// `cf-aig-max-attempts` and `-retry-delay`; Braintrust's `x-bt-endpoint-name`; headers that
/// name a deployment, engine or provider, or the account that pays. A list of
/// gateways would never be whole; their headers that only authenticate or label
/// (`Helicone-Auth`, `cf-aig-authorization`, `Helicone-Property-*`) go on. Clients' own
/// headers with these words are informational (`x-stainless-retry-count`): nothing is lost
/// when they stay behind.
const GATEWAY_WORDS: &[&str] = &[
    "target",
    "fallback",
    "retry",
    "retries",
    "attempt",
    "backoff",
    "override",
    "routing",
    "route",
    "upstream",
    "endpoint",
    "base-url",
    "api-base",
    "model",
    "redirect",
    // What a header may name instead of a model (the query's refused words too), and the
    // account whose provider key a gateway uses (Cloudflare's `cf-aig-byok-alias`,
    // Braintrust's `x-bt-org-name`).
    "deployment",
    "engine",
    "provider",
    "byok",
    "organization",
    "org-name",
];

/// Whether `name`, a header of the client's request `headers`, stays behind on every way to the
/// provider (HTTP and WebSocket): those of the client's hop (the fixed ones, and those its
/// `Connection` names, looked for only when `connection` says it names others:
/// [`connection_names_others`]), its credentials, the account it would pick, and the
/// routing headers ([`is_routing_header`]).
pub(super) fn stays_behind(headers: &HeaderMap, name: &HeaderName, connection: bool) -> bool {
    HOP_BY_HOP.contains(name)
        || (connection && named_by_connection(headers, name))
        || AUTH_HEADERS.contains(name)
        || ACCOUNT_HEADERS.contains(name)
        || is_routing_header(name)
        || PARTS.contains(name)
}

/// Whether `rest`, a path under `batches`, cancels one batch: `…/batches/ID/cancel` (OpenAI,
/// Anthropic's `messages/batches/ID/cancel`) or `…/batches/ID:cancel` (Gemini), with an ID.
fn cancels_a_batch(rest: &str) -> bool {
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        [.., "batches", id, "cancel"] => !id.is_empty(),
        [.., "batches", last] => last
            .strip_suffix(":cancel")
            .is_some_and(|id| !id.is_empty() && !id.contains(':')),
        _ => false,
    }
}

/// Headers that ask for a part of the answer. A part the client chooses could hold a piece of
/// an echoed root key too short for the scrub to know it as one (an answer of eleven-byte
/// windows, joined by the client): the answer comes whole, as no provider's API is read in
/// parts.
static PARTS: [HeaderName; 2] = [header::RANGE, header::IF_RANGE];

/// Headers that make some servers treat a request as another method.
static METHOD_OVERRIDES: [HeaderName; 4] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    // Google's partial-response mask: it can leave the answer's usage counts out of it, and
    // till charges what the answer reports.
    HeaderName::from_static("x-goog-fieldmask"),
];

/// One request on its way through the phases: where it goes and what will be recorded.
pub struct Ctx<'r> {
    pub state: &'r Arc<State>,
    pub provider: &'r Provider,
    /// The canonical path after the provider prefix.
    pub rest: &'r str,
    /// The time every caveat is checked at: the request's arrival, then (from [`inspect`])
    /// the time its body had all come.
    pub now: u64,
    pub record: RequestRecord,
}

impl<'r> Ctx<'r> {
    pub fn new(
        state: &'r Arc<State>,
        provider: &'r Provider,
        rest: &'r str,
        record: RequestRecord,
    ) -> Self {
        Self {
            state,
            provider,
            rest,
            now: crate::time::now_unix(),
            record,
        }
    }
}

/// The key a request presents, verified against the mint key it names.
pub struct Caller {
    known: Arc<KnownKey>,
}

/// The canonical request, read once: what every later phase decides on and forwards.
pub struct Asked {
    pub parts: http::request::Parts,
    /// The query string to forward (`?…` or empty).
    pub query: String,
    pub body: Bytes,
    pub endpoint: Endpoint,
    pub inspected: Inspection,
    /// The model the body or the path names.
    pub model: Option<String>,
    /// Whether the answer streams, as far as the request says.
    pub sse: bool,
    /// The room for request bodies the body and the trees parsed from it keep, until the
    /// request has gone upstream ([`respond`]).
    pub held: Option<super::state::HeldBody>,
}

/// What admission decided about the request's body.
pub struct Admission {
    /// An output ceiling the request did not name and till writes into it.
    pub insert: Option<u64>,
    /// The key counts tokens: the prompt was reserved at one token a byte of the body as sent,
    /// so the body that goes upstream may not be much longer ([`rewrite`]).
    pub counted: bool,
}

/// How many bytes a body written out again may grow by, past the body as sent, before its
/// prompt bound no longer holds: the fields till writes in (a ceiling, a usage request) take
/// well under this. What grows more is numbers written in exponent form, which serde_json
/// writes out in full (`1e15`, 4 bytes, is `1000000000000000.0`, 18).
const REWRITE_GROWTH: usize = 256;

/// The body that goes upstream.
pub struct Outgoing {
    pub body: Bytes,
    /// The body is the parse till checked (so it is sent as `application/json`).
    pub json: bool,
    /// Till asked for a usage event the client did not; it is removed from the answer.
    pub strip_usage: bool,
    /// The parse the checks read, kept until the response has been sent: freeing the tree of
    /// a long conversation (≈ 190,000 instructions for a 1 MB body) is no work for the
    /// request's path.
    pub parsed: Option<serde_json::Map<String, serde_json::Value>>,
}

pub(super) fn denial_error(d: &Denial) -> ProxyError {
    ProxyError::new(d.status(), d.kind(), d.to_string())
}

/// Whether a request only checks that the base URL answers: `HEAD` or `GET` of a provider's
/// root or of `/api/hello` under it (`/anthropic`, `/anthropic/api/hello`: Claude Code sends
/// one at start to warm its connection, the path depending on its version) without a key,
/// a query or a body. Such a request is no API call: the proxy answers it itself with an empty
/// 200, never forwards it and records nothing (a `no_key` denial would raise a false alert).
/// Everything else without a key, the same paths with another method included, is refused.
pub fn keyless_probe<B>(req: &Request<B>, rest: &str) -> bool {
    let headers = req.headers();
    let bodyless = headers
        .get(http::header::CONTENT_LENGTH)
        .is_none_or(|v| v.as_bytes() == b"0")
        && !headers.contains_key(http::header::TRANSFER_ENCODING);
    matches!(*req.method(), http::Method::HEAD | http::Method::GET)
        && matches!(rest, "/" | "/api/hello")
        && req.uri().query().is_none()
        && bodyless
        && extract_key(headers, None).is_none()
}

/// Who is asking, part one: the till key in the request, decoded, its mint key, and its
/// signature chain verified against that mint key. A key verified before against the mint key
/// that stands now is taken from the proxy's cache of verified keys; its mint key's
/// retirement is still checked here, and its revocation, expiry and scope by the phases after.
pub async fn caller<B>(ctx: &mut Ctx<'_>, req: &Request<B>) -> Result<Caller, ProxyError> {
    caller_with(ctx, extract_key(req.headers(), req.uri().query())).await
}

/// [`caller`] for a key already taken from where the request carries it (a WebSocket's
/// subprotocols, or the key a WebSocket opened with, for each of its messages).
pub async fn caller_with(ctx: &mut Ctx<'_>, key: Option<&str>) -> Result<Caller, ProxyError> {
    let key = key.ok_or_else(|| {
        ProxyError::new(
            401,
            "no_key",
            "no till key in the request; till run puts one in the provider's API-key variable",
        )
    })?;
    if !key.starts_with("till_") {
        return Err(ProxyError::new(
            401,
            "not_till_key",
            "this proxy accepts only till keys (till_…); never send a provider key to it",
        ));
    }
    if let Some(known) = ctx.state.known_key(key) {
        let mint = ctx
            .state
            .mint_for(known.checked.token(), ctx.now)
            .await
            .map_err(|r| refused_by_mint(&mut ctx.record, &known.checked, r))?;
        if Arc::ptr_eq(&mint, &known.mint) {
            return Ok(Caller { known });
        }
    }
    let token = Token::decode(key).map_err(|e| {
        ProxyError::new(401, "malformed", format!("this till key is not valid: {e}"))
    })?;
    let mint = match ctx.state.mint_for(&token, ctx.now).await {
        Ok(mint) => mint,
        Err(r) => {
            let checked = r
                .retired
                .as_ref()
                .and_then(|m| Checked::new(token, &m.key).ok());
            return Err(match checked {
                Some(checked) => refused_by_mint(&mut ctx.record, &checked, r),
                None => r.error,
            });
        }
    };
    let checked = Checked::new(token, &mint.key).map_err(|d| denial_error(&d))?;
    Ok(Caller {
        known: ctx.state.remember_key(key, mint, checked),
    })
}

/// A key refused for its mint key. One whose retired mint key still checks its signature is
/// named in the record (a key of that till's, refused as its mint key's grace ended, is listed
/// by `till log --key`); a key no known mint key signed names nothing, its text being anyone's.
fn refused_by_mint(
    record: &mut RequestRecord,
    checked: &Checked,
    refused: super::state::MintRefused,
) -> ProxyError {
    if let Some(mint) = &refused.retired
        && mint.key.kid() == checked.token().kid()
    {
        note_key(record, &checked.verified(&mint.key));
    }
    refused.error
}

/// Records which key a request came with: its binding, and its levels' as its lineage.
fn note_key(record: &mut RequestRecord, verified: &Verified<'_>) {
    record.binding = Some(verified.binding());
    record.root = Some(verified.root_binding());
    let levels = verified.level_bindings();
    let lineage = &mut record.lineage;
    lineage.clear();
    lineage.reserve(levels.len() * 13);
    for (i, b) in levels.iter().enumerate() {
        if i > 0 {
            lineage.push(' ');
        }
        b.push_short(lineage);
    }
}

/// Who is asking, part two: the verified key, not revoked. Records which key it is.
pub fn authenticate<'c>(ctx: &mut Ctx<'_>, caller: &'c Caller) -> Result<Verified<'c>, ProxyError> {
    let verified = caller.known.checked.verified(&caller.known.mint.key);
    note_key(&mut ctx.record, &verified);
    stands(ctx, &verified)?;
    Ok(verified)
}

/// The key is not revoked, and the ledger that says so is the one at the ledger's path.
fn stands(ctx: &Ctx<'_>, verified: &Verified<'_>) -> Result<(), ProxyError> {
    match ctx.state.standing(verified, ctx.now) {
        super::state::Standing::Stands => Ok(()),
        super::state::Standing::Revoked => Err(ProxyError::new(
            401,
            "revoked",
            "this till key has been revoked; ask for a new one (till key create, or restart till run)",
        )),
        super::state::Standing::LedgerGone => Err(ProxyError::new(
            503,
            "ledger_gone",
            "the ledger this proxy opened was deleted or replaced, so it cannot see revocations made since; restart till run or till serve",
        )),
    }
}

/// What the key refuses without the body: its expiry and session, the provider, the endpoint
/// class and a model the path names. Checked before a byte of the body is read, so that a key
/// that may not ask (an expired one, one for another provider) cannot hold the bodies' shared
/// allowance ([`State::bodies`]) by announcing large bodies and sending none. [`admit`] checks
/// the whole key again with what the body says.
fn before_body(
    ctx: &Ctx<'_>,
    verified: &Verified<'_>,
    endpoint: &Endpoint,
) -> Result<(), ProxyError> {
    verified
        .check(
            &RequestFacts {
                provider: &ctx.provider.name,
                model: endpoint.path_model.as_deref(),
                endpoint: endpoint.class,
                session: ctx.state.options.session.as_deref(),
                requested_output_tokens: None,
            },
            ctx.now,
        )
        .map(drop)
        .map_err(|d| denial_error(&d))
}

/// Refuses a request with a header that could make the upstream take it as another method,
/// or leave the usage counts out of its answer ([`METHOD_OVERRIDES`]): on an upgrade too.
pub(super) fn no_method_override(headers: &HeaderMap) -> Result<(), ProxyError> {
    // One pass over the names the request has: a look-up per override would hash each
    // override's name, on every request.
    match headers.keys().find(|name| METHOD_OVERRIDES.contains(name)) {
        None => Ok(()),
        Some(h) => Err(ProxyError::new(
            400,
            "method_override",
            format!(
                "till refuses `{h}`: the request's method, and the whole answer, are what till checks and meters"
            ),
        )),
    }
}

/// Refuses a body on a method that has none (GET, HEAD, DELETE, OPTIONS): no provider API
/// takes one there, and a server that does not read one (cpp-httplib before 0.18.6, which
/// llama.cpp's server is built on, skipped a GET's body whatever its length) reads the bytes as
/// the next request on the connection: a request till never checked, whose answer would come
/// back as the answer to the next one. Refused before the body is read, so the connection
/// closes with the refusal.
fn no_body_where_none_belongs(parts: &http::request::Parts) -> Result<(), ProxyError> {
    use http::Method;
    if !matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
    ) {
        return Ok(());
    }
    let headers = &parts.headers;
    let empty = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .all(|v| v.as_bytes().iter().all(|&b| b == b'0'));
    if empty {
        return Ok(());
    }
    Err(ProxyError::new(
        400,
        "body",
        format!(
            "a {} request has no body: till refuses one, since a server that does not read it would take it for another request",
            parts.method
        ),
    ))
}

/// What is being asked: one canonical request, read once. Refuses what could make the
/// upstream do something other than what till checks (method overrides, compressed bodies,
/// system query parameters), what the key refuses without the body ([`before_body`]), and
/// bodies it cannot read.
pub async fn inspect<B: super::RequestBody>(
    ctx: &mut Ctx<'_>,
    verified: &Verified<'_>,
    req: Request<B>,
) -> Result<Asked, ProxyError> {
    let (parts, body) = req.into_parts();
    let endpoint = route::classify(ctx.provider.api, &parts.method, ctx.rest);
    if let Err(e) = before_body(ctx, verified, &endpoint) {
        // The row names the model the path asked for (Gemini's), as one a body names is.
        ctx.record.model = endpoint
            .path_model
            .clone()
            .filter(|m| super::inspect::model_name_refusal(m).is_none());
        return Err(e);
    }
    no_method_override(&parts.headers)?;
    if parts
        .headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|enc| !enc.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(ProxyError::new(
            400,
            "encoding",
            "till refuses compressed request bodies (Content-Encoding); send the body uncompressed so till can check it",
        ));
    }
    no_body_where_none_belongs(&parts)?;
    let query = forward_query(parts.uri.query())?;
    query_fits(&query, &endpoint)?;
    let options = &ctx.state.options;
    let (body, hold) = read_body(
        body,
        options.max_body_bytes,
        options.body_timeout,
        ctx.state.bodies.hold(verified.root_binding()),
    )
    .await?;
    // A body may take up to `body_timeout` to come: the key is checked again once it has, so a
    // request staged before a revocation, the key's expiry or its mint key's retirement does
    // not pass after it ([`admit`] checks the caveats at this time). A body that came within
    // a few milliseconds of its request's head, in the same second, is no staging (most are:
    // ≈ 800 instructions saved); a slower one could have waited for a revocation to return.
    let now = crate::time::now_unix();
    if now != ctx.now || ctx.record.started.elapsed() > BODY_RECHECK_AFTER {
        ctx.now = now;
        ctx.state.mint_for(verified.token(), ctx.now).await?;
        stands(ctx, verified)?;
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let inspected = body_inspect::inspect_received(
        endpoint.op,
        endpoint.path_model.as_deref(),
        content_type,
        &body,
        ctx.state.tree_room().saturating_sub(body.bytes().len()),
    )?;
    // The tree the checks read counts with the body against the room for bodies until the
    // request has gone upstream: a body of many small values takes twenty and more times its
    // length so. (Its bound leaves room for the body: a request alone never passes its key's
    // share, which would be a 503 for good.)
    let mut held = hold.keep(ctx.state);
    if let Err(why) = held.grow(inspected.size as u64) {
        return Err(no_room(held.pool(), why));
    }
    let body = body.into_bytes();
    // The path's model when it names one: that is the one the upstream runs (a body's `model`
    // beside it was held to the same name by the inspection). A stored object's run has none
    // till can see, whatever its body says.
    let model: Option<String> = endpoint.path_model.clone().or_else(|| {
        endpoint
            .op
            .body_model_runs()
            .then(|| inspected.model.clone())
            .flatten()
    });
    ctx.record.model = model.clone();
    ctx.record.endpoint = Some(endpoint.class);
    ctx.record.usage_expected = matches!(
        endpoint.op,
        route::Op::OpenaiChat
            | route::Op::OpenaiCompletions
            | route::Op::OpenaiResponses
            | route::Op::OpenaiEmbeddings
            | route::Op::AnthropicMessages
            | route::Op::GeminiGenerate
    );
    let sse = inspected.stream || endpoint.op.path_streams(ctx.rest);
    Ok(Asked {
        parts,
        query,
        body,
        endpoint,
        inspected,
        model,
        sse,
        held: Some(held),
    })
}

/// Whether the key may ask this, and what it may cost: its caveats, then only what till can
/// bound for a key with bounds, then the output ceiling, the key's rates and its budgets
/// (reserved across every till process sharing the key).
pub async fn admit(
    ctx: &mut Ctx<'_>,
    verified: &Verified<'_>,
    asked: &Asked,
) -> Result<Admission, ProxyError> {
    let (state, provider) = (ctx.state, ctx.provider);
    let api = provider.api;
    let (endpoint, inspected, model) = (&asked.endpoint, &asked.inspected, &asked.model);
    let grant = verified
        .check(
            &RequestFacts {
                provider: &provider.name,
                model: model.as_deref(),
                endpoint: endpoint.class,
                session: state.options.session.as_deref(),
                requested_output_tokens: inspected.ceiling,
            },
            ctx.now,
        )
        .map_err(|d| denial_error(&d))?;

    // Only what till can bound goes to a key with bounds.
    if model.is_none()
        && endpoint.class == EndpointClass::Inference
        && !verified.allows_every_model(&provider.name)
    {
        return Err(ProxyError::new(
            403,
            "model",
            format!(
                "till cannot see which model this request uses, so only a key for every {p} model may send it; widen it with `--scope {p}` (on `till run`, or a new key from `till key create`)",
                p = provider.name
            ),
        ));
    }
    // A tool that runs a model of its own (Anthropic's advisor, the Responses API's image
    // generation, a router's model-calling tools) has the provider run and bill that model
    // beside the request's: a model it names is checked against the scope as the request's
    // is, and one it leaves to the provider is for a key for every model.
    if let Some(json) = &inspected.json {
        let tool_models = body_inspect::tool_models(api, json).map_err(|why| {
            ProxyError::new(400, "bad_request", format!("this request has {why}"))
        })?;
        for tool_model in &tool_models {
            match *tool_model {
                ToolModel::Named(m) => {
                    let facts = RequestFacts {
                        provider: &provider.name,
                        model: Some(m),
                        endpoint: endpoint.class,
                        session: state.options.session.as_deref(),
                        requested_output_tokens: inspected.ceiling,
                    };
                    verified.check(&facts, ctx.now).map_err(|d| {
                        ProxyError::new(
                            d.status(),
                            d.kind(),
                            format!("this request names another model (in a tool, or a nested `response`): {d}"),
                        )
                    })?;
                }
                ToolModel::Unnamed(ref tool) if !verified.allows_every_model(&provider.name) => {
                    return Err(ProxyError::new(
                        403,
                        "model",
                        format!(
                            "{tool} (in this request) runs a model it does not name (the provider's choice), so only a key for every {p} model may send it; name the model in the tool, or widen the key with `--scope {p}` (on `till run`, or a new key from `till key create`)",
                            p = provider.name
                        ),
                    ));
                }
                ToolModel::Unnamed(_) => {}
            }
        }
        // A tool that runs a model of its own answers with that model's output, under a
        // ceiling of the tool's (Anthropic's advisor takes `max_tokens`): not the key's cap.
        if grant.max_output_tokens.is_some()
            && let Some(first) = tool_models.first()
        {
            let what = match first {
                ToolModel::Named(m) => format!("a tool or nested `response` that runs {m}"),
                ToolModel::Unnamed(tool) => tool.to_string(),
            };
            return Err(ProxyError::new(
                403,
                "max_output_tokens",
                format!(
                    "{what} (in this request) produces output of its own, which the key's output cap does not bound; a key with an output cap may not send it"
                ),
            ));
        }
    }
    // Fallback models (OpenRouter's `models`, LiteLLM's and Anthropic's `fallbacks`), a body
    // merged over this one (`extra_body`) or a stored preset (OpenRouter's, as a field or in
    // the model's name) let the provider run, and bill, a model other than the one checked,
    // under a ceiling of its own: only a key for every model, one that counts no tokens and
    // has no output cap, may send them.
    let other_models = inspected
        .json
        .as_ref()
        .and_then(body_inspect::other_models_field)
        .or_else(|| {
            (!provider.openai_itself)
                .then(|| {
                    inspected
                        .json
                        .as_ref()
                        .and_then(body_inspect::gateway_metadata)
                })
                .flatten()
        })
        .map(|field| format!("sets `{field}`"))
        .or_else(|| {
            inspected
                .json
                .as_ref()
                .and_then(body_inspect::plugin_running_models)
                .map(|plugin| format!("asks for {plugin}"))
        })
        .or_else(|| {
            model
                .as_deref()
                .filter(|m| body_inspect::names_a_preset(m))
                .map(|_| "names a preset in `model` (`@preset/…`)".to_string())
        });
    if let Some(what) = other_models
        && (!verified.allows_every_model(&provider.name)
            || grant.counts_tokens()
            || grant.max_output_tokens.is_some())
    {
        return Err(ProxyError::new(
            403,
            "model",
            format!(
                "this request {what}, with which a router runs a model other than the request's (with a ceiling of its own), one till did not check or price; only a key for every {p} model, without a budget, token rate or output cap, may send it",
                p = provider.name
            ),
        ));
    }
    // Several passes of reasoning, each under the ceiling (a key that counts tokens is
    // refused it below, as uncounted work).
    if grant.max_output_tokens.is_some()
        && let Some(json) = &inspected.json
        && let Some(what) = body_inspect::multi_pass_reasoning(json)
    {
        return Err(ProxyError::new(
            403,
            "max_output_tokens",
            format!(
                "this request sets {what}, whose passes each produce output under the ceiling, which the key's output cap does not bound; a key with an output cap may not send it"
            ),
        ));
    }
    // A gateway's own settings: the account, host or headers of the call it makes.
    if let Some(json) = &inspected.json
        && let Some(field) = body_inspect::first_set(body_inspect::GATEWAY_SETTINGS, json)
    {
        return Err(ProxyError::new(
            400,
            "gateway_setting",
            format!(
                "this request sets `{field}`, with which a gateway in front of the provider chooses the account, host or headers of its call; no provider's API takes it, and till sends only what it checked"
            ),
        ));
    }
    // Retries a gateway makes on its own: each attempt is billed, the answer metered once.
    if let Some(json) = &inspected.json
        && let Some(field) = body_inspect::first_set(body_inspect::RESENDS, json)
        && (grant.counts_tokens() || grant.max_output_tokens.is_some() || grant.counts_requests())
    {
        return Err(ProxyError::new(
            403,
            "resend",
            format!(
                "this request sets `{field}`, with which a gateway sends it to the provider again, each attempt billed and only the answer metered or counted; a key with a budget, a token or request rate, an output cap or a request ceiling may not send it"
            ),
        ));
    }
    let bounded = grant.counts_tokens() || grant.max_output_tokens.is_some();
    // Whether the key could make every request of the provider: what till cannot check or
    // bound (a batch, a path it does not know) is for such a key only. A request ceiling or
    // rate bounds nothing there either: a batch of a thousand requests would be one request.
    let unbounded_every_model =
        || !bounded && !grant.counts_requests() && verified.allows_every_model(&provider.name);
    // Subagents: one request that runs several agents, each its own model calls (a key with
    // a budget, token rate or output cap is refused them above, or below as uncounted work).
    if grant.counts_requests()
        && let Some(json) = &inspected.json
        && let Some(what) = body_inspect::subagents(json)
    {
        return Err(ProxyError::new(
            403,
            "subagents",
            format!(
                "this request sets {what}, with which one request runs several agents, each making model calls of its own; a key with a request ceiling or request rate would count them as one, so it may not send it"
            ),
        ));
    }
    // A batch carries requests till does not read one by one (their models, ceilings and
    // input) and is billed later, after it runs: making one is for a key that could make every
    // request in it.
    // A method that may make one: not reading (GET, HEAD), deleting, or cancelling one
    // (`…/batches/ID/cancel`, Gemini's `batches/ID:cancel`), which only stops what it costs.
    if endpoint.class == EndpointClass::Batches
        && !matches!(
            asked.parts.method,
            http::Method::GET | http::Method::HEAD | http::Method::DELETE
        )
        && !cancels_a_batch(ctx.rest)
        && !unbounded_every_model()
    {
        return Err(ProxyError::new(
            403,
            "batches",
            format!(
                "till does not check the requests inside a batch or bound what it costs, so only a key for every {p} model, without a budget, a token or request rate, an output cap or a request ceiling, may make one",
                p = provider.name
            ),
        ));
    }
    // What till does not recognise (the `admin` class) may run a model and bill for it: a
    // fine-tuning job, a video, a tuned model's `generateContent`, an evaluation run, or an
    // ephemeral Realtime key that reaches the provider without till. Like a batch, a write
    // there is for a key that could make every request; reading (GET, HEAD) stays open.
    if endpoint.class == EndpointClass::Admin
        && !matches!(asked.parts.method, http::Method::GET | http::Method::HEAD)
        && !unbounded_every_model()
    {
        return Err(ProxyError::new(
            403,
            "admin",
            format!(
                "till does not know what this {method} runs or costs, so only a key for every {p} model, without a budget, a token or request rate, an output cap or a request ceiling, may send it; reading (GET) is open to this key",
                method = asked.parts.method,
                p = provider.name
            ),
        ));
    }
    if endpoint.op.unmetered() && bounded {
        return Err(ProxyError::new(
            403,
            "unmetered",
            "till cannot bound what this endpoint costs (it is not billed in tokens), so a key with a budget, a token rate or an output cap may not call it",
        ));
    }
    if bounded
        && let Some(json) = &inspected.json
        && let Some(field) = body_inspect::foreign_limit(api, endpoint.op, json)
    {
        return Err(ProxyError::new(
            403,
            "foreign_limit",
            format!(
                "this request sets `{field}`, which this endpoint does not read but a compatible server may read as an output ceiling, a count of answers or the tokens an image becomes; till bounds the output by the endpoint's own fields, so a key with a budget, a token rate or an output cap may not send it"
            ),
        ));
    }
    if grant.counts_tokens()
        && let Some(json) = &inspected.json
        && let Some(what) = body_inspect::uncounted_input(api, endpoint.op, json)
    {
        return Err(ProxyError::new(
            403,
            "uncounted",
            format!(
                "this request uses {what}, which makes the provider read or bill more than the request shows; till cannot bound its cost, so a key with a budget or a token rate may not send it"
            ),
        ));
    }
    if grant.counts_tokens()
        && let Some(what) = model.as_deref().and_then(body_inspect::billed_per_call)
    {
        return Err(ProxyError::new(
            403,
            "uncounted",
            format!(
                "this request is for {what}; till prices tokens only and cannot bound its cost, so a key with a budget or a token rate may not send it"
            ),
        ));
    }
    // A Gemini stream of several candidates says `finishReason` for each as it ends, and till
    // reads the first as the answer's end: one whose agent hangs up then would be charged
    // what the first candidate had used while the others went on.
    if grant.counts_tokens()
        && api == crate::providers::ApiFamily::Gemini
        && asked.sse
        && inspected.choices > 1
    {
        return Err(ProxyError::new(
            403,
            "uncounted",
            "till cannot tell where a stream of several candidates (`candidateCount` above 1) ends, so a key with a budget or a token rate may not ask for one; ask without streaming, or for one candidate",
        ));
    }
    // A bound of the prompt's tokens: one a byte, and what images, PDFs and provider-defined
    // tools add (looked for only where tokens are counted).
    let hidden = match &inspected.json {
        Some(json) if grant.counts_tokens() => {
            api.wire().hidden_input(endpoint.op, model.as_deref(), json)
        }
        _ => 0,
    };
    let prompt_tokens = (asked.body.len() as u64).saturating_add(hidden);
    if grant.counts_tokens()
        && let Some(why) = api
            .wire()
            .uncounted_header(&asked.parts.headers, prompt_tokens)
    {
        return Err(ProxyError::new(403, "uncounted", why));
    }

    // The output ceiling: the request's own, else the key's cap, else (for keys that count
    // tokens) what the budget can pay for, up to DEFAULT_OUTPUT_RESERVE.
    let choices = inspected.choices;
    let prompt = PromptBound {
        tokens: prompt_tokens,
        // The body is walked only for a budget key whose model bills one-hour writes more.
        long_cache_writes: grant.has_budget()
            && model.as_deref().is_some_and(|m| {
                state
                    .prices()
                    .lookup(&provider.name, m)
                    .is_some_and(|p| p.price.has_long_cache_rate())
            })
            && inspected
                .json
                .as_ref()
                .is_some_and(body_inspect::asks_long_cache_writes),
    };
    let mut insert: Option<u64> = None;
    let ceiling = match inspected.ceiling {
        Some(c) if c > DEFAULT_OUTPUT_RESERVE && grant.has_budget() => {
            let afford =
                affordable_output(state, &grant, provider, model.as_deref(), prompt, choices)
                    .await
                    .unwrap_or(0);
            match lowered_ceiling(provider, endpoint.op, inspected, c, afford) {
                Some(lower) => {
                    insert = Some(lower);
                    lower
                }
                None => c,
            }
        }
        Some(c) => c,
        None if endpoint.op == route::Op::Other => 0,
        None => {
            let mut c = grant.cap_output_tokens.unwrap_or(DEFAULT_OUTPUT_RESERVE);
            if grant.has_budget() {
                c = c.min(
                    affordable_output(state, &grant, provider, model.as_deref(), prompt, choices)
                        .await?,
                );
            }
            // Within the key's tokens per minute, so the request can ever be admitted.
            if let Some(tpm) = grant.tpm() {
                c = c.min((tpm.saturating_sub(prompt_tokens) / choices).max(1));
            }
            // A key narrowed to no output at all (made offline: till refuses to make one): a
            // ceiling of 0 written into the request would read as none to Gemini.
            if c == 0 {
                return Err(ProxyError::new(
                    403,
                    "max_output_tokens",
                    "this key allows no output tokens, so it can make no request that answers",
                ));
            }
            if grant.counts_tokens() || grant.cap_output_tokens.is_some() {
                insert = Some(c);
            }
            c
        }
    };
    // A compatible server reads `max_tokens`, and some ignore `max_completion_tokens`
    // (DeepSeek then writes up to its own default, thousands of tokens): a bounded key's
    // ceiling named only there goes into `max_tokens` too, the same number.
    if insert.is_none()
        && !provider.openai_itself
        && endpoint.op == route::Op::OpenaiChat
        && (grant.counts_tokens() || grant.max_output_tokens.is_some())
        && inspected.json.as_ref().is_some_and(|json| {
            json.get("max_tokens")
                .is_none_or(serde_json::Value::is_null)
                && json
                    .get("max_completion_tokens")
                    .is_some_and(|v| !v.is_null())
        })
    {
        insert = Some(ceiling);
    }
    // A prediction's rejected tokens are billed as output on top of the ceiling; they are
    // fewer than its bytes, which are fewer than the body's.
    let predicted = match &inspected.json {
        Some(json) if grant.counts_tokens() && body_inspect::predicts_output(json) => {
            asked.body.len() as u64
        }
        _ => 0,
    };
    let output_total = ceiling.saturating_mul(choices).saturating_add(predicted);
    state
        .admit(&grant, prompt_tokens.saturating_add(output_total))
        .await?;
    ctx.record.reservation = state
        .reserve(
            &grant,
            &provider.name,
            model.as_deref(),
            prompt,
            output_total,
            &ctx.record,
        )
        .await?;
    Ok(Admission {
        insert,
        counted: grant.counts_tokens(),
    })
}

/// The body that goes upstream: the parse till checked, with its edits (the ceiling till
/// chose, the family's usage request). Bodies till does not read go as they came.
pub fn rewrite(
    ctx: &Ctx<'_>,
    asked: &mut Asked,
    admission: &Admission,
) -> Result<Outgoing, ProxyError> {
    let provider = ctx.provider;
    let wire = provider.api.wire();
    let Some(mut map) = asked.inspected.json.take() else {
        return Ok(Outgoing {
            body: std::mem::take(&mut asked.body),
            json: false,
            strip_usage: false,
            parsed: None,
        });
    };
    let op = asked.endpoint.op;
    let inspected = &asked.inspected;
    let strip_usage = wire.request_usage(op, inspected.stream, inspected.include_usage, &mut map);
    if admission.insert.is_none() && !strip_usage && inspected.verbatim {
        // Nothing to change, and the bytes as sent read as this parse to any JSON parser:
        // forward them rather than writing the same object out again.
        return Ok(Outgoing {
            body: std::mem::take(&mut asked.body),
            json: true,
            strip_usage,
            parsed: Some(map),
        });
    }
    if inspected.skimmed {
        // The parse the checks ran on left long text out; edit the whole parse instead.
        // The skim goes back where it was, to be freed after the response ([`respond`]).
        // The whole parse takes what the skim does and the strings it left out.
        let whole = (inspected.size as u64).saturating_add(inspected.left_out as u64);
        if let Some(held) = &mut asked.held
            && let Err(why) = held.grow(whole)
        {
            return Err(no_room(held.pool(), why));
        }
        let skim = std::mem::replace(&mut map, body_inspect::parse_whole(&asked.body)?);
        wire.request_usage(op, inspected.stream, inspected.include_usage, &mut map);
        asked.inspected.json = Some(skim);
    }
    if let Some(c) = admission.insert {
        body_inspect::insert_ceiling(op, provider.openai_itself, &mut map, c);
    }
    let body = Bytes::from(serde_json::to_vec(&map).map_err(|e| {
        ProxyError::new(
            500,
            "internal",
            format!("till could not write the request body: {e}"),
        )
    })?);
    // The prompt was reserved (and counted in a token rate) at a token a byte of the body as
    // sent: the body the provider reads may not hold many more bytes than that.
    if admission.counted && body.len() > asked.body.len().saturating_add(REWRITE_GROWTH) {
        return Err(ProxyError::new(
            400,
            "bad_request",
            format!(
                "this body grows from {} to {} bytes when till writes it out for the provider (numbers in exponent form, such as 1e15, are written in full), past the prompt bound till reserved for it; write the numbers out in full",
                asked.body.len(),
                body.len()
            ),
        ));
    }
    Ok(Outgoing {
        body,
        json: true,
        strip_usage,
        parsed: Some(map),
    })
}

/// Sends the request upstream with the root key in place of the till key: the canonical
/// path and query, the client's headers without hop-by-hop and credential ones. Returns the
/// answer and the root key it went with, which [`respond`] takes out of the answer.
pub async fn forward(
    ctx: &Ctx<'_>,
    asked: &Asked,
    outgoing: &mut Outgoing,
) -> Result<(Response<Upstream>, Arc<SecretString>), ProxyError> {
    let (state, provider) = (ctx.state, ctx.provider);
    let parts = &asked.parts;
    let root = state.root_key(&provider.name).await?;
    let path = crate::providers::endpoint::upstream_path(provider.api, ctx.rest);
    // The path and query after the provider's base URL (one piece without a query).
    let tail: std::borrow::Cow<str> = if asked.query.is_empty() {
        path
    } else {
        format!("{path}{}", asked.query).into()
    };
    // The client's headers less those of its hop, its credentials and what till sets itself,
    // then what till sets: read from the request's own map, not copied into another.
    let connection = connection_names_others(&parts.headers);
    let json = outgoing.json;
    let kept = |name: &HeaderName| {
        let n = name.as_str();
        !(stays_behind(&parts.headers, name, connection)
            || n == "host"
            || n == "content-length"
            || n == "accept-encoding"
            || n == "content-encoding"
            || (json && n == "content-type"))
    };
    let mut added: smallvec::SmallVec<[(HeaderName, http::HeaderValue); 6]> =
        smallvec::SmallVec::new();
    if json {
        added.push((
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        ));
    }
    added.push(crate::upstream::auth_header(provider, &root));
    added.extend(provider.account_headers.iter().cloned());
    added.push((
        http::header::ACCEPT_ENCODING,
        http::HeaderValue::from_static("identity"),
    ));
    for (name, value) in provider.api.wire().default_headers() {
        let name = HeaderName::from_static(name);
        let sent = parts.headers.contains_key(&name) && kept(&name);
        if !sent && !added.iter().any(|(n, _)| *n == name) {
            added.push((name, http::HeaderValue::from_static(value)));
        }
    }
    // Filtered once: the head is written from this list (for hyper's connections, a map).
    let forwarded: smallvec::SmallVec<[(&HeaderName, &http::HeaderValue); 24]> = parts
        .headers
        .iter()
        .filter(|(name, _)| kept(name))
        .chain(added.iter().map(|(name, value)| (name, value)))
        .collect();
    let headers = || forwarded.iter().copied();
    let sent = crate::upstream::conns::send(
        parts.method.clone(),
        &provider.base_url,
        &tail,
        headers,
        std::mem::take(&mut outgoing.body),
        CONNECT_TIMEOUT,
    );
    match tokio::time::timeout(state.options.upstream_timeout, sent).await {
        Err(_) => Err(ProxyError::new(
            504,
            "upstream_timeout",
            format!(
                "{} did not answer within {} s",
                provider.name,
                state.options.upstream_timeout.as_secs()
            ),
        )),
        Ok(Err(crate::upstream::conns::SendError::Url)) => Err(ProxyError::new(
            502,
            "upstream",
            format!(
                "till cannot build a URL for {} ({})",
                provider.name,
                provider.shown_origin()
            ),
        )),
        // The request went out whole and no answer came: the provider may have run it.
        Ok(Err(crate::upstream::conns::SendError::Lost)) => Err(ProxyError::new(
            502,
            "upstream_lost",
            format!(
                "till lost the connection to {} ({}) after sending the request, before its answer",
                provider.name,
                provider.shown_origin()
            ),
        )),
        Ok(Err(e)) => {
            let what = if e == crate::upstream::conns::SendError::Connect {
                "could not connect to"
            } else {
                "lost the connection to"
            };
            Err(ProxyError::new(
                502,
                "upstream",
                format!(
                    "till {what} {} ({})",
                    provider.name,
                    provider.shown_origin()
                ),
            ))
        }
        Ok(Ok(r)) => Ok((r, root)),
    }
}

/// An answer in a coding other than `identity`, which till did not ask for (it sends
/// `Accept-Encoding: identity`) and cannot read: neither its usage nor whether it quotes the
/// root key. Refused whole (502) rather than passed on unread.
/// Every line of the header and every coding listed in each: `Content-Encoding: identity` and
/// `Content-Encoding: gzip` on two lines are gzip to a client that reads the last, and a
/// `Transfer-Encoding` of `gzip, chunked` leaves gzip once the chunks are taken off.
pub fn compressed(resp: &Response<Upstream>) -> Option<ProxyError> {
    let (header, coding) = odd_coding(resp.headers()).or_else(|| odd_charset(resp.headers()))?;
    Some(ProxyError::new(
        502,
        "upstream_encoding",
        format!(
            "the provider answered in a form till did not ask for and cannot read ({header}: {coding}; till asks for uncompressed UTF-8); till passes on only answers it can read"
        ),
    ))
}

/// How an odd coding or charset is named in till's answer, its alert and the ledger: one of
/// the names below, else [`UNKNOWN`]. Never the upstream's own text, which an upstream that
/// quotes its credential would fill with the root key (a refusal is not scrubbed).
const KNOWN_CODINGS: &[&str] = &[
    "gzip",
    "x-gzip",
    "deflate",
    "br",
    "zstd",
    "compress",
    "x-compress",
    "dcb",
    "dcz",
    "aes128gcm",
    "exi",
    "pack200-gzip",
    "chunked",
    "identity",
];
const KNOWN_CHARSETS: &[&str] = &[
    "utf-16",
    "utf-16le",
    "utf-16be",
    "utf-32",
    "utf-32le",
    "utf-32be",
    "utf-7",
    "iso-8859-1",
    "latin1",
    "windows-1252",
    "shift_jis",
    "euc-jp",
    "euc-kr",
    "gb2312",
    "gbk",
    "gb18030",
    "big5",
    "koi8-r",
];
const UNKNOWN: &str = "a value till does not know";

/// `value` as one of `known` (matched without regard to case), or [`UNKNOWN`].
fn known_name(value: &str, known: &[&'static str]) -> &'static str {
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(value))
        .copied()
        .unwrap_or(UNKNOWN)
}

/// The first coding of an answer other than `identity` (`Content-Encoding`) or `chunked`
/// (`Transfer-Encoding`), over every line and list element (a value that is not text counts),
/// named as [`known_name`] names it.
pub fn odd_coding(headers: &HeaderMap) -> Option<(&'static str, &'static str)> {
    for (name, plain) in [
        (header::CONTENT_ENCODING, "identity"),
        (header::TRANSFER_ENCODING, "chunked"),
    ] {
        for value in headers.get_all(&name) {
            let Ok(text) = value.to_str() else {
                return Some((name_of(&name), UNKNOWN));
            };
            if let Some(c) = text
                .split(',')
                .map(str::trim)
                .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case(plain))
            {
                return Some((name_of(&name), known_name(c, KNOWN_CODINGS)));
            }
        }
    }
    None
}

/// Whether an answer is text by its `Content-Type` (JSON, `+json`, JSON lines, `text/…`), or
/// says nothing of its type: what the scrub cuts at a NUL byte, which UTF-8 JSON and events
/// never hold and UTF-16 or UTF-32 text always does.
pub(super) fn is_text(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return true;
    };
    let essence = value.split(';').next().unwrap_or("").trim().as_bytes();
    // In any letter case, without a copy: this is every answer's path.
    let starts = |p: &[u8]| {
        essence
            .get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
    };
    let ends = |p: &[u8]| {
        essence
            .len()
            .checked_sub(p.len())
            .is_some_and(|at| essence[at..].eq_ignore_ascii_case(p))
    };
    let holds = |p: &[u8]| essence.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p));
    essence.is_empty()
        || starts(b"text/")
        || ends(b"/json")
        || ends(b"+json")
        || holds(b"ndjson")
        || holds(b"jsonl")
        || essence.eq_ignore_ascii_case(b"application/x-json-stream")
}

/// A `charset` of the answer's `Content-Type` other than UTF-8 (or its subset ASCII): the
/// root key in UTF-16 is not the bytes the scrub looks for. Named as [`known_name`] names it.
pub fn odd_charset(headers: &HeaderMap) -> Option<(&'static str, &'static str)> {
    for value in headers.get_all(header::CONTENT_TYPE) {
        let Ok(text) = value.to_str() else {
            return Some(("Content-Type charset", UNKNOWN));
        };
        for param in text.split(';').skip(1) {
            let Some((name, v)) = param.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            if name.trim().eq_ignore_ascii_case("charset")
                && !["utf-8", "utf8", "us-ascii", "ascii"]
                    .iter()
                    .any(|c| v.eq_ignore_ascii_case(c))
            {
                return Some(("Content-Type charset", known_name(v, KNOWN_CHARSETS)));
            }
        }
    }
    None
}

fn name_of(name: &HeaderName) -> &'static str {
    if name == header::CONTENT_ENCODING {
        "Content-Encoding"
    } else {
        "Transfer-Encoding"
    }
}

/// Streams the answer back as it arrives, metered on the side and with `root` taken out of it
/// ([`super::scrub`]); the record is finished when the body ends.
pub fn respond(
    ctx: &mut Ctx<'_>,
    asked: &mut Asked,
    outgoing: &mut Outgoing,
    resp: Response<Upstream>,
    root: Arc<SecretString>,
) -> Response<ProxyBody> {
    let state = ctx.state;
    let api = ctx.provider.api;
    let strip_usage = outgoing.strip_usage;
    let (mut parts, upstream) = resp.into_parts();
    ctx.record.status = parts.status.as_u16();
    ctx.record.ttfb = Some(ctx.record.started.elapsed());
    // A stream of events is what the answer's type says, else what the request asked for. A
    // JSON answer to a request that streams by its path alone (Gemini's `streamGenerateContent`
    // without `alt=sse`: one array of answers) is metered as JSON. One to a body's `"stream":
    // true` is still read as events: some OpenAI-compatible servers label their events JSON.
    // An error answer is events only when it says so: providers answer a streamed request
    // they refuse (429, 503, Anthropic's 529) with the error's JSON, which read as events
    // would never end and be charged the reservation where it costs nothing.
    let media = |ct: &[u8], name: &str| {
        ct.get(..name.len())
            .is_some_and(|m| m.eq_ignore_ascii_case(name.as_bytes()))
    };
    let is_sse = match parts.headers.get(http::header::CONTENT_TYPE) {
        Some(ct) if media(ct.as_bytes(), "text/event-stream") => true,
        _ if !parts.status.is_success() => false,
        Some(ct) if media(ct.as_bytes(), "application/json") && !asked.inspected.stream => false,
        _ => asked.sse,
    };
    // The upstream's headers, less those that describe its hop (and the length, when till
    // takes an event out of the body).
    // Only those present are removed (a removal hashes; an answer has one or two of them).
    // Those its `Connection` header names go too.
    if connection_names_others(&parts.headers) {
        let named: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|name| !HOP_BY_HOP.contains(name) && named_by_connection(&parts.headers, name))
            .cloned()
            .collect();
        for name in named {
            parts.headers.remove(name);
        }
    }
    let mut present = 0u16;
    for name in parts.headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & 1 << i != 0 {
            parts.headers.remove(name);
        }
    }
    if strip_usage {
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    super::scrub::headers(&mut parts.headers, &root);
    let meter = Meter::new(api, is_sse, strip_usage && is_sse);
    let state2 = state.clone();
    let rec = ctx.record.take();
    let settles = rec.reservation.is_some();
    let stream = body::MeteredStream::new(
        upstream,
        meter,
        api,
        is_sse,
        state.options.upstream_timeout,
        {
            // Both parses of the body (the checks' skim, and the whole parse an edit needed)
            // are freed with the record, after the response is out; large ones now, beside
            // the answer, so that what the room for bodies gives back here is given back
            // (an answer may stream for minutes, and its request's room with it).
            let trees = (outgoing.parsed.take(), asked.inspected.json.take());
            let weight = asked
                .inspected
                .size
                .saturating_mul(2)
                .saturating_add(asked.inspected.left_out);
            let parsed = if weight > TREES_KEPT_TO_THE_END {
                free_beside(trees);
                None
            } else {
                Some(trees)
            };
            drop(asked.held.take());
            move |finished| {
                rec.finish(&state2, Some(finished));
                drop(parsed);
            }
        },
    );
    let stream = if settles {
        stream.settle_before_end()
    } else {
        stream
    };
    let stream = match super::scrub::Scrub::new(root, is_text(&parts.headers)) {
        Some(scrub) => stream.scrubbed(scrub),
        None => stream,
    };
    let mut out = Response::new(ProxyBody::Stream(Box::new(stream)));
    *out.status_mut() = parts.status;
    *out.headers_mut() = parts.headers;
    out
}

/// The estimated size of a request's parsed trees up to which they are kept until its answer
/// has ended (freed after the answer's last bytes, off its path); larger ones are freed as the
/// answer begins. Either way they no longer count against the room for bodies once the request
/// has gone upstream: what stays uncounted is at most this much a request in flight.
const TREES_KEPT_TO_THE_END: usize = 64 << 10;

/// Frees `trees` as a task of its own on this runtime (at once without one): a large tree
/// takes a while to free, which the answer's head need not wait for.
fn free_beside<T: Send + 'static>(trees: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move { drop(trees) });
        }
        Err(_) => drop(trees),
    }
}

/// Reads a request body of at most `max` bytes within `limit` (a client that trickles its body
/// must not hold a connection and its slot for as long as it likes).
///
/// A body that says it is larger than `max` (its `Content-Length`) is refused before any of it
/// is read; one cut off or broken in its framing is refused whole. Its bytes are counted in
/// `hold` as they arrive: against the bodies' shared room, and against the share of it the
/// key's lineage may hold ([`BODIES_PER_LINEAGE`](super::state::BODIES_PER_LINEAGE)).
async fn read_body<'b, B: super::RequestBody>(
    mut body: B,
    max: u64,
    limit: Duration,
    mut hold: super::state::BodyHold<'b>,
) -> Result<(body_inspect::Received, super::state::BodyHold<'b>), ProxyError> {
    let too_large = || {
        ProxyError::new(
            413,
            "too_large",
            format!(
                "the request body is larger than the proxy's limit of {max} bytes ([proxy] max_body_bytes in config.toml)"
            ),
        )
    };
    let bodies = hold.pool();
    let busy = |why| no_room(bodies, why);
    let announced = body.size_hint().lower();
    if announced > max {
        return Err(too_large());
    }
    // The body's bytes count against what the proxy holds of all bodies at once, and against
    // the key's share of it, as they arrive, not as announced: a client that announces a large
    // body and sends none of it (or a byte a minute) holds no room another client's body needs.
    let read = async {
        // Each piece is copied and checked as it arrives (`Receiving`), while the next one is
        // still on its way.
        let mut received = body_inspect::Receiving::new(announced as usize);
        loop {
            // A body read whole comes as one frame once its last byte has: what it holds
            // before that counts each time the read waits for more.
            let next = std::future::poll_fn(|cx| {
                let polled = std::pin::Pin::new(&mut body).poll_frame(cx);
                let held = received.received() as u64 + body.held();
                if polled.is_pending()
                    && let Err(why) = hold.grow_to(held)
                {
                    return std::task::Poll::Ready(Err(busy(why)));
                }
                polled.map(Ok)
            })
            .await?;
            let Some(frame) = next else { break };
            // A client that stops mid-body or breaks its framing: nothing is forwarded.
            let frame = frame.map_err(|e| {
                ProxyError::new(
                    400,
                    "bad_body",
                    format!("the request body could not be read: {e}"),
                )
            })?;
            // Trailers: till forwards none.
            if let Ok(piece) = frame.into_data() {
                let total = (received.received() + piece.len()) as u64;
                if total > max {
                    return Err(too_large());
                }
                hold.grow_to(total).map_err(busy)?;
                received.push(piece);
            }
        }
        Ok(received.finish())
    };
    match tokio::time::timeout(limit, read).await {
        Ok(read) => read.map(|received| (received, hold)),
        Err(_) => Err(ProxyError::new(
            408,
            "body_timeout",
            format!(
                "the request body did not arrive within {} ([proxy] body_timeout in config.toml)",
                crate::time::duration_text(limit)
            ),
        )),
    }
}

/// The refusal of a body for which the room for request bodies has no bytes left.
fn no_room(bodies: &super::state::BodyBytes, why: super::state::NoRoom) -> ProxyError {
    let message = match why {
        super::state::NoRoom::All => format!(
            "till is reading as many request bodies as it holds at once ({} bytes in all: {} × [proxy] max_body_bytes); send this one again in a moment",
            bodies.limit(),
            super::state::BODIES_AT_ONCE
        ),
        super::state::NoRoom::Lineage => format!(
            "this key and the keys narrowed from it are sending as many request bodies at once as one key may ({} bytes: {} × [proxy] max_body_bytes, half of what till reads at once); send this one again once one of the others has arrived",
            bodies.share(),
            super::state::BODIES_PER_LINEAGE
        ),
    };
    ProxyError::new(503, "busy", message).retry_after(1)
}

/// The child key from whichever header (or `?key=`) the provider's clients use.
pub(super) fn extract_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(token) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(token.trim());
        }
    }
    for name in &AUTH_HEADERS[1..] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            return Some(v.trim());
        }
    }
    query?.split('&').find_map(|kv| kv.strip_prefix("key="))
}

/// The query string to forward: without `key=` parameters, and refused when a parameter could
/// change what the upstream does with the request beyond what till checked (method overrides,
/// Google's `$`-prefixed system parameters and `fields` mask), or when it holds a byte no
/// request line may carry as it is.
///
/// Parameters are split at `&`, and for the refusals also at `;`, which some servers split at
/// too; what is forwarded is not rewritten, so a `key` joined to another parameter by `;` is
/// refused rather than dropped.
pub(super) fn forward_query(query: Option<&str>) -> Result<String, ProxyError> {
    let Some(q) = query else {
        return Ok(String::new());
    };
    // `http` takes raw non-ASCII bytes in a query; the request line upstream cannot carry them.
    if !q.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
        return Err(ProxyError::new(
            400,
            "query",
            "till refuses a query with a byte that is not visible ASCII (a raw space, control character or non-ASCII letter); percent-encode it (`é` is `%C3%A9`)",
        ));
    }
    let mut kept: Vec<&str> = Vec::new();
    for kv in q.split('&').filter(|kv| !kv.is_empty()) {
        let joined = kv.contains(';');
        if !joined && param_name(kv) == "key" {
            continue;
        }
        for name in kv.split(';').map(param_name) {
            // `fields` (and `$fields`) is Google's partial-response mask, which can leave the
            // usage counts out of the answer.
            let refused = name.starts_with('$') || name.contains("method") || name == "fields";
            if refused || name == "key" {
                return Err(ProxyError::new(
                    400,
                    "query",
                    format!(
                        "till refuses the query parameter `{}`: it could change what the provider does with a request till has checked",
                        crate::output::printable(&name)
                    ),
                ));
            }
        }
        kept.push(kv);
    }
    Ok(if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    })
}

/// The query parameters a request that runs a model may carry: Gemini's `alt` (`sse` or
/// `json`), Azure's `api-version`, and Anthropic's `beta` (Claude Code's `?beta=true`).
/// Everything a model run takes is in its body, where till checks it; a server may read a
/// query parameter over the body's field (LiteLLM's proxy takes `?model=` before the body's
/// `model`; Google's front end binds query parameters to request fields).
const INFERENCE_QUERY: &[&str] = &["alt", "api-version", "beta"];

/// Whether the forwarded query (as [`forward_query`] leaves it) fits `endpoint`: for a request
/// that runs a model till meters, only [`INFERENCE_QUERY`]; for any other, no parameter that
/// names a model, deployment or engine.
fn query_fits(kept: &str, endpoint: &Endpoint) -> Result<(), ProxyError> {
    let Some(q) = kept.strip_prefix('?') else {
        return Ok(());
    };
    // A run till meters; an unmetered one is for keys with every model and no bounds anyway.
    let runs = endpoint.class == EndpointClass::Inference && !endpoint.op.unmetered();
    for param in q.split(['&', ';']).filter(|p| !p.is_empty()) {
        let name = param_name(param);
        if runs {
            let value = param_value(param);
            let fits = INFERENCE_QUERY.contains(&name.as_str())
                && (name != "alt" || value == "sse" || value == "json");
            if !fits {
                return Err(ProxyError::new(
                    400,
                    "query",
                    format!(
                        "till refuses the query parameter `{}` on a request that runs a model: it could change what the provider runs; settings go in the body, where till checks them (till forwards only `alt=sse`/`alt=json`, `api-version` and `beta` there)",
                        crate::output::printable(&name)
                    ),
                ));
            }
        } else if ["model", "deployment", "engine"]
            .iter()
            .any(|w| name.contains(w))
        {
            return Err(ProxyError::new(
                400,
                "query",
                format!(
                    "till refuses the query parameter `{}`: a model named in the query is one till has not checked",
                    crate::output::printable(&name)
                ),
            ));
        }
    }
    Ok(())
}

/// A query parameter's value as a lenient provider reads it (see [`param_name`]).
fn param_value(param: &str) -> String {
    leniently(param.split_once('=').map_or("", |(_, v)| v))
}

/// A query parameter's name as a lenient provider reads it: form-decoded (`+` is a space,
/// `%6Bey` is `key`), without surrounding whitespace or control characters, in lower case.
fn param_name(param: &str) -> String {
    leniently(param.split('=').next().unwrap_or(""))
}

/// Part of a query parameter as a lenient provider reads it: form-decoded, trimmed of
/// whitespace and control characters, in lower case.
fn leniently(raw: &str) -> String {
    percent_encoding::percent_decode_str(&raw.replace('+', " "))
        .decode_utf8_lossy()
        .trim_matches(|c: char| c.is_whitespace() || c.is_control())
        .to_ascii_lowercase()
}

/// A ceiling above what the budget can still pay for (`afford`), lowered to that when it stays
/// at least [`DEFAULT_OUTPUT_RESERVE`]: an agent that asks for room it rarely uses (Claude Code
/// asks for 64,000 output tokens on every call) gets a bounded answer instead of a refusal,
/// and the answer can never cost more than the budget left. Only when writing the lower value
/// leaves it the body's largest ceiling (no other field or spelling naming more); otherwise,
/// and below the floor, the request is admitted or refused at the ceiling it named.
fn lowered_ceiling(
    provider: &Provider,
    op: route::Op,
    inspected: &Inspection,
    asked: u64,
    afford: u64,
) -> Option<u64> {
    if afford >= asked || afford < DEFAULT_OUTPUT_RESERVE {
        return None;
    }
    // `limits` reads only the top-level fields the family reads: the probe is a copy of those,
    // not of the whole body.
    let wire = provider.api.wire();
    let read = wire.read_fields();
    let mut probe: serde_json::Map<String, serde_json::Value> = inspected
        .json
        .as_ref()?
        .iter()
        .filter(|(k, _)| read.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    body_inspect::insert_ceiling(op, provider.openai_itself, &mut probe, afford);
    let (after, _) = wire.limits(op, &probe).ok()?;
    (after == Some(afford)).then_some(afford)
}

/// The most output tokens per choice that the key's remaining budget can pay for after the
/// prompt; refuses the request when that is none.
async fn affordable_output(
    state: &Arc<State>,
    grant: &Grant,
    provider: &Provider,
    model: Option<&str>,
    prompt: PromptBound,
    choices: u64,
) -> Result<u64, ProxyError> {
    let (usd_left, tokens_left) = state.budget_left(grant).await?;
    let mut afford = u64::MAX;
    // What left none, in the budget's unit: what is left (after what is spent and what
    // requests in flight hold) against what the prompt alone may take.
    let mut short = None;
    if let Some(left) = tokens_left {
        let n = left.saturating_sub(prompt.tokens) / choices.max(1);
        if n == 0 {
            short = Some(format!(
                "{left} tokens left, and the prompt alone may take {}",
                prompt.tokens
            ));
        }
        afford = afford.min(n);
    }
    if let Some(left) = usd_left
        && let Some(price) = model.and_then(|m| state.price(&provider.name, m))
    {
        let prompt_micros = price.reserve_micros(prompt, 0);
        let per_token = price.output * choices.max(1) as f64;
        if per_token > 0.0 {
            let n = (left.saturating_sub(prompt_micros) as f64 / per_token).floor() as u64;
            if n == 0 && short.is_none() {
                short = Some(format!(
                    "{} left, and the prompt alone may cost {}",
                    crate::format::usd_micros(left),
                    crate::format::usd_micros(prompt_micros)
                ));
            }
            afford = afford.min(n);
        }
    }
    if afford == 0 {
        return Err(ProxyError::new(
            429,
            "budget",
            format!(
                "this key's budget cannot pay for this prompt and any output: {} (what is left is after what was spent and what requests in flight hold); send a shorter prompt, wait for requests in flight, or widen it with `--budget …` (on `till run`, or a new key from `till key create`)",
                short.as_deref().unwrap_or("nothing is left")
            ),
        ));
    }
    Ok(afford)
}

#[cfg(test)]
mod tests;
