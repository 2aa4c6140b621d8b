//! What till's proxy adds to a request at a fixed request rate, with the ledger writing a row
//! per request and without: the question is whether the ledger costs anything measurable.
//!
//! ```text
//! cargo bench --bench proxy_rate [-- --rate 500 --seconds 5 --rounds 6]
//! ```
//!
//! Three targets share one mock provider: the mock itself, a proxy without the ledger writer
//! and a proxy with it (each proxy on its own two-worker runtime, as `till serve` runs). The
//! generator has a thread of its own and sends on a fixed schedule whether or not earlier
//! answers have come back (open loop). Each round runs every target for `--seconds` at
//! `--rate`, in an order that rotates from round to round so that drift in the machine's load
//! falls on all three alike. The report gives each round's percentiles, then per target the
//! median over rounds with the lowest and highest round, the ledger's difference measured
//! within each round (its noise is how much that difference moves between rounds), and the
//! process's CPU time per request for each target.
//!
//! `cargo test` runs bench targets without `--bench`; then this does one short round at a low
//! rate and fails if any request did not get a 200.

mod support;

use std::time::{Duration, Instant};

struct Target {
    name: &'static str,
    url: String,
    key: String,
}

#[derive(Clone, Copy)]
struct Round {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    /// Process CPU time (user + system, all threads) per request, in µs.
    cpu: f64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut bench = false;
    let (mut rate, mut seconds, mut rounds) = (500.0_f64, 5.0_f64, 6_usize);
    let mut set = false;
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> f64 {
            let v = args
                .next()
                .unwrap_or_else(|| panic!("{name} needs a value"));
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        };
        match a.as_str() {
            "--bench" => bench = true,
            "--rate" => (rate, set) = (value("--rate"), true),
            "--seconds" => (seconds, set) = (value("--seconds"), true),
            "--rounds" => (rounds, set) = (value("--rounds") as usize, true),
            // Filters and flags cargo passes to every bench target.
            _ => {}
        }
    }
    if !bench && !set {
        (rate, seconds, rounds) = (200.0, 0.5, 1);
    }
    assert!(
        rate > 0.0 && seconds > 0.0 && rounds > 0,
        "rate, seconds and rounds must be > 0"
    );

    let mock = support::mock();
    let off_rt = proxy_runtime("proxy-ledger-off");
    let on_rt = proxy_runtime("proxy-ledger-on");
    let off = support::proxy(&off_rt, &mock, false);
    let on = support::proxy(&on_rt, &mock, true);
    let targets = [
        Target {
            name: "direct",
            url: format!("{}/v1/chat/completions", mock.url()),
            key: till_mock::DEFAULT_KEY.to_string(),
        },
        Target {
            name: "ledger off",
            url: off.chat_url.clone(),
            key: off.key.clone(),
        },
        Target {
            name: "ledger on",
            url: on.chat_url.clone(),
            key: on.key.clone(),
        },
    ];
    let generator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();

    println!(
        "proxy_rate: {rate} req/s open loop, {seconds} s per target per round, {rounds} round(s), {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let warm = if bench { 1.0 } else { 0.2 };
    for t in &targets {
        generator.block_on(run(&client, t, rate, warm));
    }
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); targets.len()];
    println!(
        "{:<6} {:<11} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "round", "target", "p50 µs", "p90 µs", "p99 µs", "max µs", "CPU µs/req"
    );
    for r in 0..rounds {
        for k in 0..targets.len() {
            let i = (k + r) % targets.len();
            let round = generator.block_on(run(&client, &targets[i], rate, seconds));
            println!(
                "{:<6} {:<11} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>10.0}",
                r + 1,
                targets[i].name,
                round.p50,
                round.p90,
                round.p99,
                round.max,
                round.cpu
            );
            results[i].push(round);
        }
    }

    println!();
    println!("median over rounds [lowest, highest round]:");
    for (t, rs) in targets.iter().zip(&results) {
        println!(
            "  {:<11} p50 {}  p99 {}  CPU {} µs/req",
            t.name,
            spread(rs.iter().map(|r| r.p50).collect(), false),
            spread(rs.iter().map(|r| r.p99).collect(), false),
            spread(rs.iter().map(|r| r.cpu).collect(), false)
        );
    }
    let diff = |a: usize, b: usize, f: fn(&Round) -> f64| -> Vec<f64> {
        results[a]
            .iter()
            .zip(&results[b])
            .map(|(x, y)| f(x) - f(y))
            .collect()
    };
    println!("differences within each round, median [lowest, highest]:");
    for (what, a, b) in [("proxy (off − direct)", 1, 0), ("ledger (on − off)", 2, 1)] {
        println!(
            "  {what:<21} p50 {}  p99 {}  CPU {} µs/req",
            spread(diff(a, b, |r| r.p50), true),
            spread(diff(a, b, |r| r.p99), true),
            spread(diff(a, b, |r| r.cpu), true),
        );
    }
}

/// A runtime like `till serve`'s, its threads named for profiles.
fn proxy_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `rate × seconds` requests to `t` on a fixed schedule and measures each from the
/// moment it was sent to the end of its answer.
async fn run(client: &reqwest::Client, t: &Target, rate: f64, seconds: f64) -> Round {
    let n = (rate * seconds).round().max(1.0) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let cpu_before = process_cpu();
    let start = tokio::time::Instant::now() + Duration::from_millis(2);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let sent = Instant::now();
        let request = client
            .post(&t.url)
            .bearer_auth(&t.key)
            .header("content-type", "application/json")
            .body(support::BODY)
            .send();
        tasks.push(tokio::spawn(async move {
            let response = request.await.map_err(|e| e.to_string())?;
            let status = response.status();
            response.bytes().await.map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("status {status}"));
            }
            Ok::<_, String>(sent.elapsed())
        }));
    }
    let mut took = Vec::with_capacity(n);
    for task in tasks {
        match task.await.unwrap() {
            Ok(d) => took.push(d.as_secs_f64() * 1e6),
            Err(e) => panic!("{}: a request failed: {e}", t.name),
        }
    }
    let cpu = (process_cpu() - cpu_before).as_secs_f64() * 1e6 / n as f64;
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    Round {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: took[took.len() - 1],
        cpu,
    }
}

/// User plus system CPU time of this whole process so far.
#[cfg(unix)]
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Not measured here (the report then shows 0).
#[cfg(not(unix))]
fn process_cpu() -> Duration {
    Duration::ZERO
}

/// "median [lowest, highest]", with a sign when `signed` (differences).
fn spread(mut v: Vec<f64>, signed: bool) -> String {
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let (lo, hi) = (v[0], v[v.len() - 1]);
    if signed {
        format!("{median:+.0} [{lo:+.0}, {hi:+.0}]")
    } else {
        format!("{median:.0} [{lo:.0}, {hi:.0}]")
    }
}
