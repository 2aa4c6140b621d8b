//! Ledger throughput: the writer thread's rows per second, one budget reservation, and one
//! per-minute rate check (what a key with `--rpm`/`--tpm` adds to each request).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use till::ledger::Ledger;
use till::ledger::counters::LevelCharge;
use till::ledger::rates::{RateCharge, RateKind};
use till::ledger::writer::{RequestRow, Writer};

fn row(i: u64) -> RequestRow {
    RequestRow {
        at: 1_767_225_600 + i,
        binding: Some("ab".repeat(32)),
        provider: "openai".into(),
        model: Some("gpt-4o-mini".into()),
        endpoint: Some("inference"),
        status: 200,
        input_tokens: 120,
        output_tokens: 40,
        cost_micros: 42,
        latency_ms: 1.5,
        ttfb_ms: Some(0.8),
        outcome: Some("complete"),
        lineage: Some("abababababab".into()),
        ..Default::default()
    }
}

fn writer(c: &mut Criterion) {
    const ROWS: u64 = 20_000;
    let mut g = c.benchmark_group("ledger_writer");
    g.throughput(Throughput::Elements(ROWS));
    g.sample_size(10);
    g.bench_function("write_20k_rows", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let w = Writer::start(&dir.path().join("l.sqlite3")).unwrap();
                (dir, w)
            },
            |(dir, w)| {
                let h = w.handle();
                for i in 0..ROWS {
                    h.row(row(i));
                }
                w.finish();
                dir
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

fn reserve(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite3")).unwrap();
    let levels = [LevelCharge {
        binding: "cd".repeat(32),
        budget_micros: Some(u64::MAX / 2),
        budget_tokens: None,
        max_requests: None,
    }];
    c.bench_function("budget_reserve_one_level", |b| {
        b.iter(|| {
            ledger
                .reserve(&levels, 10, 10, &Default::default())
                .unwrap()
                .unwrap()
        });
    });
}

fn rates(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.sqlite3")).unwrap();
    let rules = [
        RateCharge {
            binding: "ef".repeat(32),
            kind: RateKind::Requests,
            limit: u64::MAX / 2,
        },
        RateCharge {
            binding: "ef".repeat(32),
            kind: RateKind::Tokens,
            limit: u64::MAX / 2,
        },
    ];
    // The clock moves on one second every 50 checks, so the window fills to its full 61
    // rows per rule and old seconds are deleted, as under a steady load.
    let mut n = 0u64;
    c.bench_function("rate_admit_rpm_and_tpm", |b| {
        b.iter(|| {
            n += 1;
            ledger
                .admit_rates(&rules, 100, 1_800_000_000 + n / 50)
                .unwrap()
                .unwrap()
        });
    });
}

criterion_group!(benches, writer, reserve, rates);
criterion_main!(benches);
