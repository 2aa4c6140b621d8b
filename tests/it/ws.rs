//! WebSockets through `till serve`: OpenAI's Responses WebSocket mode and the Realtime API,
//! driven with a real WebSocket client against the mock provider. As in `attack.rs`, every
//! refusal is checked on what the mock received (nothing, or only the allowed messages), not
//! only on what the client saw.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::{ProxyEnv, ROOT_KEY, Serve, output, output_with_stdin};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long any one message may take to arrive.
const WAIT: Duration = Duration::from_secs(20);

/// A proxy with a fresh mock log, ready for sockets.
fn setup(config: &str) -> ProxyEnv {
    ProxyEnv::with_options(till_mock::MockOptions::default(), config)
}

/// Opens `path` on the proxy with `headers`: the socket and the `101`'s headers, or the
/// status and body of a refusal.
async fn open(
    serve: &Serve,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, http::HeaderMap), (u16, String)> {
    let url = format!("{}{path}", serve.url.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Ok(Ok((ws, resp))) => Ok((ws, resp.headers().clone())),
        Ok(Err(tungstenite::Error::Http(resp))) => Err((
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Ok(Err(e)) => panic!("the WebSocket failed: {e}"),
        Err(_) => panic!("the upgrade took longer than {WAIT:?}"),
    }
}

async fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next message: a JSON event, or the close frame's code and reason as `{"close": …}`.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no message in time");
        match msg {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return json!({"close": code, "reason": reason});
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return json!({"close": 1006}),
        }
    }
}

/// Reads until the connection ends: till has dropped its side of the socket, and with it
/// the room the socket held.
async fn ended(ws: &mut Ws) {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the socket did not end in time");
        if matches!(msg, Some(Err(_)) | None) {
            return;
        }
    }
}

/// Events up to and including the first of type `last`; panics on a close before it.
async fn until(ws: &mut Ws, last: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = next(ws).await;
        assert!(
            v.get("close").is_none(),
            "closed before {last}: {seen:?} {v}"
        );
        let done = v["type"] == last;
        seen.push(v);
        if done {
            return seen;
        }
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn create(model: &str) -> Value {
    json!({"type": "response.create", "model": model, "input": "Say hello to the socket.", "store": false})
}

/// Stops `till serve` the way a person does (SIGTERM) so its ledger writer has written
/// everything, then returns the request rows, oldest first.
fn stop_and_log(p: &ProxyEnv, mut serve: Serve) -> Vec<Value> {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(serve.child.id() as i32, libc::SIGTERM) };
    let _ = serve.child.wait();
    let (code, stdout, stderr) = output(p.env.till().args(["log", "--json", "-n", "100"]));
    assert_eq!(code, 0, "{stderr}");
    let mut rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    rows.reverse();
    rows
}

/// The messages the mock received on WebSockets (method `WS`), parsed.
fn upstream_messages(p: &ProxyEnv) -> Vec<Value> {
    p.mock
        .requests()
        .iter()
        .filter(|r| r.method == "WS")
        .map(|r| r.json().unwrap_or(Value::Null))
        .collect()
}

/// What an upgrade is, what it sends, and the status it must get: (what, path, headers, status).
type Refusal<'a> = (&'a str, String, Vec<(&'a str, String)>, u16);

fn assert_no_root_key(what: &str, text: &str) {
    assert!(
        !text.contains(ROOT_KEY),
        "the root key reached the client in {what}: {text}"
    );
}

#[tokio::test]
async fn responses_over_a_websocket_are_metered_like_http() {
    let p = setup("");
    let key = p.create_key(&[
        "--name",
        "sock",
        "--scope",
        "openai/gpt-4o-mini",
        "--budget",
        "1usd",
    ]);
    let serve = p.serve();
    p.mock.clear_requests();
    let auth = bearer(&key);
    let (mut ws, head) = open(
        &serve,
        "/openai/v1/responses",
        &[
            ("authorization", &auth),
            ("openai-beta", "responses_websockets=2026-02-06"),
        ],
    )
    .await
    .unwrap();
    assert_no_root_key("the upgrade's headers", &format!("{head:?}"));
    let mut reported = Vec::new();
    let mut everything = String::new();
    for _ in 0..2 {
        send(&mut ws, &create("gpt-4o-mini")).await;
        let events = until(&mut ws, "response.completed").await;
        assert_eq!(events[0]["type"], "response.created", "{events:?}");
        let text: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(text, till_mock::REPLY_TEXT);
        let usage = &events.last().unwrap()["response"]["usage"];
        reported.push((
            usage["input_tokens"].clone(),
            usage["output_tokens"].clone(),
        ));
        everything.push_str(&serde_json::to_string(&events).unwrap());
    }
    assert_no_root_key("the events", &everything);
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    ws.close(Some(bye)).await.unwrap();
    assert_eq!(next(&mut ws).await["close"], 1000);

    // Upstream: one upgrade with the root key, the two messages, no till key anywhere; the
    // budget made till write an output ceiling into each.
    p.assert_upstream_saw_only_root_keys();
    let upgrade = &p.mock.requests()[0];
    assert_eq!(
        (upgrade.method.as_str(), upgrade.path.as_str()),
        ("GET", "/v1/responses")
    );
    assert_eq!(
        upgrade.header("openai-beta"),
        Some("responses_websockets=2026-02-06")
    );
    assert_eq!(upgrade.header("authorization"), Some(&*bearer(ROOT_KEY)));
    let sent = upstream_messages(&p);
    assert_eq!(sent.len(), 2, "{sent:?}");
    for m in &sent {
        assert_eq!(m["type"], "response.create");
        assert_eq!(m["model"], "gpt-4o-mini");
        assert!(m["max_output_tokens"].as_u64().is_some(), "{m}");
    }

    // The ledger: one row per response, with the tokens the mock reported.
    let rows = stop_and_log(&p, serve);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, (input, output)) in rows.iter().zip(&reported) {
        assert_eq!(row["endpoint"], "inference", "{row}");
        assert_eq!(row["model"], "gpt-4o-mini", "{row}");
        assert_eq!(row["outcome"], "complete", "{row}");
        assert_eq!(row["status"], 200, "{row}");
        assert_eq!(&row["input_tokens"], input, "{row}");
        assert_eq!(&row["output_tokens"], output, "{row}");
        assert!(row["cost_usd"].as_f64().unwrap() > 0.0, "{row}");
    }
    // The reservations were settled to what was metered.
    let (_, show, _) = output(p.env.till().args(["key", "show", "sock", "--json"]));
    let show: Value = serde_json::from_str(&show).unwrap();
    let spent: f64 = rows.iter().map(|r| r["cost_usd"].as_f64().unwrap()).sum();
    let shown = show["spent_usd"].as_f64().unwrap_or(f64::NAN);
    assert!(
        (shown - spent).abs() < 1e-6,
        "spent {shown} vs rows {spent}: {show}"
    );
}

