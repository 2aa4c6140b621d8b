//! What a path is: its endpoint class, the operation till understands well enough to check
//! and limit, and the model the path names. The parts every family shares (where the version
//! segment is, what a model id may look like) live here; each family classifies the segments
//! after the version itself ([`super::Family::classify`]).
//!
//! Pure functions over a canonical path (the proxy makes it canonical first); no I/O, no body.

use std::fmt;

use crate::childkey::EndpointClass;

use super::ApiFamily;

/// An operation till understands well enough to check and limit: it knows where its model,
/// output ceiling and choice count are. Each family module defines its operations as
/// constants (`Op::OpenaiChat`, `Op::GeminiGenerate`, …) and answers the facts about them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Op {
    family: Option<ApiFamily>,
    name: &'static str,
}

// The operation constants keep the names the operations have always had in the code, tests
// and fuzz targets (they used to be enum variants).
#[allow(non_upper_case_globals)]
impl Op {
    /// Anything else: no body inspection; the class decides.
    pub const Other: Op = Op {
        family: None,
        name: "other",
    };

    /// An operation of `family`, named by its module.
    pub(crate) const fn of(family: ApiFamily, name: &'static str) -> Op {
        Op {
            family: Some(family),
            name,
        }
    }

    /// The family whose operation this is; `None` for [`Op::Other`].
    pub fn family(self) -> Option<ApiFamily> {
        self.family
    }

    /// Whether the API names the model in the JSON body (else in the path, or nowhere).
    pub fn model_in_body(self) -> bool {
        self.family.is_some_and(|f| f.wire().model_in_body(self))
    }

    /// Whether a `model` in the body is the model the provider runs (see
    /// [`super::Family::body_model_runs`]).
    pub fn body_model_runs(self) -> bool {
        self.family.is_none_or(|f| f.wire().body_model_runs(self))
    }

    /// Whether the request is refused for a key with a budget, a rate in tokens or an output
    /// cap: till cannot bound what it costs.
    pub fn unmetered(self) -> bool {
        self.family.is_some_and(|f| f.wire().unmetered(self))
    }

    /// Whether the upstream path streams (Gemini says so in the path, the others in the body).
    pub fn path_streams(self, path: &str) -> bool {
        self.family
            .is_some_and(|f| f.wire().path_streams(self, path))
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.family {
            Some(family) => write!(f, "{family:?}:{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// What a canonical path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub class: EndpointClass,
    pub op: Op,
    /// The model the path names (Gemini's `models/M:…`, `GET …/models/M`).
    pub path_model: Option<String>,
}

impl Endpoint {
    pub fn new(class: EndpointClass, op: Op) -> Self {
        Self {
            class,
            op,
            path_model: None,
        }
    }

    /// The endpoint every unrecognised path is.
    pub fn admin() -> Self {
        Self::new(EndpointClass::Admin, Op::Other)
    }

    /// The same endpoint naming `model` in its path.
    #[must_use]
    pub fn with_model(mut self, model: &str) -> Self {
        self.path_model = Some(model.to_string());
        self
    }
}

/// Segments that may stand before the version segment: OpenAI-compatible providers serve
/// under `/openai/v1` (Groq) and `/api/v1` (OpenRouter); Gemini uploads under `/upload/v1beta`.
const PREFIXES: &[&str] = &["openai", "api", "upload"];

/// The segments after the API version (`v1`, `v1beta`, `v1alpha`), and whether a prefix
/// (`upload`) stood before it. Paths without a version segment (DeepSeek serves
/// `/chat/completions`) are taken whole. `None` when the path has unknown segments before a
/// version segment.
fn after_version(path: &str) -> Option<(Segments<'_>, Option<&str>)> {
    // A closure, not `'/'`: the search for a char costs more than paths this short.
    #[allow(clippy::manual_pattern_char_comparison)]
    let mut segments: Segments = path.split(|c: char| c == '/').skip(1).collect();
    let is_version = |s: &&str| matches!(*s, "v1" | "v1beta" | "v1alpha");
    match segments.iter().position(is_version) {
        Some(i) if i <= 1 => {
            let prefix = if i == 1 {
                if !PREFIXES.contains(&segments[0]) {
                    return None;
                }
                Some(segments[0])
            } else {
                None
            };
            segments.drain(..=i);
            Some((segments, prefix))
        }
        Some(_) => None,
        None => Some((segments, None)),
    }
}

/// A path's segments: on the stack for every path the APIs have (the longest, OpenAI's
/// `/v1/threads/{t}/runs/{r}/steps/{s}`, has seven), on the heap past that.
type Segments<'a> = smallvec::SmallVec<[&'a str; 8]>;

/// Model ids the proxy accepts in a path: letters, digits, `.`, `_`, `-` and `:` (fine-tuned
/// OpenAI ids, when `colon`), starting with a letter or digit.
pub(crate) fn valid_model_id(m: &str, colon: bool) -> bool {
    let mut chars = m.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && m.len() <= 256
        && chars.all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || (colon && c == ':')
        })
}

/// The path sent upstream for a canonical `path` after the provider prefix: the path itself,
/// or, for a family whose clients may leave the version out, the path with the version put
/// back in front. The classification is the same either way: a path without a version
/// segment is classified by all its segments, which are then the segments after `v1`.
pub fn upstream_path(api: ApiFamily, path: &str) -> std::borrow::Cow<'_, str> {
    let versioned = path
        .as_bytes()
        .split(|&b| b == b'/')
        .any(|s| matches!(s, b"v1" | b"v1beta" | b"v1alpha"));
    match api.wire().missing_version() {
        Some(v) if !versioned => format!("/{v}{path}").into(),
        _ => path.into(),
    }
}

/// The endpoint a WebSocket upgrade of `path` (a canonical path after the provider prefix)
/// opens for an API family; `None` when the family serves no WebSocket there.
pub fn classify_websocket(api: ApiFamily, path: &str) -> Option<super::WsRoute> {
    let (tail, prefix) = after_version(path)?;
    api.wire().websocket(&tail, prefix)
}

/// The endpoint of `method path` (a canonical path after the provider prefix) for an API
/// family. Anything unrecognised is `Admin`.
pub fn classify(api: ApiFamily, method: &http::Method, path: &str) -> Endpoint {
    match after_version(path) {
        Some((tail, prefix)) => api.wire().classify(method, &tail, prefix),
        None => Endpoint::admin(),
    }
}
