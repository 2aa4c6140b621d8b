//! Verification: the proxy's per-request check of a child key.
//!
//! [`verify`] recomputes the HMAC chain with the mint key and compares the final tag in
//! constant time; [`Verified::check`] then evaluates every stateless caveat against one
//! request and hands the stateful limits (rates, counts, budgets) back in a [`Grant`] for the
//! proxy to enforce, each tied to the binding of the level that set it. Nothing here keeps
//! state, touches the ledger or decides how a denial is shown to a client.

use std::borrow::Cow;
use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::caveat::{Caveat, EndpointClass, EndpointSet};
use super::mintkey::MintKey;
use super::token::{Binding, DecodeError, Level, TAG_LEN, Token, chain_step, header};
use crate::scope::format_expires;

/// What the proxy knows about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// The provider the request goes to (`openai`).
    pub provider: &'a str,
    /// The model the request names, `None` for requests without one (listing models).
    pub model: Option<&'a str>,
    pub endpoint: EndpointClass,
    /// The serving proxy's session id; `None` for `till serve`.
    pub session: Option<&'a str>,
    /// The output-token ceiling the request asks for (`max_tokens`), if any.
    pub requested_output_tokens: Option<u64>,
}

/// A stateful limit the proxy enforces with counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Rpm(u32),
    Tpm(u64),
    MaxRequests(u64),
    /// Micro-dollars.
    BudgetUsd(u64),
    BudgetTokens(u64),
}

/// A limit and the level it belongs to; its counter is keyed by `binding`, so a parent's
/// counter sees everything its descendants spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelLimit {
    pub level: usize,
    pub binding: Binding,
    pub limit: Limit,
}

/// What a request may do once every stateless caveat passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Every rate, count and budget limit of every level, in caveat order.
    pub limits: Vec<LevelLimit>,
    /// The smallest `MaxOutputTokens` of the key, if it has one.
    pub max_output_tokens: Option<u64>,
    /// Set when the request asked for no output ceiling but the key has one: the proxy
    /// writes this value into the request.
    pub cap_output_tokens: Option<u64>,
    /// The earliest expiry of the key (unix seconds).
    pub expires_at: u64,
}

impl Grant {
    /// Whether any level has a dollar or token budget.
    pub fn has_budget(&self) -> bool {
        self.limits
            .iter()
            .any(|l| matches!(l.limit, Limit::BudgetUsd(_) | Limit::BudgetTokens(_)))
    }

    /// The smallest tokens-per-minute limit of any level.
    pub fn tpm(&self) -> Option<u64> {
        self.limits
            .iter()
            .filter_map(|l| match l.limit {
                Limit::Tpm(n) => Some(n),
                _ => None,
            })
            .min()
    }

    /// Whether any level counts tokens: a budget, or a rate in tokens per minute. Such a key
    /// needs every request to carry an output ceiling.
    pub fn counts_tokens(&self) -> bool {
        self.has_budget() || self.tpm().is_some()
    }

    /// Whether any level counts requests: a request ceiling, or a rate in requests per
    /// minute. Such a key counts what is sent as one request; what makes many requests of one
    /// (a batch, a gateway's retries, subagents) would pass it as one.
    pub fn counts_requests(&self) -> bool {
        self.limits
            .iter()
            .any(|l| matches!(l.limit, Limit::MaxRequests(_) | Limit::Rpm(_)))
    }
}

/// Why a request was refused. `Display` says which limit and how to widen it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("this is not a valid till key: {0}")]
    Malformed(String),
    #[error("this key's signature does not verify: it was altered, or minted by another till")]
    BadSignature,
    #[error(
        "this key was minted with mint key {kid}, which this till does not hold (the mint key was rotated?); get a new key with `till run` or `till key create`"
    )]
    UnknownKid { kid: String },
    #[error("this key expired at {}; mint a new one with `--ttl …` (on `till run`, or `till key create`)", format_expires(*at))]
    Expired { at: u64 },
    #[error(
        "provider {provider} is not in this key's scope (allowed: {}); widen it with `--scope {provider}` (on `till run`, or a new key from `till key create`)",
        list(allowed)
    )]
    ProviderNotAllowed {
        provider: String,
        allowed: Vec<String>,
    },
    #[error(
        "model {model} is not in this key's scope (allowed: {}){}",
        list(allowed),
        widen_to_model(provider, model)
    )]
    ModelNotAllowed {
        provider: String,
        model: String,
        allowed: Vec<String>,
    },
    #[error(
        "the {endpoint} endpoints are not in this key's scope (allowed: {allowed}); widen it with `--endpoints {allowed},{endpoint}` (on `till run`, or a new key from `till key create`)"
    )]
    EndpointNotAllowed {
        endpoint: EndpointClass,
        allowed: EndpointSet,
    },
    #[error(
        "this key is bound to another `till run` session; use the key that run gave its agent, or make a standalone one with `till key create`"
    )]
    WrongSession,
    #[error(
        "the request asks for {requested} output tokens but this key allows at most {max}; ask for fewer or widen it with `--max-output-tokens {requested}` (on `till run`, or a new key from `till key create`)"
    )]
    MaxOutputTokens { requested: u64, max: u64 },
    #[error(
        "this key carries a restriction (caveat tag {tag:#04x}) that this version of till does not understand, so it refuses the key; upgrade till"
    )]
    UnknownCaveat { tag: u8 },
    #[error("this key has no caveats; till refuses unrestricted keys")]
    NoCaveats,
}