#[tokio::test]
async fn upgrades_outside_the_key_are_refused_before_anything_reaches_the_provider() {
    let p = setup("");
    let revoked = p.create_key(&["--name", "gone", "--scope", "openai"]);
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", "gone"]));
    assert_eq!(code, 0, "{stderr}");
    let models_only = p.create_key(&["--scope", "openai", "--endpoints", "models"]);
    let anthropic = p.create_key(&["--scope", "anthropic"]);
    let inference = p.create_key(&["--scope", "openai"]);
    let realtime = p.create_key(&["--scope", "openai/gpt-realtime", "--endpoints", "realtime"]);
    let realtime_budget = p.create_key(&[
        "--scope",
        "openai/gpt-realtime",
        "--endpoints",
        "realtime",
        "--budget",
        "1usd",
    ]);
    let realtime_rpm = p.create_key(&[
        "--scope",
        "openai/gpt-realtime",
        "--endpoints",
        "realtime",
        "--rpm",
        "2",
    ]);
    let serve = p.serve();
    p.mock.clear_requests();
    let responses = "/openai/v1/responses";
    let cases: Vec<Refusal> = vec![
        ("no key", responses.into(), vec![], 401),
        // What the HTTP path refuses, the upgrade refuses: the provider would read them there
        // as it reads them on a request.
        (
            "a method override",
            responses.into(),
            vec![
                ("authorization", bearer(&inference)),
                ("x-http-method-override", "POST".into()),
            ],
            400,
        ),
        (
            "Google's field mask",
            responses.into(),
            vec![
                ("authorization", bearer(&inference)),
                ("x-goog-fieldmask", "usage".into()),
            ],
            400,
        ),
        (
            "a provider key",
            responses.into(),
            vec![("authorization", bearer("sk-live-123"))],
            401,
        ),
        (
            "a malformed till key",
            responses.into(),
            vec![("authorization", bearer("till_AAAA"))],
            401,
        ),
        (
            "a revoked key",
            responses.into(),
            vec![("authorization", bearer(&revoked))],
            401,
        ),
        (
            "a key without inference",
            responses.into(),
            vec![("authorization", bearer(&models_only))],
            403,
        ),
        (
            "a key for another provider",
            responses.into(),
            vec![("authorization", bearer(&anthropic))],
            403,
        ),
        (
            "a path that is no WebSocket",
            "/openai/v1/chat/completions".into(),
            vec![("authorization", bearer(&inference))],
            400,
        ),
        (
            "a query on the Responses socket",
            format!("{responses}?model=gpt-4o"),
            vec![("authorization", bearer(&inference))],
            400,
        ),
        (
            "realtime for a key without the realtime class",
            "/openai/v1/realtime?model=gpt-realtime".into(),
            vec![("authorization", bearer(&inference))],
            403,
        ),
        (
            "realtime with a model outside the key",
            "/openai/v1/realtime?model=gpt-4o-realtime-preview".into(),
            vec![("authorization", bearer(&realtime))],
            403,
        ),
        (
            "realtime in the subprotocol with a model outside the key",
            "/openai/v1/realtime?model=gpt-4o".into(),
            vec![(
                "sec-websocket-protocol",
                format!("realtime, openai-insecure-api-key.{realtime}"),
            )],
            403,
        ),
        (
            "realtime without a model",
            "/openai/v1/realtime".into(),
            vec![("authorization", bearer(&realtime))],
            400,
        ),
        (
            "realtime attached to a call",
            "/openai/v1/realtime?call_id=rtc_123".into(),
            vec![("authorization", bearer(&realtime))],
            400,
        ),
        (
            "realtime for a key with a budget",
            "/openai/v1/realtime?model=gpt-realtime".into(),
            vec![("authorization", bearer(&realtime_budget))],
            403,
        ),
        // The session's responses pass without a request each: two a minute would have been
        // two sessions a minute, each with as many responses as it liked.
        (
            "realtime for a key with a request rate",
            "/openai/v1/realtime?model=gpt-realtime".into(),
            vec![("authorization", bearer(&realtime_rpm))],
            403,
        ),
    ];
    for (what, path, headers, status) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        match open(&serve, path, &headers).await {
            Ok(_) => panic!("{what}: upgraded"),
            Err((got, body)) => {
                assert_eq!(got, *status, "{what}: {body}");
                let v: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("{what}: not JSON: {body}"));
                assert!(v["error"]["message"].is_string(), "{what}: {body}");
            }
        }
    }
    let seen = p.mock.requests();
    assert!(seen.is_empty(), "the provider saw {seen:?}");
    // Each refusal is in the ledger, as an HTTP one would be.
    let rows = stop_and_log(&p, serve);
    assert_eq!(rows.len(), cases.len(), "{rows:?}");
    assert!(rows.iter().all(|r| r["outcome"] == "denied"), "{rows:?}");
}

