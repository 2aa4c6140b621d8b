//! Caveats: the typed restrictions a child key carries, and their canonical byte encoding.
//!
//! The encoding is what the HMAC chain signs, so it must be canonical: one value, one byte
//! string. Encoders write minimal varints and sorted, deduplicated sets; the decoder refuses
//! anything an encoder would not have written (a padded varint, an unsorted set, a stray
//! flag bit), so a decoded token re-encodes to exactly the bytes it came from. This module
//! never evaluates caveats against a request — that is `verify`'s job.

use std::fmt;
use std::str::FromStr;

use super::glob::glob_match;

/// Longest provider name a pattern may carry.
pub const MAX_PROVIDER_LEN: usize = 64;
/// Longest model glob a pattern may carry.
pub const MAX_GLOB_LEN: usize = 128;
/// Most patterns one `Allow` caveat may carry.
pub const MAX_PATTERNS: usize = 64;
/// Longest session id.
pub const MAX_SESSION_LEN: usize = 64;

/// Wire tags of the caveat kinds this version understands. Never reuse a retired number.
pub(crate) mod tag {
    pub const ALLOW: u8 = 0x01;
    pub const ENDPOINTS: u8 = 0x02;
    pub const EXPIRES: u8 = 0x03;
    pub const BUDGET_USD: u8 = 0x04;
    pub const BUDGET_TOKENS: u8 = 0x05;
    pub const RPM: u8 = 0x06;
    pub const TPM: u8 = 0x07;
    pub const MAX_REQUESTS: u8 = 0x08;
    pub const MAX_OUTPUT_TOKENS: u8 = 0x09;
    pub const SESSION: u8 = 0x0a;

    /// Whether `t` names a caveat this version knows how to decode.
    pub fn is_known(t: u8) -> bool {
        (ALLOW..=SESSION).contains(&t)
    }
}

/// One restriction. Caveats are conjunctive: a request must satisfy every one of them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Caveat {
    /// Only these providers / models (`openai`, `anthropic/claude-haiku-*`).
    Allow(Vec<ModelPattern>),
    /// Only these endpoint classes. A token whose first level has none allows inference only.
    Endpoints(EndpointSet),
    /// Unusable from this unix time (seconds) on.
    Expires(u64),
    /// Spend ceiling in micro-dollars for this level and everything derived from it.
    BudgetUsd(u64),
    /// Token ceiling (input + output) for this level and everything derived from it.
    BudgetTokens(u64),
    /// Requests per minute.
    Rpm(u32),
    /// Tokens per minute.
    Tpm(u64),
    /// Total number of requests.
    MaxRequests(u64),
    /// Per-request ceiling on the output tokens a request may ask for.
    MaxOutputTokens(u64),
    /// Only the proxy of this `till run` session accepts the key.
    Session(String),
    /// A caveat from a newer till. Kept verbatim so the token still decodes and can be shown;
    /// verification always refuses it.
    Unknown { tag: u8, bytes: Vec<u8> },
}

impl fmt::Debug for Caveat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caveat::Allow(p) => f.debug_tuple("Allow").field(p).finish(),
            Caveat::Endpoints(e) => write!(f, "Endpoints({e})"),
            Caveat::Expires(t) => write!(f, "Expires({t})"),
            Caveat::BudgetUsd(v) => write!(f, "BudgetUsd({v})"),
            Caveat::BudgetTokens(v) => write!(f, "BudgetTokens({v})"),
            Caveat::Rpm(v) => write!(f, "Rpm({v})"),
            Caveat::Tpm(v) => write!(f, "Tpm({v})"),
            Caveat::MaxRequests(v) => write!(f, "MaxRequests({v})"),
            Caveat::MaxOutputTokens(v) => write!(f, "MaxOutputTokens({v})"),
            Caveat::Session(s) => write!(f, "Session({s:?})"),
            Caveat::Unknown { tag, bytes } => {
                write!(
                    f,
                    "Unknown {{ tag: {tag:#04x}, bytes: {} }}",
                    hex::encode(bytes)
                )
            }
        }
    }
}

impl Caveat {
    /// The wire tag of this caveat.
    pub fn tag(&self) -> u8 {
        match self {
            Caveat::Allow(_) => tag::ALLOW,
            Caveat::Endpoints(_) => tag::ENDPOINTS,
            Caveat::Expires(_) => tag::EXPIRES,
            Caveat::BudgetUsd(_) => tag::BUDGET_USD,
            Caveat::BudgetTokens(_) => tag::BUDGET_TOKENS,
            Caveat::Rpm(_) => tag::RPM,
            Caveat::Tpm(_) => tag::TPM,
            Caveat::MaxRequests(_) => tag::MAX_REQUESTS,
            Caveat::MaxOutputTokens(_) => tag::MAX_OUTPUT_TOKENS,
            Caveat::Session(_) => tag::SESSION,
            Caveat::Unknown { tag, .. } => *tag,
        }
    }

