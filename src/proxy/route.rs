//! Where a request goes: one canonical path, which provider, which endpoint class and which
//! operation. Pure functions over the path, no I/O and no body.
//!
//! The proxy decides on the path it forwards, byte for byte: [`canonical_path`] decodes the
//! path once, refuses every form an HTTP client or server could normalise differently (`.` and
//! `..` segments, their percent-encoded forms, encoded slashes and backslashes, empty
//! segments, double encoding), and re-encodes it in one form. Classification and forwarding
//! both use that form. An operation is recognised by its exact segments and method; anything
//! else is a non-inference class (at worst `admin`), so a key without `--endpoints` for it
//! cannot reach it. Which segments are which operation is each family's to say
//! ([`crate::providers::Family::classify`]); this module must never learn a family's paths.

// What a path is once canonical belongs to the API families; the proxy reaches it through here.
pub use crate::providers::endpoint::{Endpoint, Op, classify};

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path has an empty segment (`//` or a trailing `/`)")]
    EmptySegment,
    #[error(
        "the path has a `.` or `..` segment (also when percent-encoded, or before a `;`), or one that starts with `;`"
    )]
    DotSegment,
    #[error("the path has an encoded `/`, `\\`, `%`, `?`, `#` or control character")]
    EncodedSeparator,
    #[error("the path has a malformed percent escape")]
    BadEscape,
    #[error("the path is not valid UTF-8 once decoded")]
    NotUtf8,
}

/// Characters a canonical path carries as they are (RFC 3986 `pchar` without `%`); every other
/// byte is percent-encoded with upper-case hex.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The one form of `raw` (a request path without its query) that till classifies and
/// forwards: every segment percent-decoded once, checked, and re-encoded.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    if is_canonical(raw) {
        return Ok(raw.to_owned());
    }
    canonical_path_decoded(raw)
}

/// Whether `raw` is its own canonical form, as the paths SDKs send are: segments of plain
/// bytes only (nothing to decode or encode), none empty, `.` or `..`. One pass, no copy;
/// [`canonical_path_decoded`] gives the same for these, and decides every other path.
fn is_canonical(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    // Byte by byte: paths are short, and a search for each `/` costs more than this.
    rest.as_bytes()
        .split(|&b| b == b'/')
        .all(|seg| !seg.is_empty() && !dotted(seg) && seg.iter().all(|&b| is_plain(b)))
}

/// Whether a segment is `.` or `..`, or is read as one by servers that take what follows a
/// `;` as the segment's parameters (Tomcat, Jetty, and gateways built on them: `..;` climbs
/// to the parent, `;x` is an empty segment): a path that till classifies as one thing would
/// reach another.
fn dotted(seg: &[u8]) -> bool {
    let name = seg.split(|&b| b == b';').next().unwrap_or(seg);
    name.is_empty() || name == b"." || name == b".."
}

/// [`canonical_path`] by decoding every segment and encoding it again.
fn canonical_path_decoded(raw: &str) -> Result<String, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut out = String::with_capacity(raw.len());
    // One buffer for every segment's decoded bytes.
    let mut decoded = Vec::with_capacity(rest.len());
    for segment in rest.split('/') {
        let bytes = segment.as_bytes();
        decoded.clear();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = h << 4 | l;
                if matches!(v, b'/' | b'\\' | b'%' | b'?' | b'#') || v < 0x20 || v == 0x7f {
                    return Err(PathError::EncodedSeparator);
                }
                decoded.push(v);
                i += 3;
            } else {
                // A raw `?` or `#` cannot reach here from an HTTP request line (they start the
                // query and fragment), so one that does is refused like its encoded form.
                if matches!(b, b'\\' | b'?' | b'#') || b < 0x20 || b == 0x7f {
                    return Err(PathError::EncodedSeparator);
                }
                decoded.push(b);
                i += 1;
            }
        }
        if decoded.is_empty() {
            return Err(PathError::EmptySegment);
        }
        if dotted(&decoded) {
            return Err(PathError::DotSegment);
        }
        std::str::from_utf8(&decoded).map_err(|_| PathError::NotUtf8)?;
        out.push('/');
        for &b in &decoded {
            if is_plain(b) {
                out.push(b as char);
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
            }
        }
    }
    Ok(out)
}