/// The upgrade goes upstream without what the HTTP path keeps behind: a header the client's
/// `Connection` names as its hop's alone, and headers by which middleware in front of a
/// compatible server may route it elsewhere than the path till classified.
#[tokio::test]
async fn an_upgrade_leaves_behind_what_a_request_leaves_behind() {
    let p = setup("");
    let key = p.create_key(&["--scope", "openai"]);
    let serve = p.serve();
    p.mock.clear_requests();
    let auth = bearer(&key);
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("openai-beta", "responses_websockets=2026-02-06"),
        ("connection", "Upgrade, x-hop"),
        ("x-hop", "1"),
    ];
    headers.extend(crate::attack::ROUTING);
    let (mut ws, _) = open(&serve, "/openai/v1/responses", &headers)
        .await
        .unwrap();
    send(&mut ws, &create("gpt-4o-mini")).await;
    until(&mut ws, "response.completed").await;
    let upgrade = &p.mock.requests()[0];
    for (name, _) in crate::attack::ROUTING.iter().chain(&[("x-hop", "")]) {
        let name = name.to_ascii_lowercase();
        assert_eq!(
            upgrade.header(&name),
            None,
            "{name} went upstream: {upgrade:?}"
        );
    }
    assert_eq!(
        upgrade.header("openai-beta"),
        Some("responses_websockets=2026-02-06")
    );
}

#[tokio::test]
async fn a_refused_response_create_never_reaches_the_provider_and_the_socket_goes_on() {
    let p = setup("");
    let key = p.create_key(&[
        "--scope",
        "openai/gpt-4o-mini",
        "--budget",
        "1usd",
        "--max-output-tokens",
        "500",
    ]);
    let small = p.create_key(&["--scope", "openai/gpt-4o-mini", "--budget", "100tok"]);
    let serve = p.serve();
    p.mock.clear_requests();
    let auth = bearer(&key);
    let (mut ws, _) = open(&serve, "/openai/v1/responses", &[("authorization", &auth)])
        .await
        .unwrap();
    let mut ceiling = create("gpt-4o-mini");
    ceiling["max_output_tokens"] = json!(5000);
    let mut stored = create("gpt-4o-mini");
    stored["previous_response_id"] = json!("resp_123");
    let mut lookalike = create("gpt-4o-mini");
    lookalike["Max_Output_Tokens"] = json!(100000);
    // A Realtime-style nested `response`, whose model a compatible server may read.
    let mut nested = create("gpt-4o-mini");
    nested["response"] = json!({"model": "o1-pro"});
    let refused: Vec<(&str, Message, u64, &str)> = vec![
        (
            "a model outside the key",
            Message::text(create("gpt-4o").to_string()),
            403,
            "till_model",
        ),
        (
            "a model outside the key, nested",
            Message::text(nested.to_string()),
            403,
            "till_model",
        ),
        (
            "a ceiling above the key's",
            Message::text(ceiling.to_string()),
            403,
            "till_max_output_tokens",
        ),
        (
            "input the budget cannot count",
            Message::text(stored.to_string()),
            403,
            "till_uncounted",
        ),
        (
            "a look-alike field",
            Message::text(lookalike.to_string()),
            400,
            "till_bad_request",
        ),
        (
            "no model",
            Message::text(json!({"type": "response.create", "input": "x"}).to_string()),
            400,
            "till_bad_request",
        ),
        (
            "not JSON",
            Message::text("{\"type\": \"response.create\", "),
            400,
            "till_bad_request",
        ),
        (
            "another event type",
            Message::text(json!({"type": "response.steer", "input": "x"}).to_string()),
            400,
            "till_websocket",
        ),
        (
            "a binary message",
            Message::binary(create("gpt-4o-mini").to_string().into_bytes()),
            400,
            "till_websocket",
        ),
    ];
    for (what, msg, status, code) in refused {
        ws.send(msg).await.unwrap();
        let v = next(&mut ws).await;
        assert_eq!(v["type"], "error", "{what}: {v}");
        assert_eq!(v["status"], status, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
    }
    assert!(
        upstream_messages(&p).is_empty(),
        "{:?}",
        upstream_messages(&p)
    );
    // The socket is still good for an allowed request.
    send(&mut ws, &create("gpt-4o-mini")).await;
    until(&mut ws, "response.completed").await;
    let sent = upstream_messages(&p);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["max_output_tokens"], 500,
        "the key's cap was written in"
    );

    // A key whose budget cannot pay for the ceiling asked for.
    let auth = bearer(&small);
    let (mut ws2, _) = open(&serve, "/openai/v1/responses", &[("authorization", &auth)])
        .await
        .unwrap();
    let mut big = create("gpt-4o-mini");
    big["max_output_tokens"] = json!(5000);
    send(&mut ws2, &big).await;
    let v = next(&mut ws2).await;
    assert_eq!(
        (v["type"].as_str(), v["status"].as_u64()),
        (Some("error"), Some(429)),
        "{v}"
    );
    assert_eq!(upstream_messages(&p).len(), 1);
    p.assert_upstream_saw_only_root_keys();
}