    /// The canonical encoding: `tag ‖ varint(len) ‖ payload`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        let len_at = out.len();
        // Payloads of known caveats are short; reserve one length byte and fix up if longer.
        out.push(0);
        let start = out.len();
        match self {
            Caveat::Allow(patterns) => {
                put_varint(out, patterns.len() as u64);
                for p in patterns {
                    out.push(p.provider.len() as u8);
                    out.extend_from_slice(p.provider.as_bytes());
                    let glob = p.model.as_deref().unwrap_or("");
                    out.push(glob.len() as u8);
                    out.extend_from_slice(glob.as_bytes());
                }
            }
            Caveat::Endpoints(set) => out.push(set.0),
            Caveat::Expires(v)
            | Caveat::BudgetUsd(v)
            | Caveat::BudgetTokens(v)
            | Caveat::Tpm(v)
            | Caveat::MaxRequests(v)
            | Caveat::MaxOutputTokens(v) => put_varint(out, *v),
            Caveat::Rpm(v) => put_varint(out, u64::from(*v)),
            Caveat::Session(s) => out.extend_from_slice(s.as_bytes()),
            Caveat::Unknown { bytes, .. } => out.extend_from_slice(bytes),
        }
        let len = out.len() - start;
        if len < 0x80 {
            out[len_at] = len as u8;
        } else {
            let mut prefix = Vec::with_capacity(3);
            put_varint(&mut prefix, len as u64);
            out.splice(len_at..=len_at, prefix);
        }
    }

    /// Decodes one caveat's payload. Unknown tags are kept verbatim.
    pub(crate) fn decode_payload(tag: u8, payload: &[u8]) -> Result<Caveat, String> {
        let mut r = Reader::new(payload);
        let caveat = match tag {
            tag::ALLOW => {
                let n = r.varint()?;
                if n == 0 || n > MAX_PATTERNS as u64 {
                    return Err(format!("allow caveat with {n} patterns"));
                }
                let mut patterns = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let provider = r.short_str()?;
                    let glob = r.short_str()?;
                    let p = ModelPattern::new(provider, (!glob.is_empty()).then_some(glob))
                        .map_err(|e| format!("allow caveat: {e}"))?;
                    if patterns
                        .last()
                        .is_some_and(|last: &ModelPattern| *last >= p)
                    {
                        return Err("allow caveat patterns are not sorted and unique".into());
                    }
                    patterns.push(p);
                }
                Caveat::Allow(patterns)
            }
            tag::ENDPOINTS => {
                let set = EndpointSet::from_bits(r.byte()?)
                    .ok_or_else(|| "endpoints caveat with invalid bits".to_string())?;
                Caveat::Endpoints(set)
            }
            tag::EXPIRES => Caveat::Expires(r.varint()?),
            tag::BUDGET_USD => Caveat::BudgetUsd(r.varint()?),
            tag::BUDGET_TOKENS => Caveat::BudgetTokens(r.varint()?),
            tag::RPM => Caveat::Rpm(
                u32::try_from(r.varint()?).map_err(|_| "rpm caveat out of range".to_string())?,
            ),
            tag::TPM => Caveat::Tpm(r.varint()?),
            tag::MAX_REQUESTS => Caveat::MaxRequests(r.varint()?),
            tag::MAX_OUTPUT_TOKENS => Caveat::MaxOutputTokens(r.varint()?),
            tag::SESSION => {
                let s = std::str::from_utf8(r.rest()).map_err(|_| "session id is not utf-8")?;
                validate_session(s)?;
                Caveat::Session(s.to_string())
            }
            other => {
                return Ok(Caveat::Unknown {
                    tag: other,
                    bytes: payload.to_vec(),
                });
            }
        };
        if !r.is_empty() {
            return Err(format!("trailing bytes in caveat tag {tag:#04x}"));
        }
        Ok(caveat)
    }

    /// Checks that this value has a canonical encoding the decoder will accept.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Caveat::Allow(patterns) => {
                if patterns.is_empty() {
                    return Err("an allow caveat needs at least one pattern".into());
                }
                if patterns.len() > MAX_PATTERNS {
                    return Err(format!(
                        "an allow caveat takes at most {MAX_PATTERNS} patterns"
                    ));
                }
                for p in patterns {
                    ModelPattern::new(&p.provider, p.model.as_deref())?;
                }
                if patterns.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(
                        "allow patterns must be sorted and unique (canonicalize them)".into(),
                    );
                }
                Ok(())
            }
            Caveat::Endpoints(set) => {
                if EndpointSet::from_bits(set.0).is_none() {
                    return Err("an endpoints caveat needs at least one endpoint class".into());
                }
                Ok(())
            }
            Caveat::Session(s) => validate_session(s),
            Caveat::Unknown { tag, .. } => {
                if tag::is_known(*tag) {
                    Err(format!("tag {tag:#04x} belongs to a known caveat"))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Puts a caveat's own contents in canonical form (sorts and dedupes allow patterns).
    pub fn canonical(mut self) -> Caveat {
        if let Caveat::Allow(patterns) = &mut self {
            patterns.sort();
            patterns.dedup();
        }
        self
    }
}

fn validate_session(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_SESSION_LEN {
        return Err(format!("a session id is 1 to {MAX_SESSION_LEN} characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("a session id may use only ASCII letters, digits, `-`, `_` and `.`".into());
    }
    Ok(())
}

/// Sorts a batch of caveats into canonical order (by encoding) and drops exact duplicates.
pub fn canonicalize(caveats: Vec<Caveat>) -> Vec<Caveat> {
    let mut keyed: Vec<(Vec<u8>, Caveat)> = caveats
        .into_iter()
        .map(|c| {
            let c = c.canonical();
            (c.encode(), c)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    keyed.into_iter().map(|(_, c)| c).collect()
}

/// `provider` or `provider/model-glob`; the glob may use `*` and `?` only.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelPattern {
    provider: String,
    model: Option<String>,
}

impl ModelPattern {
    /// Builds a pattern, checking the provider name (`[a-z0-9][a-z0-9_-]*`) and the glob.
    pub fn new(provider: &str, model: Option<&str>) -> Result<ModelPattern, String> {
        if let Some((pos, c)) = invalid_provider_char(provider) {
            return Err(format!(
                "unexpected `{c}` at position {} of provider `{provider}` — provider names use a-z, 0-9, `_` and `-`",
                pos + 1
            ));
        }
        if provider.is_empty() || provider.len() > MAX_PROVIDER_LEN {
            return Err(format!(
                "a provider name is 1 to {MAX_PROVIDER_LEN} characters"
            ));
        }
        if let Some(glob) = model {
            if glob.is_empty() {
                return Err(format!("empty model glob after `{provider}/`"));
            }
            if glob.len() > MAX_GLOB_LEN {
                return Err(format!("a model glob is at most {MAX_GLOB_LEN} characters"));
            }
            if let Some((pos, c)) = invalid_glob_char(glob) {
                return Err(format!(
                    "unexpected `{c}` at position {} of model glob `{glob}` — {}",
                    pos + 1,
                    glob_char_advice(c)
                ));
            }
        }
        Ok(ModelPattern {
            provider: provider.to_string(),
            model: model.map(str::to_string),
        })
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The model glob, `None` for a provider-wide pattern.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Whether the pattern covers every model of its provider (`openai` or `openai/*`).
    pub fn is_provider_wide(&self) -> bool {
        self.model
            .as_deref()
            .is_none_or(|g| g.bytes().all(|b| b == b'*'))
    }

    /// Whether a request for `model` at `provider` matches.
    pub fn matches(&self, provider: &str, model: &str) -> bool {
        self.provider == provider && self.model.as_deref().is_none_or(|g| glob_match(g, model))
    }
}

impl fmt::Display for ModelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.model {
            Some(m) => write!(f, "{}/{}", self.provider, m),
            None => f.write_str(&self.provider),
        }
    }
}

impl fmt::Debug for ModelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// First character (position, char) not allowed in a provider name.
pub(crate) fn invalid_provider_char(provider: &str) -> Option<(usize, char)> {
    provider.chars().enumerate().find(|&(i, c)| {
        let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && (c == '_' || c == '-'));
        !ok
    })
}

/// First character (position, char) not allowed in a model glob.
pub(crate) fn invalid_glob_char(glob: &str) -> Option<(usize, char)> {
    glob.chars().enumerate().find(|&(_, c)| !is_glob_char(c))
}

fn is_glob_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '.' | '_' | '-' | '/' | ':' | '@' | '+')
}

