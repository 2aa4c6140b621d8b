//! In-process tests: a mock on port 0, driven with reqwest, checking each family's JSON and
//! SSE shapes, usage equality between the two forms, auth failures, the admin flows, the fault
//! switches, the events file and the request log.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::router::{key_hint, mask_key};
use super::*;

const KEY: &str = DEFAULT_KEY;
const ADMIN: &str = DEFAULT_ADMIN_KEY;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client builds")
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body).into_owned()
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("UTF-8 body")
    }
}

async fn send(
    method: reqwest::Method,
    url: String,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let mut req = client().request(method, url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).expect("JSON"));
    }
    let resp = req.send().await.expect("the mock answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("the whole body arrives");
    Reply {
        status,
        headers,
        body,
    }
}

async fn post(mock: &MockHandle, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    send(
        reqwest::Method::POST,
        format!("{}{path}", mock.url()),
        headers,
        Some(body),
    )
    .await
}

async fn get(mock: &MockHandle, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(
        reqwest::Method::GET,
        format!("{}{path}", mock.url()),
        headers,
        None,
    )
    .await
}

/// `(event name, data)` for each SSE event, in order.
fn sse(text: &str) -> Vec<(Option<String>, String)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (event, data)
        })
        .collect()
}

fn data_json(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|e| panic!("SSE data not JSON ({e}): {data}"))
}

const BEARER: (&str, &str) = ("authorization", "Bearer sk-mock-root");
const X_API_KEY: (&str, &str) = ("x-api-key", "sk-mock-root");
const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");
const GOOG: (&str, &str) = ("x-goog-api-key", "sk-mock-root");

/// 40 characters of user text: 10 input tokens.
const PROMPT: &str = "Say hello to the mock, please, right now.";

fn chat_body(model: &str, stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": PROMPT}]}
        ]
    });
    if stream {
        body["stream"] = json!(true);
    }
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn expected_input_tokens(texts: &[&str]) -> u64 {
    input_tokens(texts.iter().map(|t| t.chars().count()).sum())
}

#[test]
fn masking_never_reveals_a_whole_key() {
    assert_eq!(mask_key("sk-mock-root"), "sk-mo***oot");
    let long = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
    let masked = mask_key(long);
    assert!(masked.starts_with("sk-proj-") && masked.ends_with("6789"));
    assert_eq!(masked.chars().count(), long.chars().count());
    for key in ["", "abc", "abcdefg", "till_abcdefghijklmnop", long] {
        let masked = mask_key(key);
        assert!(
            key.is_empty() || !masked.contains(key),
            "{masked} shows {key}"
        );
        let hint = key_hint(if key.len() < 3 { "abcdef" } else { key });
        assert!(!hint.contains(key) || key.len() < 3, "{hint} shows {key}");
    }
}

#[test]
fn input_tokens_are_a_quarter_of_the_characters_at_least_one() {
    assert_eq!(input_tokens(0), 1);
    assert_eq!(input_tokens(7), 1);
    assert_eq!(input_tokens(40), 10);
    assert_eq!(OUTPUT_TOKENS, 5);
    assert_eq!(REPLY_PIECES.concat(), REPLY_TEXT);
}