/// Opens a Responses socket with a key `--name live` for gpt-4o-mini, completes one response,
/// runs `till COMMAND…`, and holds the next response to an error event with `code`, then a
/// close with 1008, with nothing more upstream.
async fn the_next_message_is_refused_after(command: &[&str], code: &str) {
    the_next_message_is_refused_after_with(
        command,
        code,
        Message::text(create("gpt-4o-mini").to_string()),
    )
    .await;
}

/// As [`the_next_message_is_refused_after`], with `then` as the message after the command.
async fn the_next_message_is_refused_after_with(command: &[&str], code: &str, then: Message) {
    let p = setup("");
    let key = p.create_key(&["--name", "live", "--scope", "openai/gpt-4o-mini"]);
    let serve = p.serve();
    p.mock.clear_requests();
    let auth = bearer(&key);
    let (mut ws, _) = open(&serve, "/openai/v1/responses", &[("authorization", &auth)])
        .await
        .unwrap();
    send(&mut ws, &create("gpt-4o-mini")).await;
    until(&mut ws, "response.completed").await;
    let (exit, _, stderr) = output(p.env.till().args(command));
    assert_eq!(exit, 0, "{stderr}");
    ws.send(then).await.unwrap();
    let v = next(&mut ws).await;
    assert_eq!(v["error"]["code"], code, "{v}");
    let close = next(&mut ws).await;
    assert_eq!(close["close"], u16::from(CloseCode::Policy), "{close}");
    assert_eq!(
        upstream_messages(&p).len(),
        1,
        "only the first message went upstream"
    );
}

#[tokio::test]
async fn a_key_revoked_while_its_socket_is_open_stops_at_the_next_message() {
    the_next_message_is_refused_after(&["key", "revoke", "live"], "till_revoked").await;
}

/// A client that only pings keeps no socket once its key is revoked: a ping is checked as a
/// message is (and pings and pongs keep no socket from idling out).
#[tokio::test]
async fn a_socket_that_only_pings_is_closed_once_its_key_is_revoked() {
    the_next_message_is_refused_after_with(
        &["key", "revoke", "live"],
        "till_revoked",
        Message::Ping(b"still here".to_vec().into()),
    )
    .await;
}

/// A Responses request over HTTP with a body of about 900 bytes (near a 1,000-byte
/// `max_body_bytes`): its status and body.
async fn post_near_the_room(serve: &Serve, auth: &str) -> (u16, String) {
    let body = format!(
        "{{\"model\":\"gpt-4o-mini\",\"input\":\"{}\"}}",
        "x".repeat(850)
    );
    let (url, auth) = (serve.url.clone(), auth.to_string());
    tokio::task::spawn_blocking(move || {
        crate::support::raw_http(
            &url,
            "POST",
            "/openai/v1/responses",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
    })
    .await
    .unwrap()
}

/// A message arriving over a WebSocket holds the bodies' shared room as an HTTP body does, and
/// must be whole within `body_timeout`: sockets that each sent most of a large message and then
/// nothing (or pings) held the proxy's memory for as long as they liked.
#[tokio::test]
async fn messages_arriving_on_sockets_hold_the_bodies_room_and_time() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    // Bodies of at most 1,000 bytes: 8,000 bytes of them at once, half of that for one key's
    // lineage; two keys' sockets fill it.
    let p = setup("[proxy]\nmax_body_bytes = 1000\nbody_timeout = \"3s\"\n");
    let keys = [
        p.create_key(&["--scope", "openai"]),
        p.create_key(&["--scope", "openai"]),
    ];
    let serve = p.serve();
    p.mock.clear_requests();
    let auth = bearer(&p.create_key(&["--scope", "openai"]));
    let mut held = Vec::new();
    for i in 0..8 {
        let socket_auth = bearer(&keys[i % 2]);
        let (mut ws, _) = open(
            &serve,
            "/openai/v1/responses",
            &[("authorization", &socket_auth)],
        )
        .await
        .unwrap();
        // The first 900 bytes of a text message, and no more.
        let first = Frame::message(vec![b' '; 900], OpCode::Data(Data::Text), false);
        ws.send(Message::Frame(first)).await.unwrap();
        ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
        held.push(ws);
    }
    // Let the proxy read them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, text) = post_near_the_room(&serve, &auth).await;
    assert_eq!(status, 503, "the sockets' messages hold the room: {text}");
    // Not whole within body_timeout: each socket is closed, and the room is free again.
    for ws in &mut held {
        let v = next(ws).await;
        assert!(v.get("close").is_some(), "{v}");
    }
    let (status, text) = post_near_the_room(&serve, &auth).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        upstream_messages(&p).is_empty(),
        "nothing of the sockets' messages went upstream"
    );
}

