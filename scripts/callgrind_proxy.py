#!/usr/bin/env python3
"""Instructions per proxied request, from callgrind: a repeatable measure of `till serve`'s
cost that other work on the machine does not disturb.

    scripts/callgrind_proxy.py --till PATH [--requests 2000] [--body small|100KB|1MB]
                               [--stream] [--out FILE] [--nginx PATH]

Starts the static nginx upstream of scripts/bench_nginx.py and `till serve` (release build,
throwaway TILL_HOME, file store) under `valgrind --tool=callgrind`, sends 200 warm-up requests
over one keep-alive connection, zeroes the counters (`callgrind_control --zero`), sends
`--requests` more, dumps, and prints the instructions (all threads: the proxy's workers and
the ledger writer) divided by the number of requests, and the calls to `malloc` likewise.
`--out` keeps the profile for `callgrind_annotate`. With `--stream`, the upstream is
examples/stream_probe's SSE server (20 events per request, `--probe PATH`).
"""

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_nginx as bn  # noqa: E402


def request_bytes(port, path, key, body):
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


def calls_to(dump, name):
    """How many times functions called `name` in a callgrind dump (its `calls=` lines under a
    `cfn=` of that name; names are compressed to `(id)` after their first use)."""
    names, target, count = {}, False, 0
    with open(dump) as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                ref = line.split("=", 1)[1].strip()
                if ref.startswith("(") and ")" in ref:
                    i, _, rest = ref.partition(")")
                    if rest.strip():
                        names[i] = rest.strip()
                    ref = names.get(i, "")
                target = line.startswith("cfn=") and ref == name
            elif line.startswith("calls=") and target:
                count += int(line.split("=", 1)[1].split()[0])
                target = False
    return count


def roundtrip(sock, req, buf):
    sock.sendall(req)
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            rest += sock.recv(65536)
        return status, rest[n:]
    # chunked
    while not rest.endswith(b"0\r\n\r\n"):
        rest += sock.recv(65536)
    return status, b""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--till", required=True)
    ap.add_argument("--probe", default="")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--body", default="small")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--seeded", action="store_true",
                    help="over a ledger with 100,000 request rows and 10,000 revoked keys")
    ap.add_argument("--out")
    args = ap.parse_args()
    b = bn.Bench(args)
    probe = None
    try:
        b.start_nginx()
        home, env, key = b.till_home("till")
        if args.seeded:
            bn.seed(home, 100_000, 10_000)
        out = os.path.join(b.work, "callgrind.out")
        p = b.spawn(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             args.till, "serve", "--listen", "127.0.0.1:0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        url = p.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1])
        if args.stream:
            probe = subprocess.Popen(
                [args.probe, "--listen", f"127.0.0.1:{b.probe_port}", "--requests", "0"],
                stdout=subprocess.DEVNULL)
            # The probe with zero requests serves until it is killed.
            path = "/probe/v1/chat/completions"
            body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                               "stream_options": {"include_usage": True},
                               "messages": [{"role": "user", "content": "hi"}]}).encode()
        else:
            path = "/openai/v1/chat/completions"
            body = (bn.chat_body({"100KB": 100_000, "1MB": 1_000_000}[args.body])
                    if args.body != "small" else json.dumps(
                        {"model": "gpt-4o-mini",
                         "messages": [{"role": "user", "content": "Say hello to the benchmark."}]},
                        separators=(",", ":")).encode())
        req = request_bytes(port, path, key, body)
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        for _ in range(200):
            status, buf = roundtrip(sock, req, buf)
            assert status == 200, status
        time.sleep(0.5)
        subprocess.run(["callgrind_control", "--zero", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        for _ in range(args.requests):
            status, buf = roundtrip(sock, req, buf)
            assert status == 200, status
        time.sleep(0.3)  # let the ledger writer's batch go through (it groups for 50 ms)
        subprocess.run(["callgrind_control", "--dump", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        dumps = sorted(glob.glob(out + "*"), key=os.path.getmtime)
        total = 0
        with open(dumps[-1]) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = int(line.split()[1])
        print(f"{total / args.requests:.0f} instructions per request "
              f"({args.requests} requests, body {args.body}{', streamed' if args.stream else ''})")
        allocs = calls_to(dumps[-1], "malloc")
        print(f"{allocs / args.requests:.1f} allocations per request (calls to malloc)")
        if args.out:
            shutil.copy(dumps[-1], args.out)
        sock.close()
    finally:
        if probe:
            probe.kill()
        b.close()


if __name__ == "__main__":
    main()
