#!/usr/bin/env python3
"""Load benchmark: what till's proxy adds to a request, against the same mock provider.

    scripts/load.py [--till PATH] [--mock PATH] [--rate 500] [--duration 10] [--workers 8]
                    [--warmup 1] [--connections 32] [--processes NPROC]
                    [--throughput-duration 5] [--json]

It builds nothing: pass the release binaries (default `$CARGO_TARGET_DIR/release/` or
`target/release/`; build them with `cargo build --release --workspace --bins`). In one run it

1. starts `till-mock --no-record` on a free loopback port;
2. makes a throwaway TILL_HOME (file store, passphrase in TILL_PASSPHRASE) whose openai
   base_url is the mock, stores `sk-mock-root` with `till add openai`, mints a key with
   `till key create --scope openai --ttl 1h`, and starts `till serve --listen 127.0.0.1:0`
   (the ledger writes one row per request, as it always does: this is "ledger on");
3. latency at a fixed rate, open loop (requests are sent on a fixed schedule whether or not
   earlier ones have come back, and latency counts from the scheduled send time, so a stall
   is not hidden by the generator waiting for it): direct to the mock, then through till;
   reports p50/p90/p99/max and what till adds at p50 and p99;
4. maximum throughput, closed loop (N keep-alive connections, each sending its next request
   as soon as the last answer arrives, for a fixed time): direct, then through till, and the
   ratio;
5. stops everything it started and deletes the temporary home, also on error or Ctrl-C.

Requests are a small non-streaming OpenAI chat completion. Everything stays on 127.0.0.1.
The client is a minimal HTTP/1.1 keep-alive client on raw sockets (standard library only):
http.client parses every header through the email package, which costs more CPU per request
than till itself and would blur the difference being measured. The generator shares the
machine's cores with till and the mock; the report says how many there are.

Exit code: 0 when every request got a 200, 1 otherwise (and on setup errors).
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import get_context

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT_KEY = "sk-mock-root"
PASSPHRASE = "load-test-passphrase"
BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
    },
    separators=(",", ":"),
).encode()
# Variables from the caller's shell that must not reach till or the mock.
SCRUB = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "TILL_KEY",
    "TILL_PROXY_URL",
    "TILL_PROFILE",
)
SOCKET_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client.


class Target:
    """Where requests go and the exact bytes of one request."""

    def __init__(self, name, host, port, path, key):
        self.name = name
        self.host = host
        self.port = port
        self.request = (
            f"POST {path} HTTP/1.1\r\n"
            f"host: {host}:{port}\r\n"
            f"authorization: Bearer {key}\r\n"
            "content-type: application/json\r\n"
            "accept: application/json\r\n"
            f"content-length: {len(BODY)}\r\n"
            "\r\n"
        ).encode() + BODY


class Conn:
    """One keep-alive connection; reconnects once if the server closed it between requests."""

    def __init__(self, target):
        self.target = target
        self.sock = None
        self.buf = b""

    def connect(self):
        s = socket.create_connection((self.target.host, self.target.port), timeout=SOCKET_TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        self.buf = b""

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def _read_until(self, marker):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(marker):]
                return out
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def roundtrip(self, keep_body=False):
        """Sends the request, reads the whole response; returns (status, body or None)."""
        fresh = self.sock is None
        if fresh:
            self.connect()
        try:
            self.sock.sendall(self.target.request)
            head = self._read_until(b"\r\n\r\n")
        except (ConnectionError, OSError):
            if fresh:
                raise
            # A keep-alive connection the server had already closed: one retry on a new one.
            self.close()
            self.connect()
            self.sock.sendall(self.target.request)
            head = self._read_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        chunked = False
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and value == b"close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")  # no trailers expected
                    break
                parts.append(self._read_exact(size))
                self._read_exact(2)
            body = b"".join(parts)
        elif length is not None:
            body = self._read_exact(length)
        else:
            raise ConnectionError("response without content-length or chunked encoding")
        if close:
            self.close()
        return status, (body if keep_body else None)


# ---------------------------------------------------------------------------------------------
# Measurements.


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def summarize(latencies_s):
    v = sorted(latencies_s)
    us = lambda x: round(x * 1e6, 1)  # noqa: E731
    return {
        "count": len(v),
        "p50_us": us(percentile(v, 50)),
        "p90_us": us(percentile(v, 90)),
        "p99_us": us(percentile(v, 99)),
        "max_us": us(v[-1]) if v else None,
        "mean_us": us(sum(v) / len(v)) if v else None,
    }


def open_loop(target, rate, duration, workers):
    """`rate` requests per second for `duration` seconds on a fixed schedule.

    Request i is due at t0 + i/rate and goes to worker i % workers, each on its own keep-alive
    connection. Latency is measured from the due time (so time spent waiting for a busy worker
    counts), and also from the actual send ("service" time).
    """
    total = int(rate * duration)
    interval = 1.0 / rate
    results = [None] * workers
    start_barrier = threading.Barrier(workers + 1)
    t0_box = []

    def worker(w):
        conn = Conn(target)
        conn.connect()
        lat, svc, errors, late = [], [], 0, 0
        start_barrier.wait()
        t0 = t0_box[0]
        for i in range(w, total, workers):
            due = t0 + i * interval
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            sent = time.perf_counter()
            if sent - due > interval:
                late += 1
            try:
                status, _ = conn.roundtrip()
            except (OSError, ValueError, IndexError):
                status = 0
                conn.close()
            done = time.perf_counter()
            if status != 200:
                errors += 1
                continue
            lat.append(done - due)
            svc.append(done - sent)
        conn.close()
        results[w] = (lat, svc, errors, late)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(workers)]
    for t in threads:
        t.start()
    t0_box.append(time.perf_counter() + 0.05)
    start_barrier.wait()
    for t in threads:
        t.join(duration + 60)
    lat, svc, errors, late = [], [], 0, 0
    for r in results:
        if r is None:
            errors += 1
            continue
        lat += r[0]
        svc += r[1]
        errors += r[2]
        late += r[3]
    out = summarize(lat)
    out["service"] = summarize(svc)
    # Every scheduled request that did not come back with a 200 (failed, or never sent).
    out["errors"] = total - len(lat)
    out["sent_late"] = late
    out["rate"] = rate
    out["duration_s"] = duration
    return out


def _closed_loop_proc(args):
    """One process of the closed-loop test: `conns` threads, each on its own connection."""
    host, port, path, key, conns, start_at, duration = args
    target = Target("", host, port, path, key)
    counts = [0] * conns
    errors = [0] * conns
    lat_sum = [0.0] * conns

    def worker(c):
        conn = Conn(target)
        conn.connect()
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + duration
        n = e = 0
        s = 0.0
        while True:
            t = time.perf_counter()
            if time.time() >= end:
                break
            try:
                status, _ = conn.roundtrip()
            except (OSError, ValueError, IndexError):
                status = 0
                conn.close()
            if status == 200:
                n += 1
                s += time.perf_counter() - t
            else:
                e += 1
        conn.close()
        counts[c], errors[c], lat_sum[c] = n, e, s

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 60)
    return sum(counts), sum(errors), sum(lat_sum)


def _worker_signals():
    """Generator processes leave cleanup to the parent: its handlers must not run in them."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def closed_loop(target, connections, duration, processes):
    """As many requests as `connections` keep-alive connections manage in `duration` seconds,
    spread over `processes` generator processes (one Python process cannot saturate a Rust
    server: the GIL caps it)."""
    per = [connections // processes + (1 if p < connections % processes else 0) for p in range(processes)]
    start_at = time.time() + 0.5
    jobs = [
        (target.host, target.port, target_path(target), target_key(target), n, start_at, duration)
        for n in per
        if n > 0
    ]
    with get_context("fork").Pool(len(jobs), initializer=_worker_signals) as pool:
        parts = pool.map(_closed_loop_proc, jobs)
    ok = sum(p[0] for p in parts)
    errors = sum(p[1] for p in parts)
    lat = sum(p[2] for p in parts)
    return {
        "connections": connections,
        "processes": len(jobs),
        "duration_s": duration,
        "requests": ok,
        "errors": errors,
        "rps": round(ok / duration, 1),
        "mean_latency_us": round(lat / ok * 1e6, 1) if ok else None,
    }


def target_path(target):
    return target.request.split(b" ", 2)[1].decode()


def target_key(target):
    for line in target.request.split(b"\r\n"):
        if line.lower().startswith(b"authorization: bearer "):
            return line.split(b" ", 2)[2].decode()
    return ""


# ---------------------------------------------------------------------------------------------
# CPU accounting of the servers, from /proc.


def cpu_seconds(pid):
    """User+system CPU seconds of a process and all its threads (None off Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def host_busy_seconds():
    """CPU seconds the whole machine spent busy (all CPUs; None off Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def generator_seconds():
    """CPU seconds of this process and its finished children (the generator processes)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class CpuMeter:
    """CPU used during a phase by till, the mock and the generator, and by everything else on
    the machine (other = busy time of all CPUs minus those three): a benchmark is only as good
    as the quiet around it, so the report shows how quiet it was."""

    def __init__(self, pids):
        self.pids = pids

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.gen0 = generator_seconds()
        self.host0 = host_busy_seconds()
        return self

    def __exit__(self, *exc):
        self.used = {}
        for name, pid in self.pids.items():
            after = cpu_seconds(pid)
            b = self.before[name]
            self.used[name] = None if after is None or b is None else round(after - b, 3)
        self.used["generator"] = round(generator_seconds() - self.gen0, 3)
        host = host_busy_seconds()
        if host is not None and self.host0 is not None and None not in self.used.values():
            busy = host - self.host0
            self.used["other"] = round(max(0.0, busy - sum(self.used.values())), 3)
            self.used["wall"] = round(time.perf_counter() - self.t0, 3)
        return False


# ---------------------------------------------------------------------------------------------
# Processes.


class Fixture:
    """The mock, a till home, a key and `till serve`; `close()` undoes all of it."""

    def __init__(self, till, mock):
        self.till = till
        self.mock_bin = mock
        self.procs = []
        self.home = tempfile.mkdtemp(prefix="till-load-")
        self.env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        self.env.update(
            TILL_HOME=self.home, TILL_STORE="file", TILL_PASSPHRASE=PASSPHRASE, NO_COLOR="1"
        )

    def _spawn(self, argv, what):
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.home, what + ".log"), "wb"),
            env=self.env,
        )
        self.procs.append(p)
        return p

    def _first_line(self, p, what, timeout=15.0):
        """The first stdout line of `p`, or an error naming its log."""
        box = []
        t = threading.Thread(target=lambda: box.append(p.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            log = os.path.join(self.home, what + ".log")
            try:
                with open(log) as f:
                    detail = f.read().strip()
            except OSError:
                detail = ""
            raise RuntimeError(f"{what} did not start: {detail or 'no output'}")
        return box[0].decode().strip()

    def _till(self, args, stdin=None):
        r = subprocess.run(
            [self.till, *args],
            input=stdin.encode() if stdin is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            timeout=60,
        )
        if r.returncode != 0:
            raise RuntimeError(f"till {' '.join(args)} failed: {r.stderr.decode().strip()}")
        return r.stdout.decode().strip()

    def start(self):
        mock = self._spawn([self.mock_bin, "--listen", "127.0.0.1:0", "--no-record"], "till-mock")
        line = self._first_line(mock, "till-mock")
        if not line.startswith("listening on http://"):
            raise RuntimeError(f"till-mock printed {line!r}")
        self.mock_url = line.split("listening on ", 1)[1]
        self.mock_pid = mock.pid
        with open(os.path.join(self.home, "config.toml"), "w") as f:
            f.write(f'[providers.openai]\nbase_url = "{self.mock_url}"\n')
        self._till(["add", "openai"], stdin=ROOT_KEY)
        self.key = self._till(["key", "create", "--name", "load", "--scope", "openai", "--ttl", "1h"])
        if not self.key.startswith("till_"):
            raise RuntimeError(f"till key create printed {self.key!r}")
        serve = self._spawn([self.till, "serve", "--listen", "127.0.0.1:0"], "till-serve")
        self.till_url = self._first_line(serve, "till-serve")
        if not self.till_url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"till serve printed {self.till_url!r}")
        self.till_pid = serve.pid

    def targets(self):
        mh, mp = self.mock_url[len("http://"):].rsplit(":", 1)
        th, tp = self.till_url[len("http://"):].rsplit(":", 1)
        return (
            Target("direct", mh, int(mp), "/v1/chat/completions", ROOT_KEY),
            Target("till", th, int(tp), "/openai/v1/chat/completions", self.key),
        )

    def ledger_rows(self):
        """Rows in the ledger's requests table, read after till serve stopped (None if unknown)."""
        try:
            import sqlite3
        except ImportError:
            return None
        for dirpath, _, files in os.walk(self.home):
            for name in files:
                if name.endswith((".db", ".sqlite", ".sqlite3")):
                    try:
                        db = sqlite3.connect(os.path.join(dirpath, name))
                        n = db.execute("SELECT count(*) FROM requests").fetchone()[0]
                        db.close()
                        return n
                    except sqlite3.Error:
                        continue
        return None

    def stop_serve(self):
        """Stops till serve (SIGTERM, so its ledger writer flushes) and waits for it."""
        for p in self.procs:
            if p.pid == getattr(self, "till_pid", None) and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
        shutil.rmtree(self.home, ignore_errors=True)


# ---------------------------------------------------------------------------------------------


def machine():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor() or "unknown",
        "kernel": platform.release(),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
        "python": platform.python_version(),
    }


def default_bin(name):
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(target, "release", name)


def log(msg, quiet):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def fmt_row(name, s):
    return (
        f"  {name:<7} p50 {s['p50_us']:>8.0f} µs   p90 {s['p90_us']:>8.0f} µs   "
        f"p99 {s['p99_us']:>8.0f} µs   max {s['max_us']:>9.0f} µs   (n={s['count']}, errors {s.get('errors', 0)})"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--till", default=default_bin("till"), help="the till binary (release build)")
    ap.add_argument("--mock", default=default_bin("till-mock"), help="the till-mock binary")
    ap.add_argument("--rate", type=float, default=500.0, help="requests per second in the latency test")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per latency run")
    ap.add_argument("--workers", type=int, default=8, help="connections in the latency test")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    ap.add_argument("--connections", type=int, default=32, help="connections in the throughput test")
    ap.add_argument(
        "--processes", type=int, default=os.cpu_count() or 2, help="generator processes in the throughput test"
    )
    ap.add_argument("--throughput-duration", type=float, default=5.0, help="seconds per throughput run")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    a = ap.parse_args()

    for path in (a.till, a.mock):
        if not os.access(path, os.X_OK):
            sys.exit(
                f"load.py: {path} is not an executable\n"
                "hint: build the release binaries first: cargo build --release --workspace --bins"
            )

    fx = Fixture(a.till, a.mock)

    def on_signal(signum, _frame):
        fx.close()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    quiet = a.json
    try:
        fx.start()
        direct, through = fx.targets()
        # One full request each way, parsed, so the numbers below are for working calls.
        for t in (direct, through):
            c = Conn(t)
            status, body = c.roundtrip(keep_body=True)
            c.close()
            if status != 200 or b"chat.completion" not in body:
                raise RuntimeError(f"{t.name}: HTTP {status}: {body[:300]!r}")
        pids = {"till": fx.till_pid, "mock": fx.mock_pid}
        res = {
            "machine": machine(),
            "config": {
                "rate": a.rate,
                "duration_s": a.duration,
                "workers": a.workers,
                "connections": a.connections,
                "processes": a.processes,
                "throughput_duration_s": a.throughput_duration,
                "ledger": "on (till serve writes one row per request)",
                "request_bytes": len(direct.request),
            },
            "latency": {},
            "throughput": {},
        }

        for t in (direct, through):
            log(f"latency: {t.name}, {a.rate:g} req/s for {a.duration:g} s (after {a.warmup:g} s warm-up)", quiet)
            if a.warmup > 0:
                open_loop(t, a.rate, a.warmup, a.workers)
            with CpuMeter(pids) as cpu:
                r = open_loop(t, a.rate, a.duration, a.workers)
            r["cpu_s"] = cpu.used
            n = r["count"] or 1
            if t is through and cpu.used["till"] is not None:
                r["till_cpu_us_per_request"] = round(cpu.used["till"] / n * 1e6, 1)
            res["latency"][t.name] = r
        d, t = res["latency"]["direct"], res["latency"]["till"]
        res["latency"]["added"] = {
            "p50_us": round(t["p50_us"] - d["p50_us"], 1),
            "p99_us": round(t["p99_us"] - d["p99_us"], 1),
            "service_p50_us": round(t["service"]["p50_us"] - d["service"]["p50_us"], 1),
            "service_p99_us": round(t["service"]["p99_us"] - d["service"]["p99_us"], 1),
        }

        for t in (direct, through):
            log(
                f"throughput: {t.name}, {a.connections} connections for {a.throughput_duration:g} s",
                quiet,
            )
            with CpuMeter(pids) as cpu:
                r = closed_loop(t, a.connections, a.throughput_duration, a.processes)
            r["cpu_s"] = cpu.used
            res["throughput"][t.name] = r
        dr, tr = res["throughput"]["direct"]["rps"], res["throughput"]["till"]["rps"]
        res["throughput"]["ratio"] = round(tr / dr, 3) if dr else None

        fx.stop_serve()
        res["ledger_rows"] = fx.ledger_rows()
    finally:
        fx.close()

    errors = (
        res["latency"]["direct"]["errors"]
        + res["latency"]["till"]["errors"]
        + res["throughput"]["direct"]["errors"]
        + res["throughput"]["till"]["errors"]
    )
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        m = res["machine"]
        lat = res["latency"]
        thr = res["throughput"]
        print(f"machine: {m['nproc']} CPUs, {m['cpu']}; load generator, till and mock share them")
        print(f"latency at {a.rate:g} req/s for {a.duration:g} s, open loop, {a.workers} connections:")
        print(fmt_row("direct", lat["direct"]))
        print(fmt_row("till", lat["till"]))
        ad = lat["added"]
        print(f"  added   p50 {ad['p50_us']:+.0f} µs   p99 {ad['p99_us']:+.0f} µs"
              f"   (service time: p50 {ad['service_p50_us']:+.0f} µs, p99 {ad['service_p99_us']:+.0f} µs)")
        if "till_cpu_us_per_request" in lat["till"]:
            print(f"  till CPU per request: {lat['till']['till_cpu_us_per_request']:.0f} µs")
        print(f"throughput, closed loop, {a.connections} connections, {a.throughput_duration:g} s:")
        for name in ("direct", "till"):
            r = thr[name]
            print(f"  {name:<7} {r['rps']:>9.0f} req/s   mean {r['mean_latency_us']:.0f} µs   (errors {r['errors']})")
        print(f"  ratio   {thr['ratio']:.2f} (till / direct)")
        print(f"ledger: on; {res['ledger_rows']} rows written by till serve")
        others = [
            f"{name} {phase} {r['cpu_s']['other'] / r['cpu_s']['wall']:.2f}"
            for name, block in (("latency", lat), ("throughput", thr))
            for phase, r in block.items()
            if isinstance(r, dict) and "cpu_s" in r and "other" in r["cpu_s"]
        ]
        if others:
            print(f"other load on the machine (CPUs busy with processes outside this test): {', '.join(others)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
