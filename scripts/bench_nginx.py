#!/usr/bin/env python3
"""till's proxy beside nginx, in interleaved rounds. Run it through scripts/bench-nginx.sh,
which installs oha and nginx and builds the binaries.

    scripts/bench_nginx.py --till PATH --probe PATH [--nginx PATH] [--rounds 3] [--seconds 10]
                           [--quick] [--json FILE]

One run starts, all on 127.0.0.1:

- a static upstream: nginx answering POST /v1/chat/completions with a fixed chat completion
  (one worker, no access log), whatever the body;
- an nginx reverse proxy in front of it that only overwrites `Authorization` (two workers,
  keep-alive to the upstream, request bodies buffered in memory, as till buffers them);
- two `till serve` (release build, throwaway TILL_HOME, file store unlocked by
  TILL_PASSPHRASE, a key from `till key create --scope openai --scope probe`): `till` over a
  fresh ledger, and `till-100k` over a ledger seeded with 100,000 request rows and 10,000
  revoked keys (plain SQL into the ledger file before it starts);
- for streaming, examples/stream_probe, which is both the SSE upstream and the client
  (configured in till and nginx as the OpenAI-compatible provider `probe`).

Each round runs every measurement against every target, in an order that rotates from round
to round, so a change in the machine's load falls on all targets alike:

- open-loop latency at 50 and 500 req/s (oha -q with --latency-correction): p50 and p99, and
  what each proxy adds over direct within the round;
- closed-loop throughput (oha -c 32 -z), and each proxy's CPU time per request (from /proc);
- 100 KB and 1 MB JSON request bodies at a fixed rate: p50/p99 added over direct.

Then the streaming probe runs its own rounds (request by request across targets): time to the
first event and each event's delay (written by the upstream → read by the client).

Tables give medians over rounds: of each latency added over direct within its round, of each
throughput, and of till ÷ nginx and till-100k ÷ till within each round. `--report FILE`
prints the tables of an earlier `--json FILE` again. Exit code 0 when every request got a 200, 1 otherwise.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT_KEY = "sk-bench-root-0123456789"
PASSPHRASE = "bench-passphrase"
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the benchmark."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    },
    separators=(",", ":"),
)
SCRUB = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "TILL_KEY", "TILL_PROXY_URL", "TILL_PROFILE",
    "PROBE_API_KEY", "PROBE_BASE_URL",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def chat_body(size):
    """A chat completion request of about `size` bytes: a conversation of 4 KB messages."""
    words = "the quick brown fox jumps over the lazy dog, \"quoted\" and a\nnewline; ".split(" ")
    rnd = random.Random(size)
    messages = []
    total = 0
    while total < size - 200:
        n = min(4096, size - 200 - total)
        text = []
        length = 0
        while length < n:
            w = rnd.choice(words)
            text.append(w)
            length += len(w) + 1
        content = " ".join(text)
        role = "user" if len(messages) % 2 == 0 else "assistant"
        messages.append({"role": role, "content": content})
        total += len(json.dumps(content)) + 30
    return json.dumps({"model": "gpt-4o-mini", "messages": messages}, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# The servers.


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="till-bench-nginx.")
        self.procs = []
        self.env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        self.env.update(TILL_STORE="file", TILL_PASSPHRASE=PASSPHRASE, NO_COLOR="1")
        self.up_port = free_port()
        self.px_port = free_port()
        self.probe_port = free_port()

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.work, ignore_errors=True)

    def spawn(self, cmd, env=None, **kw):
        p = subprocess.Popen(cmd, env=env or self.env, **kw)
        self.procs.append(p)
        return p

    def nginx(self, name, workers, http_block):
        d = os.path.join(self.work, name)
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                f"""daemon off;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  client_max_body_size 64m;
  client_body_buffer_size 2m;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
{http_block}
}}
"""
            )
        return self.spawn(
            [self.args.nginx, "-p", d, "-c", conf, "-e", f"{d}/error.log"],
            stdout=subprocess.DEVNULL,
        )

    def start_nginx(self):
        up = self.nginx(
            "upstream",
            1,
            f"""  server {{
    listen 127.0.0.1:{self.up_port};
    location = /v1/chat/completions {{
      default_type application/json;
      return 200 '{COMPLETION}';
    }}
  }}""",
        )
        wait_port(self.up_port, up, "nginx (upstream)")
        px = self.nginx(
            "proxy",
            2,
            f"""  upstream up {{ server 127.0.0.1:{self.up_port}; keepalive 64; }}
  upstream probe {{ server 127.0.0.1:{self.probe_port}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{self.px_port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Authorization "Bearer {ROOT_KEY}";
    location /openai/ {{ proxy_pass http://up/; }}
    location /probe/ {{ proxy_pass http://probe/; proxy_buffering off; }}
  }}""",
        )
        wait_port(self.px_port, px, "nginx (proxy)")
        self.nginx_master = px

    def till_home(self, name):
        home = os.path.join(self.work, name)
        os.makedirs(home)
        with open(os.path.join(home, "config.toml"), "w") as f:
            f.write(
                f'[providers.openai]\nbase_url = "http://127.0.0.1:{self.up_port}"\n'
                f'[providers.probe]\napi = "openai"\nbase_url = "http://127.0.0.1:{self.probe_port}"\n'
            )
        env = dict(self.env, TILL_HOME=home)
        for provider in ("openai", "probe"):
            subprocess.run(
                [self.args.till, "add", provider, "--no-verify"],
                input=ROOT_KEY.encode(), env=env, check=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        out = subprocess.run(
            [self.args.till, "key", "create", "--name", "bench", "--scope", "openai",
             "--scope", "probe", "--ttl", "12h", "--json"],
            env=env, check=True, capture_output=True,
        ).stdout
        key = json.loads(out)["key"]
        return home, env, key

    def start_till(self, env, binary=None):
        p = self.spawn(
            [binary or self.args.till, "serve", "--listen", "127.0.0.1:0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        url = p.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError("till serve did not print its URL")
        return p, int(url.rsplit(":", 1)[1])


def seed(home, rows, revoked):
    """`rows` request rows over the last 30 days and `revoked` revoked keys, in plain SQL."""
    db = sqlite3.connect(os.path.join(home, "data", "ledger.sqlite3"))
    now = int(time.time())
    rnd = random.Random(7)
    bindings = ["%064x" % rnd.getrandbits(256) for _ in range(revoked)]
    with db:
        db.executemany(
            "INSERT INTO keys (binding, name, kid, scope, caveats, created_at, expires_at) "
            "VALUES (?, NULL, '00000000', 'openai', '', ?, ?)",
            [(b, now - 86400, now + 3600) for b in bindings],
        )
        db.executemany(
            "INSERT INTO revocations (binding, revoked_at) VALUES (?, ?)",
            [(b, now - rnd.randrange(86400)) for b in bindings],
        )
        db.executemany(
            "INSERT INTO requests (at, binding, provider, model, endpoint, status, input_tokens,"
            " output_tokens, cost_micros, latency_ms, ttfb_ms, outcome, lineage)"
            " VALUES (?, ?, 'openai', 'gpt-4o-mini', 'inference', 200, 12, 6, 5, 1.0, 0.5,"
            " 'completed', ?)",
            [
                (now - rnd.randrange(30 * 86400), b, b[:12])
                for b in (bindings[rnd.randrange(revoked)] for _ in range(rows))
            ],
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


# ---------------------------------------------------------------------------------------------
# Measuring.


def proc_cpu(pids):
    """User + system CPU seconds of `pids` (each a process; threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except OSError:
                pass
    return out


def oha(args, url, key, body_file, extra):
    cmd = [
        args.oha, "--no-tui", "--output-format", "json", "-m", "POST",
        "-H", f"authorization: Bearer {key}", "-H", "content-type: application/json",
        "-D", body_file, *extra, url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    codes = r.get("statusCodeDistribution", {})
    bad = {c: n for c, n in codes.items() if c != "200"}
    # oha cuts the requests still in flight when -z ends; those are not failures.
    errors = {e: n for e, n in r.get("errorDistribution", {}).items()
              if "aborted due to deadline" not in e}
    return r, bad, errors


class Done(Exception):
    """The measurements asked for are done."""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--till")
    ap.add_argument("--probe")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--oha", default=shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10, help="per open-loop measurement")
    ap.add_argument("--quick", action="store_true", help="short measurements, to try the script")
    ap.add_argument("--only", default="", help="comma-separated targets to run (default all)")
    ap.add_argument("--tests", default="",
                    help="comma-separated measurements to run: rate50, rate500, closed, 100KB, "
                         "1MB, stream (default all)")
    ap.add_argument("--compare", metavar="PATH", action="append", default=[],
                    help="another till binary, measured as target `till-b` over a fresh ledger "
                         "(to compare two builds in the same rounds); given again, `till-c`, …")
    ap.add_argument("--json", help="write every raw figure to this file")
    ap.add_argument("--report", help="print the tables of an earlier run's --json file, and exit")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            raw = json.load(f)
        report(raw, list(raw["rounds"][0]["closed"]))
        return 0
    if not args.till or not args.probe:
        ap.error("--till and --probe are needed to measure")
    secs = 2 if args.quick else args.seconds
    tput_secs = 2 if args.quick else max(3, secs / 2)

    b = Bench(args)
    failed = []
    raw = {"load_before": os.getloadavg(), "cpus": os.cpu_count(), "rounds": []}
    try:
        b.start_nginx()
        _, env_a, key_a = b.till_home("till-empty")
        home_b, env_b, key_b = b.till_home("till-100k")
        seed(home_b, 100_000, 10_000)
        till_a, port_a = b.start_till(env_a)
        till_b, port_b = b.start_till(env_b)
        others = {}
        for i, binary in enumerate(args.compare):
            name = f"till-{chr(ord('b') + i)}"
            _, env_c, key_c = b.till_home(name)
            till_c, port_c = b.start_till(env_c, binary)
            others[name] = (port_c, key_c, till_c.pid)
        path = "/v1/chat/completions"
        targets = {
            "direct": (f"http://127.0.0.1:{b.up_port}{path}", "none", None),
            "nginx": (f"http://127.0.0.1:{b.px_port}/openai{path}", "none", b.nginx_master.pid),
            "till": (f"http://127.0.0.1:{port_a}/openai{path}", key_a, till_a.pid),
            "till-100k": (f"http://127.0.0.1:{port_b}/openai{path}", key_b, till_b.pid),
        }
        for name, (port_c, key_c, pid_c) in others.items():
            targets[name] = (f"http://127.0.0.1:{port_c}/openai{path}", key_c, pid_c)
        if args.only:
            keep = args.only.split(",")
            targets = {k: v for k, v in targets.items() if k in keep or k == "direct"}
        bodies = {}
        for name, size in (("small", 0), ("100KB", 100_000), ("1MB", 1_000_000)):
            data = chat_body(size) if size else json.dumps(
                {"model": "gpt-4o-mini",
                 "messages": [{"role": "user", "content": "Say hello to the benchmark."}]},
                separators=(",", ":")).encode()
            fn = os.path.join(b.work, f"body-{name}.json")
            with open(fn, "wb") as f:
                f.write(data)
            bodies[name] = fn
        tests = [
            ("rate50", "small", ["-q", "50", "-c", "4", "-z", f"{secs}s", "--latency-correction"]),
            ("rate500", "small", ["-q", "500", "-c", "16", "-z", f"{secs}s", "--latency-correction"]),
            ("closed", "small", ["-c", "32", "-z", f"{tput_secs}s"]),
            ("100KB", "100KB", ["-q", "50", "-c", "4", "-z", f"{secs / 2}s", "--latency-correction"]),
            ("1MB", "1MB", ["-q", "20", "-c", "4", "-z", f"{secs / 2}s", "--latency-correction"]),
        ]
        if args.tests:
            keep = args.tests.split(",")
            tests = [t for t in tests if t[0] in keep]
        # Warm every path (connections, caches) before measuring.
        for name, (url, key, _) in targets.items():
            for body in bodies.values():
                oha(args, url, key, body, ["-n", "50", "-c", "4"])
        names = list(targets)
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[: rnd % len(names)]
            this = {"load": os.getloadavg()}
            for test, body, extra in tests:
                this[test] = {}
                for name in order:
                    url, key, pid = targets[name]
                    pids = [pid] + (children(pid) if name == "nginx" else []) if pid else []
                    cpu0 = proc_cpu(pids)
                    r, bad, errors = oha(args, url, key, bodies[body], extra)
                    cpu = proc_cpu(pids) - cpu0
                    if bad or errors:
                        failed.append((rnd, test, name, bad, errors))
                    s, lp = r["summary"], r["latencyPercentiles"]
                    n = sum(r.get("statusCodeDistribution", {}).values()) or 1
                    this[test][name] = {
                        "p50_us": lp["p50"] * 1e6,
                        "p99_us": lp["p99"] * 1e6,
                        "rps": s["requestsPerSec"],
                        "cpu_us_per_req": cpu * 1e6 / n if pids else None,
                    }
                    print(f"round {rnd + 1} {test:8} {name:10} p50 {lp['p50'] * 1e6:8.0f} µs  "
                          f"p99 {lp['p99'] * 1e6:8.0f} µs  {s['requestsPerSec']:9.0f} req/s",
                          file=sys.stderr)
            raw["rounds"].append(this)
        # Streaming: the probe is the upstream of the `probe` provider and the client.
        if args.tests and "stream" not in args.tests.split(","):
            raise Done
        probe_targets = [f"direct=http://127.0.0.1:{b.probe_port}/v1/chat/completions"]
        pt = {"nginx": (b.px_port, "none"), "till": (port_a, key_a), "till-100k": (port_b, key_b)}
        for name, (port_c, key_c, _) in others.items():
            pt[name] = (port_c, key_c)
        for name in names[1:]:
            port, key = pt[name]
            probe_targets += [f"{name}=http://127.0.0.1:{port}/probe/v1/chat/completions", "--key", key]
        out = subprocess.run(
            [args.probe, "--listen", f"127.0.0.1:{b.probe_port}", "--rounds", str(args.rounds),
             "--requests", "30" if args.quick else "150", "--chunks", "20", "--gap-us", "2000",
             *probe_targets],
            capture_output=True, text=True, check=True,
        ).stdout
        raw["stream"] = [json.loads(line) for line in out.splitlines() if line.strip()]
    except Done:
        pass
    finally:
        raw["load_after"] = os.getloadavg()
        b.close()
    report(raw, list(targets))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    if failed:
        print(f"non-200 answers or errors: {failed[:5]}", file=sys.stderr)
        return 1
    return 0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def report(raw, names):
    rounds = raw["rounds"]
    proxies = [n for n in names if n != "direct"]

    def added(test, name, field):
        return med([r[test][name][field] - r[test]["direct"][field] for r in rounds])

    def plain(test, name, field):
        return med([r[test][name][field] for r in rounds])

    la, lb = raw["load_before"], raw["load_after"]
    print(f"\n{len(rounds)} interleaved rounds, {raw['cpus']} CPUs; load average "
          f"{la[0]:.2f} before, {lb[0]:.2f} after (1-min)")
    print("Medians over rounds of each figure; 'added' = proxy − direct within the round.\n")
    head = "| measure | direct | " + " | ".join(proxies) + " | till ÷ nginx |"
    print(head)
    print("|" + "---|" * (3 + len(proxies)))

    def row(label, vals, ratio, fmt="{:.0f}"):
        cells = [fmt.format(v) if isinstance(v, (int, float)) else v for v in vals]
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")

    def ratio(a, b):
        return f"{a / b:.2f}" if b and b == b and a == a and b > 0 else "–"

    for test, label in (("rate50", "50 req/s"), ("rate500", "500 req/s"),
                        ("100KB", "100 KB body, 50 req/s"), ("1MB", "1 MB body, 20 req/s")):
        if test not in rounds[0]:
            continue
        for field in ("p50_us", "p99_us"):
            d = plain(test, "direct", field)
            vals = [d] + [added(test, n, field) for n in proxies]
            r = ratio(vals[proxies.index("till") + 1], vals[1]) if "till" in proxies else "–"
            row(f"{label}: {field[:3]} µs (direct) / added", [f"{d:.0f}"] + [f"{v:+.0f}" for v in vals[1:]], r)
    def within(test, field):
        """Median over rounds of till ÷ nginx within each round."""
        if "till" not in names or "nginx" not in names:
            return "–"
        return f"{med([r[test]['till'][field] / r[test]['nginx'][field] for r in rounds]):.2f}"

    if "closed" in rounds[0]:
        tp = [plain("closed", n, "rps") for n in names]
        row("closed loop, 32 connections: req/s", tp, within("closed", "rps"))
        cpu = [plain("closed", n, "cpu_us_per_req") for n in proxies]
        row("closed loop: proxy CPU µs per request", ["–"] + [f"{c:.1f}" for c in cpu],
            within("closed", "cpu_us_per_req"))
    stream = raw.get("stream", [])
    if stream:
        for field, label in (("first_p50_us", "stream: first event p50 µs"),
                             ("first_p99_us", "stream: first event p99 µs"),
                             ("event_p50_us", "stream: per-event delay p50 µs"),
                             ("event_p99_us", "stream: per-event delay p99 µs")):
            by = {}
            for n in names:
                rs = sorted({s["round"] for s in stream})
                vals = []
                for rr in rs:
                    me = [s for s in stream if s["round"] == rr and s["target"] == n]
                    di = [s for s in stream if s["round"] == rr and s["target"] == "direct"]
                    if me and di:
                        vals.append(me[0][field] - (0 if n == "direct" else di[0][field]))
                by[n] = med(vals)
            cells = [f"{by['direct']:.0f}"] + [f"{by[n]:+.0f}" for n in proxies]
            row(label + " (direct) / added", cells,
                f"{by['till'] - by['nginx']:+.0f} µs vs nginx" if "till" in by else "–")
    if "till-100k" in names and "till" in names:
        print("\ntill over a ledger with 100,000 request rows and 10,000 revoked keys, against till "
              "over a fresh ledger (median over rounds of the within-round ratio):\n")
        print("| measure | till-100k ÷ till |")
        print("|---|---|")
        for test, field, label in (("rate500", "p50_us", "500 req/s p50 latency"),
                                   ("rate500", "p99_us", "500 req/s p99 latency"),
                                   ("rate50", "p50_us", "50 req/s p50 latency"),
                                   ("1MB", "p50_us", "1 MB body p50 latency"),
                                   ("closed", "rps", "closed-loop throughput"),
                                   ("closed", "cpu_us_per_req", "CPU per request (closed loop)")):
            if test not in rounds[0]:
                continue
            v = med([r[test]["till-100k"][field] / r[test]["till"][field] for r in rounds])
            print(f"| {label} | {v:.3f} ({(v - 1) * 100:+.1f} %) |")


if __name__ == "__main__":
    sys.exit(main())