/// A message read whole leaves its room in the socket's buffers (the WebSocket library keeps
/// a buffer as large as the largest frame it read): that room stays counted in the bodies'
/// shared room until the socket closes, so sockets that each sent one large message, even
/// one till refused, and stayed open cannot hold the proxy's memory uncounted; nor can one
/// key's sockets hold more than its lineage's share of that room.
#[tokio::test]
async fn a_socket_keeps_its_largest_message_counted_until_it_closes() {
    // Bodies of at most 1,000 bytes: 8,000 bytes of them at once, 4,000 for one key's
    // lineage; a 900-byte message keeps twice its size (read on one side, written on the
    // other).
    let p = setup("[proxy]\nmax_body_bytes = 1000\n");
    let keys: Vec<String> = (0..3)
        .map(|_| p.create_key(&["--scope", "openai"]))
        .collect();
    let serve = p.serve();
    p.mock.clear_requests();
    let auth = bearer(&keys[2]);
    let refused = json!({"type": "no.such.event", "pad": " ".repeat(860)});
    assert!((880..=900).contains(&refused.to_string().len()));
    let mut open_sockets = Vec::new();
    // The first key's third socket passes its lineage's share; the third key's first, the
    // room all bodies share.
    for (key, fits) in [
        (0, true),
        (0, true),
        (0, false),
        (1, true),
        (1, true),
        (2, false),
    ] {
        let socket_auth = bearer(&keys[key]);
        let (mut ws, _) = open(
            &serve,
            "/openai/v1/responses",
            &[("authorization", &socket_auth)],
        )
        .await
        .unwrap();
        send(&mut ws, &refused).await;
        let v = next(&mut ws).await;
        if fits {
            assert_eq!(v["type"], "error", "socket {key} {v}");
            open_sockets.push(ws);
        } else {
            // It finds no room left for its message: the socket is closed (as it arrives, or
            // told `till_busy` once read whole).
            let close = if v.get("close").is_some() {
                v
            } else {
                assert_eq!(v["error"]["code"], "till_busy", "{v}");
                next(&mut ws).await
            };
            assert!(close.get("close").is_some(), "{close}");
            // The next socket must not meet this one's room still counted.
            ended(&mut ws).await;
        }
    }
    let (status, text) = post_near_the_room(&serve, &auth).await;
    assert_eq!(status, 503, "the sockets' messages keep their room: {text}");
    for mut ws in open_sockets {
        ws.close(None).await.unwrap();
        ended(&mut ws).await;
    }
    let (status, text) = post_near_the_room(&serve, &auth).await;
    assert_eq!(
        status, 200,
        "the room is free once the sockets closed: {text}"
    );
}

#[tokio::test]
async fn a_root_key_removed_while_a_socket_is_open_carries_no_further_message() {
    the_next_message_is_refused_after(&["remove", "openai"], "till_no_root_key").await;
}

#[tokio::test]
async fn a_realtime_session_in_the_browser_form_is_checked_and_metered_per_response() {
    let p = setup("");
    let key = p.create_key(&["--scope", "openai/gpt-realtime*", "--endpoints", "realtime"]);
    let serve = p.serve();
    p.mock.clear_requests();
    // The browser's forms of the account headers, which would pick the account that pays,
    // stay behind as the headers do.
    let protocols = format!(
        "realtime, openai-insecure-api-key.{key}, openai-organization.org-ATTACKER, OpenAI-Project.proj_ATTACKER"
    );
    let (mut ws, head) = open(
        &serve,
        "/openai/v1/realtime?model=gpt-realtime",
        &[("sec-websocket-protocol", &protocols)],
    )
    .await
    .unwrap();
    assert_eq!(head.get("sec-websocket-protocol").unwrap(), "realtime");
    let created = next(&mut ws).await;
    assert_eq!(created["type"], "session.created", "{created}");
    assert_eq!(created["session"]["model"], "gpt-realtime");

    send(
        &mut ws,
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello there, realtime mock!"}]}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "conversation.item.created");
    let mut reported = Vec::new();
    send(&mut ws, &json!({"type": "response.create"})).await;
    let events = until(&mut ws, "response.done").await;
    reported.push(events.last().unwrap()["response"]["usage"].clone());

    // A model outside the key, named anywhere in an event, is refused there.
    let out_of_scope = [
        json!({"type": "session.update", "session": {"type": "realtime", "model": "gpt-4o-realtime-preview"}}),
        json!({"type": "session.update", "session": {"audio": {"input": {"transcription": {"model": "whisper-1"}}}}}),
        json!({"type": "transcription_session.replace", "session": {}}),
        // A look-alike of `model`, or a list of models, is no way around the check.
        json!({"type": "session.update", "session": {"Model": "gpt-4o-realtime-preview"}}),
        json!({"type": "session.update", "session": {"model": ["gpt-realtime", "gpt-4o-realtime-preview"]}}),
        // A name the scope's glob matches but a router reads as two models, or a model that
        // is not a name at all.
        json!({"type": "session.update", "session": {"model": "gpt-realtime-mini,gpt-4o"}}),
        json!({"type": "session.update", "session": {"model": {"id": "gpt-4o"}}}),
        json!({"type": "session.update", "session": {"model": null}}),
    ];
    for event in &out_of_scope {
        send(&mut ws, event).await;
        let v = next(&mut ws).await;
        assert_eq!(v["type"], "error", "{event}: {v}");
        assert!(
            v["error"]["code"].as_str().unwrap().starts_with("till_"),
            "{v}"
        );
    }
    send(&mut ws, &json!({"type": "response.create"})).await;
    let events = until(&mut ws, "response.done").await;
    reported.push(events.last().unwrap()["response"]["usage"].clone());
    ws.close(None).await.unwrap();

    // Upstream: the root key in a header, the subprotocol without the till key or the
    // agent's account, and only the allowed events.
    p.assert_upstream_saw_only_root_keys();
    let upgrade = &p.mock.requests()[0];
    assert_eq!(upgrade.query.as_deref(), Some("model=gpt-realtime"));
    assert_eq!(upgrade.header("sec-websocket-protocol"), Some("realtime"));
    let kinds: Vec<Value> = upstream_messages(&p)
        .iter()
        .map(|m| m["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "conversation.item.create",
            "response.create",
            "response.create"
        ],
        "{kinds:?}"
    );

    let rows = stop_and_log(&p, serve);
    assert_eq!(rows.len(), 10, "2 responses and 8 refusals: {rows:?}");
    let metered: Vec<&Value> = rows.iter().filter(|r| r["outcome"] == "complete").collect();
    assert_eq!(metered.len(), 2, "{rows:?}");
    for (row, usage) in metered.iter().zip(&reported) {
        assert_eq!(row["endpoint"], "realtime", "{row}");
        assert_eq!(row["model"], "gpt-realtime", "{row}");
        assert_eq!(row["input_tokens"], usage["input_tokens"], "{row}");
        assert_eq!(row["output_tokens"], usage["output_tokens"], "{row}");
    }
}

#[tokio::test]
async fn provider_failures_reach_the_client_as_error_events_and_the_ledger_as_cut() {
    let p = setup("");
    let key = p.create_key(&["--scope", "openai"]);
    let serve = p.serve();
    let auth = bearer(&key);
    let (mut ws, _) = open(&serve, "/openai/v1/responses", &[("authorization", &auth)])
        .await
        .unwrap();
    send(&mut ws, &create("gpt-error500")).await;
    let v = next(&mut ws).await;
    assert_eq!(
        (v["type"].as_str(), v["status"].as_u64()),
        (Some("error"), Some(500)),
        "{v}"
    );
    // The socket goes on after the provider's error; a cut connection ends it with an error.
    send(&mut ws, &create("gpt-cut")).await;
    let mut last = next(&mut ws).await;
    while last["type"] != "error" && last.get("close").is_none() {
        last = next(&mut ws).await;
    }
    assert_eq!(last["error"]["code"], "till_upstream", "{last}");
    assert_eq!(next(&mut ws).await["close"], u16::from(CloseCode::Error));
    let rows = stop_and_log(&p, serve);
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["cut", "cut"], "{rows:?}");
}

