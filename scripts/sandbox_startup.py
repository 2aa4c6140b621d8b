#!/usr/bin/env python3
"""Start-up cost of `till run --sandbox` over plain `till run`, measured in rounds.

Each round runs `till run --quiet -- true`, `till run --quiet --sandbox -- true` and
`till run --quiet --sandbox --net proxy -- true` once each, in an order that rotates from round
to round, so a change in the machine's load falls on all three alike. The cost is read as the
per-round difference to the plain run; the script prints the median and the 10th/90th
percentiles of each command's wall time and of those differences.

    cargo build --release --bin till
    scripts/sandbox_startup.py [--till target/release/till] [--rounds 300] [--project DIR]

It makes a throwaway TILL_HOME (file store with one key, a fixed passphrase) and an empty
project directory under the target directory, and removes them at the end. `--project` runs
in DIR instead (left as it is): a sandboxed run ends with a walk of its working directory
for programs the agent rewrote, whose cost grows with the files there.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--till", default=os.path.join(target, "release", "till"))
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--project", help="run in this directory instead of an empty one")
    a = ap.parse_args()
    till = os.path.abspath(a.till)

    base = tempfile.mkdtemp(prefix="till-sandbox-bench.", dir=os.path.dirname(os.path.dirname(till)))
    try:
        env = dict(os.environ, TILL_HOME=os.path.join(base, "home"), TILL_STORE="file",
                   TILL_PASSPHRASE="bench")
        project = os.path.abspath(a.project) if a.project else os.path.join(base, "project")
        os.makedirs(project, exist_ok=True)
        subprocess.run([till, "add", "openai", "--no-verify"], input=b"sk-bench-key\n",
                       env=env, check=True, capture_output=True)
        cmds = {
            "plain": [till, "run", "--quiet", "--", "true"],
            "sandbox": [till, "run", "--quiet", "--sandbox", "--", "true"],
            "sandbox --net proxy": [till, "run", "--quiet", "--sandbox", "--net", "proxy", "--", "true"],
        }
        names = list(cmds)

        def once(name):
            """Wall time, and CPU time (user + system) of till and everything it started."""
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(cmds[name], env=env, cwd=project, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = (time.perf_counter() - t) * 1000
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
            return wall, cpu

        for i in range(a.warmup):
            for n in names:
                once(n)
        wall = {n: [] for n in names}
        cpu = {n: [] for n in names}
        for r in range(a.rounds):
            order = names[r % 3:] + names[:r % 3]
            got = {n: once(n) for n in order}
            for n in names:
                wall[n].append(got[n][0])
                cpu[n].append(got[n][1])
        print(f"{a.rounds} rounds, {till}, load average {os.getloadavg()[0]:.1f}")
        for label, times in [("wall", wall), ("CPU (user + system)", cpu)]:
            print(f"\n{label}, ms: {'median':>8} {'p10':>8} {'p90':>8}")
            for n in names:
                v = times[n]
                print(f"  {n:<26} {statistics.median(v):8.1f} {pct(v, 10):8.1f} {pct(v, 90):8.1f}")
            for n in names[1:]:
                d = [s - p for s, p in zip(times[n], times["plain"])]
                print(f"  {n + ' - plain':<26} {statistics.median(d):8.1f} {pct(d, 10):8.1f} "
                      f"{pct(d, 90):8.1f}  (per-round difference)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


main()
