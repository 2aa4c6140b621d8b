use super::*;
use http::HeaderValue;

#[test]
fn key_comes_from_every_header_clients_use() {
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("Bearer till_abc"));
    assert_eq!(extract_key(&h, None), Some("till_abc"));
    let mut h = HeaderMap::new();
    h.insert("x-api-key", HeaderValue::from_static("till_x"));
    assert_eq!(extract_key(&h, None), Some("till_x"));
    let mut h = HeaderMap::new();
    h.insert("x-goog-api-key", HeaderValue::from_static("till_g"));
    assert_eq!(extract_key(&h, None), Some("till_g"));
    assert_eq!(
        extract_key(&HeaderMap::new(), Some("alt=sse&key=till_q")),
        Some("till_q")
    );
    assert_eq!(extract_key(&HeaderMap::new(), Some("alt=sse")), None);
}

#[test]
fn key_param_is_stripped_from_query() {
    assert_eq!(
        forward_query(Some("alt=sse&key=till_q")).unwrap(),
        "?alt=sse"
    );
    assert_eq!(forward_query(Some("key=till_q")).unwrap(), "");
    assert_eq!(forward_query(None).unwrap(), "");
}

#[test]
fn refused_parameters_are_refused_however_spelled_or_joined() {
    for q in [
        "fields%20=x",
        "fields+=x",
        "%20Fields%09=x",
        "a=b;$alt=json",
        "a=b;fields=x",
        "a=b;key=AIzaOther",
        "key=till_q;a=b",
    ] {
        assert!(forward_query(Some(q)).is_err(), "{q}");
    }
    // What passes goes as it came.
    assert_eq!(
        forward_query(Some("alt=sse;x=1&fieldsx=1")).unwrap(),
        "?alt=sse;x=1&fieldsx=1"
    );
}

#[test]
fn a_query_with_a_byte_that_is_not_visible_ascii_is_refused() {
    for q in ["a=\u{e9}", "a=b c", "a=\u{7f}"] {
        let err = forward_query(Some(q)).unwrap_err();
        assert_eq!(err.status.as_u16(), 400, "{q}");
    }
    assert!(forward_query(Some("a=%C3%A9")).is_ok());
}

#[test]
fn a_request_that_runs_a_model_takes_only_the_query_parameters_its_apis_need() {
    use crate::childkey::EndpointClass;
    use crate::proxy::route::{Endpoint, Op};
    let chat = Endpoint::new(EndpointClass::Inference, Op::OpenaiChat);
    let files = Endpoint::new(EndpointClass::Files, Op::Other);
    let fits = |q: &str, e: &Endpoint| query_fits(&forward_query(Some(q)).unwrap(), e);
    for q in [
        "alt=sse",
        "alt=JSON",
        "beta=true",
        "api-version=2025-04-01-preview",
        "key=till_q",
    ] {
        assert!(fits(q, &chat).is_ok(), "{q}");
    }
    for q in [
        "model=gpt-4o",
        "beta=true&Model=gpt-4o",
        "beta=true;model=gpt-4o",
        "%6Dodel=gpt-4o",
        "deployment=gpt-4o",
        "alt=proto",
        "alt=%70roto",
        "generationConfig.maxOutputTokens=99999",
        "stream=true",
    ] {
        let err = fits(q, &chat).unwrap_err();
        assert_eq!(err.status.as_u16(), 400, "{q}");
    }
    // Elsewhere the query goes on, but never with a model in it.
    for q in ["limit=20&after=file_1", "purpose=batch", "pageSize=50"] {
        assert!(fits(q, &files).is_ok(), "{q}");
    }
    for q in ["model=gpt-4o", "limit=1&model_name=x", "engine=davinci"] {
        assert!(fits(q, &files).is_err(), "{q}");
    }
}

#[test]
fn method_override_parameters_are_refused() {
    for q in [
        "$httpMethod=DELETE",
        "alt=sse&%24method=x",
        "_method=DELETE",
        "X-HTTP-Method-Override=PUT",
    ] {
        assert!(forward_query(Some(q)).is_err(), "{q}");
    }
}