#[test]
fn a_websocket_holds_its_connection_slot_until_it_closes() {
    let p = setup("[proxy]\nmax_connections = 1\n");
    let key = p.create_key(&["--scope", "openai"]);
    let serve = p.serve();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let auth = bearer(&key);
    let mut ws = runtime
        .block_on(open(
            &serve,
            "/openai/v1/responses",
            &[("authorization", &auth)],
        ))
        .unwrap()
        .0;
    // The only slot is the socket's: a second connection waits in the backlog.
    let url = serve.url.clone();
    let (tx, served) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(crate::support::raw_http(
            &url,
            "GET",
            "/_till/health",
            &[],
            b"",
        ));
    });
    runtime.block_on(async {
        send(&mut ws, &create("gpt-4o-mini")).await;
        until(&mut ws, "response.completed").await;
    });
    assert!(
        served.recv_timeout(Duration::from_millis(500)).is_err(),
        "a second connection was served while the socket held the only slot"
    );
    runtime.block_on(async {
        ws.close(None).await.unwrap();
        while next(&mut ws).await.get("close").is_none() {}
    });
    drop(ws);
    let (status, body) = served
        .recv_timeout(WAIT)
        .expect("served once the socket closed");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

/// One key's sockets hold at most a quarter of the proxy's connections (idle sockets held
/// every slot of a shared `till serve` for `upstream_timeout`, and every other key's requests
/// waited): the next upgrade of that key, or of a key narrowed from it, is refused before the
/// provider sees it, another key's is not, and a closed socket gives its place back.
#[tokio::test]
async fn one_keys_websockets_hold_at_most_a_quarter_of_the_connections() {
    let p = setup("[proxy]\nmax_connections = 8\n");
    let first = p.create_key(&["--scope", "openai"]);
    let other = p.create_key(&["--scope", "openai"]);
    let (code, narrowed, stderr) = output_with_stdin(
        p.env
            .till()
            .args(["key", "attenuate", "--scope", "openai/gpt-4o-mini"]),
        &first,
    );
    assert_eq!(code, 0, "{stderr}");
    let narrowed = narrowed.trim().to_string();
    let serve = p.serve();
    let upgrades = || {
        p.mock
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/v1/responses"))
            .count()
    };
    let socket = |key: &str| {
        let auth = bearer(key);
        let serve = &serve;
        async move { open(serve, "/openai/v1/responses", &[("authorization", &auth)]).await }
    };
    let mut held = vec![
        socket(&first).await.unwrap().0,
        socket(&first).await.unwrap().0,
    ];
    let seen = upgrades();
    assert_eq!(seen, 2, "the mock records upgrades");
    for key in [&first, &narrowed] {
        let (status, body) = socket(key).await.expect_err("a third socket is refused");
        assert_eq!(status, 429, "{body}");
        assert!(
            body.contains("WebSockets open and requests in flight, as many as one key may (2"),
            "{body}"
        );
    }
    assert_eq!(upgrades(), seen, "a refused upgrade reached the provider");
    // The share is the sockets' and the requests' together: with two sockets open, the key's
    // request waits its turn too.
    let auth = bearer(&first);
    let (status, text) = crate::support::raw_http(
        &serve.url,
        "POST",
        "/openai/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("till_concurrency"), "{text}");
    // Another key is not held back by the first one's sockets.
    let mut other_ws = socket(&other).await.unwrap().0;
    // A socket that closes gives its place back.
    let mut ws = held.pop().unwrap();
    ws.close(None).await.unwrap();
    while next(&mut ws).await.get("close").is_none() {}
    drop(ws);
    let mut again = None;
    for _ in 0..50 {
        match socket(&first).await {
            Ok((ws, _)) => {
                again = Some(ws);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut again = again.expect("the key opens a socket again once one of its own closed");
    send(&mut again, &create("gpt-4o-mini")).await;
    until(&mut again, "response.completed").await;
    other_ws.close(None).await.unwrap();
}

/// A proxy whose mock paces `slow` answers `delay` apart, with `grace` to stop, a key for
/// every OpenAI model, and a socket on it with one slow response started.
async fn slow_response(delay: Duration, grace: &str) -> (ProxyEnv, Serve, Ws) {
    let opts = till_mock::MockOptions {
        chunk_delay: delay,
        ..Default::default()
    };
    let p = ProxyEnv::with_options(opts, &format!("[proxy]\nshutdown_grace = \"{grace}\"\n"));
    let key = p.create_key(&["--scope", "openai"]);
    let serve = p.serve();
    let auth = bearer(&key);
    let (mut ws, _) = open(&serve, "/openai/v1/responses", &[("authorization", &auth)])
        .await
        .unwrap();
    send(&mut ws, &create("gpt-slow")).await;
    assert_eq!(next(&mut ws).await["type"], "response.created");
    (p, serve, ws)
}

fn sigterm(serve: &Serve) {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(serve.child.id() as i32, libc::SIGTERM) };
}

#[tokio::test]
async fn sigterm_lets_a_response_on_a_socket_finish_then_closes_it() {
    let (p, serve, mut ws) = slow_response(Duration::from_millis(200), "20s").await;
    let auth = bearer(&p.create_key(&["--scope", "openai"]));
    let (mut idle, _) = open(&serve, "/openai/v1/responses", &[("authorization", &auth)])
        .await
        .unwrap();
    sigterm(&serve);
    // A socket with nothing in flight closes at once; the other finishes its response first.
    let close = next(&mut idle).await;
    assert_eq!(close["close"], u16::from(CloseCode::Away), "{close}");
    let events = until(&mut ws, "response.completed").await;
    assert!(events.iter().all(|e| e["type"] != "error"), "{events:?}");
    let close = next(&mut ws).await;
    assert_eq!(close["close"], u16::from(CloseCode::Away), "{close}");
    let rows = stop_and_log(&p, serve);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "complete", "{rows:?}");
}

#[tokio::test]
async fn a_response_still_running_when_the_grace_ends_is_interrupted() {
    let (p, serve, mut ws) = slow_response(Duration::from_secs(2), "1s").await;
    sigterm(&serve);
    let mut last = next(&mut ws).await;
    while last["type"] != "error" {
        assert!(
            last.get("close").is_none(),
            "closed without an error event: {last}"
        );
        last = next(&mut ws).await;
    }
    assert_eq!(last["error"]["code"], "till_shutting_down", "{last}");
    assert_eq!(next(&mut ws).await["close"], u16::from(CloseCode::Away));
    let rows = stop_and_log(&p, serve);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "interrupted", "{rows:?}");
}

/// A message of many small values is refused before its tree is built, as a request body is:
/// the tree may take what one key's bodies may hold (4 × `max_body_bytes`, here 4 MB), and a
/// 400 KB message of `0,` would take some 9 MB. The socket goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_many_small_values_is_refused_before_its_tree_is_built() {
    let p = setup("[proxy]\nmax_body_bytes = 1000000\n");
    let key = p.create_key(&["--scope", "openai/gpt-4o-mini"]);
    let serve = p.serve();
    p.mock.clear_requests();
    let auth = bearer(&key);
    let (mut ws, _) = open(&serve, "/openai/v1/responses", &[("authorization", &auth)])
        .await
        .unwrap();
    let zeros = "0,".repeat(200_000);
    let message = format!(
        r#"{{"type":"response.create","model":"gpt-4o-mini","input":"hi","metadata":{{"x":[{zeros}0]}}}}"#
    );
    // Any event: the message is read (for its `type`) within the bound, before anything else.
    let other = format!(r#"{{"type":"response.steer","x":[{zeros}0]}}"#);
    for message in [message, other] {
        ws.send(Message::text(message)).await.unwrap();
        let v = next(&mut ws).await;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["status"], 413, "{v}");
        assert_eq!(v["error"]["code"], "till_too_many_values", "{v}");
    }
    assert!(upstream_messages(&p).is_empty());
    send(&mut ws, &create("gpt-4o-mini")).await;
    until(&mut ws, "response.completed").await;
    assert_eq!(upstream_messages(&p).len(), 1);
}

