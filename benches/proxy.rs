//! One request's round trip straight to the mock provider and through till's proxy, with the
//! ledger writing request rows and without: what the proxy adds, and what the ledger adds to
//! that. Closed loop, one keep-alive connection, everything in this process on loopback.
//! `benches/proxy_rate.rs` measures the same at a fixed request rate.

mod support;

use criterion::{Criterion, criterion_group, criterion_main};

fn round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let mock = support::mock();
    let direct_url = format!("{}/v1/chat/completions", mock.url());
    let off = support::proxy(&rt, &mock, false);
    let on = support::proxy(&rt, &mock, true);

    let mut g = c.benchmark_group("chat_round_trip");
    let send = |url: String, key: String| {
        let client = client.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(support::BODY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }
    };
    g.bench_function("direct", |b| {
        b.to_async(&rt)
            .iter(|| send(direct_url.clone(), till_mock::DEFAULT_KEY.to_string()));
    });
    g.bench_function("proxy_ledger_off", |b| {
        b.to_async(&rt)
            .iter(|| send(off.chat_url.clone(), off.key.clone()));
    });
    g.bench_function("proxy_ledger_on", |b| {
        b.to_async(&rt)
            .iter(|| send(on.chat_url.clone(), on.key.clone()));
    });
    g.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