#[tokio::test]
async fn openai_chat_json_and_stream_report_the_same_usage() {
    let mock = spawn(MockOptions::default());
    let input = expected_input_tokens(&["Be brief.", PROMPT]);

    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[BEARER],
        &chat_body("gpt-4o-mini", false, false),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers.contains_key("x-request-id"));
    let body = reply.json();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(body["created"].is_u64());
    assert!(body["system_fingerprint"].is_string());
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], REPLY_TEXT);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], input);
    assert_eq!(usage["completion_tokens"], OUTPUT_TOKENS);
    assert_eq!(usage["total_tokens"], input + OUTPUT_TOKENS);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);

    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[BEARER],
        &chat_body("gpt-4o-mini", true, true),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = reply.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let events = sse(&text);
    let (last, chunks) = events.split_last().unwrap();
    assert_eq!(last.1, "[DONE]");
    let chunks: Vec<Value> = chunks.iter().map(|(_, d)| data_json(d)).collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        assert_eq!(chunk["model"], "gpt-4o-mini");
        assert!(chunk["created"].is_u64() && chunk["system_fingerprint"].is_string());
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, REPLY_TEXT);
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    let finish = rest.last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert!(
        rest.iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        &usage_chunk["usage"], usage,
        "streamed usage equals JSON usage"
    );
    let pieces = rest.len() - 2; // minus the role chunk and the finish chunk
    assert_eq!(pieces as u64, OUTPUT_TOKENS);

    // Without include_usage: no usage chunk and no usage field at all.
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[BEARER],
        &chat_body("gpt-4o-mini", true, false),
    )
    .await;
    let events = sse(&reply.text());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    for (_, data) in &events[..events.len() - 1] {
        let chunk = data_json(data);
        assert!(chunk.get("usage").is_none(), "{chunk}");
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn openai_legacy_completions_json_and_stream() {
    let mock = spawn(MockOptions::default());
    let body = |stream: bool, include_usage: bool| {
        let mut b =
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "stream": stream});
        if include_usage {
            b["stream_options"] = json!({"include_usage": true});
        }
        b
    };
    let reply = post(&mock, "/v1/completions", &[BEARER], &body(false, false)).await;
    assert_eq!(reply.status, 200);
    let answer = reply.json();
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["choices"][0]["text"], REPLY_TEXT);
    let usage = answer["usage"].clone();
    assert_eq!(usage["prompt_tokens"], expected_input_tokens(&["Say hi"]));
    assert_eq!(usage["completion_tokens"], OUTPUT_TOKENS);

    let reply = post(&mock, "/v1/completions", &[BEARER], &body(true, true)).await;
    let events = sse(&reply.text());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| data_json(d))
        .collect();
    let (last, text) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], usage, "streamed usage equals JSON usage");
    let streamed: String = text
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(streamed, REPLY_TEXT);

    // Without include_usage no chunk says usage.
    let reply = post(&mock, "/v1/completions", &[BEARER], &body(true, false)).await;
    assert!(!reply.text().contains("usage"), "{}", reply.text());
}

#[tokio::test]
async fn openai_responses_json_and_stream() {
    let mock = spawn(MockOptions::default());
    let body = json!({"model": "gpt-4.1-mini", "instructions": "Be brief.", "input": PROMPT});
    let input = expected_input_tokens(&["Be brief.", PROMPT]);

    let reply = post(&mock, "/v1/responses", &[BEARER], &body).await;
    assert_eq!(reply.status, 200);
    let json_form = reply.json();
    assert_eq!(json_form["object"], "response");
    assert_eq!(json_form["status"], "completed");
    assert!(json_form["id"].as_str().unwrap().starts_with("resp_"));
    let message = &json_form["output"][0];
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"][0]["type"], "output_text");
    assert_eq!(message["content"][0]["text"], REPLY_TEXT);
    let usage = &json_form["usage"];
    assert_eq!(usage["input_tokens"], input);
    assert_eq!(usage["output_tokens"], OUTPUT_TOKENS);
    assert_eq!(usage["total_tokens"], input + OUTPUT_TOKENS);
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);

    let mut body = body;
    body["stream"] = json!(true);
    let reply = post(&mock, "/v1/responses", &[BEARER], &body).await;
    assert_eq!(reply.status, 200);
    let events = sse(&reply.text());
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n(
        "response.output_text.delta",
        REPLY_PIECES.len(),
    ));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, expected);
    let datas: Vec<Value> = events.iter().map(|(_, d)| data_json(d)).collect();
    for (i, (data, name)) in datas.iter().zip(&names).enumerate() {
        assert_eq!(data["type"], *name);
        assert_eq!(data["sequence_number"], i);
    }
    assert_eq!(datas[0]["response"]["status"], "in_progress");
    let deltas: String = datas.iter().filter_map(|d| d["delta"].as_str()).collect();
    assert_eq!(deltas, REPLY_TEXT);
    let completed = &datas.last().unwrap()["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(
        &completed["usage"], usage,
        "streamed usage equals JSON usage"
    );
    assert_eq!(
        completed["output"][0]["content"],
        json_form["output"][0]["content"]
    );
    assert_eq!(completed["output"][0]["id"], datas[2]["item"]["id"]);
}