/// A message's tree counts against the room for bodies while it is handled, as a request
/// body's does: with three bodies of the same key arriving (3 MB of its 4 MB share), a message
/// whose tree takes some 1.6 MB waits its turn (503), and goes once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messages_tree_counts_against_the_room_for_bodies() {
    use std::io::Write as _;
    let p = setup("[proxy]\nmax_body_bytes = 1000000\nbody_timeout = \"60s\"\n");
    let key = p.create_key(&["--scope", "openai/gpt-4o-mini"]);
    let serve = p.serve();
    p.mock.clear_requests();
    let addr = serve.url.strip_prefix("http://").unwrap().to_string();
    let arriving: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            let mut sent = format!(
                "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
                 content-type: application/json\r\ncontent-length: 1000000\r\n\r\n"
            )
            .into_bytes();
            sent.extend_from_slice(&vec![b' '; 990_000]);
            c.write_all(&sent).unwrap();
            c
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let auth = bearer(&key);
    let (mut ws, _) = open(&serve, "/openai/v1/responses", &[("authorization", &auth)])
        .await
        .unwrap();
    let objects = r#"{"a":1},"#.repeat(2000);
    let mut message = create("gpt-4o-mini");
    message["metadata"] = serde_json::from_str(&format!(r#"{{"x":[{objects}{{}}]}}"#)).unwrap();
    send(&mut ws, &message).await;
    let v = next(&mut ws).await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["status"], 503, "{v}");
    assert_eq!(v["error"]["code"], "till_busy", "{v}");
    assert!(upstream_messages(&p).is_empty());
    drop(arriving);
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(&mut ws, &message).await;
    until(&mut ws, "response.completed").await;
    assert_eq!(upstream_messages(&p).len(), 1);
}