/// Whether `model` is a name a scope can spell exactly: one to [`MAX_GLOB_LEN`] characters of
/// a model glob, without its wildcards. A command or config entry suggested for a model (`till
/// run --scope openai/MODEL`, `[prices."openai/MODEL"]`) is offered only for such a name; any
/// other text a request sent as its model is not something a person should paste.
pub fn is_model_name(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= MAX_GLOB_LEN
        && model
            .chars()
            .all(|c| is_glob_char(c) && c != '*' && c != '?')
}

pub(crate) fn glob_char_advice(c: char) -> &'static str {
    match c {
        '[' | ']' | '{' | '}' | '!' | '\\' | '^' => "model globs may use only * and ?",
        _ => "model names use letters, digits and . _ - / : @ +, globs add * and ?",
    }
}

/// A class of provider endpoints a key may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointClass {
    /// Chat, completions, responses, embeddings, messages: anything that runs a model.
    Inference,
    /// Listing and describing models.
    Models,
    /// Uploading and reading files.
    Files,
    /// Batch jobs.
    Batches,
    /// Organisation, project, key and billing administration.
    Admin,
    /// Realtime sessions (`/v1/realtime` over a WebSocket): they run a model, but their audio
    /// input and the responses the server starts itself cannot be bounded up front, so they
    /// are a class of their own that a key must name.
    Realtime,
}