#[tokio::test]
async fn a_stored_response_is_retrieved_by_its_id() {
    let mock = spawn(MockOptions::default());
    let reply = post(
        &mock,
        "/v1/responses",
        &[BEARER],
        &json!({"model": "gpt-4o-mini", "input": "hi"}),
    )
    .await;
    let created = reply.json();
    let id = created["id"].as_str().unwrap();
    let reply = get(&mock, &format!("/v1/responses/{id}"), &[BEARER]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), created);
    // Not stored, unknown, or without a key: not given.
    let reply = post(
        &mock,
        "/v1/responses",
        &[BEARER],
        &json!({"model": "gpt-4o-mini", "input": "hi", "store": false}),
    )
    .await;
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&mock, &format!("/v1/responses/{id}"), &[BEARER])
            .await
            .status,
        404
    );
    assert_eq!(
        get(&mock, "/v1/responses/resp_nope", &[BEARER])
            .await
            .status,
        404
    );
    assert_eq!(
        get(&mock, &format!("/v1/responses/{id}"), &[]).await.status,
        401
    );
}

#[tokio::test]
async fn openai_embeddings_floats_and_base64() {
    let mock = spawn(MockOptions::default());
    let reply = post(
        &mock,
        "/v1/embeddings",
        &[BEARER],
        &json!({"model": "text-embedding-3-small", "input": ["abcdefgh", "ijklmnop"]}),
    )
    .await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        assert_eq!(item["embedding"].as_array().unwrap().len(), 8);
    }
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 4, "total_tokens": 4})
    );

    let reply = post(
        &mock,
        "/v1/embeddings",
        &[BEARER],
        &json!({"model": "text-embedding-3-small", "input": "abcdefgh", "encoding_format": "base64"}),
    )
    .await;
    let body = reply.json();
    let encoded = body["data"][0]["embedding"].as_str().unwrap();
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
    assert_eq!(bytes.len(), 8 * 4);
}

#[tokio::test]
async fn models_answer_in_the_shape_of_the_family_asked() {
    let mock = spawn(MockOptions::default());
    let openai = get(&mock, "/v1/models", &[BEARER]).await.json();
    assert_eq!(openai["object"], "list");
    let ids: Vec<&str> = openai["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1-mini",
        "text-embedding-3-small",
        "o4-mini",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert_eq!(
        get(&mock, "/v1/models/gpt-4o", &[BEARER]).await.json()["object"],
        "model"
    );
    let missing = get(&mock, "/v1/models/nope", &[BEARER]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "model_not_found");

    let anthropic = get(&mock, "/v1/models", &[X_API_KEY, VERSION]).await;
    assert_eq!(anthropic.status, 200);
    let anthropic = anthropic.json();
    assert_eq!(anthropic["has_more"], false);
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert!(anthropic["first_id"].is_string());

    let gemini = get(&mock, "/v1beta/models", &[GOOG]).await.json();
    assert!(
        gemini["models"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("models/")
    );
    let one = get(&mock, "/v1beta/models/gemini-2.0-flash", &[GOOG])
        .await
        .json();
    assert_eq!(one["name"], "models/gemini-2.0-flash");
}

/// A prompt with `cache_control` markers is written to the cache on a first call: reported
/// apart from `input_tokens`, one-hour writes apart from five-minute ones.
#[tokio::test]
async fn anthropic_reports_cache_writes_of_marked_prompts() {
    let mock = spawn(MockOptions::default());
    let input = expected_input_tokens(&["Be brief.", PROMPT]);
    for (ttl, five, hour) in [
        (None, input, 0),
        (Some("5m"), input, 0),
        (Some("1h"), 0, input),
    ] {
        let mut cc = json!({"type": "ephemeral"});
        if let Some(t) = ttl {
            cc["ttl"] = t.into();
        }
        let body = json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": cc}],
            "messages": [{"role": "user", "content": PROMPT}]
        });
        let usage = post(&mock, "/v1/messages", &[X_API_KEY, VERSION], &body)
            .await
            .json()["usage"]
            .clone();
        assert_eq!(usage["input_tokens"], 0, "{usage}");
        assert_eq!(usage["cache_creation_input_tokens"], input, "{usage}");
        assert_eq!(usage["cache_creation"]["ephemeral_5m_input_tokens"], five);
        assert_eq!(usage["cache_creation"]["ephemeral_1h_input_tokens"], hour);
    }
}