#[test]
fn connection_tokens_name_headers_in_any_case_across_headers_and_commas() {
    let mut h = HeaderMap::new();
    h.append("connection", HeaderValue::from_static("keep-alive"));
    assert!(!connection_names_others(&h));
    h.append(
        "connection",
        HeaderValue::from_static(" Close ,, KEEP-ALIVE,"),
    );
    assert!(!connection_names_others(&h));
    h.append(
        "connection",
        HeaderValue::from_static("upgrade, X-Hop  ,te"),
    );
    assert!(connection_names_others(&h));
    assert!(named_by_connection(&h, &HeaderName::from_static("x-hop")));
    assert!(named_by_connection(
        &h,
        &HeaderName::from_static("keep-alive")
    ));
    assert!(!named_by_connection(&h, &HeaderName::from_static("x-ho")));
    assert!(!named_by_connection(
        &h,
        &HeaderName::from_static("x-client")
    ));
    assert!(!connection_names_others(&HeaderMap::new()));
}

#[test]
fn a_coding_on_any_line_or_in_any_list_is_seen() {
    let coded = |lines: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (name, value) in lines {
            h.append(*name, HeaderValue::from_static(value));
        }
        odd_coding(&h).map(|(header, coding)| format!("{header}: {coding}"))
    };
    assert_eq!(coded(&[]), None);
    assert_eq!(coded(&[("content-encoding", "identity")]), None);
    assert_eq!(coded(&[("transfer-encoding", "chunked")]), None);
    assert_eq!(
        coded(&[
            ("content-encoding", "identity"),
            ("content-encoding", "gzip")
        ])
        .as_deref(),
        Some("Content-Encoding: gzip")
    );
    assert_eq!(
        coded(&[("content-encoding", "identity, br")]).as_deref(),
        Some("Content-Encoding: br")
    );
    assert_eq!(
        coded(&[("transfer-encoding", "gzip, chunked")]).as_deref(),
        Some("Transfer-Encoding: gzip")
    );
    assert_eq!(
        coded(&[("transfer-encoding", "gzip")]).as_deref(),
        Some("Transfer-Encoding: gzip")
    );
    // The upstream's own text is never the name: it may be the root key, quoted back.
    assert_eq!(
        coded(&[("content-encoding", "sk-proj-ROOT0123456789abcdef")]).as_deref(),
        Some("Content-Encoding: a value till does not know")
    );
    assert_eq!(
        coded(&[("transfer-encoding", "sk-proj-ROOT0123456789abcdef, chunked")]).as_deref(),
        Some("Transfer-Encoding: a value till does not know")
    );
}

#[test]
fn a_charset_other_than_utf8_is_seen() {
    let typed = |value: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static(value));
        odd_charset(&h).is_some()
    };
    assert!(!typed("application/json"));
    assert!(!typed("application/json; charset=utf-8"));
    assert!(!typed("text/event-stream; charset=\"UTF-8\""));
    assert!(typed("application/json; charset=utf-16le"));
    assert!(typed("application/json;charset=UTF-32"));
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=x-sk-proj-ROOT0123456789abcdef"),
    );
    assert_eq!(
        odd_charset(&h),
        Some(("Content-Type charset", "a value till does not know"))
    );
    h.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=UTF-16LE"),
    );
    assert_eq!(odd_charset(&h), Some(("Content-Type charset", "utf-16le")));
}

/// Which answers the scrub cuts at a NUL byte: text by its type, in any letter case, or an
/// answer of no type said; not audio, images or other bytes.
#[test]
fn text_answers_are_known_by_their_type() {
    let typed = |value: Option<&'static str>| {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert("content-type", HeaderValue::from_static(v));
        }
        is_text(&h)
    };
    for text in [
        None,
        Some(""),
        Some("application/json"),
        Some("Application/JSON; charset=utf-8"),
        Some("text/event-stream"),
        Some("TEXT/plain"),
        Some("application/problem+json"),
        Some("application/x-ndjson"),
        Some("application/jsonl"),
        Some("application/x-json-stream"),
    ] {
        assert!(typed(text), "{text:?}");
    }
    for other in [
        Some("audio/mpeg"),
        Some("image/png"),
        Some("application/octet-stream"),
        Some("application/jso"),
        Some("json"),
    ] {
        assert!(!typed(other), "{other:?}");
    }
}

#[test]
fn a_batch_is_cancelled_only_by_name() {
    for rest in [
        "v1/batches/batch_1/cancel",
        "v1/messages/batches/msgbatch_1/cancel",
        "v1beta/batches/b1:cancel",
    ] {
        assert!(cancels_a_batch(rest), "{rest}");
    }
    for rest in [
        "v1/batches",
        "v1/batches/cancel",
        "v1/batches//cancel",
        "v1beta/batches/:cancel",
        "v1beta/batches/b1:cancel:x",
        "v1/batches/batch_1/cancel/more",
        "v1/files/f1/cancel",
    ] {
        assert!(!cancels_a_batch(rest), "{rest}");
    }
}
