//! The request-body parse on the proxy's path: a coding agent's conversation of 4 KB messages
//! full of `\n` and `\"` (the body `scripts/bench_nginx.py` sends), read whole with
//! [`json::parse`] and skimmed for the checks with [`json::skim`], against serde_json's own
//! parse of the same bytes.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use till::proxy::inspect::{FREE_TEXT, json};

/// A chat request of about `size` bytes: messages of 4 KB, alternating roles, whose text is
/// words with a quoted one and a newline every ten or so (as escapes in the JSON).
fn chat_body(size: usize) -> Vec<u8> {
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
        let role = if messages.len() % 2 == 0 {
            "user"
        } else {
            "assistant"
        };
        total += serde_json::to_string(&text).unwrap().len() + 30;
        messages.push(serde_json::json!({"role": role, "content": text}));
    }
    serde_json::to_vec(&serde_json::json!({"model": "gpt-4o-mini", "messages": messages})).unwrap()
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

criterion_group!(benches, body);
criterion_main!(benches);