#[tokio::test]
async fn anthropic_messages_json_and_stream() {
    let mock = spawn(MockOptions::default());
    let body = json!({
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": PROMPT}]
    });
    let input = expected_input_tokens(&["Be brief.", PROMPT]);

    let reply = post(&mock, "/v1/messages", &[X_API_KEY, VERSION], &body).await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers.contains_key("request-id"));
    let message = reply.json();
    assert_eq!(
        message,
        json!({
            "id": message["id"],
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": REPLY_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {
                "input_tokens": input,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": OUTPUT_TOKENS
            }
        })
    );
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));

    // Current SDKs send the key as a bearer token.
    let mut body = body;
    body["stream"] = json!(true);
    let reply = post(
        &mock,
        "/v1/messages",
        &[("authorization", "Bearer sk-mock-root"), VERSION],
        &body,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let events = sse(&reply.text());
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n(
        "content_block_delta",
        REPLY_PIECES.len(),
    ));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let datas: Vec<Value> = events.iter().map(|(_, d)| data_json(d)).collect();
    for (data, name) in datas.iter().zip(&names) {
        assert_eq!(data["type"], *name);
    }
    let start = &datas[0]["message"];
    assert_eq!(start["usage"]["input_tokens"], input);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(
        datas[1],
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    let text: String = datas
        .iter()
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, REPLY_TEXT);
    let delta = &datas[datas.len() - 2];
    assert_eq!(
        delta,
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": OUTPUT_TOKENS}
        })
    );
    assert_eq!(
        delta["usage"]["output_tokens"],
        message["usage"]["output_tokens"]
    );

    let counted = post(
        &mock,
        "/v1/messages/count_tokens",
        &[X_API_KEY, VERSION],
        &body,
    )
    .await;
    assert_eq!(counted.json(), json!({"input_tokens": input}));
}

#[tokio::test]
async fn gemini_generate_json_and_stream() {
    let mock = spawn(MockOptions::default());
    let body = json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": PROMPT}]}]
    });
    let input = expected_input_tokens(&["Be brief.", PROMPT]);

    let reply = post(
        &mock,
        "/v1beta/models/gemini-2.0-flash:generateContent",
        &[GOOG],
        &body,
    )
    .await;
    assert_eq!(reply.status, 200);
    let json_form = reply.json();
    let candidate = &json_form["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["content"]["parts"][0]["text"], REPLY_TEXT);
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(candidate["index"], 0);
    let usage = &json_form["usageMetadata"];
    assert_eq!(usage["promptTokenCount"], input);
    assert_eq!(usage["candidatesTokenCount"], OUTPUT_TOKENS);
    assert_eq!(usage["totalTokenCount"], input + OUTPUT_TOKENS);
    assert_eq!(json_form["modelVersion"], "gemini-2.0-flash");
    assert!(json_form["responseId"].is_string());

    // The key in the query works too.
    let reply = post(
        &mock,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=sk-mock-root",
        &[],
        &body,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "text/event-stream");
    let text = reply.text();
    assert!(
        text.starts_with("data: {") && text.ends_with("}\r\n\r\n"),
        "{text:?}"
    );
    assert_eq!(text.matches("\r\n\r\n").count(), REPLY_PIECES.len());
    let chunks: Vec<Value> = sse(&text).iter().map(|(_, d)| data_json(d)).collect();
    assert_eq!(chunks.len(), REPLY_PIECES.len());
    let streamed: String = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(streamed, REPLY_TEXT);
    for (i, chunk) in chunks.iter().enumerate() {
        let meta = &chunk["usageMetadata"];
        assert_eq!(meta["promptTokenCount"], input);
        assert_eq!(meta["candidatesTokenCount"], i + 1);
        assert_eq!(meta["totalTokenCount"], input + i as u64 + 1);
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        &last["usageMetadata"], usage,
        "final streamed usage equals JSON usage"
    );
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["candidates"][0].get("finishReason").is_none())
    );

    // An escaped `:` routes the same.
    let reply = post(
        &mock,
        "/v1beta/models/gemini-2.0-flash%3AgenerateContent",
        &[GOOG],
        &body,
    )
    .await;
    assert_eq!(reply.status, 200);

    // Without alt=sse: one JSON array.
    let reply = post(
        &mock,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        &[GOOG],
        &body,
    )
    .await;
    let array = reply.json();
    assert_eq!(array.as_array().unwrap().len(), REPLY_PIECES.len());
    assert_eq!(
        array.as_array().unwrap().last().unwrap()["usageMetadata"],
        *usage
    );
}

