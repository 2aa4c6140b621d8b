//! The server side's reading of request heads: every framing rule, on the bytes as they come.

use super::*;

fn parse(raw: &str) -> Result<Option<Head>, Refusal> {
    parse_head(&mut BytesMut::from(raw))
}

fn head(raw: &str) -> Head {
    parse(raw).expect("valid").expect("complete")
}

fn refused(raw: &str) -> StatusCode {
    match parse(raw) {
        Err((status, _)) => status,
        Ok(Some(_)) => panic!("accepted: {raw:?}"),
        Ok(None) => panic!("incomplete: {raw:?}"),
    }
}

const POST: &str = "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: x\r\n";

#[test]
fn a_head_is_read_once_whole_and_leaves_what_follows() {
    let mut buf = BytesMut::from("GET /a HTTP/1.1\r\nhost: x\r\n");
    assert!(parse_head(&mut buf).unwrap().is_none());
    buf.extend_from_slice(b"x-a: 1\r\n\r\nGET /b HTTP/1.1\r\n");
    let h = parse_head(&mut buf).unwrap().unwrap();
    assert_eq!(h.parts.uri.path(), "/a");
    assert_eq!(h.parts.headers["x-a"], "1");
    assert!(h.body.is_none() && h.keep && !h.websocket);
    assert_eq!(&buf[..], b"GET /b HTTP/1.1\r\n");
}

#[test]
fn bodies_have_one_length_or_are_chunked_alone() {
    let h = head(&format!("{POST}content-length: 12\r\n\r\n"));
    assert!(matches!(h.body, Some(Framing::Length(12))));
    let h = head(&format!(
        "{POST}content-length: 12\r\ncontent-length: 12\r\n\r\n"
    ));
    assert!(matches!(h.body, Some(Framing::Length(12))));
    assert!(
        head(&format!("{POST}content-length: 0\r\n\r\n"))
            .body
            .is_none()
    );
    let h = head(&format!("{POST}transfer-encoding: Chunked\r\n\r\n"));
    assert!(matches!(h.body, Some(Framing::Chunked(_))));
    for framing in [
        "content-length: 12\r\ncontent-length: 13\r\n",
        "content-length: 12, 12\r\n",
        "content-length: +12\r\n",
        "content-length: -1\r\n",
        "content-length: 0x10\r\n",
        "content-length: 1 2\r\n",
        "content-length: \r\n",
        "content-length: 123456789012345678901234567890\r\n",
        "transfer-encoding: chunked\r\ncontent-length: 12\r\n",
        "content-length: 12\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: gzip\r\n",
        "transfer-encoding: gzip, chunked\r\n",
        "transfer-encoding: chunked, chunked\r\n",
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: identity\r\n",
    ] {
        assert_eq!(
            refused(&format!("{POST}{framing}\r\n")),
            StatusCode::BAD_REQUEST,
            "{framing}"
        );
    }
    assert_eq!(
        refused("POST /a HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n"),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    assert!(head("GET / HTTP/1.1\r\n\r\n").keep);
    assert!(!head("GET / HTTP/1.1\r\nconnection: close\r\n\r\n").keep);
    assert!(!head("GET / HTTP/1.1\r\nconnection: keep-alive\r\nconnection: close\r\n\r\n").keep);
    assert!(!head("GET / HTTP/1.1\r\nconnection: close\r\nconnection: keep-alive\r\n\r\n").keep);
    assert!(!head("GET / HTTP/1.0\r\n\r\n").keep);
    assert!(head("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n").keep);
    assert!(!head("CONNECT x:1 HTTP/1.1\r\n\r\n").keep);
}

#[test]
fn expect_and_upgrade_are_seen_only_where_they_mean_something() {
    let with_body = format!("{POST}expect: 100-Continue\r\ncontent-length: 2\r\n\r\n");
    assert!(head(&with_body).expect_continue);
    assert!(!head("GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n").expect_continue);
    assert!(!head(&format!("{POST}expect: x\r\ncontent-length: 2\r\n\r\n")).expect_continue);
    let ws =
        "GET /openai/v1/realtime HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
    let h = head(ws);
    assert!(h.websocket);
    assert_eq!(&h.raw[..], ws.as_bytes(), "hyper reads the head again");
    assert!(!head("GET / HTTP/1.1\r\nupgrade: h2c\r\n\r\n").websocket);
    assert!(!head("GET / HTTP/1.0\r\nupgrade: websocket\r\n\r\n").websocket);
}

#[test]
fn heads_that_are_too_large_or_broken_are_refused() {
    let large = format!("GET / HTTP/1.1\r\nx-a: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(refused(&large), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let unfinished = format!("GET / HTTP/1.1\r\nx-a: {}", "a".repeat(MAX_HEAD + 1));
    assert_eq!(
        refused(&unfinished),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
    assert_eq!(
        refused(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    for bad in [
        "GET / HTTP/1.1\r\nx-a: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nauthorization : x\r\n\r\n",
        "GET / HTTP/1.1\r\nx-a: a\0b\r\n\r\n",
        "GET / HTTP/1.1\r\nx-a: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nx(a): 1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "G@T / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(refused(bad), StatusCode::BAD_REQUEST, "{bad:?}");
    }
}

#[test]
fn numbers_are_written_in_their_base() {
    let mut b = Batch::default();
    b.number(0, 10);
    b.small(b" ");
    b.number(1_234_567, 10);
    b.small(b" ");
    b.number(0x1f_ab, 16);
    b.small(b" ");
    b.number(u64::MAX, 10);
    assert_eq!(&b.small[..], b"0 1234567 1fab 18446744073709551615");
    assert_eq!(b.len(), b.small.len());
}

#[test]
fn a_head_is_parsed_only_once_a_blank_line_may_have_ended_it() {
    let head = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    // Fed a byte at a time, as a trickling client sends it: only the last byte can end it.
    let ends: Vec<usize> = (1..=head.len())
        .filter(|&n| may_end_head(&head[..n], n - 1))
        .collect();
    assert_eq!(ends, [head.len()]);
    // Whatever was searched before, a blank line across the boundary is found.
    for searched in 0..head.len() {
        assert!(may_end_head(head, searched), "{searched}");
    }
    assert!(may_end_head(b"GET / HTTP/1.1\n\n", 15));
    assert!(!may_end_head(b"GET / HTTP/1.1\r\nhost: x\r\n", 0));
    assert!(!may_end_head(b"", 0));
}

#[test]
fn a_head_is_parsed_at_its_start_at_its_early_lines_and_at_a_blank_line() {
    assert!(!worth_parsing(b"", 0));
    // The first bytes of a head, whatever they are: garbage is refused at once.
    assert!(worth_parsing(b"\x16\x03\x01\x02\x00", 0));
    assert!(worth_parsing(b"GET / HT", 0));
    // Then at each line's end while the head is small, and not in between.
    assert!(!worth_parsing(b"GET / HTTP/1.1\r\nhost", 17));
    assert!(worth_parsing(b"GET / HTTP/1.1\r\nhost", 15));
    // Past 8 KiB, only a blank line.
    let long = format!("GET / HTTP/1.1\r\nx-a: {}\r\n", "a".repeat(9000));
    assert!(!worth_parsing(long.as_bytes(), long.len() - 2));
    let ended = format!("{long}\r\n");
    assert!(worth_parsing(ended.as_bytes(), long.len()));
}
