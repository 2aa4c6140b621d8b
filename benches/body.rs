//! The request-body parse on the proxy's path: a coding agent's conversation of 4 KB messages
//! full of `\n` and `\"` (the body `scripts/bench_nginx.py` sends), read whole with
//! [`json::parse`] and skimmed for the checks with [`json::skim`], against serde_json's own
//! parse of the same bytes. And the meter's read of an answer's usage: a chat completion as
//! `scripts/bench_nginx.py`'s upstream sends it, and one with 16 KB of such text.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use till::json;
use till::providers::ApiFamily;
use till::proxy::inspect::FREE_TEXT;
use till::proxy::meter::Meter;

/// A chat request of about `size` bytes: messages of 4 KB, alternating roles, whose text is
/// words with a quoted one and a newline every ten or so (as escapes in the JSON).
fn chat_body(size: usize) -> Vec<u8> {
    let messages: Vec<_> = texts(size)
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            serde_json::json!({"role": role, "content": text})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"model": "gpt-4o-mini", "messages": messages})).unwrap()
}

/// Texts of 4 KB that fill about `size` bytes of JSON.
fn texts(size: usize) -> Vec<String> {
    let words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "the",
        "lazy",
        "dog,",
        "\"quoted\"",
        "and",
        "a\nnewline;",
    ];
    let mut state = 7u64;
    let mut pick = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        words[(state >> 33) as usize % words.len()]
    };
    let mut messages = Vec::new();
    let mut total = 0;
    while total + 200 < size {
        let n = (size - 200 - total).min(4096);
        let mut text = String::new();
        while text.len() < n {
            text.push_str(pick());
            text.push(' ');
        }
        total += serde_json::to_string(&text).unwrap().len() + 30;
        messages.push(text);
    }
    messages
}

/// A chat completion whose answer is `text`.
fn completion(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }))
    .unwrap()
}

fn answer(c: &mut Criterion) {
    let mut g = c.benchmark_group("answer_usage");
    let long = texts(16_600).concat();
    for (name, body) in [
        ("small", completion("Hello from the benchmark.")),
        ("16KB", completion(&long)),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        let body = Bytes::from(body);
        g.bench_with_input(BenchmarkId::new("meter", name), &body, |b, body| {
            b.iter(|| {
                let mut m = Meter::new(ApiFamily::Openai, false, false);
                m.feed(body.clone());
                m.finish().1.unwrap()
            });
        });
        g.bench_with_input(BenchmarkId::new("serde_json", name), &body, |b, body| {
            b.iter(|| {
                let v = serde_json::from_slice::<serde_json::Value>(body).unwrap();
                ApiFamily::Openai.wire().json_usage(&v).unwrap()
            });
        });
    }
    g.finish();
}

fn body(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_body");
    for size in [100_000, 1_000_000] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("skim", size), &body, |b, body| {
            b.iter(|| json::skim(body, FREE_TEXT).unwrap());
        });
        g.bench_with_input(BenchmarkId::new("parse", size), &body, |b, body| {
            b.iter(|| json::parse(body).unwrap());
        });
        g.bench_with_input(BenchmarkId::new("serde_json", size), &body, |b, body| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(body).unwrap());
        });
    }
    g.finish();
}

criterion_group!(benches, body, answer);
criterion_main!(benches);