#[tokio::test]
async fn bad_and_missing_keys_fail_like_the_real_apis() {
    let mock = spawn(MockOptions::default());
    let chat = chat_body("gpt-4o-mini", false, false);
    let bad = "till_0123456789abcdefghijklmnop";

    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[("authorization", &format!("Bearer {bad}"))],
        &chat,
    )
    .await;
    assert_eq!(reply.status, 401);
    let error = reply.json()["error"].clone();
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "invalid_api_key");
    assert!(error["param"].is_null());
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Incorrect API key provided: till_012"),
        "{message}"
    );
    assert!(
        !reply.text().contains(bad),
        "the key is echoed whole: {message}"
    );

    let reply = post(&mock, "/v1/chat/completions", &[], &chat).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You didn't provide an API key")
    );

    let messages = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 10, "messages": []});
    let reply = post(
        &mock,
        "/v1/messages",
        &[("x-api-key", bad), VERSION],
        &messages,
    )
    .await;
    assert_eq!(reply.status, 401);
    let body = reply.json();
    assert_eq!(body["type"], "error");
    assert_eq!(
        body["error"],
        json!({"type": "authentication_error", "message": "invalid x-api-key"})
    );
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));
    let reply = post(&mock, "/v1/messages", &[X_API_KEY], &messages).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    let generate = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    let path = "/v1beta/models/gemini-2.0-flash:generateContent";
    let reply = post(&mock, path, &[("x-goog-api-key", bad)], &generate).await;
    assert_eq!(reply.status, 400);
    let error = reply.json()["error"].clone();
    assert_eq!(error["code"], 400);
    assert_eq!(
        error["message"],
        "API key not valid. Please pass a valid API key."
    );
    assert_eq!(error["status"], "INVALID_ARGUMENT");
    let reply = post(&mock, &format!("{path}?key={bad}"), &[], &generate).await;
    assert_eq!(reply.status, 400);
    let reply = post(&mock, path, &[], &generate).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"]["status"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn configured_keys_replace_the_default() {
    let mock = spawn(MockOptions {
        keys: vec!["sk-one".into(), "sk-two".into()],
        ..MockOptions::default()
    });
    let chat = chat_body("gpt-4o-mini", false, false);
    for (key, status) in [("sk-one", 200), ("sk-two", 200), (KEY, 401)] {
        let auth = format!("Bearer {key}");
        let reply = post(
            &mock,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            &chat,
        )
        .await;
        assert_eq!(reply.status, status, "{key}");
    }
    assert_eq!(mock.key_id("sk-one").as_deref(), Some("key_initial_1"));
    assert_eq!(mock.key_id("sk-two").as_deref(), Some("key_initial_2"));
}

#[tokio::test]
async fn unknown_paths_are_404_in_the_family_shape() {
    let mock = spawn(MockOptions::default());
    let reply = post(&mock, "/v1/chat/completion", &[BEARER], &json!({})).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json()["error"]["message"],
        "Invalid URL (POST /v1/chat/completion)"
    );
    let reply = get(&mock, "/openai/v1/models", &[BEARER]).await;
    assert_eq!(reply.status, 404);
    let reply = get(&mock, "/v1/messages", &[X_API_KEY, VERSION]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["type"], "not_found_error");
    let reply = post(
        &mock,
        "/v1beta/models/gemini-2.0-flash:explode",
        &[GOOG],
        &json!({}),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn openai_admin_creates_and_deletes_keys() {
    let mock = spawn(MockOptions::default());
    let admin = ("authorization", "Bearer sk-admin-mock");
    let path = "/v1/organization/projects/proj_mock/service_accounts";

    // A plain key is not an admin key; an unknown key is not a key at all.
    let reply = post(&mock, path, &[BEARER], &json!({"name": "till"})).await;
    assert_eq!(reply.status, 403);
    let reply = post(
        &mock,
        path,
        &[("authorization", "Bearer nope-nope-nope")],
        &json!({"name": "till"}),
    )
    .await;
    assert_eq!(reply.status, 401);

    let reply = post(&mock, path, &[admin], &json!({"name": "till-rotated"})).await;
    assert_eq!(reply.status, 201);
    let account = reply.json();
    assert_eq!(account["object"], "organization.project.service_account");
    assert!(account["id"].as_str().unwrap().starts_with("svc_acct_"));
    assert_eq!(account["name"], "till-rotated");
    assert_eq!(account["role"], "member");
    let api_key = &account["api_key"];
    assert_eq!(
        api_key["object"],
        "organization.project.service_account.api_key"
    );
    assert_eq!(api_key["name"], "Secret Key");
    let new_key = api_key["value"].as_str().unwrap();
    let new_id = api_key["id"].as_str().unwrap();
    assert!(new_key.starts_with("sk-svcacct-"));
    assert!(new_id.starts_with("key_"));

    let chat = chat_body("gpt-4o-mini", false, false);
    let new_auth = format!("Bearer {new_key}");
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[("authorization", &new_auth)],
        &chat,
    )
    .await;
    assert_eq!(reply.status, 200, "a new key works at once");

    let keys = get(
        &mock,
        "/v1/organization/projects/proj_mock/api_keys",
        &[admin],
    )
    .await
    .json();
    assert_eq!(keys["object"], "list");
    let ids: Vec<&str> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["key_initial_1", new_id]);
    assert!(
        !keys.to_string().contains(new_key),
        "listings show only redacted values"
    );
    assert_eq!(keys["data"][1]["owner"]["type"], "service_account");

    // The control API names the old key's id.
    let listed = get(&mock, "/_mock/keys", &[]).await.json();
    let old = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["value"] == KEY)
        .unwrap();
    assert_eq!(old["id"], "key_initial_1");
    assert_eq!(old["status"], "active");

    let url = format!(
        "{}/v1/organization/projects/proj_mock/api_keys/key_initial_1",
        mock.url()
    );
    let reply = send(reqwest::Method::DELETE, url.clone(), &[admin], None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"object": "organization.project.api_key.deleted", "id": "key_initial_1", "deleted": true})
    );
    let reply = post(&mock, "/v1/chat/completions", &[BEARER], &chat).await;
    assert_eq!(reply.status, 401, "a deleted key stops working");
    let reply = send(reqwest::Method::DELETE, url, &[admin], None).await;
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"]["message"].is_string());
    let keys = mock.keys();
    assert_eq!(keys[0].status, KeyStatus::Deleted);
    assert_eq!(
        keys[1].service_account_id.as_deref(),
        account["id"].as_str()
    );
}

