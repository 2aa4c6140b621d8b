#!/usr/bin/env bash
# till serve under load while other tills work on the same ledger beside it.
#
#   scripts/soak.sh [--seconds 15] [--rate 800] [--no-build]
#   TILL=/path/to/till scripts/soak.sh --no-build     # another build of till
#
# Starts till-mock and `till serve` in a throwaway TILL_HOME (encrypted file store), sends
# chat completions with one key at a fixed rate with oha, and meanwhile runs, again and again,
# what a person or a script does beside a running proxy: `till key create`, `till log`,
# `till usage`, `till key revoke`, `till key list`. Each of those opens the ledger, settles what
# dead proxies left, and writes to it.
#
# Passes (exit 0) when the proxy is still alive at the end and stops cleanly on SIGTERM, every
# proxied request was answered 200, every command succeeded, the ledger holds one `complete`
# row per request, and what the key's budget was charged is what those rows cost. A proxy that dies beside the other tills (a SIGBUS from shared
# memory rebuilt under it was one way) fails it within seconds.
#
# Installs oha when missing (cargo install oha --locked) and builds till and till-mock in
# release mode unless --no-build. Everything it starts is stopped, and its directory removed,
# on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=15
rate=800
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "soak.sh: unknown argument $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done

if ! command -v oha >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/oha" ]; then
  echo "soak.sh: installing oha (cargo install oha --locked)" >&2
  cargo install oha --locked
fi
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$build" = 1 ]; then
  cargo build --release --locked -p till -p till-mock --bins >&2
fi
target_dir="${CARGO_TARGET_DIR:-target}"
till="${TILL:-$target_dir/release/till}"
mock="$target_dir/release/till-mock"

work="$(mktemp -d "${TMPDIR:-/tmp}/till-soak.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export TILL_HOME="$work/home" TILL_STORE=file TILL_PASSPHRASE=soak
unset OPENAI_API_KEY OPENAI_BASE_URL TILL_KEY TILL_PROXY_URL
mkdir -p "$TILL_HOME"

# What the sed expression $2 prints of file $1, once it prints something (10 s at most).
wait_for() {
  local got=""
  for _ in $(seq 1 200); do
    got="$(sed -n "$2" "$1" 2>/dev/null | head -1)"
    [ -n "$got" ] && break
    sleep 0.05
  done
  printf '%s' "$got"
}

"$mock" --listen 127.0.0.1:0 >"$work/mock.out" 2>"$work/mock.err" &
pids+=($!)
mock_url="$(wait_for "$work/mock.out" 's/^listening on //p')"
[ -n "$mock_url" ] || { echo "soak.sh: till-mock did not start: $(cat "$work/mock.err")" >&2; exit 1; }
printf '[providers.openai]\nbase_url = "%s"\n' "$mock_url" >"$TILL_HOME/config.toml"
echo sk-mock-root | "$till" add openai >/dev/null 2>"$work/setup.err" ||
  { echo "soak.sh: till add failed: $(cat "$work/setup.err")" >&2; exit 1; }
key="$("$till" key create --scope openai --budget 100usd --name load 2>"$work/setup.err" |
  grep -o 'till_[A-Za-z0-9_-]*' | head -1)"
[ -n "$key" ] || { echo "soak.sh: till key create failed: $(cat "$work/setup.err")" >&2; exit 1; }

"$till" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
serve=$!
pids+=("$serve")
proxy="$(wait_for "$work/serve.out" 1p)"
[ -n "$proxy" ] || { echo "soak.sh: till serve did not start: $(cat "$work/serve.err")" >&2; exit 1; }

body='{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'
oha -z "${seconds}s" -c 4 -q "$rate" --no-tui -m POST \
  -H "Authorization: Bearer $key" -H 'content-type: application/json' -d "$body" \
  --output-format json "$proxy/openai/v1/chat/completions" >"$work/oha.json" 2>"$work/oha.err" &
load=$!
pids+=("$load")

rounds=0
failed=0
run() {
  if ! "$till" "$@" >/dev/null 2>>"$work/admin.err"; then
    failed=$((failed + 1))
    echo "till $* failed" >>"$work/admin.err"
  fi
}
while kill -0 "$load" 2>/dev/null; do
  rounds=$((rounds + 1))
  run key create --scope openai/gpt-4o-mini --ttl 1h --name "side$rounds"
  run log -n 5
  run usage
  run key revoke "side$rounds"
  run key list
done
wait "$load" || true

verdict=0
if kill -0 "$serve" 2>/dev/null; then
  kill -TERM "$serve"
  if wait "$serve"; then serve_exit=0; else serve_exit=$?; fi
else
  if wait "$serve"; then serve_exit=0; else serve_exit=$?; fi
  echo "soak.sh: till serve died during the run (exit $serve_exit)" >&2
  verdict=1
fi
[ "$serve_exit" = 0 ] || verdict=1

TILL_BIN="$till" python3 - "$work/oha.json" "$rounds" "$failed" "$serve_exit" <<'PY' || verdict=1
import collections, json, os, sqlite3, subprocess, sys
oha = json.load(open(sys.argv[1]))
codes = oha.get("statusCodeDistribution") or {}
sent = sum(codes.values())
rows = json.loads(subprocess.run(
    [os.environ["TILL_BIN"], "log", "--json", "-n", "10000000"],
    check=True, capture_output=True, text=True).stdout)
outcomes = collections.Counter(r["outcome"] for r in rows)
# What the budget counters charged the key is what its rows cost, to the micro-dollar.
db = sqlite3.connect(os.path.join(os.environ["TILL_HOME"], "data", "ledger.sqlite3"))
charged, reserved = db.execute(
    "SELECT coalesce(sum(spent_micros), 0), coalesce(sum(reserved_micros), 0) FROM counters"
).fetchone()
cost = db.execute("SELECT coalesce(sum(cost_micros), 0) FROM requests").fetchone()[0]
# oha ends the requests in flight at the deadline; anything else is a failure.
all_errors = oha.get("errorDistribution") or {}
errors = {k: v for k, v in all_errors.items() if "deadline" not in k}
# A request cut off by oha's deadline may still have been answered whole (a `complete` row),
# or be recorded as the client's going away (`abandoned`).
aborted = sum(v for k, v in all_errors.items() if "deadline" in k)
late = len(rows) - sent
print(f"requests answered: {sent} {dict(codes)}, errors: {errors or 'none'}")
print(f"commands beside it: {sys.argv[2]} rounds of 5, {sys.argv[3]} failed")
print(f"till serve exit: {sys.argv[4]}")
print(f"ledger rows: {len(rows)} {dict(outcomes)}")
print(f"budget charged: {charged} µ$, the rows' cost: {cost} µ$, still reserved: {reserved} µ$")
ok = (sent > 0 and set(codes) == {"200"} and not errors and sys.argv[3] == "0"
      and sys.argv[4] == "0" and 0 <= late <= aborted and outcomes["complete"] >= sent
      and set(outcomes) <= {"complete", "abandoned"} and charged == cost and reserved == 0)
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
if [ -s "$work/admin.err" ] && [ "$failed" != 0 ]; then
  grep 'failed$' "$work/admin.err" | sort | uniq -c | head >&2
fi
exit "$verdict"