/// `; widen it with `till run --scope PROVIDER/MODEL …`` when `model` is a name a scope can
/// spell, else nothing: the request chose the text, and it is not offered as a command.
fn widen_to_model(provider: &str, model: &str) -> String {
    if super::caveat::is_model_name(model) {
        format!(
            "; widen it with `--scope {provider}/{model}` (on `till run`, or a new key from `till key create`)"
        )
    } else {
        String::new()
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

impl Denial {
    /// The HTTP status the proxy answers with: 401 when the key itself is unusable, 403 when
    /// the key is fine but this request is outside its scope.
    pub fn status(&self) -> u16 {
        match self {
            Denial::Malformed(_)
            | Denial::BadSignature
            | Denial::UnknownKid { .. }
            | Denial::Expired { .. }
            | Denial::WrongSession
            | Denial::NoCaveats => 401,
            Denial::ProviderNotAllowed { .. }
            | Denial::ModelNotAllowed { .. }
            | Denial::EndpointNotAllowed { .. }
            | Denial::MaxOutputTokens { .. }
            | Denial::UnknownCaveat { .. } => 403,
        }
    }

    /// A short slug for the ledger's denial column.
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::Malformed(_) => "malformed",
            Denial::BadSignature => "signature",
            Denial::UnknownKid { .. } => "kid",
            Denial::Expired { .. } => "expired",
            Denial::ProviderNotAllowed { .. } => "provider",
            Denial::ModelNotAllowed { .. } => "model",
            Denial::EndpointNotAllowed { .. } => "endpoint",
            Denial::WrongSession => "session",
            Denial::MaxOutputTokens { .. } => "max_output_tokens",
            Denial::UnknownCaveat { .. } => "unknown_caveat",
            Denial::NoCaveats => "no_caveats",
        }
    }

    /// Which denial to report when several caveats fail: key problems before scope ones.
    fn rank(&self) -> u8 {
        match self {
            Denial::Malformed(_) | Denial::BadSignature | Denial::UnknownKid { .. } => 0,
            Denial::NoCaveats | Denial::UnknownCaveat { .. } => 1,
            Denial::Expired { .. } => 2,
            Denial::WrongSession => 3,
            Denial::ProviderNotAllowed { .. } => 4,
            Denial::ModelNotAllowed { .. } => 5,
            Denial::EndpointNotAllowed { .. } => 6,
            Denial::MaxOutputTokens { .. } => 7,
        }
    }
}

impl From<DecodeError> for Denial {
    fn from(e: DecodeError) -> Denial {
        Denial::Malformed(e.to_string())
    }
}

/// A token whose chain checked out against the mint key.
///
/// It holds the binding at the end of every level (what the proxy needs for revocation and
/// counters); the binding of every single caveat is recomputed on demand by
/// [`Verified::bindings`], so the per-request path hashes one binding per level only.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    token: &'a Token,
    mint: &'a MintKey,
    level_bindings: Cow<'a, [Binding]>,
}

/// Checks `token`'s HMAC chain against `mint` (constant-time tag comparison).
///
/// Refuses a token from another mint key (`UnknownKid`), a bad chain (`BadSignature`), a
/// token without caveats (`NoCaveats`) and any caveat this version does not understand
/// (`UnknownCaveat`): unknown restrictions fail closed.
pub fn verify<'a>(token: &'a Token, mint: &'a MintKey) -> Result<Verified<'a>, Denial> {
    if token.kid != mint.kid() {
        return Err(Denial::UnknownKid {
            kid: token.kid.to_string(),
        });
    }
    let mut level_bindings = Vec::with_capacity(token.level_count());
    let mut tag = walk_chain(token, mint, |i, tag| {
        if token.ends_level(i) {
            level_bindings.push(Binding::of_tag(tag));
        }
    });
    let ok: bool = tag.ct_eq(&token.tag).into();
    tag.zeroize();
    if !ok {
        return Err(Denial::BadSignature);
    }
    if token.caveats.is_empty() {
        return Err(Denial::NoCaveats);
    }
    if let Some(c) = token
        .caveats
        .iter()
        .find(|c| matches!(c, Caveat::Unknown { .. }))
    {
        return Err(Denial::UnknownCaveat { tag: c.tag() });
    }
    if !token
        .caveats
        .iter()
        .any(|c| matches!(c, Caveat::Expires(_)))
    {
        return Err(Denial::Malformed("the key has no expiry".into()));
    }
    Ok(Verified {
        token,
        mint,
        level_bindings: Cow::Owned(level_bindings),
    })
}