/// A provider's side of an upgrade written by hand: each connection gets the next of
/// `answers`, made from the request's `Sec-WebSocket-Key`, written at once, then the
/// connection stays open a while (what follows the head is all the proxy gets of it).
fn hand_written_ws_upstream(answers: Vec<fn(&str) -> Vec<u8>>) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (tcp, answer) in listener.incoming().zip(answers) {
            let Ok(mut tcp) = tcp else { return };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&got).into_owned();
                let key = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("sec-websocket-key")
                            .then(|| value.trim().to_string())
                    })
                    .unwrap_or_default();
                let _ = tcp.write_all(&answer(&key));
                std::thread::sleep(Duration::from_secs(3));
            });
        }
    });
    port
}

/// The hand-written provider's root key: long enough to be looked for in pieces.
const EVIL_ROOT: &str = "sk-evil-0123456789abcdefROOTKEY";

fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// An upgrade's refusal is read in the provider's framing and scrubbed as an answer is: a
/// chunked body whose chunks cut the root key in two came to the agent as the raw chunks
/// (framing and all), each piece too short to be looked for; a text body in UTF-16 came
/// whole; and a close frame's reason in UTF-16 came whole. The agent gets none of the key.
#[tokio::test]
async fn a_refused_upgrade_or_a_close_reason_that_quotes_the_root_key_does_not_hand_it_on() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let port = hand_written_ws_upstream(vec![
        |_| {
            let body =
                format!(r#"{{"error":{{"message":"Incorrect API key provided: {EVIL_ROOT}"}}}}"#);
            let (a, b) = body.split_at(body.find(EVIL_ROOT).unwrap() + 10);
            format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
                 transfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
            .into_bytes()
        },
        |_| {
            let body = utf16(&format!(r#"{{"error":"{EVIL_ROOT}"}}"#));
            let mut answer = format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            answer.extend(body);
            answer
        },
        |key| {
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                 connection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            let mut payload = 1000u16.to_be_bytes().to_vec();
            payload.extend(utf16(EVIL_ROOT));
            answer.extend([0x88, payload.len() as u8]);
            answer.extend(payload);
            answer
        },
    ]);
    let p = setup("");
    let config = std::fs::read_to_string(p.env.path("config.toml")).unwrap();
    p.env.config(&format!(
        "{config}\n[providers.evil]\napi = \"openai\"\nbase_url = \"http://127.0.0.1:{port}\"\n"
    ));
    let (code, _, stderr) =
        output_with_stdin(p.env.till().args(["add", "evil", "--no-verify"]), EVIL_ROOT);
    assert_eq!(code, 0, "{stderr}");
    let key = p.create_key(&["--scope", "evil"]);
    let serve = p.serve();
    let refusal = || async {
        let host = serve.url.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        tcp.write_all(
            format!(
                "GET /evil/v1/responses HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {key}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
            .await
            .expect("the refusal ends")
            .unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 401"), "{text}");
        assert!(!raw.contains(&0), "{text:?}");
        body.to_string()
    };
    // The chunks' data, joined, the key overwritten across the cut.
    let body = refusal().await;
    let stars = "*".repeat(EVIL_ROOT.len());
    assert_eq!(
        body,
        format!(r#"{{"error":{{"message":"Incorrect API key provided: {stars}"}}}}"#)
    );
    // UTF-16 text stops at its first NUL.
    assert_eq!(refusal().await, "{");
    // A close frame's reason in UTF-16 stops there too.
    let auth = bearer(&key);
    let (mut ws, _) = open(&serve, "/evil/v1/responses", &[("authorization", &auth)])
        .await
        .expect("the upgrade");
    let closed = next(&mut ws).await;
    assert_eq!(closed["close"], 1000, "{closed}");
    assert_eq!(closed["reason"], "s", "{closed}");
}