/// The provider prefix and the rest of the path: `/openai/v1/chat/completions` →
/// `("openai", "/v1/chat/completions")`.
pub fn split_prefix(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (name, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!name.is_empty()).then_some((name, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::childkey::EndpointClass;
    use crate::providers::ApiFamily;
    use http::Method;

    #[test]
    fn splits_provider_prefix() {
        assert_eq!(
            split_prefix("/openai/v1/chat/completions"),
            Some(("openai", "/v1/chat/completions"))
        );
        assert_eq!(split_prefix("/anthropic"), Some(("anthropic", "/")));
        assert_eq!(split_prefix("/"), None);
        assert_eq!(split_prefix("http://evil/x"), None);
    }

    #[test]
    fn canonical_path_refuses_every_dot_and_separator_trick() {
        for bad in [
            "/openai/v1/chat/../files",
            "/openai/v1/chat/%2e%2e/files",
            "/openai/v1/chat/%2E%2e/files",
            "/openai/v1/chat/.%2e/files",
            "/openai/v1/./files",
            "/openai/v1/%2e/files",
            "/openai/v1/chat%2f..%2ffiles",
            "/openai/v1/chat%2Fcompletions",
            "/openai/v1/chat%5c..%5cfiles",
            "/openai/v1/chat\\..\\files",
            "/openai//v1/chat/completions",
            "/openai/v1/chat/completions/",
            "/openai/v1/chat/%252e%252e/files",
            "/openai/v1/chat/%00/completions",
            "/openai/v1/chat/%3fx/completions",
            "/openai/v1/chat/%zz",
            "/openai/v1/chat/%2",
            "/openai/v1/%ff%fe",
            // Found by the `request` fuzz target: a raw `?` re-encoded as `%3F` is not a fixed point.
            "/v1/chat?completions",
            "/v1/chat#completions",
            "/gemini/v1beta/models/gemini-2.0-flash/../gemini-2.5-pro:generateContent",
            "openai/v1/chat/completions",
            // What servers that read `;` as a segment's parameters take for `..`, `.` or an
            // empty segment.
            "/up/..;/other/v1/chat/completions",
            "/openai/v1/.;x/chat/completions",
            "/openai/v1/%2e%2e;/files",
            "/openai/v1/;jsessionid=1/chat/completions",
        ] {
            assert!(canonical_path(bad).is_err(), "{bad} was accepted");
        }
    }

    proptest::proptest! {
        /// A path taken as it is gives what decoding and encoding it gives.
        #[test]
        fn a_path_taken_as_it_is_is_its_decoded_form(
            raw in proptest::string::string_regex("(/[a-zA-Z0-9._~%:@!$&'()*+,;= ?#\\-]{0,6}){0,5}/?").unwrap()
        ) {
            if is_canonical(&raw) {
                proptest::prop_assert_eq!(canonical_path_decoded(&raw).ok(), Some(raw.clone()));
            }
            proptest::prop_assert_eq!(canonical_path(&raw).ok(), canonical_path_decoded(&raw).ok());
        }
    }

    #[test]
    fn canonical_path_decodes_once_and_encodes_one_way() {
        assert_eq!(
            canonical_path("/openai/v1/chat/completions").unwrap(),
            "/openai/v1/chat/completions"
        );
        assert_eq!(
            canonical_path("/openai/v1/%63hat/completions").unwrap(),
            "/openai/v1/chat/completions"
        );
        assert_eq!(
            canonical_path("/openai/v1/models/ft%3Agpt-4o%3Aorg").unwrap(),
            "/openai/v1/models/ft:gpt-4o:org"
        );
        assert_eq!(canonical_path("/a/b%20c").unwrap(), "/a/b%20c");
        assert_eq!(canonical_path("/a/b c").unwrap(), "/a/b%20c");
        assert_eq!(canonical_path("/a/é").unwrap(), "/a/%C3%A9");
        // Canonical is a fixed point.
        for p in ["/a/b%20c", "/a/%C3%A9", "/openai/v1/models/ft:gpt-4o:org"] {
            assert_eq!(canonical_path(p).unwrap(), p);
        }
    }

    fn c(api: ApiFamily, m: Method, p: &str) -> (EndpointClass, Op) {
        let e = classify(api, &m, p);
        (e.class, e.op)
    }

    #[test]
    fn classifies_openai() {
        use EndpointClass::*;
        let o = |m: Method, p: &str| c(ApiFamily::Openai, m, p);
        assert_eq!(
            o(Method::POST, "/v1/chat/completions"),
            (Inference, Op::OpenaiChat)
        );
        assert_eq!(
            o(Method::POST, "/v1/responses"),
            (Inference, Op::OpenaiResponses)
        );
        assert_eq!(
            o(Method::POST, "/v1/embeddings"),
            (Inference, Op::OpenaiEmbeddings)
        );
        assert_eq!(
            o(Method::POST, "/v1/completions"),
            (Inference, Op::OpenaiCompletions)
        );
        assert_eq!(
            o(Method::POST, "/v1/audio/transcriptions"),
            (Inference, Op::OpenaiUnmetered)
        );
        assert_eq!(o(Method::GET, "/v1/models").0, Models);
        assert_eq!(o(Method::DELETE, "/v1/models/ft:gpt").0, Admin);
        assert_eq!(o(Method::POST, "/v1/files").0, Files);
        assert_eq!(
            o(Method::POST, "/v1/vector_stores/vs_1/search"),
            (Files, Op::OpenaiUnmetered)
        );
        assert_eq!(o(Method::GET, "/v1/vector_stores/vs_1"), (Files, Op::Other));
        assert_eq!(o(Method::GET, "/v1/responses/resp_1").0, Files);
        assert_eq!(o(Method::GET, "/v1/chat/completions").0, Files);
        // A compatible gateway may run a model under `chat/completions/…`.
        assert_eq!(o(Method::POST, "/v1/chat/completions/x").0, Admin);
        assert_eq!(o(Method::GET, "/v1/chat/completions/x").0, Files);
        assert_eq!(o(Method::POST, "/v1/batches").0, Batches);
        assert_eq!(o(Method::GET, "/v1/organization/users").0, Admin);
        assert_eq!(o(Method::POST, "/v1/fine_tuning/jobs").0, Admin);
        assert_eq!(
            o(Method::POST, "/openai/v1/chat/completions"),
            (Inference, Op::OpenaiChat)
        );
        assert_eq!(
            o(Method::POST, "/api/v1/chat/completions"),
            (Inference, Op::OpenaiChat)
        );
        assert_eq!(
            o(Method::POST, "/chat/completions"),
            (Inference, Op::OpenaiChat)
        );
        // A version segment deeper in the path does not make what follows it the endpoint.
        assert_eq!(o(Method::POST, "/files/v1/chat/completions").0, Admin);
        assert_eq!(o(Method::POST, "/v1/files/v1/chat/completions").0, Files);
        // A PUT or PATCH where OpenAI takes a POST is held to what that POST is held to: a
        // server routing by path alone takes it for the POST.
        assert_eq!(o(Method::PUT, "/v1/chat/completions").0, Admin);
        assert_eq!(o(Method::PATCH, "/v1/responses").0, Admin);
        assert_eq!(
            o(Method::PUT, "/v1/threads/t/runs"),
            (Inference, Op::OpenaiStoredRun)
        );
        assert_eq!(
            o(Method::PATCH, "/v1/vector_stores/v/search"),
            (Files, Op::OpenaiUnmetered)
        );
        assert_eq!(o(Method::DELETE, "/v1/responses/r"), (Files, Op::Other));
    }

    #[test]
    fn classifies_anthropic_and_gemini() {
        use EndpointClass::*;
        let a = |m: Method, p: &str| c(ApiFamily::Anthropic, m, p);
        assert_eq!(
            a(Method::POST, "/v1/messages"),
            (Inference, Op::AnthropicMessages)
        );
        assert_eq!(
            a(Method::POST, "/v1/messages/count_tokens"),
            (Inference, Op::AnthropicCountTokens)
        );
        assert_eq!(a(Method::POST, "/v1/messages/batches").0, Batches);
        assert_eq!(a(Method::GET, "/v1/models").0, Models);
        assert_eq!(a(Method::POST, "/v1/organizations/api_keys/x").0, Admin);
        assert_eq!(a(Method::GET, "/v1/messages").0, Admin);
        let g = |m: Method, p: &str| c(ApiFamily::Gemini, m, p);
        assert_eq!(
            g(
                Method::POST,
                "/v1beta/models/gemini-2.0-flash:generateContent"
            ),
            (Inference, Op::GeminiGenerate)
        );
        assert_eq!(
            g(
                Method::POST,
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
            ),
            (Inference, Op::GeminiGenerate)
        );
        assert_eq!(g(Method::GET, "/v1beta/models").0, Models);
        assert_eq!(g(Method::GET, "/v1beta/models/gemini-2.0-flash").0, Models);
        assert_eq!(g(Method::POST, "/upload/v1beta/files").0, Files);
        assert_eq!(
            g(Method::PATCH, "/v1beta/cachedContents/c1"),
            (Files, Op::GeminiUnmetered)
        );
        assert_eq!(
            g(Method::DELETE, "/v1beta/cachedContents/c1"),
            (Files, Op::Other)
        );
        assert_eq!(g(Method::POST, "/v1beta/tunedModels").0, Admin);
        assert_eq!(
            g(Method::POST, "/v1beta/tunedModels/x:generateContent").0,
            Admin
        );
        // The model is one path segment; anything deeper is not an inference call.
        assert_eq!(
            g(Method::POST, "/v1beta/models/a/b:generateContent").0,
            Admin
        );
        assert_eq!(
            g(
                Method::GET,
                "/v1beta/models/gemini-2.0-flash:generateContent"
            )
            .0,
            Admin
        );
    }

    proptest::proptest! {
        /// Whatever path arrives, a canonical one is a fixed point without dot segments or
        /// encoded separators, and its class never depends on a second decoding.
        #[test]
        fn canonical_paths_are_fixed_points(raw in "/[a-zA-Z0-9%./\\\\:?#~-]{0,40}") {
            if let Ok(c) = canonical_path(&raw) {
                let again = canonical_path(&c);
                proptest::prop_assert_eq!(again.as_deref(), Ok(c.as_str()));
                for s in c.split('/').skip(1) {
                    proptest::prop_assert!(!s.is_empty() && s != "." && s != "..");
                    let up = s.to_ascii_uppercase();
                    proptest::prop_assert!(!["%2F", "%5C", "%2E", "%25"].iter().any(|b| up.contains(b)));
                }
            }
        }
    }

    #[test]
    fn finds_path_models() {
        let e = classify(
            ApiFamily::Gemini,
            &Method::POST,
            "/v1beta/models/gemini-2.0-flash:generateContent",
        );
        assert_eq!(e.path_model.as_deref(), Some("gemini-2.0-flash"));
        assert!(e.op.path_streams("/v1beta/models/x:streamGenerateContent"));
        let e = classify(ApiFamily::Openai, &Method::GET, "/v1/models/gpt-4o");
        assert_eq!(e.path_model.as_deref(), Some("gpt-4o"));
        assert_eq!(
            classify(
                ApiFamily::Gemini,
                &Method::POST,
                "/v1beta/models/:generateContent"
            )
            .class,
            EndpointClass::Admin
        );
    }
}