#[tokio::test]
async fn anthropic_admin_deactivates_keys() {
    let mock = spawn(MockOptions::default());
    let admin = [("x-api-key", ADMIN), VERSION];
    let listed = get(&mock, "/v1/organizations/api_keys", &admin).await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    let key = &listed["data"][0];
    assert_eq!(key["id"], "key_initial_1");
    assert_eq!(key["type"], "api_key");
    assert_eq!(key["status"], "active");
    assert_eq!(key["partial_key_hint"], "sk-m...oot");
    assert!(key["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(key["created_by"]["type"], "user");
    assert!(key["workspace_id"].is_null());
    assert_eq!(listed["has_more"], false);

    let reply = get(&mock, "/v1/organizations/api_keys", &[X_API_KEY, VERSION]).await;
    assert_eq!(reply.status, 403, "a plain key is not an admin key");

    let messages = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let path = "/v1/organizations/api_keys/key_initial_1";
    let reply = post(&mock, path, &admin, &json!({"status": "inactive"})).await;
    assert_eq!(reply.status, 200);
    let updated = reply.json();
    assert_eq!(updated["status"], "inactive");
    assert_eq!(updated["id"], "key_initial_1");
    assert_eq!(
        post(&mock, "/v1/messages", &[X_API_KEY, VERSION], &messages)
            .await
            .status,
        401
    );
    let inactive = get(&mock, "/v1/organizations/api_keys?status=inactive", &admin)
        .await
        .json();
    assert_eq!(inactive["data"].as_array().unwrap().len(), 1);

    let reply = post(&mock, path, &admin, &json!({"status": "active"})).await;
    assert_eq!(reply.json()["status"], "active");
    assert_eq!(
        post(&mock, "/v1/messages", &[X_API_KEY, VERSION], &messages)
            .await
            .status,
        200
    );

    let reply = post(
        &mock,
        "/v1/organizations/api_keys/apikey_nope",
        &admin,
        &json!({"status": "inactive"}),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["type"], "not_found_error");
    let reply = post(&mock, path, &admin, &json!({"status": "sleeping"})).await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn error_switches_answer_in_the_family_shape() {
    let mock = spawn(MockOptions::default());
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[BEARER],
        &chat_body("gpt-error500", false, false),
    )
    .await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"]["type"], "server_error");
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[BEARER],
        &chat_body("gpt-overloaded", true, true),
    )
    .await;
    assert_eq!(reply.status, 503);

    let messages = |model: &str| json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let reply = post(
        &mock,
        "/v1/messages",
        &[X_API_KEY, VERSION],
        &messages("claude-error500"),
    )
    .await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"]["type"], "api_error");
    let reply = post(
        &mock,
        "/v1/messages",
        &[X_API_KEY, VERSION],
        &messages("claude-overloaded"),
    )
    .await;
    assert_eq!(reply.status, 529);
    assert_eq!(reply.json()["error"]["type"], "overloaded_error");

    let generate = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    let reply = post(
        &mock,
        "/v1beta/models/gemini-error500:generateContent",
        &[GOOG],
        &generate,
    )
    .await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"]["status"], "INTERNAL");
    let reply = post(
        &mock,
        "/v1beta/models/gemini-overloaded:generateContent",
        &[GOOG],
        &generate,
    )
    .await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"]["status"], "UNAVAILABLE");

    // Auth comes first: a bad key on a faulty model is still a 401.
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[("authorization", "Bearer nope")],
        &chat_body("gpt-error500", false, false),
    )
    .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn cut_streams_stop_after_two_chunks_and_cut_json_gets_no_answer() {
    let mock = spawn(MockOptions::default());
    let resp = client()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .header(BEARER.0, BEARER.1)
        .body(serde_json::to_vec(&chat_body("gpt-cut", true, true)).unwrap())
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut received = Vec::new();
    let error = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("the stream ended cleanly"),
            Err(err) => break err,
        }
    };
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    let text = String::from_utf8(received).unwrap();
    let events = sse(&text);
    assert_eq!(events.len(), 2, "{text}");
    assert!(!text.contains("[DONE]") && !text.contains("\"usage\":{"));

    let err = client()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .header(BEARER.0, BEARER.1)
        .body(serde_json::to_vec(&chat_body("gpt-cut", false, false)).unwrap())
        .send()
        .await
        .expect_err("no response to a cut JSON request");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );

    // Anthropic: message_start and content_block_start, then nothing.
    let body = json!({"model": "claude-cut", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut resp = client()
        .post(format!("{}/v1/messages", mock.url()))
        .header(X_API_KEY.0, X_API_KEY.1)
        .header(VERSION.0, VERSION.1)
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    let mut received = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        received.extend_from_slice(&chunk);
    }
    let names: Vec<String> = sse(&String::from_utf8(received).unwrap())
        .into_iter()
        .filter_map(|(e, _)| e)
        .collect();
    assert_eq!(names, ["message_start", "content_block_start"]);
}