/// A token whose chain [`verify`] accepted, kept with what the check found: what a verifier
/// holds on to so that the same key's next request skips the decode and the HMAC chain. Only
/// [`Checked::new`] makes one, so holding one means the chain was checked against the mint
/// key it was made with. Nothing that can change is decided here: expiry, scope and
/// revocation are still checked on every request ([`Verified::check`]).
///
/// `Debug` shows the token the way [`Token`]'s does, without the tag.
#[derive(Debug)]
pub struct Checked {
    token: Token,
    level_bindings: Vec<Binding>,
}

impl Checked {
    /// [`verify`], keeping the token.
    pub fn new(token: Token, mint: &MintKey) -> Result<Self, Denial> {
        let level_bindings = verify(&token, mint)?.level_bindings.into_owned();
        Ok(Self {
            token,
            level_bindings,
        })
    }

    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The verified key, for one request. `mint` must be the key this was checked with (it
    /// is what [`Verified::bindings`] recomputes the chain from).
    pub fn verified<'a>(&'a self, mint: &'a MintKey) -> Verified<'a> {
        debug_assert_eq!(self.token.kid, mint.kid());
        Verified {
            token: &self.token,
            mint,
            level_bindings: Cow::Borrowed(&self.level_bindings),
        }
    }
}

/// Recomputes the chain, calling `visit(i, tag_i)` after each caveat; returns the final tag.
fn walk_chain(
    token: &Token,
    mint: &MintKey,
    mut visit: impl FnMut(usize, &[u8; TAG_LEN]),
) -> [u8; TAG_LEN] {
    let mut tag: [u8; TAG_LEN] = mint.tag0(&header(token.version, token.kid, &token.nonce));
    let mut buf = Vec::with_capacity(128);
    for (i, c) in token.caveats.iter().enumerate() {
        let next = chain_step(&tag, token.ends_level(i), c, &mut buf);
        tag.zeroize();
        tag = next;
        visit(i, &tag);
    }
    tag
}

impl<'a> Verified<'a> {
    pub fn token(&self) -> &'a Token {
        self.token
    }