impl EndpointClass {
    pub const ALL: [EndpointClass; 6] = [
        EndpointClass::Inference,
        EndpointClass::Models,
        EndpointClass::Files,
        EndpointClass::Batches,
        EndpointClass::Admin,
        EndpointClass::Realtime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndpointClass::Inference => "inference",
            EndpointClass::Models => "models",
            EndpointClass::Files => "files",
            EndpointClass::Batches => "batches",
            EndpointClass::Admin => "admin",
            EndpointClass::Realtime => "realtime",
        }
    }

    fn bit(self) -> u8 {
        match self {
            EndpointClass::Inference => 0x01,
            EndpointClass::Models => 0x02,
            EndpointClass::Files => 0x04,
            EndpointClass::Batches => 0x08,
            EndpointClass::Admin => 0x10,
            EndpointClass::Realtime => 0x20,
        }
    }
}

impl fmt::Display for EndpointClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndpointClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EndpointClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!("unknown endpoint class `{s}` (known: inference, models, files, batches, admin, realtime, all)")
            })
    }
}

/// A non-empty set of endpoint classes, or `all` (every class, including ones added later).
///
/// On the wire one byte: bit 0 inference, 1 models, 2 files, 3 batches, 4 admin, 5 realtime;
/// `all` is `0x80` alone. Bit 5 came later: keys minted before it never set it (they were
/// refused with it set), so their sets read as they always did; an older till refuses a key
/// that sets it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointSet(u8);

const ALL_BIT: u8 = 0x80;
const CLASS_BITS: u8 = 0x3f;

impl EndpointSet {
    /// Every endpoint class.
    pub const fn all() -> EndpointSet {
        EndpointSet(ALL_BIT)
    }

    /// The set of the given classes; `None` when empty.
    pub fn of(classes: &[EndpointClass]) -> Option<EndpointSet> {
        let bits = classes.iter().fold(0u8, |acc, c| acc | c.bit());
        (bits != 0).then_some(EndpointSet(bits))
    }

    /// Inference only: what a key allows when its first level names no endpoints.
    pub const fn inference_only() -> EndpointSet {
        EndpointSet(0x01)
    }

    fn from_bits(bits: u8) -> Option<EndpointSet> {
        let ok = bits == ALL_BIT || (bits != 0 && bits & !CLASS_BITS == 0);
        ok.then_some(EndpointSet(bits))
    }

    pub fn is_all(self) -> bool {
        self.0 == ALL_BIT
    }

    pub fn contains(self, class: EndpointClass) -> bool {
        self.is_all() || self.0 & class.bit() != 0
    }

    /// Whether every class in `self` is in `other`.
    pub fn is_subset(self, other: EndpointSet) -> bool {
        other.is_all() || (!self.is_all() && self.0 & !other.0 == 0)
    }

    /// The classes both sets allow; `None` when that is nothing.
    pub fn intersect(self, other: EndpointSet) -> Option<EndpointSet> {
        match (self.is_all(), other.is_all()) {
            (true, _) => Some(other),
            (_, true) => Some(self),
            _ => EndpointSet::from_bits(self.0 & other.0),
        }
    }

    /// The classes in this set (every class for `all`).
    pub fn classes(self) -> impl Iterator<Item = EndpointClass> {
        EndpointClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl fmt::Display for EndpointSet {
    /// `all` or the classes joined by commas (`inference,models`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("all");
        }
        for (i, c) in self.classes().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointSet({self})")
    }
}

/// Appends `v` as a minimal unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over untrusted bytes that refuses non-canonical varints.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// How many bytes have been read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(crate) fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let s = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err("varint overflows u64".into());
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err("non-minimal varint".into());
                }
                return Ok(v);
            }
        }
        Err("varint overflows u64".into())
    }

    /// A string with a one-byte length.
    fn short_str(&mut self) -> Result<&'a str, String> {
        let n = self.byte()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| "string is not utf-8".to_string())
    }
}

/// The message every reader uses when the input ends early; `token` maps it to `Truncated`.
pub(crate) const TRUNCATED: &str = "unexpected end of data";

fn truncated() -> String {
    TRUNCATED.to_string()
}

#[cfg(test)]
mod tests;