#[tokio::test]
async fn hang_never_answers() {
    let mock = spawn(MockOptions::default());
    let err = client()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .header(BEARER.0, BEARER.1)
        .body(serde_json::to_vec(&chat_body("gpt-hang", true, true)).unwrap())
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("a hung request times out");
    assert!(err.is_timeout(), "{err:?}");
    // The mock still serves others, and it saw the hung request.
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[BEARER],
        &chat_body("gpt-4o", false, false),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn slow_models_space_chunks_and_log_each_one() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.log");
    let delay = Duration::from_millis(60);
    let mock = spawn(MockOptions {
        chunk_delay: delay,
        events: Some(events.clone()),
        ..MockOptions::default()
    });
    let body = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    let started = Instant::now();
    let mut resp = client()
        .post(format!(
            "{}/v1beta/models/gemini-slow:streamGenerateContent?alt=sse",
            mock.url()
        ))
        .header(GOOG.0, GOOG.1)
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    // Interleave our own lines with the mock's, as an agent sharing the file would.
    let mut chunks = 0;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        chunks += chunk.windows(4).filter(|w| w == b"\r\n\r\n").count();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .unwrap();
        std::io::Write::write_all(&mut file, format!("client got chunk {chunks}\n").as_bytes())
            .unwrap();
    }
    let elapsed = started.elapsed();
    let n = REPLY_PIECES.len();
    assert_eq!(chunks, n);
    assert!(elapsed >= delay * (n as u32 - 1), "{elapsed:?}");

    let log = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let mut expected = Vec::new();
    for i in 1..=n {
        expected.push(format!("mock sent chunk {i} of {n}"));
        expected.push(format!("client got chunk {i}"));
    }
    assert_eq!(lines, expected);

    // Fast models are not paced and JSON answers are not logged.
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[BEARER],
        &chat_body("gpt-4o", false, false),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        std::fs::read_to_string(&events).unwrap().lines().count(),
        2 * n
    );
}