    pub fn caveats(&self) -> &'a [Caveat] {
        &self.token.caveats
    }

    pub fn levels(&self) -> Vec<Level> {
        self.token.levels()
    }

    /// The binding at the end of `level`: the identity of the key that level made. Revoking
    /// it revokes that key and everything derived from it.
    pub fn level_binding(&self, level: usize) -> Option<Binding> {
        self.level_bindings.get(level).copied()
    }

    /// The binding at the end of every level, level 0 first. The proxy refuses the request
    /// when any of them is revoked.
    pub fn level_bindings(&self) -> &[Binding] {
        &self.level_bindings
    }

    /// The binding at the end of level 0: the key the mint key made, which this key is or was
    /// narrowed from. Every key narrowed from it shares it, and only the mint key makes a new
    /// one, so it names the key's lineage: the proxy shares the room for request bodies out
    /// by it.
    pub fn root_binding(&self) -> Binding {
        *self
            .level_bindings
            .first()
            .expect("verified tokens have caveats")
    }

    /// This key's own binding (the last one).
    pub fn binding(&self) -> Binding {
        *self
            .level_bindings
            .last()
            .expect("verified tokens have caveats")
    }

    /// `binding_i = SHA256(tag_i)` for every caveat index (recomputes the chain).
    pub fn bindings(&self) -> Vec<Binding> {
        let mut out = Vec::with_capacity(self.token.caveats.len());
        let mut last = walk_chain(self.token, self.mint, |_, tag| {
            out.push(Binding::of_tag(tag))
        });
        last.zeroize();
        out
    }

    /// Whether every level allows every model of `provider` (a scope of `provider` or
    /// `provider/*`): what a request whose model till cannot see needs.
    pub fn allows_every_model(&self, provider: &str) -> bool {
        self.token.caveats.iter().all(|c| match c {
            Caveat::Allow(patterns) => patterns
                .iter()
                .any(|p| p.provider() == provider && p.is_provider_wide()),
            _ => true,
        })
    }

    /// Evaluates every stateless caveat for one request at unix time `now`.
    ///
    /// When several caveats fail, the most fundamental reason is reported (expiry before
    /// session before scope).
    pub fn check(&self, facts: &RequestFacts<'_>, now: u64) -> Result<Grant, Denial> {
        let mut denial: Option<Denial> = None;
        let mut deny = |d: Denial| {
            if denial.as_ref().is_none_or(|cur| d.rank() < cur.rank()) {
                denial = Some(d);
            }
        };
        let mut limits = Vec::new();
        let mut max_output: Option<u64> = None;
        let mut expires_at = u64::MAX;
        let mut level = 0;
        let mut level_has_endpoints = false;
        for (i, c) in self.token.caveats.iter().enumerate() {
            if i > 0 && self.token.ends_level(i - 1) {
                level += 1;
            }
            let mut limit = |l: Limit| {
                limits.push(LevelLimit {
                    level,
                    binding: self.level_bindings[level],
                    limit: l,
                })
            };
            match c {
                Caveat::Expires(at) => {
                    expires_at = expires_at.min(*at);
                    if now >= *at {
                        deny(Denial::Expired { at: *at });
                    }
                }
                Caveat::Allow(patterns) => {
                    if let Some(d) = check_allow(patterns, facts) {
                        deny(d);
                    }
                }
                Caveat::Endpoints(set) => {
                    if level == 0 {
                        level_has_endpoints = true;
                    }
                    if !set.contains(facts.endpoint) {
                        deny(endpoint_denial(facts.endpoint, *set));
                    }
                }
                Caveat::Session(id) => {
                    if facts.session != Some(id.as_str()) {
                        deny(Denial::WrongSession);
                    }
                }
                Caveat::MaxOutputTokens(max) => {
                    max_output = Some(max_output.map_or(*max, |m| m.min(*max)));
                    if let Some(requested) = facts.requested_output_tokens
                        && requested > *max
                    {
                        deny(Denial::MaxOutputTokens {
                            requested,
                            max: *max,
                        });
                    }
                }
                Caveat::Rpm(v) => limit(Limit::Rpm(*v)),
                Caveat::Tpm(v) => limit(Limit::Tpm(*v)),
                Caveat::MaxRequests(v) => limit(Limit::MaxRequests(*v)),
                Caveat::BudgetUsd(v) => limit(Limit::BudgetUsd(*v)),
                Caveat::BudgetTokens(v) => limit(Limit::BudgetTokens(*v)),
                Caveat::Unknown { tag, .. } => deny(Denial::UnknownCaveat { tag: *tag }),
            }
        }
        // A first level that names no endpoints means inference only. It is the first level,
        // not the whole token, that gets the default: otherwise a child adding
        // `Endpoints(all)` to a parent that relied on the default would widen it.
        if !level_has_endpoints && facts.endpoint != EndpointClass::Inference {
            deny(endpoint_denial(
                facts.endpoint,
                EndpointSet::inference_only(),
            ));
        }
        if let Some(d) = denial {
            return Err(d);
        }
        Ok(Grant {
            limits,
            max_output_tokens: max_output,
            cap_output_tokens: if facts.requested_output_tokens.is_none() {
                max_output
            } else {
                None
            },
            expires_at,
        })
    }
}

fn endpoint_denial(endpoint: EndpointClass, allowed: EndpointSet) -> Denial {
    Denial::EndpointNotAllowed { endpoint, allowed }
}

/// `None` when the request passes one `Allow` caveat.
fn check_allow(
    patterns: &[super::caveat::ModelPattern],
    facts: &RequestFacts<'_>,
) -> Option<Denial> {
    let mut provider_named = false;
    for p in patterns {
        if p.provider() != facts.provider {
            continue;
        }
        provider_named = true;
        match facts.model {
            // A request without a model (listing models) needs only the provider named.
            None => return None,
            Some(model) => {
                if p.matches(facts.provider, model) {
                    return None;
                }
            }
        }
    }
    let allowed = patterns.iter().map(ToString::to_string).collect();
    Some(match (provider_named, facts.model) {
        (true, Some(model)) => Denial::ModelNotAllowed {
            provider: facts.provider.to_string(),
            model: model.to_string(),
            allowed,
        },
        _ => Denial::ProviderNotAllowed {
            provider: facts.provider.to_string(),
            allowed,
        },
    })
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Rpm(v) => write!(f, "{v} requests/minute"),
            Limit::Tpm(v) => write!(f, "{v} tokens/minute"),
            Limit::MaxRequests(v) => write!(f, "{v} requests"),
            Limit::BudgetUsd(v) => write!(f, "${}", crate::scope::format_usd(*v)),
            Limit::BudgetTokens(v) => write!(f, "{v} tokens"),
        }
    }
}