#[tokio::test]
async fn requests_are_recorded_with_headers_and_bodies() {
    let mock = spawn(MockOptions::default());
    let chat = chat_body("gpt-4o-mini", false, false);
    post(
        &mock,
        "/v1/chat/completions",
        &[BEARER, ("X-Custom", "Yes")],
        &chat,
    )
    .await;
    post(
        &mock,
        "/v1beta/models/gemini-2.0-flash:generateContent?key=sk-mock-root",
        &[],
        &json!({"contents": []}),
    )
    .await;

    let recorded = get(&mock, "/_mock/requests", &[]).await.json();
    let recorded = recorded.as_array().unwrap();
    assert_eq!(recorded.len(), 2, "control requests are not recorded");
    let first = &recorded[0];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/v1/chat/completions");
    assert!(first["query"].is_null());
    assert_eq!(first["headers"]["authorization"], "Bearer sk-mock-root");
    assert_eq!(first["headers"]["x-custom"], "Yes");
    let body: Value = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, chat);
    assert_eq!(recorded[1]["query"], "key=sk-mock-root");
    let typed = mock.requests();
    assert_eq!(
        typed[0].header("authorization"),
        Some("Bearer sk-mock-root")
    );
    assert_eq!(typed[0].json(), Some(chat.clone()));

    let cleared = send(
        reqwest::Method::DELETE,
        format!("{}/_mock/requests", mock.url()),
        &[],
        None,
    )
    .await;
    assert_eq!(cleared.json(), json!({"cleared": 2}));
    assert!(mock.requests().is_empty());

    // Big bodies keep only their length.
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(70_000)}]});
    let reply = post(&mock, "/v1/chat/completions", &[BEARER], &big).await;
    assert_eq!(reply.json()["usage"]["prompt_tokens"], 70_000 / 4);
    let typed = mock.requests();
    assert!(typed[0].body.is_none());
    assert!(typed[0].body_len > 70_000);

    let quiet = spawn(MockOptions {
        record: false,
        ..MockOptions::default()
    });
    post(&quiet, "/v1/chat/completions", &[BEARER], &chat).await;
    assert!(quiet.requests().is_empty());
}

#[tokio::test]
async fn control_api_adds_keys() {
    let mock = spawn(MockOptions::default());
    let reply = post(
        &mock,
        "/_mock/keys",
        &[],
        &json!({"value": "sk-pasted", "name": "pasted"}),
    )
    .await;
    assert_eq!(reply.status, 201);
    let key = reply.json();
    assert_eq!(key["value"], "sk-pasted");
    assert_eq!(key["status"], "active");
    let reply = post(
        &mock,
        "/v1/messages",
        &[("x-api-key", "sk-pasted"), VERSION],
        &json!({"model": "claude", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(mock.keys().len(), 2);
    assert_eq!(
        mock.key_id("sk-pasted"),
        key["id"].as_str().map(str::to_owned)
    );
}

/// Gemini CLI's model router asks for JSON of a schema and retries until it parses; the mock
/// answers with the smallest value of that shape, whole or streamed, and `/_mock/usage` adds
/// up what every answer reported.
#[tokio::test]
async fn gemini_structured_output_follows_the_schema_and_usage_adds_up() {
    let mock = spawn(MockOptions::default());
    let body = json!({
        "contents": [{"role": "user", "parts": [{"text": "say hi"}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {
                "type": "OBJECT",
                "properties": {
                    "complexity_reasoning": {"type": "STRING"},
                    "complexity_score": {"type": "INTEGER"},
                    "mode": {"type": "STRING", "enum": ["fast", "slow"]}
                },
                "required": ["complexity_reasoning", "complexity_score"]
            }
        }
    });
    let reply = post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &[GOOG],
        &body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.json()["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["complexity_score"], 1);
    assert_eq!(answer["complexity_reasoning"], crate::REPLY_TEXT);
    assert_eq!(answer["mode"], "fast");

    let reply = post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[GOOG],
        &body,
    )
    .await;
    let streamed: String = sse(&reply.text())
        .iter()
        .map(|(_, data)| {
            data_json(data)["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(streamed, text);

    let usage = get(&mock, "/_mock/usage", &[]).await.json();
    let input = expected_input_tokens(&["say hi"]);
    assert_eq!(usage["answers"], 2);
    assert_eq!(usage["input_tokens"], 2 * input);
    assert_eq!(usage["output_tokens"], 2 * crate::OUTPUT_TOKENS);
    let cleared = send(
        reqwest::Method::DELETE,
        format!("{}/_mock/requests", mock.url()),
        &[],
        None,
    )
    .await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert_eq!(get(&mock, "/_mock/usage", &[]).await.json()["answers"], 0);
}
